#!/usr/bin/env bash
# Writes the fixture host trees read by vgpu-firstboot's facts tests.
#
# Each tree under tests/hosts/<name>/ holds only the files the facts reader
# looks at, laid out as on a real host (root-relative). sysfs links are real
# relative symlinks shaped like the kernel's, e.g.
#   sys/bus/pci/devices/0000:01:00.0 -> ../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0
# Every run deletes and rewrites the trees it owns, so the output only
# depends on this script. Commit both.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
hosts=(debian-plain pve8-grub pve9-zfs-sdboot pve8-two-gpus vm-no-iommu)
T= # the tree being written

# put PATH LINE...: a text file, one argument per line.
put() {
    mkdir -p "$T/$(dirname "$1")"
    local path=$1
    shift
    printf '%s\n' "$@" >"$T/$path"
}

# link PATH TARGET: a symlink.
link() {
    mkdir -p "$T/$(dirname "$1")"
    ln -sfn "$2" "$T/$1"
}

# efivar_secureboot BYTE: the SecureBoot variable (4 attribute bytes, value).
efivar_secureboot() {
    local var=sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c
    mkdir -p "$T/$(dirname "$var")"
    printf "\\x06\\x00\\x00\\x00\\x0$1" >"$T/$var"
}

# pci PATH VENDOR DEVICE CLASS SUBSYSTEM DRIVER GROUP
#   PATH below sys/devices, e.g. pci0000:00/0000:00:01.0/0000:01:00.0;
#   SUBSYSTEM vendor:device or -; DRIVER name or -; GROUP number or -.
pci() {
    local path=$1 vendor=$2 device=$3 class=$4 subsystem=$5 driver=$6 group=$7
    local addr=${path##*/} dir=sys/devices/$1 up="" part
    # From the device directory back up to sys/: one `..` per component
    # of PATH, plus one for devices/.
    for part in devices ${path//\// }; do up+="../"; done
    put "$dir/vendor" "0x$vendor"
    put "$dir/device" "0x$device"
    put "$dir/class" "0x$class"
    if [[ $subsystem != - ]]; then
        put "$dir/subsystem_vendor" "0x${subsystem%%:*}"
        put "$dir/subsystem_device" "0x${subsystem##*:}"
    fi
    link "sys/bus/pci/devices/$addr" "../../../devices/$path"
    if [[ $driver != - ]]; then
        mkdir -p "$T/sys/bus/pci/drivers/$driver"
        : >"$T/sys/bus/pci/drivers/$driver/bind"
        link "$dir/driver" "${up}bus/pci/drivers/$driver"
    fi
    if [[ $group != - ]]; then
        link "$dir/iommu_group" "${up}kernel/iommu_groups/$group"
        link "sys/kernel/iommu_groups/$group/devices/$addr" "../../../../devices/$path"
    fi
}

# module NAME: a loaded module.
module() {
    put "sys/module/$1/initstate" live
}

# cpuinfo VENDOR_ID MODEL FLAGS: two identical processors.
cpuinfo() {
    local cpu
    mkdir -p "$T/proc"
    for cpu in 0 1; do
        printf 'processor\t: %s\nvendor_id\t: %s\nmodel name\t: %s\nflags\t\t: %s\n\n' \
            "$cpu" "$1" "$2" "$3"
    done >"$T/proc/cpuinfo"
}

os_release() { # CODENAME VERSION_ID
    put etc/os-release \
        "PRETTY_NAME=\"Debian GNU/Linux $2 ($1)\"" \
        "NAME=\"Debian GNU/Linux\"" \
        "VERSION_ID=\"$2\"" \
        "VERSION=\"$2 ($1)\"" \
        "VERSION_CODENAME=$1" \
        "ID=debian"
}

proxmox() {
    put etc/pve/storage.cfg "dir: local" "	path /var/lib/vz" "	content iso,vztmpl,backup"
    put usr/bin/pveversion "#!/usr/bin/perl" "# fixture stand-in: only its existence is read"
}

default_grub() {
    put etc/default/grub 'GRUB_DEFAULT=0' 'GRUB_TIMEOUT=5' \
        'GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`' \
        'GRUB_CMDLINE_LINUX_DEFAULT="quiet"' 'GRUB_CMDLINE_LINUX=""'
}

# grub_cfg TITLE KERNEL ROOT: /boot/grub/grub.cfg as update-grub writes it
# (abridged: the header's one-shot logic, 10_linux's entry and submenu,
# 30_uefi-firmware), for the agent's trial boot to find the default entry.
grub_cfg() {
    local id=gnulinux-simple-fixture
    put boot/grub/grub.cfg \
        '### BEGIN /etc/grub.d/00_header ###' \
        'if [ -s $prefix/grubenv ]; then' '  set have_grubenv=true' '  load_env' 'fi' \
        'if [ "${next_entry}" ] ; then' '   set default="${next_entry}"' '   set next_entry=' \
        '   save_env next_entry' '   set boot_once=true' 'else' '   set default="0"' 'fi' \
        'function load_video {' '  insmod all_video' '}' \
        '### BEGIN /etc/grub.d/10_linux ###' \
        "menuentry '$1' --class debian --class gnu-linux --class os \$menuentry_id_option '$id' {" \
        '	load_video' '	insmod gzio' "	echo	'Loading Linux $2 ...'" \
        "	linux	/boot/vmlinuz-$2 root=$3 ro  quiet" \
        "	echo	'Loading initial ramdisk ...'" "	initrd	/boot/initrd.img-$2" '}' \
        "submenu 'Advanced options for $1' \$menuentry_id_option 'gnulinux-advanced-fixture' {" \
        "	menuentry '$1, with Linux $2' --class os \$menuentry_id_option 'gnulinux-$2-advanced-fixture' {" \
        "		linux	/boot/vmlinuz-$2 root=$3 ro  quiet" "		initrd	/boot/initrd.img-$2" '	}' '}' \
        '### BEGIN /etc/grub.d/30_uefi-firmware ###' \
        "menuentry 'UEFI Firmware Settings' \$menuentry_id_option 'uefi-firmware' {" '	fwsetup' '}'
}

ids() { # MACHINE_ID BOOT_ID
    put etc/machine-id "$1"
    put proc/sys/kernel/random/boot_id "$2"
}

kernel() { # RELEASE CMDLINE
    put proc/sys/kernel/osrelease "$1"
    put proc/cmdline "$2"
}

intel_flags="fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc vmx smx est tm2 ssse3 fma cx16 sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand lahf_lm abm ept vpid"
amd_flags="fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl cpuid pni pclmulqdq monitor ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand lahf_lm cmp_legacy svm extapic cr8_legacy abm sse4a npt nrip_save"
qemu_flags="fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 syscall nx lm constant_tsc rep_good nopl cpuid pni cx16 x2apic hypervisor lahf_lm"

host_debian_plain() {
    cpuinfo GenuineIntel "Intel(R) Core(TM) i5-9500 CPU @ 3.00GHz" "$intel_flags"
    os_release bookworm 12
    default_grub
    kernel 6.1.0-28-amd64 "BOOT_IMAGE=/boot/vmlinuz-6.1.0-28-amd64 root=UUID=3f1c0a52-7e4b-4d8e-9a51-0c2b6f5d9e11 ro quiet"
    grub_cfg "Debian GNU/Linux" 6.1.0-28-amd64 UUID=3f1c0a52-7e4b-4d8e-9a51-0c2b6f5d9e11
    put proc/mounts "sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0" \
        "/dev/sda1 / ext4 rw,relatime,errors=remount-ro 0 0"
    ids 0f3e8a1b2c4d4e6f8a9b0c1d2e3f4a5b 7d2f1e6a-3b4c-4d5e-8f90-a1b2c3d4e5f6
    pci pci0000:00/0000:00:00.0 8086 3e30 060000 8086:3e30 - -
    # An Intel GPU: a VGA controller that is not NVIDIA's.
    pci pci0000:00/0000:00:02.0 8086 3e92 030000 8086:3e92 i915 -
    pci pci0000:00/0000:00:1f.6 8086 15bc 020000 8086:15bc e1000e -
}

host_pve8_grub() {
    cpuinfo GenuineIntel "Intel(R) Xeon(R) E-2236 CPU @ 3.40GHz" "$intel_flags"
    os_release bookworm 12
    proxmox
    default_grub
    efivar_secureboot 0
    kernel 6.8.12-9-pve "BOOT_IMAGE=/boot/vmlinuz-6.8.12-9-pve root=/dev/mapper/pve-root ro quiet"
    grub_cfg "Proxmox VE GNU/Linux" 6.8.12-9-pve /dev/mapper/pve-root
    put proc/mounts "proc /proc proc rw,relatime 0 0" \
        "/dev/mapper/pve-root / ext4 rw,relatime,errors=remount-ro 0 0"
    ids 5a1d2c3b4e5f40718293a4b5c6d7e8f9 0b7c6d5e-4f3a-4b2c-9d1e-0f9e8d7c6b5a
    module nouveau
    pci pci0000:00/0000:00:00.0 8086 3e30 060000 8086:3e30 - 0
    pci pci0000:00/0000:00:01.0 8086 1901 060400 8086:1901 pcieport 1
    pci pci0000:00/0000:00:1f.6 8086 15bc 020000 8086:15bc e1000e 2
    # The Tesla T4, driver unbound.
    pci pci0000:00/0000:00:01.0/0000:01:00.0 10de 1eb8 030200 10de:12a2 - 12
}

host_pve9_zfs_sdboot() {
    cpuinfo AuthenticAMD "AMD EPYC 7302P 16-Core Processor" "$amd_flags"
    # As on Debian: /etc/os-release is a relative link into /usr/lib.
    put usr/lib/os-release \
        'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"' 'NAME="Debian GNU/Linux"' \
        'VERSION_ID="13"' 'VERSION="13 (trixie)"' 'VERSION_CODENAME=trixie' 'ID=debian'
    link etc/os-release ../usr/lib/os-release
    proxmox
    default_grub
    efivar_secureboot 1
    put etc/kernel/proxmox-boot-uuids 5E2A-1B3C 5E2A-4D5F
    put etc/kernel/cmdline "root=ZFS=rpool/ROOT/pve-1 boot=zfs"
    kernel 6.14.11-4-pve 'initrd=\EFI\proxmox\6.14.11-4-pve\initrd.img-6.14.11-4-pve root=ZFS=rpool/ROOT/pve-1 boot=zfs'
    # As in procfs: /proc/mounts -> self/mounts, /proc/self -> <pid>.
    link proc/mounts self/mounts
    link proc/self 4242
    put proc/4242/mounts "rpool/ROOT/pve-1 / zfs rw,relatime,xattr,noacl,casesensitive 0 0" \
        "rpool /rpool zfs rw,relatime,xattr,noacl,casesensitive 0 0"
    ids c0ffee00112233445566778899aabbcc 9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b
    module nouveau
    pci pci0000:00/0000:00:00.0 1022 1480 060000 1022:1480 - 0
    pci pci0000:00/0000:00:03.1 1022 1483 060400 1022:1483 pcieport 7
    # RTX 2080 Ti with its audio and USB functions, all in group 15.
    pci pci0000:00/0000:00:03.1/0000:0a:00.0 10de 1e07 030000 10de:12fa nouveau 15
    pci pci0000:00/0000:00:03.1/0000:0a:00.1 10de 10f7 040300 10de:12fa snd_hda_intel 15
    pci pci0000:00/0000:00:03.1/0000:0a:00.2 10de 1ad6 0c0330 10de:12fa xhci_hcd 15
}

host_pve8_two_gpus() {
    cpuinfo GenuineIntel "Intel(R) Xeon(R) W-2245 CPU @ 3.90GHz" "$intel_flags"
    os_release bookworm 12
    proxmox
    default_grub
    efivar_secureboot 0
    kernel 6.8.12-9-pve "BOOT_IMAGE=/boot/vmlinuz-6.8.12-9-pve root=/dev/mapper/pve-root ro quiet intel_iommu=on iommu=pt"
    grub_cfg "Proxmox VE GNU/Linux" 6.8.12-9-pve /dev/mapper/pve-root
    put proc/mounts "/dev/mapper/pve-root / ext4 rw,relatime,errors=remount-ro 0 0"
    ids 1234567890abcdef1234567890abcdef 2468ace0-1357-4bdf-8ace-0123456789ab
    module vfio_pci
    pci pci0000:00/0000:00:00.0 8086 2020 060000 8086:0000 - 0
    pci pci0000:00/0000:00:01.0 8086 1901 060400 8086:1901 pcieport 1
    pci pci0000:00/0000:00:01.1 8086 1905 060400 8086:1905 pcieport 2
    pci pci0000:00/0000:00:01.0/0000:01:00.0 10de 1eb8 030200 10de:12a2 - 20
    pci pci0000:00/0000:00:01.1/0000:02:00.0 10de 2204 030000 10de:1454 vfio-pci 21
    pci pci0000:00/0000:00:01.1/0000:02:00.1 10de 1aef 040300 10de:1454 vfio-pci 21
}

host_vm_no_iommu() {
    cpuinfo GenuineIntel "QEMU Virtual CPU version 2.5+" "$qemu_flags"
    os_release bookworm 12
    default_grub
    kernel 6.1.0-28-amd64 "BOOT_IMAGE=/boot/vmlinuz-6.1.0-28-amd64 root=/dev/vda1 ro console=ttyS0"
    grub_cfg "Debian GNU/Linux" 6.1.0-28-amd64 /dev/vda1
    put proc/mounts "/dev/vda1 / ext4 rw,relatime 0 0"
    ids 00112233445566778899aabbccddeeff 13572468-9abc-4def-8123-456789abcdef
    module nouveau
    pci pci0000:00/0000:00:00.0 8086 1237 060000 1af4:1100 - -
    pci pci0000:00/0000:00:10.0 10de 1eb8 030200 10de:12a2 nouveau -
}

for name in "${hosts[@]}"; do
    T=$here/$name
    rm -rf "$T"
    mkdir -p "$T"
    "host_${name//-/_}"
done
echo "wrote ${hosts[*]} under $here"

# tests/vm/cells/debian13-systemd-boot.sh: Debian 13 (Proxmox VE 9) booted
# by OVMF through the real systemd-boot, its ESP managed the Proxmox way.
# shellcheck shell=bash disable=SC2034 # the CELL_ variables are read by lib.sh and two-boot.sh
#
# The layout of a Proxmox VE ZFS-on-UEFI install: systemd-boot (Debian's
# package) on the ESP, the ESP not in fstab (proxmox-boot-tool mounts it
# when it needs it), /etc/kernel/proxmox-boot-uuids naming it by its vfat
# volume id, /etc/kernel/cmdline the kernel's arguments. Ours differs in
# the root: ext4, so `root=UUID=<ext4 UUID>` where Proxmox writes
# `root=ZFS=rpool/ROOT/pve-1 boot=zfs`. proxmox-boot-tool is our stand-in
# (tests/vm/standins/proxmox-boot-tool; its top says what it follows):
# the kernels and initrds are copied to EFI/proxmox/<version>/ and each
# loader entry's `options` line is /etc/kernel/cmdline.
#
# The image build runs the stand-in's `vm-init-dir` in a chroot of the
# tree: the real `bootctl install` (--no-variables) into the directory that
# becomes the ESP, loader.conf as `proxmox-boot-tool init` writes it, and
# the refresh's own code for the entries. Boot 1 thus boots through
# systemd-boot already; the agent then picks systemd-boot (UEFI,
# proxmox-boot-uuids, /etc/kernel/cmdline) and arms a trial boot: it mounts
# the ESP, writes loader/entries/vgpu-bake-trial.conf (the default entry
# with the IOMMU arguments) and runs the real `bootctl set-oneshot`;
# update-initramfs's post-update hook (proxmox-boot-sync) copies the new
# initrd to the ESP. Boot 2 is systemd-boot's one-shot of the trial entry
# (LoaderEntrySelected says so, LoaderEntryOneShot is gone); phase 2 commits:
# the arguments into /etc/kernel/cmdline, `proxmox-boot-tool refresh`
# rewrites the Proxmox entry, the trial entry is removed. Boot 3 boots the
# committed default. The kernel gets its arguments only from the entry
# systemd-boot reads.

CELL_SUITE=trixie
CELL_INCLUDE=$BASE_INCLUDE_DEFAULT,systemd-boot,systemd-boot-efi,dosfstools
CELL_PROFILE=profiles/demo-pve9.toml
BOOT_VIA=firmware
# The agent writes /etc/kernel/cmdline instead of a GRUB drop-in, and PVE 9's
# deb822 repository files instead of .list files.
CELL_BOOTLOADER=systemd-boot
CELL_STATE_FILES=(/etc/kernel/cmdline /etc/kernel/proxmox-boot-uuids
    /etc/apt/sources.list.d/pve-enterprise.sources
    /etc/apt/sources.list.d/ceph.sources
    /etc/apt/sources.list.d/pve-no-subscription.sources
    /etc/apt/sources.list.d/ceph-no-subscription.sources)

# systemd-boot's vendor GUID: the Loader* EFI variables it sets.
LOADER_GUID=4a67b082-0a4c-41cf-b6c7-440b29bb8c4f
# Where vm-init-dir stages the ESP inside the tree (removed afterwards).
ESP_STAGE=/var/tmp/vgpu-esp-stage

# The stand-in, under each name Proxmox's package installs its programs at.
install_boot_tool() {
    local src=$REPO/tests/vm/standins/proxmox-boot-tool path
    for path in /usr/local/sbin/proxmox-boot-tool \
        /etc/kernel/postinst.d/zz-proxmox-boot /etc/kernel/postrm.d/zz-proxmox-boot \
        /etc/initramfs/post-update.d/proxmox-boot-sync; do
        put "$path" 0755 <"$src"
    done
}

cell_tree() {
    # No GRUB here: a call to update-grub must fail (command not found).
    remove_grub_standins all
    install_boot_tool
    put /etc/fstab <<<"UUID=$ROOT_UUID / ext4 rw,errors=remount-ro 0 1"
    put /etc/kernel/cmdline <<<"root=UUID=$ROOT_UUID rw console=ttyS0"
    put /etc/kernel/proxmox-boot-uuids <<<"$ESP_UUID"
    # The agent's Proxmox hint (on a real host pmxcfs is mounted there).
    mkdir -p "$ROOT/etc/pve"
    # A fresh Proxmox VE 9 host's repositories (deb822, as its installer
    # writes them): Debian's, and the enterprise ones for PVE and Ceph Squid.
    rm -f "$ROOT/etc/apt/sources.list" "$ROOT"/etc/apt/sources.list.d/{pve-enterprise,ceph}.list
    put /etc/apt/sources.list.d/debian.sources <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian/
Suites: trixie trixie-updates
Components: main contrib non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.debian.org/debian-security/
Suites: trixie-security
Components: main contrib non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    put /etc/apt/sources.list.d/pve-enterprise.sources <<'EOF'
Types: deb
URIs: https://enterprise.proxmox.com/debian/pve
Suites: trixie
Components: pve-enterprise
Signed-By: /usr/share/keyrings/proxmox-archive-keyring.gpg
EOF
    put /etc/apt/sources.list.d/ceph.sources <<'EOF'
Types: deb
URIs: https://enterprise.proxmox.com/debian/ceph-squid
Suites: trixie
Components: enterprise
Signed-By: /usr/share/keyrings/proxmox-archive-keyring.gpg
EOF
    # Which entry systemd-boot booted, on the console (its LoaderEntrySelected
    # and LoaderInfo EFI variables: UTF-16 after 4 bytes of attributes;
    # efivarfs files cannot seek, so they are read through cat).
    put /usr/local/libexec/vgpu-vm-loader 0755 <<EOF
#!/bin/sh
var() { f=/sys/firmware/efi/efivars/\$1-$LOADER_GUID; [ -e "\$f" ] && cat "\$f" | tail -c +5 | tr -d '\\000'; }
echo "vgpu-loader: LoaderInfo=\$(var LoaderInfo) LoaderEntrySelected=\$(var LoaderEntrySelected) LoaderEntryOneShot=\$(var LoaderEntryOneShot)"
EOF
    put /etc/systemd/system/vgpu-vm-loader.service <<'EOF'
[Unit]
Description=vgpu-bake VM test: the entry systemd-boot booted, on the console
Before=vgpu-vm-harness.service

[Service]
Type=oneshot
ExecStart=/usr/local/libexec/vgpu-vm-loader
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
EOF
    ln -sf ../vgpu-vm-loader.service \
        "$ROOT/etc/systemd/system/multi-user.target.wants/vgpu-vm-loader.service"
}

# $1: the ESP staging directory. Debian's kernel is no proxmox-kernel
# package, so it is on the ESP through the manual list (`kernel add`), as a
# Proxmox host that boots a Debian kernel would have it.
cell_esp() {
    root_kver
    rm -rf "${ROOT:?}$ESP_STAGE"
    mkdir -p "$ROOT$ESP_STAGE"
    # A private mount namespace: vm-init-dir bind-mounts the staging
    # directory onto itself (a directory, not an image) for bootctl.
    unshare --mount --propagation private chroot "$ROOT" /bin/sh -c "
        proxmox-boot-tool kernel add '$KVER' && proxmox-boot-tool vm-init-dir '$ESP_STAGE'" \
        >"$WORK/esp-init.log" 2>&1 \
        || { cat "$WORK/esp-init.log" >&2; fail "proxmox-boot-tool vm-init-dir failed in the tree"; }
    cp -a "$ROOT$ESP_STAGE/." "$1/"
    rm -rf "${ROOT:?}$ESP_STAGE"
    if [ ! -f "$1/EFI/BOOT/BOOTX64.EFI" ] || [ ! -f "$1/loader/entries/proxmox-$KVER.conf" ]; then
        fail "the ESP has no systemd-boot or no loader entry: $(find "$1" | sort | paste -sd' ')"
    fi
}

# The options line of the loader entry systemd-boot boots.
entry_options() {
    esp_cat "/loader/entries/proxmox-$KVER.conf" | tr -d '\r' | sed -n 's/^options  *//p'
}

# The kernel's command line of the boot logged in $SERIAL (the kernel
# prints it first thing on the console).
booted_cmdline() { tr -d '\r' <"$SERIAL" | sed -n 's/.*Kernel command line: //p' | head -n 1; }

# The options line of the agent's trial entry on the ESP (empty when there
# is none).
trial_options() {
    esp_cat /loader/entries/vgpu-bake-trial.conf 2>/dev/null | tr -d '\r' | sed -n 's/^options  *//p'
}

# The image's first /etc/kernel/cmdline, and the IOMMU arguments the
# profile adds.
SHIPPED_CMDLINE="root=UUID=$ROOT_UUID rw console=ttyS0"
IOMMU_ARGS='intel_iommu=on iommu=pt'

# Fails unless systemd-boot booted the entry $3 (default: the Proxmox entry
# of the kernel; its own EFI variables say so), no one-shot is left (it
# deletes LoaderEntryOneShot when it uses it), and the kernel's whole
# command line is the `initrd=` systemd-boot adds and the options $2. $1
# names the boot.
check_loader_booted() {
    local loader cmdline entry=${3:-proxmox-$KVER.conf}
    loader=$(tr -d '\r' <"$SERIAL" | sed -n 's/.*vgpu-loader: //p' | tail -n 1)
    has "$loader" "LoaderInfo=systemd-boot" "$1: the loader's EFI variables"
    has "$loader" "LoaderEntrySelected=$entry " "$1: the loader's EFI variables"
    has "$loader" "LoaderEntryOneShot=" "$1: the loader's EFI variables"
    [ "${loader##*LoaderEntryOneShot=}" = "" ] || fail "$1: a one-shot entry is still set: $loader"
    cmdline=$(booted_cmdline)
    [ "$cmdline" = "initrd=\\EFI\\proxmox\\$KVER\\initrd.img-$KVER $2" ] \
        || fail "$1: the kernel's command line \"$cmdline\" is not systemd-boot's initrd= and the entry's options \"$2\""
}

# Fails unless the trial is over after boot $1: /etc/kernel/cmdline has the
# arguments, the Proxmox entry's options are that file (the refresh), the
# trial entry is gone from the ESP.
check_committed() {
    local options kcmdline
    options=$(entry_options)
    kcmdline=$(img_cat /etc/kernel/cmdline)
    [ "$kcmdline" = "$SHIPPED_CMDLINE $IOMMU_ARGS" ] \
        || fail "after boot $1: /etc/kernel/cmdline is \"$kcmdline\", expected the arguments committed"
    [ "$options" = "$kcmdline" ] \
        || fail "after boot $1: the loader entry's options \"$options\" are not /etc/kernel/cmdline \"$kcmdline\""
    check_no_trial_entry "after boot $1"
}

# Fails unless the trial entry is gone from the ESP after $1.
check_no_trial_entry() {
    ! grep -q vgpu-bake-trial <<<"$(esp_ls /loader/entries)" \
        || fail "$1: the trial entry is still on the ESP: $(esp_ls /loader/entries)"
}

# Fails unless /etc/kernel/cmdline and the Proxmox entry's options are the
# shipped ones after $1 (no arguments made the default).
check_sd_unchanged() {
    [ "$(img_cat /etc/kernel/cmdline)" = "$SHIPPED_CMDLINE" ] \
        || fail "$1: /etc/kernel/cmdline is \"$(img_cat /etc/kernel/cmdline)\", expected it unchanged until a trial boot comes up"
    [ "$(entry_options)" = "$SHIPPED_CMDLINE" ] \
        || fail "$1: the default entry's options are \"$(entry_options)\", expected them unchanged"
}

# Fails unless a trial is armed after $1: the defaults unchanged, the trial
# entry on the ESP with the arguments $2 after the shipped ones.
check_sd_armed() {
    check_sd_unchanged "$1"
    [ "$(trial_options)" = "$SHIPPED_CMDLINE $2" ] \
        || fail "$1: the trial entry's options are \"$(trial_options)\", expected \"$SHIPPED_CMDLINE $2\": $(esp_cat /loader/entries/vgpu-bake-trial.conf 2>&1)"
    say "$1: default entry options $(entry_options); trial entry options $(trial_options)"
}

# $1: which boot of a clean run this was (1 phase 1, 2 phase 2: the trial
# boot, 3 idle: the committed default).
cell_check_booted() {
    [ "$(esp_cat /loader/loader.conf | tr -d '\r' | grep '^default')" = "default proxmox-*" ] \
        || fail "loader.conf's default is not proxmox-*: $(esp_cat /loader/loader.conf)"
    case $1 in
        1)
            # Boot 1 booted the entry the image was built with. Phase 1
            # armed a trial: /etc/kernel/cmdline and the default entry are
            # unchanged, the trial entry on the ESP has the arguments
            # (`bootctl set-oneshot` named it: boot 2 shows it used).
            check_loader_booted "boot 1" "$SHIPPED_CMDLINE"
            check_sd_armed "after boot 1" "$IOMMU_ARGS"
            ;;
        2 | 3)
            # Boot 2: systemd-boot booted the trial entry once (the one-shot
            # used up), phase 2 committed. Boot 3: the committed default.
            if [ "$1" = 2 ]; then
                check_loader_booted "boot 2" "$SHIPPED_CMDLINE $IOMMU_ARGS" vgpu-bake-trial.conf
                has "$(tr -d '\r' <"$SERIAL")" "trial committed" "boot 2 console"
            else
                check_loader_booted "boot 3" "$SHIPPED_CMDLINE $IOMMU_ARGS"
            fi
            check_committed "$1"
            # The ESP's initrd is the one phase 1's update-initramfs built
            # (copied there by the post-update hook, proxmox-boot-sync).
            img_dump "/boot/initrd.img-$KVER" "$WORK/initrd.root"
            MTOOLS_SKIP_CHECK=1 mcopy -o -n -i "$IMG@@$ESP_OFFSET" \
                "::/EFI/proxmox/$KVER/initrd.img-$KVER" "$WORK/initrd.esp"
            cmp -s "$WORK/initrd.root" "$WORK/initrd.esp" \
                || fail "boot $1: the ESP's initrd differs from /boot/initrd.img-$KVER"
            ;;
    esac
}

# $1: the stand-ins' log.
cell_check_final() {
    has "$1" "proxmox-boot-tool refresh" "stand-in log (the kernel-args step)"
    has "$1" "proxmox-boot-sync $KVER" "stand-in log (update-initramfs's post-update hook)"
    has "$1" "zz-proxmox-boot: ESPs $ESP_UUID, kernels $KVER, options: root=UUID=$ROOT_UUID rw console=ttyS0 intel_iommu=on iommu=pt" \
        "stand-in log (the refresh)"
    ! grep -Eq '^(update-grub|mokutil)' <<<"$1" \
        || fail "a stand-in was called that this host should not need: $1"
    # The refresh disabled systemd-boot's own hooks, as Proxmox's does.
    has "$(img_cat /etc/kernel/postinst.d/zz-systemd-boot)" \
        "# This hookfile has been disabled by proxmox-boot-tool" "zz-systemd-boot"
    local kcmdline
    kcmdline=$(img_cat /etc/kernel/cmdline)
    [ "$(grep -o 'intel_iommu=on' <<<"$kcmdline" | wc -l)" -eq 1 ] \
        || fail "/etc/kernel/cmdline has intel_iommu=on other than once: $kcmdline"
}

# tests/vm/cells/debian12-grub.sh: Debian 12 booted by OVMF and real GRUB.
# shellcheck shell=bash disable=SC2034 # the CELL_ variables are read by lib.sh and two-boot.sh
#
# What a Debian 12 (Proxmox VE 8 on ext4) UEFI install has: grub-efi-amd64
# from the mirror (debootstrap --include), the ESP (vfat, /dev/vda1) mounted
# at /boot/efi, the root (ext4, /dev/vda2) named by UUID. GRUB's EFI image
# is built by the guest's own grub-mkimage (in a chroot of the tree: pure
# file work) with the early configuration grub-install embeds (find the root
# by UUID, prefix=($root)/boot/grub), placed at the removable-media path
# EFI/BOOT/BOOTX64.EFI, which OVMF boots with an empty boot order (as
# `grub-install --removable` does); the modules are copied to
# /boot/grub/x86_64-efi as grub-install would.
#
# The first grub.cfg: `update-grub` needs grub-probe to find the device
# under / and /boot, which a chroot of a directory does not have, so the
# image starts with a small hand-written grub.cfg (marked as such) that
# boots the kernel the way the installer's would. Phase 1's kernel-args step
# arms a trial boot: it copies that default entry with the IOMMU arguments
# into /etc/grub.d/42_vgpu-bake-trial, runs the REAL update-grub in the
# guest (grub-probe finds /dev/vda2 there) and `grub-reboot
# vgpu-bake-trial`. cell_check_booted 1 asserts grub-mkconfig's file
# replaced the hand-written one, its default entry unchanged, the trial
# entry there and grubenv's next_entry set; 2, that GRUB booted the trial
# entry once (its line on /proc/cmdline, next_entry emptied) and phase 2
# committed (the default entry has the arguments, the trial entry gone);
# 3, that the committed default booted. No update-grub stand-in.

CELL_SUITE=bookworm
CELL_INCLUDE=$BASE_INCLUDE_DEFAULT,grub-efi-amd64,dosfstools
CELL_PROFILE=profiles/demo.toml
BOOT_VIA=firmware
CELL_STATE_FILES=(/boot/grub/grub.cfg /etc/default/grub /etc/fstab)

# The marker of the hand-written first grub.cfg.
GRUB_FIRST_CFG='# vgpu-bake VM test: the first grub.cfg, hand-written by tests/vm/cells/debian12-grub.sh'

cell_tree() {
    # The real update-grub (grub2-common) replaces lib.sh's stand-in.
    remove_grub_standins
    [ -x "$ROOT/usr/sbin/update-grub" ] || fail "no /usr/sbin/update-grub in the tree: is grub-efi-amd64 in CELL_INCLUDE?"
    # /etc/default/grub as grub2-common ships it (lib.sh's add_host_files
    # wrote a short copy), with the serial console and no menu delay.
    cp "$BASE/etc/default/grub" "$ROOT/etc/default/grub"
    sed -i -e 's/^GRUB_CMDLINE_LINUX=""$/GRUB_CMDLINE_LINUX="console=ttyS0"/' \
        -e 's/^GRUB_TIMEOUT=5$/GRUB_TIMEOUT=0/' "$ROOT/etc/default/grub"
    if ! grep -qx 'GRUB_CMDLINE_LINUX="console=ttyS0"' "$ROOT/etc/default/grub" \
        || ! grep -qx 'GRUB_TIMEOUT=0' "$ROOT/etc/default/grub"; then
        fail "the shipped /etc/default/grub changed: cannot set GRUB_CMDLINE_LINUX and GRUB_TIMEOUT"
    fi
    put /etc/fstab <<EOF2
# <file system> <mount point> <type> <options> <dump> <pass>
UUID=$ROOT_UUID / ext4 errors=remount-ro 0 1
UUID=$ESP_UUID /boot/efi vfat umask=0077 0 1
EOF2
    mkdir -p "$ROOT/boot/efi"
    # The mokutil stand-in as the real one answers `--sb-state` on this
    # firmware (OVMF without Secure Boot); anything else is not expected.
    # shellcheck disable=SC2016 # expanded by the guest's shell
    put /usr/local/bin/mokutil 0755 <<'EOF2'
#!/bin/sh
# vgpu-bake VM test stand-in (not the real program).
log=/var/log/vgpu-standins.log
echo "mokutil${*:+ $*}" >>"$log"
sync "$log"
die() { echo "mokutil (stand-in): $*" >&2; echo "mokutil FAILED: $*" >>"$log"; exit 1; }
[ "$*" = --sb-state ] || die "unexpected arguments: $* (Secure Boot is off: nothing to enrol)"
[ -d /sys/firmware/efi/efivars ] || { echo "EFI variables are not supported on this system" >&2; exit 1; }
var=/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c
[ -r "$var" ] || { echo "This system doesn't support Secure Boot" >&2; exit 1; }
if [ "$(od -An -tu1 -j4 -N1 "$var" | tr -d ' ')" = 1 ]; then echo "SecureBoot enabled"; else echo "SecureBoot disabled"; fi
EOF2
    # What grub-install puts under /boot/grub.
    mkdir -p "$ROOT/boot/grub"
    cp -a "$ROOT/usr/lib/grub/x86_64-efi" "$ROOT/boot/grub/"
    root_kver
    put /boot/grub/grub.cfg <<EOF2
$GRUB_FIRST_CFG
# (update-grub cannot run in a chroot: grub-probe finds no device for /).
set default=0
set timeout=0
insmod part_gpt
insmod ext2
search --no-floppy --fs-uuid --set=root $ROOT_UUID
menuentry 'Debian GNU/Linux' {
	linux /boot/vmlinuz-$KVER root=UUID=$ROOT_UUID ro console=ttyS0 quiet
	initrd /boot/initrd.img-$KVER
}
EOF2
}

# GRUB's EFI image, made by the guest's grub-mkimage with grub-install's
# early configuration.
cell_esp() {
    local dir=$1
    cat >"$ROOT/tmp/grub-early.cfg" <<EOF2
search.fs_uuid $ROOT_UUID root
set prefix=(\$root)'/boot/grub'
EOF2
    chroot "$ROOT" grub-mkimage -O x86_64-efi -o /tmp/BOOTX64.EFI \
        -d /usr/lib/grub/x86_64-efi -p /boot/grub -c /tmp/grub-early.cfg \
        part_gpt part_msdos ext2 fat search search_fs_uuid normal configfile \
        || fail "grub-mkimage (in the tree) failed"
    mkdir -p "$dir/EFI/BOOT"
    mv "$ROOT/tmp/BOOTX64.EFI" "$dir/EFI/BOOT/BOOTX64.EFI"
    rm -f "$ROOT/tmp/grub-early.cfg"
}

# The default entry's `linux` line in the image's grub.cfg, without the
# word `linux`: the kernel's path, then its arguments.
grub_default_linux() {
    img_cat /boot/grub/grub.cfg | awk '$1 == "linux" && !found { found = 1; $1 = ""; sub(/^ +/, ""); print }'
}

# The `linux` line of the agent's trial entry (`menuentry ... --id
# vgpu-bake-trial {`, written by /etc/grub.d/42_vgpu-bake-trial), without
# the word `linux`; empty when grub.cfg has no trial entry.
grub_trial_linux() {
    img_cat /boot/grub/grub.cfg | awk '
        /^menuentry / && / --id vgpu-bake-trial \{$/ { in_trial = 1; next }
        in_trial && $1 == "}" { exit }
        in_trial && $1 == "linux" { $1 = ""; sub(/^ +/, ""); print; exit }'
}

# GRUB's one-shot: grubenv's next_entry (grub-reboot sets it; GRUB's
# 00_header empties it with save_env when it boots it).
grub_next_entry() {
    img_cat /boot/grub/grubenv | sed -n 's/^next_entry=//p'
}

# /proc/cmdline as the harness printed it on the console of the last boot.
harness_cmdline() {
    tr -d '\r' <"$SERIAL" | sed -n 's/.*vgpu-harness: cmdline: //p' | tail -n 1
}

# The kernel and arguments of the image's first grub.cfg, then the IOMMU
# arguments the demo profile adds.
grub_shipped_linux() { printf '%s' "/boot/vmlinuz-$KVER root=UUID=$ROOT_UUID ro console=ttyS0 quiet"; }
IOMMU_ARGS='intel_iommu=on iommu=pt'

# Fails unless the image's grub.cfg is grub-mkconfig's (the real
# update-grub ran in the guest, replacing the hand-written first file).
check_grub_cfg_generated() {
    local cfg
    cfg=$(img_cat /boot/grub/grub.cfg)
    ! grep -qF "$GRUB_FIRST_CFG" <<<"$cfg" || fail "$1: /boot/grub/grub.cfg is still the hand-written first one: update-grub did not run"
    has "$cfg" "# It is automatically generated by grub-mkconfig" "$1: /boot/grub/grub.cfg"
    has "$cfg" "### BEGIN /etc/grub.d/10_linux ###" "$1: /boot/grub/grub.cfg"
}

# Fails unless a trial is armed after $1: the default entry is the shipped
# one, the trial entry (after it) adds the arguments $2, grub-reboot set
# the one-shot to it, its script is in /etc/grub.d, no drop-in yet.
check_grub_armed() {
    local linux trial
    linux=$(grub_default_linux)
    trial=$(grub_trial_linux)
    [ "$linux" = "$(grub_shipped_linux)" ] \
        || fail "$1: the default entry boots \"$linux\", expected it unchanged until the trial boot comes up: $(grub_shipped_linux)"
    [ "$trial" = "$(grub_shipped_linux) $2" ] \
        || fail "$1: the trial entry boots \"$trial\", expected the default entry's line and $2"
    [ "$(grub_next_entry)" = vgpu-bake-trial ] \
        || fail "$1: grubenv's next_entry is \"$(grub_next_entry)\", expected vgpu-bake-trial: $(img_cat /boot/grub/grubenv | grep -v '^#')"
    img_exists /etc/grub.d/42_vgpu-bake-trial || fail "$1: no /etc/grub.d/42_vgpu-bake-trial"
    ! img_exists /etc/default/grub.d/vgpu-bake.cfg \
        || fail "$1: the GRUB drop-in is there before the trial: $(img_cat /etc/default/grub.d/vgpu-bake.cfg)"
    say "$1: default entry linux $linux; trial entry linux $trial; next_entry=vgpu-bake-trial"
}

# Fails unless no trial is left after $1: no trial entry in grub.cfg, no
# script in /etc/grub.d, no one-shot in grubenv.
check_grub_no_trial() {
    [ -z "$(grub_trial_linux)" ] || fail "$1: grub.cfg still has the trial entry: linux $(grub_trial_linux)"
    ! img_exists /etc/grub.d/42_vgpu-bake-trial || fail "$1: /etc/grub.d/42_vgpu-bake-trial is still there"
    [ -z "$(grub_next_entry)" ] || fail "$1: grubenv's next_entry is \"$(grub_next_entry)\", expected empty (the one-shot used up)"
}

# Fails unless the trial committed (after $1): the default entry has the
# IOMMU arguments, no trial left.
check_grub_committed() {
    local linux
    linux=$(grub_default_linux)
    [ "$linux" = "$(grub_shipped_linux) $IOMMU_ARGS" ] \
        || fail "$1: the default entry of /boot/grub/grub.cfg boots \"$linux\", expected the IOMMU args after the shipped ones (the trial committed)"
    check_grub_no_trial "$1"
}

# $1: which boot of a clean run this was (1 phase 1, 2 phase 2: the trial
# boot, 3 idle: the committed default).
cell_check_booted() {
    local linux cmdline
    check_grub_cfg_generated "after boot $1"
    linux=$(grub_default_linux)
    cmdline=$(harness_cmdline)
    case $1 in
        1)
            # OVMF has EFI variables (the agent sees UEFI) and no Secure
            # Boot: the secure-boot step has nothing to do, mokutil is not
            # needed.
            has "$(tr -d '\r' <"$SERIAL")" "Secure Boot is off" "boot 1 console (step secure-boot)"
            # Boot 1 ran from the hand-written file (the harness may not get
            # to print before the agent's reboot).
            [ -z "$cmdline" ] || [ "$cmdline" = "BOOT_IMAGE=$(grub_shipped_linux)" ] \
                || fail "boot 1: /proc/cmdline is \"$cmdline\", expected the first grub.cfg's"
            # Phase 1 armed a trial.
            check_grub_armed "after boot 1" "$IOMMU_ARGS"
            ;;
        2)
            # GRUB booted the trial entry (its line is what boot 1 left:
            # the default entry with the arguments); GRUB consumed the
            # one-shot; phase 2 committed and removed the entry.
            [ "$cmdline" = "BOOT_IMAGE=$(grub_shipped_linux) $IOMMU_ARGS" ] \
                || fail "boot 2: /proc/cmdline is \"$cmdline\", expected the trial entry's: BOOT_IMAGE=$(grub_shipped_linux) $IOMMU_ARGS"
            has "$(tr -d '\r' <"$SERIAL")" "trial boot came up" "boot 2 console"
            has "$(tr -d '\r' <"$SERIAL")" "trial committed" "boot 2 console"
            check_grub_committed "after boot 2"
            ;;
        3)
            # GRUB's default entry, word for word (only GRUB adds
            # BOOT_IMAGE=), which is the committed one.
            check_grub_committed "after boot 3"
            [ "$cmdline" = "BOOT_IMAGE=$linux" ] \
                || fail "boot 3: /proc/cmdline is \"$cmdline\", expected GRUB's default entry: BOOT_IMAGE=$linux"
            ;;
    esac
    say "boot $1: grub.cfg's default entry: linux $linux"
}

# $1: the stand-ins' log. update-grub is the real one (no stand-in to log
# it); Secure Boot is off, so nothing calls mokutil; GRUB without
# proxmox-boot-uuids, so nothing calls proxmox-boot-tool.
cell_check_final() {
    ! grep -Eq '^(update-grub|proxmox-boot-tool|mokutil)' <<<"$1" \
        || fail "a stand-in was called that this host should not need: $1"
    [ "$(grep -c 'intel_iommu=on' <<<"$(grub_default_linux)")" -eq 1 ] \
        || fail "grub.cfg's default entry: $(grub_default_linux)"
}

# tests/vm/cells/kernel.sh: Debian 12 booted with qemu's -kernel/-append.
# shellcheck shell=bash disable=SC2034 # the CELL_ variables are read by lib.sh and two-boot.sh
# No boot loader in the guest: the update-grub stand-in (lib.sh's
# add_standins) evaluates the GRUB settings and writes the kernel command
# line to /boot/grub/grub.cfg; start_boot reads it back and passes it with
# -append. The boot path the VM test had before the firmware cells; fast,
# and what rollout.sh, undo.sh and upgrade.sh still use.

CELL_SUITE=bookworm
CELL_INCLUDE=$BASE_INCLUDE_DEFAULT
CELL_PROFILE=profiles/demo.toml
BOOT_VIA=kernel
CELL_STATE_FILES=(/boot/grub/grub.cfg)

cell_tree() { :; }          # the stand-ins are all it needs
cell_esp() { fail "cell kernel has no ESP"; }

# $1: which boot of a clean run this was (1 phase 1, 2 phase 2, 3 idle).
cell_check_booted() {
    local cmdline
    cmdline=$(tr -d '\r' <"$SERIAL" | sed -n 's/.*vgpu-harness: cmdline: //p' | tail -n 1)
    case $1 in
        1) [ -z "$cmdline" ] || has "$cmdline" "root=/dev/vda" "boot 1 /proc/cmdline" ;;
        2 | 3)
            [ "$(grub_args)" = "intel_iommu=on iommu=pt" ] \
                || fail "update-grub (stand-in) produced \"$(grub_args)\", expected the drop-in's args"
            has "$cmdline" "intel_iommu=on iommu=pt" "boot $1 /proc/cmdline"
            ;;
    esac
}

# $1: the stand-ins' log.
cell_check_final() {
    has "$1" "update-grub args: quiet intel_iommu=on iommu=pt" "stand-in log (update-grub)"
    ! grep -Eq '^(proxmox-boot-tool|mokutil)' <<<"$1" \
        || fail "a stand-in was called that this host should not need: $1"
}

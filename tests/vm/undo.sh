#!/usr/bin/env bash
# tests/vm/undo.sh: the demo bundle provisions a real Debian 12 VM (two
# boots), then `vgpu-firstboot undo` reverts it, and after a reboot the
# IOMMU arguments are gone from /proc/cmdline and the offline package is
# gone (`dpkg -s hello` fails).
#
#   bash tests/vm/undo.sh
#
# Runs as root, like tests/vm/two-boot.sh, and builds its image the same way
# (tests/vm/lib.sh: debootstrap tree, stand-ins, `vgpu-bake install`,
# mkfs.ext4 -d, qemu under TCG). The boots:
#   1. phase 1 (the agent reboots);
#   2. phase 2 (the plan is done; the harness powers off);
#   then the harness writes /etc/vgpu-vm-undo-now into the image (debugfs);
#   3. a test unit, ordered after the agent's and before the harness's,
#      finds that file, removes it and runs `vgpu-firstboot undo` (real
#      apt-get purge, systemctl disable, the demo driver's uninstaller,
#      update-initramfs; update-grub is the lib.sh stand-in, which writes
#      /boot/grub/grub.cfg, the kernel command line the next boot uses);
#   4. the harness prints /proc/cmdline and the test unit `dpkg -s hello`.
#
# Environment: VGPU_VM_WORK (default target/vm-undo; the debootstrap tree of
# target/vm/base is reused when there), VGPU_VM_BOOT_TIMEOUT (default 900).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${VGPU_VM_WORK:-$REPO/target/vm-undo}
BOOT_TIMEOUT=${VGPU_VM_BOOT_TIMEOUT:-900}
[ $# -eq 0 ] || { echo "usage: $0" >&2; exit 2; }

export DEBIAN_FRONTEND=noninteractive
ROOT=$WORK/root
IMG=$WORK/disk.img
SERIALS=()
T0=$SECONDS

# shellcheck source=tests/vm/lib.sh
. "$REPO/tests/vm/lib.sh"

# The undo trigger and the check, one unit: `undo` once when the harness
# asked for it, then (every boot after an undo) whether hello is installed.
add_undo_unit() {
    put /usr/local/libexec/vgpu-vm-undo 0755 <<'EOF'
#!/bin/sh
if [ -e /etc/vgpu-vm-undo-now ]; then
    rm -f /etc/vgpu-vm-undo-now
    sync
    /usr/local/sbin/vgpu-firstboot undo >/var/log/vgpu-vm-undo.log 2>&1
    echo "vgpu-vm-undo: exit $?" >>/var/log/vgpu-vm-undo.log
    sed 's/^/vgpu-vm-undo: /' /var/log/vgpu-vm-undo.log
    sync
fi
if [ -e /var/lib/vgpu-firstboot/undone ]; then
    dpkg -s hello >/dev/null 2>&1
    echo "vgpu-vm-undo: dpkg -s hello: exit $?"
fi
EOF
    put /etc/systemd/system/vgpu-vm-undo.service <<'EOF'
[Unit]
Description=vgpu-bake VM test: vgpu-firstboot undo when asked
After=vgpu-firstboot.service
Before=vgpu-vm-harness.service

[Service]
Type=oneshot
ExecStart=/usr/local/libexec/vgpu-vm-undo
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
EOF
    ln -sf ../vgpu-vm-undo.service \
        "$ROOT/etc/systemd/system/multi-user.target.wants/vgpu-vm-undo.service"
}

make_image() {
    say "copying the tree, adding stand-ins, making the ext4 image"
    rm -rf "$ROOT" "$IMG"
    : >"$WORK/last-serials"
    mkdir -p "$ROOT"
    cp -a "$BASE/." "$ROOT"
    add_host_files
    add_standins
    add_harness_unit
    add_undo_unit
    say "baking profiles/demo.toml and installing the bundle onto the tree"
    local bundle
    bundle=$("$REPO/target/release/vgpu-bake" bake "$REPO/profiles/demo.toml" \
        --out "$WORK/out" --cache "$WORK/cache" | tail -n 1)
    [ -f "$bundle" ] || fail "vgpu-bake bake printed no bundle path"
    "$REPO/target/release/vgpu-bake" install "$bundle" --root "$ROOT" >"$WORK/install.log"
    image_from_root
}

# The files the plan changes, as the image has them (a missing file is
# printed as such).
snapshot() {
    local f
    for f in /etc/apt/sources.list.d/pve-enterprise.list \
        /etc/apt/sources.list.d/ceph.list \
        /etc/apt/sources.list.d/pve-no-subscription.list \
        /etc/apt/sources.list.d/ceph-no-subscription.list \
        /etc/default/grub /etc/default/grub.d/vgpu-bake.cfg \
        /etc/modules-load.d/vgpu-bake-vfio.conf \
        /etc/modprobe.d/vgpu-bake-blacklist.conf \
        /var/lib/vgpu-demo/installed /usr/lib/vgpu-demo/nvidia-installer \
        /var/lib/prometheus/node-exporter/vgpu-firstboot.prom \
        /etc/systemd/system/multi-user.target.wants/nvidia-vgpud.service \
        /etc/systemd/system/multi-user.target.wants/nvidia-vgpu-mgr.service \
        /usr/bin/hello; do
        if img_exists "$f"; then
            echo "# $f"
            img_cat "$f" | head -c 2000
        else
            echo "# $f: absent"
        fi
    done
}

main() {
    [ "$(id -u)" -eq 0 ] || { echo "$0: run as root" >&2; exit 2; }
    mkdir -p "$WORK"
    install_tools
    build_binaries
    if [ ! -e "$WORK/base/etc/os-release" ] && [ -e "$REPO/target/vm/base/etc/os-release" ]; then
        rm -rf "$WORK/base"
        ln -s ../vm/base "$WORK/base"
    fi
    debootstrap_base
    make_image
    snapshot >"$WORK/before.txt"

    boot 1
    has "$(tr -d '\r' <"$SERIAL")" "vgpu-firstboot: rebooting:" "boot 1 console"
    boot 2
    has "$(tr -d '\r' <"$SERIAL")" "plan demo complete" "boot 2 console"
    has "$(tr -d '\r' <"$SERIAL")" "intel_iommu=on iommu=pt" "boot 2 console (/proc/cmdline)"
    img_exists /usr/bin/hello || fail "hello was not installed"
    img_exists /var/lib/vgpu-demo/installed || fail "the demo driver was not installed"

    say "asking for undo at the next boot"
    echo now >"$WORK/undo-now"
    debugfs -w -R "write $WORK/undo-now /etc/vgpu-vm-undo-now" "$IMG" >/dev/null 2>&1
    img_exists /etc/vgpu-vm-undo-now || fail "cannot write the undo trigger into the image"
    local t_undo=$SECONDS
    boot 3-undo
    local text
    text=$(tr -d '\r' <"$SERIAL")
    has "$text" "vgpu-vm-undo: vgpu-firstboot: undone:" "boot 3 console (undo)"
    has "$text" "vgpu-vm-undo: reboot needed: yes, because the running kernel still has intel_iommu=on iommu=pt" "boot 3 console (undo)"
    has "$text" "vgpu-vm-undo: exit 0" "boot 3 console (undo)"
    agent_ran "$SERIAL" && fail "the agent ran in boot 3"
    local undo_secs=$((SECONDS - t_undo))
    say "undo boot took ${undo_secs}s; the undo's output:"
    img_cat /var/log/vgpu-vm-undo.log | sed 's/^/    /'

    boot 4
    text=$(tr -d '\r' <"$SERIAL")
    local cmdline
    cmdline=$(grep -m1 'vgpu-harness: cmdline:' <<<"$text") || fail "boot 4: no cmdline line"
    say "boot 4 $cmdline"
    ! grep -Eq 'intel_iommu|amd_iommu|iommu=pt' <<<"$cmdline" \
        || fail "boot 4: /proc/cmdline still has IOMMU arguments: $cmdline"
    has "$text" "vgpu-vm-undo: dpkg -s hello: exit 1" "boot 4 console (hello purged)"
    agent_ran "$SERIAL" && fail "the agent ran in boot 4"

    # Every file the plan changed is as it was before the agent.
    snapshot >"$WORK/after.txt"
    diff -u "$WORK/before.txt" "$WORK/after.txt" \
        || fail "the files after undo differ from before the agent (diff above)"
    ! img_exists /etc/systemd/system/multi-user.target.wants/vgpu-firstboot.service \
        || fail "the agent's unit is enabled again"
    img_exists /var/lib/vgpu-firstboot/undone || fail "no undone marker"
    img_exists /var/lib/vgpu-firstboot/journal.undone/changes || fail "the journal was not moved aside"
    ! img_exists /var/lib/vgpu-firstboot/journal/changes || fail "the journal is still in place"
    has "$(img_cat /var/log/vgpu-demo-installer.log)" "uninstall" "demo installer log"
    say "PASS (undo) in $((SECONDS - T0))s"
}

main "$@"; exit

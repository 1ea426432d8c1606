#!/usr/bin/env bash
# tests/vm/upgrade.sh: a Debian 12 VM provisioned by the demo bundle (driver
# 1.0) is upgraded to the demo-1.1 bundle (driver 1.1) with
# `vgpu-firstboot upgrade`.
#
#   bash tests/vm/upgrade.sh
#
# As tests/vm/two-boot.sh (whose lib.sh it uses): root, the Debian mirror
# reachable, qemu under TCG, an ext4 image made with mkfs.ext4 -d. The base
# tree adds zstd to the default --include list (a Proxmox VE host has it),
# since the guest lays the new bundle the way an operator does on a host
# without the builder: `zstd -dc B.cpio.zst | cpio -idmu` in / (README
# "Upgrade"), then `vgpu-firstboot upgrade`.
#
# Boots:
#   1  phase 1 of the demo plan, the agent reboots
#   2  phase 2, done, the harness powers off
#   3  the test unit (ordered before the agent's, so it runs only once the
#      done marker of boot 2 exists) lays the demo-1.1 bundle and runs
#      `vgpu-firstboot upgrade`: the 1.0 driver is removed with its own
#      uninstaller, 1.1 installed, no reboot; the harness powers off
#   4  nothing runs: neither the agent nor the test unit
#
# Environment: VGPU_VM_WORK (default target/vm-upgrade), VGPU_VM_BOOT_TIMEOUT
# (seconds per boot, default 900).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${VGPU_VM_WORK:-$REPO/target/vm-upgrade}
BOOT_TIMEOUT=${VGPU_VM_BOOT_TIMEOUT:-900}
[ $# -eq 0 ] || { echo "usage: $0" >&2; exit 2; }

export DEBIAN_FRONTEND=noninteractive
ROOT=$WORK/root
IMG=$WORK/disk.img
SERIALS=()
T0=$SECONDS

# shellcheck source=tests/vm/lib.sh
. "$REPO/tests/vm/lib.sh"

BASE_INCLUDE=$BASE_INCLUDE_DEFAULT,zstd
HARNESS_UNITS="vgpu-upgrade-test.service vgpu-firstboot.service"
BAKE=$REPO/target/release/vgpu-bake
NEW=/root/vgpu-upgrade/demo-1.1.cpio.zst

# The test unit: lays the newer bundle and upgrades, once.
add_upgrade_unit() {
    put /usr/local/libexec/vgpu-vm-upgrade 0755 <<EOF
#!/bin/sh
# What an operator does on the host: lay the bundle, then upgrade.
cd / || exit 1
zstd -dc $NEW | cpio -idmu --quiet || { echo "vgpu-upgrade: laying the bundle failed"; exit 1; }
mv $NEW $NEW.laid
sync
echo "vgpu-upgrade: bundle laid"
/usr/local/sbin/vgpu-firstboot upgrade
echo "vgpu-upgrade: upgrade exit \$?"
/usr/local/sbin/vgpu-firstboot status
echo "vgpu-upgrade: status exit \$?"
sync
EOF
    put /etc/systemd/system/vgpu-upgrade-test.service <<EOF
[Unit]
Description=vgpu-bake VM test: lay the demo-1.1 bundle, vgpu-firstboot upgrade
Before=vgpu-firstboot.service
ConditionPathExists=/var/lib/vgpu-firstboot/done
ConditionPathExists=$NEW

[Service]
Type=oneshot
ExecStart=/usr/local/libexec/vgpu-vm-upgrade
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
EOF
    ln -sf ../vgpu-upgrade-test.service \
        "$ROOT/etc/systemd/system/multi-user.target.wants/vgpu-upgrade-test.service"
}

make_image() {
    say "copying the tree, adding stand-ins, baking demo and demo-1.1, making the image"
    rm -rf "$ROOT" "$IMG"
    cp -a "$BASE" "$ROOT"
    add_host_files
    add_standins
    add_harness_unit
    add_upgrade_unit
    local old new
    old=$("$BAKE" bake "$REPO/profiles/demo.toml" --out "$WORK/out" --cache "$WORK/cache" | tail -n 1)
    new=$("$BAKE" bake "$REPO/profiles/demo-1.1.toml" --out "$WORK/out" --cache "$WORK/cache" | tail -n 1)
    [ -f "$old" ] && [ -f "$new" ] || fail "vgpu-bake bake printed no bundle path"
    "$BAKE" install "$old" --root "$ROOT" >"$WORK/install.log"
    mkdir -p "$ROOT/root/vgpu-upgrade"
    cp "$new" "$ROOT$NEW"
    image_from_root
}

console() { tr -d '\r' <"$SERIAL"; }

main() {
    [ "$(id -u)" -eq 0 ] || { echo "$0: run as root" >&2; exit 2; }
    mkdir -p "$WORK"
    install_tools
    build_binaries
    debootstrap_base
    make_image

    boot 1
    has "$(console)" "vgpu-firstboot: rebooting:" "boot 1 console"
    boot 2
    has "$(console)" "plan demo complete" "boot 2 console"
    ! grep -q 'vgpu-upgrade:' <<<"$(console)" || fail "the upgrade unit ran in boot 2"
    has "$(img_cat /var/lib/vgpu-demo/installed)" "version=1.0-demo" "demo driver marker after boot 2"

    boot 3
    local text t3=$((SECONDS - BOOT_T))
    text=$(console)
    has "$text" "vgpu-upgrade: bundle laid" "boot 3 console"
    has "$text" "upgrade from plan demo (sha256 " "boot 3 console"
    has "$text" "removed the earlier vGPU host driver 1.0-demo" "boot 3 console"
    has "$text" "installed the vGPU host driver 1.1-demo" "boot 3 console"
    has "$text" "vgpu-firstboot: upgrade: done" "boot 3 console"
    has "$text" "vgpu-upgrade: upgrade exit 0" "boot 3 console"
    has "$text" "vgpu-upgrade: status exit 0" "boot 3 console"
    has "$text" "vgpu-harness: powering off" "boot 3 console (no reboot)"
    ! grep -q 'vgpu-firstboot: rebooting' <<<"$text" || fail "the upgrade rebooted"

    say "reading the results back from the image"
    local demo state
    demo=$(img_cat /var/log/vgpu-demo-installer.log)
    [ "$(grep -oE 'version=[^ ]+ patched=[^ ]+ (install|uninstall)' <<<"$demo" | awk '{print $1, $3}' | paste -sd,)" \
        = "version=1.0-demo install,version=1.0-demo uninstall,version=1.1-demo install" ] \
        || fail "the demo installer log is not: 1.0 install, 1.0 uninstall, 1.1 install: $demo"
    has "$(img_cat /var/lib/vgpu-demo/installed)" "version=1.1-demo" "demo driver marker"
    has "$(img_cat /var/lib/vgpu-firstboot/done)" "demo-1.1" "done marker"
    state=$(img_cat /var/lib/vgpu-firstboot/state.toml)
    grep -A1 '^\[status\]' <<<"$state" | grep -qx 'state = "done"' \
        || fail "state.toml status is not done: $state"
    grep -qx 'reboots = 0' <<<"$state" || fail "state.toml records reboots: $state"
    local archived
    archived=$(debugfs -R "ls -l /var/lib/vgpu-firstboot/history" "$IMG" 2>/dev/null \
        | grep -oE '1-demo-[0-9a-f]{8}\.state\.toml' | head -n 1)
    [ -n "$archived" ] || fail "no /var/lib/vgpu-firstboot/history/1-demo-*.state.toml"
    grep -A1 '^\[status\]' <<<"$(img_cat "/var/lib/vgpu-firstboot/history/$archived")" \
        | grep -qx 'state = "done"' || fail "the archived state is not the done demo state"
    ! img_exists /etc/systemd/system/multi-user.target.wants/vgpu-firstboot.service \
        || fail "the agent's .wants link is still there"

    boot 4
    text=$(console)
    ! agent_ran "$SERIAL" || fail "the agent ran in boot 4"
    ! grep -q 'vgpu-upgrade:' <<<"$text" || fail "the upgrade unit ran in boot 4"
    has "$text" "vgpu-harness: powering off" "boot 4 console"
    say "upgrade boot: ${t3}s"
    say "PASS (upgrade demo 1.0 -> 1.1) in $((SECONDS - T0))s"
}

# On one line, so bash has read the exit before it runs main.
main "$@"; exit

#!/usr/bin/env bash
# tests/vm/negative.sh: a host the plan cannot finish on; the agent must
# stop with advice, not loop, and leave a guest that still boots.
#
#   bash tests/vm/negative.sh --case no-viommu
#
# Cases (one function each, case_<name with _ for ->):
# - no-viommu: the Debian 12 GRUB cell (tests/vm/cells/debian12-grub.sh)
#   on a machine without an IOMMU (qemu without intel-iommu: VT-d off in
#   the firmware, as far as the guest can tell). Phase 1 runs and reboots
#   once (without the kernel arguments a reboot may turn the IOMMU on); at
#   boot 2 (the trial boot) GRUB gives the arguments, there are still no
#   IOMMU groups, and the agent fails with the firmware advice, ends the
#   trial (the default entry never gets the arguments) and does not reboot
#   again. A
#   later boot must not run phase 1 again nor reboot: the agent reports the
#   earlier failure and stops; the guest gets to its login prompt.
# - pve8-on-debian13: the Debian 13 systemd-boot cell's guest
#   (tests/vm/cells/debian13-systemd-boot.sh) with the demo profile baked
#   for Proxmox VE 8 (profiles/demo.toml). The host gate refuses before
#   any change: the guest's files (/etc, /boot, /usr/local, /var/lib; see
#   GUEST_CHURN for what the guest's own boot changes) and the ESP are as
#   the image was built, nothing reboots, the console shows the gate's
#   reason, and the guest reaches its login prompt, at a second boot too.
# - trial-fail: the Debian 12 GRUB cell with profiles/demo-trial-fail.toml,
#   whose extra kernel arguments (rdinit= and init= of a program that does
#   not exist) make any boot with them panic. Boot 1: phase 1 arms the trial
#   boot (a GRUB entry with the arguments, `grub-reboot` to it) and reboots.
#   Boot 2: GRUB boots the trial entry once and the kernel panics (the
#   harness stops qemu: a power-cycle). Boot 3: GRUB boots the old default,
#   which never got the arguments; the agent reports that the trial did not
#   come up and what it was (console, `vgpu-firstboot status`), removes the
#   trial entry and does not reboot. Boot 4: nothing runs, nothing reboots.
# - trial-fail-systemd-boot: the same on the Debian 13 systemd-boot cell
#   (the trial is a loader entry on the ESP, `bootctl set-oneshot`), with
#   demo-pve9.toml plus the same arguments (a copy in the case's directory).
#
# The harness boots until the guest powers itself off (at most MAX_BOOTS),
# then once more. Runs as root like two-boot.sh, with its tools; the
# debootstrap trees are shared with it ($VGPU_VM_WORK, default target/vm),
# the images are kept apart ($VGPU_VM_WORK/negative-<case>).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
TOP=${VGPU_VM_WORK:-$REPO/target/vm}
BOOT_TIMEOUT=${VGPU_VM_BOOT_TIMEOUT:-900}
MAX_BOOTS=4
CASE=
usage() {
    echo "usage: $0 --case no-viommu|pve8-on-debian13|trial-fail|trial-fail-systemd-boot" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case $1 in
        --case)
            CASE=${2:-}
            shift
            ;;
        *) usage ;;
    esac
    shift
done
[[ $CASE =~ ^[a-z0-9][a-z0-9-]*$ ]] || usage
CASE_FN=case_${CASE//-/_}

export DEBIAN_FRONTEND=noninteractive
WORK=$TOP/negative-$CASE
BASE_CACHE=$TOP
ROOT=$WORK/root
IMG=$WORK/disk.img
SERIALS=()
T0=$SECONDS

# shellcheck source=tests/vm/lib.sh
. "$REPO/tests/vm/lib.sh"

# shellcheck disable=SC2317 # the case functions are called by name, and call these
# Every console line of the boots in $@ that matches the extended regex $1,
# counted.
count_lines() {
    local re=$1
    shift
    cat "$@" | tr -d '\r' | grep -Ec -- "$re" || true
}

# shellcheck disable=SC2317
# A boot after the failure: the agent does nothing but report it, the unit
# stays failed, the guest reaches its login prompt and powers off (harness).
check_failed_and_idle() {
    local log=$1 name=$2 text
    text=$(tr -d '\r' <"$log")
    [ "$(boot_end "$log")" = poweroff ] || fail "$name: did not end with the harness's power-off"
    has "$text" "vgpu-harness: getty.target: active" "$name (the guest reached its login prompt)"
    has "$text" "vgpu-harness: vgpu-firstboot.service: ActiveState=failed" "$name (the agent's unit)"
    has "$text" "vgpu-harness: status: vgpu-firstboot: FAILED at step" "$name (vgpu-firstboot status)"
    has "$text" "vgpu-harness: status:   next: fix the cause, then run \`vgpu-firstboot retry\`" "$name (vgpu-firstboot status)"
    ! grep -q 'vgpu-firstboot: rebooting:' <<<"$text" || fail "$name: the agent asked for a reboot"
}

# ------------------------------------------------------------------ cases

# shellcheck disable=SC2317 # called by name ("$CASE_FN")
case_no_viommu() {
    load_cell debian12-grub
    VIOMMU=0 HARNESS_STATUS=1
    install_tools
    build_binaries
    debootstrap_base
    cell_make_image
    boot_until_poweroff "$MAX_BOOTS" nv
    [ "${BOOT_ENDS[*]}" = "reboot poweroff" ] \
        || fail "expected boot 1 to end with the agent's reboot and boot 2 with a power-off, got: ${BOOT_ENDS[*]}"
    local b1=${SERIALS[0]} b2=${SERIALS[1]} t1 t2
    t1=$(tr -d '\r' <"$b1")
    t2=$(tr -d '\r' <"$b2")

    # Boot 1: phase 1, then the one reboot.
    has "$t1" "vgpu-firstboot: step kernel-args:" "boot 1 console"
    has "$t1" "vgpu-firstboot: step initramfs:" "boot 1 console"
    has "$t1" "vgpu-firstboot: rebooting:" "boot 1 console"

    # Boot 2: the trial boot; GRUB gave the arguments (the loader is not
    # the problem), the kernel found no IOMMU, the agent failed with the
    # firmware advice and ended the trial (its entry removed, the default
    # unchanged).
    SERIAL=$b2
    [ "$(harness_cmdline)" = "BOOT_IMAGE=$(grub_shipped_linux) intel_iommu=on iommu=pt" ] \
        || fail "boot 2: /proc/cmdline is \"$(harness_cmdline)\", expected the trial entry's"
    has "$t2" "iommu_groups=0" "boot 2 console (harness)"
    has "$t2" "vgpu-firstboot: step verify-reboot failed: IOMMU is off: enable VT-d" "boot 2 console"
    ! grep -q 'vgpu-firstboot: step reboot failed' <<<"$t2" \
        || fail "boot 2: the reboot step failed, not verify-reboot (which ends the trial)"
    has "$t2" "vgpu-harness: status:   cause: IOMMU is off: enable VT-d" "boot 2 (vgpu-firstboot status)"
    check_failed_and_idle "$b2" "boot 2"

    # One more boot: nothing runs again, nothing reboots.
    boot nv-3
    local b3=$SERIAL t3
    t3=$(tr -d '\r' <"$b3")
    check_failed_and_idle "$b3" "boot 3"
    has "$t3" "failed earlier: IOMMU is off" "boot 3 console"
    ! grep -Eq 'vgpu-firstboot: step [a-z-]+: ' <<<"$t3" || fail "boot 3: the agent ran a step again: $(grep -E 'vgpu-firstboot: step [a-z-]+: ' <<<"$t3")"

    # Across the three boots: one reboot, the agent's (it prints its
    # `rebooting:` line twice for one request: when it asks, and as the
    # run's end; so boots with the line are counted).
    local reboots requests
    reboots=$(count_lines 'reboot: Restarting system' "${SERIALS[@]}")
    requests=$(grep -l 'vgpu-firstboot: rebooting:' "${SERIALS[@]}" | wc -l)
    if [ "$reboots" -ne 1 ] || [ "$requests" -ne 1 ]; then
        fail "expected exactly 1 reboot (the agent's): the consoles show $reboots reboots, $requests asked by the agent"
    fi
    local state
    state=$(img_cat /var/lib/vgpu-firstboot/state.toml)
    grep -qx 'reboots = 1' <<<"$state" || fail "state.toml does not record exactly 1 reboot: $(grep '^reboots' <<<"$state")"
    grep -A1 '^\[status\]' <<<"$state" | grep -qx 'state = "failed"' \
        || fail "state.toml status is not failed: $(grep -A3 '^\[status\]' <<<"$state")"
    # The trial's arguments never became the default (boot 3 booted the
    # old default: the unit fails at each boot without doing anything);
    # the unit stays enabled.
    trial_old_default_grub "boot 3"
    trial_gone_grub "after boot 3"
    img_exists /etc/systemd/system/multi-user.target.wants/vgpu-firstboot.service \
        || fail "the agent's unit is no longer enabled"
    ! img_exists /var/lib/vgpu-firstboot/done || fail "a done marker exists"
    say "boots: 3 (${BOOT_ENDS[*]} poweroff), reboots: $reboots, the agent's: $requests"
}

# The bad arguments of profiles/demo-trial-fail.toml (after the IOMMU
# ones, as the agent adds them).
TRIAL_BAD='rdinit=/nonexistent-vgpu-trial init=/nonexistent-vgpu-trial panic=5'
TRIAL_ARGS="intel_iommu=on iommu=pt $TRIAL_BAD"

# shellcheck disable=SC2317 # called by name ("$CASE_FN")
case_trial_fail() {
    load_cell debian12-grub
    CELL_PROFILE=profiles/demo-trial-fail.toml
    trial_fail_flow GRUB "Debian GNU/Linux"
}

# shellcheck disable=SC2317 # called by name ("$CASE_FN")
case_trial_fail_systemd_boot() {
    load_cell debian13-systemd-boot
    # profiles/demo-trial-fail.toml is for Proxmox VE 8: the same bad
    # arguments on demo-pve9.toml, written beside its offline package.
    mkdir -p "$WORK/profile/demo"
    cp "$REPO/profiles/demo/hello_2.10-3_amd64.deb" "$WORK/profile/demo/"
    sed -e 's/^name = "demo-pve9"$/name = "demo-trial-fail-pve9"/' \
        -e "/^offline-debs = /i kernel-args = [\"${TRIAL_BAD// /\", \"}\"]" \
        "$REPO/profiles/demo-pve9.toml" >"$WORK/profile/demo-trial-fail-pve9.toml"
    grep -q '^kernel-args = \["rdinit=' "$WORK/profile/demo-trial-fail-pve9.toml" \
        || fail "could not add kernel-args to a copy of profiles/demo-pve9.toml"
    CELL_PROFILE=$WORK/profile/demo-trial-fail-pve9.toml
    trial_fail_flow systemd-boot "Proxmox Virtual Environment"
}

# shellcheck disable=SC2317 # called by the trial-fail cases
# The trial-fail flow on the loaded cell. $1: the loader as the agent names
# it (GRUB, systemd-boot); $2: the title of the default entry the trial
# copies. The loader's own checks are trial_armed_<loader>,
# trial_gone_<loader> and trial_old_default_<loader>.
trial_fail_flow() {
    local loader=$1 title=$2 lc=${1,,}
    lc=${lc//-/_}
    HARNESS_STATUS=1
    install_tools
    build_binaries
    debootstrap_base
    cell_make_image

    # Boot 1: phase 1 arms the trial and reboots; the default entry is
    # unchanged, the trial entry has the arguments, the one-shot names it.
    boot tf-1
    local b1=$SERIAL t1
    t1=$(tr -d '\r' <"$b1")
    [ "$(boot_end "$b1")" = reboot ] || fail "boot 1 ended with $(boot_end "$b1"), expected the agent's reboot"
    has "$t1" "vgpu-firstboot: step kernel-args:" "boot 1 console"
    has "$t1" "vgpu-firstboot: trial boot armed: $loader entry \"vgpu-bake trial: $title + $TRIAL_ARGS\"" "boot 1 console"
    has "$t1" "vgpu-firstboot: rebooting:" "boot 1 console"
    "trial_armed_$lc"

    # Boot 2: the loader boots the trial entry once; its kernel panics
    # before any userspace: the agent never runs.
    boot tf-2
    local b2=$SERIAL t2
    t2=$(tr -d '\r' <"$b2")
    [ "$(boot_end "$b2")" = panic ] || fail "boot 2 (the trial) ended with $(boot_end "$b2"), expected a kernel panic"
    say "boot 2: $(grep -m1 -o 'Kernel panic - not syncing: .*' <<<"$t2")"
    ! agent_ran "$b2" || fail "boot 2: the agent ran in the trial boot, which should not have come up"

    # Boot 3: the old default; the agent reports the failed trial, removes
    # its entry, does not reboot.
    boot tf-3
    local b3=$SERIAL t3
    t3=$(tr -d '\r' <"$b3")
    "trial_old_default_$lc" "boot 3"
    grep -Eq "vgpu-firstboot: step (reboot|verify-reboot) failed: the trial boot of $loader entry .*adding $TRIAL_ARGS\) did not come up" <<<"$t3" \
        || fail "boot 3: no failure naming the trial on the console: $(grep 'vgpu-firstboot: step' <<<"$t3")"
    has "$t3" "vgpu-harness: status: trial boot: failed: $loader entry \"vgpu-bake trial: $title + $TRIAL_ARGS\"" "boot 3 (vgpu-firstboot status)"
    has "$t3" "vgpu-harness: status:   cause: the trial boot of $loader entry" "boot 3 (vgpu-firstboot status)"
    check_failed_and_idle "$b3" "boot 3"
    "trial_gone_$lc" "after boot 3"

    # Boot 4: nothing runs again, nothing reboots.
    boot tf-4
    local b4=$SERIAL t4
    t4=$(tr -d '\r' <"$b4")
    check_failed_and_idle "$b4" "boot 4"
    ! grep -Eq 'vgpu-firstboot: step [a-z-]+: ' <<<"$t4" || fail "boot 4: the agent ran a step again: $(grep -E 'vgpu-firstboot: step [a-z-]+: ' <<<"$t4")"
    "trial_old_default_$lc" "boot 4"
    "trial_gone_$lc" "after boot 4"

    # Across the four boots: one reboot, the agent's (boot 2's panic is
    # not one: the harness stopped qemu at the panic line).
    local reboots requests state
    reboots=$(count_lines 'reboot: Restarting system' "${SERIALS[@]}")
    requests=$(grep -l 'vgpu-firstboot: rebooting:' "${SERIALS[@]}" | wc -l)
    if [ "$reboots" -ne 1 ] || [ "$requests" -ne 1 ]; then
        fail "expected exactly 1 reboot (the agent's): the consoles show $reboots reboots, $requests asked by the agent"
    fi
    state=$(img_cat /var/lib/vgpu-firstboot/state.toml)
    grep -qx 'reboots = 1' <<<"$state" || fail "state.toml does not record exactly 1 reboot: $(grep '^reboots' <<<"$state")"
    grep -A1 '^\[status\]' <<<"$state" | grep -qx 'state = "failed"' \
        || fail "state.toml status is not failed: $(grep -A3 '^\[status\]' <<<"$state")"
    has "$(img_cat /var/lib/vgpu-firstboot/trial)" "status: failed" "the trial record"
    say "boots: 4 (reboot panic poweroff poweroff), reboots: $reboots, the agent's: $requests; the default entry never got the arguments"
}

# shellcheck disable=SC2317 # called by trial_fail_flow
# GRUB after boot 1: grub-mkconfig's grub.cfg, its default entry the
# shipped one, the trial entry with the arguments, next_entry set to it.
trial_armed_grub() {
    check_grub_cfg_generated "after boot 1"
    check_grub_armed "after boot 1" "$TRIAL_ARGS"
}

# shellcheck disable=SC2317 # called by trial_fail_flow
# GRUB booted the old default at boot $1 (/proc/cmdline, as the harness
# printed it, is its line; GRUB's one-shot used up).
trial_old_default_grub() {
    [ "$(harness_cmdline)" = "BOOT_IMAGE=$(grub_shipped_linux)" ] \
        || fail "$1: /proc/cmdline is \"$(harness_cmdline)\", expected the old default entry's: BOOT_IMAGE=$(grub_shipped_linux)"
}

# shellcheck disable=SC2317 # called by trial_fail_flow and case_no_viommu
# After a failed trial ($1 names when): GRUB's default entry is the shipped
# one (it never got the arguments), no trial entry, no /etc/grub.d script,
# no drop-in, no one-shot left.
trial_gone_grub() {
    [ "$(grub_default_linux)" = "$(grub_shipped_linux)" ] \
        || fail "$1: the default entry boots \"$(grub_default_linux)\", expected it unchanged: $(grub_shipped_linux)"
    check_grub_no_trial "$1"
    ! img_exists /etc/default/grub.d/vgpu-bake.cfg \
        || fail "$1: the GRUB drop-in exists: $(img_cat /etc/default/grub.d/vgpu-bake.cfg)"
    ! grep -q 'intel_iommu' <<<"$(img_cat /boot/grub/grub.cfg)" \
        || fail "$1: grub.cfg still names the trial's arguments"
}

# shellcheck disable=SC2317 # called by trial_fail_flow
# systemd-boot after boot 1: /etc/kernel/cmdline and the Proxmox entry
# unchanged, the trial entry on the ESP with the arguments.
trial_armed_systemd_boot() {
    check_sd_armed "after boot 1" "$TRIAL_ARGS"
}

# shellcheck disable=SC2317 # called by trial_fail_flow
# systemd-boot booted the Proxmox entry at boot $1, the one-shot used up
# (its EFI variables), with the shipped arguments.
trial_old_default_systemd_boot() {
    check_loader_booted "$1" "$SHIPPED_CMDLINE"
}

# shellcheck disable=SC2317 # called by trial_fail_flow
# After a failed trial ($1 names when): /etc/kernel/cmdline and the Proxmox
# entry never got the arguments, the trial entry is gone from the ESP.
trial_gone_systemd_boot() {
    check_sd_unchanged "$1"
    check_no_trial_entry "$1"
}

# What a boot of the guest changes by itself in the directories
# case_pve8_on_debian13 compares (extended regexes on the digest's paths),
# each with its writer: the agent's own state and report, and what systemd
# does at any first boot.
GUEST_CHURN=(
    # the agent's state directory, and its report (the textfile, in the
    # directory it makes for it: the plan's [report] textfile-dir)
    '^var/lib/vgpu-firstboot(/| )'
    '^var/lib/prometheus(/| )'
    # systemd: the saved random seed, the timers' last-run stamps, and
    # systemd-update-done's stamp after a first boot
    '^var/lib/systemd/random-seed '
    '^var/lib/systemd/timers(/| )'
    '^etc/\.updated '
)
# The same for the ESP: systemd-boot and systemd-boot-random-seed.service
# rewrite the loader's random seed at every boot.
ESP_CHURN=('^loader/random-seed ')

# shellcheck disable=SC2317 # called by check_unchanged
# The digest $1 (img_tree_digest or esp_digest output) without the lines
# that match any of the regexes $2...
without_churn() {
    local text=$1 re
    shift
    re=$(printf '%s|' "$@")
    grep -Ev -- "${re%|}" <<<"$text" || true
}

# shellcheck disable=SC2317 # called by name ("$CASE_FN")
case_pve8_on_debian13() {
    load_cell debian13-systemd-boot
    # The Debian 13 guest, the bundle baked for Proxmox VE 8 (bookworm).
    CELL_PROFILE=profiles/demo.toml HARNESS_STATUS=1
    install_tools
    build_binaries
    debootstrap_base
    cell_make_image
    local dirs=(/etc /boot /usr/local /var/lib) files0 esp0 standins0
    files0=$(img_tree_digest "${dirs[@]}")
    esp0=$(esp_digest)
    standins0=$(img_cat /var/log/vgpu-standins.log)
    [ "$(wc -l <<<"$files0")" -gt 1000 ] || fail "the digest of ${dirs[*]} lists only $(wc -l <<<"$files0") lines"

    boot_until_poweroff 1 pv
    local b1=$SERIAL t1
    t1=$(tr -d '\r' <"$b1")
    # The gate's reason, and the refusal before the first step.
    has "$t1" "the host runs Debian GNU/Linux 13 (trixie) (debian trixie, from /etc/os-release) but the plan is for Proxmox VE 8 on Debian bookworm" "boot 1 console (the host gate)"
    has "$t1" "vgpu-firstboot: step apt-repositories failed: host gate: this plan does not fit this host, nothing was changed" "boot 1 console"
    ! grep -Eq 'vgpu-firstboot: step [a-z-]+: ' <<<"$t1" \
        || fail "boot 1: the agent began a step: $(grep -E 'vgpu-firstboot: step [a-z-]+: ' <<<"$t1")"
    has "$t1" "vgpu-harness: status: vgpu-firstboot: FAILED at step apt-repositories" "boot 1 (vgpu-firstboot status)"
    check_failed_and_idle "$b1" "boot 1"
    SERIAL=$b1
    check_loader_booted "boot 1" "root=UUID=$ROOT_UUID rw console=ttyS0"
    check_unchanged "boot 1"

    # A second boot: the agent reports the failure and changes nothing.
    boot pv-2
    local b2=$SERIAL t2
    t2=$(tr -d '\r' <"$b2")
    check_failed_and_idle "$b2" "boot 2"
    ! grep -Eq 'vgpu-firstboot: step [a-z-]+: ' <<<"$t2" || fail "boot 2: the agent ran a step"
    check_loader_booted "boot 2" "root=UUID=$ROOT_UUID rw console=ttyS0"
    check_unchanged "boot 2"

    local reboots state
    reboots=$(count_lines 'reboot: Restarting system' "${SERIALS[@]}")
    [ "$reboots" -eq 0 ] || fail "the guest rebooted $reboots times"
    state=$(img_cat /var/lib/vgpu-firstboot/state.toml)
    grep -A1 '^\[status\]' <<<"$state" | grep -qx 'state = "failed"' \
        || fail "state.toml status is not failed: $(grep -A3 '^\[status\]' <<<"$state")"
    ! grep -Eq '^reboots = [1-9]' <<<"$state" || fail "state.toml records a reboot: $(grep '^reboots' <<<"$state")"
    has "$(img_cat /var/lib/prometheus/node-exporter/vgpu-firstboot.prom)" \
        'vgpu_firstboot_state{plan="demo",state="failed"} 1' "the agent's textfile report"
    say "boots: 2 (both powered off by the harness), reboots: 0; the guest's files and ESP unchanged"
}

# shellcheck disable=SC2317 # called by case_pve8_on_debian13
# After boot $1: the guest's files, its ESP and the stand-ins' log are as
# the image was built (what the guest's own boot changes left out). Reads
# case_pve8_on_debian13's dirs, files0, esp0 and standins0.
check_unchanged() {
    local files esp
    files=$(img_tree_digest "${dirs[@]}")
    esp=$(esp_digest)
    diff -u <(without_churn "$files0" "${GUEST_CHURN[@]}") <(without_churn "$files" "${GUEST_CHURN[@]}") >&2 \
        || fail "$1: the guest's files changed (diff above)"
    diff -u <(without_churn "$esp0" "${ESP_CHURN[@]}") <(without_churn "$esp" "${ESP_CHURN[@]}") >&2 \
        || fail "$1: the ESP changed (diff above)"
    [ "$(img_cat /var/log/vgpu-standins.log)" = "$standins0" ] \
        || fail "$1: a stand-in was called: $(img_cat /var/log/vgpu-standins.log)"
    say "$1: ${dirs[*]} and the ESP unchanged ($(wc -l <<<"$files") digest lines)"
}

main() {
    [ "$(id -u)" -eq 0 ] || { echo "$0: run as root" >&2; exit 2; }
    declare -F "$CASE_FN" >/dev/null || usage
    mkdir -p "$WORK"
    : >"$WORK/last-serials"
    "$CASE_FN"
    say "PASS (negative case $CASE) in $((SECONDS - T0))s"
}

# On one line: editing this file while it runs cannot make it run more.
main "$@"; exit

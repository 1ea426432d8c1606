#!/usr/bin/env bash
# tests/vm/two-boot.sh: the demo bundle provisions a real Debian 12 VM.
#
#   bash tests/vm/two-boot.sh [--cell NAME] # clean run: boot 1, boot 2, boot 3
#   bash tests/vm/two-boot.sh --power-cuts  # the same with qemu killed (kill -9)
#                                           # at several points of both phases
#   bash tests/vm/two-boot.sh --random-cuts N [--seed S]
#                                           # N cuts at random delays, in rounds
#                                           # on fresh images (the seed, printed,
#                                           # draws the same delays again)
#
# --cell NAME (default debian12-grub) picks the boot path: tests/vm/cells/
# NAME.sh says which Debian, which profile, how the guest boots (its own
# boot loader under OVMF, or qemu's -kernel) and what to check about the
# loader; see tests/vm/cells/README.md. `--cell kernel` is the -kernel boot
# with an update-grub stand-in described below.
#
# Runs as root on a Debian 12 machine with the Debian mirror reachable. It
# installs its own tools (qemu-system-x86 from bookworm-backports, debootstrap,
# e2tools, cpio, zstd, ovmf, mtools, dosfstools, fdisk), builds the release
# binaries, debootstraps the cell's Debian (cached in $WORK/base*; delete it
# to start fresh), adds stand-ins for what only Proxmox VE and NVIDIA
# provide, adds the cell's boot loader, bakes the cell's profile, lays the
# bundle onto the tree with `vgpu-bake install`, builds the disk without loop
# devices (mkfs.ext4 -d; for firmware cells a GPT disk made with sfdisk, the
# ESP with mkfs.vfat and mtools) and boots it under qemu (TCG: /dev/kvm is not
# usable on the project's machines).
#
# How the boots work, and why:
# - Firmware cells (debian12-grub, ...): OVMF boots the GPT disk; the boot
#   loader on its ESP reads its own configuration, which the agent's real
#   `update-grub` (or proxmox-boot-tool) rewrote in phase 1, so the
#   arguments reach /proc/cmdline only through the loader. EFI variables
#   persist in the image's own OVMF variable store.
# - `--cell kernel`: the guest boots with -kernel/-initrd/-append (it has no
#   boot loader). The kernel and initrd are read back from the image before
#   every boot, so boot 2 runs the initramfs that phase 1's real
#   `update-initramfs` built. The update-grub stand-in evaluates
#   /etc/default/grub and /etc/default/grub.d/*.cfg the way grub-mkconfig
#   does and writes the result to /boot/grub/grub.cfg; the harness reads that
#   back (debugfs) and appends its arguments.
# - Either way a boot is a new qemu process: qemu runs with -no-reboot, and
#   the guest's `systemctl reboot` (requested by the agent at the end of
#   phase 1) ends the process.
# - Every boot ends by itself: boot 1 with the agent's reboot, later boots
#   with a harness unit (ordered after vgpu-firstboot.service) that prints the
#   agent unit's state on the console and powers off. `timeout` is a backstop.
# - A power cut is `kill -9` of qemu when a given console line appears (the
#   agent's `vgpu-firstboot: step <id>:` lines), optionally a few seconds
#   later to land inside the step's command. cache=unsafe is fine for that:
#   what the guest wrote to the virtual disk is in the host's page cache and
#   survives qemu's death; what the guest still held in its own page cache is
#   lost, as in a power cut.
#
# Environment: VGPU_VM_WORK (default target/vm), VGPU_VM_BOOT_TIMEOUT (seconds
# per boot, default 900: update-initramfs alone takes 1.5-6 min under TCG).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${VGPU_VM_WORK:-$REPO/target/vm}
BOOT_TIMEOUT=${VGPU_VM_BOOT_TIMEOUT:-900}
MODE=clean
CELL=debian12-grub # --cell NAME
RANDOM_CUTS=0 # --random-cuts N
SEED=         # --seed S (default: drawn from /dev/urandom, printed)
usage() {
    echo "usage: $0 [--cell NAME] [--power-cuts | --random-cuts N [--seed S] | --check]" >&2
    echo "NAME: a cell, tests/vm/cells/NAME.sh (default debian12-grub)" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case $1 in
        --power-cuts) MODE=power-cuts ;;
        --cell)
            CELL=${2:-}
            [[ $CELL =~ ^[a-z0-9][a-z0-9-]*$ ]] || usage
            shift
            ;;
        --random-cuts)
            MODE=random-cuts
            RANDOM_CUTS=${2:-}
            [[ $RANDOM_CUTS =~ ^[1-9][0-9]*$ ]] || usage
            shift
            ;;
        --seed)
            SEED=${2:-}
            [[ $SEED =~ ^[0-9]+$ ]] || usage
            shift
            ;;
        --check) MODE=check ;; # only the read-back checks, on the last run's image
                               # (with that run's mode and serial logs)
        *) usage ;;
    esac
    shift
done
[ -z "$SEED" ] || [ "$MODE" = random-cuts ] || usage

export DEBIAN_FRONTEND=noninteractive
ROOT=$WORK/root         # the tree the image is made from
IMG=$WORK/disk.img      # the guest's disk
SERIALS=()              # serial console logs of this run, printed on failure
T0=$SECONDS

# shellcheck source=tests/vm/lib.sh
. "$REPO/tests/vm/lib.sh"
load_cell "$CELL"
# The bundle's name, as the agent says it ("plan NAME complete").
PLAN_NAME=$(sed -n 's/^name = "\(.*\)"$/\1/p' "$REPO/$CELL_PROFILE")

make_image() {
    echo "$MODE" >"$WORK/last-mode"
    echo "$CELL" >"$WORK/last-cell"
    : >"$WORK/last-serials"
    cell_make_image
}

# Boots and kills qemu (kill -9) when the console shows the line of a cut
# point still armed: CUTS[$2] or a later one (a step done before the last
# cut prints no line again; phase 2 steps take a fraction of a second, less
# than the polling interval). Sets CUT to the index of the cut that fired and
# returns 0, or returns 1 if the boot ended by itself first.
boot_and_cut() {
    local name=$1 from=$2 j spec pattern delay
    start_boot "$name"
    while kill -0 "$QEMU_PID" 2>/dev/null; do
        if stop_on_panic "$name"; then
            return 1
        fi
        restart_if_silent "$name" && continue
        for ((j = from; j < ${#CUTS[@]}; j++)); do
            spec=${CUTS[$j]}
            pattern=${spec%|*} delay=${spec##*|}
            grep -Eq "$pattern" "$SERIAL" || continue
            sleep "$delay"
            if power_off_qemu; then
                CUT=$j
                say "power cut at /$pattern/ +${delay}s (boot $name, after $((SECONDS - BOOT_T))s): $(landed)"
                return 0
            fi
        done
        sleep 0.2
    done
    wait_boot "$name"
    return 1
}

# Where the cut landed: the steps the state file shows begun, else the last
# one done.
landed() {
    img_cat /var/lib/vgpu-firstboot/state.toml | awk '
        /^\[\[step\]\]/ { id = "" } /^id = / { id = $3 }
        /^\[step.status\]/ { getline; if ($3 == "\"begun\"") begun = begun " " id; if ($3 == "\"done\"") done = id }
        END { if (begun != "") print "state: step" begun " begun"; else print "state: last step done " done }'
}

# The agent's state file, every field that does not change from run to run
# (boot ids and times left out), and the files the flow writes: compared
# between a clean run and a run with power cuts.
final_state() {
    echo "# state.toml (boot ids and times left out)"
    img_cat /var/lib/vgpu-firstboot/state.toml \
        | grep -Ev '^(boot-ids|boot-id|at|attempt|attempts|machine-id|reboots) = ' \
        | sed -n '1,/^\[\[event\]\]/p' | grep -v '^\[\[event\]\]'
    local f
    for f in /etc/modules-load.d/vgpu-bake-vfio.conf \
        /etc/modprobe.d/vgpu-bake-blacklist.conf \
        /etc/default/grub.d/vgpu-bake.cfg ${CELL_STATE_FILES[@]+"${CELL_STATE_FILES[@]}"} \
        /etc/apt/sources.list \
        /etc/apt/sources.list.d/pve-enterprise.list \
        /etc/apt/sources.list.d/ceph.list \
        /etc/apt/sources.list.d/pve-no-subscription.list \
        /etc/apt/sources.list.d/ceph-no-subscription.list \
        /var/lib/vgpu-demo/installed /var/lib/vgpu-demo/files.sha256 \
        /var/lib/vgpu-firstboot/done \
        /var/lib/vgpu-firstboot/driver-installed; do
        echo "# $f"
        img_cat "$f"
    done
    echo "# present?"
    for f in /usr/bin/hello /var/lib/vgpu-firstboot/payload \
        /var/lib/vgpu-firstboot/driver-installing /usr/lib/vgpu-demo/nvidia-installer \
        /etc/systemd/system/multi-user.target.wants/vgpu-firstboot.service \
        /etc/systemd/system/multi-user.target.wants/nvidia-vgpud.service \
        /etc/systemd/system/multi-user.target.wants/nvidia-vgpu-mgr.service; do
        if img_exists "$f"; then echo "$f: yes"; else echo "$f: no"; fi
    done
}

# Whether this run cut the power (--power-cuts, --random-cuts).
cut_mode() { [ "$MODE" = power-cuts ] || [ "$MODE" = random-cuts ]; }

# The repositories as the agent leaves a fresh Proxmox VE host's: the
# enterprise ones disabled, no-subscription ones added (one-line .list files
# up to bookworm, deb822 .sources from trixie on, as Proxmox VE 9 has them).
check_apt_repos() {
    local d=/etc/apt/sources.list.d
    case $BASE_SUITE in
        bookworm)
            grep -Eq '^#.*enterprise.proxmox.com' <<<"$(img_cat $d/pve-enterprise.list)" \
                || fail "pve-enterprise.list is not commented out: $(img_cat $d/pve-enterprise.list)"
            has "$(img_cat $d/pve-no-subscription.list)" \
                "deb http://download.proxmox.com/debian/pve bookworm pve-no-subscription" "pve-no-subscription.list"
            ;;
        *)
            local f
            for f in pve-enterprise ceph; do
                has "$(img_cat "$d/$f.sources")" "Enabled: no" "$f.sources (disabled)"
            done
            local line
            for line in "URIs: http://download.proxmox.com/debian/pve" \
                "Suites: $BASE_SUITE" "Components: pve-no-subscription"; do
                has "$(img_cat $d/pve-no-subscription.sources)" "$line" "pve-no-subscription.sources"
            done
            has "$(img_cat $d/ceph-no-subscription.sources)" \
                "Components: no-subscription" "ceph-no-subscription.sources"
            ;;
    esac
}

# Checks the image after the flow completed.
check_final() {
    say "reading the results back from the image"
    local state
    state=$(img_cat /var/lib/vgpu-firstboot/state.toml)
    [ -n "$state" ] || fail "no /var/lib/vgpu-firstboot/state.toml in the image"
    grep -A1 '^\[status\]' <<<"$state" | grep -qx 'state = "done"' \
        || fail "state.toml status is not done: $state"
    local ids
    ids=$(sed -n 's/^boot-ids = \[\(.*\)\]$/\1/p' <<<"$state" | tr ',' '\n' | grep -c '"' || true)
    [ "$ids" -ge 2 ] || fail "state.toml records $ids boot id(s), expected at least 2"
    local not_done
    not_done=$(awk '/^\[\[step\]\]/ { id = "" } /^id = / { id = $3 }
        /^\[step.status\]/ { getline; if ($3 != "\"done\"") print id, $3 }' <<<"$state")
    [ -z "$not_done" ] || fail "steps not done: $not_done"
    local steps
    steps=$(grep -c '^\[\[step\]\]' <<<"$state")
    [ "$steps" -ge 10 ] || fail "state.toml lists only $steps steps"

    has "$(img_cat /etc/modules-load.d/vgpu-bake-vfio.conf)" vfio_pci "vfio modules file"
    has "$(img_cat /etc/modprobe.d/vgpu-bake-blacklist.conf)" "blacklist nouveau" "blacklist file"
    # The boot loader's configuration file the agent edits (what the loader
    # made of it is the cell's to check).
    case ${CELL_BOOTLOADER:-grub} in
        grub)
            local dropin
            dropin=$(img_cat /etc/default/grub.d/vgpu-bake.cfg)
            # shellcheck disable=SC2016 # the drop-in's literal text
            has "$dropin" 'GRUB_CMDLINE_LINUX_DEFAULT="${GRUB_CMDLINE_LINUX_DEFAULT} intel_iommu=on iommu=pt"' "GRUB drop-in"
            [ "$(grep -o 'intel_iommu=on' <<<"$dropin" | wc -l)" -eq 1 ] \
                || fail "GRUB drop-in has intel_iommu=on more than once: $dropin"
            ;;
        systemd-boot)
            ! img_exists /etc/default/grub.d/vgpu-bake.cfg \
                || fail "the agent wrote a GRUB drop-in on a systemd-boot host: $(img_cat /etc/default/grub.d/vgpu-bake.cfg)"
            ;;
        *) fail "CELL_BOOTLOADER=$CELL_BOOTLOADER: expected grub or systemd-boot" ;;
    esac
    check_apt_repos

    img_exists /usr/bin/hello || fail "/usr/bin/hello is not installed"
    has "$(img_cat /var/lib/dpkg/status | grep -A2 '^Package: hello$')" \
        "Status: install ok installed" "dpkg status of hello"
    has "$(img_cat /var/lib/vgpu-demo/installed)" "dkms=yes" "demo driver marker"
    ! img_exists /var/lib/vgpu-firstboot/payload || fail "the payload directory is still there"
    img_exists /var/lib/vgpu-firstboot/done || fail "no done marker"
    ! img_exists /etc/systemd/system/multi-user.target.wants/vgpu-firstboot.service \
        || fail "the agent's .wants link is still there"
    for u in nvidia-vgpud nvidia-vgpu-mgr; do
        img_exists "/etc/systemd/system/multi-user.target.wants/$u.service" \
            || fail "$u.service was not enabled"
    done

    # The agent's own log, from the guest's journal. After power cuts it
    # keeps only what the guest had flushed (a cut loses the last ~30 s of
    # a boot), so only a clean run must show every line.
    local log
    log=$(agent_log)
    [ -n "$log" ] || fail "no vgpu-firstboot.service messages in the image's journal (/var/log/journal)"
    if ! cut_mode; then
        has "$log" "plan $PLAN_NAME complete" "the agent's log (journal)"
        has "$log" "vgpu-firstboot: step post-check:" "the agent's log (journal)"
    fi
    say "the agent's log in the image's journal: $(wc -l <<<"$log") lines"

    # Each effect once, however many times the steps ran. The demo installer
    # records (and flushes) every run before it changes anything. It may run
    # again only after the agent found the earlier run unfinished and said
    # so ("installing again"; the serial consoles keep every line, the
    # journal may lose a cut boot's last lines).
    local demo runs again=0
    demo=$(img_cat /var/log/vgpu-demo-installer.log)
    runs=$(grep -c ' install ' <<<"$demo" || true)
    has "$demo" "install dkms=yes silent=yes" "demo installer log"
    if [ ${#SERIALS[@]} -gt 0 ]; then
        again=$(cat "${SERIALS[@]}" | grep -c 'vgpu-firstboot: an earlier run of the driver installer did not finish' || true)
    fi
    if cut_mode; then
        [ "$runs" -ge 1 ] && [ "$runs" -le $((1 + again)) ] \
            || fail "the demo installer ran $runs times, but the agent found an unfinished run only $again times: $demo"
        say "driver installer runs: $runs (the agent found an unfinished run $again times)"
    else
        [ "$runs" -eq 1 ] || fail "the demo installer ran $runs times: $demo"
        has "$log" "installed the vGPU host driver 1.0-demo" "the agent's log (journal)"
        has "$log" "vgpu-firstboot: rebooting:" "the agent's log (journal)"
    fi
    has "$(img_cat /var/lib/dpkg/status | grep -A8 '^Package: hello$')" \
        "Version: 2.10-3" "dpkg status of hello"
    # dpkg.log: "<date> <time> status installed hello:amd64 2.10-3". A power
    # cut inside dpkg may make apt install it again, but only that version;
    # and dpkg does not fsync its log, so a cut soon after may lose its tail
    # (seen here): then only the dpkg database above tells.
    local hello
    hello=$(img_cat /var/log/dpkg.log | grep ' status installed hello:' || true)
    if cut_mode; then
        [ -z "$hello" ] || [ "$(cut -d' ' -f6 <<<"$hello" | sort -u)" = "2.10-3" ] \
            || fail "dpkg.log shows another version of hello installed: $hello"
    else
        [ "$(cut -d' ' -f6 <<<"$hello")" = "2.10-3" ] \
            || fail "dpkg.log does not show hello 2.10-3 installed exactly once: $hello"
    fi

    local standins
    standins=$(img_cat /var/log/vgpu-standins.log)
    has "$standins" "nvidia-smi vgpu" "stand-in log"
    has "$standins" "mdevctl types" "stand-in log"
    ! grep -q FAILED <<<"$standins" || fail "a stand-in was called wrongly: $standins"
    # What the boot loader's configuration says, and which stand-ins this
    # boot path may call.
    cell_check_final "$standins"
    say "stand-in calls: $(grep -v '^update-grub args:' <<<"$standins" | sort | uniq -c | tr -s ' ' | paste -sd, -)"
}

# The console of a boot must show the agent doing (or not doing) its part.
check_console() {
    local log=$1 what=$2
    local text
    text=$(tr -d '\r' <"$log")
    case $what in
        phase1)
            has "$text" "vgpu-firstboot: step initramfs:" "boot 1 console"
            has "$text" "vgpu-firstboot: rebooting:" "boot 1 console"
            ;;
        phase2)
            has "$text" "reboot took effect" "boot 2 console"
            has "$text" "vgpu-firstboot: step post-check:" "boot 2 console"
            has "$text" "plan $PLAN_NAME complete" "boot 2 console"
            has "$text" "intel_iommu=on iommu=pt" "boot 2 console (/proc/cmdline)"
            has "$text" "vendor_id : GenuineIntel" "boot 2 console (harness)"
            has "$text" "vgpu-harness: powering off" "boot 2 console"
            ;;
        idle)
            has "$text" "vgpu-harness: vgpu-firstboot.service: ActiveState=inactive" "boot 3 console"
            ! agent_ran "$log" || fail "the agent ran in boot 3"
            ! grep -q 'vGPU provisioning' <<<"$text" || fail "systemd started the agent's unit in boot 3"
            ;;
    esac
}

# ----------------------------------------------------------------- modes

clean_run() {
    make_image
    boot 1
    local d1=$((SECONDS - BOOT_T))
    step_durations "$SERIAL" >"$WORK/clean-steps-$CELL.tmp"
    check_console "$SERIAL" phase1
    img_exists /var/lib/vgpu-firstboot/done && fail "done after boot 1: no reboot happened"
    cell_check_booted 1
    boot 2
    local d2=$((SECONDS - BOOT_T))
    step_durations "$SERIAL" >>"$WORK/clean-steps-$CELL.tmp"
    check_console "$SERIAL" phase2
    cell_check_booted 2
    boot 3
    local d3=$((SECONDS - BOOT_T))
    check_console "$SERIAL" idle
    cell_check_booted 3
    check_final
    final_state >"$WORK/final-clean-$CELL.txt"
    # How long each boot took (phase 1, phase 2, idle): --random-cuts draws
    # its cut delays within these.
    echo "$d1 $d2 $d3" >"$WORK/clean-durations-$CELL"
    # How long each step took (--power-cuts places its cuts inside them).
    mv "$WORK/clean-steps-$CELL.tmp" "$WORK/clean-steps-$CELL"
}

# The agent's steps in a boot's console and how long each took, a line
# each: "STEP SECONDS", from the guest kernel's timestamps: a step lasts
# until the next step's line, the "rebooting:" line or the agent's last
# line. Console lines can be cut into by other output; only whole
# timestamped agent lines count.
step_durations() {
    grep -aoE '\[ *[0-9]+\.[0-9]+\] vgpu-firstboot\[[0-9]+\]: vgpu-firstboot: .*' "$1" \
        | awk '
            { match($0, /[0-9]+\.[0-9]+\]/); t = substr($0, RSTART, RLENGTH - 1) + 0 }
            / vgpu-firstboot: step [a-z0-9-]+:/ || / vgpu-firstboot: rebooting:/ {
                if (step != "") { printf "%s %.1f\n", step, t - start }
                step = ""
                if (match($0, / step [a-z0-9-]+:/)) { step = substr($0, RSTART + 6, RLENGTH - 7); start = t }
            }
            { last = t }
            END { if (step != "") printf "%s %.1f\n", step, last - start }'
}

# A clean run first, unless one for this build already left its results.
ensure_clean_run() {
    if [ ! -s "$WORK/final-clean-$CELL.txt" ] || [ ! -s "$WORK/clean-durations-$CELL" ] \
        || [ ! -s "$WORK/clean-steps-$CELL" ] \
        || [ "$WORK/final-clean-$CELL.txt" -ot "$REPO/target/release/vgpu-firstboot" ]; then
        say "no clean run's results for this build yet: doing a clean run first"
        local mode=$MODE
        MODE=clean
        clean_run
        MODE=$mode
        SERIALS=()
    fi
}

# Cut points: "regex|seconds after the line", armed one after the other.
# Spread over both phases; some land at a step's start, some inside its
# command (apt/dpkg, update-initramfs, proxmox-boot-tool refresh or
# update-grub, systemctl). A step cut short runs again at the next boot and
# prints its line again, so several points on one line (longer delays) land
# in the same step's re-runs.
#
# The delays inside a step are fractions of how long that step took in this
# cell's clean run (clean-steps-CELL, from the guest's console timestamps),
# not fixed seconds: a faster machine moves them with the step. They are
# early fractions (at most 0.45), so a re-run two to three times as fast as
# in the clean run (the load on the machine changes) still holds them. A point
# whose line shows up after its step is done (the fast phase-2 steps pass
# several in one polling interval) is skipped, and a boot that ends before a
# point's delay is not cut. The points that land whatever the speed are the
# ones inside a long step that re-runs in full: update-initramfs (3), the
# trial's commit in verify-reboot (2), enable-services (2), the first
# apt-install, the first step of the first boot and kernel-args (followed by
# update-initramfs): 10, and the others add a few. The run fails below 8.
#
# On GRUB, kernel-args arms the trial before update-initramfs, so the boot
# after a cut inside update-initramfs is the trial: the agent finishes phase
# 1 there, rightly skips the reboot and runs phase 2 in the same boot; no
# point waits for the agent's "rebooting:" line, and `reboots` is left out
# of the comparison with the clean run. A cut inside the trial's commit
# (phase 2's update-grub or proxmox-boot-tool refresh, the trial boot having
# come up) makes the next boot the old default's: the agent finishes the
# commit there and reboots once into it ("came up before a power cut").
CUT_PLAN=(
    'apt-repositories|0'
    'apt-install|0.3'
    'kernel-args|0'
    'initramfs|0.08 0.16 0.25'
    'reboot|0'
    'verify-reboot|0.2 0.45'
    'verify-payload|0'
    'install-driver|0'
    'enable-services|0.15 0.35'
    'post-check|0'
    'finish|0'
)

# CUTS from CUT_PLAN and the clean run's step durations.
make_cuts() {
    local steps=$WORK/clean-steps-$CELL entry step fractions f d
    CUTS=()
    for entry in "${CUT_PLAN[@]}"; do
        step=${entry%|*} fractions=${entry#*|}
        # The longest run of the step in the clean run (a step that
        # appears in both boots, like reboot, is short in one of them).
        d=$(awk -v s="$step" '$1 == s && $2 > m { m = $2 } END { print m + 0 }' "$steps")
        for f in $fractions; do
            CUTS+=("vgpu-firstboot: step $step:|$(awk -v f="$f" -v d="$d" 'BEGIN { printf "%.1f", f * d }')")
        done
    done
    say "cut points (step|seconds after its line): ${CUTS[*]#vgpu-firstboot: step }"
}

power_cut_run() {
    ensure_clean_run
    make_cuts
    make_image
    local n=0 cuts=0 converged=0 next=0
    while [ $n -lt 26 ]; do
        n=$((n + 1))
        if [ $next -lt ${#CUTS[@]} ]; then
            if boot_and_cut "$n" "$next"; then
                cuts=$((cuts + 1))
                next=$((CUT + 1))
                continue
            fi
        else
            boot "$n"
        fi
        if img_exists /var/lib/vgpu-firstboot/done && ! agent_ran "$SERIAL"; then
            check_console "$SERIAL" idle
            cell_check_booted 3
            break
        fi
    done
    [ $cuts -ge 8 ] || fail "only $cuts power cuts happened (8 or more are required)"
    check_final
    final_state >"$WORK/final-cuts.txt"
    if diff -u "$WORK/final-clean-$CELL.txt" "$WORK/final-cuts.txt"; then
        converged=$cuts
    else
        fail "the final state after power cuts differs from a clean run's (diff above)"
    fi
    say "boots: $n"
    echo "power cuts: $cuts, converged: $converged"
}

# Which boot of a clean run the next boot is like: 1 (phase 1: the reboot
# step not begun yet), 2 (phase 2: the reboot step begun, i.e. requested,
# or done) or 3 (done: the agent has nothing to do).
next_phase() {
    if img_exists /var/lib/vgpu-firstboot/done; then
        echo 3
    elif img_cat /var/lib/vgpu-firstboot/state.toml | awk '
        /^\[\[step\]\]/ { id = "" } /^id = / { id = $3 }
        /^\[step.status\]/ { getline; if (id == "\"reboot\"" && ($3 == "\"done\"" || $3 == "\"begun\"")) found = 1 }
        END { exit !found }'; then
        echo 2
    else
        echo 1
    fi
}

# Boots and kills qemu (kill -9) $2 seconds after it started, unless the
# boot ends by itself first. Returns 0 after a cut, 1 if the boot ended.
boot_and_cut_at() {
    local name=$1 delay=$2
    start_boot "$name"
    while kill -0 "$QEMU_PID" 2>/dev/null; do
        if stop_on_panic "$name"; then
            return 1
        fi
        restart_if_silent "$name" && continue
        if [ $((SECONDS - BOOT_T)) -ge "$delay" ] && power_off_qemu; then
            return 0
        fi
        sleep 0.2
    done
    wait_boot "$name"
    return 1
}

# --random-cuts N: rounds of the whole flow on a fresh image, until N cuts
# have happened. In a round, boots are killed at a random delay within the
# duration of the clean run's boot of the same phase (1 s to that
# duration). A boot that ends before its delay is not a cut. When a cut
# lands where the round's previous one did (the same step begun: update-
# initramfs takes most of a phase-1 boot, so every cut would land in it),
# the next boot runs uncut so the flow moves on to later steps and phase 2,
# as on a host whose power fails now and then, not at every boot. Boots of
# a finished host are not cut: the round ends with one that finds nothing
# to do, and the host must then be as a clean run leaves it.
random_cut_run() {
    ensure_clean_run
    local durations
    read -r -a durations <"$WORK/clean-durations-$CELL"
    [ -n "$SEED" ] || SEED=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
    RANDOM=$SEED
    say "random cuts: $RANDOM_CUTS, seed $SEED; clean boots took ${durations[*]} s"
    local round=0 boots=0 cuts=0 missed=0 uncut=0 converged=0 log=()
    local n phase span delay where last round_cuts progress
    while [ $cuts -lt "$RANDOM_CUTS" ]; do
        round=$((round + 1)) n=0 last= round_cuts=0 progress=0
        SERIALS=()
        make_image
        while :; do
            [ $n -lt 30 ] || fail "round $round: not done after $n boots"
            n=$((n + 1)) boots=$((boots + 1))
            phase=$(next_phase)
            if [ "$phase" -eq 3 ] || [ $cuts -ge "$RANDOM_CUTS" ] || [ $progress -eq 1 ]; then
                boot "r$round-$n"
                if [ "$phase" -ne 3 ] && [ $progress -eq 1 ]; then
                    uncut=$((uncut + 1))
                    log+=("round $round boot $n (phase $phase): not cut, to move on")
                elif [ "$phase" -ne 3 ]; then
                    log+=("round $round boot $n (phase $phase): not cut, the $RANDOM_CUTS cuts are done")
                fi
                progress=0
                if img_exists /var/lib/vgpu-firstboot/done && ! agent_ran "$SERIAL"; then
                    check_console "$SERIAL" idle
                    cell_check_booted 3
                    break
                fi
                continue
            fi
            span=${durations[$((phase - 1))]}
            [ "$span" -ge 2 ] || span=2
            delay=$((1 + RANDOM % (span - 1)))
            if boot_and_cut_at "r$round-$n" "$delay"; then
                cuts=$((cuts + 1)) round_cuts=$((round_cuts + 1))
                where=$(landed)
                log+=("round $round boot $n (phase $phase, clean ${span}s): cut at ${delay}s: $where")
                say "power cut $cuts/$RANDOM_CUTS at +${delay}s (round $round boot $n, like clean boot $phase of ${span}s): $where"
                [ "$where" != "$last" ] || progress=1
                last=$where
            else
                missed=$((missed + 1))
                log+=("round $round boot $n (phase $phase, clean ${span}s): ended by itself before ${delay}s")
            fi
        done
        check_final
        final_state >"$WORK/final-random.txt"
        diff -u "$WORK/final-clean-$CELL.txt" "$WORK/final-random.txt" \
            || fail "round $round: the final state after random power cuts differs from a clean run's (diff above)"
        converged=$((converged + round_cuts))
        say "round $round converged after $round_cuts cuts in $n boots"
    done
    say "rounds: $round, boots: $boots ($missed ended before their cut, $uncut left uncut to move on)"
    printf '  %s\n' "${log[@]}"
    echo "random cuts: $cuts, converged: $converged, seed: $SEED"
}

main() {
    [ "$(id -u)" -eq 0 ] || { echo "$0: run as root" >&2; exit 2; }
    mkdir -p "$WORK"
    if [ "$MODE" = check ]; then
        MODE=$(cat "$WORK/last-mode")
        [ "$(cat "$WORK/last-cell" 2>/dev/null)" = "$CELL" ] \
            || fail "the last run's image is of cell $(cat "$WORK/last-cell" 2>/dev/null || echo '(none)'), not $CELL: pass --cell"
        cell_image_offsets
        mapfile -t SERIALS <"$WORK/last-serials"
        check_final
        say "PASS (checks only, on $IMG)"
        return
    fi
    install_tools
    build_binaries
    debootstrap_base
    say "cell $CELL: Debian $BASE_SUITE, $CELL_PROFILE, boot via $BOOT_VIA"
    case $MODE in
        clean) clean_run ;;
        power-cuts) power_cut_run ;;
        random-cuts) random_cut_run ;;
    esac
    say "PASS ($MODE, cell $CELL) in $((SECONDS - T0))s"
}

# On one line, so bash has read the exit before it runs main: editing this
# file while it runs cannot make it run more.
main "$@"; exit

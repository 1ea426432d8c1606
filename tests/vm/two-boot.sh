#!/usr/bin/env bash
# tests/vm/two-boot.sh: the demo bundle provisions a real Debian 12 VM.
#
#   bash tests/vm/two-boot.sh               # clean run: boot 1, boot 2, boot 3
#   bash tests/vm/two-boot.sh --power-cuts  # the same with qemu killed (kill -9)
#                                           # at several points of both phases
#   bash tests/vm/two-boot.sh --random-cuts N [--seed S]
#                                           # N cuts at random delays, in rounds
#                                           # on fresh images (the seed, printed,
#                                           # draws the same delays again)
#
# Runs as root on a Debian 12 machine with the Debian mirror reachable. It
# installs its own tools (qemu-system-x86 from bookworm-backports, debootstrap,
# e2tools, cpio, zstd), builds the release binaries, debootstraps Debian 12
# (cached in $WORK/base; delete it to start fresh), adds stand-ins for what
# only Proxmox VE and NVIDIA provide, bakes profiles/demo.toml, lays the
# bundle onto the tree with `vgpu-bake install`, builds an ext4 image without
# loop devices (mkfs.ext4 -d) and boots it under qemu (TCG: /dev/kvm is not
# usable on the project's machines).
#
# How the boots work, and why:
# - The guest boots with -kernel/-initrd/-append (it has no boot loader). The
#   kernel and initrd are read back from the image before every boot, so
#   boot 2 runs the initramfs that phase 1's real `update-initramfs` built.
# - The kernel command line is what a boot loader would use: the update-grub
#   stand-in evaluates /etc/default/grub and /etc/default/grub.d/*.cfg the way
#   grub-mkconfig does and writes the result to /boot/grub/grub.cfg; the
#   harness reads that back (debugfs) and appends its arguments. So the
#   arguments phase 1 wrote reach /proc/cmdline only if update-grub ran after
#   the drop-in was written, as on a real host. This needs a new qemu process
#   per boot: qemu runs with -no-reboot, and the guest's `systemctl reboot`
#   (requested by the agent at the end of phase 1) ends the process.
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
RANDOM_CUTS=0 # --random-cuts N
SEED=         # --seed S (default: drawn from /dev/urandom, printed)
usage() {
    echo "usage: $0 [--power-cuts | --random-cuts N [--seed S] | --check]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case $1 in
        --power-cuts) MODE=power-cuts ;;
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

say() { printf '==> [%4ds] %s\n' "$((SECONDS - T0))" "$*"; }

# Prints every serial log of this run and exits non-zero.
fail() {
    echo "FAIL: $*" >&2
    for s in "${SERIALS[@]}"; do
        printf '\n----- serial console: %s -----\n' "$s" >&2
        cat "$s" >&2 || true
    done
    echo "FAIL: $*" >&2
    exit 1
}

# ---------------------------------------------------------------- host tools

# The Debian mirror the machine already uses (deb822 `URIs:` field).
mirror() {
    awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources
}

# qemu-system-x86 must come from bookworm-backports: the image ships
# qemu-utils 10.x from there, and bookworm's qemu-system-x86 7.2 conflicts.
install_tools() {
    local need=()
    command -v qemu-system-x86_64 >/dev/null || need+=(qemu)
    for t in debootstrap e2cp cpio zstd; do
        command -v "$t" >/dev/null || need+=("$t")
    done
    # journalctl reads the guest's journal back (package systemd).
    command -v journalctl >/dev/null || need+=(journalctl)
    [ ${#need[@]} -gt 0 ] || return 0
    say "installing ${need[*]}"
    local bpo=/etc/apt/sources.list.d/vgpu-bake-bookworm-backports.list
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "deb $(mirror) bookworm-backports main" >"$bpo"
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86
    apt-get install -y -qq --no-install-recommends debootstrap e2tools cpio zstd
    command -v journalctl >/dev/null || apt-get install -y -qq --no-install-recommends systemd
}

build_binaries() {
    say "cargo build --release"
    (cd "$REPO" && cargo build --release --quiet)
}

# ------------------------------------------------------------- guest's tree

# Debian 12 as debootstrap leaves it (its /etc/os-release says bookworm, which
# the agent maps to Proxmox VE 8, like the demo profile's `proxmox = 8`).
# Cached: a rerun copies $WORK/base instead of debootstrapping again.
debootstrap_base() {
    if [ -e "$WORK/base/etc/os-release" ]; then
        say "debootstrap: using the cached tree $WORK/base"
        return
    fi
    say "debootstrap bookworm (about 80 s)"
    rm -rf "$WORK/base.tmp"
    debootstrap --variant=minbase \
        --include=systemd-sysv,udev,linux-image-amd64,kmod,apt \
        bookworm "$WORK/base.tmp" "$(mirror)" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap.log" >&2; fail "debootstrap failed"; }
    mv "$WORK/base.tmp" "$WORK/base"
}

# Writes $1 (a path under the tree) with stdin, mode $2 (default 0644).
put() {
    mkdir -p "$(dirname "$ROOT$1")"
    cat >"$ROOT$1"
    chmod "${2:-0644}" "$ROOT$1"
}

# Stand-ins for the commands only Proxmox VE and NVIDIA provide. Each records
# its call in /var/log/vgpu-standins.log and fails (stderr, non-zero) when
# called in a way the real program would refuse or the flow should not need.
add_standins() {
    # shellcheck disable=SC2016 # expanded by the guest's shell, not here
    local head='#!/bin/sh
# vgpu-bake VM test stand-in (not the real program).
me=$(basename "$0")
log=/var/log/vgpu-standins.log
echo "$me${*:+ $*}" >>"$log"
sync "$log" # a power cut must not take the record of a call that had effects
die() { echo "$me (stand-in): $*" >&2; echo "$me FAILED: $*" >>"$log"; exit 1; }
marker=/var/lib/vgpu-demo/installed'

    # update-grub: no GRUB in the guest. It evaluates the settings as
    # grub-mkconfig does (sourcing them in a shell) and writes the kernel
    # command line to /boot/grub/grub.cfg, which the harness boots with.
    put /usr/local/sbin/update-grub 0755 <<EOF
$head
[ \$# -eq 0 ] || die "takes no arguments"
[ -f /etc/default/grub.d/vgpu-bake.cfg ] || die "/etc/default/grub.d/vgpu-bake.cfg is missing"
args=\$(
    . /etc/default/grub || exit 1
    for f in /etc/default/grub.d/*.cfg; do . "\$f" || exit 1; done
    echo \$GRUB_CMDLINE_LINUX \$GRUB_CMDLINE_LINUX_DEFAULT
) || die "the GRUB settings do not evaluate"
# Recorded before grub.cfg changes: a power cut cannot keep the effect
# and lose its record.
echo "update-grub args: \$args" >>"\$log"
sync "\$log"
mkdir -p /boot/grub
printf 'linux /vmlinuz root=/dev/vda ro %s\n' "\$args" >/boot/grub/grub.cfg.new
sync /boot/grub/grub.cfg.new && mv /boot/grub/grub.cfg.new /boot/grub/grub.cfg && sync /boot/grub
echo "Generating grub configuration file ... done (stand-in)" >&2
EOF

    # proxmox-boot-tool: the demo host boots through GRUB without ESPs
    # managed by it, so the flow should not call it at all.
    put /usr/local/sbin/proxmox-boot-tool 0755 <<EOF
$head
case "\${1:-}" in
    status) echo "E: /etc/kernel/proxmox-boot-uuids does not exist." >&2; exit 2 ;;
    *) die "not expected on this host (GRUB, no proxmox-boot-uuids): \$*" ;;
esac
EOF

    put /usr/local/bin/nvidia-smi 0755 <<EOF
$head
[ -e "\$marker" ] || die "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver"
case "\$*" in
    "") echo "NVIDIA-SMI demo stand-in | Driver Version: 1.0-demo" ;;
    vgpu) echo "GPU 00000000:01:00.0 (demo stand-in)"; echo "    Active vGPUs: 0" ;;
    *) die "unexpected arguments: \$*" ;;
esac
EOF

    put /usr/local/sbin/mdevctl 0755 <<EOF
$head
case "\$*" in
    types)
        # The real mdevctl prints nothing when no driver offers types.
        [ -e "\$marker" ] || exit 0
        printf '0000:01:00.0\n  nvidia-222\n    Available instances: 16\n    Device API: vfio-pci\n    Name: GRID T4-1Q\n' ;;
    list) ;;
    *) die "unexpected arguments: \$*" ;;
esac
EOF

    # mokutil: the guest boots legacy BIOS, so Secure Boot is off and the
    # flow must not call it; the real one fails the same way there.
    put /usr/local/bin/mokutil 0755 <<EOF
$head
die "EFI variables are not supported on this system"
EOF

    # The units the NVIDIA vGPU installer ships; the agent enables them.
    local unit
    for unit in nvidia-vgpud nvidia-vgpu-mgr; do
        put "/usr/lib/systemd/system/$unit.service" <<EOF
# vgpu-bake VM test stand-in for the unit the NVIDIA vGPU driver installs.
[Unit]
Description=$unit (vgpu-bake VM test stand-in)
ConditionPathExists=/var/lib/vgpu-demo/installed

[Service]
Type=oneshot
# A little slow, like the real daemons' start: a power cut can land in it.
ExecStart=/bin/sleep 2
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
EOF
    done
}

# What a fresh Proxmox VE host has and debootstrap does not.
add_host_files() {
    put /etc/fstab <<<'/dev/vda / ext4 rw 0 1'
    # A persistent journal (journald's default Storage=auto uses it when the
    # directory exists): the agent's log is read back from the image.
    mkdir -p "$ROOT/var/log/journal"
    put /etc/hostname <<<'vgpu-vm'
    # A fixed machine id: an empty one is made up at boot, and a power cut
    # before it is committed would make the agent see another machine.
    put /etc/machine-id <<<"$(tr -d '-' </proc/sys/kernel/random/uuid)"
    # As grub2-common ships it.
    put /etc/default/grub <<'EOF'
GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT="quiet"
GRUB_CMDLINE_LINUX=""
EOF
    # MODULES=dep: the initramfs gets the modules this machine needs, not
    # most of them. Phase 1's real `update-initramfs` then takes minutes less
    # under TCG (with Debian's MODULES=most it took over 10 minutes on a busy
    # 2-core machine); VGPU_VM_INITRAMFS_MODULES=most tests the default.
    put /etc/initramfs-tools/conf.d/vgpu-vm-test.conf \
        <<<"MODULES=${VGPU_VM_INITRAMFS_MODULES:-dep}"
    # A fresh PVE 8 host's repositories: enterprise only.
    put /etc/apt/sources.list.d/pve-enterprise.list \
        <<<'deb https://enterprise.proxmox.com/debian/pve bookworm pve-enterprise'
    put /etc/apt/sources.list.d/ceph.list \
        <<<'deb https://enterprise.proxmox.com/debian/ceph-quincy bookworm enterprise'
}

# The harness unit: after the agent's unit has finished (or was skipped), it
# prints that unit's state on the console and powers the guest off, unless a
# reboot is already under way (boot 1). So every boot ends by itself.
add_harness_unit() {
    put /usr/local/libexec/vgpu-vm-harness 0755 <<'EOF'
#!/bin/sh
u=vgpu-firstboot.service
echo "vgpu-harness: $u: ActiveState=$(systemctl show -P ActiveState $u) Result=$(systemctl show -P Result $u) ConditionResult=$(systemctl show -P ConditionResult $u)"
echo "vgpu-harness: $(grep -m1 vendor_id /proc/cpuinfo | tr -s '\t ' ' '), iommu_groups=$(ls /sys/kernel/iommu_groups 2>/dev/null | wc -l)"
echo "vgpu-harness: cmdline: $(cat /proc/cmdline)"
if systemctl list-jobs --no-legend 2>/dev/null | grep -Eq 'reboot.target|poweroff.target'; then
    echo "vgpu-harness: a reboot or power-off is under way"
    exit 0
fi
echo "vgpu-harness: powering off"
sync
systemctl --no-block poweroff
EOF
    put /etc/systemd/system/vgpu-vm-harness.service <<'EOF'
[Unit]
Description=vgpu-bake VM test harness: report the agent's state, power off
After=vgpu-firstboot.service

[Service]
Type=oneshot
ExecStart=/usr/local/libexec/vgpu-vm-harness
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
EOF
    mkdir -p "$ROOT/etc/systemd/system/multi-user.target.wants"
    ln -sf ../vgpu-vm-harness.service \
        "$ROOT/etc/systemd/system/multi-user.target.wants/vgpu-vm-harness.service"
}

bake_and_install() {
    say "baking profiles/demo.toml and installing the bundle onto the tree"
    local bundle
    bundle=$("$REPO/target/release/vgpu-bake" bake "$REPO/profiles/demo.toml" \
        --out "$WORK/out" --cache "$WORK/cache" | tail -n 1)
    [ -f "$bundle" ] || fail "vgpu-bake bake printed no bundle path"
    "$REPO/target/release/vgpu-bake" install "$bundle" --root "$ROOT" >"$WORK/install.log"
    tail -n 1 "$WORK/install.log"
}

make_image() {
    say "copying the tree, adding stand-ins, making the ext4 image"
    rm -rf "$ROOT" "$IMG"
    echo "$MODE" >"$WORK/last-mode"
    : >"$WORK/last-serials"
    cp -a "$WORK/base" "$ROOT"
    add_host_files
    add_standins
    add_harness_unit
    bake_and_install
    KVER=$(find "$ROOT/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sort -V | tail -n 1)
    KVER=${KVER#vmlinuz-}
    [ -n "$KVER" ] || fail "no kernel in $ROOT/boot"
    truncate -s 2G "$IMG"
    mkfs.ext4 -q -F -L root -d "$ROOT" "$IMG"
}

# ---------------------------------------------------------------- image I/O

# Prints file $1 of the image (nothing if it does not exist; NUL bytes, which
# a power cut can leave at the end of an appended file, dropped).
img_cat() { debugfs -R "cat $1" "$IMG" 2>/dev/null | tr -d '\0'; }

# Whether $1 exists in the image (a link counts; it is not followed).
img_exists() { ! debugfs -R "stat $1" "$IMG" 2>&1 | grep -q 'File not found'; }

# Copies $1 out of the image to $2.
img_dump() {
    rm -f "$2"
    debugfs -R "dump $1 $2" "$IMG" >/dev/null 2>&1
    [ -s "$2" ] || fail "cannot read $1 from the image"
}

# The agent's log from the guest's journal in the image (its unit's
# messages, every boot).
agent_log() {
    rm -rf "$WORK/journal"
    mkdir -p "$WORK/journal"
    debugfs -R "rdump /var/log/journal $WORK/journal" "$IMG" >/dev/null 2>&1 || true
    journalctl --no-pager -q -o cat -D "$WORK/journal/journal" \
        _SYSTEMD_UNIT=vgpu-firstboot.service 2>/dev/null || true
}

# The kernel arguments the boot loader would add: those update-grub wrote.
grub_args() {
    img_cat /boot/grub/grub.cfg | awk '/^linux / {
        s = ""
        for (i = 3; i <= NF; i++) if ($i !~ /^(root=.*|ro|quiet)$/) s = s (s == "" ? "" : " ") $i
        print s; exit }'
}

# ------------------------------------------------------------------- boots

# Starts qemu in the background on the image; sets QEMU_PID and SERIAL.
# $1 names the boot (for the serial log's file name).
start_boot() {
    SERIAL=$WORK/serial-$1.log
    SERIALS+=("$SERIAL")
    echo "$SERIAL" >>"$WORK/last-serials"
    : >"$SERIAL"
    img_dump "/boot/vmlinuz-$KVER" "$WORK/vmlinuz"
    img_dump "/boot/initrd.img-$KVER" "$WORK/initrd.img"
    local args
    args="root=/dev/vda rw console=ttyS0 panic=-1 $(grub_args)"
    say "boot $1: -append \"$args\""
    rm -f "$WORK/qemu.pid"
    timeout --signal=KILL "$BOOT_TIMEOUT" \
        qemu-system-x86_64 -accel tcg -m 1024 -smp 2 \
        -machine q35,kernel-irqchip=split -device intel-iommu,intremap=on \
        -cpu qemu64,vendor=GenuineIntel \
        -display none -no-user-config -nodefaults -no-reboot \
        -serial "file:$SERIAL" -monitor none -pidfile "$WORK/qemu.pid" \
        -kernel "$WORK/vmlinuz" -initrd "$WORK/initrd.img" -append "$args" \
        -drive "file=$IMG,format=raw,if=virtio,cache=unsafe" -nic none \
        </dev/null >"$WORK/qemu-$1.out" 2>&1 &
    QEMU_PID=$!
    BOOT_T=$SECONDS
}

# Waits for the boot started last; fails when it hit the timeout.
wait_boot() {
    local rc=0
    wait "$QEMU_PID" || rc=$?
    [ "$rc" -eq 0 ] || fail "qemu ($1) exited $rc (137: the ${BOOT_TIMEOUT}s timeout): $(cat "$WORK/qemu-$1.out")"
    say "boot $1 ended by itself after $((SECONDS - BOOT_T))s"
}

# Boots once and waits for the guest to end the boot.
boot() { start_boot "$1"; wait_boot "$1"; }

# Boots and kills qemu (kill -9) when the console shows the line of a cut
# point still armed: CUTS[$2] or a later one (a step done before the last
# cut prints no line again; phase 2 steps take a fraction of a second, less
# than the polling interval). Sets CUT to the index of the cut that fired and
# returns 0, or returns 1 if the boot ended by itself first.
boot_and_cut() {
    local name=$1 from=$2 j spec pattern delay pid
    start_boot "$name"
    while kill -0 "$QEMU_PID" 2>/dev/null; do
        for ((j = from; j < ${#CUTS[@]}; j++)); do
            spec=${CUTS[$j]}
            pattern=${spec%|*} delay=${spec##*|}
            grep -Eq "$pattern" "$SERIAL" || continue
            sleep "$delay"
            pid=$(cat "$WORK/qemu.pid" 2>/dev/null || true)
            if [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; then
                wait "$QEMU_PID" || true
                # The image's ext4 journal was not replayed: debugfs would read
                # stale metadata. Replay it only, as the guest's kernel would
                # when it mounts the root at the next boot.
                e2fsck -E journal_only -p "$IMG" >/dev/null 2>&1 || true
                CUT=$j
                say "power cut at /$pattern/ +${delay}s (boot $name, after $((SECONDS - BOOT_T))s): $(landed)"
                return 0
            fi
        done
        sleep 0.5
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

# -------------------------------------------------------------- assertions

# Fails unless $1 (text) contains the fixed string $2; $3 says what it is.
has() { grep -qF -- "$2" <<<"$1" || fail "$3: no \"$2\" in: $1"; }

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
        /etc/default/grub.d/vgpu-bake.cfg /boot/grub/grub.cfg \
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
    local dropin
    dropin=$(img_cat /etc/default/grub.d/vgpu-bake.cfg)
    # shellcheck disable=SC2016 # the drop-in's literal text
    has "$dropin" 'GRUB_CMDLINE_LINUX_DEFAULT="${GRUB_CMDLINE_LINUX_DEFAULT} intel_iommu=on iommu=pt"' "GRUB drop-in"
    [ "$(grep -o 'intel_iommu=on' <<<"$dropin" | wc -l)" -eq 1 ] \
        || fail "GRUB drop-in has intel_iommu=on more than once: $dropin"
    [ "$(grub_args)" = "intel_iommu=on iommu=pt" ] \
        || fail "update-grub produced \"$(grub_args)\", expected the drop-in's args"
    grep -Eq '^#.*enterprise.proxmox.com' <<<"$(img_cat /etc/apt/sources.list.d/pve-enterprise.list)" \
        || fail "pve-enterprise.list is not commented out: $(img_cat /etc/apt/sources.list.d/pve-enterprise.list)"
    has "$(img_cat /etc/apt/sources.list.d/pve-no-subscription.list)" \
        "deb http://download.proxmox.com/debian/pve bookworm pve-no-subscription" "pve-no-subscription.list"

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
        has "$log" "plan demo complete" "the agent's log (journal)"
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
    has "$standins" "update-grub args: quiet intel_iommu=on iommu=pt" "stand-in log (update-grub)"
    has "$standins" "nvidia-smi vgpu" "stand-in log"
    has "$standins" "mdevctl types" "stand-in log"
    ! grep -q FAILED <<<"$standins" || fail "a stand-in was called wrongly: $standins"
    ! grep -Eq '^(proxmox-boot-tool|mokutil)' <<<"$standins" \
        || fail "a stand-in was called that this host should not need: $standins"
    say "stand-in calls: $(grep -v '^update-grub args:' <<<"$standins" | sort | uniq -c | tr -s ' ' | paste -sd, -)"
}

# Whether the agent wrote to the console of the boot logged in $1 (the
# journal forwards its lines as `vgpu-firstboot[PID]: ...`).
agent_ran() { grep -q 'vgpu-firstboot\[[0-9]*\]:' "$1"; }

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
            has "$text" "plan demo complete" "boot 2 console"
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
    check_console "$SERIAL" phase1
    img_exists /var/lib/vgpu-firstboot/done && fail "done after boot 1: no reboot happened"
    boot 2
    local d2=$((SECONDS - BOOT_T))
    check_console "$SERIAL" phase2
    boot 3
    local d3=$((SECONDS - BOOT_T))
    check_console "$SERIAL" idle
    check_final
    final_state >"$WORK/final-clean.txt"
    # How long each boot took (phase 1, phase 2, idle): --random-cuts draws
    # its cut delays within these.
    echo "$d1 $d2 $d3" >"$WORK/clean-durations"
}

# A clean run first, unless one for this build already left its results.
ensure_clean_run() {
    if [ ! -s "$WORK/final-clean.txt" ] || [ ! -s "$WORK/clean-durations" ] \
        || [ "$WORK/final-clean.txt" -ot "$REPO/target/release/vgpu-firstboot" ]; then
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
# command (apt/dpkg, update-initramfs, the driver installer). After the cut
# inside update-initramfs the next boot already has the kernel arguments
# (update-grub ran before it), so the agent rightly skips the reboot and runs
# phase 2 in that boot: no cut may wait for the agent's "rebooting:" line.
# `reboots` is left out of the comparison with the clean run for that reason.
CUTS=(
    'vgpu-firstboot: step apt-install:|20'
    'vgpu-firstboot: step kernel-args:|0'
    'vgpu-firstboot: step initramfs:|25'
    'vgpu-firstboot: step reboot:|0'
    'vgpu-firstboot: step verify-payload:|0'
    'vgpu-firstboot: step install-driver:|1'
    'vgpu-firstboot: step enable-services:|0'
    'vgpu-firstboot: step finish:|0'
)

power_cut_run() {
    ensure_clean_run
    make_image
    local n=0 cuts=0 converged=0 next=0
    while [ $n -lt 20 ]; do
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
            break
        fi
    done
    [ $cuts -ge 5 ] || fail "only $cuts power cuts happened"
    check_final
    final_state >"$WORK/final-cuts.txt"
    if diff -u "$WORK/final-clean.txt" "$WORK/final-cuts.txt"; then
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
    local name=$1 delay=$2 pid
    start_boot "$name"
    while kill -0 "$QEMU_PID" 2>/dev/null; do
        if [ $((SECONDS - BOOT_T)) -ge "$delay" ]; then
            pid=$(cat "$WORK/qemu.pid" 2>/dev/null || true)
            if [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; then
                wait "$QEMU_PID" || true
                # As in boot_and_cut: replay the ext4 journal only.
                e2fsck -E journal_only -p "$IMG" >/dev/null 2>&1 || true
                return 0
            fi
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
    read -r -a durations <"$WORK/clean-durations"
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
        diff -u "$WORK/final-clean.txt" "$WORK/final-random.txt" \
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
        mapfile -t SERIALS <"$WORK/last-serials"
        check_final
        say "PASS (checks only, on $IMG)"
        return
    fi
    install_tools
    build_binaries
    debootstrap_base
    case $MODE in
        clean) clean_run ;;
        power-cuts) power_cut_run ;;
        random-cuts) random_cut_run ;;
    esac
    say "PASS ($MODE) in $((SECONDS - T0))s"
}

# On one line, so bash has read the exit before it runs main: editing this
# file while it runs cannot make it run more.
main "$@"; exit

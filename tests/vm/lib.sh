# tests/vm/lib.sh: what the VM tests share (two-boot.sh, rollout.sh).
# shellcheck shell=bash
# Sourced, not run. The sourcing script sets REPO, WORK, ROOT (the tree the
# image is made from), IMG (the guest's disk), BOOT_TIMEOUT, SERIALS=() and
# T0=$SECONDS before it sources this file, and MODE where a function reads it.
#
# Knobs a caller may set (defaults: what two-boot.sh has always done):
# - BASE_INCLUDE: debootstrap's --include list; the tree is cached per list
#   ($WORK/base for the default list, $WORK/base-<hash> for another).
# - QEMU_NET: qemu's network arguments (array; default `-nic none`).
# - QEMU_EXTRA: more qemu arguments (array: a second disk, -smbios ...).
# - HARNESS_UNITS: the units the harness reports on the console, in order
#   (default vgpu-firstboot.service) and orders itself after.

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
# Cached per --include list: a rerun copies $BASE instead of debootstrapping
# again. Sets BASE.
BASE_INCLUDE_DEFAULT=systemd-sysv,udev,linux-image-amd64,kmod,apt
debootstrap_base() {
    local include=${BASE_INCLUDE:-$BASE_INCLUDE_DEFAULT} tag=
    if [ "$include" != "$BASE_INCLUDE_DEFAULT" ]; then
        tag=-$(printf %s "$include" | sha256sum | cut -c1-12)
    fi
    BASE=$WORK/base$tag
    if [ -e "$BASE/etc/os-release" ]; then
        say "debootstrap: using the cached tree $BASE"
        return
    fi
    say "debootstrap bookworm --include=$include (about 80 s)"
    rm -rf "$BASE.tmp"
    debootstrap --variant=minbase --include="$include" \
        bookworm "$BASE.tmp" "$(mirror)" >"$WORK/debootstrap$tag.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap$tag.log" >&2; fail "debootstrap failed"; }
    mv "$BASE.tmp" "$BASE"
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
    local units=${HARNESS_UNITS:-vgpu-firstboot.service}
    # shellcheck disable=SC2016 # the loop runs in the guest
    printf '#!/bin/sh\nfor u in %s; do\n%s\ndone\n' "$units" \
        '    echo "vgpu-harness: $u: ActiveState=$(systemctl show -P ActiveState $u) Result=$(systemctl show -P Result $u) ConditionResult=$(systemctl show -P ConditionResult $u)"' \
        | put /usr/local/libexec/vgpu-vm-harness 0755
    cat >>"$ROOT/usr/local/libexec/vgpu-vm-harness" <<'EOF'
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
    put /etc/systemd/system/vgpu-vm-harness.service <<EOF
[Unit]
Description=vgpu-bake VM test harness: report the agent's state, power off
After=${HARNESS_UNITS:-vgpu-firstboot.service}

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
    local args net=(-nic none)
    [ -z "${QEMU_NET+set}" ] || net=("${QEMU_NET[@]}")
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
        -drive "file=$IMG,format=raw,if=virtio,cache=unsafe" \
        "${net[@]}" ${QEMU_EXTRA[@]+"${QEMU_EXTRA[@]}"} \
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

# -------------------------------------------------------------- assertions

# Fails unless $1 (text) contains the fixed string $2; $3 says what it is.
has() { grep -qF -- "$2" <<<"$1" || fail "$3: no \"$2\" in: $1"; }

# Whether the agent wrote to the console of the boot logged in $1 (the
# journal forwards its lines as `vgpu-firstboot[PID]: ...`).
agent_ran() { grep -q 'vgpu-firstboot\[[0-9]*\]:' "$1"; }

# The guest's disk from $ROOT: sets KVER (the newest kernel in /boot) and
# writes $IMG, an ext4 image made with mkfs.ext4 -d (no loop device).
image_from_root() {
    KVER=$(find "$ROOT/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sort -V | tail -n 1)
    KVER=${KVER#vmlinuz-}
    [ -n "$KVER" ] || fail "no kernel in $ROOT/boot"
    truncate -s 2G "$IMG"
    mkfs.ext4 -q -F -L root -d "$ROOT" "$IMG"
}

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
# - HARNESS_STATUS=1: the harness also prints `vgpu-firstboot status` on the
#   console (a file in the guest, /etc/vgpu-vm-harness-status, turns it on).
# - BASE_CACHE: where debootstrap_base keeps its trees (default $WORK).
# - VGPU_VM_BASES (environment): overrides BASE_CACHE for every script, so
#   one cache outside the checkout serves every run on a machine (.ci/run
#   sets it; each tree is keyed by its suite and --include list).
# - BASE_SUITE: the Debian suite debootstrap_base installs (default
#   bookworm; another suite is cached as $WORK/base-<suite>-<hash>).
# - BOOT_VIA: how start_boot boots the image. `kernel` (default): qemu's
#   -kernel/-initrd/-append with the kernel and initrd read back from a bare
#   ext4 image (image_from_root), the arguments from grub_args. `firmware`:
#   OVMF boots the GPT disk disk_image_from_root made; the boot loader on
#   its ESP finds the kernel and its arguments (no -kernel/-append).
# - VIOMMU: 1 (default) gives the guest qemu's intel-iommu device (with
#   kernel-irqchip=split, which its interrupt remapping needs); 0 leaves
#   both out: a machine whose firmware has VT-d off or lacks it.
#
# Firmware-boot images (disk_image_from_root) have fixed identifiers, so
# fstab, loader entries and /etc/kernel/proxmox-boot-uuids can name them
# before the image exists: ROOT_UUID (ext4), ESP_UUID (the vfat volume id,
# as blkid and /dev/disk/by-uuid spell it), ROOT_PARTUUID, ESP_PARTUUID,
# DISK_GUID. img_cat & co. read the root partition at ROOT_OFFSET (bytes;
# empty for a bare ext4 image); esp_cat reads the ESP at ESP_OFFSET.

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
    # Firmware boots: OVMF, the GPT table (sfdisk), the ESP (vfat + mtools).
    local fw=()
    [ -e "$OVMF_CODE" ] || fw+=(ovmf)
    command -v sfdisk >/dev/null || fw+=(fdisk)
    command -v mkfs.vfat >/dev/null || fw+=(dosfstools)
    command -v mcopy >/dev/null || fw+=(mtools)
    need+=(${fw[@]+"${fw[@]}"})
    [ ${#need[@]} -gt 0 ] || return 0
    say "installing ${need[*]}"
    local bpo=/etc/apt/sources.list.d/vgpu-bake-bookworm-backports.list
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "deb $(mirror) bookworm-backports main" >"$bpo"
    fi
    apt-get update -qq
    command -v qemu-system-x86_64 >/dev/null \
        || apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86
    apt-get install -y -qq --no-install-recommends debootstrap e2tools cpio zstd
    command -v journalctl >/dev/null || apt-get install -y -qq --no-install-recommends systemd
    [ ${#fw[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${fw[@]}"
}

build_binaries() {
    say "cargo build --release"
    (cd "$REPO" && cargo build --release --quiet)
}

# ------------------------------------------------------------- guest's tree

# Debian 12 (or BASE_SUITE) as debootstrap leaves it (bookworm's
# /etc/os-release says bookworm, which the agent maps to Proxmox VE 8, like
# the demo profile's `proxmox = 8`). Cached per suite and --include list: a
# rerun copies $BASE instead of debootstrapping again. Sets BASE.
BASE_INCLUDE_DEFAULT=systemd-sysv,udev,linux-image-amd64,kmod,apt
debootstrap_base() {
    local include=${BASE_INCLUDE:-$BASE_INCLUDE_DEFAULT} suite=${BASE_SUITE:-bookworm} tag=
    if [ "$suite" != bookworm ]; then
        tag=-$suite-$(printf %s "$include" | sha256sum | cut -c1-12)
    elif [ "$include" != "$BASE_INCLUDE_DEFAULT" ]; then
        tag=-$(printf %s "$include" | sha256sum | cut -c1-12)
    fi
    BASE=${VGPU_VM_BASES:-${BASE_CACHE:-$WORK}}/base$tag
    mkdir -p "$(dirname "$BASE")"
    if [ -e "$BASE/etc/os-release" ]; then
        say "debootstrap: using the cached tree $BASE"
        return
    fi
    say "debootstrap $suite --include=$include (80 s or more)"
    rm -rf "$BASE.tmp"
    debootstrap --variant=minbase --include="$include" \
        "$suite" "$BASE.tmp" "$(mirror)" >"$WORK/debootstrap$tag.log" 2>&1 \
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

    add_grub_standins "$head"

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

# The GRUB stand-ins of the -kernel path (update-grub, grub-reboot,
# grub-editenv; $1 is add_standins' script head) and the grub.cfg a GRUB
# host has from its installation. Cells with a real boot loader take them
# out again (remove_grub_standins).
add_grub_standins() {
    local head=$1
    # update-grub: no GRUB in the guest (the -kernel path: the kernel cell,
    # rollout.sh, undo.sh, upgrade.sh; the real GRUB is the debian12-grub
    # cell's). Like grub-mkconfig it evaluates the settings (sourcing them in
    # a shell), writes one entry for the newest kernel with that command line,
    # and appends what the executable /etc/grub.d scripts print (the agent's
    # one-time trial entry). The harness boots the entry GRUB would: see
    # grub_args.
    put /usr/local/sbin/update-grub 0755 <<EOF
$head
[ \$# -eq 0 ] || die "takes no arguments"
args=\$(
    . /etc/default/grub || exit 1
    for f in /etc/default/grub.d/*.cfg; do [ -e "\$f" ] || continue; . "\$f" || exit 1; done
    echo \$GRUB_CMDLINE_LINUX \$GRUB_CMDLINE_LINUX_DEFAULT
) || die "the GRUB settings do not evaluate"
kernel=\$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
[ -n "\$kernel" ] || die "no kernel in /boot"
# Recorded before grub.cfg changes: a power cut cannot keep the effect
# and lose its record.
echo "update-grub args: \$args" >>"\$log"
sync "\$log"
mkdir -p /boot/grub
{
    printf "menuentry 'Debian GNU/Linux' --id debian {\n\tlinux %s root=/dev/vda ro %s\n}\n" "\$kernel" "\$args"
    for s in /etc/grub.d/*; do
        [ -f "\$s" ] && [ -x "\$s" ] || continue
        "\$s" || die "\$s failed"
    done
} >/boot/grub/grub.cfg.new
sync /boot/grub/grub.cfg.new && mv /boot/grub/grub.cfg.new /boot/grub/grub.cfg && sync /boot/grub
echo "Generating grub configuration file ... done (stand-in)" >&2
EOF

    # grub-reboot: GRUB's one-shot, as grub-editenv would write it
    # (next_entry in /boot/grub/grubenv). It refuses an entry grub.cfg
    # does not have, which the real one would leave GRUB to ignore.
    put /usr/local/sbin/grub-reboot 0755 <<EOF
$head
[ \$# -eq 1 ] || die "takes one entry, got: \$*"
grep -q -- "--id \$1 {" /boot/grub/grub.cfg || die "/boot/grub/grub.cfg has no entry with id \$1"
printf '# GRUB Environment Block\nnext_entry=%s\n' "\$1" >/boot/grub/grubenv.new
sync /boot/grub/grubenv.new && mv /boot/grub/grubenv.new /boot/grub/grubenv && sync /boot/grub
EOF

    # grub-editenv FILE unset KEY... | FILE list: what undo uses to clear a
    # one-shot it left.
    put /usr/local/bin/grub-editenv 0755 <<EOF
$head
[ "\${1:-}" = /boot/grub/grubenv ] || die "expected /boot/grub/grubenv, got: \$*"
env=\$1; cmd=\${2:-}
shift 2 || die "no command"
case "\$cmd" in
    list) [ ! -e "\$env" ] || grep -v '^#' "\$env" ;;
    unset)
        [ \$# -gt 0 ] || die "unset takes keys"
        [ -e "\$env" ] || exit 0
        for k in "\$@"; do sed -i "/^\$k=/d" "\$env"; done
        sync "\$env" ;;
    *) die "unexpected command: \$cmd" ;;
esac
EOF
    write_grub_cfg
}

# What a cell with a real boot loader does first: no GRUB stand-in may
# shadow the real GRUB (/usr/local comes first in PATH), and a
# systemd-boot host has no grub.cfg at all ($1 = all).
remove_grub_standins() {
    rm -f "$ROOT/usr/local/sbin/update-grub" "$ROOT/usr/local/sbin/grub-reboot" \
        "$ROOT/usr/local/bin/grub-editenv"
    [ "${1:-}" != all ] || rm -rf "$ROOT/boot/grub"
}

# Writes /boot/grub/grub.cfg as the update-grub stand-in would, on the host
# from the tree's settings (/etc/default/grub and grub.d): the file a GRUB
# host has from its installation, or from the installer's update-grub
# (rollout.sh).
write_grub_cfg() {
    local args kernel
    # shellcheck disable=SC1090,SC1091,SC2086 # the guest's settings, split as grub-mkconfig does
    args=$(
        . "$ROOT/etc/default/grub" || exit 1
        for f in "$ROOT"/etc/default/grub.d/*.cfg; do [ -e "$f" ] || continue; . "$f" || exit 1; done
        echo $GRUB_CMDLINE_LINUX $GRUB_CMDLINE_LINUX_DEFAULT
    ) || fail "the guest's GRUB settings do not evaluate"
    kernel=$(find "$ROOT/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '/boot/%f\n' | sort -V | tail -n 1)
    [ -n "$kernel" ] || fail "no kernel in $ROOT/boot"
    printf "menuentry 'Debian GNU/Linux' --id debian {\n\tlinux %s root=/dev/vda ro %s\n}\n" \
        "$kernel" "$args" | put /boot/grub/grub.cfg
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
# printf, not echo: the guest's sh (dash) would expand the backslashes of
# systemd-boot's initrd=\EFI\... (\6... is an octal escape to it).
printf 'vgpu-harness: cmdline: %s\n' "$(cat /proc/cmdline)"
echo "vgpu-harness: getty.target: $(systemctl is-active getty.target)"
if [ -e /etc/vgpu-vm-harness-status ]; then
    /usr/local/sbin/vgpu-firstboot status 2>&1 | sed 's/^/vgpu-harness: status: /'
fi
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
# After the gettys too: the guest got as far as a login prompt.
After=${HARNESS_UNITS:-vgpu-firstboot.service} getty.target

[Service]
Type=oneshot
ExecStart=/usr/local/libexec/vgpu-vm-harness
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
EOF
    if [ "${HARNESS_STATUS:-0}" = 1 ]; then
        put /etc/vgpu-vm-harness-status <<<'# vgpu-bake VM test: the harness prints vgpu-firstboot status'
    fi
    mkdir -p "$ROOT/etc/systemd/system/multi-user.target.wants"
    ln -sf ../vgpu-vm-harness.service \
        "$ROOT/etc/systemd/system/multi-user.target.wants/vgpu-vm-harness.service"
}

# ---------------------------------------------------------------- image I/O

# The root filesystem as debugfs names it: the image itself, or its root
# partition (debugfs's `?offset=` io option) in a disk_image_from_root image.
img_fs() { printf '%s' "$IMG${ROOT_OFFSET:+?offset=$ROOT_OFFSET}"; }

# Prints file $1 of the image (nothing if it does not exist; NUL bytes, which
# a power cut can leave at the end of an appended file, dropped).
img_cat() { debugfs -R "cat $1" "$(img_fs)" 2>/dev/null | tr -d '\0'; }

# Whether $1 exists in the image (a link counts; it is not followed).
img_exists() { ! debugfs -R "stat $1" "$(img_fs)" 2>&1 | grep -q 'File not found'; }

# Copies $1 out of the image to $2.
img_dump() {
    rm -f "$2"
    debugfs -R "dump $1 $2" "$(img_fs)" >/dev/null 2>&1
    [ -s "$2" ] || fail "cannot read $1 from the image"
}

# After qemu was killed: replays the root filesystem's ext4 journal only, as
# the guest's kernel would when it mounts the root at the next boot (debugfs
# would otherwise read stale metadata).
img_replay_journal() { e2fsck -E journal_only -p "$(img_fs)" >/dev/null 2>&1 || true; }

# Prints file $1 (a path on the ESP, e.g. /loader/loader.conf) of a
# disk_image_from_root image; fails when it cannot be read.
esp_cat() {
    [ -n "${ESP_OFFSET:-}" ] || fail "esp_cat $1: the image has no ESP (not made by disk_image_from_root)"
    MTOOLS_SKIP_CHECK=1 mtype -i "$IMG@@$ESP_OFFSET" "::$1"
}

# Lists directory $1 of the ESP (mdir's short form: one name a line).
esp_ls() {
    [ -n "${ESP_OFFSET:-}" ] || fail "esp_ls $1: the image has no ESP (not made by disk_image_from_root)"
    MTOOLS_SKIP_CHECK=1 mdir -b -i "$IMG@@$ESP_OFFSET" "::$1"
}

# Every path under the directories $@ of the image's root filesystem, one
# line each (sorted): path, type, mode, owner, link target; then each
# regular file's path and sha256. Read out with debugfs rdump into $WORK/tree (which
# keeps modes and owners), not mounted.
img_tree_digest() {
    local out=$WORK/tree d
    rm -rf "$out"
    for d in "$@"; do
        mkdir -p "$out$(dirname "$d")"
        debugfs -R "rdump $d $out$(dirname "$d")" "$(img_fs)" >/dev/null 2>&1 \
            || fail "cannot read $d from the image"
    done
    tree_digest "$out"
}

# The same for the ESP's files (copied out with mcopy; vfat keeps no owners
# or modes, so names, types and contents).
esp_digest() {
    local out=$WORK/esp-tree
    rm -rf "$out"
    mkdir -p "$out"
    MTOOLS_SKIP_CHECK=1 mcopy -s -n -i "$IMG@@$ESP_OFFSET" '::/*' "$out/" \
        || fail "cannot copy the ESP out of $IMG"
    tree_digest "$out"
}

# The listing and hashes of directory $1 (see img_tree_digest).
tree_digest() {
    (
        cd "$1" || exit 1
        find . -mindepth 1 -printf '%P %y %m %U:%G %l\n' | LC_ALL=C sort
        find . -type f -print0 | xargs -0 -r sha256sum \
            | sed -E 's#^([0-9a-f]+)  \./(.*)$#\2 sha256 \1#' | LC_ALL=C sort
    )
}

# The agent's log from the guest's journal in the image (its unit's
# messages, every boot).
agent_log() {
    rm -rf "$WORK/journal"
    mkdir -p "$WORK/journal"
    debugfs -R "rdump /var/log/journal $WORK/journal" "$(img_fs)" >/dev/null 2>&1 || true
    journalctl --no-pager -q -o cat -D "$WORK/journal/journal" \
        _SYSTEMD_UNIT=vgpu-firstboot.service 2>/dev/null || true
}

# The kernel arguments of the entry GRUB would boot, as the update-grub
# stand-in wrote them: the entry grub-reboot named (next_entry in
# /boot/grub/grubenv), which GRUB clears as it boots it, and so does this, in
# the image; else the first entry (GRUB_DEFAULT=0). root=, ro and quiet left
# out (the -append line has its own). Says which in $WORK/grub-boot-entry.
grub_args() {
    local next env=$WORK/grubenv
    next=$(img_cat /boot/grub/grubenv | sed -n 's/^next_entry=//p')
    if [ -n "$next" ]; then
        img_cat /boot/grub/grubenv | grep -v '^next_entry=' >"$env"
        debugfs -w -R "rm /boot/grub/grubenv" "$(img_fs)" >/dev/null 2>&1
        debugfs -w -R "write $env /boot/grub/grubenv" "$(img_fs)" >/dev/null 2>&1
        echo "the one-shot entry $next; next_entry cleared" >"$WORK/grub-boot-entry"
    else
        echo "the default entry" >"$WORK/grub-boot-entry"
    fi
    img_cat /boot/grub/grub.cfg | awk -v want="$next" '
        /^menuentry / {
            n++; id = ""
            for (i = 1; i < NF; i++) if ($i == "--id") id = $(i + 1)
            cur = (want == "" ? n == 1 : id == want)
        }
        cur && $1 == "linux" {
            s = ""
            for (i = 3; i <= NF; i++) if ($i !~ /^(root=.*|ro|quiet)$/) s = s (s == "" ? "" : " ") $i
            print s; exit
        }'
}

# ------------------------------------------------------------------- boots

# OVMF from Debian's ovmf package: the code read-only, the variables a
# per-image copy (see disk_image_from_root).
OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd
OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.fd

# The image's own EFI variable store, beside it: EFI variables (boot
# entries, systemd-boot's LoaderEntryOneShot) persist from boot to boot.
img_vars() { printf '%s' "${IMG%.img}.OVMF_VARS.fd"; }

# Starts qemu in the background on the image; sets QEMU_PID and SERIAL.
# $1 names the boot (for the serial log's file name). BOOT_VIA and VIOMMU
# (see the top) choose how it boots and whether it has an IOMMU.
start_boot() {
    SERIAL=$WORK/serial-$1.log
    # A boot started again (restart_if_silent) keeps its one entry.
    local n=${#SERIALS[@]}
    if [ "$n" -eq 0 ] || [ "${SERIALS[n - 1]}" != "$SERIAL" ]; then
        SERIALS+=("$SERIAL")
        echo "$SERIAL" >>"$WORK/last-serials"
    fi
    : >"$SERIAL"
    local args boot net=(-nic none) machine=q35 iommu=() note=" (no vIOMMU)"
    [ -z "${QEMU_NET+set}" ] || net=("${QEMU_NET[@]}")
    if [ "${VIOMMU:-1}" = 1 ]; then
        machine=q35,kernel-irqchip=split iommu=(-device 'intel-iommu,intremap=on') note=
    fi
    case ${BOOT_VIA:-kernel} in
        kernel)
            img_dump "/boot/vmlinuz-$KVER" "$WORK/vmlinuz"
            img_dump "/boot/initrd.img-$KVER" "$WORK/initrd.img"
            args="root=/dev/vda rw console=ttyS0 panic=-1 $(grub_args)"
            boot=(-kernel "$WORK/vmlinuz" -initrd "$WORK/initrd.img" -append "$args")
            say "boot $1: -append \"$args\" ($(cat "$WORK/grub-boot-entry"))$note"
            ;;
        firmware)
            [ -e "$(img_vars)" ] || fail "no EFI variable store $(img_vars) (disk_image_from_root makes it)"
            boot=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=$OVMF_CODE"
                -drive "if=pflash,format=raw,unit=1,file=$(img_vars)")
            say "boot $1: OVMF, the boot loader on the ESP$note"
            ;;
        *) fail "BOOT_VIA=${BOOT_VIA}: expected kernel or firmware" ;;
    esac
    rm -f "$WORK/qemu.pid"
    timeout --signal=KILL "$BOOT_TIMEOUT" \
        qemu-system-x86_64 -accel tcg -m 1024 -smp 2 \
        -machine "$machine" ${iommu[@]+"${iommu[@]}"} \
        -cpu qemu64,vendor=GenuineIntel \
        -display none -no-user-config -nodefaults -no-reboot \
        -serial "file:$SERIAL" -monitor none -pidfile "$WORK/qemu.pid" \
        "${boot[@]}" \
        -drive "file=$IMG,format=raw,if=virtio,cache=unsafe" \
        "${net[@]}" ${QEMU_EXTRA[@]+"${QEMU_EXTRA[@]}"} \
        </dev/null >"$WORK/qemu-$1.out" 2>&1 &
    QEMU_PID=$!
    BOOT_T=$SECONDS
}

# Whether the guest's kernel panicked in the boot logged in $SERIAL. Under
# TCG on a loaded machine the kernel now and then fails its early timer
# check through the remapped IO-APIC ("timer doesn't work through
# Interrupt-remapped IO-APIC"), seen here. With -kernel, panic=-1 makes that
# a reboot (qemu exits); a loader's command line has no panic=-1, so the
# kernel would wait for the timeout. A panic=N on the command line (N > 0)
# prints "Rebooting in N seconds.." instead of the end line, and the kernel
# resets the machine itself (qemu exits: -no-reboot).
kernel_panicked() { grep -Eq 'end Kernel panic - not syncing|^[][ 0-9.]*Rebooting in [0-9]+ seconds' "$SERIAL"; }

# Cuts the power of the running guest: kill -9 of qemu, then a replay of
# the image's ext4 journal only (debugfs would otherwise read stale
# metadata), as the guest's kernel replays it when it mounts the root at the
# next boot. Returns 1 when qemu had already ended.
power_off_qemu() {
    local pid
    pid=$(cat "$WORK/qemu.pid" 2>/dev/null || true)
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || return 1
    wait "$QEMU_PID" || true
    img_replay_journal
}

# Stops qemu after a kernel panic, as panic=-1 would (see kernel_panicked).
# Returns 0 when it did.
stop_on_panic() {
    kernel_panicked || return 1
    power_off_qemu || return 1
    say "boot $1: the kernel panicked ($(grep -m1 -o 'Kernel panic - not syncing: .*' "$SERIAL" | tr -d '\r')): qemu stopped, as panic=-1 would"
}

# Under TCG on a loaded machine a guest now and then hangs before its kernel
# prints a line (seen here: GRUB's "Booting ..." and then nothing for the
# whole timeout, while the same image boots at once when started again).
# Nothing of the guest's has run then, so the harness power-cycles it, as
# an admin would a host that hangs at boot, and starts the same boot again,
# at most twice per boot. KERNEL_SILENCE is how long it waits for the
# kernel's first timestamped line; with `quiet` that line comes 30-40 s
# (guest time) into the boot, when userspace loads modules, so under load
# it may take a few minutes of wall time.
KERNEL_SILENCE=${VGPU_VM_KERNEL_SILENCE:-360}
SILENT_RESTARTS=0

# Restarts the boot named $1 when its kernel stayed silent for
# KERNEL_SILENCE seconds (see above); returns 0 when it did.
restart_if_silent() {
    [ $((SECONDS - BOOT_T)) -ge "$KERNEL_SILENCE" ] || return 1
    grep -aqE '\[ *[0-9]+\.[0-9]{6}\]' "$SERIAL" && return 1
    [ "${SILENT_BOOT:-}" = "$1" ] || SILENT_BOOT=$1 SILENT_RESTARTS=0
    [ "$SILENT_RESTARTS" -lt 2 ] || return 1
    SILENT_RESTARTS=$((SILENT_RESTARTS + 1))
    power_off_qemu || return 1
    cp "$SERIAL" "${SERIAL%.log}.silent-$SILENT_RESTARTS.log"
    say "boot $1: no line from the guest's kernel in ${KERNEL_SILENCE}s (the TCG early-boot hang; ${SERIAL%.log}.silent-$SILENT_RESTARTS.log): power-cycled, starting it again"
    start_boot "$1"
}

# Waits for the boot started last; fails when it hit the timeout. A kernel
# panic (kernel_panicked) ends the boot as a reboot would; a boot whose
# kernel stays silent is started again (restart_if_silent).
wait_boot() {
    local rc=0
    while kill -0 "$QEMU_PID" 2>/dev/null; do
        if stop_on_panic "$1"; then
            return 0
        fi
        restart_if_silent "$1" || true
        sleep 1
    done
    wait "$QEMU_PID" || rc=$?
    [ "$rc" -eq 0 ] || fail "qemu ($1) exited $rc (137: the ${BOOT_TIMEOUT}s timeout): $(cat "$WORK/qemu-$1.out")"
    say "boot $1 ended by itself after $((SECONDS - BOOT_T))s"
}

# Boots once and waits for the guest to end the boot.
boot() { start_boot "$1"; wait_boot "$1"; }

# How the boot logged in $1 ended, from the kernel's last words on the
# console (printed at KERN_EMERG, so `quiet` keeps them): reboot, poweroff,
# panic (kernel_panicked), or unknown (qemu ended otherwise: killed, timed
# out).
boot_end() {
    local text
    text=$(tr -d '\r' <"$1")
    if grep -q 'Kernel panic - not syncing' <<<"$text"; then
        echo panic
    elif grep -q 'reboot: Restarting system' <<<"$text"; then
        echo reboot
    elif grep -q 'reboot: Power down' <<<"$text"; then
        echo poweroff
    else
        echo unknown
    fi
}

# Boots ($2-1, $2-2, ...) until a boot ends with the guest powering itself
# off, at most $1 boots; fails when a boot ends another way than a reboot or
# a power-off, or none powers off. Sets NBOOTS and BOOT_ENDS (one word a boot).
boot_until_poweroff() {
    local max=$1 prefix=$2 end
    NBOOTS=0 BOOT_ENDS=()
    while [ "$NBOOTS" -lt "$max" ]; do
        NBOOTS=$((NBOOTS + 1))
        boot "$prefix-$NBOOTS"
        end=$(boot_end "$SERIAL")
        BOOT_ENDS+=("$end")
        say "boot $prefix-$NBOOTS ended with: $end"
        case $end in
            poweroff) return 0 ;;
            reboot) ;;
            *) fail "boot $prefix-$NBOOTS ended without a reboot or power-off on its console" ;;
        esac
    done
    fail "the guest did not power off by itself in $max boots (ends: ${BOOT_ENDS[*]}): a reboot loop"
}

# -------------------------------------------------------------- assertions

# Fails unless $1 (text) contains the fixed string $2; $3 says what it is.
has() { grep -qF -- "$2" <<<"$1" || fail "$3: no \"$2\" in: $1"; }

# Whether the agent wrote to the console of the boot logged in $1 (the
# journal forwards its lines as `vgpu-firstboot[PID]: ...`).
agent_ran() { grep -q 'vgpu-firstboot\[[0-9]*\]:' "$1"; }

# Sets KVER: the newest kernel in $ROOT/boot.
root_kver() {
    KVER=$(find "$ROOT/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sort -V | tail -n 1)
    KVER=${KVER#vmlinuz-}
    [ -n "$KVER" ] || fail "no kernel in $ROOT/boot"
}

# The guest's disk from $ROOT: sets KVER (the newest kernel in /boot) and
# writes $IMG, an ext4 image made with mkfs.ext4 -d (no loop device), for
# BOOT_VIA=kernel.
image_from_root() {
    root_kver
    ROOT_OFFSET='' ESP_OFFSET=''
    truncate -s 2G "$IMG"
    mkfs.ext4 -q -F -L root -d "$ROOT" "$IMG"
}

# The fixed identifiers of a disk_image_from_root image (see the top).
ROOT_UUID=8d3f1c52-6a0e-4b8e-9f3a-2c7d5e4b1a60
ROOT_PARTUUID=4f68bce3-e8cd-4db1-96e7-fbcaf984b709
ESP_UUID=7A3B-2C1D
ESP_PARTUUID=1b0d9a57-3c2e-4f61-8a9d-5e0c7b2f4d13
DISK_GUID=2e5b8c41-9d7a-4f3e-b1c6-0a4d8e7f6c25
# The layout, in 512-byte sectors: the ESP at 1 MiB (128 MiB), the root
# after it (2 GiB), 1 MiB at the end for GPT's backup table.
ESP_START=2048 ESP_SECTORS=262144
ROOT_START=$((2048 + 262144)) ROOT_SECTORS=4194304

# The guest's disk for BOOT_VIA=firmware: sets KVER, ROOT_OFFSET and
# ESP_OFFSET and writes $IMG, a GPT disk (sfdisk on the image file, no loop
# device) with partition 1 the EFI system partition (vfat made with
# mkfs.vfat -C on a file, filled from $1 with mcopy) and partition 2 the
# root (ext4 made with mkfs.ext4 -d from $ROOT), each dd'd into place. Also
# makes the image's EFI variable store (img_vars), fresh: a new disk is a
# new machine.
disk_image_from_root() {
    local esp_dir=$1 part=$WORK/part.img
    [ -d "$esp_dir" ] || fail "disk_image_from_root: no ESP directory $esp_dir"
    root_kver
    rm -f "$IMG" "$part"
    truncate -s $(((ROOT_START + ROOT_SECTORS + 2048) * 512)) "$IMG"
    sfdisk --quiet "$IMG" <<EOF >/dev/null || fail "sfdisk could not write the partition table of $IMG"
label: gpt
label-id: $DISK_GUID
unit: sectors
first-lba: 2048
start=$ESP_START, size=$ESP_SECTORS, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=$ESP_PARTUUID, name="EFI system partition"
start=$ROOT_START, size=$ROOT_SECTORS, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=$ROOT_PARTUUID, name="root"
EOF
    # The ESP: FAT32 (what Debian's installer makes), the volume id fixed.
    mkfs.vfat -C -F 32 -n ESP -i "${ESP_UUID//-/}" "$part" $((ESP_SECTORS / 2)) >/dev/null \
        || fail "mkfs.vfat could not make the ESP"
    if [ -n "$(ls -A "$esp_dir")" ]; then
        MTOOLS_SKIP_CHECK=1 mcopy -s -Q -i "$part" "$esp_dir"/* ::/ \
            || fail "mcopy could not fill the ESP from $esp_dir"
    fi
    dd if="$part" of="$IMG" bs=512 seek="$ESP_START" conv=notrunc,sparse status=none
    rm -f "$part"
    truncate -s $((ROOT_SECTORS * 512)) "$part"
    mkfs.ext4 -q -F -L root -U "$ROOT_UUID" -d "$ROOT" "$part"
    dd if="$part" of="$IMG" bs=1M seek=$((ROOT_START / 2048)) conv=notrunc,sparse status=none
    rm -f "$part"
    ESP_OFFSET=$((ESP_START * 512)) ROOT_OFFSET=$((ROOT_START * 512))
    cp "$OVMF_VARS" "$(img_vars)"
}

# ------------------------------------------------------------------- cells

# A cell is one boot path (a Debian release, a boot loader, a profile):
# tests/vm/cells/NAME.sh, sourced. Its contract is in tests/vm/cells/
# README.md. Loads cell $1: sets BASE_SUITE and BASE_INCLUDE from it, and
# fails unless it set every variable and defined every function.
load_cell() {
    local f=$REPO/tests/vm/cells/$1.sh v fn
    [ -f "$f" ] || fail "no cell $1: $f does not exist (cells: $(find "$REPO/tests/vm/cells" -maxdepth 1 -name '*.sh' -printf '%f\n' | sed 's/\.sh$//' | sort | paste -sd' '))"
    unset -f cell_tree cell_esp cell_check_booted cell_check_final
    unset CELL_SUITE CELL_INCLUDE CELL_PROFILE BOOT_VIA CELL_BOOTLOADER
    # shellcheck disable=SC2034 # read by two-boot.sh
    CELL_STATE_FILES=()
    # shellcheck source=/dev/null # the cell is chosen at run time
    . "$f"
    for v in CELL_SUITE CELL_INCLUDE CELL_PROFILE BOOT_VIA; do
        [ -n "${!v:-}" ] || fail "cell $1 ($f) does not set $v"
    done
    for fn in cell_tree cell_esp cell_check_booted cell_check_final; do
        declare -F "$fn" >/dev/null || fail "cell $1 ($f) does not define $fn"
    done
    case $BOOT_VIA in
        kernel | firmware) ;;
        *) fail "cell $1 ($f): BOOT_VIA=$BOOT_VIA, expected kernel or firmware" ;;
    esac
    [ -f "$REPO/$CELL_PROFILE" ] || fail "cell $1 ($f): no profile $REPO/$CELL_PROFILE"
    BASE_SUITE=$CELL_SUITE BASE_INCLUDE=$CELL_INCLUDE
}

# Bakes the cell's profile and lays the bundle onto $ROOT with `vgpu-bake
# install`.
bake_and_install() {
    say "baking $CELL_PROFILE and installing the bundle onto the tree"
    # CELL_PROFILE is relative to the repository, or absolute (a profile a
    # test writes into its own directory).
    local bundle profile=$CELL_PROFILE
    [ "${profile#/}" != "$profile" ] || profile=$REPO/$profile
    bundle=$("$REPO/target/release/vgpu-bake" bake "$profile" \
        --out "$WORK/out" --cache "$WORK/cache" | tail -n 1)
    [ -f "$bundle" ] || fail "vgpu-bake bake printed no bundle path"
    "$REPO/target/release/vgpu-bake" install "$bundle" --root "$ROOT" >"$WORK/install.log"
    tail -n 1 "$WORK/install.log"
}

# The guest of the loaded cell from $BASE: the tree copied to $ROOT, the
# host files, stand-ins and harness, the cell's boot parts, the bundle, then
# $IMG.
cell_make_image() {
    say "copying the tree, adding stand-ins and the cell's boot parts, making the image"
    rm -rf "$ROOT" "$IMG"
    cp -a "$BASE" "$ROOT"
    add_host_files
    add_standins
    add_harness_unit
    cell_tree
    bake_and_install
    cell_image
}

# Writes $IMG from $ROOT the way the loaded cell boots: a bare ext4 image
# for BOOT_VIA=kernel, a GPT disk with the ESP cell_esp filled for firmware.
cell_image() {
    if [ "$BOOT_VIA" = firmware ]; then
        local esp=$WORK/esp
        rm -rf "$esp"
        mkdir -p "$esp"
        cell_esp "$esp"
        disk_image_from_root "$esp"
    else
        image_from_root
    fi
}

# Sets KVER, ROOT_OFFSET and ESP_OFFSET for an image cell_image made
# earlier (two-boot.sh --check reads the last run's image).
cell_image_offsets() {
    root_kver
    if [ "$BOOT_VIA" = firmware ]; then
        ESP_OFFSET=$((ESP_START * 512)) ROOT_OFFSET=$((ROOT_START * 512))
    else
        ROOT_OFFSET='' ESP_OFFSET=''
    fi
}

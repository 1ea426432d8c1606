#!/usr/bin/env bash
# tests/vm/rollout.sh: the rollout path end to end (issue 11 item 6). A
# Debian 12 VM starts the way the Proxmox automated installer leaves a new
# host (its first-boot hook, flag and units); at first boot the hook made by
# `vgpu-bake fleet`/`hook` finds, verifies and lays its bundle, and the agent
# runs the plan to done.
#
#   bash tests/vm/rollout.sh                 # every case: http usb tampered
#   bash tests/vm/rollout.sh http tampered   # some of them
#
# Cases:
# - http: a fleet directory (`vgpu-bake fleet`: the VM's MAC -> profile
#   vm-a with `[report] url`, default -> profile vm-default) served by
#   `python3 -m http.server` on the host's 127.0.0.1, which the guest
#   reaches only through qemu's user networking (`restrict=on`, no route
#   out) and a guestfwd from 10.0.2.100:80. The kernel arguments `vgpu-bake
#   answer` prints are on the installer's boot line (so in the installed
#   system's boot configuration before its first boot): the agent runs both
#   phases in one boot, 0 reboots. A collector (python3, 127.0.0.1, guestfwd
#   10.0.2.101:8080) keeps each report POST; the node_exporter textfile is
#   read back from the image and checked with `promtool check metrics`.
#   Then a check boot: nothing runs again.
# - usb: `vgpu-bake usb` of vm-a's bundle (label VGPUSTICK) as a second
#   disk, a hook made with `vgpu-bake hook --bundle --from-label`, no IOMMU
#   arguments on the boot line: phase 1, one reboot, phase 2, done.
# - tampered: the http case's fleet directory with one byte of the VM's
#   bundle flipped: the hook refuses (its reason on the console), exits
#   non-zero, the flag stays, the guest is unchanged, no reboot.
#
# Runs as root on a Debian 12 machine (the same needs as two-boot.sh, plus
# python3 and promtool from Debian's prometheus package; it installs what is
# missing). The debootstrap tree is cached per --include list in
# $VGPU_VM_WORK (default target/vm); each case works in $VGPU_VM_WORK/rollout-CASE.
# Environment: VGPU_VM_WORK, VGPU_VM_BOOT_TIMEOUT (seconds per boot, default 900).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
TOP=${VGPU_VM_WORK:-$REPO/target/vm}
WORK=$TOP
BOOT_TIMEOUT=${VGPU_VM_BOOT_TIMEOUT:-900}
CASES=()
for a in "$@"; do
    case $a in
        http | usb | tampered) CASES+=("$a") ;;
        *) echo "usage: $0 [http] [usb] [tampered]" >&2; exit 2 ;;
    esac
done
[ ${#CASES[@]} -gt 0 ] || CASES=(http usb tampered)

export DEBIAN_FRONTEND=noninteractive
SERIALS=()
T0=$SECONDS

# shellcheck source=tests/vm/lib.sh
. "$REPO/tests/vm/lib.sh"

BAKE=$REPO/target/release/vgpu-bake
# What a fresh Proxmox VE host has and debootstrap's minbase does not, for
# the tools the hook calls: wget (pve-manager Depends: wget), openssl
# (pve-cluster Depends: openssl); mount/umount (package mount, from
# util-linux's source, Priority: required, so on every Debian system, PVE
# included) and udev (/dev/disk/by-label; Priority: important, in the
# Debian base the PVE installer lays) are already in the default list.
BASE_INCLUDE=$BASE_INCLUDE_DEFAULT,wget,openssl,mount
# The units the harness reports on, in boot order, and runs after.
HARNESS_UNITS="proxmox-first-boot-network-pre.service proxmox-first-boot-network-online.service proxmox-first-boot-multi-user.service vgpu-firstboot.service"
FB=/var/lib/proxmox-first-boot
VM_MAC=52:54:00:4b:1d:07
VM_SERIAL=VGPU-VM-0001
LABEL=VGPUSTICK
PIDS=() # the host's servers, stopped at exit
CASE=   # the case running
SUMMARY=()

# lib.sh's fail, with the tail of each console log of the case (the whole
# logs stay in $WORK) and the summary so far.
fail() {
    echo "FAIL: ${CASE:+case $CASE: }$*" >&2
    local s
    for s in "${SERIALS[@]}"; do
        printf '\n----- serial console: %s (last 60 lines) -----\n' "$s" >&2
        tail -n 60 "$s" | tr -d '\r' >&2 || true
    done
    [ ${#SUMMARY[@]} -eq 0 ] || printf '%s\n' "${SUMMARY[@]}" >&2
    [ -z "$CASE" ] || printf 'rollout %-9s FAIL %4ds\n' "$CASE" $((SECONDS - CASE_T)) >&2
    echo "FAIL: ${CASE:+case $CASE: }$*" >&2
    exit 1
}

cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# ---------------------------------------------------------------- host side

install_rollout_tools() {
    local need=()
    command -v python3 >/dev/null || need+=(python3)
    command -v promtool >/dev/null || need+=(prometheus)
    [ ${#need[@]} -gt 0 ] || return 0
    say "installing ${need[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}"
}

# The profiles: vm-a (the VM's, with a report URL) and vm-default (for
# hosts the inventory does not name). Copies of the demo profile, whose
# files stay in its directory.
make_profiles() {
    P=$TOP/rollout-profiles
    rm -rf "$P"
    mkdir -p "$P"
    cp -a "$REPO/profiles/demo" "$P/demo"
    sed 's/^name = "demo"$/name = "vm-a"/' "$REPO/profiles/demo.toml" >"$P/vm-a.toml"
    printf '\n[report]\nurl = "http://10.0.2.101:8080/report"\n' >>"$P/vm-a.toml"
    sed 's/^name = "demo"$/name = "vm-default"/' "$REPO/profiles/demo.toml" >"$P/vm-default.toml"
    grep -q '^name = "vm-a"$' "$P/vm-a.toml" || fail "profiles/demo.toml no longer has name = \"demo\""
    "$BAKE" keygen "$TOP/rollout-key" --force >/dev/null
}

# The inventory: the VM by MAC -> vm-a, another host by DMI serial ->
# vm-default, everyone else (the default) -> vm-default.
write_inventory() {
    cat >"$P/inventory.toml" <<EOF
default = "vm-default.toml"

[[host]]
name = "vgpu-vm"
mac = ["$VM_MAC"]
profile = "vm-a.toml"

[[host]]
name = "rack-2"
serial = "SOME-OTHER-SERIAL"
profile = "vm-default.toml"
EOF
}

# `vgpu-bake fleet` into $1 with the source flags $2...: sets BUNDLE_A (the
# sha256 of the index's bundle named vm-a).
make_fleet() {
    local out=$1
    shift
    rm -rf "$out"
    say "vgpu-bake fleet --out $out $*"
    "$BAKE" fleet "$P/inventory.toml" --out "$out" "$@" \
        --sign-key "$TOP/rollout-key.key" --trusted-key "$TOP/rollout-key.pub" \
        --cache "$TOP/cache" >"$out.log" 2>&1 \
        || fail "vgpu-bake fleet: $(cat "$out.log")"
    sed 's/^/    /' "$out.log"
    [ -x "$out/first-boot-hook" ] || fail "vgpu-bake fleet wrote no $out/first-boot-hook"
    [ "$(find "$out/bundles" -name '*.cpio.zst' | wc -l)" -eq 2 ] \
        || fail "vgpu-bake fleet did not write 2 bundles (2 profiles): $(ls "$out/bundles")"
    BUNDLE_A=$(python3 - "$out/index.toml" <<'EOF'
import sys, tomllib
ix = tomllib.load(open(sys.argv[1], "rb"))
print(*[b["sha256"] for b in ix["bundle"] if b["name"] == "vm-a"])
EOF
)
    [[ $BUNDLE_A =~ ^[0-9a-f]{64}$ ]] || fail "no single bundle named vm-a in $out/index.toml"
}

# Serves $1 with Debian's python3 on 127.0.0.1, a free port: sets SERVE_PORT.
serve_dir() {
    local log=$WORK/http-server.log
    python3 -u -m http.server --bind 127.0.0.1 0 --directory "$1" >"$log" 2>&1 &
    PIDS+=($!)
    SERVE_PORT=$(wait_port "$log" 'port ([0-9]+)')
}

# The collector: keeps every POST body as $WORK/posts/NNN.json. Sets COLLECT_PORT.
start_collector() {
    rm -rf "$WORK/posts"
    mkdir -p "$WORK/posts"
    local log=$WORK/collector.log
    python3 -u - "$WORK/posts" >"$log" 2>&1 <<'EOF' &
import http.server, os, sys
out = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        n = len(os.listdir(out))
        with open(os.path.join(out, "%03d.json" % n), "wb") as f:
            f.write(body)
        self.send_response(204)
        self.end_headers()
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print("collector on port", s.server_address[1])
s.serve_forever()
EOF
    PIDS+=($!)
    COLLECT_PORT=$(wait_port "$log" 'port ([0-9]+)')
}

# Waits for a server's log ($1) to name its port (regex $2 with one group).
wait_port() {
    local port
    for _ in $(seq 50); do
        port=$(sed -nE "s/.*$2.*/\\1/p" "$1" | head -n 1)
        [ -z "$port" ] || { echo "$port"; return; }
        sleep 0.1
    done
    fail "no port in $1: $(cat "$1")"
}

# qemu's user networking: no route anywhere (restrict=on); only the
# forwards given, to the host's loopback. Each forward runs `relay` per
# connection (guestfwd's cmd: form): the plain form (`-tcp:127.0.0.1:PORT`,
# one chardev connected once at qemu's start) served the guest's first
# connection and hung the second (measured with qemu 10.0.2), and the agent
# POSTs several times. Two guestfwds also need distinct guest ports (qemu
# names each forward's chardev guestfwd.tcp.PORT: "duplicate yank instance").
user_net() {
    local fwd=
    [ -z "${SERVE_PORT:-}" ] || fwd+=",guestfwd=tcp:10.0.2.100:80-cmd:python3 $RELAY $SERVE_PORT"
    [ -z "${COLLECT_PORT:-}" ] || fwd+=",guestfwd=tcp:10.0.2.101:8080-cmd:python3 $RELAY $COLLECT_PORT"
    QEMU_NET=(-netdev "user,id=n0,restrict=on$fwd" -device "virtio-net-pci,netdev=n0,mac=$VM_MAC")
}

# The relay: stdin/stdout (the guest's connection) <-> 127.0.0.1:PORT.
write_relay() {
    RELAY=$TOP/rollout-relay.py
    cat >"$RELAY" <<'EOF'
import os, select, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
ins, outs = [0, s], True
while ins:
    for r in select.select(ins, [], [])[0]:
        if r == 0:
            data = os.read(0, 65536)
            if data:
                s.sendall(data)
            else:
                s.shutdown(socket.SHUT_WR)
                ins.remove(0)
        else:
            data = s.recv(65536)
            if not data:
                sys.exit(0)
            os.write(1, data)
EOF
    case $RELAY in *,* | *' '*) fail "qemu's option syntax cannot take $RELAY (a comma or space)" ;; esac
}

# --------------------------------------------------------------- the guest

# systemd-networkd with DHCP (qemu's), and network-online.target through
# systemd-networkd-wait-online. A PVE host uses ifupdown2 instead; the
# hook only needs the network up when its ordering says so.
add_network() {
    put /etc/systemd/network/20-wired.network <<'EOF'
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
EOF
    systemctl --root="$ROOT" enable systemd-networkd.service systemd-networkd-wait-online.service \
        >/dev/null 2>&1 || fail "systemctl --root enable systemd-networkd failed"
}

# The guest as the Proxmox automated installer leaves it: the hook copied to
# $FB/proxmox-first-boot (the directory 0700), the flag, and the three
# first-boot units, with only $1's (the ordering's) enabled through a .wants
# link. These units are OUR COPIES, written from the description in
# shared/reference/anchors-firstboot.md §2.1 (Proxmox's proxmox-first-boot
# package is not available here): Type=oneshot, RemainAfterExit,
# ConditionPathExists the flag, ConditionPathIsReadWrite /var/lib, the hook
# run with the ordering as argv[1], and the flag removed by ExecStartPost
# (which runs only when the hook exited 0).
add_first_boot() {
    local hook=$1 ordering=$2
    mkdir -p "$ROOT$FB"
    install -m 0700 "$hook" "$ROOT$FB/proxmox-first-boot"
    chmod -R 0700 "$ROOT$FB"
    : >"$ROOT$FB/pending-first-boot-setup"
    local name ord order wanted
    for name in network-pre network-online multi-user; do
        case $name in
            network-pre)
                ord=before-network wanted=network.target
                order=$'DefaultDependencies=no\nWants=network-pre.target\nBefore=network-pre.target\nAfter=local-fs.target' ;;
            network-online)
                ord=network-online wanted=multi-user.target
                order=$'Wants=network-online.target\nAfter=network-online.target' ;;
            multi-user)
                ord=fully-up wanted=multi-user.target
                order=$'After=network-online.target pveproxy.service pvedaemon.service' ;;
        esac
        put "/usr/lib/systemd/system/proxmox-first-boot-$name.service" <<EOF
# vgpu-bake VM test: our copy of the unit Proxmox ships, from its description.
[Unit]
Description=Proxmox First Boot Setup ($ord)
$order
ConditionPathExists=$FB/pending-first-boot-setup
ConditionPathIsReadWrite=/var/lib

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=$FB/proxmox-first-boot $ord
ExecStartPost=/usr/bin/rm -v $FB/pending-first-boot-setup

[Install]
WantedBy=$wanted
EOF
        if [ "$ord" = "$ordering" ]; then
            mkdir -p "$ROOT/etc/systemd/system/$wanted.wants"
            ln -s "/usr/lib/systemd/system/proxmox-first-boot-$name.service" \
                "$ROOT/etc/systemd/system/$wanted.wants/"
        fi
    done
}

# What the installer does with its boot line: the arguments (minus its own)
# go to /etc/default/grub.d/installer.cfg, then update-grub. This is the
# update-grub stand-in's evaluation and entry (lib.sh), run on the host, as the
# installer runs update-grub in the target before its first boot.
installer_boot_line() {
    [ -z "$1" ] || put /etc/default/grub.d/installer.cfg <<<"GRUB_CMDLINE_LINUX=\"\$GRUB_CMDLINE_LINUX $1\""
    write_grub_cfg
}

# A guest tree as the installer leaves it; the image made from it.
# $1 the hook, $2 the ordering, $3 the installer's boot line arguments.
make_guest() {
    rm -rf "$ROOT" "$IMG"
    : >"$WORK/last-serials"
    cp -a "$BASE" "$ROOT"
    add_host_files
    add_standins
    add_harness_unit
    add_network
    add_first_boot "$1" "$2"
    installer_boot_line "$3"
    # The guest has never seen the bundle.
    if [ -e "$ROOT/usr/local/sbin/vgpu-firstboot" ] || [ -e "$ROOT/var/lib/vgpu-firstboot" ]; then
        fail "the base tree has agent files"
    fi
    image_from_root
}

# `vgpu-bake answer` for vm-a: sets ANSWER_ORDERING and ANSWER_ARGS (the
# boot line for Intel CPUs, as the guest's). $@: more flags.
answer() {
    "$BAKE" answer "$P/vm-a.toml" "$@" >"$WORK/answer.txt" 2>&1 \
        || fail "vgpu-bake answer: $(cat "$WORK/answer.txt")"
    "$BAKE" answer "$P/vm-a.toml" "$@" --json >"$WORK/answer.json" 2>&1 \
        || fail "vgpu-bake answer --json: $(cat "$WORK/answer.json")"
    say "vgpu-bake answer $*:"
    sed 's/^/    /' "$WORK/answer.txt"
    read -r ANSWER_ORDERING ANSWER_ARGS < <(python3 - "$WORK/answer.json" <<'EOF'
import json, sys
a = json.load(open(sys.argv[1]))
# The line for the guest's CPUs (qemu64,vendor=GenuineIntel).
lines = [k["line"] for k in a["kernel-args"] if k["vendor"] == "intel"]
print(a["first-boot"]["ordering"], *lines)
EOF
) || fail "cannot read ordering and kernel arguments from $WORK/answer.json"
}

# -------------------------------------------------------------- assertions

state_field() { # $1 key of state.toml's [status] (or top level)
    img_cat /var/lib/vgpu-firstboot/state.toml | sed -n "s/^$1 = //p" | head -n 1 | tr -d '"'
}

# The unit of ordering $1.
ord_unit() {
    case $1 in
        before-network) echo proxmox-first-boot-network-pre.service ;;
        network-online) echo proxmox-first-boot-network-online.service ;;
        fully-up) echo proxmox-first-boot-multi-user.service ;;
        *) fail "unknown ordering: $1" ;;
    esac
}

# The agent reached done, with $1 reboots.
check_done() {
    local state
    state=$(img_cat /var/lib/vgpu-firstboot/state.toml)
    [ -n "$state" ] || fail "no /var/lib/vgpu-firstboot/state.toml in the image"
    grep -A1 '^\[status\]' <<<"$state" | grep -qx 'state = "done"' \
        || fail "state.toml status is not done: $state"
    img_exists /var/lib/vgpu-firstboot/done || fail "no done marker"
    [ "$(state_field reboots)" = "$1" ] || fail "state.toml says reboots = $(state_field reboots), expected $1"
    has "$(img_cat /var/lib/vgpu-demo/installed)" "dkms=yes" "demo driver marker"
    img_exists /usr/bin/hello || fail "/usr/bin/hello is not installed"
    has "$(img_cat /var/lib/vgpu-firstboot/plan.toml)" 'name = "vm-a"' "the laid plan (the VM's bundle)"
}

# The hook's unit for $1 (ordering) succeeded and removed the flag; its
# marker names bundle $2.
check_hook_done() {
    ! img_exists "$FB/pending-first-boot-setup" || fail "the flag $FB/pending-first-boot-setup is still there"
    local marker
    marker=$(img_cat "$FB/vgpu-hook.done")
    has "$marker" "$2" "the hook's marker $FB/vgpu-hook.done"
    for k in $(img_ls /etc/vgpu-firstboot/trusted-keys); do
        has "$(img_cat "/etc/vgpu-firstboot/trusted-keys/$k")" "$(tail -n 1 "$TOP/rollout-key.pub")" "trusted key $k"
        return 0
    done
    fail "no trusted key installed in /etc/vgpu-firstboot/trusted-keys"
}

# Names in directory $1 of the image.
img_ls() { debugfs -R "ls -p $1" "$IMG" 2>/dev/null | awk -F/ 'NF > 5 && $6 != "." && $6 != ".." { print $6 }'; }

# The node_exporter textfile(s): read back, checked with promtool; done,
# with $1 reboots.
check_textfile() {
    local dir=/var/lib/prometheus/node-exporter f n=0
    for f in $(img_ls "$dir"); do
        case $f in *.prom) ;; *) continue ;; esac
        img_dump "$dir/$f" "$WORK/$f"
        promtool check metrics <"$WORK/$f" >"$WORK/promtool.out" 2>&1 \
            || fail "promtool check metrics $dir/$f: $(cat "$WORK/promtool.out") in: $(cat "$WORK/$f")"
        has "$(cat "$WORK/$f")" 'vgpu_firstboot_state{plan="vm-a",state="done"} 1' "$dir/$f"
        has "$(cat "$WORK/$f")" "vgpu_firstboot_reboots{plan=\"vm-a\"} $1" "$dir/$f"
        n=$((n + 1))
        say "textfile $dir/$f: $(grep -c '^vgpu_firstboot_' "$WORK/$f") samples, promtool check metrics: ok"
    done
    [ "$n" -gt 0 ] || fail "no *.prom textfile in $dir"
}

# The collector's POSTs (`status --json` documents): each parses as JSON,
# the last one says done with $1 reboots and every step done.
check_posts() {
    local n
    n=$(find "$WORK/posts" -name '*.json' | wc -l)
    [ "$n" -ge 2 ] || fail "the collector got $n POSTs, expected one per phase change and one at the end"
    python3 - "$WORK/posts" "$1" <<'EOF' || fail "the collector's POSTs (above) are not what the agent should send"
import json, os, sys
d, reboots = sys.argv[1], int(sys.argv[2])
docs = [json.load(open(os.path.join(d, f))) for f in sorted(os.listdir(d))]
print("POSTs: status", [doc["status"] for doc in docs])
last = docs[-1]
bad = [s["id"] for s in last["steps"] if s["state"] != "done"]
ok = last["status"] == "done" and last["reboots"] == reboots and not bad
if not ok:
    print("last POST: status", last["status"], "reboots", last["reboots"], "steps not done", bad)
sys.exit(0 if ok else 1)
EOF
    say "collector: $n POSTs, each JSON, the last one done with $1 reboots"
}

# A listing of what the flow may touch in the image: path, type, mode,
# size, sha256; what every boot changes itself is left out.
img_listing() {
    local d=$WORK/listing.tmp
    rm -rf "$d"
    mkdir -p "$d"
    local p
    for p in /etc /usr/local /var/lib /boot; do
        mkdir -p "$d$(dirname "$p")"
        debugfs -R "rdump $p $d$(dirname "$p")" "$IMG" >/dev/null 2>&1 || fail "cannot read $p from the image"
    done
    (cd "$d" && find . \( -path ./var/lib/systemd -o -path ./var/lib/private \) -prune -o \
        -printf '%p %y %m %s\n' | sort)
    (cd "$d" && find . \( -path ./var/lib/systemd -o -path ./var/lib/private \) -prune -o \
        -type f -print0 | sort -z | xargs -0 sha256sum)
    rm -rf "$d"
}

console() { tr -d '\r' <"$1"; }

# ------------------------------------------------------------------- cases

case_http() {
    WORK=$TOP/rollout-http ROOT=$TOP/rollout-http/root IMG=$TOP/rollout-http/disk.img
    mkdir -p "$WORK"
    answer --hook-url http://10.0.2.100/first-boot-hook
    [ -n "$ANSWER_ARGS" ] || fail "vgpu-bake answer printed no kernel arguments"
    make_guest "$FLEET/first-boot-hook" "$ANSWER_ORDERING" "$ANSWER_ARGS"
    SERVE_PORT='' COLLECT_PORT=''
    serve_dir "$FLEET"
    start_collector
    user_net
    QEMU_EXTRA=(-smbios "type=1,serial=$VM_SERIAL")
    say "serving $FLEET on 127.0.0.1:$SERVE_PORT, collector on 127.0.0.1:$COLLECT_PORT"
    boot http-1
    local text
    text=$(console "$SERIAL")
    has "$text" "vgpu-harness: powering off" "boot 1 console (no reboot: the harness powered off)"
    ! grep -q 'vgpu-firstboot: rebooting:' <<<"$text" || fail "the agent rebooted though the boot line had the arguments"
    has "$text" "vgpu-harness: $(ord_unit "$ANSWER_ORDERING"): ActiveState=active Result=success ConditionResult=yes" \
        "boot 1 console (the hook's unit)"
    has "$text" "$ANSWER_ARGS" "boot 1 console (/proc/cmdline)"
    check_done 0
    check_hook_done "$ANSWER_ORDERING" "$BUNDLE_A"
    check_posts 0
    check_textfile 0
    boot http-2
    text=$(console "$SERIAL")
    has "$text" "vgpu-harness: powering off" "check boot console"
    ! grep -q 'vgpu-firstboot\[[0-9]*\]:' <<<"$text" || fail "the agent ran again in the check boot"
    has "$text" "vgpu-harness: $(ord_unit "$ANSWER_ORDERING"): ActiveState=inactive Result=success ConditionResult=no" \
        "check boot console (the hook's unit skipped: no flag)"
}

case_usb() {
    WORK=$TOP/rollout-usb ROOT=$TOP/rollout-usb/root IMG=$TOP/rollout-usb/disk.img
    mkdir -p "$WORK"
    # One bundle (vm-a's, signed), its stick, and a hook for it alone.
    local bundle sha
    rm -rf "$WORK/out"
    bundle=$("$BAKE" bake "$P/vm-a.toml" --out "$WORK/out" --cache "$TOP/cache" \
        --sign-key "$TOP/rollout-key.key" | tail -n 1)
    [ -f "$bundle" ] || fail "vgpu-bake bake printed no bundle path"
    sha=$(cut -d' ' -f1 "$bundle.sha256")
    "$BAKE" usb "$bundle" --out "$WORK/usb.img" --label "$LABEL" --force | tail -n 1
    "$BAKE" hook --bundle "$bundle" --from-label "$LABEL" \
        --trusted-key "$TOP/rollout-key.pub" --out "$WORK/hook" | tail -n 1
    answer
    make_guest "$WORK/hook" "$ANSWER_ORDERING" ""
    SERVE_PORT='' COLLECT_PORT=''
    start_collector
    user_net
    QEMU_EXTRA=(-drive "file=$WORK/usb.img,format=raw,if=virtio,readonly=on")
    boot usb-1
    local text
    text=$(console "$SERIAL")
    has "$text" "vgpu-firstboot: rebooting:" "boot 1 console (phase 1 ends with the reboot)"
    ! img_exists /var/lib/vgpu-firstboot/done || fail "done after boot 1: no reboot happened"
    boot usb-2
    text=$(console "$SERIAL")
    has "$text" "plan vm-a complete" "boot 2 console"
    has "$text" "vgpu-harness: powering off" "boot 2 console"
    check_done 1
    check_hook_done "$ANSWER_ORDERING" "$sha"
    check_posts 1
    check_textfile 1
    say "boots: 2 (phase 1, reboot, phase 2)"
}

case_tampered() {
    WORK=$TOP/rollout-tampered ROOT=$TOP/rollout-tampered/root IMG=$TOP/rollout-tampered/disk.img
    mkdir -p "$WORK"
    rm -rf "$WORK/fleet"
    cp -a "$FLEET" "$WORK/fleet"
    local f=$WORK/fleet/bundles/$BUNDLE_A.cpio.zst size off byte
    size=$(stat -c %s "$f")
    off=$((size / 2))
    byte=$(od -An -tu1 -j "$off" -N1 "$f" | tr -d ' ')
    printf '%b' "$(printf '\\0%03o' $((byte ^ 0x01)))" | dd of="$f" bs=1 seek="$off" conv=notrunc status=none
    cmp -s "$f" "$FLEET/bundles/$BUNDLE_A.cpio.zst" && fail "the byte flip did not change $f"
    say "flipped one bit of byte $off of $f"
    answer --hook-url http://10.0.2.100/first-boot-hook
    make_guest "$FLEET/first-boot-hook" "$ANSWER_ORDERING" "$ANSWER_ARGS"
    SERVE_PORT='' COLLECT_PORT=''
    serve_dir "$WORK/fleet"
    start_collector
    user_net
    QEMU_EXTRA=(-smbios "type=1,serial=$VM_SERIAL")
    img_listing >"$WORK/before.txt"
    boot tampered-1
    img_listing >"$WORK/after.txt"
    local text
    text=$(console "$SERIAL")
    has "$text" "vgpu-harness: powering off" "boot 1 console (no reboot)"
    # The hook's reason, on the console: the bundle's sha256 is not the index's.
    grep -E "^vgpu-hook: could not get bundle vm-a .*its sha256 is [0-9a-f]{64}, the index says $BUNDLE_A" <<<"$text" \
        || fail "the console does not show the hook's reason for refusing the bundle (its sha256)"
    has "$text" "vgpu-harness: $(ord_unit "$ANSWER_ORDERING"): ActiveState=failed Result=exit-code ConditionResult=yes" \
        "boot 1 console (the hook's unit failed)"
    img_exists "$FB/pending-first-boot-setup" || fail "the flag is gone though the hook failed"
    for p in /usr/local/sbin/vgpu-firstboot /var/lib/vgpu-firstboot /etc/vgpu-firstboot \
        "$FB/vgpu-hook.done"; do
        ! img_exists "$p" || fail "$p exists after the hook refused the bundle"
    done
    diff -u "$WORK/before.txt" "$WORK/after.txt" >"$WORK/listing.diff" \
        || fail "the guest changed: $(cat "$WORK/listing.diff")"
    [ "$(find "$WORK/posts" -name '*.json' | wc -l)" -eq 0 ] || fail "the collector got POSTs though nothing ran"
    say "the guest is unchanged ($(wc -l <"$WORK/before.txt") listing lines compared)"
}

main() {
    [ "$(id -u)" -eq 0 ] || { echo "$0: run as root" >&2; exit 2; }
    mkdir -p "$TOP"
    install_tools
    install_rollout_tools
    build_binaries
    debootstrap_base
    make_profiles
    write_inventory
    # The http and tampered cases serve this one.
    FLEET=$TOP/rollout-fleet
    make_fleet "$FLEET" --from-url http://10.0.2.100/
    write_relay
    local c
    for c in "${CASES[@]}"; do
        CASE=$c CASE_T=$SECONDS
        SERIALS=()
        say "case $c"
        "case_$c"
        cleanup
        PIDS=()
        SUMMARY+=("$(printf 'rollout %-9s PASS %4ds' "$c" $((SECONDS - CASE_T)))")
        say "case $c: PASS in $((SECONDS - CASE_T))s"
    done
    CASE=
    printf '%s\n' "${SUMMARY[@]}"
    say "PASS (${CASES[*]}) in $((SECONDS - T0))s"
}

# On one line, so bash has read the exit before it runs main.
main "$@"; exit

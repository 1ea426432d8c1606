#!/usr/bin/env bash
# The benchmark suite of issue 14 behind one command: `bash bench/run.sh`.
#
# It builds the release binaries, generates its inputs (a driver-like file
# of 400 MiB pseudo-random bytes and 112 MiB of system libraries, a profile
# that bakes it, a 50-profile fleet sharing 3 smaller such drivers), runs
# every comparison side by side with hyperfine, reports the agent (release
# size, `status` wall time, peak memory of `run` through both simulated
# phases, the unit gone once done) and prints a table of ratios. Raw
# results (hyperfine JSON, logs) go under the out dir; `--write-md`
# rewrites BENCHMARKS.md at the repository root from this run.
#
# Speed is shown here, never asserted by the test suite.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bash bench/run.sh [--quick] [--out DIR] [--runs N] [--write-md] [--note TEXT]

  --quick       small inputs (32 MiB driver, 4 MiB fleet drivers, 2 runs): a smoke run
  --out DIR     work and results directory [default: target/bench]
  --runs N      hyperfine runs per measure [default: 3, --quick: 2]
  --write-md    write BENCHMARKS.md at the repository root from this run
  --note TEXT   a paragraph for BENCHMARKS.md (what code was measured, say)

Needs root for the agent's simulated phases (`run` chroots into its --root),
hyperfine (installed with apt-get when missing and running as root), zstd,
cpio, openssl, python3, GNU time and a static busybox (busybox-static).
EOF
}

QUICK=0
OUT=
RUNS=
WRITE_MD=0
NOTE=
while [ $# -gt 0 ]; do
    case $1 in
    --quick) QUICK=1 ;;
    --out)
        OUT=${2:?--out needs a directory}
        shift
        ;;
    --runs)
        RUNS=${2:?--runs needs a number}
        shift
        ;;
    --write-md) WRITE_MD=1 ;;
    --note)
        NOTE=${2:?--note needs a text}
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        echo "bench/run.sh: unknown argument '$1'" >&2
        usage >&2
        exit 2
        ;;
    esac
    shift
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$REPO/target/bench}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
IN=$OUT/inputs # generated inputs, kept between runs
W=$OUT/work    # bundles, caches, roots: emptied at every start
RAW=$OUT/raw   # hyperfine JSON and logs of this run
rm -rf "$W" "$RAW"
mkdir -p "$IN" "$W" "$RAW"

MIB=1048576
if [ "$QUICK" = 1 ]; then
    MAIN_MIB=32 FLEET_MIB=4 RUNS=${RUNS:-2} WARMUP=0 STATUS_RUNS=10
else
    MAIN_MIB=512 FLEET_MIB=64 RUNS=${RUNS:-3} WARMUP=1 STATUS_RUNS=30
fi
FLEET_N=50
# Releases of data/drivers.toml without a registry md5 (a profile's sha256
# pin is then the only checksum) and with distinct file names, so the three
# fleet drivers are three cache entries.
RELEASES=(20.1 20.0 19.5)

say() { printf '== %s\n' "$*"; }
die() {
    printf 'bench/run.sh: %s\n' "$*" >&2
    exit 1
}

# --- tools ---------------------------------------------------------------

need_tool() { # program, Debian package
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing $2 (for $1)"
        apt-get install -y "$2" >"$RAW/apt-$2.log" 2>&1 ||
            die "apt-get install -y $2 failed: see $RAW/apt-$2.log"
        return 0
    fi
    die "$1 is missing: install the Debian package $2 (apt-get install -y $2) and run again"
}
need_tool hyperfine hyperfine
need_tool zstd zstd
need_tool cpio cpio
need_tool openssl openssl
need_tool python3 python3
[ -x /usr/bin/time ] || need_tool /usr/bin/time time
[ "$(id -u)" = 0 ] || die "run it as root: the agent's simulated phases chroot into their --root"
BUSYBOX=
for b in /bin/busybox /usr/bin/busybox; do
    # A dynamic busybox would find no C library inside the root.
    if [ -x "$b" ] && ! ldd "$b" >/dev/null 2>&1; then
        BUSYBOX=$b
        break
    fi
done
[ -n "$BUSYBOX" ] || die "no static busybox for the agent's simulated root: apt-get install -y busybox-static"

say "building the release binaries"
(cd "$REPO" && nice cargo build --release -q -p vgpu-bake -p vgpu-firstboot) ||
    die "cargo build --release -p vgpu-bake -p vgpu-firstboot failed (output above)"
BAKE=$REPO/target/release/vgpu-bake
AGENT=$REPO/target/release/vgpu-firstboot

# --- inputs --------------------------------------------------------------

# The system libraries, in a fixed order: the same bytes on the same machine.
lib_files() {
    local dir=/usr/lib/x86_64-linux-gnu
    [ -d "$dir" ] || dir=/usr/lib
    find "$dir" -maxdepth 1 -type f -name '*.so*' -print0 | LC_ALL=C sort -z
}

# gen_driver FILE MIB SEED: a makeself-like shell header (as NVIDIA's .run
# files start), pseudo-random bytes from SEED up to 400/512 of the size,
# then system libraries, cut or zero-padded to exactly MIB MiB. Kept while
# its parameters are the same.
gen_driver() {
    local out=$1 mib=$2 seed=$3
    local total=$((mib * MIB))
    local rand=$((total * 400 / 512))
    local want="v1 $mib $seed"
    if [ -f "$out" ] && [ "$(cat "$out.params" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    say "generating $out ($mib MiB, seed $seed)"
    cat >"$out.tmp" <<'EOF'
#!/bin/sh
# This script was generated using Makeself-like vgpu-bake bench/run.sh:
# a benchmark input shaped like NVIDIA-Linux-x86_64-*-vgpu-kvm.run, not a driver.
echo "vgpu-bake benchmark input: not a driver" >&2
exit 1
EOF
    local hdr
    hdr=$(stat -c %s "$out.tmp")
    { openssl enc -aes-128-ctr -pass "pass:$seed" -nosalt -pbkdf2 -md sha256 </dev/zero 2>/dev/null || true; } |
        head -c $((rand - hdr)) >>"$out.tmp"
    { lib_files | xargs -0 cat 2>/dev/null || true; } | head -c $((total - rand)) >>"$out.tmp"
    truncate -s "$total" "$out.tmp"
    mv "$out.tmp" "$out"
    echo "$want" >"$out.params"
}

# write_profile FILE NAME RELEASE SHA256 DESCRIPTION
write_profile() {
    cat >"$1" <<EOF
# Generated by bench/run.sh: a benchmark input, not a host's profile. Its
# driver is a driver-like file (see BENCHMARKS.md), imported with
# \`--driver-file\` and pinned here by sha256.
name = "$2"
description = "$5"
proxmox = 9

[vgpu]
mode = "native"

[driver]
release = "$3"
sha256 = "$4"

[host]
iommu = "intel"
EOF
}

# The registry's file name for a release (what the cache stores it as).
registry_filename() {
    awk -v r="$1" '$1 == "release" && $3 == "\"" r "\"" { hit = 1; next }
        hit && $1 == "filename" { gsub(/"/, "", $3); print $3; exit }' "$REPO/data/drivers.toml"
}

gen_driver "$IN/driver-main.run" "$MAIN_MIB" bench-main
for i in 0 1 2; do
    gen_driver "$IN/driver-fleet-$i.run" "$FLEET_MIB" "bench-fleet-$i"
done
MAIN_SHA=$(sha256sum "$IN/driver-main.run" | cut -d' ' -f1)
PROFILES=$W/profiles
mkdir -p "$PROFILES/fleet"
write_profile "$PROFILES/main.toml" bench-main "${RELEASES[0]}" "$MAIN_SHA" \
    "benchmark: a $MAIN_MIB MiB driver-like file"
FLEET_SHA=()
for i in 0 1 2; do
    FLEET_SHA[i]=$(sha256sum "$IN/driver-fleet-$i.run" | cut -d' ' -f1)
done
FLEET_PROFILES=()
for n in $(seq -w 0 $((FLEET_N - 1))); do
    k=$((10#$n % 3))
    p=$PROFILES/fleet/fleet-$n.toml
    write_profile "$p" "fleet-$n" "${RELEASES[k]}" "${FLEET_SHA[k]}" \
        "benchmark fleet host $n: driver $k of 3 ($FLEET_MIB MiB)"
    FLEET_PROFILES+=("$p")
done

# --- 1. bake: cold, driver cached, warm; the shell pipeline; the floor ----

F=$IN/driver-main.run
P=$PROFILES/main.toml
say "bake: one warm-up bake to check the profile and fill the warm cache"
mkdir -p "$W/out-warm"
"$BAKE" bake "$P" --out "$W/out-warm" --cache "$W/cache-warm" --driver-file "$F" >"$RAW/first-bake.log" 2>&1 ||
    die "vgpu-bake bake $P failed: $(tail -5 "$RAW/first-bake.log")"
BUNDLE=$W/out-warm/bench-main.cpio.zst
[ -f "$BUNDLE" ] || die "the bake did not write $BUNDLE: see $RAW/first-bake.log"

# What an admin stages by hand: the driver (a hard link) and the agent.
STAGED=$W/staged
DRIVER_NAME=$(registry_filename "${RELEASES[0]}")
[ -n "$DRIVER_NAME" ] || die "release ${RELEASES[0]} not found in data/drivers.toml"
mkdir -p "$STAGED/var/lib/vgpu-firstboot/payload/driver" "$STAGED/usr/local/sbin"
ln "$F" "$STAGED/var/lib/vgpu-firstboot/payload/driver/$DRIVER_NAME"
cp "$AGENT" "$STAGED/usr/local/sbin/vgpu-firstboot"
mkdir -p "$W/out-cold" "$W/out-cached"

say "bake: cold, driver cached, warm, the shell pipeline, the floor ($RUNS runs)"
nice hyperfine --shell bash --style basic --warmup "$WARMUP" --runs "$RUNS" \
    --export-json "$RAW/bake.json" \
    --prepare "rm -rf '$W/cache-cold'" \
    -n "bake cold" \
    "'$BAKE' bake '$P' --out '$W/out-cold' --cache '$W/cache-cold' --driver-file '$F'" \
    --prepare "rm -rf '$W/cache-cached' && '$BAKE' fetch '$P' --driver-file '$F' --cache '$W/cache-cached' >/dev/null" \
    -n "bake driver-cached" \
    "'$BAKE' bake '$P' --out '$W/out-cached' --cache '$W/cache-cached'" \
    --prepare "true" \
    -n "bake warm" \
    "'$BAKE' bake '$P' --out '$W/out-warm' --cache '$W/cache-warm'" \
    --prepare "rm -f '$W/pipeline.cpio.zst'" \
    -n "shell pipeline" \
    "md5sum '$F' >/dev/null; sha256sum '$F' >/dev/null; (cd '$STAGED' && find . | cpio -o -H newc --quiet | zstd -T0 -3 -q >'$W/pipeline.cpio.zst')" \
    --prepare "rm -f '$W/floor.zst'" \
    -n "zstd floor" \
    "zstd -T0 -3 -q -c '$F' >'$W/floor.zst'" \
    --prepare "rm -f '$W/floor.zst'" \
    -n "zstd floor fsync" \
    "zstd -T0 -3 -q -c '$F' >'$W/floor.zst' && sync '$W/floor.zst'" | tee "$RAW/bake.txt"

# --- 2. the fleet: 50 profiles, 3 drivers, cold -----------------------------

# The multi-profile form (`vgpu-bake bake PROFILE... --out DIR`) when this
# vgpu-bake has it, else one bake per profile. Cold: an empty cache into
# which only the three driver files are imported (`fetch`), no bundle.
if "$BAKE" bake --help | grep -Eq 'PROFILES?>?\.\.\.'; then
    FLEET_FORM="one run: vgpu-bake bake PROFILE... --out DIR"
    printf '%q ' "$BAKE" bake "${FLEET_PROFILES[@]}" --out "$W/fleet-out" --cache "$W/fleet-cache" >"$W/fleet-bake.sh"
    echo '>/dev/null' >>"$W/fleet-bake.sh"
else
    FLEET_FORM="a loop: one vgpu-bake bake per profile (this vgpu-bake takes one PROFILE)"
    : >"$W/fleet-bake.sh"
    for p in "${FLEET_PROFILES[@]}"; do
        printf '%q ' "$BAKE" bake "$p" --out "$W/fleet-out" --cache "$W/fleet-cache" >>"$W/fleet-bake.sh"
        echo '>/dev/null || exit 1' >>"$W/fleet-bake.sh"
    done
fi
{
    echo "rm -rf '$W/fleet-out' '$W/fleet-cache' && mkdir -p '$W/fleet-out'"
    for i in 0 1 2; do
        echo "'$BAKE' fetch '${FLEET_PROFILES[i]}' --driver-file '$IN/driver-fleet-$i.run' --cache '$W/fleet-cache' >/dev/null"
    done
} >"$W/fleet-prepare.sh"
cat >"$W/one-prepare.sh" <<EOF
rm -rf '$W/one-out' '$W/one-cache' && mkdir -p '$W/one-out'
'$BAKE' fetch '${FLEET_PROFILES[0]}' --driver-file '$IN/driver-fleet-0.run' --cache '$W/one-cache' >/dev/null
EOF
say "fleet: $FLEET_N profiles sharing 3 drivers of $FLEET_MIB MiB, as $FLEET_FORM"
nice hyperfine --shell bash --style basic --warmup 0 --runs "$RUNS" \
    --export-json "$RAW/fleet.json" \
    --prepare "bash '$W/fleet-prepare.sh'" \
    -n "fleet cold" "bash '$W/fleet-bake.sh'" \
    --prepare "bash '$W/one-prepare.sh'" \
    -n "fleet one cold" "'$BAKE' bake '${FLEET_PROFILES[0]}' --out '$W/one-out' --cache '$W/one-cache'" |
    tee "$RAW/fleet.txt"
FLEET_BUNDLES=$(find "$W/fleet-out" -name '*.cpio.zst' | wc -l)
FLEET_CACHE=$(find "$W/fleet-cache" -type f -printf '%P %s\n' | LC_ALL=C sort)
rm -rf "$W/fleet-out" # 50 bundles: the largest thing the suite writes

# --- 3. install against zstd -dc | cpio -idm -------------------------------

say "install: vgpu-bake install against zstd -dc | cpio -idm ($RUNS runs)"
nice hyperfine --shell bash --style basic --warmup "$WARMUP" --runs "$RUNS" \
    --export-json "$RAW/install.json" \
    --prepare "rm -rf '$W/root-install' && mkdir '$W/root-install'" \
    -n "install" "'$BAKE' install '$BUNDLE' --root '$W/root-install' >/dev/null" \
    --prepare "rm -rf '$W/root-cpio' && mkdir '$W/root-cpio'" \
    -n "install pipeline" "cd '$W/root-cpio' && zstd -dc '$BUNDLE' | cpio -idm --quiet" |
    tee "$RAW/install.txt"
rm -rf "$W/root-install" "$W/root-cpio"

# --- 4. the agent ----------------------------------------------------------

# A fixture host (tests/hosts/pve8-grub) with the demo bundle laid by
# `vgpu-bake install`, and inside it what the agent's commands need once it
# has chrooted, as firstboot/tests/agent/harness.rs lays it: dash as
# /bin/sh, GNU sha256sum, a static busybox and its applets, and stand-ins
# that log their calls and succeed (dpkg-query: nothing installed; the
# post-check's nvidia-smi and mdevctl: one card with one vGPU type).
AGENT_SIZE=$(stat -c %s "$AGENT")
say "agent: release size $AGENT_SIZE bytes (budget 1048576)"
"$BAKE" bake "$REPO/profiles/demo.toml" --out "$W/demo-out" --cache "$W/demo-cache" >"$RAW/demo-bake.log" 2>&1 ||
    die "baking profiles/demo.toml failed: see $RAW/demo-bake.log"
R=$W/agent-root
cp -a "$REPO/tests/hosts/pve8-grub" "$R"
"$BAKE" install "$W/demo-out/demo.cpio.zst" --root "$R" >"$RAW/demo-install.log" 2>&1 ||
    die "vgpu-bake install of the demo bundle into $R failed: see $RAW/demo-install.log"
T=$R/vgpu-test
mkdir -p "$T/bin" "$T/stubs"
cp "$BUSYBOX" "$T/bin/busybox"
for a in basename dirname cat sleep date sync mkdir grep cut sed chmod mv rm cp true false rmdir ls tail; do
    ln -s busybox "$T/bin/$a"
done
copy_with_libs() { # program, path under the root
    mkdir -p "$(dirname "$R/$2")"
    cp "$1" "$R/$2"
    ldd "$1" | grep -o '/[^ ]*' | while read -r lib; do
        [ -e "$R$lib" ] || { mkdir -p "$(dirname "$R$lib")" && cp "$lib" "$R$lib"; }
    done
}
copy_with_libs /bin/dash bin/sh
copy_with_libs /usr/bin/sha256sum vgpu-test/bin/sha256sum
cat >"$T/stub" <<'EOF'
#!/bin/sh
name=$(basename "$0")
echo "$name $*" >>"$VGPU_TEST_LOG"
case "$name $1" in
  "dpkg-query "*) exit 1 ;;
  "systemctl is-enabled" | "systemctl is-active") exit 1 ;;
  "mokutil --test-key") echo "not enrolled"; exit 1 ;;
  "mdevctl types") printf '0000:01:00.0\n  nvidia-222\n    Name: GRID T4-1Q\n' ;;
  "nvidia-smi vgpu") echo "GPU 00000000:01:00.0" ;;
esac
exit 0
EOF
chmod 755 "$T/stub"
for s in apt-get apt-cache dpkg-query update-initramfs proxmox-boot-tool systemctl nvidia-smi \
    mdevctl mokutil openssl zpool update-grub grub-reboot grub-editenv; do
    ln -s ../stub "$T/stubs/$s"
done
cat >"$T/stubs/dpkg-deb" <<'EOF'
#!/bin/sh
exec busybox dpkg-deb -f "$2"
EOF
chmod 755 "$T/stubs/dpkg-deb"
agent_env=(env -i PATH=/vgpu-test/stubs:/vgpu-test/bin VGPU_TEST_LOG=/vgpu-test/commands.log
    VGPU_DEMO_LOG=/vgpu-test/demo-installer.log)
LINK=etc/systemd/system/multi-user.target.wants/vgpu-firstboot.service

# run_phase N: `vgpu-firstboot run` under GNU time; its max RSS in KiB.
run_phase() {
    local code=0
    /usr/bin/time -v -o "$RAW/agent-phase$1.time" "${agent_env[@]}" "$AGENT" --root "$R" run \
        >"$RAW/agent-phase$1.log" 2>&1 || code=$?
    [ "$code" = 0 ] || die "vgpu-firstboot run (phase $1) exited $code: see $RAW/agent-phase$1.log"
    awk -F': ' '/Maximum resident set size/ { print $2 }' "$RAW/agent-phase$1.time"
}
say "agent: phase 1 in $R"
[ -L "$R/$LINK" ] || die "the demo bundle did not lay $LINK"
RSS1=$(run_phase 1)
grep -q rebooting "$RAW/agent-phase1.log" || die "phase 1 did not end in a reboot: see $RAW/agent-phase1.log"
# The reboot, as the harness simulates it: a new boot id, the trial entry's
# kernel line on /proc/cmdline, nouveau gone after the blacklist.
echo 00000000-0000-4000-8000-000000000002 >"$R/proc/sys/kernel/random/boot_id"
linux=$(awk '$1 == "linux" { $1 = ""; print; exit }' "$R/etc/grub.d/42_vgpu-bake-trial")
echo "BOOT_IMAGE=${linux# }" >"$R/proc/cmdline"
rm -f "$R/boot/grub/grubenv"
[ ! -e "$R/etc/modprobe.d/vgpu-bake-blacklist.conf" ] || rm -rf "$R/sys/module/nouveau"
say "agent: phase 2"
RSS2=$(run_phase 2)
grep -q 'done' "$RAW/agent-phase2.log" || die "phase 2 did not end done: see $RAW/agent-phase2.log"
UNIT_GONE=no
if [ ! -e "$R/$LINK" ] && [ ! -L "$R/$LINK" ] && [ -e "$R/var/lib/vgpu-firstboot/done" ]; then
    UNIT_GONE=yes
fi
{
    echo "after phase 2 (root $R):"
    echo "  $LINK: $(if [ -L "$R/$LINK" ]; then echo present; else echo absent; fi)"
    echo "  etc/systemd/system/multi-user.target.wants/: $(find "$R/etc/systemd/system/multi-user.target.wants" -mindepth 1 -printf '%P ' 2>/dev/null)"
    echo "  var/lib/vgpu-firstboot/done: $(if [ -e "$R/var/lib/vgpu-firstboot/done" ]; then echo present; else echo absent; fi)"
    echo "  the unit's condition: $(grep -h '^ConditionPathExists' "$R/etc/systemd/system/vgpu-firstboot.service" | tr '\n' ' ')"
} | tee "$RAW/agent-unit.txt"
say "agent: status ($STATUS_RUNS runs)"
nice hyperfine --shell none --style basic --warmup 3 --runs "$STATUS_RUNS" \
    --export-json "$RAW/status.json" \
    -n "status" "$AGENT --root $R status" | tee "$RAW/status.txt"

# --- the table ---------------------------------------------------------------

COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    COMMIT="$COMMIT (with uncommitted changes)"
fi
cat >"$RAW/context.json" <<EOF
{"quick": $QUICK, "runs": $RUNS, "warmup": $WARMUP, "main_mib": $MAIN_MIB, "fleet_mib": $FLEET_MIB,
 "fleet_n": $FLEET_N, "fleet_form": "$FLEET_FORM", "fleet_bundles": $FLEET_BUNDLES,
 "agent_size": $AGENT_SIZE, "rss1_kib": $RSS1, "rss2_kib": $RSS2, "unit_gone": "$UNIT_GONE",
 "main_sha256": "$MAIN_SHA", "bundle_bytes": $(stat -c %s "$BUNDLE"),
 "pipeline_bytes": $(stat -c %s "$W/pipeline.cpio.zst"), "floor_bytes": $(stat -c %s "$W/floor.zst"),
 "date": "$(date -u '+%Y-%m-%d %H:%M UTC')", "loadavg": "$(cut -d' ' -f1-3 /proc/loadavg)", "commit": "$COMMIT"}
EOF
printf '%s\n' "$FLEET_CACHE" >"$RAW/fleet-cache.txt"
CMD="bash bench/run.sh"
[ "$QUICK" = 0 ] || CMD="$CMD --quick"
[ "$RUNS" = 3 ] || [ "$QUICK" = 1 ] || CMD="$CMD --runs $RUNS"
[ "$WRITE_MD" = 0 ] || CMD="$CMD --write-md"
python3 "$REPO/bench/report.py" "$RAW" "$REPO" "$CMD" "$NOTE" "$OUT/summary.md"
if [ "$WRITE_MD" = 1 ]; then
    cp "$OUT/summary.md" "$REPO/BENCHMARKS.md"
    say "wrote $REPO/BENCHMARKS.md"
fi
say "raw results: $RAW; summary: $OUT/summary.md"

#!/usr/bin/env bash
# tests/fuzz/run.sh: the long fuzz run. Runs each target (newc, inspect, profile,
# plan, manifest, state) for SECS seconds (default 600), in release mode,
# and prints the executions per target; a failure prints proptest's shrunk
# input and makes the script exit non-zero.
#
#   bash tests/fuzz/run.sh [-j JOBS] [SECS] [TARGET...]
#
# A target's seconds are shared by its functions (run one after the other);
# JOBS targets run at once (default 1). `cargo test` alone runs every target
# briefly (the CI run).
set -euo pipefail
cd "$(dirname "$0")/../.."

JOBS=1
if [ "${1:-}" = -j ]; then JOBS=$2; shift 2; fi
SECS=${1:-600}
shift || true

# target: crate, test file, functions.
declare -A CRATE=(
    [newc]=vgpu-bake [inspect]=vgpu-bake [profile]=vgpu-bake [plan]=vgpu-plan
    [manifest]=vgpu-plan [state]=vgpu-firstboot
)
declare -A FILE=(
    [newc]=fuzz_newc [inspect]=fuzz_inspect [profile]=fuzz_profile [plan]=fuzz_plan
    [manifest]=fuzz_plan [state]=fuzz_state
)
declare -A FNS=(
    [newc]="fuzz_newc_arbitrary_bytes fuzz_newc_mutations fuzz_newc_header_fields fuzz_newc_names"
    [inspect]="fuzz_inspect_mutations fuzz_inspect_body_changes_are_refused"
    [profile]="fuzz_profile_mutations fuzz_profile_arbitrary_text"
    [plan]="fuzz_plan_mutations fuzz_plan_arbitrary_text"
    [manifest]="fuzz_manifest_mutations fuzz_manifest_arbitrary_text"
    [state]="fuzz_state_round_trip fuzz_state_mutations fuzz_state_arbitrary_bytes"
)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(newc inspect profile plan manifest state)
for t in "${TARGETS[@]}"; do
    [ -n "${CRATE[$t]:-}" ] || { echo "unknown target $t (newc inspect profile plan manifest state)" >&2; exit 2; }
done

LOGS=${VGPU_FUZZ_LOGS:-target/fuzz}
mkdir -p "$LOGS"
# The test executables are run directly, so cargo's lock on the target
# directory is not held for the whole run.
echo "==> building the fuzz tests (release)"
declare -A EXE=()
for t in "${TARGETS[@]}"; do
    EXE[$t]=$(cargo test --release -p "${CRATE[$t]}" --test "${FILE[$t]}" --no-run 2>&1 \
        | sed -n 's/^ *Executable .*(\(.*\))$/\1/p' | tail -n 1)
    [ -x "${EXE[$t]}" ] || { echo "cannot build the fuzz test ${FILE[$t]} of ${CRATE[$t]}" >&2; exit 1; }
done

# Runs target $1's functions, SECS shared among them; output in $LOGS/$1.log.
run_target() {
    local t=$1 fns n each f
    read -r -a fns <<<"${FNS[$t]}"
    n=${#fns[@]}
    each=$(((SECS + n - 1) / n))
    : >"$LOGS/$t.log"
    for f in "${fns[@]}"; do
        VGPU_FUZZ_SECS=$each "${EXE[$t]}" --exact "$f" --nocapture >>"$LOGS/$t.log" 2>&1 || return 1
    done
}

echo "==> fuzzing ${TARGETS[*]} for ${SECS}s each, $JOBS at a time (logs in $LOGS)"
declare -A PIDS=()
failed=0
for t in "${TARGETS[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 1; done
    run_target "$t" &
    PIDS[$t]=$!
done
for t in "${TARGETS[@]}"; do
    if ! wait "${PIDS[$t]}"; then
        failed=1
        echo "FAIL: target $t (see $LOGS/$t.log):" >&2
        grep -E 'fuzz |minimal failing input|panicked|Test failed' "$LOGS/$t.log" >&2 || tail -30 "$LOGS/$t.log" >&2
    fi
done

echo "==> executions per target"
for t in "${TARGETS[@]}"; do
    grep '^fuzz ' "$LOGS/$t.log" | sed 's/^/  /'
    awk -v t="$t" '/^fuzz / { n += $3; s += $(NF-2) } END { printf "target %s: %d executions in %.0f s\n", t, n, s }' "$LOGS/$t.log"
done
exit $failed

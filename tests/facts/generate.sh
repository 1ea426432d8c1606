#!/usr/bin/env bash
# Writes tests/facts/<host>.json: what the real agent's `facts --json` says
# about each fixture host tree under tests/hosts/ (the documents
# `vgpu-bake check --facts` reads, as an admin would capture them with
# `vgpu-firstboot facts --json` on the targets). The hosts have no bundle,
# so no compatibility table: the documents' own GPU verdicts are empty rows,
# which `check` does not read (it classifies with the builder's database).
#
# Usage: tests/facts/generate.sh [AGENT] (default: target/debug/vgpu-firstboot,
# built with `cargo build -p vgpu-firstboot`). Commit the output;
# builder/tests/check.rs regenerates into a temporary directory and
# compares.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
agent=${1:-$repo/target/debug/vgpu-firstboot}
out=${VGPU_FACTS_OUT:-$here}
for dir in "$repo"/tests/hosts/*/; do
    host=$(basename "$dir")
    code=0
    "$agent" --root "$dir" facts --json >"$out/$host.json" || code=$?
    # 3: a fatal obstacle rules vGPU out on that host; still a document.
    if [ "$code" -ne 0 ] && [ "$code" -ne 3 ]; then
        echo "generate.sh: facts --json failed on $dir (exit $code)" >&2
        exit 1
    fi
done

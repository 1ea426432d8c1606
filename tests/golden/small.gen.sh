#!/bin/sh
# Regenerates small.cpio.zst from golden_spec() in builder/tests/bundle.rs,
# with vgpu-bake's own writer (mtime 0, zstd level 3, frames of at most
# 4 MiB each compressed single-threaded: one frame for this small spec).
# Usage: tests/golden/small.gen.sh   (from anywhere in the repository)
set -eu
cd "$(dirname "$0")/../.."
VGPU_BAKE_REGEN_GOLDEN=1 cargo test -p vgpu-bake --test bundle -- --ignored --exact regen_golden

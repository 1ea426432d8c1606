#!/bin/sh
# Rebuilds data/gpu_info.db from data/gpu_info.csv, byte for byte the same
# every time (see data/README.md). Run from anywhere inside the repository.
set -eu
cd "$(dirname "$0")/.."
# The builder embeds data/gpu_info.db; on a fresh checkout without it, an
# empty placeholder lets the crate compile (the helper does not read it).
[ -e data/gpu_info.db ] || : > data/gpu_info.db
cargo run -q -p vgpu-bake --bin vgpu-gpu-db -- data/gpu_info.csv data/gpu_info.db

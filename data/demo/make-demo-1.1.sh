#!/bin/sh
# Writes data/demo/vgpu-bake-demo-driver-1.1-vgpu-kvm.run from the 1.0
# installer: the one source of truth. The two differ only in the line
# DEMO_VERSION="..." (builder/tests/demo_drivers.rs checks it). Run from
# anywhere in the repository after changing the 1.0 installer, then update
# both md5s in data/drivers.toml.
set -eu
cd "$(dirname "$0")"
sed 's/^DEMO_VERSION="1\.0-demo"$/DEMO_VERSION="1.1-demo"/' \
    vgpu-bake-demo-driver-1.0-vgpu-kvm.run >vgpu-bake-demo-driver-1.1-vgpu-kvm.run.tmp
chmod 0755 vgpu-bake-demo-driver-1.1-vgpu-kvm.run.tmp
mv vgpu-bake-demo-driver-1.1-vgpu-kvm.run.tmp vgpu-bake-demo-driver-1.1-vgpu-kvm.run

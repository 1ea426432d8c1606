//! Hidden helper: `vgpu-gpu-db CSV OUT` rebuilds an upstream-format
//! `gpu_info.db` from its CSV export (see `data/build-gpu-db.sh`).

use std::path::PathBuf;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [csv, out] = args.as_slice() else {
        bail!("usage: vgpu-gpu-db GPU_INFO.CSV OUT.DB (e.g. data/gpu_info.csv data/gpu_info.db)");
    };
    vgpu_bake::gpudb::build_db_from_csv(csv, out)
        .with_context(|| format!("building {} from {}", out.display(), csv.display()))
}

//! Running the real `vgpu-bake` from the workspace root (shared by the
//! rollout tests).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (profiles/ and tests/ are relative to it).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `vgpu-bake ARGS` in the workspace with `SOURCE_DATE_EPOCH=0`: (exit
/// code, stdout, stderr).
pub fn vgpu_bake(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vgpu-bake"))
        .args(args)
        .current_dir(workspace())
        .env("SOURCE_DATE_EPOCH", "0")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

//! The bake refuses a GNU patch known to fail on the vgpu_unlock patches
//! (2.8 and newer) before the driver's `--apply-patch` runs it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Bakes the unlock demo with `patch` on PATH answering `version`; a call
/// to apply anything leaves a mark. Returns (exit code, stderr, applied).
fn bake_with_patch(version: &str) -> (Option<i32>, String, bool) {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).unwrap();
    let mark = dir.path().join("applied");
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = --version ]; then echo '{version}'; echo 'Copyright'; exit 0; fi\ntouch '{}'\necho 'patch: **** patch line 9 contains NUL byte' >&2\nexit 2\n",
        mark.display()
    );
    fs::write(bin.join("patch"), script).unwrap();
    fs::set_permissions(bin.join("patch"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(dir.path().join("agent"), "#!/bin/sh\n").unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = Command::new(env!("CARGO_BIN_EXE_vgpu-bake"))
        .args(["bake", "tests/profiles/unlock-demo.toml", "--out"])
        .arg(dir.path().join("out"))
        .arg("--cache")
        .arg(dir.path().join("cache"))
        .arg("--agent")
        .arg(dir.path().join("agent"))
        .current_dir(workspace())
        .env("PATH", path)
        .env("SOURCE_DATE_EPOCH", "0")
        .env_remove("VGPU_DEMO_LOG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), err, mark.exists())
}

#[test]
fn gnu_patch_2_8_is_refused_with_the_fix() {
    let (code, err, applied) = bake_with_patch("GNU patch 2.8");
    assert_eq!(code, Some(1), "{err}");
    assert!(!applied, "patch was called to apply: {err}");
    assert!(
        err.contains("`patch --version` says \"GNU patch 2.8\""),
        "{err}"
    );
    assert!(err.contains("NUL byte"), "{err}");
    assert!(err.contains("GNU patch 2.7.6"), "{err}");
    assert!(err.contains("patch-2.7.6.tar.gz"), "{err}");
}

#[test]
fn gnu_patch_2_7_6_is_accepted() {
    // The demo installer applies nothing itself, so the stand-in is never
    // asked to apply and the bake succeeds.
    let (code, err, _) = bake_with_patch("GNU patch 2.7.6");
    assert_eq!(code, Some(0), "{err}");
}

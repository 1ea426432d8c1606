//! `vgpu-bake check`: profiles against facts captured on targets
//! (`tests/facts/*.json`, written by the real agent from `tests/hosts/`),
//! through the agent's host gate with the builder's GPU database. Golden
//! outputs in `tests/check/`; `VGPU_BAKE_BLESS=1` rewrites them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs `vgpu-bake check ARGS` in the workspace: (exit code, stdout,
/// stderr).
fn check(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vgpu-bake"))
        .arg("check")
        .args(args)
        .current_dir(workspace())
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Compares `text` with `tests/check/<name>`, or writes it when blessing.
fn golden(name: &str, text: &str) {
    let path = workspace().join("tests/check").join(name);
    if std::env::var_os("VGPU_BAKE_BLESS").is_some() {
        fs::write(&path, text).unwrap();
        return;
    }
    let want = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; bless with VGPU_BAKE_BLESS=1", path.display()));
    assert_eq!(text, want, "{} differs", path.display());
}

fn sorted(dir: &str, ext: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(workspace().join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(ext))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_example_profile_against_every_captured_host() {
    let mut args = sorted("profiles", ".toml");
    args.push("--facts".into());
    args.extend(sorted("tests/facts", ".json"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = check(&args);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr,
        "vgpu-bake: error: 24 of 40 (profile, facts) pair(s) failed the host gate\n"
    );
    golden("fleet.out", &stdout);
}

#[test]
fn profiles_that_fit_their_hosts_pass() {
    let (code, stdout, stderr) = check(&[
        "profiles/two-gpu.toml",
        "--facts",
        "tests/facts/pve8-two-gpus.json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        "profiles/two-gpu.toml on tests/facts/pve8-two-gpus.json:\n    host gate: passed\n"
    );
    let (code, stdout, _) = check(&[
        "profiles/unlock-amd-rtx2080ti.toml",
        "--facts",
        "tests/facts/pve9-zfs-sdboot.json",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        "profiles/unlock-amd-rtx2080ti.toml on tests/facts/pve9-zfs-sdboot.json:\n    host gate: passed\n"
    );
}

#[test]
fn an_address_the_host_does_not_have_fails() {
    let (code, stdout, _) = check(&[
        "tests/profiles/gpu-address.toml",
        "--facts",
        "tests/facts/pve8-grub.json",
    ]);
    assert_eq!(code, 1);
    golden("gpu-address.out", &stdout);
}

#[test]
fn a_file_that_is_not_a_facts_document_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("host.json");
    fs::write(&bad, "{\"schema\": 1}").unwrap();
    let bad = bad.to_string_lossy().into_owned();
    let (code, stdout, stderr) = check(&["profiles/demo.toml", "--facts", &bad]);
    assert_eq!(code, 1);
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        format!(
            "vgpu-bake: error: {bad} is not a `vgpu-firstboot facts --json` document: missing field `facts` at line 1 column 13; capture it on the target with `vgpu-firstboot facts --json > FILE`\n"
        )
    );
    fs::write(&bad, "{\"schema\": 2, \"facts\": {}}").unwrap();
    let (code, _, stderr) = check(&["profiles/demo.toml", "--facts", &bad]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("is a facts document of schema 2; this vgpu-bake reads schema 1"),
        "{stderr}"
    );
    let (code, _, stderr) = check(&["profiles/demo.toml", "--facts", "no/such.json"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cannot read the facts file no/such.json: "),
        "{stderr}"
    );
}

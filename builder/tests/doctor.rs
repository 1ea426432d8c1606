//! `vgpu-bake doctor`, the real binary, against real temporary caches.

use std::fs;
use std::path::Path;

#[path = "support/run.rs"]
mod run;

use run::vgpu_bake;

const DEMO_DRIVER: &str = "vgpu-bake-demo-driver-1.0-vgpu-kvm.run";

/// A cache the demo profile's driver was fetched into.
fn demo_cache() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let (code, out, err) = vgpu_bake(&["fetch", "profiles/demo.toml", "--cache", s(&cache)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(cache.join(DEMO_DRIVER).is_file());
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn doctor(dir: &Path, extra: &[&str]) -> (i32, String, String) {
    let cache = dir.join("cache");
    let out = dir.join("out");
    let mut args = vec![
        "doctor",
        "profiles/demo.toml",
        "--cache",
        s(&cache),
        "--out",
        s(&out),
    ];
    args.extend_from_slice(extra);
    vgpu_bake(&args)
}

/// The line about `needle`.
fn line_with<'a>(out: &'a str, needle: &str) -> &'a str {
    out.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{out}"))
}

#[test]
fn a_good_cache_passes() {
    let dir = demo_cache();
    let (code, out, err) = doctor(dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    let driver = line_with(&out, DEMO_DRIVER);
    assert!(driver.starts_with("ok "), "{driver}");
    assert!(driver.contains("sidecar valid"), "{driver}");
    let space = line_with(&out, "these bakes need about");
    assert!(space.starts_with("ok "), "{space}");
    // Every line starts with its status word.
    for l in out.lines() {
        assert!(
            ["ok ", "warn ", "fail "].iter().any(|w| l.starts_with(w)),
            "{l}"
        );
    }
    // --deep hashes the driver again.
    let (code, out, _) = doctor(dir.path(), &["--deep"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        line_with(&out, DEMO_DRIVER).contains("hashed again: matches"),
        "{out}"
    );
}

#[test]
fn json_is_one_document() {
    let dir = demo_cache();
    let (code, out, err) = doctor(dir.path(), &["--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["schema"], 1);
    assert_eq!(v["failed"], false);
    let findings = v["findings"].as_array().unwrap();
    assert!(
        findings.iter().any(|f| f["check"] == "cache"
            && f["status"] == "ok"
            && f["subject"].as_str().unwrap().ends_with(DEMO_DRIVER)),
        "{out}"
    );
}

#[test]
fn a_damaged_sidecar_is_named() {
    let dir = demo_cache();
    let sidecar = dir
        .path()
        .join("cache")
        .join(format!("{DEMO_DRIVER}.digests.toml"));
    fs::write(&sidecar, "sha256 = [broken").unwrap();
    let (code, out, err) = doctor(dir.path(), &[]);
    assert_eq!(code, 0, "a damaged sidecar is only a warning: {out}{err}");
    let l = line_with(&out, &format!("{DEMO_DRIVER}.digests.toml"));
    assert!(l.starts_with("warn "), "{l}");
    assert!(l.contains("damaged") && l.contains("remove"), "{l}");
}

#[test]
fn a_truncated_driver_fails() {
    let dir = demo_cache();
    let file = dir.path().join("cache").join(DEMO_DRIVER);
    let len = fs::metadata(&file).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let (code, out, err) = doctor(dir.path(), &[]);
    assert_eq!(code, 1, "{out}{err}");
    let l = line_with(&out, DEMO_DRIVER);
    assert!(l.starts_with("fail "), "{l}");
    assert!(
        l.contains("truncated or replaced") && l.contains("fetch it again"),
        "{l}"
    );
    assert!(err.contains("1 check(s) failed"), "{err}");
}

#[test]
fn a_damaged_driver_of_the_same_size_is_found_by_deep() {
    let dir = demo_cache();
    let file = dir.path().join("cache").join(DEMO_DRIVER);
    let mut bytes = fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&file, &bytes).unwrap();
    let (code, out, _) = doctor(dir.path(), &[]);
    assert_eq!(code, 0, "without --deep the size matches: {out}");
    let (code, out, _) = doctor(dir.path(), &["--deep"]);
    assert_eq!(code, 1, "{out}");
    let l = line_with(&out, DEMO_DRIVER);
    assert!(l.starts_with("fail ") && l.contains("damaged"), "{l}");
}

#[test]
fn leftovers_are_warnings_with_their_size() {
    let dir = demo_cache();
    let cache = dir.path().join("cache");
    fs::write(
        cache.join("NVIDIA-Linux-x86_64-550.144.02-vgpu-kvm.run.part"),
        vec![0u8; 2048],
    )
    .unwrap();
    let (code, out, _) = doctor(dir.path(), &[]);
    assert_eq!(code, 0, "{out}");
    let l = line_with(&out, ".run.part");
    assert!(l.starts_with("warn ") && l.contains("2.00 KiB"), "{l}");
}

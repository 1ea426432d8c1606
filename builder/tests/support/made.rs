//! What the rollout tests make with the real `vgpu-bake` before the command
//! under test: the demo bundle and a fleet directory, with a stand-in agent
//! and hook template (their bytes are copied, never run).

use std::fs;
use std::path::{Path, PathBuf};

use super::run::vgpu_bake;

/// A path as the `&str` an argument list takes.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Writes the stand-in agent into `dir` (and the hook template).
fn stand_ins(dir: &Path, hook: bool) {
    fs::write(dir.join("agent"), "#!/bin/sh\necho fake agent\n").unwrap();
    if hook {
        fs::write(dir.join("vgpu-hook"), b"\x7fELF stand-in template\n").unwrap();
    }
}

/// The demo bundle (and its .sha256) baked into `dir/b`; `dir` then holds
/// `agent`, `b` and `cache`.
pub fn demo_bundle(dir: &Path) -> PathBuf {
    stand_ins(dir, false);
    must(&[
        "bake",
        "profiles/demo.toml",
        "--out",
        s(&dir.join("b")),
        "--agent",
        s(&dir.join("agent")),
        "--cache",
        s(&dir.join("cache")),
    ]);
    dir.join("b/demo.cpio.zst")
}

/// `vgpu-bake fleet FLAGS... tests/fleet/three-hosts-two-profiles.toml`
/// into `dir/fleet` for media labelled `VGPU-FLEET`: (the fleet directory,
/// stdout). The run must succeed.
pub fn fleet(dir: &Path, flags: &[&str]) -> (PathBuf, String) {
    stand_ins(dir, true);
    let fleet = dir.join("fleet");
    let (agent, hook, cache) = (dir.join("agent"), dir.join("vgpu-hook"), dir.join("cache"));
    let mut args = vec!["fleet"];
    args.extend_from_slice(flags);
    args.extend([
        "tests/fleet/three-hosts-two-profiles.toml",
        "--out",
        s(&fleet),
        "--agent",
        s(&agent),
        "--hook-template",
        s(&hook),
        "--cache",
        s(&cache),
        "--from-label",
        "VGPU-FLEET",
    ]);
    let out = must(&args);
    (fleet, out)
}

/// `vgpu-bake ARGS`, which must succeed: its stdout.
fn must(args: &[&str]) -> String {
    let (code, out, err) = vgpu_bake(args);
    assert_eq!(code, 0, "vgpu-bake {}\n{out}\n{err}", args.join(" "));
    out
}

//! Fuzzing the profile parser and resolve (proptest, stable Rust):
//! arbitrary text and mutations of the real profiles (`profiles/`,
//! `tests/profiles/`) must give a profile or an error naming the file,
//! never a panic; a profile that parses must resolve or fail the same way,
//! and a resolved one must serialise (as `vgpu-bake plan` prints it).
//! `cargo test` runs a short pass; `VGPU_FUZZ_SECS=600` (or
//! `tests/fuzz/run.sh`) a long one.

#[path = "../../tests/fuzz/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;
use support::{TOML_POOL, edits, fuzz, mutate_text};
use vgpu_bake::gpudb::GpuDb;
use vgpu_bake::profile::Profile;
use vgpu_bake::registry::Registry;
use vgpu_bake::resolve;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every profile in `profiles/` and `tests/profiles/`, with its path.
fn profiles() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for dir in ["profiles", "tests/profiles"] {
        for e in std::fs::read_dir(workspace().join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml")
                && !p.to_string_lossy().ends_with(".plan.toml")
            {
                // `err-profile-not-utf8.toml` is not UTF-8 on purpose: its
                // lossy text is still a good seed.
                let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
                out.push((p, text));
            }
        }
    }
    out.sort();
    assert!(out.len() >= 40, "profiles found: {}", out.len());
    out
}

/// Lines to insert: every line of every profile, and the generic pool.
fn pool(profiles: &[(PathBuf, String)]) -> Vec<&str> {
    let mut lines: Vec<&str> = profiles
        .iter()
        .flat_map(|(_, t)| t.lines())
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    lines.sort_unstable();
    lines.dedup();
    lines.extend_from_slice(TOML_POOL);
    lines
}

fn context() -> &'static (Registry, GpuDb) {
    static CX: OnceLock<(Registry, GpuDb)> = OnceLock::new();
    CX.get_or_init(|| (Registry::builtin(), GpuDb::builtin().unwrap()))
}

/// Parses and resolves `text` as the profile `path`; true if it resolved.
fn check(text: &str, path: &Path) -> Result<bool, TestCaseError> {
    let profile = match Profile::parse(text, path) {
        Ok(p) => p,
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(msg.contains(&path.display().to_string()), "{msg}");
            return Ok(false);
        }
    };
    let (registry, db) = context();
    match resolve::resolve(&profile, path, registry, db) {
        Ok(resolved) => {
            prop_assert!(toml::to_string(&resolved).is_ok());
            Ok(true)
        }
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(!msg.is_empty());
            Ok(false)
        }
    }
}

#[test]
fn fuzz_profile_mutations() {
    let seeds = profiles();
    let pool = pool(&seeds);
    let resolving = seeds.iter().filter(|(p, t)| check(t, p).unwrap()).count();
    assert!(resolving >= 15, "{resolving} seed profiles resolve");
    let lines = proptest::collection::vec((any::<u8>(), any::<usize>(), any::<usize>()), 0..4);
    let strategy = (0..seeds.len(), lines, edits(2));
    fuzz("profile", 5000, strategy, |(i, lines, bytes)| {
        let (path, text) = &seeds[i];
        check(&mutate_text(text, &lines, &pool, &bytes), path)
    });
}

#[test]
fn fuzz_profile_arbitrary_text() {
    let seeds = profiles();
    let pool: Vec<String> = pool(&seeds).into_iter().map(str::to_string).collect();
    let path = workspace().join("profiles/fuzz.toml");
    let strategy = prop_oneof![
        any::<String>(),
        proptest::collection::vec(proptest::sample::select(pool), 0..30).prop_map(|l| l.join("\n")),
    ];
    fuzz("profile-text", 5000, strategy, |text| check(&text, &path));
}

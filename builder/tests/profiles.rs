//! Golden pairs: `tests/profiles/<case>.toml` -> `<case>.plan.toml` (the
//! resolved stage with its payload sources, as `vgpu-bake plan` prints it
//! before anything is fetched) or `<case>.error` (the exact error text).
//!
//! `VGPU_BAKE_BLESS=1 cargo test -p vgpu-bake --test profiles` rewrites the
//! expectations; review the diff before committing.

use std::path::{Path, PathBuf};

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

/// Resolves one profile; the path in messages is workspace-relative.
fn outcome(rel: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(workspace().join(rel)).unwrap();
    let profile = Profile::parse(&text, rel).map_err(|e| e.to_string())?;
    let db = GpuDb::builtin().unwrap();
    let resolved =
        resolve::resolve(&profile, rel, &Registry::builtin(), &db).map_err(|e| e.to_string())?;
    Ok(toml::to_string(&resolved).unwrap())
}

#[test]
fn golden_profiles() {
    let dir = workspace().join("tests/profiles");
    let bless = std::env::var_os("VGPU_BAKE_BLESS").is_some();
    let mut cases: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".toml")
                .filter(|s| !s.ends_with(".plan"))
                .map(String::from)
        })
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 20,
        "expected the golden cases in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let rel = PathBuf::from(format!("tests/profiles/{case}.toml"));
        let plan_file = dir.join(format!("{case}.plan.toml"));
        let error_file = dir.join(format!("{case}.error"));
        let got = outcome(&rel);
        if bless {
            let _ = std::fs::remove_file(&plan_file);
            let _ = std::fs::remove_file(&error_file);
            match &got {
                Ok(plan) => std::fs::write(&plan_file, plan).unwrap(),
                Err(e) => std::fs::write(&error_file, format!("{e}\n")).unwrap(),
            }
            continue;
        }
        let expected = match (
            std::fs::read_to_string(&plan_file),
            std::fs::read_to_string(&error_file),
        ) {
            (Ok(p), Err(_)) => Ok(p),
            (Err(_), Ok(e)) => Err(e.trim_end_matches('\n').to_string()),
            _ => {
                failures.push(format!(
                    "{case}: needs exactly one of {case}.plan.toml or {case}.error"
                ));
                continue;
            }
        };
        if got != expected {
            failures.push(format!(
                "{case}:\n--- expected\n{}\n--- got\n{}",
                show(&expected),
                show(&got)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden case(s) differ:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

fn show(r: &Result<String, String>) -> String {
    match r {
        Ok(p) => format!("plan:\n{p}"),
        Err(e) => format!("error: {e}"),
    }
}

/// Every shipped example profile resolves.
#[test]
fn example_profiles_resolve() {
    let dir = workspace().join("profiles");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if let Some(_case) = name.strip_suffix(".toml") {
            let rel = PathBuf::from(format!("profiles/{name}"));
            outcome(&rel).unwrap_or_else(|e| panic!("{name}: {e}"));
            n += 1;
        }
    }
    assert!(n >= 5, "expected the five example profiles, found {n}");
}

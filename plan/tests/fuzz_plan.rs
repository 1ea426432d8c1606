//! Fuzzing the plan and manifest parsers (proptest, stable Rust): arbitrary
//! text and mutations of the baked plans in `tests/plans/` and of a
//! complete manifest never panic; whatever parses serialises and parses
//! back equal. `cargo test` runs a short pass; `VGPU_FUZZ_SECS=600` (or
//! `tests/fuzz/run.sh`) a long one.

#[path = "../../tests/fuzz/support.rs"]
mod support;

use std::path::Path;

use proptest::prelude::*;
use support::{TOML_POOL, edits, fuzz, mutate_text};
use vgpu_plan::digest::Sha256;
use vgpu_plan::layout;
use vgpu_plan::manifest::{Manifest, ManifestEntry};
use vgpu_plan::plan::Plan;

fn plans() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/plans");
    let mut out: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    out.sort();
    assert!(out.len() >= 10, "baked plans in {}", dir.display());
    out
}

/// A manifest listing every kind of entry the layout allows.
fn manifest() -> String {
    let sha = |c: char| Sha256::parse(&c.to_string().repeat(64)).unwrap();
    let mut entries = vec![
        ManifestEntry::symlink(layout::UNIT_WANTS_LINK, layout::UNIT_WANTS_TARGET),
        ManifestEntry::file(layout::AGENT_BIN, 0o755, 1_012_000, sha('a')),
        ManifestEntry::file(layout::UNIT_FILE, 0o644, 400, sha('b')),
        ManifestEntry::file(layout::PLAN_FILE, 0o644, 3000, sha('c')),
        ManifestEntry::file(layout::COMPAT_FILE, 0o644, 9000, sha('d')),
        ManifestEntry::dir(layout::PAYLOAD_DIR, 0o755),
        ManifestEntry::dir(format!("{}/driver", layout::PAYLOAD_DIR), 0o755),
        ManifestEntry::file(
            format!("{}/driver/NVIDIA.run", layout::PAYLOAD_DIR),
            0o755,
            400_000_000,
            sha('e'),
        ),
    ];
    entries.extend(layout::DIRS.iter().map(|d| ManifestEntry::dir(*d, 0o755)));
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let m = Manifest {
        schema: vgpu_plan::manifest::SCHEMA,
        name: "demo".into(),
        entries,
    };
    m.validate().expect("the seed manifest is valid");
    m.to_toml()
}

/// A parsed plan serialises and parses back to the same plan.
fn plan_round_trip(text: &str) -> Result<bool, TestCaseError> {
    let Ok(plan) = Plan::from_toml(text) else {
        return Ok(false);
    };
    let again = plan.to_toml();
    let back =
        Plan::from_toml(&again).map_err(|e| TestCaseError::fail(format!("{e}\nin:\n{again}")))?;
    prop_assert_eq!(back, plan);
    Ok(true)
}

/// A parsed manifest is valid, serialises and parses back the same.
fn manifest_round_trip(text: &str) -> Result<bool, TestCaseError> {
    let Ok(m) = Manifest::from_toml(text) else {
        return Ok(false);
    };
    prop_assert!(m.validate().is_ok());
    let again = m.to_toml();
    let back = Manifest::from_toml(&again)
        .map_err(|e| TestCaseError::fail(format!("{e}\nin:\n{again}")))?;
    prop_assert_eq!(back, m);
    Ok(true)
}

fn line_edits() -> impl Strategy<Value = Vec<(u8, usize, usize)>> {
    proptest::collection::vec((any::<u8>(), any::<usize>(), any::<usize>()), 0..4)
}

#[test]
fn fuzz_plan_mutations() {
    let seeds = plans();
    for s in &seeds {
        assert!(plan_round_trip(s).unwrap());
    }
    let strategy = (0..seeds.len(), line_edits(), edits(2));
    fuzz("plan", 3000, strategy, |(i, lines, bytes)| {
        plan_round_trip(&mutate_text(&seeds[i], &lines, TOML_POOL, &bytes))
    });
}

#[test]
fn fuzz_plan_arbitrary_text() {
    let strategy = prop_oneof![
        any::<String>(),
        proptest::collection::vec(proptest::sample::select(TOML_POOL), 0..20)
            .prop_map(|l| format!("schema = 1\n{}", l.join("\n"))),
    ];
    fuzz("plan-text", 3000, strategy, |text| plan_round_trip(&text));
}

#[test]
fn fuzz_manifest_mutations() {
    let seed = manifest();
    assert!(manifest_round_trip(&seed).unwrap());
    let strategy = (line_edits(), edits(2));
    fuzz("manifest", 3000, strategy, |(lines, bytes)| {
        manifest_round_trip(&mutate_text(&seed, &lines, TOML_POOL, &bytes))
    });
}

#[test]
fn fuzz_manifest_arbitrary_text() {
    let strategy = prop_oneof![
        any::<String>(),
        proptest::collection::vec(proptest::sample::select(TOML_POOL), 0..20)
            .prop_map(|l| format!("schema = 2\nname = \"x\"\n{}", l.join("\n"))),
    ];
    fuzz("manifest-text", 3000, strategy, |text| {
        manifest_round_trip(&text)
    });
}

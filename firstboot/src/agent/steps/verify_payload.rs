//! Step verify-payload: the payload checked again against the manifest and
//! the plan right before phase 2 uses it (the whole bundle, signature and
//! plan included, was checked when phase 1 began: `agent::bundle`).

use super::payload_paths::{RECOPY, payload_rel};
use crate::agent::bundle::{Hashed, check_file as check_file_in};
use crate::agent::host::{Host, StepError, StepOutcome};
use crate::agent::shown::shown;
use vgpu_plan::layout::{MANIFEST_FILE, PAYLOAD_DIR};
use vgpu_plan::manifest::Manifest;

/// Checks the file `rel` is a regular file of `size` bytes with this sha256.
fn check_file(
    host: &Host,
    hashed: &mut Hashed,
    rel: &str,
    sha256: &str,
    size: u64,
) -> Result<(), StepError> {
    host.path(rel)?;
    check_file_in(&host.fs()?, hashed, rel, sha256, size, RECOPY)
}

fn manifest(host: &Host) -> Result<Manifest, StepError> {
    let text = host
        .read_opt(MANIFEST_FILE)?
        .ok_or_else(|| StepError::new(format!("{} is missing: {RECOPY}", shown(MANIFEST_FILE))))?;
    Manifest::from_toml(&text)
        .map_err(|e| StepError::new(format!("{}: {e}: {RECOPY}", shown(MANIFEST_FILE))))
}

/// Every payload file of the plan: `(root-relative path, sha256, size)`.
fn plan_files(host: &Host) -> Result<Vec<(String, String, u64)>, StepError> {
    let mut out = Vec::new();
    if let Some(d) = &host.plan.driver {
        let f = &d.installer;
        out.push((payload_rel(f), f.sha256.to_string(), f.size));
    }
    if let Some(u) = &host.plan.unlock {
        let f = &u.library;
        out.push((payload_rel(f), f.sha256.to_string(), f.size));
    }
    Ok(out)
}

fn in_payload(path: &str) -> bool {
    path.trim_start_matches('/')
        .strip_prefix(PAYLOAD_DIR)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Checks every payload file the manifest lists, and the plan's installer
/// and unlock library, by size and sha256. A copy damaged in transit or a
/// file swapped after the bake is found here, before anything runs it.
pub fn run(host: &mut Host) -> Result<StepOutcome, StepError> {
    let manifest = manifest(host)?;
    let mut hashed = Hashed::new();
    for f in manifest.files().filter(|f| in_payload(&f.path)) {
        let (Some(sha256), Some(size)) = (&f.sha256, f.size) else {
            continue;
        };
        check_file(host, &mut hashed, &f.path, sha256, size)?;
    }
    for (rel, sha256, size) in plan_files(host)? {
        check_file(host, &mut hashed, &rel, &sha256, size)?;
    }
    host.note(format!(
        "{} payload files match the manifest and the plan",
        hashed.len()
    ));
    Ok(StepOutcome::Done)
}

/// Dry run of [`run`]: every file it would check (never hashed here).
pub fn preview(host: &Host) -> Result<Vec<String>, StepError> {
    let manifest = manifest(host)?;
    let mut lines: Vec<String> = manifest
        .files()
        .filter(|f| in_payload(&f.path))
        .map(|f| {
            format!(
                "would check {} ({} bytes, sha256 {}): listed in the manifest",
                shown(&f.path),
                f.size.unwrap_or_default(),
                f.sha256.as_deref().unwrap_or_default()
            )
        })
        .collect();
    for (rel, sha256, size) in plan_files(host)? {
        lines.push(format!(
            "would check {} ({size} bytes, sha256 {sha256}): named by the plan",
            shown(&rel)
        ));
    }
    Ok(lines)
}

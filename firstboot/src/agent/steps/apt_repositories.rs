//! Step apt-repositories: enterprise repositories off, no-subscription on,
//! package lists fetched.
//!
//! `apt-get update` runs with `--error-on=any` (apt 2.1 and newer, so
//! bullseye, bookworm and trixie): plain `apt-get update` exits 0 when a
//! fetch fails (offline, `401` from the enterprise repository), and the
//! failure would only surface later as "package not found".

use std::collections::BTreeMap;

use super::commands::run_or;
use super::file_ops::ops_lines;
use crate::agent::host::{Host, StepError, StepOutcome};
use crate::edits::apt::{SOURCES_DIR, SOURCES_LIST_KEY, plan_apt_repos};
use crate::edits::{FileOp, write_if_changed};
use vgpu_plan::plan::Plan;

/// Records the repositories the last successful `apt-get update` fetched
/// from (a digest of every repository file), so a re-run with the same
/// repositories does not fetch again.
const UPDATE_STAMP: &str = "var/lib/vgpu-firstboot/apt-update.stamp";
/// `/etc/apt/sources.list`, relative to the root.
const SOURCES_LIST: &str = "etc/apt/sources.list";
const UPDATE_WHY: &str = "fetch the package lists; with --error-on=any a failed fetch is an error (plain apt-get update exits 0 offline)";

/// Disables the enterprise repositories, enables the no-subscription ones
/// exactly once, then fetches the package lists when the plan installs
/// anything from the repositories. Plans with offline packages only never
/// touch the network.
pub fn run(host: &mut Host) -> Result<StepOutcome, StepError> {
    let (codename, ops) = repo_ops(host)?;
    if !host.apply(&ops)? {
        host.note(format!(
            "APT repositories for {codename}: already configured"
        ));
    }
    if !fetches_packages(host.plan) {
        host.note("the plan installs nothing from the repositories: apt-get update skipped");
        return Ok(StepOutcome::Done);
    }
    let stamp = format!("sources {}\n", digest(&repo_files(host)?));
    let current = host.read_opt(UPDATE_STAMP)?;
    if current.as_deref() == Some(stamp.as_str()) {
        host.note("package lists already fetched for these repositories: apt-get update skipped");
        return Ok(StepOutcome::Done);
    }
    let spec = host.command("apt-get", &["update", "--error-on=any"], UPDATE_WHY);
    run_or(
        host,
        spec,
        "check the network and the repositories in /etc/apt/sources.list.d/",
    )?;
    let op = write_if_changed(
        UPDATE_STAMP,
        current.as_deref(),
        stamp,
        "remember that these repositories' lists were fetched",
    );
    host.apply(&Vec::from_iter(op))?;
    Ok(StepOutcome::Done)
}

/// Whether the plan needs the repositories' package lists.
fn fetches_packages(plan: &Plan) -> bool {
    !plan.host.packages.is_empty() || plan.host.kernel_pin.is_some()
}

/// The Debian codename (from `/etc/os-release`, else the plan's) and the
/// repository edits.
fn repo_ops(host: &Host) -> Result<(String, Vec<FileOp>), StepError> {
    let codename = host
        .facts
        .os
        .codename
        .clone()
        .unwrap_or_else(|| host.plan.codename.clone());
    let ops = plan_apt_repos(&codename, &repo_files(host)?);
    Ok((codename, ops))
}

/// Every repository file, keyed as [`plan_apt_repos`] wants. Files that are
/// not UTF-8 are skipped unless apt would read them (`.list`, `.sources`).
fn repo_files(host: &Host) -> Result<BTreeMap<String, String>, StepError> {
    let mut files = BTreeMap::new();
    if let Some(text) = host.read_opt(SOURCES_LIST)? {
        files.insert(SOURCES_LIST_KEY.to_owned(), text);
    }
    let root = host.fs()?;
    let Some(entries) = root.read_dir(SOURCES_DIR)? else {
        return Ok(files);
    };
    for name in entries {
        let Ok(name) = name.into_string() else {
            continue;
        };
        let rel = format!("{SOURCES_DIR}/{name}");
        let path = host.path(&rel)?;
        if !root.metadata(&rel)?.is_some_and(|m| m.is_file()) {
            continue;
        }
        let Some(bytes) = root.read(&rel)? else {
            continue;
        };
        match String::from_utf8(bytes) {
            Ok(text) => {
                files.insert(name, text);
            }
            Err(_) if name.ends_with(".list") || name.ends_with(".sources") => {
                return Err(StepError::new(format!(
                    "{} is not UTF-8 text; fix or remove it",
                    path.display()
                )));
            }
            Err(_) => {}
        }
    }
    Ok(files)
}

/// FNV-1a over names and contents: tells whether the repository files
/// changed since the last fetch (not a security check).
fn digest(files: &BTreeMap<String, String>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, text) in files {
        for b in name.bytes().chain([0]).chain(text.bytes()).chain([0]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Dry run of [`run`].
pub fn preview(host: &Host) -> Result<Vec<String>, StepError> {
    let (codename, ops) = repo_ops(host)?;
    let mut lines = ops_lines(&ops);
    if ops.is_empty() {
        lines.push(format!(
            "repositories for {codename}: already no-subscription, nothing to change"
        ));
    }
    if fetches_packages(host.plan) {
        lines.push(format!(
            "would run `apt-get update --error-on=any` (unless {} shows these repositories were fetched): {UPDATE_WHY}",
            vgpu_plan::layout::absolute(UPDATE_STAMP)
        ));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_changes_with_names_and_contents() {
        let a = BTreeMap::from([("a.list".to_owned(), "deb x".to_owned())]);
        let b = BTreeMap::from([("b.list".to_owned(), "deb x".to_owned())]);
        let c = BTreeMap::from([("a.list".to_owned(), "deb y".to_owned())]);
        assert_ne!(digest(&a), digest(&b));
        assert_ne!(digest(&a), digest(&c));
        assert_eq!(digest(&a), digest(&a.clone()));
    }
}

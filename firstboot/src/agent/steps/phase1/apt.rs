//! APT: repositories, then packages.
//!
//! `apt-get update` runs with `--error-on=any` (apt 2.1 and newer, so
//! bullseye, bookworm and trixie): plain `apt-get update` exits 0 when a
//! fetch fails (offline, `401` from the enterprise repository), and the
//! failure would only surface later as "package not found". Packages are
//! installed non-interactively, keeping the admin's changed configuration
//! files, and only those `dpkg-query` does not report installed, so a re-run
//! installs nothing.

use std::collections::BTreeMap;

use super::{ops_lines, run_or};
use crate::agent::host::{Host, StepError, StepOutcome};
use crate::edits::apt::{SOURCES_DIR, SOURCES_LIST_KEY, plan_apt_repos};
use crate::edits::{FileOp, write_if_changed};
use vgpu_plan::layout::PAYLOAD_DIR;
use vgpu_plan::plan::Plan;

/// Records the repositories the last successful `apt-get update` fetched
/// from (a digest of every repository file), so a re-run with the same
/// repositories does not fetch again.
const UPDATE_STAMP: &str = "var/lib/vgpu-firstboot/apt-update.stamp";
/// `/etc/apt/sources.list`, relative to the root.
const SOURCES_LIST: &str = "etc/apt/sources.list";
/// `apt-get` arguments for a non-interactive install that keeps the admin's
/// configuration files and pulls in no recommended extras.
const INSTALL_ARGS: [&str; 7] = [
    "install",
    "-y",
    "--no-install-recommends",
    "-o",
    "Dpkg::Options::=--force-confdef",
    "-o",
    "Dpkg::Options::=--force-confold",
];
const UPDATE_WHY: &str = "fetch the package lists; with --error-on=any a failed fetch is an error (plain apt-get update exits 0 offline)";

/// Disables the enterprise repositories, enables the no-subscription ones
/// exactly once, then fetches the package lists when the plan installs
/// anything from the repositories. Plans with offline packages only never
/// touch the network.
pub fn apt_repositories(host: &mut Host) -> Result<StepOutcome, StepError> {
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

/// Installs the plan's packages (`{kernel}` resolved) and offline `.deb`
/// files from the payload, skipping what is already installed.
pub fn apt_install(host: &mut Host) -> Result<StepOutcome, StepError> {
    let wanted = packages(host)?;
    let mut missing = Vec::new();
    for p in &wanted {
        if installed_version(host, p)?.is_none() {
            missing.push(p.clone());
        }
    }
    install(host, &missing, "install the packages the plan needs")?;

    let mut debs = Vec::new();
    for file in &host.plan.host.offline_debs {
        let path = deb_path(host, &file.path)?;
        let spec = host.command(
            "dpkg-deb",
            &["-f", &path, "Package", "Version"],
            "read the offline package's name and version",
        );
        let out = run_or(
            host,
            spec,
            "the payload file is damaged; bake the bundle again",
        )?;
        let (name, version) = deb_fields(&out.stdout_tail)
            .ok_or_else(|| StepError::new(format!("`dpkg-deb -f {path}` gave no Package and Version fields; the payload file is damaged, bake the bundle again")))?;
        if installed_version(host, &name)?.as_deref() == Some(version.as_str()) {
            host.note(format!("{name} {version} already installed"));
        } else {
            debs.push(path);
        }
    }
    install(host, &debs, "install the offline packages from the bundle")?;
    if missing.is_empty() && debs.is_empty() {
        host.note("every package is already installed");
    }
    Ok(StepOutcome::Done)
}

/// Runs one `apt-get install` for `packages` (names or `.deb` paths), if
/// there are any.
pub(super) fn install(host: &mut Host, packages: &[String], why: &str) -> Result<(), StepError> {
    if packages.is_empty() {
        return Ok(());
    }
    let mut args: Vec<&str> = INSTALL_ARGS.to_vec();
    args.extend(packages.iter().map(String::as_str));
    let spec = host.command("apt-get", &args, why);
    run_or(
        host,
        spec,
        "check the network, the repositories and that the packages exist for this release",
    )?;
    Ok(())
}

/// The version of `package` dpkg has installed, `None` when it is not
/// (fully) installed. A read-only probe: `dpkg-query` exits 1 for a package
/// it has never heard of, which is simply "not installed".
pub(super) fn installed_version(
    host: &mut Host,
    package: &str,
) -> Result<Option<String>, StepError> {
    let spec = host.command(
        "dpkg-query",
        &["-W", "-f=${Status} ${Version}\\n", package],
        "is it installed?",
    );
    let out = host.run_status(&spec)?;
    if !out.success() {
        return Ok(None);
    }
    Ok(out.stdout_tail.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        let _want = words.next()?;
        (words.next()? == "ok" && words.next()? == "installed")
            .then(|| words.next().unwrap_or("").to_owned())
    }))
}

/// The plan's packages with `{kernel}` replaced by the kernel that will run,
/// without repeats.
fn packages(host: &Host) -> Result<Vec<String>, StepError> {
    let list = &host.plan.host.packages;
    let kernel = if list.iter().any(|p| p.contains("{kernel}")) {
        kernel_to_run(host)?
    } else {
        String::new()
    };
    let mut out: Vec<String> = Vec::new();
    for p in list {
        let p = p.replace("{kernel}", &kernel);
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// The pinned kernel when the kernel pin step pinned one, else the running
/// kernel.
fn kernel_to_run(host: &Host) -> Result<String, StepError> {
    if let Some(pinned) = super::kernel::read_pin(host)? {
        return Ok(pinned);
    }
    host.facts.kernel.release.clone().ok_or_else(|| {
        StepError::new(
            "cannot tell the running kernel (no /proc/sys/kernel/osrelease) to fill in {kernel} in host.packages",
        )
    })
}

/// Absolute path of a payload `.deb`, which must exist.
fn deb_path(host: &Host, rel: &str) -> Result<String, StepError> {
    let rel = format!("{PAYLOAD_DIR}/{}", rel.trim_start_matches('/'));
    let path = host.path(&rel)?;
    if !host.exists(&rel) {
        return Err(StepError::new(format!(
            "offline package {} is missing from the payload; bake and install the bundle again",
            path.display()
        )));
    }
    Ok(path.to_string_lossy().into_owned())
}

/// `Package` and `Version` from `dpkg-deb -f <deb> Package Version` output.
fn deb_fields(out: &str) -> Option<(String, String)> {
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    Some((field("Package")?, field("Version")?))
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

/// Dry run of [`apt_repositories`].
pub(super) fn preview_repositories(host: &Host) -> Result<Vec<String>, StepError> {
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

/// Dry run of [`apt_install`]: every package, installed or not (telling
/// would need `dpkg-query`).
pub(super) fn preview_install(host: &Host) -> Result<Vec<String>, StepError> {
    let mut lines: Vec<String> = packages(host)?
        .into_iter()
        .map(|p| format!("package {p}: would install unless dpkg-query shows it installed"))
        .collect();
    for file in &host.plan.host.offline_debs {
        let rel = format!("{PAYLOAD_DIR}/{}", file.path.trim_start_matches('/'));
        lines.push(format!(
            "offline package {}: would install with apt-get unless the same version is installed",
            host.path(&rel)?.display()
        ));
    }
    if lines.is_empty() {
        lines.push("no package to install".into());
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb_fields_are_read_from_dpkg_deb_output() {
        assert_eq!(
            deb_fields("Package: mdevctl\nVersion: 1.3.0-1\n"),
            Some(("mdevctl".into(), "1.3.0-1".into()))
        );
        assert_eq!(deb_fields("Package: x\n"), None);
        assert_eq!(deb_fields(""), None);
    }

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

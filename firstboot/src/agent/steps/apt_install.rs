//! Step apt-install: the plan's packages and offline `.deb` files.
//!
//! Packages are installed non-interactively, keeping the admin's changed
//! configuration files, and only those `dpkg-query` does not report
//! installed, so a re-run installs nothing.

use super::commands::run_or;
use super::dpkg::{install, installed_version};
use super::pinned_kernel::read_pin;
use crate::agent::host::{Host, StepError, StepOutcome};
use crate::agent::journal::Change;
use vgpu_plan::layout::PAYLOAD_DIR;

/// Installs the plan's packages (`{kernel}` resolved) and offline `.deb`
/// files from the payload, skipping what is already installed.
pub fn run(host: &mut Host) -> Result<StepOutcome, StepError> {
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
            host.record(Change::Package(name))?;
            debs.push(path);
        }
    }
    install(host, &debs, "install the offline packages from the bundle")?;
    if missing.is_empty() && debs.is_empty() {
        host.note("every package is already installed");
    }
    Ok(StepOutcome::Done)
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
    if let Some(pinned) = read_pin(host)? {
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

/// Dry run of [`run`]: every package, installed or not (telling
/// would need `dpkg-query`).
pub fn preview(host: &Host) -> Result<Vec<String>, StepError> {
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
}

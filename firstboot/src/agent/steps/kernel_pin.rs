//! Step kernel-pin: an older kernel series chosen and installed when the
//! driver cannot build on the running one (seed §4.7). The pin itself is
//! part of the trial boot: the choice is recorded here, the trial boots
//! the kernel once, and verify-reboot pins it at the commit
//! (`pinned_kernel::pin`).

use std::cmp::Ordering;

use super::commands::run_or;
use super::dpkg::{install, installed_version};
use super::pinned_kernel::{CHOSEN_FILE, read_pin};
use crate::agent::host::{Host, StepError, StepOutcome};
use crate::runner::TAIL_BYTES;
use vgpu_plan::plan::KernelPin;

/// Leading dotted numbers of a version: `6.14.11-4-pve` gives `[6, 14, 11]`.
fn leading_version(s: &str) -> Option<Vec<u64>> {
    let head = s
        .trim()
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()?;
    let parts: Vec<u64> = head.split('.').map_while(|p| p.parse().ok()).collect();
    (!parts.is_empty()).then_some(parts)
}

/// Whether kernel `running` is at least `min`, comparing the leading dotted
/// numbers, missing parts as 0: `6.17.2-1-pve` is at least `6.17`,
/// `6.14.11-4-pve` is not. `None` when either has no leading number.
pub fn version_at_least(running: &str, min: &str) -> Option<bool> {
    let (a, b) = (leading_version(running)?, leading_version(min)?);
    let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
    for i in 0..a.len().max(b.len()) {
        match at(&a, i).cmp(&at(&b, i)) {
            Ordering::Equal => {}
            o => return Some(o == Ordering::Greater),
        }
    }
    Some(true)
}

/// `version` belongs to `series`: `6.14.11-9-pve` to `6.14.11` and `6.14`,
/// not `6.1`.
fn in_series(version: &str, series: &str) -> bool {
    version
        .strip_prefix(series)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '-']))
}

/// Every number in a version, for sorting: `6.14.11-10-pve` after `-9-pve`.
fn sort_key(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().unwrap_or(u64::MAX))
        .collect()
}

/// A kernel version the repositories carry, and in which builds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    version: String,
    unsigned: bool,
    signed: bool,
}

/// The `proxmox-kernel-<version>-pve[-signed]` packages of `series` in
/// `apt-cache pkgnames` output, newest first. Other names (meta packages,
/// templates) are ignored.
fn candidates(pkgnames: &str, series: &str) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    for name in pkgnames.split_whitespace() {
        let Some(rest) = name.strip_prefix("proxmox-kernel-") else {
            continue;
        };
        let (version, signed) = match rest.strip_suffix("-signed") {
            Some(v) => (v, true),
            None => (rest, false),
        };
        if !version.ends_with("-pve") || !in_series(version, series) {
            continue;
        }
        let i = match out.iter().position(|c| c.version == version) {
            Some(i) => i,
            None => {
                out.push(Candidate {
                    version: version.to_owned(),
                    unsigned: false,
                    signed: false,
                });
                out.len() - 1
            }
        };
        if signed {
            out[i].signed = true;
        } else {
            out[i].unsigned = true;
        }
    }
    out.sort_by_key(|c| std::cmp::Reverse(sort_key(&c.version)));
    out
}

/// The kernel package to install and the version to pin: the newest of the
/// series (signed under Secure Boot, since shim refuses an unsigned kernel),
/// or the plan's fallback when the repositories list none.
fn choose(
    cands: &[Candidate],
    secure_boot: bool,
    pin: &KernelPin,
) -> Result<(String, String), StepError> {
    let package = |v: &str, signed: bool| {
        format!("proxmox-kernel-{v}{}", if signed { "-signed" } else { "" })
    };
    let Some(newest) = cands.first() else {
        return Ok((package(&pin.fallback, secure_boot), pin.fallback.clone()));
    };
    if !secure_boot {
        return Ok((
            package(&newest.version, !newest.unsigned),
            newest.version.clone(),
        ));
    }
    let c = cands.iter().find(|c| c.signed).ok_or_else(|| {
        StepError::new(format!(
            "Secure Boot is on but the repositories carry no proxmox-kernel-{}*-pve-signed (an unsigned kernel would not boot); turn Secure Boot off or add a repository with signed kernels",
            pin.series
        ))
    })?;
    Ok((package(&c.version, true), c.version.clone()))
}

fn headers(version: &str) -> String {
    format!("proxmox-headers-{version}")
}

/// The running kernel and whether it is new enough that the pin applies.
fn pin_applies(host: &Host, pin: &KernelPin) -> Result<(String, bool), StepError> {
    let running = host.facts.kernel.release.clone().ok_or_else(|| {
        StepError::new("cannot tell the running kernel (no /proc/sys/kernel/osrelease), so cannot decide on the kernel pin")
    })?;
    let newer = version_at_least(&running, &pin.when_running_at_least).ok_or_else(|| {
        StepError::new(format!(
            "cannot compare kernel {running:?} with host.kernel-pin.when-running-at-least {:?}: not dotted numbers",
            pin.when_running_at_least
        ))
    })?;
    Ok((running, newer))
}

fn secure_boot_on(host: &Host) -> bool {
    host.facts.firmware.secure_boot == Some(true)
}

/// Installs an older kernel series and records it as the kernel to pin
/// when the running kernel is at least `when-running-at-least`. Refuses,
/// before changing anything, when the root is a ZFS pool the older kernel
/// could not import. Does nothing when the chosen (or pinned) kernel of the
/// series and its headers are installed.
pub fn run(host: &mut Host) -> Result<StepOutcome, StepError> {
    let plan = host.plan;
    let Some(pin) = plan.host.kernel_pin.as_ref() else {
        host.note("the plan pins no kernel");
        return Ok(StepOutcome::Done);
    };
    let (running, applies) = pin_applies(host, pin)?;
    if !applies {
        host.note(format!(
            "running kernel {running} is older than {}: no kernel pin needed",
            pin.when_running_at_least
        ));
        return Ok(StepOutcome::Done);
    }
    if let Some(pinned) = read_pin(host)?.filter(|v| in_series(v, &pin.series))
        && kernel_installed(host, &pinned)?
        && installed_version(host, &headers(&pinned))?.is_some()
    {
        host.note(format!("kernel {pinned} is installed and chosen"));
        return Ok(StepOutcome::Done);
    }
    zfs_guard(host, pin)?;

    let spec = host.command(
        "apt-cache",
        &["pkgnames", &format!("proxmox-kernel-{}", pin.series)],
        "list the kernels of the series the driver needs",
    );
    let out = run_or(host, spec, "check that apt works on this host")?;
    let mut listed = out.stdout_tail.as_str();
    if listed.len() >= TAIL_BYTES {
        // Only the tail was kept: the first name may be cut.
        listed = listed.split_once('\n').map_or("", |(_, rest)| rest);
        host.note("apt-cache listed many kernels; choosing among the last ones listed");
    }
    let cands = candidates(listed, &pin.series);
    let (package, version) = choose(&cands, secure_boot_on(host), pin)?;
    if cands.is_empty() {
        host.note(format!(
            "the repositories list no proxmox-kernel-{}*: using the plan's fallback {version}",
            pin.series
        ));
    }
    let mut missing = Vec::new();
    for p in [package, headers(&version)] {
        if installed_version(host, &p)?.is_none() {
            missing.push(p);
        }
    }
    let why = format!("install kernel {version} and its headers: {}", pin.reason);
    install(host, &missing, &why)?;
    if read_pin(host)?.as_deref() != Some(version.as_str()) {
        host.fs()?
            .write_atomic(CHOSEN_FILE, format!("{version}\n").as_bytes(), 0o644)?;
    }
    host.note(format!(
        "kernel {version} chosen (running {running}), pinned at the trial's commit: {}",
        pin.reason
    ));
    Ok(StepOutcome::Done)
}

/// The signed or unsigned kernel package of `version` is installed.
fn kernel_installed(host: &mut Host, version: &str) -> Result<bool, StepError> {
    for p in [
        format!("proxmox-kernel-{version}-signed"),
        format!("proxmox-kernel-{version}"),
    ] {
        if installed_version(host, &p)?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Seed §3.7: a pool with OpenZFS 2.4's `block_cloning_endian` feature
/// enabled cannot be imported by the ZFS of an older kernel, so pinning one
/// would leave the host at an initramfs prompt. A ZFS too old to know the
/// feature cannot have it on its pool; any other failure to check refuses.
fn zfs_guard(host: &mut Host, pin: &KernelPin) -> Result<(), StepError> {
    let facts = host.facts;
    let Some(root) = facts
        .root_fs
        .as_ref()
        .filter(|m| pin.zfs_guard && m.is_zfs())
    else {
        return Ok(());
    };
    let pool = root.zfs_pool().ok_or_else(|| {
        StepError::new(format!(
            "the root is on ZFS ({:?}) but its pool cannot be told to check the kernel pin; not pinning",
            root.source
        ))
    })?;
    let spec = host.command(
        "zpool",
        &[
            "get",
            "-H",
            "-o",
            "value",
            "feature@block_cloning_endian",
            pool,
        ],
        "can an older kernel import the root pool?",
    );
    let out = host.run_status(&spec)?;
    if !out.success() {
        let err = out.stderr_tail.to_ascii_lowercase();
        if err.contains("invalid property") || err.contains("bad property") {
            host.note(format!(
                "ZFS here does not know feature@block_cloning_endian, so pool {pool} cannot have it"
            ));
            return Ok(());
        }
        return Err(StepError {
            reason: format!(
                "cannot check ZFS pool {pool} before pinning an older kernel: {}; not pinning",
                crate::runner::format_failure(&spec, &out)
            ),
            exit_code: out.exit_code,
            stderr_tail: out.stderr_tail,
        });
    }
    let value = out.stdout_tail.trim();
    if value == "enabled" || value == "active" {
        return Err(StepError::new(format!(
            "refusing to pin kernel {}: root pool {pool} has feature@block_cloning_endian {value} (OpenZFS 2.4), which its ZFS cannot import: the host would not boot. Use a driver that builds on the running kernel (drop host.kernel-pin), or an older Proxmox VE",
            pin.series
        )));
    }
    Ok(())
}

/// Dry run of [`run`]; the version is chosen on the host from the
/// repositories, so it is named only as a pattern.
pub fn preview(host: &Host) -> Result<Vec<String>, StepError> {
    let Some(pin) = host.plan.host.kernel_pin.as_ref() else {
        return Ok(vec!["the plan pins no kernel".into()]);
    };
    let (running, applies) = pin_applies(host, pin)?;
    if !applies {
        return Ok(vec![format!(
            "running kernel {running} is older than {}: no kernel pin needed",
            pin.when_running_at_least
        )]);
    }
    let mut lines = Vec::new();
    if let Some(pool) = host
        .facts
        .root_fs
        .as_ref()
        .filter(|_| pin.zfs_guard)
        .and_then(|m| m.zfs_pool())
    {
        lines.push(format!(
            "would run `zpool get -H -o value feature@block_cloning_endian {pool}`, refusing if enabled or active (the older kernel could not import the pool)"
        ));
    }
    let signed = if secure_boot_on(host) { "-signed" } else { "" };
    lines.push(format!(
        "package proxmox-kernel-{}*-pve{signed} and its proxmox-headers: would install the newest the repositories list (else {}): {}",
        pin.series, pin.fallback, pin.reason
    ));
    match read_pin(host)? {
        Some(v) if in_series(&v, &pin.series) => lines.push(format!("kernel {v} is chosen")),
        _ => lines.push(format!(
            "running kernel {running} is at least {}: the trial boot would boot the kernel once, `proxmox-boot-tool kernel pin <version>` run at the commit after it",
            pin.when_running_at_least
        )),
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_compare_by_leading_numbers() {
        assert_eq!(version_at_least("6.17.2-1-pve", "6.17"), Some(true));
        assert_eq!(version_at_least("6.17", "6.17.0"), Some(true));
        assert_eq!(version_at_least("7.0.2-1-pve", "6.17"), Some(true));
        assert_eq!(version_at_least("6.14.11-4-pve", "6.17"), Some(false));
        assert_eq!(version_at_least("6.8.12-9-pve", "6.8"), Some(true));
        assert_eq!(version_at_least("6.5.13-6-pve", "6.8"), Some(false));
        assert_eq!(version_at_least("6.10", "6.9"), Some(true));
        assert_eq!(version_at_least("pve", "6.8"), None);
        assert_eq!(version_at_least("6.8", ""), None);
    }

    #[test]
    fn series_membership_is_by_whole_components() {
        assert!(in_series("6.14.11-9-pve", "6.14.11"));
        assert!(in_series("6.14.11-9-pve", "6.14"));
        assert!(!in_series("6.14.11-9-pve", "6.1"));
        assert!(!in_series("6.50.1-1-pve", "6.5"));
    }

    fn pin() -> KernelPin {
        KernelPin {
            when_running_at_least: "6.17".into(),
            series: "6.14.11".into(),
            fallback: "6.14.11-9-pve".into(),
            zfs_guard: true,
            reason: "test".into(),
        }
    }

    #[test]
    fn newest_kernel_is_chosen_signed_under_secure_boot() {
        let listed = "proxmox-kernel-6.14.11-4-pve\nproxmox-kernel-6.14.11-10-pve\n\
                      proxmox-kernel-6.14.11-9-pve-signed\nproxmox-kernel-6.14.11-4-pve-signed\n\
                      proxmox-kernel-6.14.11-9-pve\nproxmox-kernel-6.14.11\n\
                      proxmox-kernel-6.14.11-9-pve-signed-template\nproxmox-kernel-6.1.1-1-pve\n";
        let c = candidates(listed, "6.14.11");
        let versions: Vec<&str> = c.iter().map(|c| c.version.as_str()).collect();
        assert_eq!(
            versions,
            ["6.14.11-10-pve", "6.14.11-9-pve", "6.14.11-4-pve"]
        );
        assert_eq!(
            choose(&c, false, &pin()).unwrap(),
            (
                "proxmox-kernel-6.14.11-10-pve".into(),
                "6.14.11-10-pve".into()
            )
        );
        assert_eq!(
            choose(&c, true, &pin()).unwrap(),
            (
                "proxmox-kernel-6.14.11-9-pve-signed".into(),
                "6.14.11-9-pve".into()
            )
        );
        assert_eq!(
            choose(&[], true, &pin()).unwrap(),
            (
                "proxmox-kernel-6.14.11-9-pve-signed".into(),
                "6.14.11-9-pve".into()
            )
        );
        let unsigned_only = candidates("proxmox-kernel-6.14.11-2-pve", "6.14.11");
        let err = choose(&unsigned_only, true, &pin()).unwrap_err();
        assert!(err.reason.contains("Secure Boot is on"), "{err}");
    }
}

//! Packages: what dpkg has installed, and `apt-get install` for the rest.
//! Used by the apt-install, kernel-pin and secure-boot steps.

use super::commands::run_or;
use crate::agent::host::{Host, StepError};
use crate::agent::journal::Change;

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

/// Runs one `apt-get install` for `packages` (names or `.deb` paths), if
/// there are any.
pub(super) fn install(host: &mut Host, packages: &[String], why: &str) -> Result<(), StepError> {
    if packages.is_empty() {
        return Ok(());
    }
    // Journaled first: undo removes what the agent installed, and only
    // that (offline `.deb` paths are journaled by name by apt-install).
    for p in packages.iter().filter(|p| !p.ends_with(".deb")) {
        host.record(Change::Package(p.clone()))?;
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
pub(crate) fn installed_version(
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

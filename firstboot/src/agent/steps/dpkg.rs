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
    let log_start = dpkg_log_len(host);
    let mut args: Vec<&str> = INSTALL_ARGS.to_vec();
    args.extend(packages.iter().map(String::as_str));
    let spec = host.command("apt-get", &args, why);
    let ran = run_or(
        host,
        spec,
        "check the network, the repositories and that the packages exist for this release",
    );
    // The dependencies apt pulled in are the agent's too: dpkg's own log
    // names every package this install added (also after a failure, which
    // can leave some installed).
    for p in new_in_dpkg_log(host, log_start)? {
        host.record(Change::Package(p))?;
    }
    ran.map(drop)
}

/// dpkg's log: one line per package action, `DATE TIME install
/// NAME:ARCH <none> VERSION` for a package that was not installed before.
const DPKG_LOG: &str = "var/log/dpkg.log";
/// The most of dpkg's log read back from where an install started.
const DPKG_LOG_LIMIT: u64 = 64 << 20;

/// The log's size now: where this install's lines will start.
fn dpkg_log_len(host: &Host) -> u64 {
    host.fs()
        .ok()
        .and_then(|r| r.metadata(DPKG_LOG).ok().flatten())
        .map_or(0, |m| m.len())
}

/// Packages the log records as newly installed after byte `start` (from
/// the beginning if the log was rotated meanwhile); at most
/// [`DPKG_LOG_LIMIT`] bytes of it are read. A log that cannot be read
/// leaves the dependencies out of the journal, with a note: the install
/// itself went well.
fn new_in_dpkg_log(host: &mut Host, start: u64) -> Result<Vec<String>, StepError> {
    use std::io::{Read, Seek, SeekFrom};
    let read = |host: &Host| -> std::io::Result<String> {
        let root = host.fs().map_err(|e| std::io::Error::other(e.reason))?;
        let Some(mut f) = root.open(DPKG_LOG).map_err(|e| e.source)? else {
            return Ok(String::new());
        };
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(if start <= len { start } else { 0 }))?;
        let mut bytes = Vec::new();
        f.take(DPKG_LOG_LIMIT).read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read(host) {
        Ok(text) => Ok(newly_installed(&text)),
        Err(e) => {
            host.note(format!(
                "/{DPKG_LOG}: {e}: the packages apt pulled in are not journaled, so undo will not purge them"
            ));
            Ok(Vec::new())
        }
    }
}

/// The packages `install NAME:ARCH <none> VERSION` lines name, in order,
/// without repeats; the architecture is dropped when it is the native one
/// or `all` (apt and dpkg take the bare name then). Pure.
fn newly_installed(log: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in log.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[2] != "install" || f[4] != "<none>" {
            continue;
        }
        let name = match f[3].split_once(':') {
            Some((n, "amd64" | "all")) => n,
            _ => f[3],
        };
        if !out.iter().any(|p| p == name) {
            out.push(name.to_owned());
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::newly_installed;

    #[test]
    fn new_packages_come_from_dpkgs_install_lines() {
        let log = "\
2026-12-03 06:10:01 startup archives unpack
2026-12-03 06:10:02 install conmon:amd64 <none> 2.1.6+ds1-1
2026-12-03 06:10:02 status half-installed conmon:amd64 2.1.6+ds1-1
2026-12-03 06:10:03 install podman:amd64 <none> 4.3.1+ds1-8
2026-12-03 06:10:03 upgrade libc6:amd64 2.36-9 2.36-9+deb12u9
2026-12-03 06:10:04 install golang-github-containers-common:all <none> 0.50.1
2026-12-03 06:10:04 install libfoo:i386 <none> 1.0
2026-12-03 06:10:05 install conmon:amd64 <none> 2.1.6+ds1-1
torn line install
";
        assert_eq!(
            newly_installed(log),
            [
                "conmon",
                "podman",
                "golang-github-containers-common",
                "libfoo:i386"
            ]
        );
    }
}

//! `vgpu-bake doctor`: is this build machine ready to bake? One finding
//! per line, each `ok`, `warn` or `fail`, and for `warn` and `fail` what to
//! do: the external tools the commands run (`tools.rs`), the driver cache
//! and its frame cache (`cache.rs`), and the free space the given
//! profiles' bakes need (`space.rs`).
//!
//! The checks are pure over what [`Probes`] reports (tools on `PATH`,
//! their versions, free space) and over the cache directory itself, so the
//! tests feed them fake machines and real temporary caches. A `fail` makes
//! the exit code 1; a `warn` does not.

mod cache;
mod space;
#[cfg(test)]
mod tests;
mod tools;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use self::space::Space;

/// Version of `doctor --json`'s document.
pub const JSON_SCHEMA: u32 = 1;

/// How a finding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Nothing to do.
    Ok,
    /// Worth a look; bakes may still work.
    Warn,
    /// A bake (or the command named) will fail until this is fixed.
    Fail,
}

impl Status {
    /// `ok`, `warn` or `fail`.
    pub fn word(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Finding {
    /// How it stands.
    pub status: Status,
    /// The area: `tool`, `cache`, `frame-cache`, `space` or `profile`.
    pub check: &'static str,
    /// The tool, file, directory or profile it is about.
    pub subject: String,
    /// What was found.
    pub message: String,
    /// What to do (for `warn` and `fail`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    fn ok(check: &'static str, subject: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: Status::Ok,
            check,
            subject: subject.into(),
            message: message.into(),
            fix: None,
        }
    }

    fn bad(
        status: Status,
        check: &'static str,
        subject: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            status,
            check,
            subject: subject.into(),
            message: message.into(),
            fix: Some(fix.into()),
        }
    }

    /// `STATUS  SUBJECT: MESSAGE; FIX`, one line.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{:<4}  {}: {}",
            self.status.word(),
            self.subject,
            self.message
        );
        if let Some(fix) = &self.fix {
            s.push_str("; ");
            s.push_str(fix);
        }
        s
    }
}

/// What the machine is asked about; the real one is [`System`].
pub trait Probes {
    /// Where `program` is on `PATH`, as `Command::new(program)` finds it.
    fn find(&self, program: &str) -> Option<PathBuf>;
    /// The first line `program --version` prints, or why it did not run.
    fn version(&self, program: &str) -> Result<String, String>;
    /// The filesystem holding `dir` (or, when it does not exist yet, its
    /// nearest existing ancestor): its id and the bytes free to a user.
    fn space(&self, dir: &Path) -> Result<Space, String>;
}

/// A profile the space check and the tool check consider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileNeeds {
    /// The profile file, as given.
    pub profile: String,
    /// Its driver's file name in the cache (none: passthrough).
    pub driver: Option<String>,
    /// The driver's size when known without the cache (the demo
    /// installer, a `--driver-file`); the registry has no sizes.
    pub driver_size: Option<u64>,
    /// Whether its bake applies an unlock patch (runs `sh` and `patch`).
    pub unlock: bool,
}

/// What `doctor` checks.
#[derive(Debug, Clone)]
pub struct Request {
    /// The driver cache (`--cache`).
    pub cache: PathBuf,
    /// Where bundles are written (`--out`).
    pub out: PathBuf,
    /// Re-hash every cached driver and re-check every frame entry's CRC.
    pub deep: bool,
    /// The profiles given; empty: none (tools are then judged for every
    /// command, and no space is estimated).
    pub profiles: Vec<ProfileNeeds>,
    /// Profiles that could not be read, with the error (each a `fail`).
    pub broken: Vec<(String, String)>,
}

/// Every finding, in order: profiles, tools, cache, space.
pub fn run(req: &Request, probes: &dyn Probes) -> Vec<Finding> {
    let mut out: Vec<Finding> = req
        .broken
        .iter()
        .map(|(profile, error)| {
            Finding::bad(
                Status::Fail,
                "profile",
                profile.clone(),
                format!("cannot be read: {error}"),
                "fix it as the error says, then run doctor again",
            )
        })
        .collect();
    let given = (!req.profiles.is_empty()).then(|| req.profiles.iter().any(|p| p.unlock));
    out.extend(tools::check(probes, given));
    let cache = cache::check(&req.cache, req.deep);
    out.extend(cache.findings);
    out.extend(space::check(req, &cache.drivers, probes));
    out
}

/// The exit code's rule: 1 when anything failed.
pub fn failed(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.status == Status::Fail)
}

/// `doctor --json`: one document.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Document<'a> {
    /// [`JSON_SCHEMA`].
    pub schema: u32,
    /// Whether any finding is `fail` (the exit code is then 1).
    pub failed: bool,
    /// Every finding.
    pub findings: &'a [Finding],
}

impl<'a> Document<'a> {
    /// The document for `findings`.
    pub fn new(findings: &'a [Finding]) -> Self {
        Self {
            schema: JSON_SCHEMA,
            failed: failed(findings),
            findings,
        }
    }
}

/// The real machine: `PATH`, the programs themselves, `statvfs`.
#[derive(Debug, Default, Clone, Copy)]
pub struct System;

impl Probes for System {
    fn find(&self, program: &str) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|p| {
                std::fs::metadata(p)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    }

    fn version(&self, program: &str) -> Result<String, String> {
        let out = std::process::Command::new(program)
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("`{program} --version`: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.lines().next().unwrap_or_default().trim().to_owned())
    }

    fn space(&self, dir: &Path) -> Result<Space, String> {
        space::probe(dir)
    }
}

impl ProfileNeeds {
    /// What `profile` (resolved from the file `shown`) asks of the machine.
    pub fn of(shown: &str, profile: &crate::resolve::Resolved) -> Self {
        use crate::resolve::DriverSource;
        let driver = profile.driver.as_ref();
        let driver_size = driver.and_then(|d| match &d.source {
            DriverSource::Demo { bytes } => Some(bytes.len() as u64),
            DriverSource::UserFile { path } => std::fs::metadata(path).ok().map(|m| m.len()),
            DriverSource::Download { .. } => None,
        });
        Self {
            profile: shown.to_owned(),
            driver: driver.map(|d| d.filename.clone()),
            driver_size,
            unlock: driver.is_some_and(|d| d.patch.is_some()),
        }
    }
}

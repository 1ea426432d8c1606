//! Profile -> [`Resolved`]: every choice made concrete, every disagreement
//! named, every payload file described by its source.
//!
//! Pure: takes the parsed profile, the registry and the GPU database, reads
//! no files. This is the only stage that consults the registry: what later
//! stages need from it (URL, demo bytes, md5) is in [`ResolvedDriver`]. The
//! payload's digests are filled in by the bake, which turns a `Resolved` and
//! the read payload into a `vgpu_plan::plan::Plan`.

mod driver;
mod files;
mod gpus;
mod guest;
mod host;
mod licensing;
mod report;
mod sources;
mod steps;

use std::path::Path;

use serde::Serialize;
use vgpu_plan::plan::{
    AgentPlan, GpuRule, HostPlan, LicensingMode, Mode, ReportPlan, SCHEMA, Step,
};

pub use self::files::check_files;
pub use self::guest::{GuestDriverSource, GuestSource};
pub use self::licensing::{
    Footprint, IMAGE_PAYLOAD, RUNTIME_PACKAGE, ResolvedLicensing, TOKEN_PAYLOAD, footprint,
};
pub use self::sources::{
    DebSource, DriverOverrides, DriverSource, LibrarySource, LicensingSource, PatchSource,
    ResolvedDriver, ResolvedUnlock,
};
use crate::gpudb::GpuDb;
use crate::profile::Profile;
use crate::registry::Registry;
use crate::text::{escape_controls, has_controls, shown};

/// `description` is one line of at most this many characters.
pub const DESCRIPTION_CHARS: usize = 200;

/// A resolved profile: the plan's decisions and the payload's sources.
///
/// Serialises (for `vgpu-bake plan`) in the plan's shape, with sources and
/// pins where the baked plan has digests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Resolved {
    /// Plan format version the bake will write.
    pub schema: u32,
    /// Bundle name.
    pub name: String,
    /// One line for humans.
    pub description: String,
    /// A demo plan (the driver is the stand-in installer).
    pub demo: bool,
    /// Proxmox VE major release.
    pub proxmox: u8,
    /// Debian codename of that release.
    pub codename: String,
    /// What the host is provisioned for.
    pub mode: Mode,
    /// Host configuration; offline packages still on disk.
    pub host: HostPlan<DebSource>,
    /// The host driver; absent in passthrough mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<ResolvedDriver>,
    /// vgpu_unlock settings; present only in unlock mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unlock: Option<ResolvedUnlock>,
    /// Licensing settings; the token and image still on disk.
    pub licensing: ResolvedLicensing,
    /// How the agent behaves.
    pub agent: AgentPlan,
    /// Where the agent reports its progress.
    pub report: ReportPlan,
    /// Cards the profile names, classified.
    #[serde(rename = "gpu")]
    pub gpus: Vec<GpuRule>,
    /// Disagreements that did not stop the bake.
    pub warnings: Vec<String>,
    /// Steps in the order the agent runs them.
    #[serde(rename = "step")]
    pub steps: Vec<Step>,
    /// Guest drivers the bundle carries (not in the agent's plan: the
    /// manifest lists and verifies them).
    #[serde(rename = "guest-driver", skip_serializing_if = "Vec::is_empty")]
    pub guest_drivers: Vec<GuestDriverSource>,
}

/// A profile that names something impossible or contradictory.
///
/// The message names the profile file and the key, and says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ResolveError {
    /// The profile file, as given.
    pub file: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// Collects the problems of one profile; the first one is reported.
pub(crate) struct Ctx<'a> {
    pub file: &'a Path,
    pub warnings: Vec<String>,
}

impl Ctx<'_> {
    /// The directory the profile's relative paths start from.
    pub fn base(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }

    pub fn err(&self, message: impl Into<String>) -> ResolveError {
        ResolveError {
            file: escape_controls(&self.file.display().to_string()),
            message: escape_controls(&message.into()),
        }
    }

    /// Checks a one-line free-text value: at most `max` characters, no
    /// control characters (they would reach a terminal through `plan`).
    pub fn one_line(&self, key: &str, value: &str, max: usize) -> Result<(), ResolveError> {
        let count = value.chars().count();
        if count > max {
            return Err(self.err(format!(
                "`{key}` = {} is too long: use at most {max} characters",
                shown(value)
            )));
        }
        if has_controls(value) {
            return Err(self.err(format!(
                "`{key}` = {} holds control characters (escape sequences, tabs or line breaks): use plain text on one line",
                shown(value)
            )));
        }
        Ok(())
    }
}

/// Resolves `profile` (read from `file`; its relative paths start from
/// `file`'s directory).
pub fn resolve(
    profile: &Profile,
    file: &Path,
    registry: &Registry,
    db: &GpuDb,
) -> Result<Resolved, ResolveError> {
    let mut cx = Ctx {
        file,
        warnings: Vec::new(),
    };
    let name = bundle_name(profile, file, &cx)?;
    let codename = match profile.proxmox {
        7 => "bullseye",
        8 => "bookworm",
        9 => "trixie",
        other => {
            return Err(cx.err(format!(
                "`proxmox` = {other} is not supported: use 7 (bullseye), 8 (bookworm) or 9 (trixie)"
            )));
        }
    };
    let mode = profile.vgpu.mode;
    let release = driver::pick_release(profile, mode, registry, &mut cx)?;
    let gpus = gpus::resolve_gpus(profile, mode, release, db, &mut cx)?;
    let driver = release
        .map(|r| driver::resolved_driver(profile, mode, r, &cx))
        .transpose()?;
    let unlock = driver::resolved_unlock(profile, mode, release, &cx)?;
    let mut host = host::host_plan(profile, mode, release, &cx)?;
    let licensing = licensing::licensing_plan(profile, release, &mut cx)?;
    if licensing.mode == LicensingMode::FastapiDls
        && !host.packages.iter().any(|p| p == RUNTIME_PACKAGE)
    {
        host.packages.push(RUNTIME_PACKAGE.into());
    }
    let agent = agent_plan(profile, &cx)?;
    let report = report::report_plan(profile, &cx)?;
    let steps = steps::steps(mode, &host, &gpus, driver.as_ref(), &licensing);
    let guest_drivers = guest::guest_drivers(profile, &cx)?;
    cx.one_line("description", &profile.description, DESCRIPTION_CHARS)?;
    let description = if profile.description.is_empty() {
        format!("{mode} vGPU host, Proxmox VE {}", profile.proxmox)
    } else {
        profile.description.clone()
    };
    Ok(Resolved {
        schema: SCHEMA,
        name,
        description,
        demo: release.is_some_and(|r| r.demo),
        proxmox: profile.proxmox,
        codename: codename.to_string(),
        mode,
        host,
        driver,
        unlock,
        licensing,
        agent,
        report,
        gpus,
        warnings: cx.warnings,
        steps,
        guest_drivers,
    })
}

/// A bundle name is at most this long (it names files and the plan).
pub const NAME_CHARS: usize = 64;

fn bundle_name(profile: &Profile, file: &Path, cx: &Ctx) -> Result<String, ResolveError> {
    let (name, key) = match &profile.name {
        Some(n) => (n.clone(), "`name`"),
        None => (
            file.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            "the file name (no `name` key)",
        ),
    };
    let ok = !name.is_empty()
        && name.len() <= NAME_CHARS
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
    if !ok {
        return Err(cx.err(format!(
            "bundle name {} from {key} is not usable: use 1 to {NAME_CHARS} lower-case letters, digits, `-`, `_` or `.`, starting with a letter or digit",
            shown(&name)
        )));
    }
    Ok(name)
}

fn agent_plan(profile: &Profile, cx: &Ctx) -> Result<AgentPlan, ResolveError> {
    let a = &profile.agent;
    if a.reboot_cap > 10 {
        return Err(cx.err(format!(
            "`agent.reboot-cap` = {} is too high: use 1 to 10 (the plan needs 1 reboot; the default 2 allows one retry)",
            a.reboot_cap
        )));
    }
    if a.reboot_cap == 0 {
        return Err(cx.err(
            "`agent.reboot-cap` = 0 would stop the agent before phase 2: use 1 to 10 (default 2)",
        ));
    }
    if !(60..=86_400).contains(&a.command_timeout) {
        return Err(cx.err(format!(
            "`agent.command-timeout` = {} is out of range: use 60 to 86400 seconds (default 3600)",
            a.command_timeout
        )));
    }
    Ok(AgentPlan {
        reboot_cap: a.reboot_cap,
        keep_payload: a.keep_payload,
        command_timeout_secs: a.command_timeout,
    })
}

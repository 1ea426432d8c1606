//! Profile -> plan: every choice made concrete, every disagreement named.
//!
//! Pure: takes the parsed profile, the registry and the GPU database, reads
//! no files. Hashes of files the plan carries are filled in later by
//! [`pin_driver`] and the bake, which have the files at hand.

mod driver;
mod gpus;
mod host;
mod licensing;
mod steps;

use std::path::Path;

use vgpu_plan::plan::{AgentPlan, Mode, Plan, SCHEMA};

use crate::gpudb::GpuDb;
use crate::hash::Digests;
use crate::profile::{ModeWord, Profile};
use crate::registry::Registry;

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
    pub fn err(&self, message: impl Into<String>) -> ResolveError {
        ResolveError {
            file: self.file.display().to_string(),
            message: message.into(),
        }
    }
}

/// Resolves `profile` (read from `file`) into a plan.
pub fn resolve(
    profile: &Profile,
    file: &Path,
    registry: &Registry,
    db: &GpuDb,
) -> Result<Plan, ResolveError> {
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
    let mode = match profile.vgpu.mode {
        ModeWord::Native => Mode::Native,
        ModeWord::Unlock => Mode::Unlock,
        ModeWord::Passthrough => Mode::Passthrough,
    };
    let release = driver::pick_release(profile, mode, registry, &cx)?;
    let gpus = gpus::resolve_gpus(profile, mode, release, db, &mut cx)?;
    let driver = release
        .map(|r| driver::driver_plan(profile, mode, r, &cx))
        .transpose()?;
    let unlock = driver::unlock_plan(profile, mode, release, &cx)?;
    let host = host::host_plan(profile, mode, release, &cx)?;
    let licensing = licensing::licensing_plan(profile, release, &mut cx)?;
    let agent = agent_plan(profile, &cx)?;
    let steps = steps::steps(mode, &host, &gpus, driver.as_ref());
    let description = if profile.description.is_empty() {
        format!("{mode} vGPU host, Proxmox VE {}", profile.proxmox)
    } else {
        profile.description.clone()
    };
    Ok(Plan {
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
        gpus,
        warnings: cx.warnings,
        steps,
    })
}

/// Fills in the NVIDIA `.run` file's verified digests.
pub fn pin_driver(plan: &mut Plan, digests: &Digests) {
    if let Some(d) = plan.driver.as_mut() {
        d.sha256 = digests.sha256.clone();
        d.size = digests.size;
        if d.md5.is_empty() {
            d.md5 = digests.md5.clone();
        }
    }
}

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
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
    if !ok {
        return Err(cx.err(format!(
            "bundle name {name:?} from {key} is not usable: use 1 to 64 lower-case letters, digits, `-`, `_` or `.`, starting with a letter or digit"
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

//! `facts --json`: every fact, the `auto` decisions, the GPU verdicts and
//! the vGPU obstacles, as one [`FactsReport`].

use serde::Serialize;

use super::decide::{
    BootloaderChoice, GpuVerdict, Obstacle, Severity, proxmox_major, resolve_bootloader,
    resolve_iommu,
};
use super::render::obstacles;
use super::{Facts, Vendor};
use vgpu_plan::plan::{Bootloader, Iommu};

pub use vgpu_plan::facts::JSON_SCHEMA;

/// The `vgpu-firstboot facts --json` document, schema [`JSON_SCHEMA`].
///
/// Keys: `schema`, `facts` (the serde form of [`Facts`], kebab-case as in
/// the state file, absent facts `null`), `decisions` ([`Decisions`]),
/// `gpus` (one [`GpuVerdict`] per NVIDIA GPU: `address`, `device`,
/// `compat`, the table row or `null`) and `vgpu` ([`VgpuReport`]).
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct FactsReport<'a> {
    /// [`JSON_SCHEMA`].
    pub schema: u32,
    /// What the agent read.
    pub facts: &'a Facts,
    /// What the agent decides from it when the plan says `auto`.
    pub decisions: Decisions,
    /// The GPUs and what the compatibility table says about each.
    pub gpus: &'a [GpuVerdict],
    /// Whether vGPU can work here.
    pub vgpu: VgpuReport,
}

/// The `auto` decisions in [`FactsReport`].
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Decisions {
    /// `intel` or `amd`, or `null` when the CPU vendor is unknown.
    pub cpu_vendor: Option<Vendor>,
    /// Why the vendor is unknown, or `null`.
    pub cpu_vendor_error: Option<String>,
    /// `kind` (`grub`, `systemd-boot`) and `reason`.
    pub bootloader: BootloaderChoice,
    /// The Proxmox VE release the OS codename is the base of, or `null`.
    pub proxmox_major: Option<u8>,
    /// `/etc/pve` or `pveversion` exists.
    pub proxmox_hint: bool,
    /// `/` is a ZFS dataset.
    pub zfs_root: bool,
}

/// The vGPU verdict in [`FactsReport`].
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct VgpuReport {
    /// No obstacle is fatal.
    pub possible: bool,
    /// `severity` (`fatal`, `pre-reboot`, `warning`) and `message` each.
    pub obstacles: Vec<Obstacle>,
}

impl<'a> FactsReport<'a> {
    /// The report for `facts` with the GPU `verdicts`.
    pub fn new(facts: &'a Facts, verdicts: &'a [GpuVerdict]) -> Self {
        let vendor = resolve_iommu(Iommu::Auto, facts);
        let obstacles = obstacles(facts, verdicts);
        FactsReport {
            schema: JSON_SCHEMA,
            facts,
            decisions: Decisions {
                cpu_vendor: vendor.as_ref().ok().copied(),
                cpu_vendor_error: vendor.err().map(|e| e.to_string()),
                bootloader: resolve_bootloader(Bootloader::Auto, facts),
                proxmox_major: proxmox_major(facts),
                proxmox_hint: facts.os.proxmox_hint(),
                zfs_root: facts.root_fs.as_ref().is_some_and(|m| m.is_zfs()),
            },
            gpus: verdicts,
            vgpu: VgpuReport {
                possible: !obstacles.iter().any(|o| o.severity == Severity::Fatal),
                obstacles,
            },
        }
    }
}

/// [`FactsReport`] as pretty-printed JSON (two-space indent), without a
/// trailing newline. (Strings, numbers and booleans always serialise; the
/// error is serde_json's type.)
pub fn render_json(facts: &Facts, verdicts: &[GpuVerdict]) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(&FactsReport::new(facts, verdicts))
}

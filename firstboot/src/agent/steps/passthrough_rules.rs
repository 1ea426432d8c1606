//! Step passthrough-rules: which PCI devices go to vfio-pci, and the udev rules that do it.
//!
//! A device can be passed through only with its whole IOMMU group, so every
//! device of a passthrough GPU's group is bound (the GPU's audio and USB
//! functions, anything else sharing it), except PCI bridges: vfio-pci does
//! not bind them. Without an IOMMU (before the reboot that turns it on) the
//! groups are unknown; then the GPU's own functions are bound and the group
//! is checked after the reboot.

use super::file_ops::ops_lines;
use crate::agent::host::{Host, StepError, StepOutcome};
use crate::edits::passthrough::{UDEV_RULES, plan_passthrough};
use crate::facts::PciFunction;
use vgpu_plan::plan::{GpuRole, Mode};

/// The devices to bind, sorted and without repeats, and notes for the
/// journal.
fn addresses(host: &Host) -> Result<(Vec<String>, Vec<String>), StepError> {
    let facts = host.facts;
    let plan = host.plan;
    let all_gpus = plan.mode == Mode::Passthrough;
    let chosen: Vec<&PciFunction> = facts
        .gpus()
        .filter(|g| {
            all_gpus
                || plan
                    .gpus
                    .iter()
                    .any(|r| r.role == GpuRole::Passthrough && r.id.eq_ignore_ascii_case(&g.id()))
        })
        .collect();
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for gpu in &chosen {
        match gpu.iommu_group.and_then(|id| facts.group(id)) {
            Some(group) => out.extend(
                group
                    .devices
                    .iter()
                    .filter(|d| !d.class.as_deref().is_some_and(|c| c.starts_with("0604")))
                    .map(|d| d.address.clone()),
            ),
            None => {
                let slot = slot(&gpu.address);
                let funcs: Vec<String> = facts
                    .nvidia
                    .iter()
                    .filter(|f| self::slot(&f.address) == slot)
                    .map(|f| f.address.clone())
                    .collect();
                notes.push(format!(
                    "{} ({}) has no IOMMU group (IOMMU off until the reboot): binding its functions {}; its group is checked after the reboot",
                    gpu.address,
                    gpu.id(),
                    funcs.join(" ")
                ));
                out.extend(funcs);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    // A GPU the plan keeps for vGPU must not be taken along by a group.
    if let Some(kept) = facts
        .gpus()
        .find(|g| !chosen.iter().any(|c| c.address == g.address) && out.contains(&g.address))
    {
        return Err(StepError::new(format!(
            "{} ({}) shares an IOMMU group with a passthrough GPU (so would be bound to vfio-pci too); put the cards in other slots or pass both through",
            kept.address,
            kept.id()
        )));
    }
    if chosen.is_empty() {
        notes.push(if all_gpus {
            "no NVIDIA GPU on this host to pass through".into()
        } else if plan.gpus.iter().any(|r| r.role == GpuRole::Passthrough) {
            "none of the plan's passthrough GPUs is on this host".into()
        } else {
            "the plan passes no GPU through".into()
        });
    }
    Ok((out, notes))
}

/// `0000:02:00` of `0000:02:00.1`.
fn slot(address: &str) -> &str {
    address.rsplit_once('.').map_or(address, |(s, _)| s)
}

/// Writes the vfio-pci rules for the passthrough GPUs' IOMMU groups (our
/// file, written in full, once). It reaches the initramfs through the
/// initramfs step.
pub fn run(host: &mut Host) -> Result<StepOutcome, StepError> {
    let (addrs, notes) = addresses(host)?;
    for n in notes {
        host.note(n);
    }
    let current = host.read_opt(UDEV_RULES)?;
    let ops = plan_passthrough(&addrs, current.as_deref())
        .map_err(|e| StepError::new(format!("{e} (read from sysfs)")))?;
    if !host.apply(&ops)? {
        host.note("vfio-pci rules: nothing to change");
    }
    Ok(StepOutcome::Done)
}

/// Dry run of [`run`].
pub fn preview(host: &Host) -> Result<Vec<String>, StepError> {
    let (addrs, mut lines) = addresses(host)?;
    let current = host.read_opt(UDEV_RULES)?;
    let ops =
        plan_passthrough(&addrs, current.as_deref()).map_err(|e| StepError::new(e.to_string()))?;
    for a in &addrs {
        lines.push(format!("PCI device {a}: bound to vfio-pci for passthrough"));
    }
    lines.extend(ops_lines(&ops));
    Ok(lines)
}

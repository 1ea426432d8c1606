//! Step sriov: the SR-IOV unit enabled on cards with virtual functions.

use super::driver_plan::driver;
use super::systemd_units::{enable_now, require_unit};
use crate::agent::host::{Host, StepError, StepOutcome};

/// PCI addresses of NVIDIA GPUs that have SR-IOV virtual functions.
fn sriov_cards(host: &Host) -> Vec<String> {
    host.facts
        .gpus()
        .filter(|g| g.sriov_totalvfs.unwrap_or(0) > 0)
        .map(|g| g.address.clone())
        .collect()
}

/// Enables the SR-IOV unit when a card has virtual functions (native
/// Ampere and newer expose vGPUs only through them). The bash installer
/// ignored a failure here; a host without its VFs has no vGPUs, so it is
/// an error.
pub fn run(host: &mut Host) -> Result<StepOutcome, StepError> {
    let Some(unit) = driver(host)?.sriov_unit.as_deref() else {
        host.note("the plan has no SR-IOV unit; skipped");
        return Ok(StepOutcome::Done);
    };
    let cards = sriov_cards(host);
    if cards.is_empty() {
        host.note("no SR-IOV capable card; skipped");
        return Ok(StepOutcome::Done);
    }
    require_unit(
        host,
        unit,
        format!(
            "{unit} does not exist: it comes with the pve-nvidia-vgpu-helper package; install it and rerun"
        ),
    )?;
    let why = format!(
        "enable the SR-IOV virtual functions of {}",
        cards.join(", ")
    );
    enable_now(host, unit, &why)?;
    Ok(StepOutcome::Done)
}

/// Dry run of [`run`].
pub fn preview(host: &Host) -> Result<Vec<String>, StepError> {
    let cards = sriov_cards(host);
    Ok(vec![match driver(host)?.sriov_unit.as_deref() {
        None => "nothing: the plan has no SR-IOV unit".to_owned(),
        Some(_) if cards.is_empty() => "nothing: no SR-IOV capable card".to_owned(),
        Some(unit) => format!(
            "would run systemctl enable --now {unit}: SR-IOV virtual functions of {}",
            cards.join(", ")
        ),
    }])
}

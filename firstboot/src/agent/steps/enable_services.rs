//! Step enable-services: the driver's services enabled and started.

use super::driver_plan::driver;
use super::systemd_units::{enable_now, require_unit};
use crate::agent::host::{Host, StepError, StepOutcome};

/// Enables the driver's services. `daemon-reload` first, so systemd sees
/// the units the installer just added; then each unit must exist (a
/// non-vGPU driver ships none: seed §16 #4, "unit does not exist").
pub fn run(host: &mut Host) -> Result<StepOutcome, StepError> {
    let d = driver(host)?;
    let spec = host.command(
        "systemctl",
        &["daemon-reload"],
        "see the units the driver installer added",
    );
    host.run(spec)?;
    for unit in &d.services {
        require_unit(
            host,
            unit,
            format!(
                "{unit} does not exist: the installer did not install the vGPU manager — is this the vGPU-KVM (host) driver?"
            ),
        )?;
        enable_now(host, unit, "vGPU host service of the driver")?;
    }
    Ok(StepOutcome::Done)
}

/// Dry run of [`run`]: one line per service.
pub fn preview(host: &Host) -> Result<Vec<String>, StepError> {
    Ok(driver(host)?
        .services
        .iter()
        .map(|u| format!("would run systemctl enable --now {u} unless it is enabled and running: vGPU host service of the driver"))
        .collect())
}

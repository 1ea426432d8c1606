//! Step reboot: the barrier between the phases. Reboots only when the
//! running system lacks what phase 2 needs (see `boot_check.rs`).

use super::boot_check::{check, iommu_off_error};
use crate::agent::host::{Host, StepError, StepOutcome};

/// Reboot step: `Reboot(reason)` when the running system lacks what phase 2
/// needs (the caller records it, syncs and runs `systemctl reboot`), `Done`
/// when it already has everything or when the IOMMU is off in the firmware
/// (the host gate refuses that before a fresh run; after the reboot it is
/// verify-reboot's failure).
pub fn run(host: &mut Host) -> Result<StepOutcome, StepError> {
    let c = check(host)?;
    if c.iommu_off() {
        // No reboot turns it on: verify-reboot, next, fails with the
        // firmware advice and ends a trial boot (the default unchanged).
        return Ok(StepOutcome::Done);
    }
    let lacks = c.lacks();
    if lacks.is_empty() {
        host.note("the running system has the kernel arguments, module state and kernel phase 2 needs: no reboot");
        return Ok(StepOutcome::Done);
    }
    Ok(StepOutcome::Reboot(format!(
        "reboot needed: {}",
        lacks.join("; ")
    )))
}

/// Dry run of [`run`].
pub fn preview(host: &Host) -> Result<Vec<String>, StepError> {
    let c = check(host)?;
    if c.iommu_off() {
        return Ok(vec![format!("would stop: {}", iommu_off_error())]);
    }
    let lacks = c.lacks();
    Ok(vec![if lacks.is_empty() {
        "no reboot: the running system already has what phase 2 needs".to_owned()
    } else {
        format!("would run systemctl reboot: {}", lacks.join("; "))
    }])
}

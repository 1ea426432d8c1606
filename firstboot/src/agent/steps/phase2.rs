//! The reboot barrier and phase 2: check the reboot took effect, check the
//! payload, install the driver, enable its services, check it answers, and
//! finish.
//!
//! The bash installer ran these as "step 2" after the operator rebooted and
//! re-ran it by hand (seed §5). Here every step re-checks what it needs from
//! the host itself, so a step re-run after a crash converges instead of
//! repeating work: copies and drop-ins are written only when they differ,
//! services are enabled only when `systemctl` says they are not, and the
//! NVIDIA installer (the one step that is not cheap to repeat) installs over
//! itself.

mod barrier;
mod driver;
mod finish;
mod payload;

pub use barrier::{reboot, verify_reboot};
pub use driver::{enable_services, install_driver, post_check, sriov};
pub use finish::{finish, seal};
pub use payload::{unlock_setup, verify_payload};

use crate::agent::host::{Host, StepError};
use vgpu_plan::layout::{PAYLOAD_DIR, absolute};
use vgpu_plan::plan::{DriverPlan, PayloadFile, StepKind};

/// Dry-run lines for this phase's steps: what each would check, write, run
/// or remove, and why. Reads files (never hashes the large payload), runs
/// nothing.
pub fn preview(kind: StepKind, host: &Host) -> Result<Vec<String>, StepError> {
    use StepKind as K;
    match kind {
        K::Reboot => barrier::preview_reboot(host),
        K::VerifyReboot => barrier::preview_verify(host),
        K::VerifyPayload => payload::preview_verify(host),
        K::UnlockSetup => payload::preview_unlock(host),
        K::InstallDriver => driver::preview_install(host),
        K::EnableServices => driver::preview_services(host),
        K::Sriov => driver::preview_sriov(host),
        K::PostCheck => Ok(driver::preview_post_check()),
        K::Finish => Ok(finish::preview(host)),
        _ => Ok(vec![format!("{kind:?} is not a phase 2 step")]),
    }
}

/// The plan's driver section; phase 2's driver steps are only planned
/// with one, so its absence means a hand-edited or mismatched plan.
fn driver<'a>(host: &Host<'a>) -> Result<&'a DriverPlan, StepError> {
    host.plan.driver.as_ref().ok_or_else(|| {
        StepError::new(
            "the plan has no [driver] section but asks for a driver step: re-bake the bundle",
        )
    })
}

/// Root-relative path of a payload file, e.g.
/// `var/lib/vgpu-firstboot/payload/NVIDIA-...run`. A plan cannot hold an
/// unbaked (empty) path: `vgpu_plan` refuses it when the plan is read.
fn payload_rel(file: &PayloadFile, _what: &str) -> Result<String, StepError> {
    Ok(format!(
        "{PAYLOAD_DIR}/{}",
        file.path.trim_start_matches('/')
    ))
}

/// A root-relative path as the host sees it, for messages.
fn shown(rel: &str) -> String {
    absolute(rel.trim_start_matches('/'))
}

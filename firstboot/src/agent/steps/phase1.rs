//! (being written)
#![allow(unused_variables)]
use super::super::host::{Host, StepError, StepOutcome};
use crate::plan::StepKind;

fn todo_step(name: &str) -> Result<StepOutcome, StepError> {
    Err(StepError::new(format!("step {name} is not written yet")))
}

/// Dry-run lines for this phase's steps.
pub fn preview(kind: StepKind, host: &Host) -> Result<Vec<String>, StepError> {
    Ok(vec![format!("{kind:?}: not written yet")])
}

/// Step.
pub fn apt_repositories(host: &mut Host) -> Result<StepOutcome, StepError> {
    todo_step("apt_repositories")
}

/// Step.
pub fn apt_install(host: &mut Host) -> Result<StepOutcome, StepError> {
    todo_step("apt_install")
}

/// Step.
pub fn kernel_pin(host: &mut Host) -> Result<StepOutcome, StepError> {
    todo_step("kernel_pin")
}

/// Step.
pub fn kernel_args(host: &mut Host) -> Result<StepOutcome, StepError> {
    todo_step("kernel_args")
}

/// Step.
pub fn vfio_modules(host: &mut Host) -> Result<StepOutcome, StepError> {
    todo_step("vfio_modules")
}

/// Step.
pub fn blacklist_modules(host: &mut Host) -> Result<StepOutcome, StepError> {
    todo_step("blacklist_modules")
}

/// Step.
pub fn passthrough_rules(host: &mut Host) -> Result<StepOutcome, StepError> {
    todo_step("passthrough_rules")
}

/// Step.
pub fn initramfs(host: &mut Host) -> Result<StepOutcome, StepError> {
    todo_step("initramfs")
}

/// Step.
pub fn secure_boot(host: &mut Host) -> Result<StepOutcome, StepError> {
    todo_step("secure_boot")
}

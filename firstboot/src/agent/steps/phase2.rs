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
pub fn reboot(host: &mut Host) -> Result<StepOutcome, StepError> {
    todo_step("reboot")
}

/// Step.
pub fn verify_reboot(host: &mut Host) -> Result<StepOutcome, StepError> {
    todo_step("verify_reboot")
}

/// Step.
pub fn verify_payload(host: &mut Host) -> Result<StepOutcome, StepError> {
    todo_step("verify_payload")
}

/// Step.
pub fn unlock_setup(host: &mut Host) -> Result<StepOutcome, StepError> {
    todo_step("unlock_setup")
}

/// Step.
pub fn install_driver(host: &mut Host) -> Result<StepOutcome, StepError> {
    todo_step("install_driver")
}

/// Step.
pub fn enable_services(host: &mut Host) -> Result<StepOutcome, StepError> {
    todo_step("enable_services")
}

/// Step.
pub fn sriov(host: &mut Host) -> Result<StepOutcome, StepError> {
    todo_step("sriov")
}

/// Step.
pub fn post_check(host: &mut Host) -> Result<StepOutcome, StepError> {
    todo_step("post_check")
}

/// Step.
pub fn finish(host: &mut Host) -> Result<StepOutcome, StepError> {
    todo_step("finish")
}

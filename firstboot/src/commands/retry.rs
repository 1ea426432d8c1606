//! `vgpu-firstboot retry [STEP]`: let failed steps run again.

use std::path::Path;

use crate::agent::confine;
use crate::state::{self, RetryTarget, StateError, StateStore, Status};

/// Sets `step` (or every failed step) back to pending so the next `run`
/// runs it again. 0, or 1 when the state cannot be changed.
pub fn retry(root: &Path, step: Option<String>) -> u8 {
    // As `run`: a --root other than / is entered first.
    let root = match confine::enter(root) {
        Ok(root) => root,
        Err(e) => return super::fail(e),
    };
    match mark_for_retry(&root, step.as_deref()) {
        Ok(msg) => {
            println!("{msg}");
            0
        }
        Err(e) => super::fail(e),
    }
}

/// The retry itself; the message for the operator.
fn mark_for_retry(root: &Path, step: Option<&str>) -> Result<String, StateError> {
    let (mut store, mut st) = StateStore::open_locked(root)?;
    if matches!(st.status, Status::NotStarted) {
        return Ok(
            "nothing to retry: the plan has not started; `run` starts it from the first step"
                .to_string(),
        );
    }
    let target = match step {
        Some(s) => RetryTarget::Step(s.to_string()),
        None => RetryTarget::AllFailed,
    };
    store.apply(&mut st, state::Event::Retry(target))?;
    Ok(format!(
        "{} will run again: `systemctl start vgpu-firstboot` (or reboot)",
        step.unwrap_or("every failed step")
    ))
}

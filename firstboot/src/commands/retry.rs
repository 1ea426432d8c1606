//! `vgpu-firstboot retry [STEP]`: let failed steps run again.

use std::path::Path;

use crate::agent::confine;
use crate::agent::run::{self, RunError};
use crate::state::{self, RetryTarget, StateStore, Status};

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
            outln!("{msg}");
            0
        }
        Err(e) => super::fail(e),
    }
}

/// The retry itself; the message for the operator.
fn mark_for_retry(root: &Path, step: Option<&str>) -> Result<String, RunError> {
    let (mut store, mut st) = StateStore::open_locked(root)?;
    if let Some(step) = step {
        // The plan's steps (a bound state holds the same ids), before
        // anything about the agent's progress.
        let ids: Vec<String> = if st.steps.is_empty() {
            let (plan, _) = run::load_plan(root)?;
            plan.steps.iter().map(|s| s.kind.id().to_owned()).collect()
        } else {
            st.steps.iter().map(|s| s.id.clone()).collect()
        };
        if !ids.iter().any(|id| id == step) {
            return Err(RunError(format!(
                "the plan has no step {step:?}; its steps: {}",
                ids.join(", ")
            )));
        }
    }
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

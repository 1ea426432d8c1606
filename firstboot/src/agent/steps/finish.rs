//! Step finish, the last one: the payload deleted; then, once the state
//! file records the plan as done, the done marker written and the unit
//! disabled ([`crate::agent::seal`], called by the run loop).
//!
//! Order matters for a power cut. The payload goes first: until the state
//! says done the unit starts again and this step re-runs, so a cut cannot
//! leave hundreds of MB of installers behind. The marker and the `.wants`
//! link stop the unit from starting again, so they come only after the
//! state records the plan as done: a cut between them and the state write
//! would leave a provisioned host whose state says "in progress" for good,
//! with no run left to fix it (found by the VM power-cut test). A run that
//! finds the state done and no marker seals again.

use crate::agent::host::{Host, StepError, StepOutcome};
use crate::agent::seal::remove;
use crate::agent::shown::shown;
use vgpu_plan::layout::{DONE_MARKER, PAYLOAD_DIR, UNIT_WANTS_LINK};

/// Deletes the payload (unless the plan keeps it). Idempotent.
pub fn run(host: &mut Host) -> Result<StepOutcome, StepError> {
    if host.plan.agent.keep_payload {
        host.note(format!("{}: kept (agent.keep-payload)", shown(PAYLOAD_DIR)));
    } else {
        remove(host, PAYLOAD_DIR, "the driver is installed")?;
    }
    Ok(StepOutcome::Done)
}

/// Dry run of [`run`], and of the seal that follows it.
pub fn preview(host: &Host) -> Result<Vec<String>, StepError> {
    let payload = if host.plan.agent.keep_payload {
        format!("would keep {}: agent.keep-payload", shown(PAYLOAD_DIR))
    } else {
        format!(
            "would delete {}: the driver is installed",
            shown(PAYLOAD_DIR)
        )
    };
    Ok(vec![
        payload,
        format!(
            "would write {} (mode 0644): provisioning complete",
            shown(DONE_MARKER)
        ),
        format!(
            "would remove {}: the agent is not needed at boot any more",
            shown(UNIT_WANTS_LINK)
        ),
    ])
}

//! The last step: the payload deleted; then, once the state file records
//! the plan as done, the done marker written and the unit disabled
//! ([`seal`], called by the run loop).
//!
//! Order matters for a power cut. The payload goes first: until the state
//! says done the unit starts again and this step re-runs, so a cut cannot
//! leave hundreds of MB of installers behind. The marker and the `.wants`
//! link stop the unit from starting again, so they come only after the
//! state records the plan as done: a cut between them and the state write
//! would leave a provisioned host whose state says "in progress" for good,
//! with no run left to fix it (found by the VM power-cut test). A run that
//! finds the state done and no marker seals again.

use super::shown;
use crate::agent::host::{Host, StepError, StepOutcome};
use vgpu_plan::layout::{DONE_MARKER, PAYLOAD_DIR, UNIT_WANTS_LINK};

/// Removes `rel` (a file, link or directory tree); absent is fine.
fn remove(host: &mut Host, rel: &str, why: &str) -> Result<(), StepError> {
    host.path(rel)?;
    let removed = host
        .fs()?
        .remove_all(rel)
        .map_err(|e| StepError::new(format!("removing {}: {}", shown(rel), e.source)))?;
    if !removed {
        return Ok(());
    }
    host.note(format!("{}: removed ({why})", shown(rel)));
    Ok(())
}

fn marker(host: &Host) -> String {
    format!("{}\nprovisioned by vgpu-firstboot\n", host.plan.name)
}

/// Deletes the payload (unless the plan keeps it). Idempotent.
pub fn finish(host: &mut Host) -> Result<StepOutcome, StepError> {
    if host.plan.agent.keep_payload {
        host.note(format!("{}: kept (agent.keep-payload)", shown(PAYLOAD_DIR)));
    } else {
        remove(host, PAYLOAD_DIR, "the driver is installed")?;
    }
    Ok(StepOutcome::Done)
}

/// Writes the done marker and removes the unit's `.wants` link: the unit
/// does not start again. Only once the state file says the plan is done.
/// Idempotent.
pub fn seal(host: &mut Host) -> Result<(), StepError> {
    if host.read_opt(DONE_MARKER)?.as_deref() != Some(marker(host).as_str()) {
        host.write_atomic(DONE_MARKER, marker(host).as_bytes(), 0o644)?;
        host.note(format!(
            "{}: written (provisioning complete)",
            shown(DONE_MARKER)
        ));
    }
    remove(
        host,
        UNIT_WANTS_LINK,
        "the agent is not needed at boot any more",
    )
}

pub(super) fn preview(host: &Host) -> Vec<String> {
    let payload = if host.plan.agent.keep_payload {
        format!("would keep {}: agent.keep-payload", shown(PAYLOAD_DIR))
    } else {
        format!(
            "would delete {}: the driver is installed",
            shown(PAYLOAD_DIR)
        )
    };
    vec![
        payload,
        format!(
            "would write {} (mode 0644): provisioning complete",
            shown(DONE_MARKER)
        ),
        format!(
            "would remove {}: the agent is not needed at boot any more",
            shown(UNIT_WANTS_LINK)
        ),
    ]
}

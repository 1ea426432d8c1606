//! Sealing a completed plan: the done marker written and the unit's
//! `.wants` link removed, so the unit does not start again. The run loop
//! seals once the state file records the plan as done (see the finish
//! step for why the order matters); a run that finds the state done and no
//! marker seals again.

use crate::agent::host::{Host, StepError};
use crate::agent::shown::shown;
use vgpu_plan::layout::{DONE_MARKER, UNIT_WANTS_LINK};

/// Removes `rel` (a file, link or directory tree); absent is fine.
pub(crate) fn remove(host: &mut Host, rel: &str, why: &str) -> Result<(), StepError> {
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

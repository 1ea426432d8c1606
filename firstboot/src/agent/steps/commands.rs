//! Running a step's command with what to do when it fails.

use crate::agent::host::{Host, StepError};
use crate::runner::{CommandOutcome, CommandSpec};

/// [`Host::run`], with what to do appended to the reason of a failure.
pub(super) fn run_or(
    host: &mut Host,
    spec: CommandSpec,
    hint: &str,
) -> Result<CommandOutcome, StepError> {
    host.run(spec).map_err(|mut e| {
        e.reason.push_str("; ");
        e.reason.push_str(hint);
        e
    })
}

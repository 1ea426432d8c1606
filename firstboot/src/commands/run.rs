//! `vgpu-firstboot run`: the next phase of the plan (what systemd starts).

use std::path::Path;

use crate::agent::confine;
use crate::agent::run::{self, RunEnd};
use crate::runner::SystemRunner;

/// Runs the next phase: 0 done or rebooting, 1 a step failed (or the run
/// could not start, or a --root other than / could not be entered), 2 it
/// waits for an operator.
pub fn run(root: &Path) -> u8 {
    // Before anything else (and before any thread): commands must run
    // inside a --root other than /.
    let root = match confine::enter(root) {
        Ok(root) => root,
        Err(e) => return super::fail(e),
    };
    match run::run(&root, &mut SystemRunner::default()) {
        Ok(end) => ended(&root, "", &end),
        Err(e) => super::fail(e),
    }
}

/// Prints how a run ended (`what` before it: "" or "upgrade: ") and the
/// summary when done; the exit code. Shared with `upgrade`.
pub(super) fn ended(root: &Path, what: &str, end: &RunEnd) -> u8 {
    outln!("vgpu-firstboot: {what}{end}");
    match end {
        RunEnd::Done => {
            crate::agent::summary::print(root);
            0
        }
        RunEnd::Rebooting(_) => 0,
        RunEnd::Failed(_) => 1,
        RunEnd::NeedsOperator(_) => 2,
    }
}

//! Step blacklist-modules: nouveau (and the plan's others) kept off the
//! GPUs.

use super::file_ops::ops_lines;
use crate::agent::host::{Host, StepError, StepOutcome};
use crate::edits::{FileOp, modules};

/// Blacklists the plan's modules (nouveau) in a `modprobe.d` file we own.
/// The blacklist must also reach the initramfs, which the initramfs step
/// that always follows this one rebuilds.
pub fn run(host: &mut Host) -> Result<StepOutcome, StepError> {
    let ops = blacklist_ops(host)?;
    if !host.apply(&ops)? {
        host.note("module blacklist: already configured");
    }
    Ok(StepOutcome::Done)
}

/// Dry run of [`run`]: the file edit and each module.
pub fn preview(host: &Host) -> Result<Vec<String>, StepError> {
    let mut lines = ops_lines(&blacklist_ops(host)?);
    for m in &host.plan.host.blacklist {
        lines.push(format!(
            "module {m}: blacklisted so it leaves the NVIDIA GPUs alone"
        ));
    }
    Ok(lines)
}

fn blacklist_ops(host: &Host) -> Result<Vec<FileOp>, StepError> {
    Ok(modules::plan_blacklist(
        &host.plan.host.blacklist,
        host.read_opt(modules::BLACKLIST_CONF)?.as_deref(),
    ))
}

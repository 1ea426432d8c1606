//! Step initramfs: every installed kernel's initramfs rebuilt, so the
//! vfio modules, blacklist and udev rules apply at boot.

use super::commands::run_or;
use crate::agent::host::{Host, StepError, StepOutcome};

const INITRAMFS_WHY: &str =
    "copy the vfio modules, blacklist and udev rules into every installed kernel's initramfs";

/// `update-initramfs -u -k all`. Always runs when the step runs: the step
/// only runs again after a crash or a retry, and whether an earlier run got
/// through cannot be told from the files. Under TCG it takes minutes; the
/// plan's command timeout applies.
pub fn run(host: &mut Host) -> Result<StepOutcome, StepError> {
    let spec = host.command("update-initramfs", &["-u", "-k", "all"], INITRAMFS_WHY);
    run_or(
        host,
        spec,
        "check free space in /boot and the output above (a DKMS module that fails to build stops it)",
    )?;
    Ok(StepOutcome::Done)
}

/// Dry run of [`run`].
pub fn preview(_host: &Host) -> Result<Vec<String>, StepError> {
    Ok(vec![format!(
        "would run `update-initramfs -u -k all`: {INITRAMFS_WHY}"
    )])
}

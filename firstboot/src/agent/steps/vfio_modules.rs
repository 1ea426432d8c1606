//! Step vfio-modules: the vfio modules loaded at boot.

use super::file_ops::ops_lines;
use crate::agent::host::{Host, StepError, StepOutcome};
use crate::edits::{FileOp, modules};

/// Loads the plan's vfio modules at boot through a `modules-load.d` file we
/// own (modules `/etc/modules` already loads are left out). No command: the
/// initramfs step and the reboot make it take effect.
pub fn run(host: &mut Host) -> Result<StepOutcome, StepError> {
    let ops = vfio_ops(host)?;
    if !host.apply(&ops)? {
        host.note("vfio modules: already configured");
    }
    Ok(StepOutcome::Done)
}

/// Dry run of [`run`]: the file edit and each module.
pub fn preview(host: &Host) -> Result<Vec<String>, StepError> {
    let mut lines = ops_lines(&vfio_ops(host)?);
    for m in &host.plan.host.vfio_modules {
        lines.push(format!("module {m}: loaded at boot for vfio-pci"));
    }
    Ok(lines)
}

fn vfio_ops(host: &Host) -> Result<Vec<FileOp>, StepError> {
    Ok(modules::plan_vfio_modules(
        &host.plan.host.vfio_modules,
        host.read_opt(modules::ETC_MODULES)?.as_deref(),
        host.read_opt(modules::MODULES_LOAD_CONF)?.as_deref(),
    ))
}

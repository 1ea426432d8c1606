//! Phase 1: everything the host needs before the reboot.
//!
//! Repositories and packages ([`apt`]), the kernel pin and the IOMMU kernel
//! arguments ([`kernel`]), vfio modules and the nouveau blacklist (here),
//! vfio-pci rules for passthrough cards ([`passthrough`]), the initramfs
//! (here) and the module signing key when Secure Boot is on
//! ([`secure_boot`]).
//!
//! Every step is idempotent: file edits come from the pure functions in
//! [`crate::edits`], which plan nothing when the file is already right, and
//! commands with lasting effects run only when a read-only probe (or a
//! changed file) says they are needed. The exceptions are documented where
//! they are: `update-initramfs` always runs, and the boot loader update runs
//! again while the running kernel still lacks the arguments (a crash may have
//! come between the file write and the update).
//!
//! [`preview`] shows the same decisions without running any command.

mod apt;
mod kernel;
mod passthrough;
mod secure_boot;

use super::super::host::{Host, StepError, StepOutcome};
use crate::edits::{FileOp, apply_ops_preview, modules};
use crate::runner::{CommandOutcome, CommandSpec};
use vgpu_plan::plan::StepKind;

pub use apt::{apt_install, apt_repositories};
pub use kernel::{kernel_args, kernel_pin, version_at_least};
pub use passthrough::passthrough_rules;
pub use secure_boot::secure_boot;

/// Dry-run lines for this phase's steps: one per file, kernel argument,
/// module, repository, package or command, each with its reason. Reads
/// files only; runs no command.
pub fn preview(kind: StepKind, host: &Host) -> Result<Vec<String>, StepError> {
    use StepKind as K;
    let plan = &host.plan.host;
    match kind {
        K::AptRepositories => apt::preview_repositories(host),
        K::AptInstall => apt::preview_install(host),
        K::KernelPin => kernel::preview_pin(host),
        K::KernelArgs => kernel::preview_args(host),
        K::VfioModules => {
            let mut lines = ops_lines(&vfio_ops(host)?);
            for m in &plan.vfio_modules {
                lines.push(format!("module {m}: loaded at boot for vfio-pci"));
            }
            Ok(lines)
        }
        K::BlacklistModules => {
            let mut lines = ops_lines(&blacklist_ops(host)?);
            for m in &plan.blacklist {
                lines.push(format!(
                    "module {m}: blacklisted so it leaves the NVIDIA GPUs alone"
                ));
            }
            Ok(lines)
        }
        K::PassthroughRules => passthrough::preview(host),
        K::Initramfs => Ok(vec![format!(
            "would run `update-initramfs -u -k all`: {INITRAMFS_WHY}"
        )]),
        K::SecureBoot => secure_boot::preview(host),
        other => Ok(vec![format!("{other:?} is not a phase 1 step")]),
    }
}

const INITRAMFS_WHY: &str =
    "copy the vfio modules, blacklist and udev rules into every installed kernel's initramfs";

/// Loads the plan's vfio modules at boot through a `modules-load.d` file we
/// own (modules `/etc/modules` already loads are left out). No command: the
/// initramfs step and the reboot make it take effect.
pub fn vfio_modules(host: &mut Host) -> Result<StepOutcome, StepError> {
    let ops = vfio_ops(host)?;
    if !host.apply(&ops)? {
        host.note("vfio modules: already configured");
    }
    Ok(StepOutcome::Done)
}

/// Blacklists the plan's modules (nouveau) in a `modprobe.d` file we own.
/// The blacklist must also reach the initramfs, which the initramfs step
/// that always follows this one rebuilds.
pub fn blacklist_modules(host: &mut Host) -> Result<StepOutcome, StepError> {
    let ops = blacklist_ops(host)?;
    if !host.apply(&ops)? {
        host.note("module blacklist: already configured");
    }
    Ok(StepOutcome::Done)
}

/// `update-initramfs -u -k all`. Always runs when the step runs: the step
/// only runs again after a crash or a retry, and whether an earlier run got
/// through cannot be told from the files. Under TCG it takes minutes; the
/// plan's command timeout applies.
pub fn initramfs(host: &mut Host) -> Result<StepOutcome, StepError> {
    let spec = host.command("update-initramfs", &["-u", "-k", "all"], INITRAMFS_WHY);
    run_or(
        host,
        spec,
        "check free space in /boot and the output above (a DKMS module that fails to build stops it)",
    )?;
    Ok(StepOutcome::Done)
}

fn vfio_ops(host: &Host) -> Result<Vec<FileOp>, StepError> {
    Ok(modules::plan_vfio_modules(
        &host.plan.host.vfio_modules,
        host.read_opt(modules::ETC_MODULES)?.as_deref(),
        host.read_opt(modules::MODULES_LOAD_CONF)?.as_deref(),
    ))
}

fn blacklist_ops(host: &Host) -> Result<Vec<FileOp>, StepError> {
    Ok(modules::plan_blacklist(
        &host.plan.host.blacklist,
        host.read_opt(modules::BLACKLIST_CONF)?.as_deref(),
    ))
}

/// [`apply_ops_preview`] as lines; nothing when there is nothing to change.
fn ops_lines(ops: &[FileOp]) -> Vec<String> {
    if ops.is_empty() {
        return Vec::new();
    }
    apply_ops_preview(ops).lines().map(str::to_owned).collect()
}

/// [`Host::run`], with what to do appended to the reason of a failure.
fn run_or(host: &mut Host, spec: CommandSpec, hint: &str) -> Result<CommandOutcome, StepError> {
    host.run(spec).map_err(|mut e| {
        e.reason.push_str("; ");
        e.reason.push_str(hint);
        e
    })
}

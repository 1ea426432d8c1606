//! Step kernel-args: the IOMMU (and extra) arguments on the boot loader's
//! command line, for GRUB and for systemd-boot (seed §4.8 did GRUB only).

use super::commands::run_or;
use super::file_ops::ops_lines;
use super::iommu_args::desired_kernel_args;
use crate::agent::host::{Host, StepError, StepOutcome};
use crate::edits::kernel_cmdline::{
    self as kc, cmdline_from_proc, missing_args, plan_grub, plan_systemd_boot,
};
use crate::edits::{FileAction, FileOp};
use crate::facts::{BootloaderKind, resolve_bootloader};

/// What the kernel-args step would do.
struct ArgsPlan {
    args: Vec<String>,
    kind: BootloaderKind,
    reason: String,
    ops: Vec<FileOp>,
    /// Arguments the running kernel lacks: a reboot is still ahead.
    not_running: Vec<String>,
}

impl ArgsPlan {
    fn command(&self) -> (&'static str, &'static [&'static str]) {
        match self.kind {
            BootloaderKind::Grub => ("update-grub", &[]),
            BootloaderKind::SystemdBoot => ("proxmox-boot-tool", &["refresh"]),
        }
    }
}

fn args_plan(host: &Host) -> Result<ArgsPlan, StepError> {
    let args = desired_kernel_args(host)?;
    let choice = resolve_bootloader(host.plan.host.bootloader, host.facts);
    let running = host.facts.kernel.cmdline.join(" ");
    let ops = match choice.kind {
        BootloaderKind::Grub => plan_grub(
            &args,
            host.read_opt(kc::DEFAULT_GRUB)?.as_deref(),
            host.read_opt(kc::GRUB_DROPIN)?.as_deref(),
        ),
        BootloaderKind::SystemdBoot => {
            let current = host
                .read_opt(kc::KERNEL_CMDLINE)?
                .unwrap_or_else(|| cmdline_from_proc(&running));
            plan_systemd_boot(&args, &current)
        }
    }
    .map_err(|e| StepError::new(format!("{e}; fix the kernel arguments in the profile")))?;
    for op in &ops {
        if let FileAction::Write { content, .. } = &op.action
            && op.path == kc::KERNEL_CMDLINE
            && !content.split_whitespace().any(|t| t.starts_with("root="))
        {
            return Err(StepError::new(
                "refusing to write /etc/kernel/cmdline without root= (the host would not boot): write it by hand, e.g. `root=ZFS=rpool/ROOT/pve-1 boot=zfs`, then retry",
            ));
        }
    }
    let not_running = missing_args(&running, &args);
    Ok(ArgsPlan {
        args,
        kind: choice.kind,
        reason: choice.reason,
        ops,
        not_running,
    })
}

/// Adds the IOMMU (and extra) kernel arguments for the host's boot loader
/// and updates the boot configuration. The update also runs when the files
/// already match but the running kernel lacks the arguments: an earlier run
/// may have written the file and stopped before the update. It is skipped
/// only when nothing changed and the running kernel has every argument.
pub fn run(host: &mut Host) -> Result<StepOutcome, StepError> {
    let p = args_plan(host)?;
    host.note(format!("boot loader {}: {}", p.kind, p.reason));
    let changed = host.apply(&p.ops)?;
    if !changed && p.not_running.is_empty() {
        host.note(format!(
            "kernel arguments {} already configured and in effect",
            p.args.join(" ")
        ));
        return Ok(StepOutcome::Done);
    }
    if !changed {
        host.note(format!(
            "boot configuration already has the kernel arguments but the running kernel lacks {}: updating the boot loader again in case an earlier run stopped before it",
            p.not_running.join(" ")
        ));
    }
    let (program, args) = p.command();
    let why = format!(
        "apply kernel arguments {} at the next boot",
        p.args.join(" ")
    );
    let spec = host.command(program, args, &why);
    run_or(
        host,
        spec,
        "check /boot and the ESPs (`proxmox-boot-tool status`)",
    )?;
    Ok(StepOutcome::Done)
}

/// Dry run of [`run`].
pub fn preview(host: &Host) -> Result<Vec<String>, StepError> {
    let p = args_plan(host)?;
    let mut lines = vec![format!("boot loader {}: {}", p.kind, p.reason)];
    for a in &p.args {
        let state = if p.not_running.contains(a) {
            "would be in effect after the reboot"
        } else {
            "already in the running kernel's command line"
        };
        lines.push(format!("kernel argument {a}: {state}"));
    }
    lines.extend(ops_lines(&p.ops));
    if !p.ops.is_empty() || !p.not_running.is_empty() {
        let (program, args) = p.command();
        let shown = std::iter::once(program)
            .chain(args.iter().copied())
            .collect::<Vec<_>>();
        lines.push(format!(
            "would run `{}`: apply the kernel arguments at the next boot",
            shown.join(" ")
        ));
    }
    Ok(lines)
}

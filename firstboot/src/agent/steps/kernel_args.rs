//! Step kernel-args: the IOMMU (and extra) arguments on the boot loader's
//! command line, for GRUB and for systemd-boot (seed §4.8 did GRUB only).
//!
//! When the running kernel lacks arguments, or kernel-pin chose a kernel
//! that is not pinned yet, neither is made the default here: the step arms
//! a one-time trial boot (`boot_trial.rs`, [`crate::agent::trial`]) and
//! verify-reboot makes them the default once that boot came up. When the
//! running kernel already has them (a host that needs no reboot), the
//! default is written directly, as there is nothing to try.

use super::boot_trial::{self, default_ops};
use super::file_ops::ops_lines;
use super::iommu_args::desired_kernel_args;
use super::pinned_kernel::pin_pending;
use crate::agent::host::{Host, StepError, StepOutcome};
use crate::agent::trial::{Seen, did_not_come_up};
use crate::edits::FileOp;
use crate::edits::kernel_cmdline::missing_args;
use crate::facts::{BootloaderKind, resolve_bootloader};

/// What the kernel-args step would do.
struct ArgsPlan {
    args: Vec<String>,
    kind: BootloaderKind,
    reason: String,
    ops: Vec<FileOp>,
    /// Arguments the running kernel lacks: a reboot is still ahead.
    not_running: Vec<String>,
    /// The kernel kernel-pin chose, not pinned yet.
    pin: Option<String>,
    /// A trial is needed: arguments not running, or a kernel to pin.
    trial: bool,
}

fn args_plan(host: &Host) -> Result<ArgsPlan, StepError> {
    let args = desired_kernel_args(host)?;
    let choice = resolve_bootloader(host.plan.host.bootloader, host.facts);
    let running = host.facts.kernel.cmdline.join(" ");
    let ops = default_ops(host, choice.kind, &args)?;
    let not_running = missing_args(&running, &args);
    let pin = pin_pending(host)?;
    // A chosen kernel is never the running one (kernel-pin chooses a series
    // older than the running kernel): always new, always tried.
    let trial = !not_running.is_empty() || pin.is_some();
    Ok(ArgsPlan {
        args,
        kind: choice.kind,
        reason: choice.reason,
        ops,
        not_running,
        pin,
        trial,
    })
}

/// Arms the trial boot when the running kernel lacks arguments (again
/// after a power cut: the same entry); writes the default directly when it
/// has them all and no trial is under way.
pub fn run(host: &mut Host) -> Result<StepOutcome, StepError> {
    let p = args_plan(host)?;
    host.note(format!("boot loader {}: {}", p.kind, p.reason));
    let (trial, seen) = boot_trial::observe(host)?;
    match (seen, trial) {
        // The trial boot already ran and never came up: stop, do not arm
        // it again (that would loop through failing boots).
        (Seen::DidNotComeUp, Some(mut t)) => {
            let reason = did_not_come_up(&t);
            return Err(boot_trial::fail(host, &mut t, reason));
        }
        // This boot runs the trial, or the trial came up before a power
        // cut: verify-reboot commits it after its checks.
        (Seen::Up | Seen::CameUpEarlier, Some(_)) => {
            host.note("a trial boot is under way: verify-reboot commits it after its checks");
            return Ok(StepOutcome::Done);
        }
        _ => {}
    }
    if p.trial {
        boot_trial::arm(host, p.kind, &p.args)?;
        return Ok(StepOutcome::Done);
    }
    if !host.apply(&p.ops)? {
        host.note(format!(
            "kernel arguments {} already configured and in effect",
            p.args.join(" ")
        ));
        return Ok(StepOutcome::Done);
    }
    boot_trial::refresh(
        host,
        p.kind,
        "make the kernel arguments (already in effect) the default",
    )?;
    Ok(StepOutcome::Done)
}

/// Dry run of [`run`].
pub fn preview(host: &Host) -> Result<Vec<String>, StepError> {
    let p = args_plan(host)?;
    let mut lines = vec![format!("boot loader {}: {}", p.kind, p.reason)];
    for a in &p.args {
        let state = if p.not_running.contains(a) {
            "would be tried once at the next boot, made the default by verify-reboot once it came up"
        } else {
            "already in the running kernel's command line"
        };
        lines.push(format!("kernel argument {a}: {state}"));
    }
    if p.trial {
        lines.extend(trial_preview(host, &p));
        lines.push(format!(
            "verify-reboot would then commit: {}",
            ops_lines(&p.ops).join("; ")
        ));
        return Ok(lines);
    }
    lines.extend(ops_lines(&p.ops));
    if !p.ops.is_empty() {
        lines.push(
            match p.kind {
                BootloaderKind::Grub => "would run `update-grub`",
                BootloaderKind::SystemdBoot => "would run `proxmox-boot-tool refresh`",
            }
            .to_owned()
                + ": make the kernel arguments the default",
        );
    }
    Ok(lines)
}

/// What arming would do, read-only: GRUB's entry is worked out from
/// grub.cfg; the ESPs are not mounted by a dry run.
fn trial_preview(host: &Host, p: &ArgsPlan) -> Vec<String> {
    match p.kind {
        BootloaderKind::Grub => match boot_trial::grub_trial(host, &p.args, p.pin.as_deref()) {
            Ok((title, _, kernel)) => vec![
                format!(
                    "would write /{} (mode 0755): the trial entry \"{title}\" (kernel {kernel})",
                    crate::agent::trial::grub::SCRIPT
                ),
                "would run `update-grub`, then `grub-reboot vgpu-bake-trial`: the next boot tries it once, the default unchanged".to_owned(),
            ],
            Err(e) => vec![format!("cannot arm the trial boot: {e}")],
        },
        BootloaderKind::SystemdBoot => vec![
            "would write loader/entries/vgpu-bake-trial.conf on each ESP: the default entry (with a pin, its kernel's) and the arguments".to_owned(),
            "would run `bootctl set-oneshot vgpu-bake-trial.conf`: the next boot tries it once, /etc/kernel/cmdline unchanged".to_owned(),
        ],
    }
}

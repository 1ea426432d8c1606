//! Step verify-reboot: after the reboot, everything the reboot step looked
//! for holds, and the trial boot (`boot_trial.rs`) is settled: a trial
//! that came up and passed is committed (its arguments made the default),
//! one that did not come up or failed a check is removed and reported.
//!
//! It never loops: the only reboot it asks for is the one into a default
//! just committed for a trial that came up before a power cut, recorded in
//! the trial so a second miss is a failure (and bounded by the plan's
//! reboot cap); and after `retry` of a failed trial, one new trial boot.

use super::boot_check::{BootCheck, check, iommu_off_error};
use super::boot_trial::{self, boot_id};
use super::iommu_args::desired_kernel_args;
use super::pinned_kernel::read_pin;
use crate::agent::host::{Host, StepError, StepOutcome};
use crate::agent::trial::{Seen, TrialStatus, did_not_come_up};
use crate::facts::resolve_bootloader;

/// What is wrong with the running system besides missing arguments.
fn other_problems(c: &BootCheck) -> Vec<String> {
    let mut problems = Vec::new();
    if c.missing_args.is_empty() && c.iommu_groups == 0 {
        problems.push(iommu_off_error().reason);
    }
    if c.nouveau {
        problems.push(
            "nouveau is still loaded after reboot: the blacklist did not reach the boot; check /etc/modprobe.d/vgpu-bake-blacklist.conf and rerun update-initramfs -u -k all"
                .to_owned(),
        );
    }
    if let Some((pinned, running)) = &c.wrong_kernel {
        problems.push(format!(
            "kernel {pinned} is pinned but {running} is running after reboot; check `proxmox-boot-tool kernel list` and that {pinned} is installed"
        ));
    }
    problems
}

/// After the reboot: every check of the reboot step must hold now, and
/// the trial is committed or ended. Each failure says which part of the
/// boot chain did not pick up phase 1's change.
pub fn run(host: &mut Host) -> Result<StepOutcome, StepError> {
    let c = check(host)?;
    let (trial, seen) = boot_trial::observe(host)?;
    let mut problems = other_problems(&c);
    // This boot does not run the trial's arguments or the kernel to pin.
    if !c.missing_args.is_empty() || c.wrong_kernel.is_some() {
        match (seen, trial.clone()) {
            (Seen::DidNotComeUp, Some(mut t)) => {
                let reason = did_not_come_up(&t);
                return Err(boot_trial::fail(host, &mut t, reason));
            }
            // Proven bootable before a power cut: finish the commit and
            // boot into the new default once.
            (Seen::CameUpEarlier, Some(mut t)) => {
                boot_trial::commit(host, &mut t)?;
                t.commit_reboot_boot = Some(boot_id(host)?);
                boot_trial::save(host, &t)?;
                return Ok(StepOutcome::Reboot(
                    "the trial boot came up before a power cut, now the default: rebooting into it once".to_owned(),
                ));
            }
            // The reboot into the committed default was asked for in this
            // boot and has not happened yet.
            (Seen::Over, Some(t))
                if t.status == TrialStatus::Committed
                    && t.commit_reboot_boot.as_deref() == Some(boot_id(host)?.as_str()) =>
            {
                return Ok(StepOutcome::Reboot(
                    "rebooting into the committed trial".to_owned(),
                ));
            }
            // `retry` after a failed trial: one new trial boot.
            (Seen::Over, Some(t)) if t.status == TrialStatus::Failed => {
                let kind = resolve_bootloader(host.plan.host.bootloader, host.facts).kind;
                boot_trial::arm(host, kind, &desired_kernel_args(host)?)?;
                return Ok(StepOutcome::Reboot(
                    "retry of the failed trial boot: trying it once more".to_owned(),
                ));
            }
            _ if !c.missing_args.is_empty() => problems.insert(
                0,
                format!(
                    "kernel arguments {} missing from /proc/cmdline after reboot: the boot loader did not pick up the change; check update-grub / proxmox-boot-tool refresh",
                    c.missing_args.join(" ")
                ),
            ),
            _ => {}
        }
    }
    if !problems.is_empty() {
        let mut reason = problems.join("; ");
        if let Some(mut t) = trial.filter(|t| t.active()) {
            reason.push_str(
                "; the trial boot was not made the default (the default entry is unchanged, no pin), its entry removed: fix the cause, then `vgpu-firstboot retry` tries it once more",
            );
            return Err(boot_trial::fail(host, &mut t, reason));
        }
        return Err(StepError::new(reason));
    }
    // This boot runs the arguments and passed: commit (also a trial that
    // failed another check earlier in this boot, retried once fixed).
    if let Some(mut t) = trial.filter(|t| t.status != TrialStatus::Committed) {
        boot_trial::commit(host, &mut t)?;
    }
    host.note(format!(
        "reboot took effect: kernel arguments on /proc/cmdline, {} IOMMU groups, nouveau not loaded",
        c.iommu_groups
    ));
    Ok(StepOutcome::Done)
}

/// Dry run of [`run`].
pub fn preview(host: &Host) -> Result<Vec<String>, StepError> {
    let mut lines = vec![
        format!(
            "would check /proc/cmdline has {}: the boot loader applied the kernel arguments",
            desired_kernel_args(host)?.join(" ")
        ),
        "would check /sys/kernel/iommu_groups is not empty: the IOMMU is on".to_owned(),
        "would check /sys/module/nouveau is absent: nouveau stayed off the GPUs".to_owned(),
    ];
    if let Some(pinned) = read_pin(host)? {
        lines.push(format!(
            "would check the running kernel is the pinned {pinned}"
        ));
    }
    lines.push(
        "would commit a trial boot that passed these checks (arguments the default, `proxmox-boot-tool kernel pin`); one that did not come up: reported, removed".to_owned(),
    );
    Ok(lines)
}

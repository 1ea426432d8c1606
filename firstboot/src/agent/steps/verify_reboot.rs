//! Step verify-reboot: after the reboot, everything the reboot step looked
//! for holds. Never asks for another reboot: a second reboot would not fix
//! a boot loader that ignored our change, it would only loop.

use super::boot_check::{check, iommu_off_error};
use super::iommu_args::desired_kernel_args;
use super::pinned_kernel::PIN_FILE;
use crate::agent::host::{Host, StepError, StepOutcome};

/// After the reboot: every check of the reboot step must hold now. Each
/// failure says which part of the boot chain did not pick up phase 1's
/// change.
pub fn run(host: &mut Host) -> Result<StepOutcome, StepError> {
    let c = check(host)?;
    let mut problems = Vec::new();
    if !c.missing_args.is_empty() {
        problems.push(format!(
            "kernel arguments {} missing from /proc/cmdline after reboot: the boot loader did not pick up the change; check update-grub / proxmox-boot-tool refresh",
            c.missing_args.join(" ")
        ));
    } else if c.iommu_groups == 0 {
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
            "kernel {pinned} is pinned but {running} is running after reboot: the pinned kernel did not boot; check proxmox-boot-tool kernel list and that {pinned} is installed"
        ));
    }
    if !problems.is_empty() {
        return Err(StepError::new(problems.join("; ")));
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
    if let Some(pinned) = host.read_opt(PIN_FILE)? {
        lines.push(format!(
            "would check the running kernel is the pinned {}",
            pinned.trim()
        ));
    }
    Ok(lines)
}

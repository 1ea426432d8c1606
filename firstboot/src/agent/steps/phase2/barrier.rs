//! The reboot barrier between the phases, and the check after it.
//!
//! Phase 2 needs the IOMMU on (kernel arguments on the running command
//! line), nouveau gone (the NVIDIA installer refuses to run next to it) and,
//! when a kernel is pinned, that kernel running (DKMS builds the driver for
//! the running kernel). [`reboot`] reboots only when one of these is missing
//! now; [`verify_reboot`] checks after the reboot that all of them hold and
//! never asks for another reboot: a second reboot would not fix a boot
//! loader that ignored our change, it would only loop.

use crate::agent::host::{Host, StepError, StepOutcome};
use crate::agent::steps::desired_kernel_args;
use crate::edits::kernel_cmdline::missing_args;

/// `proxmox-boot-tool kernel pin` records the pinned kernel here; the boot
/// loader boots it from the next boot on.
pub const KERNEL_PIN_FILE: &str = "etc/kernel/proxmox-boot-pin";

/// How the running system compares with what phase 2 needs.
struct BootCheck {
    /// Planned kernel arguments not in effect on `/proc/cmdline`.
    missing_args: Vec<String>,
    /// Entries of `/sys/kernel/iommu_groups`.
    iommu_groups: u32,
    /// `/sys/module/nouveau` exists.
    nouveau: bool,
    /// `(pinned, running)` when a kernel is pinned and another one runs.
    wrong_kernel: Option<(String, String)>,
}

impl BootCheck {
    /// The IOMMU arguments are in effect and still there are no groups:
    /// the firmware has it off, and no reboot changes that.
    fn iommu_off(&self) -> bool {
        self.missing_args.is_empty() && self.iommu_groups == 0
    }

    /// What a reboot would fix, one phrase each.
    fn lacks(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.missing_args.is_empty() {
            out.push(format!(
                "kernel arguments {} not on /proc/cmdline",
                self.missing_args.join(" ")
            ));
        }
        if self.nouveau {
            out.push("nouveau is loaded".to_owned());
        }
        if let Some((pinned, running)) = &self.wrong_kernel {
            out.push(format!(
                "pinned kernel {pinned} is not running (running {running})"
            ));
        }
        out
    }
}

fn check(host: &Host) -> Result<BootCheck, StepError> {
    let cmdline = host.read_opt("proc/cmdline")?.ok_or_else(|| {
        StepError::new("/proc/cmdline is missing: is /proc mounted under the root?")
    })?;
    let running = host.facts.kernel.release.clone().unwrap_or_default();
    let pinned = host
        .read_opt(KERNEL_PIN_FILE)?
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    Ok(BootCheck {
        missing_args: missing_args(&cmdline, &desired_kernel_args(host)?),
        iommu_groups: host.facts.iommu.group_count,
        nouveau: host.facts.modules.nouveau,
        wrong_kernel: pinned.filter(|p| *p != running).map(|p| (p, running)),
    })
}

fn iommu_off_error() -> StepError {
    StepError::new(
        "IOMMU is off: enable VT-d / AMD-Vi (SVM + IOMMU) in the firmware setup \
         (the kernel arguments are on /proc/cmdline but /sys/kernel/iommu_groups is empty, \
         so a reboot will not help); then reboot and the agent resumes",
    )
}

/// Reboot step: `Reboot(reason)` when the running system lacks what phase 2
/// needs (the caller records it, syncs and runs `systemctl reboot`), `Done`
/// when it already has everything, an error when the IOMMU is off in the
/// firmware.
pub fn reboot(host: &mut Host) -> Result<StepOutcome, StepError> {
    let c = check(host)?;
    if c.iommu_off() {
        return Err(iommu_off_error());
    }
    let lacks = c.lacks();
    if lacks.is_empty() {
        host.note("the running system has the kernel arguments, module state and kernel phase 2 needs: no reboot");
        return Ok(StepOutcome::Done);
    }
    Ok(StepOutcome::Reboot(format!(
        "reboot needed: {}",
        lacks.join("; ")
    )))
}

/// After the reboot: every check of [`reboot`] must hold now. Each failure
/// says which part of the boot chain did not pick up phase 1's change.
pub fn verify_reboot(host: &mut Host) -> Result<StepOutcome, StepError> {
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

pub(super) fn preview_reboot(host: &Host) -> Result<Vec<String>, StepError> {
    let c = check(host)?;
    if c.iommu_off() {
        return Ok(vec![format!("would stop: {}", iommu_off_error())]);
    }
    let lacks = c.lacks();
    Ok(vec![if lacks.is_empty() {
        "no reboot: the running system already has what phase 2 needs".to_owned()
    } else {
        format!("would run systemctl reboot: {}", lacks.join("; "))
    }])
}

pub(super) fn preview_verify(host: &Host) -> Result<Vec<String>, StepError> {
    let mut lines = vec![
        format!(
            "would check /proc/cmdline has {}: the boot loader applied the kernel arguments",
            desired_kernel_args(host)?.join(" ")
        ),
        "would check /sys/kernel/iommu_groups is not empty: the IOMMU is on".to_owned(),
        "would check /sys/module/nouveau is absent: nouveau stayed off the GPUs".to_owned(),
    ];
    if let Some(pinned) = host.read_opt(KERNEL_PIN_FILE)? {
        lines.push(format!(
            "would check the running kernel is the pinned {}",
            pinned.trim()
        ));
    }
    Ok(lines)
}

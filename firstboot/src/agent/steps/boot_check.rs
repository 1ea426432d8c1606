//! What the reboot barrier between the phases checks, for the reboot and
//! verify-reboot steps.
//!
//! Phase 2 needs the IOMMU on (kernel arguments on the running command
//! line), nouveau gone (the NVIDIA installer refuses to run next to it) and,
//! when a kernel is pinned, that kernel running (DKMS builds the driver for
//! the running kernel). The reboot step reboots only when one of these is
//! missing now; verify-reboot checks after the reboot that all of them hold
//! and never asks for another reboot: a second reboot would not fix a boot
//! loader that ignored our change, it would only loop.

use super::iommu_args::desired_kernel_args;
use super::pinned_kernel::read_pin;
use crate::agent::host::{Host, StepError};
use crate::edits::kernel_cmdline::missing_args;

/// How the running system compares with what phase 2 needs.
pub(super) struct BootCheck {
    /// Planned kernel arguments not in effect on `/proc/cmdline`.
    pub(super) missing_args: Vec<String>,
    /// Entries of `/sys/kernel/iommu_groups`.
    pub(super) iommu_groups: u32,
    /// `/sys/module/nouveau` exists.
    pub(super) nouveau: bool,
    /// `(pinned, running)` when a kernel is pinned and another one runs.
    pub(super) wrong_kernel: Option<(String, String)>,
}

impl BootCheck {
    /// The IOMMU arguments are in effect and still there are no groups:
    /// the firmware has it off, and no reboot changes that.
    pub(super) fn iommu_off(&self) -> bool {
        self.missing_args.is_empty() && self.iommu_groups == 0
    }

    /// What a reboot would fix, one phrase each.
    pub(super) fn lacks(&self) -> Vec<String> {
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

/// How the running system compares with what phase 2 needs, now.
pub(super) fn check(host: &Host) -> Result<BootCheck, StepError> {
    let cmdline = host.read_opt("proc/cmdline")?.ok_or_else(|| {
        StepError::new("/proc/cmdline is missing: is /proc mounted under the root?")
    })?;
    let running = host.facts.kernel.release.clone().unwrap_or_default();
    let pinned = read_pin(host)?;
    Ok(BootCheck {
        missing_args: missing_args(&cmdline, &desired_kernel_args(host)?),
        iommu_groups: host.facts.iommu.group_count,
        nouveau: host.facts.modules.nouveau,
        wrong_kernel: pinned.filter(|p| *p != running).map(|p| (p, running)),
    })
}

/// The step fails with this (the state says `failed`): at the next boot the
/// agent only reports it, so the advice ends with `retry`, which is what
/// lets it run again once the firmware is fixed.
pub(super) fn iommu_off_error() -> StepError {
    StepError::new(
        "IOMMU is off: enable VT-d / AMD-Vi (SVM + IOMMU) in the firmware setup \
         (the kernel arguments are on /proc/cmdline, /sys/kernel/iommu_groups is empty: \
         a reboot alone will not help), boot, then run `vgpu-firstboot retry`",
    )
}

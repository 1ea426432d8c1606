//! The kernel arguments a host needs: a decision over the plan and the
//! host's facts, used by the kernel-args step and the reboot checks.

use crate::agent::host::{Host, StepError};

/// The kernel arguments this host needs: the IOMMU arguments for its CPU
/// vendor (the plan's, or `/proc/cpuinfo`'s when the plan says `auto`)
/// plus the profile's extra arguments.
pub(crate) fn desired_kernel_args(host: &Host) -> Result<Vec<String>, StepError> {
    let vendor = crate::facts::resolve_iommu(host.plan.host.iommu, host.facts)
        .map_err(|e| StepError::new(e.to_string()))?;
    let mut args: Vec<String> = vendor
        .iommu_kernel_args()
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
    for a in &host.plan.host.kernel_args_extra {
        if !args.contains(a) {
            args.push(a.clone());
        }
    }
    Ok(args)
}

//! What each plan step does on the host.
//!
//! Every step is idempotent: run twice (after a crash, say) it converges to
//! the same host state without applying anything twice. Phase 1 steps are in
//! [`phase1`], the reboot decision and phase 2 in [`phase2`].

pub mod phase1;
pub mod phase2;

use super::host::{Host, StepError, StepOutcome};
use vgpu_plan::plan::{Step, StepKind};

/// Runs one step.
pub fn execute(step: &Step, host: &mut Host) -> Result<StepOutcome, StepError> {
    use StepKind as K;
    match step.kind {
        K::AptRepositories => phase1::apt_repositories(host),
        K::AptInstall => phase1::apt_install(host),
        K::KernelPin => phase1::kernel_pin(host),
        K::KernelArgs => phase1::kernel_args(host),
        K::VfioModules => phase1::vfio_modules(host),
        K::BlacklistModules => phase1::blacklist_modules(host),
        K::PassthroughRules => phase1::passthrough_rules(host),
        K::Initramfs => phase1::initramfs(host),
        K::SecureBoot => phase1::secure_boot(host),
        K::Reboot => phase2::reboot(host),
        K::VerifyReboot => phase2::verify_reboot(host),
        K::VerifyPayload => phase2::verify_payload(host),
        K::UnlockSetup => phase2::unlock_setup(host),
        K::InstallDriver => phase2::install_driver(host),
        K::EnableServices => phase2::enable_services(host),
        K::Sriov => phase2::sriov(host),
        K::PostCheck => phase2::post_check(host),
        K::Finish => phase2::finish(host),
    }
}

/// What a step would change on this host, and why, for the dry run
/// (`vgpu-firstboot plan`): one line per file, kernel argument, module,
/// repository, package, service or command. Reads only.
pub fn preview(step: &Step, host: &Host) -> Vec<String> {
    use StepKind as K;
    let lines = match step.kind {
        K::AptRepositories
        | K::AptInstall
        | K::KernelPin
        | K::KernelArgs
        | K::VfioModules
        | K::BlacklistModules
        | K::PassthroughRules
        | K::Initramfs
        | K::SecureBoot => phase1::preview(step.kind, host),
        _ => phase2::preview(step.kind, host),
    };
    match lines {
        Ok(l) => l,
        Err(e) => vec![format!("cannot tell yet: {e}")],
    }
}

/// The kernel arguments this host needs: the IOMMU arguments for its CPU
/// vendor (the plan's, or `/proc/cpuinfo`'s when the plan says `auto`)
/// plus the profile's extra arguments.
pub fn desired_kernel_args(host: &Host) -> Result<Vec<String>, StepError> {
    let vendor = crate::facts::resolve_iommu(host.plan.host.iommu, host.facts)
        .map_err(|e| StepError::new(e.to_string()))?;
    let mut args: Vec<String> = vendor.kernel_args(&host.plan.host).to_vec();
    for a in &host.plan.host.kernel_args_extra {
        if !args.contains(a) {
            args.push(a.clone());
        }
    }
    Ok(args)
}

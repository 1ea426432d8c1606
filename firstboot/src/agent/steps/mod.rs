//! What each plan step does on the host: one file per [`StepKind`], each
//! with `run` and `preview`, and [`step_impl`], the one table from a kind to
//! its file.
//!
//! Every step is idempotent: run twice (after a crash, say) it converges to
//! the same host state without applying anything twice. File edits come
//! from the pure functions in [`crate::edits`], which plan nothing when the
//! file is already right, and commands with lasting effects run only when a
//! read-only probe (or a changed file) says they are needed. The exceptions
//! are documented where they are: `update-initramfs` always runs, the trial
//! boot of new kernel arguments is armed again (the same entry, the boot
//! loader update and the one-shot) while the running kernel still lacks
//! them (a crash may have come between the entry and the one-shot), and
//! the NVIDIA installer installs over itself.
//!
//! `preview` shows the same decisions for the dry run (`vgpu-firstboot
//! plan`): one line per file, kernel argument, module, repository, package,
//! service or command, each with its reason. It reads files only (never
//! hashes the large payload) and runs no command.
//!
//! Adding a step: a [`StepKind`] variant (in `vgpu-plan`), a file here with
//! `run` and `preview`, a row in [`step_impl`], the builder's step list,
//! and the re-blessed goldens.

pub mod apt_install;
pub mod apt_repositories;
pub mod blacklist_modules;
pub mod enable_services;
pub mod finish;
pub mod initramfs;
pub mod install_driver;
pub mod kernel_args;
pub mod kernel_pin;
pub mod licensing;
pub mod passthrough_rules;
pub mod post_check;
pub mod reboot;
pub mod secure_boot;
pub mod sriov;
pub mod unlock_setup;
pub mod verify_payload;
pub mod verify_reboot;
pub mod vfio_modules;

// Helpers more than one step needs.
mod boot_check;
mod boot_trial;
mod commands;
pub mod dls_check;
mod dpkg;
mod driver_plan;
mod fastapi_dls;
mod file_ops;
mod guest_scripts;
mod iommu_args;
mod openssl_files;
mod payload_paths;
mod pinned_kernel;
mod signing_key;
mod systemd_units;

pub(crate) use boot_trial::{observe as observe_trial, undo as undo_trial};
pub(crate) use dpkg::installed_version;
pub(crate) use iommu_args::desired_kernel_args;

use super::host::{Host, StepError, StepOutcome};
use vgpu_plan::plan::{Step, StepKind};

/// One kind of step: what it does, and what it would do.
#[derive(Debug, Clone, Copy)]
pub struct StepImpl {
    /// Applies the step (idempotent).
    pub run: fn(&mut Host) -> Result<StepOutcome, StepError>,
    /// The dry run's lines. Reads only.
    pub preview: fn(&Host) -> Result<Vec<String>, StepError>,
}

/// The table of steps: the one place a [`StepKind`] is matched to its code.
pub fn step_impl(kind: StepKind) -> StepImpl {
    macro_rules! row {
        ($file:ident) => {
            StepImpl {
                run: $file::run,
                preview: $file::preview,
            }
        };
    }
    use StepKind as K;
    match kind {
        K::AptRepositories => row!(apt_repositories),
        K::KernelPin => row!(kernel_pin),
        K::AptInstall => row!(apt_install),
        K::KernelArgs => row!(kernel_args),
        K::VfioModules => row!(vfio_modules),
        K::BlacklistModules => row!(blacklist_modules),
        K::PassthroughRules => row!(passthrough_rules),
        K::Initramfs => row!(initramfs),
        K::SecureBoot => row!(secure_boot),
        K::Reboot => row!(reboot),
        K::VerifyReboot => row!(verify_reboot),
        K::VerifyPayload => row!(verify_payload),
        K::UnlockSetup => row!(unlock_setup),
        K::InstallDriver => row!(install_driver),
        K::EnableServices => row!(enable_services),
        K::Sriov => row!(sriov),
        K::Licensing => row!(licensing),
        K::PostCheck => row!(post_check),
        K::Finish => row!(finish),
    }
}

/// Runs one step.
pub fn execute(step: &Step, host: &mut Host) -> Result<StepOutcome, StepError> {
    (step_impl(step.kind).run)(host)
}

/// What a step would change on this host, and why, for the dry run; what
/// cannot be told before earlier steps ran says so.
pub fn preview(step: &Step, host: &Host) -> Vec<String> {
    match (step_impl(step.kind).preview)(host) {
        Ok(l) => l,
        Err(e) => vec![format!("cannot tell yet: {e}")],
    }
}

//! The ordered step list.

use vgpu_plan::plan::{GpuRole, GpuRule, HostPlan, LicensingMode, Mode, Phase, Step, StepKind};

use super::licensing::ResolvedLicensing;
use super::sources::{DebSource, ResolvedDriver};

pub(super) fn steps(
    mode: Mode,
    host: &HostPlan<DebSource>,
    gpus: &[GpuRule],
    driver: Option<&ResolvedDriver>,
    licensing: &ResolvedLicensing,
) -> Vec<Step> {
    let mut out = Vec::new();
    let mut add = |phase: Phase, kind: StepKind, why: String| {
        out.push(Step { phase, kind, why });
    };
    use Phase::{One, Reboot, Two};
    // Every mode, like the bash installer: a host left on the enterprise
    // repositories without a subscription fails every later `apt` run.
    add(
        One,
        StepKind::AptRepositories,
        "disable the enterprise repositories (they need a subscription) and enable pve-no-subscription".into(),
    );
    // Before apt-install: `{kernel}` (the headers) is the pinned kernel,
    // the one the driver is built for after the reboot.
    if let Some(pin) = &host.kernel_pin {
        add(
            One,
            StepKind::KernelPin,
            format!(
                "pin kernel {} when the running kernel is {} or newer: {}",
                pin.series, pin.when_running_at_least, pin.reason
            ),
        );
    }
    if !host.packages.is_empty() || !host.offline_debs.is_empty() {
        add(One, StepKind::AptInstall, {
            let mut what: Vec<String> = host.packages.clone();
            what.extend(
                host.offline_debs
                    .iter()
                    .map(|d| format!("{} (offline, from the bundle)", d.path)),
            );
            format!("install {}", what.join(", "))
        });
    }
    add(One, StepKind::KernelArgs, "turn the IOMMU on (intel_iommu/amd_iommu=on iommu=pt) in the boot loader's kernel command line".into());
    add(
        One,
        StepKind::VfioModules,
        format!("load {} at boot", host.vfio_modules.join(", ")),
    );
    add(
        One,
        StepKind::BlacklistModules,
        format!("keep {} from claiming the GPUs", host.blacklist.join(", ")),
    );
    let passthrough = gpus.iter().any(|g| g.role == GpuRole::Passthrough);
    if mode == Mode::Passthrough || passthrough {
        let which = if mode == Mode::Passthrough {
            "every NVIDIA GPU".to_string()
        } else {
            let ids: Vec<&str> = gpus
                .iter()
                .filter(|g| g.role == GpuRole::Passthrough)
                .map(|g| g.id.as_str())
                .collect();
            ids.join(", ")
        };
        add(
            One,
            StepKind::PassthroughRules,
            format!("bind {which} and every device in its IOMMU group to vfio-pci"),
        );
    }
    add(
        One,
        StepKind::Initramfs,
        "rebuild the initramfs so the modules and blacklist apply at boot".into(),
    );
    if driver.is_some() {
        add(
            One,
            StepKind::SecureBoot,
            "when Secure Boot is on: make a module signing key on the host and queue its MOK enrolment".into(),
        );
    }
    add(
        Reboot,
        StepKind::Reboot,
        "reboot only if the running system lacks the kernel arguments, module state or kernel phase 2 needs".into(),
    );
    add(Two, StepKind::VerifyReboot, "check the reboot took effect: kernel arguments, IOMMU groups, nouveau unloaded, pinned kernel".into());
    if let Some(d) = driver {
        add(
            Two,
            StepKind::VerifyPayload,
            "check every payload file against the manifest before using it".into(),
        );
        if mode == Mode::Unlock {
            add(
                Two,
                StepKind::UnlockSetup,
                "install the unlock library, the service drop-ins that preload it and profile_override.toml".into(),
            );
        }
        add(
            Two,
            StepKind::InstallDriver,
            format!(
                "run the vGPU {} installer ({}) with {}",
                d.release,
                d.version,
                d.install_args.join(" ")
            ),
        );
        add(
            Two,
            StepKind::EnableServices,
            format!("enable {}", d.services.join(", ")),
        );
        if let Some(unit) = &d.sriov_unit {
            add(
                Two,
                StepKind::Sriov,
                format!(
                    "enable {unit} on cards that have SR-IOV virtual functions (Ampere and newer); without it, NVIDIA's sriov-manage -e ALL at every boot"
                ),
            );
        }
        let port = licensing.port.unwrap_or(0);
        match licensing.mode {
            LicensingMode::None => {}
            LicensingMode::External => add(
                Two,
                StepKind::Licensing,
                format!(
                    "place the DLS client token (0600), check the DLS answers at {}:{port}, write the Linux and Windows guest scripts",
                    licensing.server.as_deref().unwrap_or("?")
                ),
            ),
            LicensingMode::FastapiDls => add(
                Two,
                StepKind::Licensing,
                format!(
                    "load the FastAPI-DLS image into podman, make its TLS and instance keys on the host, start it with a systemd unit on port {port}, wait for /-/health, fetch the client token, write the guest scripts"
                ),
            ),
        }
        add(
            Two,
            StepKind::PostCheck,
            if licensing.applied {
                "`nvidia-smi vgpu` answers, `mdevctl types` lists vGPU types, and the licensing server answers".into()
            } else {
                "`nvidia-smi vgpu` answers and `mdevctl types` lists vGPU types".into()
            },
        );
    }
    add(
        Two,
        StepKind::Finish,
        "write the done marker, disable the unit and delete the payload".into(),
    );
    out
}

//! Step sriov: the SR-IOV virtual functions enabled on cards that have
//! them, through Proxmox's unit or, without it, NVIDIA's `sriov-manage`.

use super::driver_plan::driver;
use super::systemd_units::{enable_now, require_unit};
use crate::agent::host::{Host, StepError, StepOutcome};

/// NVIDIA's tool, installed with the vGPU host driver.
pub const SRIOV_MANAGE: &str = "/usr/lib/nvidia/sriov-manage";

/// The unit the agent writes when Proxmox's `pve-nvidia-vgpu-helper`
/// (Proxmox VE 8.3 and newer) is not installed.
pub const FALLBACK_UNIT: &str = "vgpu-bake-sriov.service";
const FALLBACK_PATH: &str = "etc/systemd/system/vgpu-bake-sriov.service";

/// What `pve-nvidia-sriov@ALL.service` does: `sriov-manage -e ALL` at every
/// boot, before the vGPU services and the guests start.
const FALLBACK_TEXT: &str = "[Unit]\nDescription=NVIDIA SR-IOV virtual functions (vgpu-bake)\nBefore=nvidia-vgpud.service nvidia-vgpu-mgr.service pve-guests.service\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/usr/lib/nvidia/sriov-manage -e ALL\n\n[Install]\nWantedBy=multi-user.target\n";

/// PCI addresses of NVIDIA GPUs that have SR-IOV virtual functions.
fn sriov_cards(host: &Host) -> Vec<String> {
    host.facts
        .gpus()
        .filter(|g| g.sriov_totalvfs.unwrap_or(0) > 0)
        .map(|g| g.address.clone())
        .collect()
}

/// Enables the SR-IOV virtual functions when a card has them (native
/// Ampere and newer expose vGPUs only through them): the plan's unit when
/// systemd knows it, else a unit of ours that runs NVIDIA's
/// `sriov-manage -e ALL`. The bash installer ignored a failure here; a
/// host without its VFs has no vGPUs, so it is an error.
pub fn run(host: &mut Host) -> Result<StepOutcome, StepError> {
    let Some(unit) = driver(host)?.sriov_unit.clone() else {
        host.note("the plan has no SR-IOV unit; skipped");
        return Ok(StepOutcome::Done);
    };
    let cards = sriov_cards(host);
    if cards.is_empty() {
        host.note("no SR-IOV capable card; skipped");
        return Ok(StepOutcome::Done);
    }
    let why = format!(
        "enable the SR-IOV virtual functions of {}",
        cards.join(", ")
    );
    if require_unit(host, &unit, String::new()).is_ok() {
        enable_now(host, &unit, &why)?;
        return Ok(StepOutcome::Done);
    }
    let tool = SRIOV_MANAGE.trim_start_matches('/');
    if !host.exists(tool) {
        return Err(StepError::new(format!(
            "neither {unit} (pve-nvidia-vgpu-helper, Proxmox VE 8.3+) nor {SRIOV_MANAGE} (the vGPU host driver) is installed: install one, then `vgpu-firstboot retry`"
        )));
    }
    host.note(format!(
        "{unit} does not exist (no pve-nvidia-vgpu-helper): using {SRIOV_MANAGE} through {FALLBACK_UNIT}"
    ));
    if host.read_opt(FALLBACK_PATH)?.as_deref() != Some(FALLBACK_TEXT) {
        host.write_atomic(FALLBACK_PATH, FALLBACK_TEXT.as_bytes(), 0o644)?;
        let spec = host.command("systemctl", &["daemon-reload"], "load the SR-IOV unit");
        host.run(spec)?;
    }
    enable_now(host, FALLBACK_UNIT, &why)?;
    Ok(StepOutcome::Done)
}

/// Dry run of [`run`].
pub fn preview(host: &Host) -> Result<Vec<String>, StepError> {
    let cards = sriov_cards(host);
    Ok(vec![match driver(host)?.sriov_unit.as_deref() {
        None => "nothing: the plan has no SR-IOV unit".to_owned(),
        Some(_) if cards.is_empty() => "nothing: no SR-IOV capable card".to_owned(),
        Some(unit) => format!(
            "would run systemctl enable --now {unit} (without it: {FALLBACK_UNIT}, running {SRIOV_MANAGE} -e ALL): SR-IOV virtual functions of {}",
            cards.join(", ")
        ),
    }])
}

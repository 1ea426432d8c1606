//! `vgpu-firstboot licensing`: where the licensing step put the client
//! token and the guest scripts, the DLS's URL, and how a guest uses them.
//! Reads files only.

use std::path::Path;

use serde::Serialize;

use crate::agent::run;
use crate::agent::steps::dls_check::address_of;
use vgpu_plan::layout::absolute;
use vgpu_plan::plan::{LicensingMode, licensing_paths as lp};

/// `licensing --json` (docs/JSON.md): the same facts as the text.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
struct Doc {
    schema: u32,
    /// `none`, `external` or `fastapi-dls`.
    mode: LicensingMode,
    /// The DLS guests lease from; none without licensing.
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_days: Option<u32>,
    /// FastAPI-DLS only: its unit, container and key directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    unit: Option<Made>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cert_dir: Option<Made>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<Made>,
    #[serde(skip_serializing_if = "Option::is_none")]
    guest_linux: Option<Made>,
    #[serde(skip_serializing_if = "Option::is_none")]
    guest_windows: Option<Made>,
}

/// A file the licensing step makes, and whether it is there yet.
#[derive(Debug, Serialize)]
struct Made {
    path: String,
    present: bool,
}

/// Prints the plan's licensing and what the step left (as JSON with
/// `json`); 0, or 1 when there is no plan.
pub fn licensing(root: &Path, json: bool) -> u8 {
    let (plan, _, _) = match run::read_plan(root) {
        Ok(p) => p,
        Err(e) => return super::fail(e),
    };
    let fs = vgpu_rootfs::Root::at(root).ok();
    let read = |rel: &str| {
        fs.as_ref()
            .and_then(|r| r.read_to_string(rel).ok().flatten())
            .unwrap_or_default()
    };
    let state = |rel: &str| {
        if fs.as_ref().is_some_and(|r| r.exists(rel)) {
            ""
        } else {
            " (not there yet: the licensing step makes it)"
        }
    };
    let l = &plan.licensing;
    let lease = l.lease_days.unwrap_or(90);
    let address = || {
        l.server
            .clone()
            .or_else(|| address_of(&read("etc/hosts"), read("etc/hostname").trim()))
            .unwrap_or_else(|| "<this host's address>".into())
    };
    if json {
        let made = |rel: &str| {
            Some(Made {
                path: absolute(rel),
                present: state(rel).is_empty(),
            })
        };
        let on = l.mode != LicensingMode::None;
        let fastapi = l.mode == LicensingMode::FastapiDls;
        let doc = Doc {
            schema: 1,
            mode: l.mode,
            url: match l.mode {
                LicensingMode::None => None,
                LicensingMode::External => Some(format!(
                    "https://{}:{}",
                    l.server.as_deref().unwrap_or("?"),
                    l.port.unwrap_or(443)
                )),
                LicensingMode::FastapiDls => {
                    Some(format!("https://{}:{}", address(), l.port.unwrap_or(8443)))
                }
            },
            lease_days: fastapi.then_some(lease),
            unit: if fastapi { made(lp::UNIT) } else { None },
            container: fastapi.then_some(lp::CONTAINER),
            cert_dir: if fastapi { made(lp::CERT_DIR) } else { None },
            token: if on { made(lp::TOKEN) } else { None },
            guest_linux: if on { made(lp::GUEST_LINUX) } else { None },
            guest_windows: if on { made(lp::GUEST_WINDOWS) } else { None },
        };
        return super::print_json(&doc);
    }
    match l.mode {
        LicensingMode::None => {
            outln!(
                "licensing: none (the plan sets up no licensing; unlicensed vGPUs are throttled after a grace period)"
            );
            return 0;
        }
        LicensingMode::External => {
            let server = l.server.as_deref().unwrap_or("?");
            let port = l.port.unwrap_or(443);
            outln!(
                "licensing: external DLS at https://{server}:{port} (its leases, its lease length)"
            );
        }
        LicensingMode::FastapiDls => {
            let port = l.port.unwrap_or(8443);
            let address = address();
            outln!(
                "licensing: FastAPI-DLS on this host at https://{address}:{port} (leases of {lease} days)"
            );
            outln!(
                "  unit {}{} (podman container {}), keys in {}{}",
                absolute(lp::UNIT),
                state(lp::UNIT),
                lp::CONTAINER,
                absolute(lp::CERT_DIR),
                state(lp::CERT_DIR)
            );
        }
    }
    outln!(
        "client token: {}{} (0600, a secret)",
        absolute(lp::TOKEN),
        state(lp::TOKEN)
    );
    outln!("guest scripts:");
    outln!(
        "  Linux:   {}{}",
        absolute(lp::GUEST_LINUX),
        state(lp::GUEST_LINUX)
    );
    outln!(
        "  Windows: {}{}",
        absolute(lp::GUEST_WINDOWS),
        state(lp::GUEST_WINDOWS)
    );
    outln!("how a guest uses them (the NVIDIA guest driver must be installed first):");
    outln!(
        "  Linux guest: copy the script in (scp root@THIS-HOST:{} .), `sudo bash license_linux.sh`: a token in /etc/nvidia/ClientConfigToken/, FeatureType=1 in /etc/nvidia/gridd.conf, nvidia-gridd restarted, the licence state shown",
        absolute(lp::GUEST_LINUX)
    );
    outln!(
        "  Windows guest: copy license_windows.ps1 in, in an elevated PowerShell `powershell -ExecutionPolicy Bypass -File license_windows.ps1`: a token in C:\\Program Files\\NVIDIA Corporation\\vGPU Licensing\\ClientConfigToken\\, FeatureType=1 under HKLM:\\SOFTWARE\\NVIDIA Corporation\\Global\\GridLicensing, NVDisplay.ContainerLocalSystem restarted"
    );
    if l.mode == LicensingMode::External {
        outln!(
            "  The scripts hold the token: copy them over a trusted channel and delete the copies after use."
        );
    } else {
        outln!(
            "  The scripts fetch a fresh token from /-/client-token, trusting only this host's certificate; guests must reach the port above."
        );
    }
    0
}

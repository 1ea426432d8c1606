//! Step post-check: the vGPU manager answers and lists vGPU types.

use super::dls_check::recheck;
use crate::agent::host::{Host, StepError, StepOutcome};
use crate::runner::format_failure;
use vgpu_plan::plan::{LicensingMode, Mode};

/// What to look at when the driver does not answer.
fn post_check_hint(host: &Host) -> String {
    let mut hint = "check systemctl status nvidia-vgpud nvidia-vgpu-mgr, lsmod | grep nvidia, and journalctl -u nvidia-vgpu-mgr".to_owned();
    if host.facts.firmware.secure_boot == Some(true) {
        hint.push_str(" (Secure Boot is on: the modules must be signed with an enrolled key, see mokutil --list-enrolled)");
    }
    hint
}

/// `nvidia-smi vgpu` must succeed and `mdevctl types` must list at least
/// one type: the check users did by hand when "mdevctl types is empty"
/// (seed §16 #4). In unlock mode `nvidia-smi vgpu` reports "No supported
/// devices in vGPU mode" from a plain shell (the unlock library is only
/// preloaded into the daemons), so plain `nvidia-smi` stands in for it
/// there; `mdevctl types` is the real check in both modes.
pub fn run(host: &mut Host) -> Result<StepOutcome, StepError> {
    let spec = host.command("nvidia-smi", &["vgpu"], "check the vGPU manager answers");
    let out = host.run_status(&spec)?;
    if !out.success() {
        let plain = host.command("nvidia-smi", &[], "check the driver answers");
        let fallback = host.plan.mode == Mode::Unlock && host.run_status(&plain)?.success();
        if !fallback {
            return Err(StepError {
                reason: format!("{}; {}", format_failure(&spec, &out), post_check_hint(host)),
                exit_code: out.exit_code,
                stderr_tail: out.stderr_tail,
            });
        }
        host.note(
            "nvidia-smi vgpu does not answer outside the unlocked daemons; plain nvidia-smi does",
        );
    }
    let spec = host.command("mdevctl", &["types"], "list the vGPU types");
    let out = host.run_status(&spec)?;
    if !out.success() || out.stdout_tail.trim().is_empty() {
        let what = if out.success() {
            "`mdevctl types` lists no vGPU types: the vGPU manager registered no GPU".to_owned()
        } else {
            format_failure(&spec, &out)
        };
        return Err(StepError {
            reason: format!("{what}; {}", post_check_hint(host)),
            exit_code: out.exit_code,
            stderr_tail: out.stderr_tail,
        });
    }
    host.note("nvidia-smi vgpu answers and mdevctl types lists vGPU types");
    recheck(host)?;
    Ok(StepOutcome::Done)
}

/// Dry run of [`run`].
pub fn preview(host: &Host) -> Result<Vec<String>, StepError> {
    let mut lines = vec![
        "would run nvidia-smi vgpu: the vGPU manager answers".to_owned(),
        "would run mdevctl types: at least one vGPU type is listed".to_owned(),
    ];
    match host.plan.licensing.mode {
        LicensingMode::None => {}
        LicensingMode::External => {
            lines.push("would run openssl s_client: the DLS answers again".to_owned());
        }
        LicensingMode::FastapiDls => {
            lines.push(
                "would run wget https://127.0.0.1:PORT/-/health: FastAPI-DLS answers again"
                    .to_owned(),
            );
        }
    }
    Ok(lines)
}

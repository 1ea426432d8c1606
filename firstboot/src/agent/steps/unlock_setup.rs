//! Step unlock-setup (unlock mode): the unlock library, its service
//! drop-ins and the profile override.

use super::payload_paths::{RECOPY, payload_rel};
use crate::agent::host::{Host, StepError, StepOutcome};
use crate::agent::shown::shown;
use crate::edits::unlock::{VGPU_MGR_DROPIN, VGPUD_DROPIN, plan_unlock};
use crate::edits::{FileOp, apply_ops_preview};
use crate::sha256::sha256_reader;
use vgpu_plan::plan::UnlockPlan;

fn unlock_plan<'a>(host: &Host<'a>) -> Result<&'a UnlockPlan, StepError> {
    host.plan.unlock.as_ref().ok_or_else(|| {
        StepError::new(
            "the plan has no [unlock] section but asks for unlock-setup: re-bake the bundle",
        )
    })
}

/// The library is in place when the installed copy has the baked sha256
/// (which the verify-payload step checked the payload copy against).
fn library_in_place(host: &Host, unlock: &UnlockPlan) -> Result<bool, StepError> {
    let dest = host.path(&unlock.library_path)?;
    match host.fs()?.open(&unlock.library_path)? {
        Some(f) => {
            let (sha, _) = sha256_reader(f)
                .map_err(|e| StepError::new(format!("reading {}: {e}", dest.display())))?;
            Ok(sha.eq_ignore_ascii_case(&unlock.library.sha256))
        }
        None => Ok(false),
    }
}

/// The drop-ins and profile override that differ from what the plan wants.
fn unlock_ops(host: &Host, unlock: &UnlockPlan) -> Result<Vec<FileOp>, StepError> {
    let cur: Vec<Option<String>> = [
        VGPUD_DROPIN,
        VGPU_MGR_DROPIN,
        crate::edits::unlock::PROFILE_OVERRIDE,
    ]
    .iter()
    .map(|p| host.read_opt(p))
    .collect::<Result<_, _>>()?;
    plan_unlock(
        unlock,
        [cur[0].as_deref(), cur[1].as_deref(), cur[2].as_deref()],
    )
    .map_err(|e| {
        StepError::new(format!(
            "unlock settings: {e}: the plan's library-path is vgpu-bake's (the profile's `unlock.library` names the file baked in), so the plan is damaged or not vgpu-bake's: bake the bundle again and install it"
        ))
    })
}

fn touches_dropin(ops: &[FileOp]) -> bool {
    ops.iter()
        .any(|op| op.path == VGPUD_DROPIN || op.path == VGPU_MGR_DROPIN)
}

/// Unlock mode: installs the unlock library where the drop-ins point
/// (copied only when its sha256 differs), writes the drop-ins that preload
/// it into `nvidia-vgpud` and `nvidia-vgpu-mgr` and the profile override,
/// and runs `systemctl daemon-reload` only when a drop-in changed.
pub fn run(host: &mut Host) -> Result<StepOutcome, StepError> {
    let unlock = unlock_plan(host)?;
    // Computed first: it also checks the library path before anything is written.
    let ops = unlock_ops(host, unlock)?;
    if !library_in_place(host, unlock)? {
        let src_rel = payload_rel(&unlock.library);
        host.path(&src_rel)?;
        let bytes = host
            .fs()?
            .read(&src_rel)
            .map_err(|e| e.source)
            .and_then(|b| b.ok_or_else(|| std::io::Error::from_raw_os_error(2)))
            .map_err(|e| StepError::new(format!("reading {}: {e}: {RECOPY}", shown(&src_rel))))?;
        host.write_atomic(&unlock.library_path, &bytes, 0o644)?;
        host.note(format!(
            "{}: installed the unlock library from the payload",
            unlock.library_path
        ));
    }
    host.apply(&ops)?;
    if touches_dropin(&ops) {
        let spec = host.command(
            "systemctl",
            &["daemon-reload"],
            "load the vgpu_unlock drop-ins",
        );
        host.run(spec)?;
    }
    Ok(StepOutcome::Done)
}

/// Dry run of [`run`].
pub fn preview(host: &Host) -> Result<Vec<String>, StepError> {
    let unlock = unlock_plan(host)?;
    let ops = unlock_ops(host, unlock)?;
    let mut lines = Vec::new();
    if !library_in_place(host, unlock)? {
        lines.push(format!(
            "would copy {} to {} (mode 0644): the library the drop-ins preload",
            shown(&payload_rel(&unlock.library)),
            unlock.library_path
        ));
    }
    if !ops.is_empty() {
        lines.extend(apply_ops_preview(&ops).lines().map(str::to_owned));
    }
    if touches_dropin(&ops) {
        lines.push("would run systemctl daemon-reload: load the vgpu_unlock drop-ins".to_owned());
    }
    if lines.is_empty() {
        lines.push("nothing to change: the unlock library and its files are in place".to_owned());
    }
    Ok(lines)
}

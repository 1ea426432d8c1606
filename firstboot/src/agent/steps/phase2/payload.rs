//! The payload: checked against the manifest before anything uses it, and
//! (unlock mode) the unlock library, its drop-ins and the profile override.

use super::{payload_rel, shown};
use crate::agent::host::{Host, StepError, StepOutcome};
use crate::edits::unlock::{VGPU_MGR_DROPIN, VGPUD_DROPIN, plan_unlock};
use crate::edits::{FileOp, apply_ops_preview};
use crate::sha256::sha256_reader;
use vgpu_plan::layout::{MANIFEST_FILE, PAYLOAD_DIR};
use vgpu_plan::manifest::Manifest;
use vgpu_plan::plan::UnlockPlan;

/// What to tell the operator whenever a payload file is not what was baked.
const RECOPY: &str = "re-copy or re-bake the bundle";

/// sha256 and size per file already hashed in this step: the installer is
/// hundreds of MB and is listed both in the manifest and in the plan.
type Hashed = Vec<(String, (String, u64))>;

/// Checks the file `rel` is a regular file of `size` bytes with this sha256.
fn check_file(
    host: &Host,
    hashed: &mut Hashed,
    rel: &str,
    sha256: &str,
    size: u64,
) -> Result<(), StepError> {
    let name = shown(rel);
    host.path(rel)?;
    let root = host.fs()?;
    let meta = match root.symlink_metadata(rel) {
        Ok(Some(m)) => m,
        Ok(None) => {
            return Err(StepError::new(format!(
                "payload file {name} is missing (expected {size} bytes, sha256 {sha256}): {RECOPY}"
            )));
        }
        Err(e) => return Err(StepError::new(format!("reading {name}: {}", e.source))),
    };
    if !meta.is_file() {
        return Err(StepError::new(format!(
            "payload file {name} is not a regular file: {RECOPY}"
        )));
    }
    // A size mismatch (a truncated copy) needs no hashing.
    if meta.len() != size {
        return Err(StepError::new(format!(
            "payload file {name} has the wrong size: expected {size} bytes (sha256 {sha256}), found {} bytes: {RECOPY}",
            meta.len()
        )));
    }
    let actual = match hashed.iter().find(|(p, _)| p == rel) {
        Some((_, h)) => h.clone(),
        None => {
            let h = root
                .open(rel)
                .map_err(|e| e.source)
                .and_then(|f| sha256_reader(f.ok_or_else(|| std::io::Error::from_raw_os_error(2))?))
                .map_err(|e| StepError::new(format!("reading {name}: {e}")))?;
            hashed.push((rel.to_owned(), h.clone()));
            h
        }
    };
    if !actual.0.eq_ignore_ascii_case(sha256) || actual.1 != size {
        return Err(StepError::new(format!(
            "payload file {name} is corrupt: expected sha256 {sha256} ({size} bytes), found sha256 {} ({} bytes): {RECOPY}",
            actual.0, actual.1
        )));
    }
    Ok(())
}

fn manifest(host: &Host) -> Result<Manifest, StepError> {
    let text = host
        .read_opt(MANIFEST_FILE)?
        .ok_or_else(|| StepError::new(format!("{} is missing: {RECOPY}", shown(MANIFEST_FILE))))?;
    Manifest::from_toml(&text)
        .map_err(|e| StepError::new(format!("{}: {e}: {RECOPY}", shown(MANIFEST_FILE))))
}

/// Every payload file of the plan: `(root-relative path, sha256, size)`.
fn plan_files(host: &Host) -> Result<Vec<(String, String, u64)>, StepError> {
    let mut out = Vec::new();
    if let Some(d) = &host.plan.driver {
        let f = &d.installer;
        out.push((
            payload_rel(f, "driver installer")?,
            f.sha256.clone(),
            f.size,
        ));
    }
    if let Some(u) = &host.plan.unlock {
        let f = &u.library;
        out.push((payload_rel(f, "unlock library")?, f.sha256.clone(), f.size));
    }
    Ok(out)
}

fn in_payload(path: &str) -> bool {
    path.trim_start_matches('/')
        .strip_prefix(PAYLOAD_DIR)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Checks every payload file the manifest lists, and the plan's installer
/// and unlock library, by size and sha256. A copy damaged in transit or a
/// file swapped after the bake is found here, before anything runs it.
pub fn verify_payload(host: &mut Host) -> Result<StepOutcome, StepError> {
    let manifest = manifest(host)?;
    let mut hashed = Hashed::new();
    for f in manifest.files.iter().filter(|f| in_payload(&f.path)) {
        check_file(
            host,
            &mut hashed,
            f.path.trim_start_matches('/'),
            &f.sha256,
            f.size,
        )?;
    }
    for (rel, sha256, size) in plan_files(host)? {
        check_file(host, &mut hashed, &rel, &sha256, size)?;
    }
    host.note(format!(
        "{} payload files match the manifest and the plan",
        hashed.len()
    ));
    Ok(StepOutcome::Done)
}

fn unlock_plan<'a>(host: &Host<'a>) -> Result<&'a UnlockPlan, StepError> {
    host.plan.unlock.as_ref().ok_or_else(|| {
        StepError::new(
            "the plan has no [unlock] section but asks for unlock-setup: re-bake the bundle",
        )
    })
}

/// The library is in place when the installed copy has the baked sha256
/// (which [`verify_payload`] checked the payload copy against).
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
            "unlock settings: {e}: fix unlock.library-path in the profile and re-bake"
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
pub fn unlock_setup(host: &mut Host) -> Result<StepOutcome, StepError> {
    let unlock = unlock_plan(host)?;
    // Computed first: it also checks the library path before anything is written.
    let ops = unlock_ops(host, unlock)?;
    if !library_in_place(host, unlock)? {
        let src_rel = payload_rel(&unlock.library, "unlock library")?;
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

pub(super) fn preview_verify(host: &Host) -> Result<Vec<String>, StepError> {
    let manifest = manifest(host)?;
    let mut lines: Vec<String> = manifest
        .files
        .iter()
        .filter(|f| in_payload(&f.path))
        .map(|f| {
            format!(
                "would check {} ({} bytes, sha256 {}): listed in the manifest",
                shown(&f.path),
                f.size,
                f.sha256
            )
        })
        .collect();
    for (rel, sha256, size) in plan_files(host)? {
        lines.push(format!(
            "would check {} ({size} bytes, sha256 {sha256}): named by the plan",
            shown(&rel)
        ));
    }
    Ok(lines)
}

pub(super) fn preview_unlock(host: &Host) -> Result<Vec<String>, StepError> {
    let unlock = unlock_plan(host)?;
    let ops = unlock_ops(host, unlock)?;
    let mut lines = Vec::new();
    if !library_in_place(host, unlock)? {
        lines.push(format!(
            "would copy {} to {} (mode 0644): the library the drop-ins preload",
            shown(&payload_rel(&unlock.library, "unlock library")?),
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

//! Files `openssl` makes on the host (keys, certificates): each written
//! under a temporary name beside it and renamed into place with its mode
//! once all exist, so a power cut never leaves half a key that a re-run
//! would trust. Used by the secure-boot step and FastAPI-DLS.

use super::commands::run_or;
use crate::agent::host::{Host, StepError};

/// The temporary name `openssl` writes `rel` under (root-relative, in
/// `rel`'s directory), and that path as the command sees it.
pub(super) fn tmp_of(host: &Host, rel: &str) -> Result<(String, String), StepError> {
    let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let tmp = format!("{dir}/.{name}.tmp");
    let shown = host.path(&tmp)?.to_string_lossy().into_owned();
    Ok((tmp, shown))
}

/// Runs `openssl ARGS` to make `outs` (root-relative paths with their
/// modes), which ARGS name by their [`tmp_of`] paths. Both names are
/// journaled first; a temporary file left by a cut-off run is removed.
pub(super) fn make_files(
    host: &mut Host,
    outs: &[(&str, u32)],
    args: &[&str],
    why: &str,
) -> Result<(), StepError> {
    let root = host.fs()?;
    for (rel, _) in outs {
        let (tmp, _) = tmp_of(host, rel)?;
        host.touch(&tmp)?;
        host.touch(rel)?;
        let _ = root.remove_file(&tmp);
    }
    let spec = host.command("openssl", args, why);
    run_or(host, spec, "check that openssl is installed")?;
    for (rel, mode) in outs {
        let (tmp, _) = tmp_of(host, rel)?;
        root.set_mode(&tmp, *mode)
            .and_then(|()| root.rename(&tmp, rel))
            .map_err(|e| {
                StepError::new(format!(
                    "openssl did not leave {} as expected ({}); retry",
                    e.path.display(),
                    e.source
                ))
            })?;
    }
    Ok(())
}

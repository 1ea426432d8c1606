//! Where payload files are, and what to say when one is not what was baked.

use crate::agent::host::StepError;
use vgpu_plan::layout::PAYLOAD_DIR;
use vgpu_plan::plan::PayloadFile;

/// What to tell the operator whenever a payload file is not what was baked.
pub(super) const RECOPY: &str = "re-copy or re-bake the bundle";

/// Root-relative path of a payload file, e.g.
/// `var/lib/vgpu-firstboot/payload/NVIDIA-...run`. An empty path means the
/// plan was resolved but never baked.
pub(super) fn payload_rel(file: &PayloadFile, what: &str) -> Result<String, StepError> {
    let rel = file.path.trim_start_matches('/');
    if rel.is_empty() {
        return Err(StepError::new(format!(
            "the plan names no {what} file (resolved but not baked): bake the bundle with vgpu-bake bake"
        )));
    }
    Ok(format!("{PAYLOAD_DIR}/{rel}"))
}

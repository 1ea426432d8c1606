//! Where payload files are, and what to say when one is not what was baked.

use vgpu_plan::layout::PAYLOAD_DIR;
use vgpu_plan::plan::PayloadFile;

/// What to tell the operator whenever a payload file is not what was baked.
pub(super) const RECOPY: &str = "re-copy or re-bake the bundle";

/// Root-relative path of a payload file, e.g.
/// `var/lib/vgpu-firstboot/payload/NVIDIA-...run`. A plan cannot hold an
/// unbaked (empty) path: `vgpu_plan` refuses it when the plan is read.
pub(super) fn payload_rel(file: &PayloadFile) -> String {
    format!("{PAYLOAD_DIR}/{}", file.path.trim_start_matches('/'))
}

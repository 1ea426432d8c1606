//! How root-relative paths are shown in messages.

use vgpu_plan::layout::absolute;

/// A root-relative path as the host sees it, for messages.
pub(crate) fn shown(rel: &str) -> String {
    absolute(rel.trim_start_matches('/'))
}

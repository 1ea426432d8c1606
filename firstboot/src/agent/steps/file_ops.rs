//! File edits as dry-run lines, for the steps' previews.

use crate::edits::{FileOp, apply_ops_preview};

/// [`apply_ops_preview`] as lines; nothing when there is nothing to change.
pub(super) fn ops_lines(ops: &[FileOp]) -> Vec<String> {
    if ops.is_empty() {
        return Vec::new();
    }
    apply_ops_preview(ops).lines().map(str::to_owned).collect()
}

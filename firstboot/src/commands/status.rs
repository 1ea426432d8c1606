//! `vgpu-firstboot status [--json] [--wait]`: progress, as the exit code.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::agent::progress;
use crate::state::{self, Found, Status};
use vgpu_plan::layout;

/// Prints what [`progress::snapshot`] finds, human or JSON (one document
/// whatever the state file holds, the one the agent POSTs to `[report]
/// url`), and returns its exit code; with `wait`, polls until the plan is
/// no longer in progress or the wait is over.
pub fn status(root: &Path, json: bool, wait: Option<Duration>) -> u8 {
    let start = Instant::now();
    loop {
        let snap = progress::snapshot(root);
        let code = snap.code;
        let remaining = wait.map(|w| w.saturating_sub(start.elapsed()));
        if code != 3 || remaining.is_none_or(|r| r.is_zero()) {
            if json {
                match snap.json() {
                    Ok(text) => outln!("{text}"),
                    Err(e) => return super::fail(format_args!("writing the status as JSON: {e}")),
                }
            } else {
                out!("{}", state::render_found_human(&snap.found));
                // After undo the web UI steps no longer apply.
                if snap.undone.is_none()
                    && matches!(&snap.found, Found::State(st) if st.status == Status::Done)
                {
                    crate::agent::summary::print(root);
                }
                if let Some(t) = &snap.trial {
                    outln!("{}", t.status_line());
                }
                if let Some(undone) = &snap.undone {
                    outln!(
                        "undone: the plan's changes were reverted by `vgpu-firstboot undo`, and nothing applies it again ({}): {}",
                        layout::absolute(crate::agent::undo::UNDONE_MARKER),
                        undone.lines().next().unwrap_or("").trim()
                    );
                }
                if snap.done_marker
                    && matches!(&snap.found, Found::State(st) if st.status != Status::Done)
                {
                    outln!(
                        "done marker {} is present",
                        layout::absolute(layout::DONE_MARKER)
                    );
                }
            }
            return code;
        }
        std::thread::sleep(remaining.unwrap_or_default().min(Duration::from_secs(1)));
    }
}

//! `vgpu-firstboot status [--json] [--wait]`: progress, as the exit code.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::agent::run;
use crate::state::{self, Found, Installed, Status};
use vgpu_plan::layout;
use vgpu_rootfs::Root;

/// Prints what [`state::found`] says (human or JSON; the JSON is one
/// document whatever the state file holds) and returns its exit code; with
/// `wait`, polls until the plan is no longer in progress or the wait is
/// over.
pub fn status(root: &Path, json: bool, wait: Option<Duration>) -> u8 {
    let start = Instant::now();
    loop {
        let found = state::found(state::load(root), installed(root));
        let done_marker = Root::at(root).is_ok_and(|r| r.resolves(layout::DONE_MARKER));
        let mut code = found.exit_code();
        if done_marker && code == 3 {
            // The done marker is written by the last step; a power cut
            // before the state recorded it leaves the state one step behind.
            code = 0;
        }
        let remaining = wait.map(|w| w.saturating_sub(start.elapsed()));
        if code != 3 || remaining.is_none_or(|r| r.is_zero()) {
            if json {
                match state::render_found_json(&found, code) {
                    Ok(text) => outln!("{text}"),
                    Err(e) => return super::fail(format_args!("writing the status as JSON: {e}")),
                }
            } else {
                out!("{}", state::render_found_human(&found));
                if done_marker && matches!(&found, Found::State(st) if st.status != Status::Done) {
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

/// The installed plan: `None` without a plan file, `Err` when it cannot be
/// read.
fn installed(root: &Path) -> Result<Option<Installed>, String> {
    if !Root::at(root).is_ok_and(|r| r.resolves(layout::PLAN_FILE)) {
        return Ok(None);
    }
    let (plan, sha256) = run::load_plan(root).map_err(|e| e.0)?;
    Ok(Some(Installed {
        sha256,
        reboot_cap: plan.agent.reboot_cap,
    }))
}

//! `vgpu-firstboot status [--json] [--wait]`: progress, as the exit code.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::state::{self, Status};
use vgpu_plan::layout;

/// Prints the state (human or JSON) and returns [`state::exit_code`]; with
/// `wait`, polls until the plan is no longer in progress or the wait is
/// over.
pub fn status(root: &Path, json: bool, wait: Option<Duration>) -> u8 {
    let start = Instant::now();
    loop {
        let st = match state::load(root) {
            Ok(s) => s,
            Err(e) => return super::fail(e),
        };
        let done_marker =
            vgpu_rootfs::Root::at(root).is_ok_and(|r| r.resolves(layout::DONE_MARKER));
        let mut code = state::exit_code(&st);
        if done_marker && code == 3 {
            // The done marker is written by the last step; a power cut
            // before the state recorded it leaves the state one step behind.
            code = 0;
        }
        let remaining = wait.map(|w| w.saturating_sub(start.elapsed()));
        if code != 3 || remaining.is_none_or(|r| r.is_zero()) {
            if json {
                match state::render_json(&st) {
                    Ok(text) => println!("{text}"),
                    Err(e) => return super::fail(format_args!("writing the status as JSON: {e}")),
                }
            } else {
                print!("{}", state::render_human(&st));
                if done_marker && !matches!(st.status, Status::Done) {
                    println!(
                        "done marker {} is present",
                        layout::absolute(layout::DONE_MARKER)
                    );
                }
            }
            return u8::try_from(code).unwrap_or(1);
        }
        std::thread::sleep(remaining.unwrap_or_default().min(Duration::from_secs(1)));
    }
}

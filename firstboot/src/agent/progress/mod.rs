//! Progress a fleet can watch, at every phase change (the run starts in
//! phase 1 or 2, the agent is about to reboot, the plan is done, failed or
//! needs an operator): the node_exporter textfile ([`textfile`]) in the
//! plan's `[report] textfile-dir`, and with `[report] url` a POST of the
//! `status --json` document ([`document`], [`report`]). Neither ever fails
//! the run: a problem is a warning in the journal.

mod document;
mod report;
mod textfile;

pub use document::{Snapshot, snapshot};
pub use report::POST_LIMIT;
pub use textfile::{FILE_NAME, Progress};

use crate::agent::host::Host;
use crate::state::{State, StepState};
use vgpu_plan::plan::StepKind;

/// 2 once the agent's reboot happened (asked for and a new boot seen) or
/// its reboot step is done (the reboot was not needed), else 1.
pub fn phase(st: &State) -> u8 {
    let rebooted = (st.reboots > 0 && st.pending_reboot.is_none())
        || matches!(
            st.step(StepKind::Reboot.id()).map(|r| &r.status),
            Some(StepState::Done { .. })
        );
    if rebooted { 2 } else { 1 }
}

/// The textfile path (inside the root) for the plan's textfile directory.
pub fn textfile_path(dir: &str) -> String {
    format!("{}/{FILE_NAME}", dir.trim_end_matches('/'))
}

/// Writes the textfile for `st` and POSTs the status document when the
/// plan has a URL. `st` is what the state file holds (saved before this).
pub fn publish(host: &mut Host, st: &State) {
    let path = textfile_path(&host.plan.report.textfile_dir);
    let text = Progress::of(&host.plan.name, st, phase(st)).render();
    // Journaled, so undo removes it (and the directories made for it).
    if let Err(e) = host.touch(&path) {
        host.note(format!("warning: progress textfile not journaled: {e}"));
    }
    // node_exporter reads files matching *.prom: the temp file is not one.
    let written = host.fs().map_err(|e| e.reason).and_then(|fs| {
        fs.write_atomic(&path, text.as_bytes(), 0o644)
            .map_err(|e| e.to_string())
    });
    if let Err(e) = written {
        host.note(format!("warning: progress textfile not written: {e}"));
    }
    let Some(url) = host.plan.report.url.as_deref() else {
        return;
    };
    match snapshot(&host.root).json() {
        Ok(doc) => report::post(host, url, &doc),
        Err(e) => host.note(format!("warning: progress not reported to {url}: {e}")),
    }
}

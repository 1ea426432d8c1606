//! The `status --json` document: what `status` prints and what the agent
//! POSTs to `[report] url`, from one function.

use std::path::Path;

use crate::agent::run;
use crate::state::{self, Found, Installed};
use vgpu_plan::layout;
use vgpu_rootfs::Root;

/// What `status` finds for the host under `root`.
#[derive(Debug)]
pub struct Snapshot {
    /// The state file judged against the installed plan.
    pub found: Found,
    /// What `status` exits with.
    pub code: u8,
    /// The done marker exists.
    pub done_marker: bool,
    /// What the undone marker says, when `undo` reverted the plan.
    pub undone: Option<String>,
    /// The trial boot's record ([`crate::agent::trial`]), when there is one.
    pub trial: Option<crate::agent::trial::Trial>,
}

/// Reads the state and the installed plan under `root`.
pub fn snapshot(root: &Path) -> Snapshot {
    let found = state::found(state::load(root), installed(root));
    let done_marker = Root::at(root).is_ok_and(|r| r.resolves(layout::DONE_MARKER));
    let mut code = found.exit_code();
    if done_marker && code == 3 {
        // The done marker is written by the last step; a power cut
        // before the state recorded it leaves the state one step behind.
        code = 0;
    }
    let undone = Root::at(root)
        .ok()
        .and_then(|r| r.read_to_string(crate::agent::undo::UNDONE_MARKER).ok())
        .flatten();
    let trial = Root::at(root)
        .ok()
        .and_then(|r| r.read_to_string(crate::agent::trial::TRIAL_FILE).ok())
        .flatten()
        .and_then(|t| crate::agent::trial::Trial::from_text(&t).ok());
    Snapshot {
        found,
        code,
        done_marker,
        undone,
        trial,
    }
}

impl Snapshot {
    /// The `status --json` document, one line.
    pub fn json(&self) -> Result<String, serde_json::Error> {
        let mut text = state::render_found_json(&self.found, self.code)?;
        // One more key, `undone`, when the plan was undone: spliced in
        // before the closing brace (a `serde_json::Value` round trip would
        // cost the agent's size budget more than this).
        if let Some(undone) = &self.undone
            && text.ends_with('}')
        {
            text.pop();
            text.push_str(",\"undone\":");
            text.push_str(&serde_json::to_string(undone.trim())?);
            text.push('}');
        }
        if let Some(t) = &self.trial
            && text.ends_with('}')
        {
            text.pop();
            text.push_str(",\"trial\":");
            text.push_str(&t.to_json()?);
            text.push('}');
        }
        Ok(text)
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

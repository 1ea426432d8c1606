//! `vgpu-firstboot undo [--dry-run]`: every change the agent made,
//! reverted from its change journal ([`crate::agent::undo`]).

use std::path::Path;

use crate::agent::confine;
use crate::agent::host::{Host, StepError};
use crate::agent::journal::{JOURNAL_DIR, JOURNAL_FILE, Journal};
use crate::agent::run::{RunError, load_plan};
use crate::agent::shown::shown;
use crate::agent::trial::{TRIAL_FILE, Trial, TrialStatus};
use crate::agent::undo::{self, Action, UNDONE_JOURNAL, UNDONE_MARKER, Verdict, apply};
use crate::facts;
use crate::runner::SystemRunner;
use crate::state::StateStore;
use vgpu_plan::layout::UNIT_WANTS_LINK;
use vgpu_rootfs::Root;

/// Reverts the journal (or, with `dry_run`, prints what it would do and
/// changes nothing); with `json`, one document (docs/JSON.md) instead of
/// the text. 0 done (or nothing to undo), 1 failure: the journal cannot be
/// read (nothing changed), another agent runs, or an action failed (run
/// `undo` again once its cause is fixed).
pub fn undo(root: &Path, dry_run: bool, json: bool) -> u8 {
    if dry_run {
        return match preview(root) {
            Ok(p) if json => super::print_json(&Doc {
                schema: 1,
                dry_run: true,
                lines: p.lines().map(str::to_owned).collect(),
            }),
            Ok(text) => {
                out!("{text}");
                0
            }
            Err(e) => super::fail(e),
        };
    }
    let root = match confine::enter(root) {
        Ok(root) => root,
        Err(e) => return super::fail(e),
    };
    match revert(&root) {
        Ok(lines) if json => super::print_json(&Doc {
            schema: 1,
            dry_run: false,
            lines,
        }),
        Ok(lines) => {
            for l in lines {
                outln!("{l}");
            }
            0
        }
        Err(e) => super::fail(e),
    }
}

/// `undo --json`: the lines the text shows, in order: with `--dry-run`
/// each action it would take (numbered as in the text) and what follows
/// them; without, what it did and whether to reboot.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
struct Doc {
    schema: u32,
    dry_run: bool,
    lines: Vec<String>,
}

fn fs(root: &Path) -> Result<Root, RunError> {
    Root::at(root).map_err(|e| RunError(e.to_string()))
}

fn step(e: StepError) -> RunError {
    let mut reason = e.reason;
    if !e.stderr_tail.is_empty() {
        reason.push_str("\nstderr of the failed command:\n");
        reason.push_str(e.stderr_tail.trim_end());
    }
    RunError(reason)
}

/// An action's failure: undo stopped there.
fn stopped(e: StepError) -> RunError {
    let mut e = step(e);
    e.0.push_str("\nundo stopped there; fix the cause, then `vgpu-firstboot undo` again (every action is safe to repeat)");
    e
}

/// The journal, or why undo cannot trust it.
fn journal(fs: &Root) -> Result<Journal, RunError> {
    Journal::read(fs).map_err(|e| {
        RunError(format!(
            "{}; nothing was changed. Move {} aside and revert by hand (it lists every change), or restore it from a backup",
            e.reason,
            shown(JOURNAL_FILE)
        ))
    })
}

/// `undo --dry-run`: the actions, in order, and what follows them.
fn preview(root: &Path) -> Result<String, RunError> {
    let fs = fs(root)?;
    let j = journal(&fs)?;
    let mut out = String::new();
    if j.records.is_empty() {
        out.push_str(&format!(
            "nothing to undo: {} records no change{}\n",
            shown(JOURNAL_FILE),
            if fs.exists(UNDONE_MARKER) {
                " (the plan was undone already)"
            } else {
                ""
            }
        ));
    }
    for (n, a) in undo::actions(&j).iter().enumerate() {
        out.push_str(&format!("{:>3}. would {}\n", n + 1, a.describe()));
    }
    if let Some(t) = fs
        .read_to_string(TRIAL_FILE)
        .ok()
        .flatten()
        .and_then(|t| Trial::from_text(&t).ok())
        .filter(Trial::active)
    {
        out.push_str(&format!(
            "  - would remove the trial boot entry ({}){}, before the boot refresh\n",
            t.describe(),
            if t.status == TrialStatus::Armed {
                " and clear its one-shot"
            } else {
                ""
            }
        ));
    }
    if fs
        .symlink_metadata(UNIT_WANTS_LINK)
        .ok()
        .flatten()
        .is_some()
    {
        out.push_str(&format!(
            "would remove {}: the agent has not finished and must not start again\n",
            shown(UNIT_WANTS_LINK)
        ));
    }
    out.push_str(&format!(
        "then would move the journal to {}, write {} and say whether a reboot is needed\n",
        shown(UNDONE_JOURNAL),
        shown(UNDONE_MARKER)
    ));
    Ok(out)
}

/// The undo itself, under the agent's lock; the lines for the operator.
fn revert(root: &Path) -> Result<Vec<String>, RunError> {
    let fs = fs(root)?;
    // Refuses while the agent runs, and keeps it from starting meanwhile.
    let (_store, _st) = StateStore::open_locked(root)?;
    let j = journal(&fs)?;
    if j.records.is_empty() && fs.exists(UNDONE_MARKER) {
        return Ok(vec![format!(
            "vgpu-firstboot: nothing to undo: the plan was undone already ({})",
            shown(UNDONE_MARKER)
        )]);
    }
    let (plan, _) = load_plan(root)?;
    let facts = facts::read_facts(root).map_err(|e| RunError(e.to_string()))?;
    let mut runner = SystemRunner::default();
    let mut host = Host::new(root, &mut runner, &plan, &facts);
    apply::check_backups(&host, &j).map_err(step)?;
    let mut lines = Vec::new();
    // First, so a host half undone does not apply the plan again at boot.
    if fs
        .remove_file(UNIT_WANTS_LINK)
        .map_err(|e| RunError(e.to_string()))?
    {
        let line = format!(
            "the agent had not finished: removed {} so it does not start again",
            shown(UNIT_WANTS_LINK)
        );
        host.note(&line);
        lines.push(format!("vgpu-firstboot: {line}"));
    }
    let actions = undo::actions(&j);
    // Before the journal's boot refresh, so `update-grub` drops the entry.
    crate::agent::steps::undo_trial(&mut host).map_err(stopped)?;
    apply::execute(&mut host, &actions).map_err(stopped)?;
    let verdict = apply::judge(&host, &actions).map_err(step)?;
    finish(&fs, &verdict, &actions)?;
    lines.push(format!(
        "vgpu-firstboot: undone: {} change(s) reverted from the journal, now {}",
        j.records.len(),
        shown(UNDONE_JOURNAL)
    ));
    lines.push(verdict.to_string());
    Ok(lines)
}

/// The marker first (`run` refuses from then on), then the journal moved
/// aside: a cut between them leaves the journal, and `undo` again goes over
/// it (every action is idempotent).
fn finish(fs: &Root, verdict: &Verdict, actions: &[Action]) -> Result<(), RunError> {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let text = format!(
        "undone at {} ({} action(s)); the plan does not run again while this file exists\n{verdict}\n",
        crate::state::utc(at),
        actions.len()
    );
    let io = |e: vgpu_rootfs::Error| RunError(e.to_string());
    fs.write_atomic(UNDONE_MARKER, text.as_bytes(), 0o644)
        .map_err(io)?;
    if fs.exists(JOURNAL_DIR) {
        fs.remove_all(UNDONE_JOURNAL).map_err(io)?;
        fs.rename(JOURNAL_DIR, UNDONE_JOURNAL).map_err(io)?;
    }
    Ok(())
}

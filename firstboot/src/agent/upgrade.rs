//! `vgpu-firstboot upgrade`: a newer bundle laid over a host an earlier
//! plan provisioned is applied as the difference. The earlier state is
//! archived next to the new one, a fresh state is bound to the new plan,
//! the unit is enabled again and the plan runs through [`run::run_locked`],
//! the same loop as `run`: steps are idempotent, so the ones whose effect
//! is already there change nothing, and the rest apply the difference
//! (install-driver removes the old driver with its own uninstaller first,
//! enable-services disables the units the new plan dropped). The reboot
//! step reboots only when the running system lacks what phase 2 needs;
//! phase 2 then resumes from the unit as after a first provisioning.
//!
//! Order, for a power cut at any point: (1) the old state is archived
//! (atomic; an identical archive is reused), (2) the fresh state is saved
//! (atomic: the switch), (3) the done marker is removed and the unit's
//! `.wants` link laid, (4) the run. A cut before (2) leaves the old state,
//! and `upgrade` starts again; a cut after it leaves a state bound to the
//! new plan that records the upgrade, and `upgrade` (or the unit, once (3)
//! is done) carries on.

use std::path::Path;

use super::run::{self, RunEnd, RunError};
use crate::runner::Runner;
use crate::state::{self, State, StateStore, Status};
use vgpu_plan::layout::{self, DONE_MARKER, UNIT_WANTS_LINK, UNIT_WANTS_TARGET};
use vgpu_rootfs::Root;

/// Where earlier states are archived: `<n>-<plan name>-<sha8>.state.toml`.
pub const HISTORY_DIR: &str = "var/lib/vgpu-firstboot/history";

/// The first event of a state `upgrade` started (see [`decide`]).
const UPGRADED_FROM: &str = "upgrade from plan ";

/// How an upgrade ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeEnd {
    /// The installed plan is the one the state is bound to; the reason.
    Nothing(String),
    /// The new plan ran; the old state is archived at this root-relative path
    /// (`None` when an upgrade cut short was resumed).
    Ran(RunEnd, Option<String>),
}

/// What `upgrade` does with the state it finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Nothing to upgrade; why.
    Nothing(String),
    /// Refused; why and what to do.
    Refuse(String),
    /// Archive the state and run the new plan.
    Upgrade,
    /// The state is the new plan's, started by an upgrade that did not run
    /// to the end: enable the unit again and run.
    Resume,
}

/// The decision, from the state, the installed plan's sha256 and this
/// host's machine id. Pure.
pub(crate) fn decide(st: &State, plan_sha: &str, machine_id: &str) -> Decision {
    if st.plan_sha256.is_empty() {
        return Decision::Refuse(
            "no plan has run on this host yet (no state): nothing to upgrade from; start the unit (`systemctl start vgpu-firstboot`) or `vgpu-firstboot run`".into(),
        );
    }
    if st.machine_id != machine_id {
        return Decision::Refuse(format!(
            "{} belongs to machine {}, but this host is {machine_id} (cloned disk?), not this host's history; remove it, start the unit to run the plan from the first step",
            layout::absolute(layout::STATE_FILE),
            st.machine_id
        ));
    }
    let status = state::status_name(&st.status);
    if st.plan_sha256 == plan_sha {
        let upgraded = st
            .events
            .first()
            .is_some_and(|e| e.what.starts_with(UPGRADED_FROM));
        return match st.status {
            Status::Done => Decision::Nothing(format!(
                "nothing to upgrade: the installed plan (sha256 {plan_sha}) is the one this host ran to done"
            )),
            _ if upgraded => Decision::Resume,
            _ => Decision::Nothing(format!(
                "nothing to upgrade: the installed plan (sha256 {plan_sha}) is the state's ({status}); `vgpu-firstboot status` shows its progress"
            )),
        };
    }
    match st.status {
        Status::Done | Status::Failed { .. } => Decision::Upgrade,
        _ => Decision::Refuse(format!(
            "the earlier plan (sha256 {}) is {status}, not done or failed: an upgrade starts from a finished plan. Let it finish (`vgpu-firstboot status`), or give it up: move {} aside and start the unit to run the installed plan from its first step",
            st.plan_sha256,
            layout::absolute(layout::STATE_FILE)
        )),
    }
}

/// The earlier plan's name for the archive's file name: the done marker's
/// first line (a failed plan has none: "plan"), only `[A-Za-z0-9._-]` kept.
fn old_name(fs: &Root) -> String {
    let marker = fs
        .read_to_string(DONE_MARKER)
        .ok()
        .flatten()
        .unwrap_or_default();
    let name: String = marker
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(64)
        .collect();
    if name.is_empty() { "plan".into() } else { name }
}

/// The archive's file name: `n` (one more than the highest number in
/// `existing`), the plan's name and the first 8 hex digits of its sha256.
pub(crate) fn archive_name(existing: &[String], name: &str, sha: &str) -> String {
    let n = existing
        .iter()
        .filter_map(|f| f.split('-').next()?.parse::<u32>().ok())
        .max()
        .map_or(1, |n| n + 1);
    format!("{n}-{name}-{}.state.toml", &sha[..sha.len().min(8)])
}

/// Archives the state file's bytes under [`HISTORY_DIR`], atomically; an
/// archive with the same bytes (an upgrade cut short after archiving) is
/// reused. Returns its root-relative path.
fn archive(fs: &Root, st: &State) -> Result<String, RunError> {
    let io = |what: &str, e: vgpu_rootfs::Error| {
        RunError(format!(
            "archiving the earlier state: {what} {}: {}; nothing was changed, fix it and run `vgpu-firstboot upgrade` again",
            e.path.display(),
            e.source
        ))
    };
    let bytes = fs
        .read_bounded(layout::STATE_FILE, state::STATE_LIMIT)
        .map_err(|e| io("reading", e))?
        .unwrap_or_default();
    fs.create_dir_all(HISTORY_DIR, 0o755)
        .map_err(|e| io("creating", e))?;
    let existing: Vec<String> = fs
        .read_dir(HISTORY_DIR)
        .map_err(|e| io("listing", e))?
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| n.into_string().ok())
        .filter(|n| n.ends_with(".state.toml"))
        .collect();
    for n in &existing {
        let rel = format!("{HISTORY_DIR}/{n}");
        if fs.read_bounded(&rel, state::STATE_LIMIT).ok().flatten() == Some(bytes.clone()) {
            return Ok(rel);
        }
    }
    let rel = format!(
        "{HISTORY_DIR}/{}",
        archive_name(&existing, &old_name(fs), &st.plan_sha256)
    );
    fs.write_atomic(&rel, &bytes, 0o644)
        .map_err(|e| io("writing", e))?;
    Ok(rel)
}

/// Removes the done marker and lays the unit's `.wants` link, so the unit
/// starts the agent at the next boot until the new plan is done.
fn unseal(fs: &Root) -> Result<(), RunError> {
    let err = |what: &str, e: vgpu_rootfs::Error| {
        RunError(format!(
            "{what} {}: {}; run `vgpu-firstboot upgrade` again once fixed",
            e.path.display(),
            e.source
        ))
    };
    fs.remove_file(DONE_MARKER)
        .map_err(|e| err("removing", e))?;
    let linked = fs
        .read_link(UNIT_WANTS_LINK)
        .map_err(|e| err("reading", e))?;
    if linked.as_deref() != Some(Path::new(UNIT_WANTS_TARGET)) {
        if linked.is_some()
            || fs
                .symlink_metadata(UNIT_WANTS_LINK)
                .ok()
                .flatten()
                .is_some()
        {
            fs.remove_file(UNIT_WANTS_LINK)
                .map_err(|e| err("removing", e))?;
        }
        let dir = UNIT_WANTS_LINK.rsplit_once('/').map_or("", |(d, _)| d);
        fs.create_dir_all(dir, 0o755)
            .map_err(|e| err("creating", e))?;
        fs.symlink(UNIT_WANTS_TARGET, UNIT_WANTS_LINK)
            .map_err(|e| err("linking", e))?;
    }
    Ok(())
}

/// Upgrades the host under `root` to the installed plan (see the module doc).
pub fn upgrade(root: &Path, runner: &mut dyn Runner) -> Result<UpgradeEnd, RunError> {
    let fs = Root::at(root).map_err(|e| RunError(e.to_string()))?;
    let (plan, plan_sha, plan_size) = run::read_plan(root)?;
    // The lock first: a run in progress refuses the upgrade here.
    let (mut store, mut st) = StateStore::open_locked(root)?;
    for note in store.take_notes() {
        errln!("vgpu-firstboot: {note}");
    }
    let machine_id = state::read_machine_id(root)?;
    let archived = match decide(&st, &plan_sha, &machine_id) {
        Decision::Nothing(why) => return Ok(UpgradeEnd::Nothing(why)),
        Decision::Refuse(why) => return Err(RunError(why)),
        Decision::Resume => {
            errln!(
                "vgpu-firstboot: resuming the upgrade to plan {} (sha256 {plan_sha})",
                plan.name
            );
            None
        }
        Decision::Upgrade => {
            let rel = archive(&fs, &st)?;
            let why = format!(
                "{UPGRADED_FROM}{} (sha256 {}, {}), archived at {}",
                old_name(&fs),
                st.plan_sha256,
                state::status_name(&st.status),
                layout::absolute(&rel)
            );
            errln!("vgpu-firstboot: {why}");
            super::fault::fault("upgrade", "archived");
            store.start_over(&mut st, &plan, &plan_sha, &machine_id, why)?;
            Some(rel)
        }
    };
    super::fault::fault("upgrade", "bound");
    unseal(&fs)?;
    let end = run::run_locked(root, runner, (&plan, &plan_sha, plan_size), &mut store, st)?;
    Ok(UpgradeEnd::Ran(end, archived))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Failure, LogEntry};

    fn bound(sha: &str, status: Status) -> State {
        State {
            plan_sha256: sha.into(),
            machine_id: "m1".into(),
            status,
            ..State::BLANK
        }
    }

    #[test]
    fn upgrades_only_from_a_finished_other_plan() {
        let new = "b".repeat(64);
        let old = "a".repeat(64);
        assert_eq!(
            decide(&bound(&old, Status::Done), &new, "m1"),
            Decision::Upgrade
        );
        let failed = Status::Failed {
            step: "install-driver".into(),
            reason: Failure::new("x").reason,
        };
        assert_eq!(decide(&bound(&old, failed), &new, "m1"), Decision::Upgrade);
        for status in [
            Status::InProgress,
            Status::NotStarted,
            Status::NeedsOperator {
                action: "enrol".into(),
            },
        ] {
            let name = state::status_name(&status);
            match decide(&bound(&old, status), &new, "m1") {
                Decision::Refuse(why) => {
                    assert!(
                        why.contains(&format!("is {name}, not done or failed")),
                        "{why}"
                    );
                    assert!(
                        why.contains("move /var/lib/vgpu-firstboot/state.toml aside"),
                        "{why}"
                    );
                }
                d => panic!("{name}: {d:?}"),
            }
        }
    }

    #[test]
    fn the_same_plan_is_nothing_to_upgrade_unless_an_upgrade_was_cut_short() {
        let sha = "a".repeat(64);
        let Decision::Nothing(why) = decide(&bound(&sha, Status::Done), &sha, "m1") else {
            panic!()
        };
        assert!(why.starts_with("nothing to upgrade"), "{why}");
        assert!(matches!(
            decide(&bound(&sha, Status::InProgress), &sha, "m1"),
            Decision::Nothing(_)
        ));
        let mut cut = bound(&sha, Status::NotStarted);
        cut.events.push(LogEntry {
            at: 1,
            what: format!("{UPGRADED_FROM}demo (sha256 ...)"),
        });
        assert_eq!(decide(&cut, &sha, "m1"), Decision::Resume);
        cut.status = Status::Done;
        assert!(matches!(decide(&cut, &sha, "m1"), Decision::Nothing(_)));
    }

    #[test]
    fn no_state_or_another_machine_is_refused() {
        let Decision::Refuse(why) = decide(&State::BLANK, "x", "m1") else {
            panic!()
        };
        assert!(why.contains("nothing to upgrade from"), "{why}");
        let Decision::Refuse(why) = decide(&bound("a", Status::Done), "b", "m2") else {
            panic!()
        };
        assert!(
            why.contains("belongs to machine m1, but this host is m2"),
            "{why}"
        );
    }

    #[test]
    fn archives_are_numbered_after_the_highest() {
        let sha = "0123456789abcdef";
        assert_eq!(archive_name(&[], "demo", sha), "1-demo-01234567.state.toml");
        let existing = [
            "1-demo-aaaaaaaa.state.toml".into(),
            "7-x-bbbbbbbb.state.toml".into(),
        ];
        assert_eq!(
            archive_name(&existing, "demo-1.1", sha),
            "8-demo-1.1-01234567.state.toml"
        );
    }
}

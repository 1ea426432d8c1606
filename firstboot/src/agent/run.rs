//! `vgpu-firstboot run`: the next part of the plan, from the state file.
//!
//! Every transition is on disk before the agent acts on it, so a power cut
//! at any point leaves a state from which the next boot converges: a step
//! found begun is run again (steps are idempotent), a requested reboot is
//! noted as done once the boot id changes.

use std::fmt;
use std::path::Path;

use super::bundle;
use super::fault::fault;
use super::gate;
use super::host::{Host, StepError, StepOutcome};
use super::progress;
use super::seal::seal;
use super::steps;
use crate::facts;
use crate::runner::{CommandSpec, Runner};
use crate::state::{self, Event, Failure, RetryTarget, State, StateError, StateStore, Status};
use vgpu_plan::gate::Kind;
use vgpu_plan::layout;
use vgpu_plan::plan::{Plan, StepKind};
use vgpu_rootfs::Root;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// The plan is complete (now or before).
    Done,
    /// A reboot was requested and `systemctl reboot` accepted it.
    Rebooting(String),
    /// A person must act; the one-line action.
    NeedsOperator(String),
    /// A step failed; the one-line cause.
    Failed(String),
}

impl fmt::Display for RunEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunEnd::Done => f.write_str("done"),
            RunEnd::Rebooting(why) => write!(f, "rebooting: {why}"),
            RunEnd::NeedsOperator(what) => write!(f, "needs an operator: {what}"),
            RunEnd::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// A run that could not even start (no plan, lock held, state of another
/// machine, ...).
#[derive(Debug)]
pub struct RunError(pub String);

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RunError {}

impl From<StateError> for RunError {
    fn from(e: StateError) -> Self {
        RunError(e.to_string())
    }
}

/// Reads and parses the plan under `root`, with its sha256.
pub fn load_plan(root: &Path) -> Result<(Plan, String), RunError> {
    read_plan(root).map(|(plan, sha, _)| (plan, sha))
}

/// [`load_plan`], with the plan file's size.
pub(crate) fn read_plan(root: &Path) -> Result<(Plan, String, u64), RunError> {
    let path = root.join(layout::PLAN_FILE);
    let cannot = |e: &dyn fmt::Display| {
        RunError(format!(
            "cannot read the plan {}: {e}; install a bundle (`vgpu-bake install`)",
            path.display()
        ))
    };
    let bytes = Root::at(root)
        .and_then(|r| r.read(layout::PLAN_FILE))
        .map_err(|e| cannot(&e.source))?
        .ok_or_else(|| cannot(&std::io::Error::from_raw_os_error(2)))?;
    let text = String::from_utf8(bytes.clone()).map_err(|_| {
        RunError(format!(
            "the plan {} is not UTF-8; re-bake the bundle",
            path.display()
        ))
    })?;
    let plan = Plan::from_toml(&text).map_err(|e| RunError(format!("{}: {e}", path.display())))?;
    Ok((plan, crate::sha256::sha256_hex(&bytes), bytes.len() as u64))
}

/// Runs the plan's next steps on the host under `root`.
pub fn run(root: &Path, runner: &mut dyn Runner) -> Result<RunEnd, RunError> {
    let fs = Root::at(root).map_err(|e| RunError(e.to_string()))?;
    if fs.resolves(super::undo::UNDONE_MARKER) {
        return Err(RunError(format!(
            "the plan was undone (`vgpu-firstboot undo`, {}): not applying it again; to apply it, remove that file and {}, start the unit",
            layout::absolute(super::undo::UNDONE_MARKER),
            layout::absolute(layout::STATE_FILE)
        )));
    }
    // With the link still there (a power cut between the seal's two
    // writes started the unit for it), go on: the done state seals again.
    if fs.resolves(layout::DONE_MARKER) && !fs.exists(layout::UNIT_WANTS_LINK) {
        errln!(
            "vgpu-firstboot: {} exists: the plan is complete, nothing to do",
            layout::absolute(layout::DONE_MARKER)
        );
        return Ok(RunEnd::Done);
    }
    let (plan, plan_sha, plan_size) = read_plan(root)?;
    let (mut store, st) = StateStore::open_locked(root)?;
    for note in store.take_notes() {
        errln!("vgpu-firstboot: {note}");
    }
    run_locked(root, runner, (&plan, &plan_sha, plan_size), &mut store, st)
}

/// [`run`] past its start: the plan read (`plan`, its sha256 and size) and
/// the state store locked (`store`, holding `st`). `upgrade` comes in here
/// with the state it has just bound to the new plan, without letting the
/// lock go in between.
pub(crate) fn run_locked(
    root: &Path,
    runner: &mut dyn Runner,
    (plan, plan_sha, plan_size): (&Plan, &str, u64),
    store: &mut StateStore,
    mut st: State,
) -> Result<RunEnd, RunError> {
    let machine_id = state::read_machine_id(root)?;
    // A state bound to another plan: its error names `upgrade`.
    store.bind(&mut st, plan, plan_sha, &machine_id)?;
    let boot_id = state::read_boot_id(root)?;
    let new_boot = st.current_boot() != Some(boot_id.as_str());
    store.apply(&mut st, Event::Booted(boot_id))?;
    match st.status.clone() {
        // Done, but the power went before the marker and the link: seal.
        Status::Done => {
            let facts = facts::Facts::default();
            let mut host = Host::new(root, runner, plan, &facts);
            seal(&mut host).map_err(|e| RunError(e.reason))?;
            progress::publish(&mut host, &st);
            return Ok(RunEnd::Done);
        }
        Status::Failed { step, reason } => {
            errln!("vgpu-firstboot: step {step} failed earlier: {reason}");
            errln!(
                "vgpu-firstboot: fix the cause, then `vgpu-firstboot retry` and start the unit again"
            );
            return Ok(RunEnd::Failed(reason));
        }
        // An operator action (MOK enrolment) needs a reboot by the operator:
        // on a new boot, look again; in the same boot, keep waiting.
        Status::NeedsOperator { action } if !new_boot => return Ok(RunEnd::NeedsOperator(action)),
        Status::NeedsOperator { .. } => {
            store.apply(&mut st, Event::Retry(RetryTarget::AllFailed))?
        }
        Status::NotStarted | Status::InProgress => {}
    }
    let facts = facts::read_facts(root).map_err(|e| RunError(e.to_string()))?;
    let mut host = Host::new(root, runner, plan, &facts);
    // A trial boot (agent/trial) running now is recorded before any step:
    // a power cut later in this boot must not make it look like a trial
    // that never came up.
    if let Err(e) = steps::observe_trial(&mut host) {
        host.note(format!("warning: trial boot record: {}", e.reason));
    }
    // The run starts phase 1, or phase 2 after the agent's reboot.
    let mut phase = progress::phase(&st);
    progress::publish(&mut host, &st);
    if let Some(end) = bundle_gate(&mut host, store, &mut st, plan_sha, plan_size)? {
        return Ok(end);
    }
    if let Some(end) = host_gate(&mut host, store, &mut st)? {
        return Ok(end);
    }
    for step in &plan.steps {
        let id = step.kind.id();
        if matches!(
            st.step(id).map(|r| &r.status),
            Some(state::StepState::Done { .. })
        ) {
            continue;
        }
        store.apply(&mut st, Event::Begin(id.to_owned()))?;
        host.note(format!("step {id}: {}", step.why));
        fault(id, "begun");
        let outcome = steps::execute(step, &mut host);
        fault(id, "applied");
        match outcome {
            Ok(StepOutcome::Done) => {
                store.apply(&mut st, Event::Complete(id.to_owned()))?;
                // Phase 2 starts without a reboot: the system had what it needs.
                if progress::phase(&st) != phase {
                    phase = progress::phase(&st);
                    progress::publish(&mut host, &st);
                }
            }
            // One reboot is what the plan needs. If the system still lacks
            // something after the agent's reboot, another one will not fix
            // it: carry on, and verify-reboot fails with what is missing.
            // verify-reboot's own requests (into a default committed for a
            // trial that came up before a power cut, or a trial again after
            // `retry`) are bounded by its trial record and the plan's cap.
            Ok(StepOutcome::Reboot(why)) if st.reboots > 0 && step.kind == StepKind::Reboot => {
                host.note(format!(
                    "already rebooted once and still: {why}; not rebooting again"
                ));
                store.apply(&mut st, Event::Complete(id.to_owned()))?;
            }
            Ok(StepOutcome::Reboot(why)) => {
                return reboot(&mut host, store, &mut st, id, why);
            }
            Ok(StepOutcome::NeedsOperator(action)) => {
                host.note(format!("step {id} needs an operator: {action}"));
                store.apply(&mut st, Event::NeedOperator(action.clone()))?;
                progress::publish(&mut host, &st);
                return Ok(RunEnd::NeedsOperator(action));
            }
            Err(e) => return fail(&mut host, store, &mut st, id, e),
        }
    }
    store.apply(&mut st, Event::Finish)?;
    fault("finish", "recorded");
    seal(&mut host).map_err(|e| RunError(e.reason))?;
    host.note(format!("plan {} complete", plan.name));
    progress::publish(&mut host, &st);
    Ok(RunEnd::Done)
}

/// The host gate ([`vgpu_plan::gate`]) before the first change of a fresh
/// run: no step of the plan done or begun. A host the plan does not fit is
/// refused with every reason and nothing changed: `failed` at the first
/// step, or `needs-operator` when only firmware settings stand in the way.
/// A demo plan is bound by the OS check only; the rest is reported.
///
/// It does not run again once a step is done (phase 2, or after a later
/// step failed): phase 1 has changed the host by then, so a refusal could
/// no longer leave it unchanged, and what the gate checks (release, cards)
/// does not change across the agent's reboot; `verify-reboot` and
/// `post-check` check what phase 2 needs.
fn host_gate(
    host: &mut Host,
    store: &mut StateStore,
    st: &mut State,
) -> Result<Option<RunEnd>, RunError> {
    let fresh = host.plan.steps.iter().all(|s| {
        !matches!(
            st.step(s.kind.id()).map(|r| &r.status),
            Some(state::StepState::Done { .. } | state::StepState::Begun { .. })
        )
    });
    let Some(first) = host.plan.steps.first().filter(|_| fresh) else {
        return Ok(None);
    };
    let report = gate::check(&host.root, host.plan, host.facts);
    for line in report.lines() {
        host.note(line);
    }
    let reasons: Vec<&str> = report.binding().map(|r| r.message.as_str()).collect();
    match report.verdict() {
        None => Ok(None),
        Some(Kind::NeedsOperator) => {
            let action = format!("host gate, nothing was changed: {}", reasons.join("; "));
            store.apply(st, Event::NeedOperator(action.clone()))?;
            progress::publish(host, st);
            Ok(Some(RunEnd::NeedsOperator(action)))
        }
        Some(Kind::Fail) => {
            let id = first.kind.id();
            store.apply(st, Event::Begin(id.to_owned()))?;
            let reason = format!(
                "host gate: this plan does not fit this host, nothing was changed: {}",
                reasons.join("; ")
            );
            fail(host, store, st, id, StepError::new(reason)).map(Some)
        }
    }
}

/// The installed bundle checked ([`bundle::check`]) whenever phase 1 is
/// entered or re-entered (the state records no reboot done or asked for):
/// a fresh run, a run after a power cut in phase 1, a run after `retry`. The state, not
/// the plan, says which phase it is, so a changed plan cannot skip this.
/// A difference fails the first pending step with nothing changed.
fn bundle_gate(
    host: &mut Host,
    store: &mut StateStore,
    st: &mut State,
    plan_sha: &str,
    plan_size: u64,
) -> Result<Option<RunEnd>, RunError> {
    // Past phase 1: the reboot step is done, or the agent asked for the
    // reboot (its step runs again after it, to see it took effect).
    let reboot = StepKind::Reboot.id();
    if st.reboots > 0
        || matches!(
            st.step(reboot).map(|r| &r.status),
            Some(state::StepState::Done { .. })
        )
    {
        return Ok(None);
    }
    let checked = host
        .fs()
        .and_then(|fs| bundle::check(&fs, &host.plan.name, plan_sha, plan_size));
    match checked {
        Ok(c) => {
            host.note(match (&c.signed_by, c.signed) {
                (Some(key), _) => format!(
                    "bundle verified: signature by trusted key {key}, plan and {} files match the manifest",
                    c.files.len() + 1
                ),
                (None, true) => format!(
                    "bundle verified: plan and {} files match the manifest (signed, but {} holds no trusted key: signature not checked)",
                    c.files.len() + 1,
                    layout::absolute(layout::TRUSTED_KEYS_DIR)
                ),
                (None, false) => format!(
                    "bundle verified: plan and {} files match the manifest (unsigned; {} holds no trusted key)",
                    c.files.len() + 1,
                    layout::absolute(layout::TRUSTED_KEYS_DIR)
                ),
            });
            Ok(None)
        }
        Err(e) => {
            let Some(step) = host.plan.steps.iter().find(|s| {
                !matches!(
                    st.step(s.kind.id()).map(|r| &r.status),
                    Some(state::StepState::Done { .. })
                )
            }) else {
                return Err(RunError(format!("bundle check: {}", e.reason)));
            };
            let id = step.kind.id();
            store.apply(st, Event::Begin(id.to_owned()))?;
            let reason = format!("bundle check, nothing was run: {}", e.reason);
            fail(host, store, st, id, StepError::new(reason)).map(Some)
        }
    }
}

fn fail(
    host: &mut Host,
    store: &mut StateStore,
    st: &mut State,
    step: &str,
    e: StepError,
) -> Result<RunEnd, RunError> {
    host.note(format!("step {step} failed: {}", e.reason));
    if !e.stderr_tail.is_empty() {
        host.note(format!(
            "stderr of the failed command:\n{}",
            e.stderr_tail.trim_end()
        ));
    }
    let failure = Failure {
        reason: e.reason.clone(),
        exit_code: e.exit_code,
        stderr_tail: e.stderr_tail.clone(),
    };
    store.apply(st, Event::Fail(step.to_string(), failure))?;
    progress::publish(host, st);
    host.note("the host is unchanged beyond the completed steps and still boots; fix the cause, then `vgpu-firstboot retry`");
    Ok(RunEnd::Failed(e.reason))
}

/// Records the reboot on disk (the state says so before it happens), then
/// asks systemd for it. Past the plan's cap the step fails instead.
fn reboot(
    host: &mut Host,
    store: &mut StateStore,
    st: &mut State,
    step: &str,
    why: String,
) -> Result<RunEnd, RunError> {
    match store.request_reboot(st) {
        Ok(()) => {}
        Err(StateError::RebootCap { reboots, cap }) => {
            let reason = format!(
                "a reboot is still needed ({why}) but the agent rebooted {reboots} time(s), the plan's cap is {cap}: no reboot again. Fix the cause, then `vgpu-firstboot retry`"
            );
            host.note(&reason);
            return Ok(RunEnd::Failed(reason));
        }
        Err(e) => return Err(e.into()),
    }
    host.note(format!("rebooting: {why}"));
    // Bounded ([`progress::POST_LIMIT`]): a collector that hangs does not
    // hold the reboot up for longer.
    progress::publish(host, st);
    let spec = CommandSpec::new("systemctl", ["reboot"])
        .why("reboot into the configuration phase 2 needs");
    match host.runner.run(&spec) {
        Ok(out) if out.success() => Ok(RunEnd::Rebooting(why)),
        Ok(out) => fail(
            host,
            store,
            st,
            step,
            StepError {
                reason: crate::runner::format_failure(&spec, &out),
                exit_code: out.exit_code,
                stderr_tail: out.stderr_tail,
            },
        ),
        Err(e) => fail(
            host,
            store,
            st,
            step,
            StepError::new(format!("cannot run `systemctl reboot`: {e}")),
        ),
    }
}

//! `vgpu-firstboot status`: exit code, human text and JSON of a [`State`].
//!
//! The exit codes and the JSON keys are an interface (scripts and fleet
//! tools read them): add keys freely; renaming or removing one bumps
//! [`JSON_SCHEMA`].

use std::fmt::Write as _;

use serde::Serialize;

use super::found::{EXIT_NEW_PLAN, EXIT_NO_BUNDLE, EXIT_UNREADABLE, Found};
use super::{State, Status, StepRecord, StepState};
use vgpu_plan::layout;

/// Version of the JSON document [`render_json`] writes. 3: the statuses
/// `no-bundle`, `new-plan` and `state-unreadable` and the key
/// `installed-plan-sha256`; 2: kebab-case keys (1 had snake_case ones).
pub const JSON_SCHEMA: u32 = 3;

/// The state [`Found::NoBundle`] and [`Found::Unreadable`] report: nothing.
static BLANK: State = State::BLANK;

/// Events shown by [`render_human`] (the JSON has all of them).
const HUMAN_EVENTS: usize = 8;

/// The CLI's exit code for `state`: 0 done, 1 failed, 2 needs an operator,
/// 3 in progress or not started ([`Found::exit_code`] adds 4 no bundle, 5
/// a new plan, 6 the state cannot be read).
pub fn exit_code(state: &State) -> i32 {
    match state.status {
        Status::Done => 0,
        Status::Failed { .. } => 1,
        Status::NeedsOperator { .. } => 2,
        Status::InProgress | Status::NotStarted => 3,
    }
}

pub(crate) fn status_name(status: &Status) -> &'static str {
    match status {
        Status::NotStarted => "not-started",
        Status::InProgress => "in-progress",
        Status::NeedsOperator { .. } => "needs-operator",
        Status::Failed { .. } => "failed",
        Status::Done => "done",
    }
}

/// `secs` since the epoch as `YYYY-MM-DD HH:MM:SSZ` (UTC, proleptic
/// Gregorian; the civil-from-days algorithm, so no date crate is needed).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// What `vgpu-firstboot status` prints for a person.
pub fn render_human(state: &State) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; the results are ignored below.
    let _ = match &state.status {
        Status::NotStarted => writeln!(out, "vgpu-firstboot: not started"),
        Status::InProgress => writeln!(out, "vgpu-firstboot: in progress"),
        Status::Done => writeln!(out, "vgpu-firstboot: done"),
        Status::Failed { step, reason } => writeln!(
            out,
            "vgpu-firstboot: FAILED at step {step}\n  cause: {reason}\n  next: fix the cause, then run `vgpu-firstboot retry`"
        ),
        Status::NeedsOperator { action } => writeln!(
            out,
            "vgpu-firstboot: NEEDS AN OPERATOR\n  action: {action}\n  next: the agent resumes by itself at the next boot"
        ),
    };
    if !state.plan_sha256.is_empty() {
        let _ = writeln!(out, "plan sha256: {}", state.plan_sha256);
        let _ = writeln!(out, "machine id:  {}", state.machine_id);
    }
    let _ = writeln!(
        out,
        "boots: {} seen, reboots: {} of at most {}{}",
        state.boot_ids.len(),
        state.reboots,
        state.reboot_cap,
        if state.pending_reboot.is_some() {
            " (a reboot is pending)"
        } else {
            ""
        }
    );
    if !state.steps.is_empty() {
        let width = state.steps.iter().map(|s| s.id.len()).max().unwrap_or(0);
        let _ = writeln!(out, "steps:");
        for step in &state.steps {
            let detail = match &step.status {
                StepState::Pending if step.attempts > 0 => {
                    format!("to run again ({} attempts so far)", step.attempts)
                }
                StepState::Pending => String::new(),
                StepState::Begun { attempt, at, .. } => {
                    format!("attempt {attempt}, since {}", utc(*at))
                }
                StepState::Done { at, .. } => format!("at {}", utc(*at)),
                StepState::Failed {
                    attempt, exit_code, ..
                } => match exit_code {
                    Some(code) => format!("attempt {attempt}, exit code {code}"),
                    None => format!("attempt {attempt}"),
                },
            };
            let line = format!("  {:<7} {:<width$}  {detail}", step.status.name(), step.id);
            let _ = writeln!(out, "{}", line.trim_end());
            if let StepState::Failed { stderr_tail, .. } = &step.status {
                for l in tail_lines(stderr_tail, 5) {
                    let _ = writeln!(out, "          | {l}");
                }
            }
        }
    }
    if let Some(error) = &state.last_error {
        let _ = writeln!(out, "last error: {error}");
    }
    let shown = state.events.len().saturating_sub(HUMAN_EVENTS);
    if !state.events[shown..].is_empty() {
        let _ = writeln!(out, "recent events:");
        for e in &state.events[shown..] {
            let _ = writeln!(out, "  {}  {}", utc(e.at), e.what);
        }
    }
    out
}

/// What `vgpu-firstboot status` prints for a person, whatever it found.
pub fn render_found_human(found: &Found) -> String {
    match found {
        Found::State(st) => render_human(st),
        Found::NoBundle => format!(
            "vgpu-firstboot: no bundle installed (no {})\n  next: lay one on this host with `vgpu-bake install`\n",
            layout::absolute(layout::PLAN_FILE)
        ),
        Found::NewPlan(st, sha) => format!(
            "vgpu-firstboot: NEW PLAN, not run\n  the installed plan (sha256 {sha}) is not the one {} records; it has not run\n  next: `vgpu-firstboot upgrade` once the earlier plan is done or failed (it archives that state and applies the difference); or move that file aside to run the new plan from the first step\nthe earlier plan's state:\n{}",
            layout::absolute(layout::STATE_FILE),
            render_human(st)
        ),
        Found::Unreadable(why) => format!("vgpu-firstboot: STATE UNREADABLE\n  cause: {why}\n"),
    }
}

/// The last `n` non-empty lines of `text`.
fn tail_lines(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// The `vgpu-firstboot status --json` document, schema [`JSON_SCHEMA`]: one
/// JSON object on one line, every key always present (`null` when it does
/// not apply).
///
/// Keys, in order: `schema`, `status` (`not-started`, `in-progress`,
/// `needs-operator`, `failed`, `done`, `no-bundle`, `new-plan`,
/// `state-unreadable`), `exit-code` (as `status` exits), `failed-step`,
/// `reason`, `action`, `state-schema`, `plan-sha256`,
/// `installed-plan-sha256`, `machine-id`, `boot-ids`, `current-boot`,
/// `reboots`, `reboot-cap`, `pending-reboot`, `last-error`, `steps`
/// ([`StepReport`]) and `events` (`at`, `what`). For `new-plan` the state
/// keys describe the earlier plan's state.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct StatusReport<'a> {
    /// [`JSON_SCHEMA`].
    pub schema: u32,
    /// The overall status, kebab-case.
    pub status: &'static str,
    /// What `status` exits with: 0 done, 1 failed, 2 needs an operator, 3
    /// in progress or not started, 4 no bundle, 5 a new plan, 6 the state
    /// cannot be read.
    pub exit_code: i32,
    /// The failed step, when `status` is `failed`.
    pub failed_step: Option<&'a str>,
    /// Why it failed, when `status` is `failed`; why the state cannot be
    /// read (naming the file), when `state-unreadable`.
    pub reason: Option<&'a str>,
    /// What the operator must do, when `status` is `needs-operator`.
    pub action: Option<&'a str>,
    /// The state file's format version; 0 when it cannot be read.
    pub state_schema: u32,
    /// sha256 of the plan the state belongs to; empty until bound.
    pub plan_sha256: &'a str,
    /// sha256 of the installed plan, when `status` is `new-plan`.
    pub installed_plan_sha256: Option<&'a str>,
    /// `/etc/machine-id` of the host; empty until bound.
    pub machine_id: &'a str,
    /// Boots the agent ran in, oldest first.
    pub boot_ids: &'a [String],
    /// The last of `boot-ids`.
    pub current_boot: Option<&'a str>,
    /// Reboots requested since the start or the last retry.
    pub reboots: u32,
    /// Reboots allowed.
    pub reboot_cap: u32,
    /// Boot id in which a reboot was requested and not yet seen.
    pub pending_reboot: Option<&'a str>,
    /// The most recent failure, one line.
    pub last_error: Option<&'a str>,
    /// One entry per plan step, in plan order.
    pub steps: Vec<StepReport<'a>>,
    /// The whole event log, oldest first.
    pub events: Vec<EventReport<'a>>,
}

/// One step in [`StatusReport`]: `id`, `state` (`pending`, `begun`, `done`,
/// `failed`), `attempts`, then what applies to that state (`attempt`,
/// `boot-id`, `at`, `reason`, `exit-code`, `stderr-tail`), `null` otherwise.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct StepReport<'a> {
    /// The plan step's id.
    pub id: &'a str,
    /// Where it is.
    pub state: &'static str,
    /// How many times it has begun.
    pub attempts: u32,
    /// The attempt running (`begun`) or failed (`failed`).
    pub attempt: Option<u32>,
    /// The boot it began (`begun`) or finished (`done`) in.
    pub boot_id: Option<&'a str>,
    /// When it began or finished, seconds since the epoch.
    pub at: Option<u64>,
    /// Why it failed.
    pub reason: Option<&'a str>,
    /// Exit code of the failing command, if a command failed.
    pub exit_code: Option<i32>,
    /// The end of the failing command's stderr.
    pub stderr_tail: Option<&'a str>,
}

/// One event in [`StatusReport`].
#[derive(Debug, Serialize)]
pub struct EventReport<'a> {
    /// Seconds since the epoch.
    pub at: u64,
    /// What happened.
    pub what: &'a str,
}

impl<'a> StatusReport<'a> {
    /// The report for `state`.
    pub fn new(state: &'a State) -> Self {
        let (failed_step, reason, action) = match &state.status {
            Status::Failed { step, reason } => (Some(step.as_str()), Some(reason.as_str()), None),
            Status::NeedsOperator { action } => (None, None, Some(action.as_str())),
            _ => (None, None, None),
        };
        StatusReport {
            schema: JSON_SCHEMA,
            status: status_name(&state.status),
            exit_code: exit_code(state),
            failed_step,
            reason,
            action,
            state_schema: state.schema,
            plan_sha256: &state.plan_sha256,
            installed_plan_sha256: None,
            machine_id: &state.machine_id,
            boot_ids: &state.boot_ids,
            current_boot: state.current_boot(),
            reboots: state.reboots,
            reboot_cap: state.reboot_cap,
            pending_reboot: state.pending_reboot.as_deref(),
            last_error: state.last_error.as_deref(),
            steps: state.steps.iter().map(StepReport::new).collect(),
            events: state
                .events
                .iter()
                .map(|e| EventReport {
                    at: e.at,
                    what: &e.what,
                })
                .collect(),
        }
    }
}

impl<'a> StepReport<'a> {
    fn new(step: &'a StepRecord) -> Self {
        let mut report = StepReport {
            id: &step.id,
            state: step.status.name(),
            attempts: step.attempts,
            attempt: None,
            boot_id: None,
            at: None,
            reason: None,
            exit_code: None,
            stderr_tail: None,
        };
        match &step.status {
            StepState::Pending => {}
            StepState::Begun {
                attempt,
                boot_id,
                at,
            } => {
                report.attempt = Some(*attempt);
                report.boot_id = Some(boot_id);
                report.at = Some(*at);
            }
            StepState::Done { boot_id, at } => {
                report.boot_id = Some(boot_id);
                report.at = Some(*at);
            }
            StepState::Failed {
                attempt,
                reason,
                exit_code,
                stderr_tail,
            } => {
                report.attempt = Some(*attempt);
                report.reason = Some(reason);
                report.exit_code = *exit_code;
                report.stderr_tail = Some(stderr_tail);
            }
        }
        report
    }
}

/// The report for what `status` found; `exit_code` is what it exits with.
pub fn found_report(found: &Found, exit_code: u8) -> StatusReport<'_> {
    let (state, status) = match found {
        Found::State(st) => (st, None),
        Found::NoBundle => (&BLANK, Some("no-bundle")),
        Found::NewPlan(st, _) => (st, Some("new-plan")),
        Found::Unreadable(_) => (&BLANK, Some("state-unreadable")),
    };
    let mut report = StatusReport::new(state);
    report.exit_code = exit_code.into();
    if let Some(status) = status {
        report.status = status;
        report.failed_step = None;
        report.reason = None;
        report.action = None;
    }
    match found {
        Found::NewPlan(_, sha) => report.installed_plan_sha256 = Some(sha),
        Found::Unreadable(why) => {
            report.reason = Some(why);
            report.state_schema = 0;
        }
        _ => {}
    }
    report
}

impl Found {
    /// What `status` exits with (before the done marker is considered).
    pub fn exit_code(&self) -> u8 {
        match self {
            Found::State(st) => u8::try_from(exit_code(st)).unwrap_or(1),
            Found::NoBundle => EXIT_NO_BUNDLE,
            Found::NewPlan(..) => EXIT_NEW_PLAN,
            Found::Unreadable(_) => EXIT_UNREADABLE,
        }
    }
}

/// What `vgpu-firstboot status --json` prints for what it found.
pub fn render_found_json(found: &Found, exit_code: u8) -> Result<String, serde_json::Error> {
    serde_json::to_string(&found_report(found, exit_code))
}

/// What `vgpu-firstboot status --json` prints: [`StatusReport`] on one line.
/// (Strings and integers always serialise; the error is serde_json's type.)
pub fn render_json(state: &State) -> Result<String, serde_json::Error> {
    serde_json::to_string(&StatusReport::new(state))
}

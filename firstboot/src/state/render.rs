//! `vgpu-firstboot status`: exit code, human text and JSON of a [`State`].
//!
//! The exit codes and the JSON keys are an interface (scripts and fleet
//! tools read them): add keys, never rename or remove them.

use std::fmt::Write as _;

use super::{State, Status, StepState};
use crate::json::{self, Object};

/// Version of the JSON document [`render_json`] writes.
pub const JSON_SCHEMA: u32 = 1;

/// Events shown by [`render_human`] (the JSON has all of them).
const HUMAN_EVENTS: usize = 8;

/// The CLI's exit code for `state`: 0 done, 1 failed, 2 needs an operator,
/// 3 in progress or not started.
pub fn exit_code(state: &State) -> i32 {
    match state.status {
        Status::Done => 0,
        Status::Failed { .. } => 1,
        Status::NeedsOperator { .. } => 2,
        Status::InProgress | Status::NotStarted => 3,
    }
}

fn status_name(status: &Status) -> &'static str {
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
            "vgpu-firstboot: NEEDS AN OPERATOR\n  action: {action}\n  next: then run `vgpu-firstboot retry`"
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

/// The last `n` non-empty lines of `text`.
fn tail_lines(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// What `vgpu-firstboot status --json` prints: one JSON object, keys always
/// present (`null` when they do not apply), versioned by `schema`.
pub fn render_json(state: &State) -> String {
    let (step, reason, action) = match &state.status {
        Status::Failed { step, reason } => (Some(step.as_str()), Some(reason.as_str()), None),
        Status::NeedsOperator { action } => (None, None, Some(action.as_str())),
        _ => (None, None, None),
    };
    let steps = state.steps.iter().map(|s| {
        let (mut attempt, mut boot, mut at) = (None, None, None);
        let (mut reason, mut code, mut tail) = (None, None, None);
        match &s.status {
            StepState::Pending => {}
            StepState::Begun {
                attempt: a,
                boot_id,
                at: t,
            } => (attempt, boot, at) = (Some(*a), Some(boot_id.as_str()), Some(*t)),
            StepState::Done { boot_id, at: t } => (boot, at) = (Some(boot_id.as_str()), Some(*t)),
            StepState::Failed {
                attempt: a,
                reason: r,
                exit_code,
                stderr_tail,
            } => {
                (attempt, reason, code) = (Some(*a), Some(r.as_str()), *exit_code);
                tail = Some(stderr_tail.as_str());
            }
        }
        Object::new()
            .str("id", &s.id)
            .str("state", s.status.name())
            .int("attempts", s.attempts)
            .opt_int("attempt", attempt)
            .opt_str("boot_id", boot)
            .opt_int("at", at)
            .opt_str("reason", reason)
            .opt_int("exit_code", code)
            .opt_str("stderr_tail", tail)
            .finish()
    });
    let events = state
        .events
        .iter()
        .map(|e| Object::new().int("at", e.at).str("what", &e.what).finish());
    Object::new()
        .int("schema", JSON_SCHEMA)
        .str("status", status_name(&state.status))
        .int("exit_code", exit_code(state))
        .opt_str("failed_step", step)
        .opt_str("reason", reason)
        .opt_str("action", action)
        .int("state_schema", state.schema)
        .str("plan_sha256", &state.plan_sha256)
        .str("machine_id", &state.machine_id)
        .raw(
            "boot_ids",
            &json::array(state.boot_ids.iter().map(|b| json::string(b))),
        )
        .opt_str("current_boot", state.current_boot())
        .int("reboots", state.reboots)
        .int("reboot_cap", state.reboot_cap)
        .opt_str("pending_reboot", state.pending_reboot.as_deref())
        .opt_str("last_error", state.last_error.as_deref())
        .raw("steps", &json::array(steps))
        .raw("events", &json::array(events))
        .finish()
}

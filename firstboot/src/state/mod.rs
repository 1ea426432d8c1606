//! The agent's crash-safe state file, `var/lib/vgpu-firstboot/state.toml`.
//!
//! The state is a typed machine: an overall [`Status`], a [`StepState`] per
//! plan step, and the facts needed to resume safely after a crash or a
//! reboot (boot ids, reboot count, attempts, last error). It changes only
//! through [`Event`]s; [`State::next`] is the transition table, a
//! `match (status, event)` that rejects illegal moves instead of guessing.
//!
//! [`StateStore`] persists every transition before the agent acts on it:
//! temp file in the same directory, fsync, rename, fsync the directory, all
//! under an exclusive lock held for the agent's run. A power cut therefore
//! leaves either the old or the new state on disk, never half of one.
//!
//! A run of the agent, in order:
//! 1. [`StateStore::open_locked`]: lock, drop a leftover temp file, read the
//!    state (a missing file is [`Status::NotStarted`]).
//! 2. [`StateStore::bind`]: tie a fresh state to the plan (its sha256) and
//!    the machine (`/etc/machine-id`); an existing state must match both,
//!    so a cloned disk or a different bundle is reported, never reused.
//! 3. [`Event::Booted`] with the current boot id, at every start-up. A step
//!    still `Begun` at start-up was interrupted (crash, power cut, reboot,
//!    killed agent): it is reset to `Pending` and runs again, which is why
//!    every step must be idempotent.
//! 4. Per step: [`Event::Begin`], run it, then [`Event::Complete`] or
//!    [`Event::Fail`]; the failure is on disk before the agent reports it.
//! 5. [`Event::Finish`] once every step is done.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod codec;
mod found;
mod machine;
mod render;
mod store;

pub use codec::to_toml as encode;
pub use found::{EXIT_NEW_PLAN, EXIT_NO_BUNDLE, EXIT_UNREADABLE, Found, Installed, found};
pub(crate) use render::status_name;
pub use render::{
    EventReport, JSON_SCHEMA, StatusReport, StepReport, exit_code, found_report,
    render_found_human, render_found_json, render_human, render_json, utc,
};
pub use store::{
    LOCK_FILE, STATE_LIMIT, StateStore, TEMP_NAME, decode, load, read_boot_id, read_machine_id,
};

/// Current state file format version.
pub const SCHEMA: u32 = 1;

/// Entries kept in the event log; older ones are dropped.
pub const EVENT_LOG_CAP: usize = 50;

/// Boot ids kept; older ones are dropped (the reboot cap keeps this small
/// in practice, but manual runs add boots too).
pub const BOOT_IDS_CAP: usize = 32;

/// Everything the agent knows about its progress on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct State {
    /// Format version, [`SCHEMA`].
    pub schema: u32,
    /// sha256 of the plan this state belongs to; empty until bound.
    #[serde(default)]
    pub plan_sha256: String,
    /// `/etc/machine-id` of the host this state belongs to; empty until bound.
    #[serde(default)]
    pub machine_id: String,
    /// Reboots the agent requested since it started or since the last retry.
    #[serde(default)]
    pub reboots: u32,
    /// Reboots allowed before the agent stops (the plan's `reboot-cap`).
    #[serde(default)]
    pub reboot_cap: u32,
    /// Boot id in which a reboot was requested and not yet seen to happen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_reboot: Option<String>,
    /// The most recent failure, one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Boots the agent ran in, oldest first; the last one is the current boot.
    #[serde(default)]
    pub boot_ids: Vec<String>,
    /// Overall status.
    pub status: Status,
    /// One record per plan step, in plan order.
    #[serde(default, rename = "step")]
    pub steps: Vec<StepRecord>,
    /// What happened, oldest first, at most [`EVENT_LOG_CAP`] entries.
    #[serde(default, rename = "event")]
    pub events: Vec<LogEntry>,
}

impl State {
    /// Nothing done, bound to nothing (also `status`'s view when there is
    /// no state to show).
    pub const BLANK: State = State {
        schema: SCHEMA,
        plan_sha256: String::new(),
        machine_id: String::new(),
        reboots: 0,
        reboot_cap: 0,
        pending_reboot: None,
        last_error: None,
        boot_ids: Vec::new(),
        status: Status::NotStarted,
        steps: Vec::new(),
        events: Vec::new(),
    };
}

impl Default for State {
    /// [`State::BLANK`].
    fn default() -> Self {
        State::BLANK
    }
}

/// Overall status; [`exit_code`] maps it to the CLI's exit code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "state",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case"
)]
pub enum Status {
    /// No step has begun.
    NotStarted,
    /// Steps are running, or the agent is between boots.
    InProgress,
    /// The agent stopped; a person must act (e.g. enrol a MOK key at the
    /// console); the agent resumes by itself at the next boot.
    NeedsOperator {
        /// What to do, one line.
        action: String,
    },
    /// A step failed; the agent stopped.
    Failed {
        /// The step's id.
        step: String,
        /// One-line cause.
        reason: String,
    },
    /// Every step is done.
    Done,
}

/// Progress of one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StepRecord {
    /// The plan step's id.
    pub id: String,
    /// How many times the step has begun.
    #[serde(default)]
    pub attempts: u32,
    /// Where it is.
    pub status: StepState,
}

/// Where one step is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "state",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case"
)]
pub enum StepState {
    /// Not begun (or reset to run again).
    Pending,
    /// Marked before the step runs; still there after a crash.
    Begun {
        /// Attempt number, from 1.
        attempt: u32,
        /// Boot in which it began.
        boot_id: String,
        /// Seconds since the epoch.
        at: u64,
    },
    /// Finished successfully.
    Done {
        /// Boot in which it finished.
        boot_id: String,
        /// Seconds since the epoch.
        at: u64,
    },
    /// Failed; `vgpu-firstboot retry` sets it back to pending.
    Failed {
        /// Attempt that failed.
        attempt: u32,
        /// One-line cause.
        reason: String,
        /// Exit code of the failing command, if a command failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// The end of the failing command's stderr.
        #[serde(default)]
        stderr_tail: String,
    },
}

impl StepState {
    /// Lower-case name, as in the file.
    pub fn name(&self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Begun { .. } => "begun",
            StepState::Done { .. } => "done",
            StepState::Failed { .. } => "failed",
        }
    }
}

/// One line of the event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LogEntry {
    /// Seconds since the epoch.
    pub at: u64,
    /// What happened.
    pub what: String,
}

/// Why a step failed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Failure {
    /// One-line cause (e.g. [`crate::runner::format_failure`]).
    pub reason: String,
    /// Exit code of the failing command, if a command failed.
    pub exit_code: Option<i32>,
    /// The end of its stderr.
    pub stderr_tail: String,
}

impl Failure {
    /// A failure with only a reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Failure {
            reason: reason.into(),
            ..Self::default()
        }
    }
}

/// What [`Event::Retry`] resets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryTarget {
    /// One failed step.
    Step(String),
    /// Every failed step (and a needs-operator stop).
    AllFailed,
}

/// Something that changes the state; see [`State::next`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A step is about to run.
    Begin(String),
    /// The begun step succeeded.
    Complete(String),
    /// The begun step failed.
    Fail(String, Failure),
    /// The agent stops until a person does this.
    NeedOperator(String),
    /// The agent is about to reboot the host (counted against the cap).
    RebootRequested,
    /// The agent started in the boot with this id (sent at every start-up).
    Booted(String),
    /// The operator asks to run failed steps again.
    Retry(RetryTarget),
    /// Every step is done.
    Finish,
}

/// A source of "now", in seconds since the epoch; tests use [`FixedClock`].
pub trait Clock {
    /// Seconds since the epoch.
    fn now(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// Always the same time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedClock(pub u64);

impl Clock for FixedClock {
    fn now(&self) -> u64 {
        self.0
    }
}

/// Everything that can go wrong with the state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another agent holds the lock.
    #[error(
        "another vgpu-firstboot is running ({holder}, lock {}); wait for it to finish or see `systemctl status vgpu-firstboot`",
        lock.display()
    )]
    Locked {
        /// The lock file.
        lock: PathBuf,
        /// Who holds it, from the pid in the lock file.
        holder: String,
    },
    /// Reading or writing a file failed.
    #[error(
        "{what} {}: {source}; check the filesystem holding it (full? read-only? `df`, `dmesg`), then run the command again (`vgpu-firstboot retry` resumes a run)",
        path.display()
    )]
    Io {
        /// What was being done, e.g. "writing".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The state file cannot be parsed.
    #[error(
        "{} is not a valid state file ({detail}), never replaced silently: move it aside, then `vgpu-firstboot retry` starts over from the first step (steps are idempotent)",
        path.display()
    )]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// The parser's complaint.
        detail: String,
    },
    /// The state file has a format this agent does not know.
    #[error(
        "{} has schema {found}, this agent reads schema {SCHEMA}; use the vgpu-firstboot that wrote it, or move the file aside to start over",
        path.display()
    )]
    Schema {
        /// The state file.
        path: PathBuf,
        /// The schema found.
        found: u32,
    },
    /// The state was written on another machine.
    #[error(
        "{} belongs to machine {state_machine}, but this host is {host_machine} (cloned disk?); remove it to start over on this host",
        path.display()
    )]
    OtherMachine {
        /// The state file.
        path: PathBuf,
        /// Machine id in the state.
        state_machine: String,
        /// This host's machine id.
        host_machine: String,
    },
    /// The state was written for another plan.
    #[error(
        "{} was written for plan sha256 {state_plan}, but the installed plan is {plan} (bundle replaced?); `vgpu-firstboot upgrade` applies the new plan over a finished one (the state is archived), or remove the file to run it from the first step",
        path.display()
    )]
    OtherPlan {
        /// The state file.
        path: PathBuf,
        /// Plan sha256 in the state.
        state_plan: String,
        /// sha256 of the installed plan.
        plan: String,
    },
    /// The reboot-loop guard.
    #[error(
        "refusing to reboot: the agent already rebooted the host {reboots} times (cap {cap}) and it still lacks what phase 2 needs; check /proc/cmdline and the boot loader, then `vgpu-firstboot retry`"
    )]
    RebootCap {
        /// Reboots so far.
        reboots: u32,
        /// The plan's cap.
        cap: u32,
    },
    /// An event the current state does not allow.
    #[error("cannot {event} while the agent is {status}: {why}")]
    Illegal {
        /// The event.
        event: String,
        /// The current status.
        status: String,
        /// Why, and what to do.
        why: String,
    },
}

#[cfg(test)]
mod tests;

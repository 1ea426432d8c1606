//! What `status` found: the state file read against the installed bundle.
//! A pure decision; `commands::status` does the reading.

use super::{State, StateError};

/// The exit code of [`Found::NoBundle`].
pub const EXIT_NO_BUNDLE: u8 = 4;
/// The exit code of [`Found::NewPlan`].
pub const EXIT_NEW_PLAN: u8 = 5;
/// The exit code of [`Found::Unreadable`].
pub const EXIT_UNREADABLE: u8 = 6;

/// The installed plan, as far as `status` needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// sha256 of the plan file.
    pub sha256: String,
    /// Its `reboot-cap`.
    pub reboot_cap: u32,
}

/// What `status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The state of the installed plan (a fresh one before the first run,
    /// with the plan's reboot cap).
    State(State),
    /// No plan installed and no state file: nothing will ever run.
    NoBundle,
    /// The installed plan (its sha256) is not the one the state belongs to:
    /// it has not run, whatever the state says of the earlier plan.
    NewPlan(State, String),
    /// The state file (or the plan) cannot be read: why, naming the file.
    Unreadable(String),
}

/// Judges `state` (as [`super::load`] read it) against the installed plan
/// (`Ok(None)`: no plan file; `Err`: a plan file that cannot be read).
pub fn found(state: Result<State, StateError>, plan: Result<Option<Installed>, String>) -> Found {
    let mut st = match state {
        Ok(st) => st,
        Err(e) => return Found::Unreadable(e.to_string()),
    };
    match plan {
        Err(e) => Found::Unreadable(e),
        Ok(None) if st.plan_sha256.is_empty() => Found::NoBundle,
        // Bound, then the plan was removed: the state still tells the truth.
        Ok(None) => Found::State(st),
        Ok(Some(p)) if st.plan_sha256.is_empty() => {
            st.reboot_cap = p.reboot_cap;
            Found::State(st)
        }
        Ok(Some(p)) if p.sha256 != st.plan_sha256 => Found::NewPlan(st, p.sha256),
        Ok(Some(_)) => Found::State(st),
    }
}

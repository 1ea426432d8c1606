//! The agent's commands, one module each. Each prints its output and
//! returns the process exit code; `main` only parses and routes.
//!
//! Exit codes: `status` 0 done, 1 failed, 2 needs an operator, 3 in
//! progress or not started, 4 no bundle, 5 a new plan not run, 6 the state
//! cannot be read; the others 0 success, 1 failure (`run`: 2 when it waits
//! for an operator; `facts`: 3 when a fatal obstacle rules vGPU out). Usage
//! errors (2) are `main`'s. Output goes through `out!`/`outln!`/`errln!`,
//! which never panic on a closed stream.

mod dry_run;
mod facts;
mod licensing;
mod retry;
mod run;
mod status;
mod undo;
mod upgrade;

pub use dry_run::{DryRun, dry_run, dry_run_json, dry_run_report, render_text};
pub use facts::facts;
pub use licensing::licensing;
pub use retry::retry;
pub use run::run;
pub use status::status;
pub use undo::undo;
pub use upgrade::upgrade;

/// Prints `error` the way every command reports a failure, and returns 1.
fn fail(error: impl std::fmt::Display) -> u8 {
    errln!("vgpu-firstboot: {error}");
    1
}

/// Prints `doc` as one JSON document (`--json`); 0, or 1 if it cannot be
/// serialised.
fn print_json(doc: &impl serde::Serialize) -> u8 {
    match serde_json::to_string_pretty(doc) {
        Ok(text) => {
            outln!("{text}");
            0
        }
        Err(e) => fail(e),
    }
}

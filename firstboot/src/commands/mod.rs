//! The agent's commands, one module each. Each prints its output and
//! returns the process exit code; `main` only parses and routes.
//!
//! Exit codes: `status` 0 done, 1 failed, 2 needs an operator, 3 in
//! progress or not started; the others 0 success, 1 failure (`run`: 2 when
//! it waits for an operator). Usage errors (64) are `main`'s.

mod dry_run;
mod facts;
mod retry;
mod run;
mod status;

pub use dry_run::dry_run;
pub use facts::facts;
pub use retry::retry;
pub use run::run;
pub use status::status;

/// Prints `error` the way every command reports a failure, and returns 1.
fn fail(error: impl std::fmt::Display) -> u8 {
    eprintln!("vgpu-firstboot: {error}");
    1
}

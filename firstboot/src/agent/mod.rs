//! The agent: applies the plan's steps across boots, recording each in the
//! state file.

pub mod bundle;
pub mod confine;
mod fault;
pub mod gate;
pub mod host;
pub mod journal;
pub mod progress;
pub mod run;
pub mod seal;
pub(crate) mod shown;
pub mod steps;
pub mod summary;
pub mod trial;
pub mod undo;
pub mod upgrade;

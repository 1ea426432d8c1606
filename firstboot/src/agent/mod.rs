//! The agent: applies the plan's steps across boots, recording each in the
//! state file.

pub mod confine;
pub mod host;
pub mod run;
pub mod steps;

//! The vgpu-firstboot library: the agent a bundle installs.
//!
//! It reads the plan, manifest and compatibility table the builder baked
//! (their types are in the `vgpu-plan` crate, re-exported here) and applies
//! the plan's steps on the host.

// `out!`, `outln!`, `errln!` (output that never panics) in every module.
#[macro_use]
extern crate vgpu_rootfs;

pub mod agent;
pub mod cli;
pub mod commands;
pub mod edits;
pub mod facts;
pub mod runner;
pub mod sha256;
pub mod state;
pub mod verbosity;

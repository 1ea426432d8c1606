//! vgpu-hook: the Proxmox automated installer's first-boot hook.
//!
//! `vgpu-bake hook` and `vgpu-bake fleet` append a configuration (the fleet
//! index, where to find the bundles, the trusted keys) to this binary; the
//! installer copies the result to `/var/lib/proxmox-first-boot/` and runs it
//! once per boot with its ordering as `argv[1]` until it exits 0.
//!
//! The flow ([`first_boot`]): read the configuration from our own executable
//! ([`trailer`]) -> the host's identifiers ([`identity`]) -> the bundle the
//! index picks for them -> get it from the first source that has it, checked
//! against the index's size and sha256 before anything is written
//! ([`fetch`]) -> lay it with the same code as `vgpu-bake install`, install
//! the trusted keys, write the marker ([`lay`]) -> start the agent's unit
//! without waiting for it ([`systemd`]). What it says goes to the journal
//! and, on a real host, to the console ([`report`]).

// `out!`, `outln!`, `errln!` (output that never panics) in every module.
#[macro_use]
extern crate vgpu_rootfs;

pub mod args;
pub mod command;
pub mod fetch;
pub mod flow;
pub mod help;
pub mod identity;
pub mod lay;
pub mod report;
pub mod systemd;
pub mod trailer;

pub use flow::{HookError, first_boot};

//! vgpu-bake: bakes a profile and verified driver files into an overlay bundle.
//!
//! Data flow, one typed stage after another: [`profile`] (raw TOML, no
//! I/O) -> [`resolve`] (the only reader of the [`registry`] of drivers; with
//! the [`gpudb`] compatibility data) -> a [`resolve::Resolved`]: every
//! decision, and each payload file as a source with its pins ->
//! [`prepare`] makes the driver a verified file in the [`fetch`] cache ->
//! [`bake`] reads the payload and fills in its digests: a
//! `vgpu_plan::plan::Plan`, which cannot hold unbaked values -> [`bundle`]
//! streams the plan and payload into a `newc` cpio ([`newc`]) compressed
//! with zstd; [`inspect`] and [`install`] read it back.

/// The one atomic writer, shared with the agent (crate `vgpu-rootfs`).
pub use vgpu_rootfs::atomic;

// `out!`, `outln!`, `errln!` (output that never panics) in every module.
#[macro_use]
extern crate vgpu_rootfs;

pub mod bake;
pub mod blocks;
pub mod bundle;
pub mod check;
pub mod cli;
pub mod companion;
pub mod csv;
pub mod direct;
pub mod doctor;
pub mod fetch;
pub mod gpudb;
pub mod guest;
pub mod hash;
pub mod input;
pub mod inspect;
pub mod install;
pub mod newc;
pub mod prepare;
pub mod profile;
pub mod progress;
pub mod registry;
pub mod resolve;
pub mod rollout;
pub mod sign;
pub mod stamp;
pub mod term;
pub mod text;

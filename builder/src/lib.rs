//! vgpu-bake: bakes a profile and verified driver files into an overlay bundle.
//!
//! Data flow: [`profile`] (raw TOML, no I/O) -> [`resolve`] (with the
//! [`registry`] of drivers and the [`gpudb`] compatibility data) -> a
//! `vgpu_plan::plan::Plan`; [`fetch`] verifies driver files into a
//! cache; [`bundle`] streams the plan and payload into a `newc` cpio
//! ([`newc`]) compressed with zstd; [`inspect`] and [`install`] read it back.

/// The one atomic writer, shared with the agent (crate `vgpu-rootfs`).
pub use vgpu_rootfs::atomic;
pub mod bake;
pub mod bundle;
pub mod csv;
pub mod fetch;
pub mod gpudb;
pub mod hash;
pub mod inspect;
pub mod install;
pub mod newc;
pub mod profile;
pub mod registry;
pub mod resolve;

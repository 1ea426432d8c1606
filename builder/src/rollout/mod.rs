//! Rollout: what the Proxmox automated installer's first-boot hook carries
//! and how it picks a host's bundle.
//!
//! - [`index`]: a fleet's index: content-addressed bundles, the hosts that
//!   take each (by MAC address, DMI serial or system UUID) and an optional
//!   default; [`index::Index::select`] is the pure choice the hook makes.
//! - [`config`]: the hook's configuration (the index, where to look for the
//!   bundles, the trusted keys) and the trailer that carries it at the end
//!   of the hook executable.
//! - [`inventory`]: a fleet's inventory (hosts -> profiles) and its
//!   resolution; [`fleet`]: `vgpu-bake fleet`, the inventory into a
//!   directory of bundles, an index and a hook.
//! - [`flags`]: the hook's sources and keys from the command line.
//! - [`answer`]: `vgpu-bake answer`, the answer file's `[first-boot]`
//!   section and the installer's kernel arguments for a profile.
//! - [`usb`]: `vgpu-bake usb`, an ext4 image holding a bundle or a fleet.
//! - [`hook`]: the template and writing a hook; [`make`]: `vgpu-bake hook`.
//!
//! `vgpu-bake hook` and `vgpu-bake fleet` write these; the `vgpu-hook`
//! binary (crate `hook/`) reads them back from its own executable.

pub mod answer;
pub mod config;
pub mod flags;
pub mod fleet;
pub mod hook;
pub mod index;
pub mod inventory;
pub mod make;
pub mod usb;

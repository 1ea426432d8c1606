//! Host facts: what the agent knows about the machine it runs on.
//!
//! [`read_facts`] reads everything from files under a root directory (`/` on
//! a real host, a fixture tree in tests, a mounted disk), never from
//! commands such as `lspci`. Every path is resolved by the kernel inside
//! that root ([`vgpu_rootfs::Root`]): relative symlinks (sysfs is full of
//! them) are followed, an absolute link means the same path under the root
//! and `..` stops at the root, as in a chroot, so nothing outside the root
//! is ever read. A symlink loop is recorded in [`Facts::notes`].
//!
//! A missing optional file is a fact (`None`, `false`, empty list), not an
//! error. The decisions the plan leaves to the host (CPU vendor, boot loader,
//! GPU classification, whether vGPU can work at all) are pure functions over
//! [`Facts`] (`resolve_iommu`, `resolve_bootloader`, ...); `render_human` and
//! `render_json` print both.

use std::path::PathBuf;

mod decide;
mod read;
mod render;
mod report;

pub use decide::{
    BootloaderChoice, BootloaderKind, GpuVerdict, Obstacle, Severity, classify_gpus, proxmox_major,
    resolve_bootloader, resolve_iommu, vgpu_possible,
};
pub use read::read_facts;
pub use render::render_human;
pub use report::{Decisions, FactsReport, JSON_SCHEMA, VgpuReport, render_json};
/// The facts' types live in the contract crate: the builder's `check`
/// reads the document `facts --json` writes.
pub use vgpu_plan::facts::*;

/// Error reading facts or deciding from them.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    /// The root directory itself cannot be read.
    #[error(
        "cannot read the root directory {}: {source}; give --root the directory the host's root filesystem is mounted at, and run as root",
        path.display()
    )]
    Root {
        /// The root given.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file exists but cannot be read (not merely missing).
    #[error(
        "reading {}: {source}; the agent runs as root: check the file's permissions and the filesystem (`dmesg` shows I/O errors)",
        path.display()
    )]
    Read {
        /// The file, root prefix included.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The plan leaves the CPU vendor to the host and the host's is unknown.
    #[error(
        "cannot choose the IOMMU kernel arguments: CPU vendor {} is neither GenuineIntel nor AuthenticAMD; set host.iommu = \"intel\" or \"amd\" in the profile",
        vendor_id.as_deref().map_or("(no vendor_id in /proc/cpuinfo)".to_string(), |v| format!("`{v}`"))
    )]
    UnknownCpuVendor {
        /// The `vendor_id` found, if any.
        vendor_id: Option<String>,
    },
}

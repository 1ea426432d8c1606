//! A file's stamp: what proves it unchanged since it was hashed without
//! reading it again (device, inode, size and mtime to the nanosecond).
//!
//! The driver cache's sidecar records the stamp beside the digests; a bake
//! that finds the file with the same stamp trusts the digests, and the
//! bundle writer checks the stamp once more on the descriptor it reads.
//! Replacing the file (a new inode), writing to it (a new mtime) or
//! truncating it (a new size) all break the proof.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

use serde::{Deserialize, Serialize};

/// Device, inode, size and mtime of a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Seconds part of the mtime.
    pub mtime: i64,
    /// Nanoseconds part of the mtime.
    pub mtime_nsec: i64,
}

impl FileStamp {
    /// The stamp of a file's metadata.
    pub fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }
}

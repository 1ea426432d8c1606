//! What can be wrong with a bundle: [`Problem`] (one entry) and
//! [`InspectError`] (the bundle, naming its file and the entry).

use std::io;
use std::path::PathBuf;

use crate::newc::NewcError;

/// What to do about a bad bundle; ends every bundle error message.
pub const REMEDY: &str = "the bundle is damaged or was altered: copy it again, or re-bake it";

/// What is wrong with one entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The path appears twice.
    #[error("the path appears more than once in the archive")]
    Duplicate,
    /// Entries out of byte order of path (the writer sorts them).
    #[error("it comes after {previous}: a bundle's entries are sorted by path")]
    Order {
        /// The entry before it.
        previous: String,
    },
    /// Its parent is not a directory entry written before it.
    #[error("its parent {parent} is {what}, not a directory earlier in the archive")]
    ParentNotDir {
        /// The parent path.
        parent: String,
        /// `missing`, `a file` or `a symlink`.
        what: &'static str,
    },
    /// Not a file, directory or symlink.
    #[error(
        "unsupported entry type (mode {0:o}): a device node, FIFO or socket; a bundle holds files, directories and one symlink"
    )]
    Unsupported(u32),
    /// A directory with a body, or a symlink with a bad target.
    #[error("malformed entry: {0}")]
    Malformed(&'static str),
    /// A link count other than the writer's (a hard link).
    #[error("link count {0}: a hard link (a bundle holds no hard links)")]
    Hardlink(u32),
    /// Owner not 0:0.
    #[error("owner {uid}:{gid} is not 0:0 (root)")]
    Owner {
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
    /// Permission bits a bundle never carries.
    #[error("mode {mode}: {reason}")]
    BadMode {
        /// The mode found.
        mode: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// Outside the documented layout.
    #[error("{0}")]
    Layout(&'static str),
    /// Larger than any such entry of a real bundle.
    #[error("its header declares {size} bytes, more than the {cap} bytes this entry may have")]
    TooLarge {
        /// Declared size.
        size: u64,
        /// The limit.
        cap: u64,
    },
    /// A payload or plan entry before the manifest.
    #[error(
        "it comes before the manifest {}: the manifest precedes every entry but the agent, its unit and their directories",
        vgpu_plan::layout::MANIFEST_FILE
    )]
    BeforeManifest,
    /// The manifest declares more bytes than the compressed bundle can hold.
    #[error(
        "the manifest declares {declared} bytes of files in a {compressed}-byte bundle, more than {ratio} times its size (a decompression bomb)"
    )]
    Bomb {
        /// Declared bytes.
        declared: u64,
        /// The bundle file's size.
        compressed: u64,
        /// The allowed ratio.
        ratio: u64,
    },
    /// An entry the manifest does not list.
    #[error("the entry is not listed in the manifest")]
    NotInManifest,
    /// The archive has another type of entry than the manifest lists.
    #[error("it is a {actual} in the archive, the manifest lists a {expected}")]
    Type {
        /// From the manifest.
        expected: &'static str,
        /// Found.
        actual: &'static str,
    },
    /// A symlink's target differs from the manifest.
    #[error("the symlink points to {actual:?}, the manifest says {expected:?}")]
    Target {
        /// From the manifest.
        expected: String,
        /// Found.
        actual: String,
    },
    /// Listed in the manifest but absent.
    #[error("the manifest lists this entry, but the archive has {0}")]
    Missing(&'static str),
    /// Content differs from the manifest.
    #[error("sha256 is {actual}, the manifest says {expected}")]
    Sha256 {
        /// From the manifest.
        expected: String,
        /// Computed.
        actual: String,
    },
    /// Size differs from the manifest.
    #[error("size is {actual}, the manifest says {expected}")]
    Size {
        /// From the manifest.
        expected: u64,
        /// Found.
        actual: u64,
    },
    /// Mode differs from the manifest.
    #[error("mode is {actual}, the manifest says {expected}")]
    Mode {
        /// From the manifest.
        expected: String,
        /// Found.
        actual: String,
    },
    /// The manifest or plan cannot be read.
    #[error("{0}")]
    BadText(String),
}

/// Error inspecting a bundle; names the bundle and entry and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The signature is missing or does not verify with a trusted key.
    #[error(transparent)]
    Signature(#[from] Box<crate::sign::SignError>),
    /// The bundle file cannot be opened.
    #[error("cannot open bundle {}: {source}; give the path of a bundle .cpio.zst (`vgpu-bake bake` writes them)", bundle.display())]
    Open {
        /// The bundle.
        bundle: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The bundle path is not a regular file (a FIFO, a device, a directory).
    #[error("bundle {} is {what}, not a regular file; give the path of a .cpio.zst file", bundle.display())]
    NotRegular {
        /// The bundle.
        bundle: PathBuf,
        /// What it is.
        what: &'static str,
    },
    /// The `NAME.cpio.zst.sha256` beside the bundle does not match it.
    #[error("bundle {} does not match its checksum file {}: {reason}; copy both files again, or re-bake", bundle.display(), sums.display())]
    Checksum {
        /// The bundle.
        bundle: PathBuf,
        /// The checksum file.
        sums: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Reading or decompressing failed (truncated or corrupt zstd).
    #[error("bundle {}: reading {} failed, the zstd stream is truncated or corrupt ({source}); {REMEDY}", bundle.display(), entry.as_deref().unwrap_or("the archive"))]
    Read {
        /// The bundle.
        bundle: PathBuf,
        /// The entry being read, if any.
        entry: Option<String>,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The decompressed data is not a valid newc archive.
    #[error("bundle {}: not a valid newc cpio archive: {source}; {REMEDY}", bundle.display())]
    Archive {
        /// The bundle.
        bundle: PathBuf,
        /// The cause.
        #[source]
        source: NewcError,
    },
    /// Data after the archive's trailer.
    #[error("bundle {}: {what} after the TRAILER!!! entry at byte {offset} (a bundle ends there); {REMEDY}", bundle.display())]
    Trailing {
        /// The bundle.
        bundle: PathBuf,
        /// Offset of the trailer's end in the uncompressed archive.
        offset: u64,
        /// What follows.
        what: &'static str,
    },
    /// One entry fails a check.
    #[error("bundle {}: entry {entry}: {problem}; {REMEDY}", bundle.display())]
    Entry {
        /// The bundle.
        bundle: PathBuf,
        /// The entry's path.
        entry: String,
        /// What is wrong.
        problem: Problem,
    },
}

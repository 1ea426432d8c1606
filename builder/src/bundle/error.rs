//! [`BundleError`]: what can go wrong building or writing a bundle; each
//! message names the bundle, entry or file, and what to do.

use std::io;
use std::path::{Path, PathBuf};

use crate::atomic::AtomicError;
use crate::newc::NewcError;

/// Error building or writing a bundle; names the bundle, entry or file.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A path that cannot go into a bundle.
    #[error("bundle path {path:?} is not allowed: {reason}")]
    BadPath {
        /// The path.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// The path is already in the spec.
    #[error("bundle path {path} was added twice: each path may appear once")]
    Duplicate {
        /// The path.
        path: String,
    },
    /// An ancestor of the path is a file or a symlink in the spec.
    #[error("cannot add {path}: {ancestor} is a {kind} in the bundle, not a directory")]
    UnderNonDir {
        /// The path.
        path: String,
        /// The ancestor.
        ancestor: String,
        /// What the ancestor is.
        kind: &'static str,
    },
    /// A file or symlink where the spec already has entries below.
    #[error("cannot add {path} as a {kind}: the bundle already has {child} under it")]
    HasChildren {
        /// The path.
        path: String,
        /// What was being added.
        kind: &'static str,
        /// An existing entry below it.
        child: String,
    },
    /// The manifest and signature paths belong to [`super::write_bundle`].
    #[error("{path} is reserved: write_bundle writes the manifest and its signature itself")]
    Reserved {
        /// The path.
        path: String,
    },
    /// A bundle name that is not a plain file name.
    #[error("bundle name {name:?} is not allowed: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A declared digest that is not hex of the right length.
    #[error("entry {path}: declared {what} {value:?} is not {len} hex digits")]
    BadDigest {
        /// The entry.
        path: String,
        /// `sha256` or `md5`.
        what: &'static str,
        /// The value given.
        value: String,
        /// Expected length.
        len: usize,
    },
    /// newc cannot store files of 4 GiB or more.
    #[error(
        "entry {path}: {size} bytes is more than a newc archive can hold (4 GiB - 1); split the file or leave it out of the bundle"
    )]
    TooLarge {
        /// The entry.
        path: String,
        /// Its size.
        size: u64,
    },
    /// A source file could not be read.
    #[error("entry {entry}: cannot read source file {}: {source}; fetch it again", file.display())]
    Source {
        /// The entry.
        entry: String,
        /// The source file.
        file: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A source file's content is not what it was declared as.
    #[error("entry {entry}: source file {} has {what} {actual}, but {expected} was declared; the file changed or the cache is corrupt: fetch it again", file.display())]
    Mismatch {
        /// The entry.
        entry: String,
        /// The source file.
        file: PathBuf,
        /// `sha256`, `md5` or `size`.
        what: &'static str,
        /// Declared value.
        expected: String,
        /// Actual value.
        actual: String,
    },
    /// Writing the archive failed.
    #[error("writing bundle {}: {source}; check that --out is writable and has room for it", bundle.display())]
    Write {
        /// The bundle being written.
        bundle: PathBuf,
        /// The cause.
        #[source]
        source: NewcError,
    },
    /// Signing the manifest failed.
    #[error("signing the bundle: {0}")]
    Sign(#[from] Box<crate::sign::SignError>),
    /// Creating, syncing or renaming an output file failed.
    #[error("writing the bundle: {0}; check that --out is writable and has room for it")]
    Atomic(#[from] AtomicError),
    /// [`super::BundleSpec::import_into`] on a path that is not that file's entry.
    #[error(
        "bundle path {path}: only a file source with the import's file and sha256, and no stamp, can be copied into the driver cache"
    )]
    BadImport {
        /// The path.
        path: String,
    },
    /// Copying the user's driver file into the cache failed, or its bytes
    /// are not the pinned ones (the same message as `fetch --driver-file`).
    #[error(transparent)]
    Import(#[from] crate::fetch::FetchError),
    /// A frame cache entry stayed damaged after it was rebuilt.
    #[error("frame cache entry {}: {source}; remove the directory {} (it is only a cache) and bake again", path.display(), path.parent().unwrap_or(Path::new(".")).display())]
    FrameCache {
        /// The entry's frames file.
        path: PathBuf,
        /// What is wrong.
        source: io::Error,
    },
}

//! Filesystem and console access shared by `vgpu-bake` and `vgpu-firstboot`.
//!
//! - [`atomic`]: the one atomic writer (temp file in the same directory,
//!   fsync, rename, fsync of the directory), path-based for the builder's
//!   own files and directory-handle based underneath.
//! - [`Root`]: a handle on a target root. Every path is resolved by the
//!   kernel (`openat2` with `RESOLVE_IN_ROOT`) relative to the root's open
//!   directory, so a symlink in the tree, absolute or full of `..`, can
//!   never lead a read or a write out of it: absolute targets resolve
//!   against the root, as in a chroot.
//! - [`out`]: `out!`, `outln!` and `errln!`, which never panic on a closed
//!   stdout or stderr.

pub mod atomic;
pub mod out;
mod root;

use std::io;
use std::path::PathBuf;

pub use atomic::{AtomicFile, DirSync};
pub use root::{READ_LIMIT, Root};

/// A filesystem operation that failed: what was being done, to which path
/// (as the host sees it), and why.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}", path = path.display())]
pub struct Error {
    /// What was being done ("writing", "renaming a temporary file to").
    pub action: &'static str,
    /// The file or directory involved, root prefix included.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: io::Error,
}

impl Error {
    /// The kind of the underlying I/O error.
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}

pub(crate) fn err(action: &'static str, path: PathBuf) -> impl FnOnce(io::Error) -> Error {
    move |source| Error {
        action,
        path,
        source,
    }
}

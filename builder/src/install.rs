//! `vgpu-bake install --root DIR`: lay a verified bundle onto a root,
//! all of it or nothing, in one decompression of the bundle.
//!
//! 1. Every entry is checked on its header as [`inspect`] checks it. The
//!    entries before the manifest (directories, the agent, its unit, the
//!    compatibility table) are held in memory, not written.
//! 2. Once the manifest and its signature are checked, every path and
//!    size is known: a conflict pass checks every destination in the
//!    target (a symlink, a special file or a directory where the bundle
//!    has something else) and a conflict anywhere writes nothing.
//! 3. The held entries, then the rest as they stream, are staged under
//!    temporary names beside their destinations (missing directories
//!    created), each file's sha256 compared with the manifest; bodies are
//!    hashed and written on a second thread (`install/body.rs`).
//! 4. Only when everything is staged, the trailer and the zstd stream's
//!    end checked and the `.sha256` beside the bundle matched is it
//!    renamed into place (`install/transaction.rs`); a failure at any step
//!    removes what this install created and restores what it replaced.
//!
//! A bundle whose entries before the manifest exceed what is held in
//! memory (large guest drivers) is checked whole first and laid out in a
//! second pass, as every bundle was before (`two_passes`).
//!
//! Every path is resolved through a [`Root`] (`openat2` with
//! `RESOLVE_IN_ROOT`): nothing can land outside the root, even if the target
//! changes during the install. Symlinks already in the target are refused
//! rather than followed: every component under the root is checked without
//! following it, and `rename` replaces a final-component symlink rather than
//! following it. The root itself is the operator's choice and may be a
//! symlink.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use vgpu_rootfs::Root;

use crate::atomic::AtomicError;
use crate::inspect::{EntryKind, InspectError, Opened, Problem, ReadWatch};

mod body;
mod pass;
mod transaction;
use pass::{HOLD, Laid, Pass, lay_out};
use transaction::{Staged, Transaction};

/// One entry laid onto the root, in archive order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// Path relative to the root.
    pub path: String,
    /// `file`, `dir` or `symlink`.
    pub kind: &'static str,
    /// Permission bits from the bundle.
    pub mode: u32,
    /// Bytes written (a symlink's target length; 0 for directories).
    pub size: u64,
}

/// Error installing a bundle; names the bundle, root and entry.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The bundle failed verification (nothing was written) or changed
    /// during the install.
    #[error(transparent)]
    Bundle(#[from] InspectError),
    /// The root is not a directory.
    #[error("cannot install into {}: {source}; give an existing directory as --root", root.display())]
    Root {
        /// The root.
        root: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The target already has something in the way.
    #[error("refusing to install {entry} from bundle {} into {}: {reason}; move it out of the way and install again", bundle.display(), root.display())]
    Refused {
        /// The bundle.
        bundle: PathBuf,
        /// The root.
        root: PathBuf,
        /// The entry.
        entry: String,
        /// What is in the way.
        reason: String,
    },
    /// A filesystem operation failed.
    #[error("installing {entry} from bundle {} into {}: {source}", bundle.display(), root.display())]
    Write {
        /// The bundle.
        bundle: PathBuf,
        /// The root.
        root: PathBuf,
        /// The entry.
        entry: String,
        /// The cause.
        #[source]
        source: AtomicError,
    },
}

/// Lays the bundle onto `root` and returns what it installed, in archive
/// order (directories that already existed included; their mode is left
/// alone). Refuses everything `inspect` refuses, and any symlink, special
/// file or directory in the target where the bundle has something else.
/// A refused or failed install leaves the target as it was.
pub fn install(bundle: &Path, root: &Path) -> Result<Vec<Installed>, InstallError> {
    install_trusted(bundle, root, &[]).map(|(written, _)| written)
}

/// What [`lay_out`] returns.
type Signed = (Vec<Installed>, Option<crate::sign::SignatureInfo>);

/// [`install`] of a bundle whose signature is checked first
/// ([`crate::inspect::inspect_trusted`]): with `keys`, an unsigned or
/// wrongly signed bundle writes nothing. Also returns the signature.
pub fn install_trusted(
    bundle: &Path,
    root: &Path,
    keys: &[crate::sign::TrustedKey],
) -> Result<Signed, InstallError> {
    install_watched(bundle, root, keys, None)
}

/// [`install_trusted`], telling `watch` how many compressed bytes of the
/// bundle each pass reads as it goes (a progress bar).
pub fn install_watched(
    bundle: &Path,
    root: &Path,
    keys: &[crate::sign::TrustedKey],
    watch: Option<ReadWatch>,
) -> Result<Signed, InstallError> {
    let meta = fs::metadata(root).map_err(|source| InstallError::Root {
        root: root.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(InstallError::Root {
            root: root.to_path_buf(),
            source: io::Error::other("not a directory"),
        });
    }
    let root = Root::at(root).map_err(|e| InstallError::Root {
        root: root.to_path_buf(),
        source: e.source,
    })?;
    let mut tx = Transaction::new(&root);
    let pass = Pass::One { keys, hold: HOLD };
    let laid = lay_out(
        Opened::open_deferred(bundle, watch.clone())?,
        &root,
        pass,
        &mut tx,
    )
    .map_err(|e| checksum_first(bundle, e))?;
    let (done, signature) = match laid {
        Laid::Staged(done, signature) => (done, signature),
        Laid::TooEarly => {
            drop(tx);
            tx = Transaction::new(&root);
            two_passes(bundle, &root, keys, &mut tx, watch)?
        }
    };
    tx.commit().map_err(|(entry, source)| InstallError::Write {
        bundle: bundle.to_path_buf(),
        root: root.base().to_path_buf(),
        entry,
        source,
    })?;
    Ok((done, signature))
}

/// What in the target is in the way of an entry of `kind`, if anything.
fn conflict(kind: &EntryKind, existing: Option<fs::FileType>) -> Option<&'static str> {
    let t = existing?;
    match kind {
        EntryKind::Dir if t.is_dir() => None,
        EntryKind::Dir if t.is_symlink() => Some("a symlink where the bundle has a directory"),
        EntryKind::Dir => Some("not a directory where the bundle has one"),
        _ if t.is_dir() => Some("a directory where the bundle has a file or symlink"),
        EntryKind::File if t.is_symlink() => Some("a symlink where the bundle has a file"),
        EntryKind::Symlink { .. } if t.is_symlink() => None,
        _ if t.is_file() => None,
        _ => Some("a special file (device, FIFO or socket) where the bundle has a file or symlink"),
    }
}

/// A refused bundle whose `.sha256` does not match is reported as such
/// (as when the checksum was compared before decompressing): the one pass
/// compares it only at the end of the stream, which a damaged bundle may
/// never reach. Costs a hash of the file on this failure path only.
fn checksum_first(bundle: &Path, e: InstallError) -> InstallError {
    match (&e, Opened::open(bundle)) {
        (InstallError::Bundle(_), Err(c @ InspectError::Checksum { .. })) => c.into(),
        _ => e,
    }
}

/// The install of a bundle whose entries before the manifest are too
/// large to hold ([`Laid::TooEarly`]): the whole bundle checked first
/// (`inspect`), the conflict pass, then a second pass that stages each
/// file and compares it with what the first saw.
fn two_passes(
    bundle: &Path,
    root: &Root,
    keys: &[crate::sign::TrustedKey],
    tx: &mut Transaction,
    watch: Option<ReadWatch>,
) -> Result<Signed, InstallError> {
    let report = crate::inspect::inspect_trusted(bundle, keys)?;
    check_conflicts(
        bundle,
        root,
        report.entries.iter().map(|e| (e.path.as_str(), &e.kind)),
    )?;
    let digests = report
        .entries
        .into_iter()
        .filter_map(|e| Some((e.path, e.sha256?)))
        .collect();
    match lay_out(
        Opened::open_deferred(bundle, watch)?,
        root,
        Pass::Second(&digests),
        tx,
    )? {
        Laid::Staged(done, _) => Ok((done, report.signature)),
        Laid::TooEarly => unreachable!("a second pass holds nothing"),
    }
}

/// The conflict pass: every destination (in archive order), before
/// anything is written.
fn check_conflicts<'e>(
    bundle: &Path,
    root: &Root,
    entries: impl Iterator<Item = (&'e str, &'e EntryKind)>,
) -> Result<(), InstallError> {
    for (path, kind) in entries {
        let at = Target::new(bundle, root, path);
        if let Some((parent, _)) = path.rsplit_once('/')
            && at.existing(parent)?.is_none()
        {
            // Its directory will be created: nothing can be in the way.
            continue;
        }
        at.check_ancestors()?;
        if let Some(what) = conflict(kind, at.existing(path)?) {
            return Err(at.refuse(format!("{} is {what}", at.host_path().display())));
        }
    }
    Ok(())
}

fn entry_error(bundle: &Path, entry: &str, problem: Problem) -> InspectError {
    InspectError::Entry {
        bundle: bundle.to_path_buf(),
        entry: entry.into(),
        problem,
    }
}

/// One entry's destination under the root.
struct Target<'a> {
    bundle: &'a Path,
    root: &'a Root,
    entry: &'a str,
}

impl<'a> Target<'a> {
    fn new(bundle: &'a Path, root: &'a Root, entry: &'a str) -> Self {
        Self {
            bundle,
            root,
            entry,
        }
    }

    /// The entry as the host sees it, for messages.
    fn host_path(&self) -> PathBuf {
        self.root.host_path(self.entry)
    }

    fn refuse(&self, reason: String) -> InstallError {
        InstallError::Refused {
            bundle: self.bundle.to_path_buf(),
            root: self.root.base().to_path_buf(),
            entry: self.entry.into(),
            reason,
        }
    }

    fn write_error(&self, source: AtomicError) -> InstallError {
        InstallError::Write {
            bundle: self.bundle.to_path_buf(),
            root: self.root.base().to_path_buf(),
            entry: self.entry.into(),
            source,
        }
    }

    /// What is at `rel` now, without following a final symlink.
    fn existing(&self, rel: &str) -> Result<Option<fs::FileType>, InstallError> {
        self.root
            .symlink_metadata(rel)
            .map(|m| m.map(|m| m.file_type()))
            .map_err(|e| self.write_error(e))
    }

    /// Every directory between the root and the entry must be a real
    /// directory in the target, not a symlink.
    fn check_ancestors(&self) -> Result<(), InstallError> {
        for (i, _) in self.entry.match_indices('/') {
            let dir = &self.entry[..i];
            let shown = self.root.host_path(dir);
            match self.existing(dir)? {
                Some(t) if t.is_dir() => {}
                Some(t) if t.is_symlink() => {
                    return Err(self.refuse(format!(
                        "{} is a symlink in the target, and install never follows symlinks",
                        shown.display()
                    )));
                }
                Some(_) => {
                    return Err(self.refuse(format!("{} is not a directory", shown.display())));
                }
                None => {
                    return Err(self.refuse(format!(
                        "{} disappeared during the install",
                        shown.display()
                    )));
                }
            }
        }
        Ok(())
    }

    fn dir(&self, mode: u32, tx: &mut Transaction) -> Result<(), InstallError> {
        if self.existing(self.entry)?.is_some() {
            // A real directory: `conflict` refused anything else.
            return Ok(());
        }
        self.root
            .create_dir_all(self.entry, mode)
            .map_err(|e| self.write_error(e))?;
        tx.created_dir(self.entry);
        // The umask may have cleared bits of `mode`.
        self.root
            .set_mode(self.entry, mode)
            .map_err(|e| self.write_error(e))
    }

    /// Creates the symlink under a temporary name beside its destination.
    fn symlink(&self, target: &str) -> Result<Staged, InstallError> {
        let tmp = transaction::temp_name(self.entry, "vgpu-bake-link");
        self.root
            .symlink(target, &tmp)
            .map_err(|e| self.write_error(e))?;
        Ok(Staged::Link {
            tmp,
            rel: self.entry.into(),
        })
    }
}

#[cfg(test)]
mod tests;

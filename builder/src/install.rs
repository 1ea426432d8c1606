//! `vgpu-bake install --root DIR`: lay a verified bundle onto a root,
//! all of it or nothing.
//!
//! 1. [`inspect`] verifies the whole bundle (every check of a header before
//!    its body), so a bad bundle writes nothing.
//! 2. A conflict pass checks every destination in the target (a symlink,
//!    a special file or a directory where the bundle has something else):
//!    a conflict anywhere writes nothing.
//! 3. The second pass over the bundle runs every check again (the bundle
//!    could change between the passes) and compares each file with the
//!    first pass's digest; it creates missing directories and stages files
//!    and the symlink under temporary names beside their destinations.
//! 4. Only when everything is staged is it renamed into place
//!    (`install/transaction.rs`); a failure at any step removes what this install
//!    created and restores what it replaced.
//!
//! Every path is resolved through a [`Root`] (`openat2` with
//! `RESOLVE_IN_ROOT`): nothing can land outside the root, even if the target
//! changes during the install. Symlinks already in the target are refused
//! rather than followed: every component under the root is checked without
//! following it, and `rename` replaces a final-component symlink rather than
//! following it. The root itself is the operator's choice and may be a
//! symlink.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use vgpu_rootfs::Root;

use crate::atomic::AtomicError;
use crate::inspect::{
    Checker, CopyError, EntryInfo, EntryKind, InspectError, Opened, Problem, copy_body, keeps_text,
    read_error, read_target,
};

mod transaction;
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

/// [`install`] of a bundle whose signature is checked first
/// ([`crate::inspect::inspect_trusted`]): with `keys`, an unsigned or
/// wrongly signed bundle writes nothing. Also returns the signature.
pub fn install_trusted(
    bundle: &Path,
    root: &Path,
    keys: &[crate::sign::TrustedKey],
) -> Result<(Vec<Installed>, Option<crate::sign::SignatureInfo>), InstallError> {
    let report = crate::inspect::inspect_trusted(bundle, keys)?;
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
    check_conflicts(bundle, &root, &report.entries)?;
    let signature = report.signature.clone();
    let digests = report
        .entries
        .into_iter()
        .filter_map(|e| Some((e.path, e.sha256?)))
        .collect();
    let mut tx = Transaction::new(&root);
    let done = lay_out(Opened::open(bundle)?, &root, &digests, &mut tx)?;
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

/// The conflict pass: every destination, before anything is written.
fn check_conflicts(bundle: &Path, root: &Root, entries: &[EntryInfo]) -> Result<(), InstallError> {
    for e in entries {
        let at = Target::new(bundle, root, &e.path);
        if let Some((parent, _)) = e.path.rsplit_once('/')
            && at.existing(parent)?.is_none()
        {
            // Its directory will be created: nothing can be in the way.
            continue;
        }
        at.check_ancestors()?;
        if let Some(what) = conflict(&e.kind, at.existing(&e.path)?) {
            return Err(at.refuse(format!("{} is {what}", at.host_path().display())));
        }
    }
    Ok(())
}

/// The second pass: every check again, directories created, files and the
/// symlink staged in `tx`. `digests` maps each file to the sha256 the first
/// pass verified; a file whose bytes differ now is not staged.
fn lay_out(
    mut opened: Opened,
    root: &Root,
    digests: &BTreeMap<String, String>,
    tx: &mut Transaction,
) -> Result<Vec<Installed>, InstallError> {
    let bundle = opened.bundle.clone();
    // The first pass checked the signature; this one checks every file
    // against that pass's digests (the manifest included).
    let mut checker = Checker::new(bundle.clone(), opened.len, &[]);
    let mut done = Vec::new();
    while let Some(mut entry) = opened.next_entry()? {
        let h = entry.header.clone();
        let mut kind = checker.header(&h)?;
        let path = h.name.clone();
        let at = Target::new(&bundle, root, &path);
        at.check_ancestors()?;
        if let Some(what) = conflict(&kind, at.existing(&path)?) {
            return Err(at.refuse(format!("{} is {what}", at.host_path().display())));
        }
        let mode = h.mode & 0o7777;
        let mut sha256 = None;
        let mut text = None;
        match &mut kind {
            EntryKind::Dir => {
                drop(entry);
                at.dir(mode, tx)?;
            }
            EntryKind::Symlink { target } => {
                let read = read_target(&mut entry);
                drop(entry);
                *target = read
                    .map_err(|e| read_error(&bundle, &path, e))?
                    .map_err(|problem| entry_error(&bundle, &path, problem))?;
                tx.stage(at.symlink(target)?);
            }
            EntryKind::File => {
                let mut file = root
                    .atomic_file(&path, None)
                    .map_err(|e| at.write_error(e))?;
                let copied =
                    copy_body(&mut entry, keeps_text(&path), |chunk| file.write_all(chunk));
                drop(entry);
                let (sha, t) = match copied {
                    Ok(c) => c,
                    Err(CopyError::Read(e)) => return Err(read_error(&bundle, &path, e).into()),
                    Err(CopyError::Sink(source)) => {
                        return Err(at.write_error(AtomicError {
                            action: "writing",
                            path: at.host_path(),
                            source,
                        }));
                    }
                };
                if digests.get(&path) != Some(&sha) {
                    let problem = Problem::Sha256 {
                        expected: digests.get(&path).cloned().unwrap_or_default(),
                        actual: sha,
                    };
                    // `file` is dropped here: its temp file goes with it.
                    return Err(entry_error(&bundle, &path, problem).into());
                }
                file.set_mode(mode).map_err(|e| at.write_error(e))?;
                sha256 = Some(sha);
                text = t;
                tx.stage(Staged::File {
                    file,
                    rel: path.clone(),
                });
            }
        }
        let info = EntryInfo {
            path,
            mode: if matches!(kind, EntryKind::Symlink { .. }) {
                0o777
            } else {
                mode
            },
            size: u64::from(h.filesize),
            kind,
            sha256,
            verified: true,
        };
        checker.body(&info, text.as_deref())?;
        done.push(Installed {
            kind: info.kind.name(),
            path: info.path,
            mode: info.mode,
            size: if info.kind == EntryKind::Dir {
                0
            } else {
                info.size
            },
        });
    }
    checker.end()?;
    opened.finish()?;
    Ok(done)
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

//! `vgpu-bake install --root DIR`: lay a verified bundle onto a root.
//!
//! Two passes over the bundle: [`inspect`] verifies all of it first, so a
//! corrupt bundle writes nothing; the second pass writes, and checks each
//! file again against the first pass's digest before renaming it into place
//! (the bundle could change between the passes).
//!
//! Symlinks already in the target are never followed: every component under
//! the root is checked with `symlink_metadata`, files and symlinks are
//! created under a temporary name in their directory and renamed into place
//! (`rename` replaces a final-component symlink rather than following it).
//! The root itself is the operator's choice and may be a symlink.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::atomic::{self, AtomicError, AtomicFile};
use crate::hash::hex;
use crate::inspect::{EntryKind, InspectError, Opened, Seen, kind_of, read_target};

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
/// alone). Verifies the whole bundle first, so a corrupt bundle writes
/// nothing. Refuses unsafe paths and any symlink, or non-directory, in the
/// target where the bundle has a directory, and an existing symlink or
/// directory where a file goes. Files are written atomically with their mode;
/// a failure part way leaves no half-written file.
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
    let signature = report.signature.clone();
    let digests = report
        .entries
        .into_iter()
        .filter_map(|e| Some((e.path, e.sha256?)))
        .collect();
    Ok((lay_out(Opened::open(bundle)?, root, &digests)?, signature))
}

/// The second pass. `digests` maps each file to the sha256 the first pass
/// verified; a file whose bytes differ now is not renamed into place.
fn lay_out(
    mut opened: Opened,
    root: &Path,
    digests: &BTreeMap<String, String>,
) -> Result<Vec<Installed>, InstallError> {
    let mut seen = Seen::default();
    let mut done = Vec::new();
    let bundle = opened.bundle.clone();
    while let Some(mut entry) = opened.next_entry()? {
        let h = entry.header.clone();
        let path = h.name.clone();
        let at = Target::new(&bundle, root, &path);
        let checked = kind_of(&h).and_then(|kind| seen.check(&path, &kind).map(|()| kind));
        let kind = match checked {
            Ok(kind) => kind,
            Err(problem) => {
                drop(entry);
                return Err(opened.entry_error(&path, problem).into());
            }
        };
        at.check_ancestors()?;
        let mode = h.mode & 0o7777;
        let size = match kind {
            EntryKind::Dir => {
                drop(entry);
                at.dir(mode)?;
                0
            }
            EntryKind::Symlink { .. } => {
                let target = read_target(&mut entry, h.filesize);
                drop(entry);
                match target {
                    Err(e) => return Err(opened.read_error(&path, e).into()),
                    Ok(Err(problem)) => return Err(opened.entry_error(&path, problem).into()),
                    Ok(Ok(target)) => at.symlink(&target)?,
                }
            }
            EntryKind::File => {
                let written = at.file(&mut entry, mode);
                drop(entry);
                let (file, sha256, size) = match written {
                    Ok(w) => w,
                    Err(Failure::Read(e)) => return Err(opened.read_error(&path, e).into()),
                    Err(Failure::Install(e)) => return Err(e),
                };
                if digests.get(&path) != Some(&sha256) {
                    let problem = crate::inspect::Problem::Sha256 {
                        expected: digests.get(&path).cloned().unwrap_or_default(),
                        actual: sha256,
                    };
                    // `file` is dropped here: its temp file goes with it.
                    drop(file);
                    return Err(opened.entry_error(&path, problem).into());
                }
                file.commit().map_err(|e| at.write_error(e))?;
                size
            }
        };
        done.push(Installed {
            path,
            kind: kind.name(),
            mode: if matches!(kind, EntryKind::Symlink { .. }) {
                0o777
            } else {
                mode
            },
            size,
        });
    }
    opened.finish()?;
    Ok(done)
}

/// Why writing a file failed: the bundle or the target.
enum Failure {
    Read(io::Error),
    Install(InstallError),
}

/// One entry's destination under the root.
struct Target<'a> {
    bundle: &'a Path,
    root: &'a Path,
    entry: &'a str,
    path: PathBuf,
}

impl<'a> Target<'a> {
    fn new(bundle: &'a Path, root: &'a Path, entry: &'a str) -> Self {
        Self {
            bundle,
            root,
            entry,
            path: root.join(entry),
        }
    }

    fn refuse(&self, reason: String) -> InstallError {
        InstallError::Refused {
            bundle: self.bundle.to_path_buf(),
            root: self.root.to_path_buf(),
            entry: self.entry.into(),
            reason,
        }
    }

    fn write_error(&self, source: AtomicError) -> InstallError {
        InstallError::Write {
            bundle: self.bundle.to_path_buf(),
            root: self.root.to_path_buf(),
            entry: self.entry.into(),
            source,
        }
    }

    fn io_error(&self, action: &'static str, path: &Path, source: io::Error) -> InstallError {
        self.write_error(AtomicError {
            action,
            path: path.to_path_buf(),
            source,
        })
    }

    /// What is at `path` now, without following a final symlink.
    fn existing(&self, path: &Path) -> Result<Option<fs::FileType>, InstallError> {
        match fs::symlink_metadata(path) {
            Ok(m) => Ok(Some(m.file_type())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io_error("checking", path, e)),
        }
    }

    /// Every directory between the root and the entry must be a real
    /// directory in the target, not a symlink.
    fn check_ancestors(&self) -> Result<(), InstallError> {
        let mut dir = self.root.to_path_buf();
        let mut components = self.entry.split('/').peekable();
        while let Some(c) = components.next() {
            if components.peek().is_none() {
                break;
            }
            dir.push(c);
            match self.existing(&dir)? {
                Some(t) if t.is_dir() => {}
                Some(t) if t.is_symlink() => {
                    return Err(self.refuse(format!(
                        "{} is a symlink in the target, and install never follows symlinks",
                        dir.display()
                    )));
                }
                Some(_) => {
                    return Err(self.refuse(format!("{} is not a directory", dir.display())));
                }
                None => {
                    return Err(
                        self.refuse(format!("{} disappeared during the install", dir.display()))
                    );
                }
            }
        }
        Ok(())
    }

    fn parent(&self) -> &Path {
        self.path.parent().unwrap_or(self.root)
    }

    fn dir(&self, mode: u32) -> Result<(), InstallError> {
        match self.existing(&self.path)? {
            Some(t) if t.is_dir() => return Ok(()),
            Some(t) if t.is_symlink() => {
                return Err(self.refuse(format!(
                    "{} is a symlink in the target where the bundle has a directory",
                    self.path.display()
                )));
            }
            Some(_) => {
                return Err(self.refuse(format!(
                    "{} exists and is not a directory",
                    self.path.display()
                )));
            }
            None => {}
        }
        DirBuilder::new()
            .mode(mode)
            .create(&self.path)
            .map_err(|e| self.io_error("creating the directory", &self.path, e))?;
        // The umask may have cleared bits of `mode`.
        fs::set_permissions(&self.path, fs::Permissions::from_mode(mode))
            .map_err(|e| self.io_error("setting the mode of", &self.path, e))?;
        atomic::sync_dir(self.parent()).map_err(|e| self.write_error(e))
    }

    /// Creates the symlink under a temporary name, then renames it over
    /// the destination (which may be an older symlink or file).
    fn symlink(&self, target: &str) -> Result<u64, InstallError> {
        if let Some(t) = self.existing(&self.path)?
            && t.is_dir()
        {
            return Err(self.refuse(format!(
                "{} is a directory where the bundle has a symlink",
                self.path.display()
            )));
        }
        let tmp = tempfile::Builder::new()
            .prefix(".vgpu-bake-link.")
            .suffix(".tmp")
            .make_in(self.parent(), |p| std::os::unix::fs::symlink(target, p))
            .map_err(|e| self.io_error("creating a temporary symlink in", self.parent(), e))?;
        tmp.persist(&self.path)
            .map_err(|e| self.io_error("renaming a temporary symlink to", &self.path, e.error))?;
        atomic::sync_dir(self.parent()).map_err(|e| self.write_error(e))?;
        Ok(target.len() as u64)
    }

    /// Streams the body into a temp file beside the destination; the caller
    /// commits it once the digest is checked.
    fn file(&self, body: &mut impl Read, mode: u32) -> Result<(AtomicFile, String, u64), Failure> {
        let install = |e| Failure::Install(e);
        match self.existing(&self.path).map_err(install)? {
            Some(t) if t.is_symlink() || t.is_dir() => {
                let what = if t.is_dir() {
                    "a directory"
                } else {
                    "a symlink"
                };
                return Err(install(self.refuse(format!(
                    "{} is {what} in the target where the bundle has a file",
                    self.path.display()
                ))));
            }
            Some(t) if !t.is_file() => {
                return Err(install(self.refuse(format!(
                    "{} is a special file where the bundle has a file",
                    self.path.display()
                ))));
            }
            _ => {}
        }
        let mut file = AtomicFile::create(&self.path).map_err(|e| install(self.write_error(e)))?;
        let mut sha256 = Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = body.read(&mut buf).map_err(Failure::Read)?;
            if n == 0 {
                break;
            }
            sha256.update(&buf[..n]);
            file.write_all(&buf[..n])
                .map_err(|e| install(self.io_error("writing", &self.path, e)))?;
            size += n as u64;
        }
        file.set_mode(mode)
            .map_err(|e| install(self.write_error(e)))?;
        Ok((file, hex(&sha256.finalize()), size))
    }
}

#[cfg(test)]
mod tests;

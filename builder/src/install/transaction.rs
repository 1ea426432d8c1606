//! What one install changed, so a refused install leaves nothing of itself
//! behind: directories it created, files and symlinks staged under
//! temporary names beside their destinations (nothing replaced until every
//! entry is staged), then renamed into place together. An existing file or
//! symlink about to be replaced is first hard-linked to a backup name, so a
//! rename that fails part way can put every earlier one back.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::atomic::{self, AtomicError, AtomicFile};

/// A file or symlink under its temporary name.
pub(super) enum Staged {
    /// A regular file.
    File(AtomicFile),
    /// A symlink, created under a temporary name in the destination's
    /// directory (removed if dropped).
    Link(tempfile::TempPath, PathBuf),
}

impl Staged {
    fn dest(&self) -> PathBuf {
        match self {
            Staged::File(f) => f.dest(),
            Staged::Link(_, dest) => dest.clone(),
        }
    }
}

/// A rename done, and how to undo it.
struct Done {
    dest: PathBuf,
    backup: Option<PathBuf>,
}

static BACKUPS: AtomicU32 = AtomicU32::new(0);

/// Everything one install changed or staged.
#[derive(Default)]
pub(super) struct Transaction {
    created_dirs: Vec<PathBuf>,
    staged: Vec<Staged>,
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> AtomicError {
    let path = path.to_path_buf();
    move |source| AtomicError {
        action,
        path,
        source,
    }
}

impl Transaction {
    /// Records a directory this install created.
    pub(super) fn created_dir(&mut self, dir: PathBuf) {
        self.created_dirs.push(dir);
    }

    /// Adds a staged file or symlink.
    pub(super) fn stage(&mut self, staged: Staged) {
        self.staged.push(staged);
    }

    /// Renames every staged entry into place. On failure everything done
    /// so far is undone (see [`Transaction::rollback`]) and the error of
    /// the entry that failed is returned with its destination.
    pub(super) fn commit(mut self) -> Result<(), (PathBuf, AtomicError)> {
        let staged = std::mem::take(&mut self.staged);
        let mut done: Vec<Done> = Vec::new();
        let mut failed = None;
        // Backups first: nothing is replaced until each has one.
        let mut backups = Vec::new();
        for s in &staged {
            let dest = s.dest();
            match backup(&dest) {
                Ok(b) => backups.push(b),
                Err(e) => {
                    failed = Some((dest, e));
                    break;
                }
            }
        }
        if failed.is_none() {
            for (s, backup) in staged.into_iter().zip(backups.iter_mut()) {
                let dest = s.dest();
                let renamed = match s {
                    Staged::File(f) => f.rename_into_place().map(drop),
                    Staged::Link(tmp, dest) => tmp
                        .persist(&dest)
                        .map_err(|e| io_err("renaming a temporary symlink to", &dest)(e.error)),
                };
                match renamed {
                    Ok(()) => done.push(Done {
                        dest,
                        backup: backup.take(),
                    }),
                    Err(e) => {
                        failed = Some((dest, e));
                        break;
                    }
                }
            }
        }
        match failed {
            None => {
                for b in backups
                    .into_iter()
                    .chain(done.iter().map(|d| d.backup.clone()))
                    .flatten()
                {
                    let _ = fs::remove_file(&b);
                }
                let mut dirs: Vec<PathBuf> = done
                    .iter()
                    .filter_map(|d| d.dest.parent().map(Path::to_path_buf))
                    .collect();
                dirs.dedup();
                for d in dirs {
                    atomic::sync_dir(&d).map_err(|e| (d.clone(), e))?;
                }
                self.created_dirs.clear();
                Ok(())
            }
            Some(e) => {
                for d in done.into_iter().rev() {
                    match d.backup {
                        Some(b) => {
                            let _ = fs::rename(&b, &d.dest);
                        }
                        None => {
                            let _ = fs::remove_file(&d.dest);
                        }
                    }
                }
                for b in backups.into_iter().flatten() {
                    let _ = fs::remove_file(&b);
                }
                Err(e)
            }
        }
    }
}

impl Drop for Transaction {
    /// An install that did not commit: staged temps go (their own drop),
    /// then the directories it created, deepest first.
    fn drop(&mut self) {
        self.staged.clear();
        for dir in self.created_dirs.drain(..).rev() {
            let _ = fs::remove_dir(&dir);
        }
    }
}

/// Hard-links an existing destination to a backup name beside it (link(2)
/// does not follow a symlink: the symlink itself is kept).
fn backup(dest: &Path) -> Result<Option<PathBuf>, AtomicError> {
    match fs::symlink_metadata(dest) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("checking", dest)(e)),
        Ok(_) => {}
    }
    let dir = dest.parent().unwrap_or(Path::new("."));
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    let n = BACKUPS.fetch_add(1, Ordering::Relaxed);
    let b = dir.join(format!(
        ".{name}.vgpu-bake-backup.{}.{n}",
        std::process::id()
    ));
    fs::hard_link(dest, &b).map_err(io_err("keeping a backup link of", dest))?;
    Ok(Some(b))
}

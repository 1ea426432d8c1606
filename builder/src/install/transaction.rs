//! What one install changed, so a refused install leaves nothing of itself
//! behind: directories it created, files and the symlink staged under
//! temporary names beside their destinations (nothing replaced until every
//! entry is staged), then renamed into place together. An existing file or
//! symlink about to be replaced is first hard-linked to a backup name, so a
//! rename that fails part way can put every earlier one back. Every path is
//! resolved through the install's [`Root`].

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::fs::AtFlags;
use vgpu_rootfs::Root;

use crate::atomic::{AtomicError, AtomicFile};

/// A file or symlink under its temporary name.
pub(super) enum Staged {
    /// A regular file (its temp file goes when dropped).
    File {
        /// The temp file.
        file: AtomicFile,
        /// Its destination, root-relative.
        rel: String,
    },
    /// A symlink under the temporary name `tmp` beside `rel`.
    Link {
        /// The temporary name, root-relative.
        tmp: String,
        /// Its destination, root-relative.
        rel: String,
    },
}

impl Staged {
    fn rel(&self) -> &str {
        match self {
            Staged::File { rel, .. } | Staged::Link { rel, .. } => rel,
        }
    }
}

static TEMPS: AtomicU32 = AtomicU32::new(0);

/// A fresh hidden name beside `rel`: `.NAME.KIND.PID.N.tmp`.
pub(super) fn temp_name(rel: &str, kind: &str) -> String {
    let (dir, name) = match rel.rsplit_once('/') {
        Some((d, n)) => (format!("{d}/"), n),
        None => (String::new(), rel),
    };
    let n = TEMPS.fetch_add(1, Ordering::Relaxed);
    format!("{dir}.{name}.{kind}.{}.{n}.tmp", std::process::id())
}

/// `rel`'s directory (opened inside the root) and its last component.
fn parent<'r>(root: &Root, rel: &'r str) -> Result<(OwnedFd, &'r str), AtomicError> {
    let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let opened = root.open(dir)?.ok_or_else(|| AtomicError {
        action: "opening the directory of",
        path: root.host_path(rel),
        source: io::Error::from(io::ErrorKind::NotFound),
    })?;
    Ok((OwnedFd::from(opened), name))
}

fn at_err(
    root: &Root,
    action: &'static str,
    rel: &str,
) -> impl FnOnce(rustix::io::Errno) -> AtomicError {
    let path = root.host_path(rel);
    move |e| AtomicError {
        action,
        path,
        source: e.into(),
    }
}

/// Hard-links an existing destination to a backup name beside it
/// (`linkat` without `AT_SYMLINK_FOLLOW`: a symlink itself is kept).
fn backup(root: &Root, rel: &str) -> Result<Option<String>, AtomicError> {
    if root.symlink_metadata(rel)?.is_none() {
        return Ok(None);
    }
    let b = temp_name(rel, "vgpu-bake-backup");
    let (dir, name) = parent(root, rel)?;
    let (_, bname) = b.rsplit_once('/').unwrap_or(("", &b));
    rustix::fs::linkat(&dir, name, &dir, bname, AtFlags::empty()).map_err(at_err(
        root,
        "keeping a backup link of",
        rel,
    ))?;
    Ok(Some(b))
}

/// Removes the empty directory `rel` (never one with contents).
fn remove_dir(root: &Root, rel: &str) {
    if let Ok((dir, name)) = parent(root, rel) {
        let _ = rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR);
        let _ = File::from(dir).sync_all();
    }
}

/// Everything one install changed or staged.
pub(super) struct Transaction<'r> {
    root: &'r Root,
    created_dirs: Vec<String>,
    staged: Vec<Staged>,
}

impl<'r> Transaction<'r> {
    pub(super) fn new(root: &'r Root) -> Self {
        Self {
            root,
            created_dirs: Vec::new(),
            staged: Vec::new(),
        }
    }

    /// Records a directory this install created.
    pub(super) fn created_dir(&mut self, rel: &str) {
        self.created_dirs.push(rel.to_owned());
    }

    /// Adds a staged file or symlink.
    pub(super) fn stage(&mut self, staged: Staged) {
        self.staged.push(staged);
    }

    /// Renames every staged entry into place. On failure everything done
    /// so far is undone, and the entry that failed is returned with the
    /// error.
    pub(super) fn commit(mut self) -> Result<(), (String, AtomicError)> {
        let root = self.root;
        let staged = std::mem::take(&mut self.staged);
        // Backups first: nothing is replaced until each has one.
        let mut backups: Vec<Option<String>> = Vec::new();
        let mut failed = None;
        for s in &staged {
            match backup(root, s.rel()) {
                Ok(b) => backups.push(b),
                Err(e) => {
                    failed = Some((s.rel().to_owned(), e));
                    break;
                }
            }
        }
        // (destination, its backup) of each rename done.
        let mut done: Vec<(String, Option<String>)> = Vec::new();
        if failed.is_none() {
            for (s, b) in staged.into_iter().zip(backups.iter_mut()) {
                let (rel, renamed) = match s {
                    Staged::File { file, rel } => {
                        let r = file.rename_into_place().and_then(|sync| sync.sync());
                        (rel, r)
                    }
                    Staged::Link { tmp, rel } => {
                        let r = root.rename(&tmp, &rel);
                        if r.is_err() {
                            let _ = root.remove_file(&tmp);
                        }
                        (rel, r)
                    }
                };
                match renamed {
                    Ok(()) => done.push((rel, b.take())),
                    Err(e) => {
                        failed = Some((rel, e));
                        break;
                    }
                }
            }
        }
        let Some(failure) = failed else {
            for b in done.iter().filter_map(|(_, b)| b.as_ref()) {
                let _ = root.remove_file(b);
            }
            self.created_dirs.clear();
            return Ok(());
        };
        for (rel, b) in done.into_iter().rev() {
            let _ = match b {
                Some(b) => root.rename(&b, &rel),
                None => root.remove_file(&rel).map(drop),
            };
        }
        for b in backups.into_iter().flatten() {
            let _ = root.remove_file(&b);
        }
        Err(failure)
    }
}

impl Drop for Transaction<'_> {
    /// An install that did not commit: staged temps go, then the
    /// directories it created, deepest first.
    fn drop(&mut self) {
        for s in self.staged.drain(..) {
            if let Staged::Link { tmp, .. } = s {
                let _ = self.root.remove_file(&tmp);
            }
        }
        for rel in self.created_dirs.drain(..).rev() {
            remove_dir(self.root, &rel);
        }
    }
}

//! Atomic file writes: temp file in the same directory, fsync, rename,
//! fsync the directory. A crash leaves the old file or the new one, never
//! a mix, and never a partial file under the final name.
//!
//! Everything is done relative to an open handle on the directory, so the
//! temp file, the rename and the directory fsync all act on the same
//! directory even if a path component is swapped meanwhile.

use std::ffi::{OsStr, OsString};
use std::fs::{File, Permissions};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::{Error, err};

/// The builder's name for [`Error`] from an atomic write.
pub type AtomicError = Error;

/// How the temp file beside the destination is named.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Temp<'a> {
    /// `.<name>.<pid>.<n>.tmp`, a fresh one per write.
    Unique,
    /// This name; a leftover of a cut-short write is removed first. Only
    /// for a writer that holds a lock or is alone (the agent).
    Fixed(&'a OsStr),
}

/// A file being written next to its final path; nothing appears under the
/// final name until [`AtomicFile::commit`]. Dropping it removes the temp file.
#[derive(Debug)]
pub struct AtomicFile {
    dir: OwnedFd,
    dir_path: PathBuf,
    name: OsString,
    tmp: OsString,
    /// `None` once committed or abandoned.
    file: Option<File>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

pub(crate) fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    Ok(rustix::fs::open(path, flags, Mode::empty())?)
}

impl AtomicFile {
    /// Starts writing `dest` (its directory must exist).
    pub fn create(dest: &Path) -> Result<Self, Error> {
        let dir_path = parent_dir(dest);
        let open = |e| err("creating a temporary file in", dir_path.to_path_buf())(e);
        let name = dest
            .file_name()
            .ok_or_else(|| open(io::Error::new(io::ErrorKind::InvalidInput, "no file name")))?;
        let dir = open_dir(dir_path).map_err(open)?;
        Self::create_in(dir, dir_path.to_path_buf(), name, Temp::Unique)
    }

    /// Starts writing `name` in the open directory `dir` (`dir_path` is
    /// its path as the host sees it, for messages).
    pub(crate) fn create_in(
        dir: OwnedFd,
        dir_path: PathBuf,
        name: &OsStr,
        temp: Temp,
    ) -> Result<Self, Error> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(0o600);
        let mut tries = 0;
        let (tmp, fd) = loop {
            let tmp = match temp {
                Temp::Fixed(t) => {
                    let _ = rustix::fs::unlinkat(&dir, t, AtFlags::empty());
                    t.to_os_string()
                }
                Temp::Unique => {
                    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
                    let mut t = OsString::from(".");
                    t.push(name);
                    t.push(format!(".{}.{n}.tmp", std::process::id()));
                    t
                }
            };
            match rustix::fs::openat(&dir, &tmp, flags, mode) {
                Ok(fd) => break (tmp, fd),
                Err(Errno::EXIST) if matches!(temp, Temp::Unique) && tries < 100 => tries += 1,
                Err(e) => {
                    return Err(err("creating a temporary file in", dir_path)(e.into()));
                }
            }
        };
        Ok(AtomicFile {
            dir,
            dir_path,
            name: name.to_os_string(),
            tmp,
            file: Some(File::from(fd)),
        })
    }

    fn tmp_path(&self) -> PathBuf {
        self.dir_path.join(&self.tmp)
    }

    /// The final path, as the host sees it.
    pub fn dest(&self) -> PathBuf {
        self.dir_path.join(&self.name)
    }

    /// The open temp file.
    pub fn file(&mut self) -> &mut File {
        self.file
            .as_mut()
            .expect("the temp file is open until commit")
    }

    /// Sets permission bits on the temp file.
    pub fn set_mode(&self, mode: u32) -> Result<(), Error> {
        let file = self
            .file
            .as_ref()
            .expect("the temp file is open until commit");
        file.set_permissions(Permissions::from_mode(mode))
            .map_err(err("setting the mode of", self.tmp_path()))
    }

    /// fsyncs, renames over the destination and fsyncs the directory.
    pub fn commit(self) -> Result<(), Error> {
        self.rename_into_place()?.sync()
    }

    /// fsyncs and renames over the destination; the directory fsync that
    /// makes the rename durable is left to the caller ([`DirSync::sync`]),
    /// for callers to whom its failure is a note rather than an error.
    pub fn rename_into_place(mut self) -> Result<DirSync, Error> {
        let file = self
            .file
            .take()
            .expect("the temp file is open until commit");
        let done = file
            .sync_all()
            .map_err(err("syncing", self.tmp_path()))
            .and_then(|()| {
                rustix::fs::renameat(&self.dir, &self.tmp, &self.dir, &self.name)
                    .map_err(|e| err("renaming a temporary file to", self.dest())(e.into()))
            });
        if let Err(e) = done {
            let _ = rustix::fs::unlinkat(&self.dir, &self.tmp, AtFlags::empty());
            return Err(e);
        }
        let dir = self
            .dir
            .try_clone()
            .map_err(err("syncing the directory", self.dir_path.clone()))?;
        Ok(DirSync {
            dir,
            file,
            path: self.dir_path.clone(),
        })
    }

    /// Stops as a power cut would: the temp file stays where it is and
    /// nothing is renamed (for crash tests).
    pub fn abandon(mut self) {
        self.file = None;
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = rustix::fs::unlinkat(&self.dir, &self.tmp, AtFlags::empty());
        }
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file().flush()
    }
}

/// A rename done but not yet durable: fsync its directory.
#[derive(Debug)]
#[must_use = "the rename is durable only once the directory is synced"]
pub struct DirSync {
    dir: OwnedFd,
    /// The renamed file, fsynced again first: vfat (an ESP) writes a
    /// renamed file's size and first cluster only with its inode, which
    /// the directory's fsync leaves out. Where the ESP is also mounted
    /// elsewhere (systemd's /efi automount), unmounting flushes nothing,
    /// and a power cut left the file empty (seen in the VM test).
    file: File,
    path: PathBuf,
}

impl DirSync {
    /// fsyncs the renamed file again, then the directory.
    pub fn sync(self) -> Result<(), Error> {
        rustix::fs::fsync(&self.file)
            .and_then(|()| rustix::fs::fsync(&self.dir))
            .map_err(|e| err("syncing the directory", self.path)(e.into()))
    }
}

/// Writes `bytes` to the temp file, sets `mode` and commits.
pub(crate) fn finish(mut f: AtomicFile, bytes: &[u8], mode: u32) -> Result<(), Error> {
    f.write_all(bytes).map_err(err("writing", f.tmp_path()))?;
    f.set_mode(mode)?;
    f.commit()
}

/// Writes `bytes` to `dest` atomically with permission bits `mode`.
pub fn write(dest: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    finish(AtomicFile::create(dest)?, bytes, mode)
}

/// fsyncs a directory so a rename in it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), Error> {
    open_dir(dir)
        .and_then(|d| Ok(rustix::fs::fsync(d)?))
        .map_err(err("syncing the directory", dir.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn write_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, "old").unwrap();
        write(&p, b"new", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        write(&p, b"newer", 0o644).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "newer");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(names(dir.path()), ["f"], "temp file left behind");
    }

    #[test]
    fn dropped_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let mut f = AtomicFile::create(&p).unwrap();
        f.write_all(b"partial").unwrap();
        assert_eq!(names(dir.path()).len(), 1, "the temp file is there");
        drop(f);
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn abandoned_file_leaves_the_temp_and_not_the_dest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, "old").unwrap();
        let fixed = OsStr::new("f.tmp");
        let mut f = AtomicFile::create_in(
            open_dir(dir.path()).unwrap(),
            dir.path().into(),
            OsStr::new("f"),
            Temp::Fixed(fixed),
        )
        .unwrap();
        f.write_all(b"new").unwrap();
        f.abandon();
        assert_eq!(fs::read_to_string(&p).unwrap(), "old");
        assert_eq!(fs::read_to_string(dir.path().join("f.tmp")).unwrap(), "new");
        // The next writer with the same fixed name clears the leftover.
        let f = AtomicFile::create_in(
            open_dir(dir.path()).unwrap(),
            dir.path().into(),
            OsStr::new("f"),
            Temp::Fixed(fixed),
        )
        .unwrap();
        finish(f, b"newest", 0o644).unwrap();
        assert_eq!(names(dir.path()), ["f"]);
        assert_eq!(fs::read_to_string(&p).unwrap(), "newest");
    }

    #[test]
    fn a_missing_directory_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope/f");
        let e = write(&p, b"x", 0o644).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(
            e.to_string().starts_with(&format!(
                "creating a temporary file in {}",
                dir.path().join("nope").display()
            )),
            "{e}"
        );
    }

    #[test]
    fn commit_replaces_a_symlink_instead_of_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("victim");
        fs::write(&target, "keep").unwrap();
        let p = dir.path().join("f");
        std::os::unix::fs::symlink(&target, &p).unwrap();
        write(&p, b"new", 0o644).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
        assert!(!fs::symlink_metadata(&p).unwrap().file_type().is_symlink());
        assert_eq!(fs::read_to_string(&p).unwrap(), "new");
    }
}

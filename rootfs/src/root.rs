//! [`Root`]: file access confined to a root directory by the kernel.
//!
//! Paths are root-relative (a leading `/` is dropped). The kernel resolves
//! them against the root's open directory with `RESOLVE_IN_ROOT`, so `..`
//! stops at the root and an absolute symlink target means the same path
//! under the root, as it would in a chroot; magic links (`/proc/*/fd`) are
//! refused. Operations on a final component (rename, remove, readlink,
//! symlink metadata) resolve its parent that way and then act on the name
//! itself, without following it.

use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata, Permissions};
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::atomic::{self, AtomicFile, Temp};
use crate::{Error, err};

/// What to say on a kernel without `openat2` (before Linux 5.6).
const OLD_KERNEL: &str =
    "the kernel has no openat2 (it is older than Linux 5.6): boot a newer kernel";

/// An open root directory; every path below is resolved inside it.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    base: PathBuf,
}

/// `rel` without leading and trailing slashes; empty means the root.
fn clean(rel: &str) -> &str {
    rel.trim_start_matches('/').trim_end_matches('/')
}

fn absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// `Ok(None)` for "not there".
fn opt<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if absent(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

impl Root {
    /// Opens the root directory `base` (`/` on a real host).
    pub fn at(base: &Path) -> Result<Root, Error> {
        let fd = atomic::open_dir(base).map_err(err("opening the root directory", base.into()))?;
        Ok(Root {
            fd,
            base: base.to_path_buf(),
        })
    }

    /// The root's path.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// `rel` as the host sees it (the root's path joined with it), for
    /// messages.
    pub fn host_path(&self, rel: &str) -> PathBuf {
        match clean(rel) {
            "" => self.base.clone(),
            r => self.base.join(r),
        }
    }

    fn err(&self, action: &'static str, rel: &str) -> impl FnOnce(io::Error) -> Error {
        err(action, self.host_path(rel))
    }

    /// `openat2` of `rel` under the root.
    fn resolve(&self, rel: &str, flags: OFlags, mode: u32) -> io::Result<OwnedFd> {
        let path = match clean(rel) {
            "" => ".",
            r => r,
        };
        let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        let mut tries = 0;
        loop {
            let mode = Mode::from_raw_mode(mode);
            match rustix::fs::openat2(&self.fd, path, flags | OFlags::CLOEXEC, mode, how) {
                // A rename elsewhere raced the lookup: the kernel asks to retry.
                Err(Errno::AGAIN) if tries < 16 => tries += 1,
                Err(Errno::NOSYS) => {
                    return Err(io::Error::new(io::ErrorKind::Unsupported, OLD_KERNEL));
                }
                other => return Ok(other?),
            }
        }
    }

    fn dir(&self, rel: &str) -> io::Result<OwnedFd> {
        self.resolve(rel, OFlags::RDONLY | OFlags::DIRECTORY, 0)
    }

    /// The directory holding `rel`'s last component (resolved in the root)
    /// and that component, which must be a plain name.
    fn parent<'r>(&self, rel: &'r str) -> io::Result<(OwnedFd, &'r OsStr)> {
        let r = clean(rel);
        let (dir, name) = r.rsplit_once('/').unwrap_or(("", r));
        if name.is_empty() || name == "." || name == ".." {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a plain path under the root",
            ));
        }
        Ok((self.dir(dir)?, OsStr::from_bytes(name.as_bytes())))
    }

    /// Opens `rel` for reading, following symlinks inside the root; `None`
    /// if it does not exist. Opened non-blocking, so a FIFO does not hang
    /// the open (check the metadata before reading one).
    pub fn open(&self, rel: &str) -> Result<Option<File>, Error> {
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY;
        opt(self.resolve(rel, flags, 0).map(File::from)).map_err(self.err("opening", rel))
    }

    /// Contents of the regular file `rel` (at most [`READ_LIMIT`] bytes),
    /// or `None` if it does not exist. See [`Root::read_bounded`].
    pub fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, Error> {
        self.read_bounded(rel, READ_LIMIT)
    }

    /// Contents of `rel`, or `None` if it does not exist. It must be a
    /// regular file (a FIFO, a device or a socket is refused before any
    /// read, so one can neither block the reader nor feed it forever) of
    /// at most `limit` bytes (a longer one is refused, having read at most
    /// `limit + 1` bytes).
    pub fn read_bounded(&self, rel: &str, limit: u64) -> Result<Option<Vec<u8>>, Error> {
        let Some(f) = self.open(rel)? else {
            return Ok(None);
        };
        bounded(f, limit)
            .map(Some)
            .map_err(self.err("reading", rel))
    }

    /// Contents of `rel` as UTF-8, or `None` if it does not exist.
    pub fn read_to_string(&self, rel: &str) -> Result<Option<String>, Error> {
        let Some(bytes) = self.read(rel)? else {
            return Ok(None);
        };
        String::from_utf8(bytes).map(Some).map_err(|_| {
            let e = io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text");
            self.err("reading", rel)(e)
        })
    }

    /// Metadata of what `rel` resolves to, or `None` if nothing.
    pub fn metadata(&self, rel: &str) -> Result<Option<Metadata>, Error> {
        let fd = opt(self.resolve(rel, OFlags::PATH, 0)).map_err(self.err("looking up", rel))?;
        fd.map(|fd| File::from(fd).metadata())
            .transpose()
            .map_err(self.err("looking up", rel))
    }

    /// Metadata of `rel` itself (a final symlink is not followed), or
    /// `None` if it does not exist.
    pub fn symlink_metadata(&self, rel: &str) -> Result<Option<Metadata>, Error> {
        let flags = OFlags::PATH | OFlags::NOFOLLOW;
        let fd = opt(self.resolve(rel, flags, 0)).map_err(self.err("looking up", rel))?;
        fd.map(|fd| File::from(fd).metadata())
            .transpose()
            .map_err(self.err("looking up", rel))
    }

    /// Whether `rel` exists (a final symlink counts, dangling or not).
    pub fn exists(&self, rel: &str) -> bool {
        self.symlink_metadata(rel).is_ok_and(|m| m.is_some())
    }

    /// Whether `rel` resolves to something inside the root (symlinks
    /// followed, as `Path::exists` does).
    pub fn resolves(&self, rel: &str) -> bool {
        self.metadata(rel).is_ok_and(|m| m.is_some())
    }

    /// The target of the symlink `rel` as written in the link; `None` if
    /// `rel` is missing or not a symlink.
    pub fn read_link(&self, rel: &str) -> Result<Option<PathBuf>, Error> {
        let link = |rel| -> io::Result<Option<PathBuf>> {
            let Some((dir, name)) = opt(self.parent(rel))? else {
                return Ok(None);
            };
            match rustix::fs::readlinkat(&dir, name, Vec::new()) {
                Ok(t) => Ok(Some(PathBuf::from(OsString::from_vec(t.into_bytes())))),
                Err(Errno::INVAL) => Ok(None),
                Err(e) => Ok(opt(Err::<(), _>(e.into()))?.and(None)),
            }
        };
        link(rel).map_err(self.err("reading the link", rel))
    }

    /// Names in the directory `rel` (unsorted, without `.` and `..`), or
    /// `None` if it does not exist or is not a directory.
    pub fn read_dir(&self, rel: &str) -> Result<Option<Vec<OsString>>, Error> {
        let Some(fd) = opt(self.dir(rel)).map_err(self.err("reading the directory", rel))? else {
            return Ok(None);
        };
        list(fd)
            .map(Some)
            .map_err(self.err("reading the directory", rel))
    }

    /// Creates the directory `rel` and its missing parents (mode `mode`,
    /// less the umask). A symlink to a directory counts as one.
    pub fn create_dir_all(&self, rel: &str, mode: u32) -> Result<(), Error> {
        self.mkdirs(clean(rel), mode)
            .map_err(self.err("creating the directory", rel))
    }

    fn mkdirs(&self, rel: &str, mode: u32) -> io::Result<()> {
        match self.dir(rel) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if let Some((parent, _)) = rel.rsplit_once('/') {
            self.mkdirs(parent, mode)?;
        }
        let (dir, name) = self.parent(rel)?;
        match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(mode)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        rustix::fs::fsync(&dir)?;
        match self.dir(rel) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "it is a symlink whose target is not a directory inside the root; remove the link",
            )),
            Err(e) => Err(e),
        }
    }

    /// Sets the permission bits of what `rel` resolves to.
    pub fn set_mode(&self, rel: &str, mode: u32) -> Result<(), Error> {
        self.resolve(rel, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY, 0)
            .map(File::from)
            .and_then(|f| f.set_permissions(Permissions::from_mode(mode)))
            .map_err(self.err("setting the mode of", rel))
    }

    /// Starts an atomic write of `rel` (its directory must exist). With
    /// `temp`, the temp file has that fixed name (a leftover is removed
    /// first: for a writer that holds a lock); else a fresh one.
    pub fn atomic_file(&self, rel: &str, temp: Option<&str>) -> Result<AtomicFile, Error> {
        let (dir, name) = self
            .parent(rel)
            .map_err(self.err("creating a temporary file for", rel))?;
        let dir_path = self
            .host_path(rel)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let temp = match temp {
            Some(t) => Temp::Fixed(OsStr::new(t)),
            None => Temp::Unique,
        };
        AtomicFile::create_in(dir, dir_path, name, temp)
    }

    /// Writes `bytes` to `rel` atomically with permission bits `mode`,
    /// creating the missing parent directories. A symlink at `rel` is
    /// replaced, never written through. The temp file has a fixed name
    /// (`.<name>.vgpu-rootfs.tmp`, a leftover removed first), so a cut-short
    /// write leaves at most one behind: for a writer that is alone (the
    /// agent, under its lock).
    pub fn write_atomic(&self, rel: &str, bytes: &[u8], mode: u32) -> Result<(), Error> {
        let r = clean(rel);
        if let Some((parent, _)) = r.rsplit_once('/') {
            self.create_dir_all(parent, 0o755)?;
        }
        let mut name = OsString::from(".");
        name.push(r.rsplit('/').next().unwrap_or(r));
        name.push(".vgpu-rootfs.tmp");
        let f = self.atomic_file(r, name.to_str())?;
        atomic::finish(f, bytes, mode)
    }

    /// Renames `from` to `to` (both names themselves, not what they point
    /// to) and fsyncs the directory of `to`.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), Error> {
        let (fdir, fname) = self.parent(from).map_err(self.err("renaming", from))?;
        let (tdir, tname) = self.parent(to).map_err(self.err("renaming to", to))?;
        rustix::fs::renameat(&fdir, fname, &tdir, tname)
            .map_err(|e| self.err("renaming", from)(e.into()))?;
        rustix::fs::fsync(&tdir).map_err(|e| self.err("syncing the directory of", to)(e.into()))
    }

    /// Removes the file or symlink `rel`; `false` if it was not there.
    pub fn remove_file(&self, rel: &str) -> Result<bool, Error> {
        self.remove(rel, false).map_err(self.err("removing", rel))
    }

    /// Removes `rel`, a directory with everything in it or anything else;
    /// `false` if it was not there. Symlinks inside are removed, never
    /// followed.
    pub fn remove_all(&self, rel: &str) -> Result<bool, Error> {
        self.remove(rel, true).map_err(self.err("removing", rel))
    }

    fn remove(&self, rel: &str, tree: bool) -> io::Result<bool> {
        let Some((dir, name)) = opt(self.parent(rel))? else {
            return Ok(false);
        };
        match remove_at(&dir, name, tree) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
        rustix::fs::fsync(&dir)?;
        Ok(true)
    }

    /// Makes the symlink `rel` pointing to `target`.
    pub fn symlink(&self, target: &str, rel: &str) -> Result<(), Error> {
        let (dir, name) = self
            .parent(rel)
            .map_err(self.err("creating the symlink", rel))?;
        rustix::fs::symlinkat(target, &dir, name)
            .map_err(|e| self.err("creating the symlink", rel)(e.into()))
    }

    /// Opens `rel` read-write, creating it with `mode` if missing (a lock
    /// file); never truncates.
    pub fn open_or_create(&self, rel: &str, mode: u32) -> Result<File, Error> {
        self.resolve(rel, OFlags::RDWR | OFlags::CREATE, mode)
            .map(File::from)
            .map_err(self.err("opening", rel))
    }
}

/// The most [`Root::read`] reads: 16 MiB (a plan, a manifest, a config file
/// is far smaller).
pub const READ_LIMIT: u64 = 16 << 20;

/// Reads all of `f`, a regular file of at most `limit` bytes.
fn bounded(f: File, limit: u64) -> io::Result<Vec<u8>> {
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a directory, FIFO, device or socket): replace it with a regular file",
        ));
    }
    let mut buf = Vec::new();
    f.take(limit.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!(
                "larger than the {limit} bytes allowed: not the file this program wrote or expects"
            ),
        ));
    }
    Ok(buf)
}

/// Names in an open directory.
fn list(fd: OwnedFd) -> io::Result<Vec<OsString>> {
    let mut out = Vec::new();
    for entry in Dir::new(fd)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(out)
}

/// Removes `name` in `dir` without following any symlink; with `tree`, a
/// directory goes with its contents.
fn remove_at(dir: &OwnedFd, name: &OsStr, tree: bool) -> io::Result<()> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?);
    }
    if !tree {
        return Err(Errno::ISDIR.into());
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let sub = rustix::fs::openat(dir, name, flags, Mode::empty())?;
    for entry in list(sub.try_clone()?)? {
        remove_at(&sub, &entry, true)?;
    }
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}

#[cfg(test)]
mod tests;

//! Atomic file writes: temp file in the same directory, fsync, rename,
//! fsync the directory. A crash leaves the old file or the new one, never
//! a mix, and never a partial file under the final name.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// Error from an atomic write; names the path.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct AtomicError {
    /// What was being done.
    pub action: &'static str,
    /// The file or directory involved.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: io::Error,
}

fn err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> AtomicError + 'a {
    move |source| AtomicError {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// A file being written next to its final path; nothing appears under the
/// final name until [`AtomicFile::commit`]. Dropping it removes the temp file.
#[derive(Debug)]
pub struct AtomicFile {
    tmp: NamedTempFile,
    dest: PathBuf,
}

impl AtomicFile {
    /// Starts writing `dest` (its directory must exist).
    pub fn create(dest: &Path) -> Result<Self, AtomicError> {
        let dir = parent_dir(dest);
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(err("creating a temporary file in", dir))?;
        Ok(Self {
            tmp,
            dest: dest.to_path_buf(),
        })
    }

    /// The open temp file.
    pub fn file(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// Sets permission bits on the temp file.
    pub fn set_mode(&self, mode: u32) -> Result<(), AtomicError> {
        use std::os::unix::fs::PermissionsExt;
        self.tmp
            .as_file()
            .set_permissions(fs::Permissions::from_mode(mode))
            .map_err(err("setting the mode of", self.tmp.path()))
    }

    /// fsyncs, renames over the destination and fsyncs the directory.
    pub fn commit(self) -> Result<(), AtomicError> {
        self.tmp
            .as_file()
            .sync_all()
            .map_err(err("syncing", self.tmp.path()))?;
        let dest = self.dest;
        self.tmp.persist(&dest).map_err(|e| AtomicError {
            action: "renaming a temporary file to",
            path: dest.clone(),
            source: e.error,
        })?;
        sync_dir(parent_dir(&dest))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tmp.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tmp.flush()
    }
}

/// Writes `bytes` to `dest` atomically with permission bits `mode`.
pub fn write(dest: &Path, bytes: &[u8], mode: u32) -> Result<(), AtomicError> {
    let mut f = AtomicFile::create(dest)?;
    f.write_all(bytes).map_err(err("writing", dest))?;
    f.set_mode(mode)?;
    f.commit()
}

/// fsyncs a directory so a rename in it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), AtomicError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err("syncing the directory", dir))
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp file left behind"
        );
    }

    #[test]
    fn dropped_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let mut f = AtomicFile::create(&p).unwrap();
        f.write_all(b"partial").unwrap();
        drop(f);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}

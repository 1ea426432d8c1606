//! A user's driver file copied into the cache by whoever reads it: `import`
//! (which reads it only to hash it) or the bake's single pass, where the
//! bundle writer feeds it the blocks it compresses and hashes
//! ([`ImportTarget`]). Either way the copy is a temp file in the cache
//! written around the page cache ([`DirectWriter`]); nothing appears under
//! the cache name until every byte was seen and the digests matched, and
//! an import dropped before that leaves nothing behind.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::error::{FetchError, io_err};
use super::{Expected, FetchOptions, FetchRequest, Fetched, Outcome, ProgressMode};
use super::{check_filename, sidecar};
use crate::atomic::AtomicFile;
use crate::direct::DirectWriter;
use crate::hash::Digests;
use crate::input::open_regular;
use crate::stamp::FileStamp;

/// What the bake's writer must copy into the cache while it reads a user's
/// file: checked when made (a plain cache name, a regular file, checksums of
/// the right form), nothing written yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportTarget {
    /// The user's file (`--driver-file` or the profile's `file`).
    pub from: PathBuf,
    /// `<cache>/<filename>`.
    pub dest: PathBuf,
    /// The registry filename.
    pub filename: String,
    /// Expected sha256 (lower-case hex): the pin.
    pub sha256: String,
    /// Expected md5 when one is declared.
    pub md5: Option<String>,
    /// The file's size when it was opened (fstat).
    pub size: u64,
}

/// The [`ImportTarget`] for `req`'s `driver_file`, or `None` when its
/// sha256 is not pinned (nothing to check it against while it streams:
/// `fetch` imports it, or says what is missing). Opens the file as `import`
/// does (a FIFO or a device is refused) and creates the cache directory.
pub fn import_target(
    req: &FetchRequest,
    opts: &FetchOptions,
) -> Result<Option<ImportTarget>, FetchError> {
    let Some(src) = &req.driver_file else {
        return Ok(None);
    };
    let filename = check_filename(&req.filename)?;
    let expect = Expected::new(filename, req.md5.as_deref(), req.sha256.as_deref())?;
    let Some(sha256) = expect.sha256 else {
        return Ok(None);
    };
    let (_, meta) = open_source(src)?;
    let dir = &opts.cache_dir;
    fs::create_dir_all(dir).map_err(io_err("creating the cache directory", dir))?;
    if opts.progress == ProgressMode::Quiet {
        crate::progress::silence();
    }
    Ok(Some(ImportTarget {
        from: src.clone(),
        dest: dir.join(filename),
        filename: filename.to_owned(),
        sha256,
        md5: expect.md5,
        size: meta.len(),
    }))
}

/// The user's file opened without blocking, refused unless a regular file:
/// a FIFO would hang, `/dev/zero` would never end.
pub(super) fn open_source(src: &Path) -> Result<(fs::File, fs::Metadata), FetchError> {
    open_regular(src).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidInput => FetchError::NotAFile {
            path: src.to_path_buf(),
            reason: e.to_string(),
        },
        _ => io_err("opening the driver file", src)(e),
    })
}

/// A copy of a user's file being written into the cache, fed in order.
#[derive(Debug)]
pub struct CacheImport {
    out: AtomicFile,
    copy: DirectWriter,
    from: PathBuf,
    filename: String,
    expect: Expected,
    /// The first write error (reported by [`Self::verify`]).
    failed: Option<io::Error>,
}

impl CacheImport {
    /// Starts the copy `target` describes.
    pub fn begin(target: &ImportTarget) -> Result<Self, FetchError> {
        let expect = Expected {
            md5: target.md5.clone(),
            sha256: Some(target.sha256.clone()),
        };
        Self::create(&target.from, &target.dest, &target.filename, expect)
    }

    pub(super) fn create(
        from: &Path,
        dest: &Path,
        filename: &str,
        expect: Expected,
    ) -> Result<Self, FetchError> {
        let mut out = AtomicFile::create(dest)?;
        // Around the page cache: the copy is fsynced at once, and is read
        // again at most by a later bake.
        let copy = DirectWriter::new(out.file().try_clone().map_err(writing(dest))?);
        Ok(Self {
            out,
            copy,
            from: from.to_path_buf(),
            filename: filename.to_owned(),
            expect,
            failed: None,
        })
    }

    /// The registry filename it is copied to.
    pub fn filename(&self) -> &str {
        &self.filename
    }

    /// Whether the md5 must be computed for [`Self::verify`].
    pub fn wants_md5(&self) -> bool {
        self.expect.wants_md5()
    }

    /// Appends the next block. After a failure nothing more is written and
    /// every call fails; [`Self::verify`] reports the first error.
    pub fn write(&mut self, block: &[u8]) -> io::Result<()> {
        if let Some(e) = &self.failed {
            return Err(io::Error::new(e.kind(), e.to_string()));
        }
        self.copy.write_all(block).map_err(|e| {
            let mirror = io::Error::new(e.kind(), e.to_string());
            self.failed = Some(e);
            mirror
        })
    }

    /// The first write error, as the user sees it.
    pub fn write_error(&mut self) -> Option<FetchError> {
        let dest = self.out.dest();
        self.failed.take().map(|e| writing(&dest)(e))
    }

    /// `digests` (of every byte written) against the expected ones: a
    /// mismatch is [`FetchError::FileMismatch`] and the copy is dropped.
    /// On a match the copy's last bytes are written; it is not yet visible.
    pub fn verify(mut self, digests: &Digests) -> Result<StagedImport, FetchError> {
        if let Some(e) = self.write_error() {
            return Err(e);
        }
        if let Some(mismatch) = self.expect.mismatch(digests) {
            return Err(FetchError::FileMismatch {
                path: self.from,
                filename: self.filename,
                mismatch,
            });
        }
        let dest = self.out.dest();
        self.copy.finish().map_err(writing(&dest))?;
        Ok(StagedImport {
            out: self.out,
            from: self.from,
            digests: digests.clone(),
        })
    }
}

/// A verified copy waiting for its rename into the cache.
#[derive(Debug)]
pub struct StagedImport {
    out: AtomicFile,
    from: PathBuf,
    digests: Digests,
}

impl StagedImport {
    /// Mode 0644, fsync, rename to the cache name, fsync the directory; then
    /// the sidecar (the digests with the new file's stamp), and a leftover
    /// partial download of the same file is removed. `stamp`: the user's
    /// file's, when it is proven unchanged while it was read.
    pub fn commit(self, stamp: Option<FileStamp>) -> Result<Fetched, FetchError> {
        let dest = self.out.dest();
        self.out.set_mode(0o644)?;
        self.out.commit()?;
        let meta = fs::metadata(&dest).map_err(io_err("reading the metadata of", &dest))?;
        sidecar::write(&dest, &meta, &self.digests)?;
        let mut part = OsString::from(dest.as_os_str());
        part.push(".part");
        let _ = fs::remove_file(PathBuf::from(part));
        Ok(Fetched {
            path: dest,
            digests: self.digests,
            outcome: Outcome::Imported {
                from: self.from,
                stamp,
            },
        })
    }
}

fn writing(dest: &Path) -> impl FnOnce(io::Error) -> FetchError + '_ {
    io_err("writing a copy of the driver file to", dest)
}

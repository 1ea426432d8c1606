//! The bundle writer: a [`BundleSpec`] (a sorted map of paths) streamed into
//! a zstd-compressed `newc` cpio with a `manifest.toml`.
//!
//! Determinism (DESIGN.md, "Bundle layout"): entries in byte order of path,
//! missing parent directories synthesised with mode 0755 (a prefix sorts
//! before its extensions, so parents always precede children), metadata
//! fixed by [`crate::newc::NewcWriter`], zstd always in multithreaded mode
//! (identical bytes for any worker count >= 1) at a fixed level with the
//! checksum flag on.
//!
//! The manifest sorts before `payload/` and `plan.toml`, so it is written
//! from the digests every [`Source::File`] declares up front; while a file is
//! streamed into the compressor its bytes are hashed in the same pass, and a
//! mismatch fails the bake before anything appears under the final names.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use vgpu_plan::layout;
use vgpu_plan::manifest::Manifest;

use crate::atomic::{AtomicError, AtomicFile};
use crate::hash::{Digests, DualHasher, hex};
use crate::newc::{NewcError, NewcWriter};

/// Mode of directories the writer synthesises.
pub const SYNTH_DIR_MODE: u32 = 0o755;
/// Mode of the manifest file.
pub const MANIFEST_MODE: u32 = 0o644;
/// zstd level used by default (fixed: part of the determinism contract).
pub const DEFAULT_LEVEL: i32 = 3;

mod spec;
use spec::ancestors;
pub use spec::{BundleSpec, Entry, Source};

/// Error building or writing a bundle; names the bundle, entry or file.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A path that cannot go into a bundle.
    #[error("bundle path {path:?} is not allowed: {reason}")]
    BadPath {
        /// The path.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// The path is already in the spec.
    #[error("bundle path {path} was added twice: each path may appear once")]
    Duplicate {
        /// The path.
        path: String,
    },
    /// An ancestor of the path is a file or a symlink in the spec.
    #[error("cannot add {path}: {ancestor} is a {kind} in the bundle, not a directory")]
    UnderNonDir {
        /// The path.
        path: String,
        /// The ancestor.
        ancestor: String,
        /// What the ancestor is.
        kind: &'static str,
    },
    /// A file or symlink where the spec already has entries below.
    #[error("cannot add {path} as a {kind}: the bundle already has {child} under it")]
    HasChildren {
        /// The path.
        path: String,
        /// What was being added.
        kind: &'static str,
        /// An existing entry below it.
        child: String,
    },
    /// The manifest and signature paths belong to [`write_bundle`].
    #[error("{path} is reserved: write_bundle writes the manifest and its signature itself")]
    Reserved {
        /// The path.
        path: String,
    },
    /// A bundle name that is not a plain file name.
    #[error("bundle name {name:?} is not allowed: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A declared digest that is not hex of the right length.
    #[error("entry {path}: declared {what} {value:?} is not {len} hex digits")]
    BadDigest {
        /// The entry.
        path: String,
        /// `sha256` or `md5`.
        what: &'static str,
        /// The value given.
        value: String,
        /// Expected length.
        len: usize,
    },
    /// newc cannot store files of 4 GiB or more.
    #[error(
        "entry {path}: {size} bytes is more than a newc archive can hold (4 GiB - 1); split the file or leave it out of the bundle"
    )]
    TooLarge {
        /// The entry.
        path: String,
        /// Its size.
        size: u64,
    },
    /// A source file could not be read.
    #[error("entry {entry}: cannot read source file {}: {source}; fetch it again", file.display())]
    Source {
        /// The entry.
        entry: String,
        /// The source file.
        file: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A source file's content is not what it was declared as.
    #[error("entry {entry}: source file {} has {what} {actual}, but {expected} was declared; the file changed or the cache is corrupt: fetch it again", file.display())]
    Mismatch {
        /// The entry.
        entry: String,
        /// The source file.
        file: PathBuf,
        /// `sha256`, `md5` or `size`.
        what: &'static str,
        /// Declared value.
        expected: String,
        /// Actual value.
        actual: String,
    },
    /// Writing the archive failed.
    #[error("writing bundle {}: {source}", bundle.display())]
    Write {
        /// The bundle being written.
        bundle: PathBuf,
        /// The cause.
        #[source]
        source: NewcError,
    },
    /// Signing the manifest failed.
    #[error("signing the bundle: {0}")]
    Sign(#[from] Box<crate::sign::SignError>),
    /// Creating, syncing or renaming an output file failed.
    #[error("writing the bundle: {0}")]
    Atomic(#[from] AtomicError),
}

/// How to write a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BakeOptions {
    /// mtime of every entry (the CLI passes `SOURCE_DATE_EPOCH`, default 0).
    pub mtime: u64,
    /// zstd level ([`DEFAULT_LEVEL`]).
    pub level: i32,
    /// zstd worker threads; 0 is treated as 1 (multithreaded mode is always
    /// on because its output differs from single-threaded mode).
    pub workers: u32,
    /// Sign the manifest with this key: adds [`layout::SIGNATURE_FILE`].
    pub sign: Option<crate::sign::SigningKey>,
}

impl Default for BakeOptions {
    fn default() -> Self {
        Self {
            mtime: 0,
            level: DEFAULT_LEVEL,
            workers: std::thread::available_parallelism()
                .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
                .unwrap_or(1),
            sign: None,
        }
    }
}

/// What [`write_bundle`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BakeOutput {
    /// `<out_dir>/<name>.cpio.zst`.
    pub bundle: PathBuf,
    /// `<out_dir>/<name>.cpio.zst.sha256`.
    pub sha256_file: PathBuf,
    /// sha256 of the compressed bundle.
    pub sha256: String,
    /// Size of the compressed bundle.
    pub size: u64,
    /// Number of archive entries (directories included, trailer not).
    pub entries: usize,
    /// The manifest written into the bundle.
    pub manifest: Manifest,
    /// Digests (md5, sha256, size) of every regular file as streamed,
    /// including the manifest, by bundle path.
    pub payload_digests: BTreeMap<String, Digests>,
}

/// A planned archive entry; borrows from the spec.
enum Item<'a> {
    Dir(u32),
    File(u32, &'a Source),
    Symlink(&'a str),
}

/// Writes `<out_dir>/<name>.cpio.zst` and `<name>.cpio.zst.sha256`
/// (sha256sum format: `"<hex>  <name>.cpio.zst\n"`) atomically: both via
/// temp files in `out_dir`, fsync, rename. On any error nothing appears under
/// either final name, and an older bundle of the same name is left as it was.
/// Adds the manifest itself.
pub fn write_bundle(
    spec: &BundleSpec,
    out_dir: &Path,
    opts: &BakeOptions,
) -> Result<BakeOutput, BundleError> {
    check_name(&spec.name)?;
    let manifest = spec.manifest();
    let manifest_text = manifest.to_toml();
    let manifest_source = Source::Bytes(manifest_text.clone().into_bytes());
    let placeholder = Entry::File {
        mode: MANIFEST_MODE,
        source: Source::Bytes(Vec::new()),
    };
    spec.check_new(layout::MANIFEST_FILE, &placeholder)?;
    let signature_source = match &opts.sign {
        Some(key) => {
            spec.check_new(layout::SIGNATURE_FILE, &placeholder)?;
            Some(Source::Bytes(
                key.sign_manifest(&spec.name, manifest_text.as_bytes())
                    .map_err(Box::new)?
                    .into_bytes(),
            ))
        }
        None => None,
    };

    let mut items: BTreeMap<&str, Item<'_>> = BTreeMap::new();
    for (path, e) in spec.entries() {
        let item = match e {
            Entry::Dir { mode } => Item::Dir(*mode),
            Entry::File { mode, source } => Item::File(*mode, source),
            Entry::Symlink { target } => Item::Symlink(target),
        };
        items.insert(path, item);
    }
    items.insert(
        layout::MANIFEST_FILE,
        Item::File(MANIFEST_MODE, &manifest_source),
    );
    if let Some(sig) = &signature_source {
        items.insert(layout::SIGNATURE_FILE, Item::File(MANIFEST_MODE, sig));
    }
    let paths: Vec<&str> = items.keys().copied().collect();
    for path in paths {
        for a in ancestors(path) {
            items.entry(a).or_insert(Item::Dir(SYNTH_DIR_MODE));
        }
    }
    preflight(&items)?;

    let name = format!("{}.cpio.zst", spec.name);
    let bundle = out_dir.join(&name);
    let sha256_file = out_dir.join(format!("{name}.sha256"));
    std::fs::create_dir_all(out_dir).map_err(|source| AtomicError {
        action: "creating the output directory",
        path: out_dir.to_path_buf(),
        source,
    })?;
    let wrap = |source: NewcError| BundleError::Write {
        bundle: bundle.clone(),
        source,
    };

    let mut file = AtomicFile::create(&bundle)?;
    let mut encoder = zstd::Encoder::new(CountingSha256::new(&mut file), opts.level)
        .map_err(|e| wrap(e.into()))?;
    encoder
        .multithread(opts.workers.max(1))
        .and_then(|()| encoder.include_checksum(true))
        .map_err(|e| wrap(e.into()))?;
    let mut w = NewcWriter::new(encoder, opts.mtime).map_err(wrap)?;
    let mut payload_digests = BTreeMap::new();
    for (path, item) in &items {
        match item {
            Item::Dir(mode) => w.append_dir(path, *mode).map_err(wrap)?,
            Item::Symlink(target) => w.append_symlink(path, target).map_err(wrap)?,
            Item::File(mode, source) => {
                let digests = stream_file(&mut w, path, *mode, source, &bundle)?;
                payload_digests.insert(path.to_string(), digests);
            }
        }
    }
    let entries = w.entries();
    let encoder = w.finish().map_err(wrap)?;
    let (sha256, size) = encoder.finish().map_err(|e| wrap(e.into()))?.finish();
    file.set_mode(0o644)?;

    let mut sums = AtomicFile::create(&sha256_file)?;
    sums.write_all(format!("{sha256}  {name}\n").as_bytes())
        .map_err(|source| AtomicError {
            action: "writing",
            path: sha256_file.clone(),
            source,
        })?;
    sums.set_mode(0o644)?;
    // The bundle is renamed first: a crash between the two renames leaves a
    // new bundle beside a stale checksum, which `sha256sum -c` rejects.
    file.commit()?;
    sums.commit()?;
    Ok(BakeOutput {
        bundle,
        sha256_file,
        sha256,
        size,
        entries,
        manifest,
        payload_digests,
    })
}

/// Checks every file source before any output file is created.
fn preflight(items: &BTreeMap<&str, Item<'_>>) -> Result<(), BundleError> {
    for (path, item) in items {
        let Item::File(_, source) = item else {
            continue;
        };
        if source.size() > u64::from(u32::MAX) {
            return Err(BundleError::TooLarge {
                path: path.to_string(),
                size: source.size(),
            });
        }
        if let Source::File {
            path: file, size, ..
        } = source
        {
            let meta = std::fs::metadata(file).map_err(|source| BundleError::Source {
                entry: path.to_string(),
                file: file.clone(),
                source,
            })?;
            if !meta.is_file() {
                return Err(BundleError::Source {
                    entry: path.to_string(),
                    file: file.clone(),
                    source: io::Error::other("not a regular file"),
                });
            }
            if meta.len() != *size {
                return Err(mismatch(path, file, "size", size, &meta.len()));
            }
        }
    }
    Ok(())
}

/// Streams one file into the archive, hashing each byte as it passes, and
/// checks the declared digests.
fn stream_file<W: Write>(
    w: &mut NewcWriter<W>,
    path: &str,
    mode: u32,
    source: &Source,
    bundle: &Path,
) -> Result<Digests, BundleError> {
    let mut hasher = DualHasher::new();
    let wrap = |source: NewcError| BundleError::Write {
        bundle: bundle.to_path_buf(),
        source,
    };
    match source {
        Source::Bytes(b) => {
            w.append_file_from_reader(path, mode, b.len() as u64, &b[..], |c| hasher.update(c))
                .map_err(wrap)?;
            Ok(hasher.finish())
        }
        Source::File {
            path: file,
            sha256,
            md5,
            size,
        } => {
            let mut reader = File::open(file)
                .map(|f| SourceReader {
                    file: f,
                    error: None,
                })
                .map_err(|source| BundleError::Source {
                    entry: path.into(),
                    file: file.clone(),
                    source,
                })?;
            // Large payloads: hash on another thread while this one feeds
            // the compressor, so the two overlap.
            let mut background = crate::hash::BackgroundHasher::new();
            let copied =
                w.append_file_from_reader(path, mode, *size, &mut reader, |c| background.update(c));
            let digests = background.finish();
            match (copied, reader.error.take()) {
                (Ok(_), _) => {}
                (Err(_), Some(source)) => {
                    return Err(BundleError::Source {
                        entry: path.into(),
                        file: file.clone(),
                        source,
                    });
                }
                (
                    Err(NewcError::SizeChanged {
                        expected, actual, ..
                    }),
                    None,
                ) => return Err(mismatch(path, file, "size", &expected, &actual)),
                (Err(e), None) => return Err(wrap(e)),
            }
            let d = digests;
            if &d.sha256 != sha256 {
                return Err(mismatch(path, file, "sha256", sha256, &d.sha256));
            }
            if let Some(md5) = md5
                && &d.md5 != md5
            {
                return Err(mismatch(path, file, "md5", md5, &d.md5));
            }
            Ok(d)
        }
    }
}

fn mismatch(
    entry: &str,
    file: &Path,
    what: &'static str,
    expected: &impl ToString,
    actual: &impl ToString,
) -> BundleError {
    BundleError::Mismatch {
        entry: entry.into(),
        file: file.to_path_buf(),
        what,
        expected: expected.to_string(),
        actual: actual.to_string(),
    }
}

/// The bundle name becomes a file name in `out_dir`.
fn check_name(name: &str) -> Result<(), BundleError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.contains('/') || name.contains('\0') {
        "it must be a plain file name (no `/`)"
    } else if name.starts_with('.') {
        "it must not start with `.`"
    } else {
        return Ok(());
    };
    Err(BundleError::BadName {
        name: name.into(),
        reason,
    })
}

/// A source file that remembers its own read error, so a failure to read
/// the source is told apart from a failure to write the bundle.
struct SourceReader {
    file: File,
    error: Option<io::Error>,
}

impl Read for SourceReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::Interrupted {
                return e;
            }
            let copy = io::Error::new(e.kind(), e.to_string());
            self.error = Some(e);
            copy
        })
    }
}

/// Counts and sha256-hashes the compressed bytes on their way to disk (no
/// md5 here: nobody needs it for the bundle, and it is the slow hash).
struct CountingSha256<W> {
    inner: W,
    sha256: Sha256,
    size: u64,
}

impl<W: Write> CountingSha256<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            sha256: Sha256::new(),
            size: 0,
        }
    }

    fn finish(self) -> (String, u64) {
        (hex(&self.sha256.finalize()), self.size)
    }
}

impl<W: Write> Write for CountingSha256<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha256.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests;

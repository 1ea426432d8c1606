//! The bundle writer: a [`BundleSpec`] (a sorted map of paths) streamed into
//! a zstd-compressed `newc` cpio with a `manifest.toml`.
//!
//! Determinism (DESIGN.md, "Bundle layout"): entries in byte order of path,
//! missing parent directories synthesised with mode 0755 (a prefix sorts
//! before its extensions, so parents always precede children), metadata
//! fixed by [`crate::newc::NewcWriter`], and the stream cut into independent
//! zstd frames at fixed places, each compressed single-threaded at a fixed
//! level with the checksum flag on ([`frames`]): identical bytes for any
//! number of workers, and for any content of the frame cache
//! ([`frame_cache`]), whose entries are the frames a cold bake makes.
//!
//! The manifest sorts before `payload/` and `plan.toml`, so it is written
//! from the digests every [`Source::File`] declares up front; while a file is
//! streamed into the compressor its bytes are hashed on other threads (only
//! the digests needed: none when its stamp proves it unchanged), and a
//! mismatch fails the bake before anything appears under the final names.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use vgpu_plan::layout;
use vgpu_plan::manifest::Manifest;

use crate::atomic::{AtomicError, AtomicFile};
use crate::newc::{NewcError, NewcWriter};

/// Mode of directories the writer synthesises.
pub const SYNTH_DIR_MODE: u32 = 0o755;
/// Mode of the manifest file.
pub const MANIFEST_MODE: u32 = 0o644;
/// zstd level used by default (fixed: part of the determinism contract).
pub const DEFAULT_LEVEL: i32 = 3;

mod frame_cache;
mod frames;
mod spec;
mod stream;
use frame_cache::FrameCache;
pub use frame_cache::{
    CACHE_MIN, EntryAudit, EntryState, FRAMES_DIR, audit as audit_frame_cache,
    has_entry as has_frame_entry,
};
pub use frames::{CHUNK, FRAME_FORMAT};
use frames::{Frames, WriteFail};
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
    #[error("writing bundle {}: {source}; check that --out is writable and has room for it", bundle.display())]
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
    #[error("writing the bundle: {0}; check that --out is writable and has room for it")]
    Atomic(#[from] AtomicError),
    /// A frame cache entry stayed damaged after it was rebuilt.
    #[error("frame cache entry {}: {source}; remove the directory {} (it is only a cache) and bake again", path.display(), path.parent().unwrap_or(Path::new(".")).display())]
    FrameCache {
        /// The entry's frames file.
        path: PathBuf,
        /// What is wrong.
        source: io::Error,
    },
}

/// How to write a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BakeOptions {
    /// mtime of every entry (the CLI passes `SOURCE_DATE_EPOCH`, default 0).
    pub mtime: u64,
    /// zstd level ([`DEFAULT_LEVEL`]).
    pub level: i32,
    /// Compression threads; 0 is treated as 1. The bytes do not depend on it.
    pub workers: u32,
    /// Sign the manifest with this key: adds [`layout::SIGNATURE_FILE`].
    pub sign: Option<crate::sign::SigningKey>,
    /// The frame cache directory (files of [`CACHE_MIN`] bytes or more); `None`: no cache, every
    /// file compressed. `bake` sets `<driver cache>/`[`FRAMES_DIR`].
    pub frame_cache: Option<PathBuf>,
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
            frame_cache: None,
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
    /// Digests of every regular file, including the manifest, by bundle
    /// path, and how each was vouched for.
    pub payload_digests: BTreeMap<String, FileDigests>,
    /// What the frame cache did (hits, entries stored, damage found and
    /// repaired, entries it could not store).
    pub notes: Vec<String>,
}

/// A regular file's content as it went into the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigests {
    /// Lower-case hex sha256 (computed, or the declared one when the
    /// content was proven otherwise: see `proof`).
    pub sha256: String,
    /// md5, computed and checked when the source declared one.
    pub md5: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// How the bytes were vouched for.
    pub proof: Proof,
}

/// Why the bundle writer believes a file's bytes are what was declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// Held in memory and hashed for the manifest.
    Memory,
    /// Read and hashed while it was compressed.
    Hashed,
    /// Read without hashing: the file still has the stamp (device, inode,
    /// size, mtime) its declared digests were taken with.
    Stamp,
    /// Not read: its frames came from the frame cache entry of the
    /// declared sha256, checked by CRC as they were copied.
    Cached,
}

/// A planned archive entry; borrows from the spec.
enum Item<'a> {
    Dir(u32),
    File(u32, &'a Source),
    Symlink(&'a str),
}

/// How many times a bundle is written again after a damaged frame cache
/// entry was found (and removed) while copying it.
const CORRUPT_RETRIES: usize = 3;

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
    let cache = opts
        .frame_cache
        .clone()
        .map(|dir| FrameCache::new(dir, opts.level));
    let mut notes = Vec::new();
    let timings = Timings::from_env();
    let mut attempt = 0;
    let (file, written, entries, payload_digests, hits) = loop {
        let mut file = AtomicFile::create(&bundle)?;
        match write_archive(
            &items,
            &manifest,
            file.file(),
            &bundle,
            cache.as_ref(),
            opts,
        ) {
            Ok((written, entries, digests, hits)) => break (file, written, entries, digests, hits),
            Err(Failed::Corrupt(path)) if attempt < CORRUPT_RETRIES => {
                attempt += 1;
                if let Some(c) = &cache {
                    c.remove(&path);
                }
                notes.push(format!(
                    "frame cache: {} did not match its checksum: removed, and the bundle written again from the source",
                    path.display()
                ));
            }
            Err(Failed::Corrupt(path)) => {
                return Err(BundleError::FrameCache {
                    path,
                    source: io::Error::other("damaged again after being rebuilt"),
                });
            }
            Err(Failed::Bundle(e)) => return Err(e),
        }
    };
    notes.extend(written.notes);
    timings.lap("archive compressed and written (frames, cache copies, sha256)");
    file.set_mode(0o644)?;

    let mut sums = AtomicFile::create(&sha256_file)?;
    sums.write_all(format!("{}  {name}\n", written.sha256).as_bytes())
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
    timings.lap("bundle and .sha256 fsynced and renamed");
    // Cache entries only from a bake that succeeded: every byte of theirs
    // was checked against its declared digest (or proven by its stamp).
    let stored = written.entries.len();
    for entry in written.entries {
        if let Err(e) = entry.commit() {
            let dir = cache.as_ref().map(|c| c.dir().display().to_string());
            notes.push(format!(
                "frame cache: cannot store an entry in {}: {e}; the next bake compresses that file again",
                dir.unwrap_or_default()
            ));
        }
    }
    timings.lap("new frame cache entries renamed into place");
    if let Some(c) = &cache {
        notes.push(format!(
            "frame cache {}: {hits} large file(s) copied from it, {stored} stored",
            c.dir().display()
        ));
    }
    Ok(BakeOutput {
        bundle,
        sha256_file,
        sha256: written.sha256,
        size: written.size,
        entries,
        manifest,
        payload_digests,
        notes,
    })
}

/// `VGPU_BAKE_TIMINGS=1` or `-v`: the writer's phases on stderr, to see where a
/// bake's time goes (the benchmark's breakdown; no effect otherwise).
struct Timings(Option<std::time::Instant>);

impl Timings {
    fn from_env() -> Self {
        let on = std::env::var_os("VGPU_BAKE_TIMINGS").is_some_and(|v| v == "1")
            || crate::term::verbose();
        Self(on.then(std::time::Instant::now))
    }

    fn lap(&self, what: &str) {
        if let Some(start) = self.0 {
            errln!("timings: {:8.3} s  {what}", start.elapsed().as_secs_f64());
        }
    }
}

/// Why one attempt at the archive failed.
enum Failed {
    Bundle(BundleError),
    /// A frame cache entry's bytes did not match its sidecar.
    Corrupt(PathBuf),
}

impl From<BundleError> for Failed {
    fn from(e: BundleError) -> Self {
        Failed::Bundle(e)
    }
}

type Archive = (frames::Written, usize, BTreeMap<String, FileDigests>, usize);

/// One attempt: the entries into frames into `out`.
fn write_archive(
    items: &BTreeMap<&str, Item<'_>>,
    manifest: &Manifest,
    out: &mut File,
    bundle: &Path,
    cache: Option<&FrameCache>,
    opts: &BakeOptions,
) -> Result<Archive, Failed> {
    let wrap = |source: NewcError| BundleError::Write {
        bundle: bundle.to_path_buf(),
        source,
    };
    std::thread::scope(|s| {
        let (frames, writer) = Frames::start(s, out, opts.level, opts.workers);
        let fed = (|| -> Result<_, BundleError> {
            let mut ctx = stream::Ctx {
                scope: s,
                cache,
                bundle,
                hits: 0,
            };
            let mut w =
                NewcWriter::new(stream::Segmenter::new(&frames), opts.mtime).map_err(wrap)?;
            let mut digests = BTreeMap::new();
            for (path, item) in items {
                match item {
                    Item::Dir(mode) => w.append_dir(path, *mode).map_err(wrap)?,
                    Item::Symlink(target) => w.append_symlink(path, target).map_err(wrap)?,
                    Item::File(mode, source) => {
                        let sha256 = if source.size() >= CACHE_MIN {
                            key_of(manifest, path, source)
                        } else {
                            String::new()
                        };
                        let d =
                            stream::stream_file(&mut ctx, &mut w, path, *mode, source, &sha256)?;
                        digests.insert(path.to_string(), d);
                    }
                }
            }
            let entries = w.entries();
            let mut seg = w.finish().map_err(wrap)?;
            seg.end_frame().map_err(|e| wrap(e.into()))?;
            Ok((entries, digests, ctx.hits))
        })();
        drop(frames);
        let written = writer
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        match (fed, written) {
            (Ok((entries, digests, hits)), Ok(w)) => Ok((w, entries, digests, hits)),
            (_, Err(WriteFail::Corrupt(path))) => Err(Failed::Corrupt(path)),
            (_, Err(WriteFail::Output(e) | WriteFail::Compress(e))) => Err(wrap(e.into()).into()),
            (Err(e), Ok(_)) => Err(e.into()),
        }
    })
}

/// The sha256 a large file's frames are cached under: declared for a file
/// source, the manifest's for bytes (computed once, there).
fn key_of(manifest: &Manifest, path: &str, source: &Source) -> String {
    match source {
        Source::File { sha256, .. } => sha256.clone(),
        Source::Bytes(b) => manifest
            .get(path)
            .and_then(|e| e.sha256.as_ref())
            .map(|s| s.as_str().to_owned())
            .unwrap_or_else(|| crate::hash::hex(&Sha256::digest(b))),
    }
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

#[cfg(test)]
mod tests;

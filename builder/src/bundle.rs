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

mod error;
mod frame_cache;
mod frames;
mod import;
mod spec;
mod stream;
mod timings;
pub use error::BundleError;
use frame_cache::FrameCache;
pub use frame_cache::{
    CACHE_MIN, EntryAudit, EntryState, FRAMES_DIR, audit as audit_frame_cache,
    has_entry as has_frame_entry,
};
pub use frames::{CHUNK, FRAME_FORMAT};
use frames::{Frames, WriteFail};
use spec::ancestors;
pub use spec::{BundleSpec, Entry, Source};
use timings::Timings;

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
    /// The user's files copied into the driver cache as they were read
    /// ([`BundleSpec::import_into`]).
    pub imported: Vec<crate::fetch::Fetched>,
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
    let (file, written, entries, payload_digests, hits, staged) = loop {
        let mut file = AtomicFile::create(&bundle)?;
        let to = Target {
            out: file.file(),
            bundle: &bundle,
            cache: cache.as_ref(),
            imports: spec.imports(),
        };
        match write_archive(&items, &manifest, to, opts) {
            Ok((w, entries, digests, hits, staged)) => {
                break (file, w, entries, digests, hits, staged);
            }
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
    // Every byte of these matched its pins: into the driver cache before
    // the bundle appears (a failure here leaves no bundle, as an import
    // before the bake did).
    let imported = import::commit(staged)?;
    if !imported.is_empty() {
        timings.lap("user's driver file renamed into the driver cache (fsync, sidecar)");
    }
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
        imported,
    })
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

type Archive = (
    frames::Written,
    usize,
    BTreeMap<String, FileDigests>,
    usize,
    Vec<crate::fetch::StagedImport>,
);

/// Where one attempt writes: the bundle's temp file, the caches.
struct Target<'a> {
    out: &'a mut File,
    bundle: &'a Path,
    cache: Option<&'a FrameCache>,
    imports: &'a BTreeMap<String, crate::fetch::ImportTarget>,
}

/// One attempt: the entries into frames into `out`.
fn write_archive(
    items: &BTreeMap<&str, Item<'_>>,
    manifest: &Manifest,
    to: Target<'_>,
    opts: &BakeOptions,
) -> Result<Archive, Failed> {
    let Target {
        out,
        bundle,
        cache,
        imports,
    } = to;
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
                imports,
                staged: Vec::new(),
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
            Ok((entries, digests, ctx.hits, ctx.staged))
        })();
        drop(frames);
        let written = writer
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        match (fed, written) {
            (Ok((entries, digests, hits, staged)), Ok(w)) => {
                Ok((w, entries, digests, hits, staged))
            }
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

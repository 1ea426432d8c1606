//! The frame cache: each large file's compressed zstd frames, kept under
//! the bake's cache directory (`<cache>/frames/`) and keyed by what decides
//! their bytes: the content's sha256, the zstd level, the writer's
//! [`FRAME_FORMAT`] and the zstd library's version. A warm bake copies an
//! entry into the bundle instead of reading and compressing the file.
//!
//! `<key>.zst` holds the frames; `<key>.toml` beside it their size and
//! CRC-32, checked while the entry is copied into a bundle (the CRC runs on
//! another thread beside the bundle's own sha256, at a fraction of its
//! cost). An entry that fails the check is removed and rebuilt, and the
//! bundle written again: a damaged entry never reaches a bundle's final
//! name. Entries are renamed into place but not fsynced: a crash can tear
//! one, which the check then finds, and a cold bake does not write its
//! biggest file to disk twice over.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::frames::{CHUNK, FRAME_FORMAT};
use crate::direct::DirectWriter;

/// Files of at least this many bytes get frames of their own and an entry
/// in the frame cache; smaller ones are compressed with the archive's
/// headers (their own frames would cost more than they save).
pub const CACHE_MIN: u64 = 1 << 20;

/// The directory of a driver cache's frame cache.
pub const FRAMES_DIR: &str = "frames";

/// A frame cache directory.
#[derive(Debug, Clone)]
pub(super) struct FrameCache {
    dir: PathBuf,
    level: i32,
}

/// What an entry's sidecar records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Sidecar {
    sha256: String,
    content_size: u64,
    level: i32,
    format: u32,
    chunk: u64,
    zstd: u32,
    frames_size: u64,
    frames_crc32: u32,
}

/// An entry found in the cache, opened; its CRC is checked as it is copied.
#[derive(Debug)]
pub(super) struct Entry {
    /// The frames file, open.
    pub file: File,
    /// Its path (for messages, and to remove it if damaged).
    pub path: PathBuf,
    /// Bytes of frames.
    pub len: u64,
    /// Their CRC-32.
    pub crc32: u32,
}

/// A new entry being written beside the cache (a temp file).
#[derive(Debug)]
pub(super) struct Pending {
    tmp: tempfile::NamedTempFile,
    /// Writes `tmp` around the page cache; finished at commit.
    out: DirectWriter,
    frames: PathBuf,
    sidecar: Sidecar,
    crc: crc32fast::Hasher,
}

impl FrameCache {
    pub(super) fn new(dir: PathBuf, level: i32) -> Self {
        Self { dir, level }
    }

    /// The directory.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    fn stem(&self, sha256: &str) -> String {
        format!(
            "{sha256}-l{}-f{FRAME_FORMAT}-z{}",
            self.level,
            zstd::zstd_safe::version_number()
        )
    }

    fn paths(&self, sha256: &str) -> (PathBuf, PathBuf) {
        let stem = self.stem(sha256);
        (
            self.dir.join(format!("{stem}.zst")),
            self.dir.join(format!("{stem}.toml")),
        )
    }

    /// The entry for content `sha256` of `size` bytes, if one is cached and
    /// its sidecar and size agree with the key (its CRC is checked later,
    /// as it is copied). Anything else is a miss.
    pub(super) fn lookup(&self, sha256: &str, size: u64) -> Option<Entry> {
        let (frames, sidecar) = self.paths(sha256);
        let text = fs::read_to_string(&sidecar).ok()?;
        let s: Sidecar = toml::from_str(&text).ok()?;
        let want = self.sidecar(sha256, size, s.frames_size, s.frames_crc32);
        if s != want {
            return None;
        }
        let file = File::open(&frames).ok()?;
        let len = file.metadata().ok()?.len();
        (len == s.frames_size).then_some(Entry {
            file,
            path: frames,
            len,
            crc32: s.frames_crc32,
        })
    }

    fn sidecar(&self, sha256: &str, size: u64, frames_size: u64, crc: u32) -> Sidecar {
        Sidecar {
            sha256: sha256.to_owned(),
            content_size: size,
            level: self.level,
            format: FRAME_FORMAT,
            chunk: CHUNK as u64,
            zstd: zstd::zstd_safe::version_number(),
            frames_size,
            frames_crc32: crc,
        }
    }

    /// Starts a new entry for content `sha256` of `size` bytes.
    pub(super) fn begin(&self, sha256: &str, size: u64) -> io::Result<Pending> {
        fs::create_dir_all(&self.dir)?;
        let tmp = tempfile::Builder::new()
            .prefix(".frames.")
            .suffix(".tmp")
            .tempfile_in(&self.dir)?;
        let out = DirectWriter::new(tmp.as_file().try_clone()?);
        Ok(Pending {
            tmp,
            out,
            frames: self.paths(sha256).0,
            sidecar: self.sidecar(sha256, size, 0, 0),
            crc: crc32fast::Hasher::new(),
        })
    }

    /// Removes a damaged entry (both files; a missing one is fine).
    pub(super) fn remove(&self, frames: &Path) {
        let _ = fs::remove_file(frames);
        let _ = fs::remove_file(frames.with_extension("toml"));
    }
}

impl Pending {
    /// Appends frame bytes.
    pub(super) fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.crc.update(bytes);
        self.sidecar.frames_size += bytes.len() as u64;
        self.out.write_all(bytes)
    }

    /// Renames the frames into place, then writes the sidecar that makes
    /// them an entry (a sidecar never names frames that are not there).
    pub(super) fn commit(mut self) -> io::Result<PathBuf> {
        self.out.finish()?;
        self.sidecar.frames_crc32 = self.crc.finalize();
        let sidecar_path = self.frames.with_extension("toml");
        // An older entry's sidecar goes first: for a moment there is no
        // entry, never a sidecar describing other frames.
        let _ = fs::remove_file(&sidecar_path);
        self.tmp.persist(&self.frames).map_err(|e| e.error)?;
        let mut text = String::from(
            "# Written by vgpu-bake: size and CRC-32 of the zstd frames beside this file.\n",
        );
        text.push_str(&toml::to_string(&self.sidecar).map_err(io::Error::other)?);
        let dir = self.frames.parent().unwrap_or(Path::new("."));
        let mut side = tempfile::Builder::new()
            .prefix(".frames.")
            .suffix(".tmp")
            .tempfile_in(dir)?;
        side.write_all(text.as_bytes())?;
        side.persist(&sidecar_path).map_err(|e| e.error)?;
        Ok(self.frames)
    }
}

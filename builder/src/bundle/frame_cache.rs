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

/// One file of a frame cache directory as `vgpu-bake doctor` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryAudit {
    /// The entry's frames (`.zst`) or, for a sidecar alone, its `.toml`.
    pub path: PathBuf,
    /// Bytes it takes (frames and sidecar).
    pub bytes: u64,
    /// What is wrong with it, if anything.
    pub state: EntryState,
}

/// The health of a frame cache entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryState {
    /// Sidecar and frames agree (and, when checked deeply, the CRC).
    Sound,
    /// Sound, but for another zstd version or frame format: no bake of
    /// this vgpu-bake uses it.
    Unused(String),
    /// A bake would miss it (or, deep, find it damaged and rebuild it).
    Damaged(String),
}

/// Every entry under `dir` (`<cache>/frames`), checked as a bake checks
/// one: its sidecar parses and matches its name, its frames have the
/// recorded size; with `deep`, their CRC-32 too (reads every byte).
/// Temporary files are left to the caller.
pub fn audit(dir: &Path, deep: bool) -> io::Result<Vec<EntryAudit>> {
    let mut names: Vec<String> = fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in &names {
        let path = dir.join(name);
        if let Some(stem) = name.strip_suffix(".toml") {
            out.push(audit_entry(dir, stem, deep));
        } else if let Some(stem) = name.strip_suffix(".zst")
            && !names.iter().any(|n| *n == format!("{stem}.toml"))
        {
            let bytes = fs::metadata(&path).map_or(0, |m| m.len());
            out.push(EntryAudit {
                path,
                bytes,
                state: EntryState::Damaged("frames without a sidecar: never used".into()),
            });
        }
    }
    Ok(out)
}

fn audit_entry(dir: &Path, stem: &str, deep: bool) -> EntryAudit {
    let sidecar = dir.join(format!("{stem}.toml"));
    let frames = dir.join(format!("{stem}.zst"));
    let side_len = fs::metadata(&sidecar).map_or(0, |m| m.len());
    let frames_len = fs::metadata(&frames).ok().map(|m| m.len());
    let entry = |state| EntryAudit {
        path: if frames_len.is_some() {
            frames.clone()
        } else {
            sidecar.clone()
        },
        bytes: side_len + frames_len.unwrap_or(0),
        state,
    };
    let parsed = fs::read_to_string(&sidecar)
        .map_err(|e| e.to_string())
        .and_then(|t| toml::from_str::<Sidecar>(&t).map_err(|e| e.message().to_owned()));
    let s = match parsed {
        Ok(s) => s,
        Err(e) => {
            return entry(EntryState::Damaged(format!(
                "its sidecar does not parse: {e}"
            )));
        }
    };
    let expected_stem = format!("{}-l{}-f{}-z{}", s.sha256, s.level, s.format, s.zstd);
    if expected_stem != stem || s.chunk != CHUNK as u64 {
        return entry(EntryState::Damaged(
            "its sidecar does not match its name: never used".into(),
        ));
    }
    let Some(len) = frames_len else {
        return entry(EntryState::Damaged("its frames (.zst) are missing".into()));
    };
    if len != s.frames_size {
        return entry(EntryState::Damaged(format!(
            "its frames are {len} bytes, the sidecar says {}",
            s.frames_size
        )));
    }
    if deep {
        match crc_of(&frames) {
            Ok(crc) if crc == s.frames_crc32 => {}
            Ok(_) => {
                return entry(EntryState::Damaged(
                    "the CRC-32 of its frames is not the recorded one".into(),
                ));
            }
            Err(e) => return entry(EntryState::Damaged(format!("cannot read it: {e}"))),
        }
    }
    let zstd = zstd::zstd_safe::version_number();
    if s.format != FRAME_FORMAT || s.zstd != zstd {
        return entry(EntryState::Unused(format!(
            "made for frame format {} and zstd {} (this vgpu-bake: {FRAME_FORMAT} and {zstd})",
            s.format, s.zstd
        )));
    }
    entry(EntryState::Sound)
}

fn crc_of(path: &Path) -> io::Result<u32> {
    let mut f = File::open(path)?;
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        match io::Read::read(&mut f, &mut buf) {
            Ok(0) => return Ok(crc.finalize()),
            Ok(n) => crc.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Whether `<cache>/frames` holds a sound entry for content `sha256` of
/// `size` bytes at `level`: a bake would copy it instead of compressing.
pub fn has_entry(cache: &Path, level: i32, sha256: &str, size: u64) -> bool {
    FrameCache::new(cache.join(FRAMES_DIR), level)
        .lookup(sha256, size)
        .is_some()
}

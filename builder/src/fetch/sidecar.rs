//! `<name>.digests.toml` next to each verified cache file: its sha256, its
//! md5 when one was computed (only when one was expected), and its stamp
//! (device, inode, size, mtime: [`FileStamp`]), so a later bake learns the
//! digests of a 500 MB driver without reading it again. Trusted only while
//! the file's stamp is still the recorded one.

use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::FetchError;
use crate::atomic;
use crate::hash::{Digests, is_hex};
use crate::stamp::FileStamp;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sidecar {
    filename: String,
    /// Device of the file system holding it.
    dev: u64,
    /// Its inode.
    ino: u64,
    size: u64,
    /// Seconds part of the file's mtime.
    mtime: i64,
    /// Nanoseconds part of the file's mtime.
    mtime_nsec: i64,
    /// Absent when nothing expected one (older sidecars always have it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    md5: Option<String>,
    sha256: String,
}

/// The sidecar path of a cache file.
pub fn path_for(file: &Path) -> PathBuf {
    let mut name = file.file_name().map(OsString::from).unwrap_or_default();
    name.push(".digests.toml");
    file.with_file_name(name)
}

/// Records `digests` for `file`, whose metadata `meta` was taken *before* it
/// was hashed: if the file changed meanwhile, the sidecar will not match it
/// and is ignored later. Skipped when the sizes already disagree.
pub(super) fn write(file: &Path, meta: &Metadata, digests: &Digests) -> Result<(), FetchError> {
    if meta.len() != digests.size {
        return Ok(());
    }
    let sidecar = Sidecar {
        filename: file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        dev: meta.dev(),
        ino: meta.ino(),
        size: digests.size,
        mtime: meta.mtime(),
        mtime_nsec: meta.mtime_nsec(),
        md5: digests.md5.clone(),
        sha256: digests.sha256.clone(),
    };
    let mut text = String::from("# Written by vgpu-bake: digests of the file next to this one.\n");
    // Serializing this flat struct of strings and integers cannot fail; if
    // it ever did, the sidecar is only a cache, so skip it.
    let Ok(body) = toml::to_string(&sidecar) else {
        return Ok(());
    };
    text.push_str(&body);
    atomic::write(&path_for(file), text.as_bytes(), 0o644)?;
    Ok(())
}

/// The recorded digests and the stamp they were taken with, if the sidecar
/// exists, parses, and its stamp is the one in `meta` (an older sidecar
/// without device and inode does not parse: the file is hashed once more).
pub(super) fn read_trusted(file: &Path, meta: &Metadata) -> Option<(Digests, FileStamp)> {
    let text = std::fs::read_to_string(path_for(file)).ok()?;
    let s: Sidecar = toml::from_str(&text).ok()?;
    let stamp = FileStamp::of(meta);
    let recorded = FileStamp {
        dev: s.dev,
        ino: s.ino,
        size: s.size,
        mtime: s.mtime,
        mtime_nsec: s.mtime_nsec,
    };
    let md5_ok = s.md5.as_ref().is_none_or(|m| is_hex(m, 32));
    let digests = Digests {
        md5: s.md5.map(|m| m.to_ascii_lowercase()),
        sha256: s.sha256.to_ascii_lowercase(),
        size: s.size,
    };
    (recorded == stamp && md5_ok && is_hex(&digests.sha256, 64)).then_some((digests, stamp))
}

/// What `vgpu-bake doctor` finds in a cache file's sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SidecarState {
    /// None beside the file: it is hashed at its next use.
    Missing,
    /// It does not parse (or holds no valid sha256): it is ignored and
    /// rewritten at the file's next use.
    Unreadable(String),
    /// It records another size than the file has: the file changed (or
    /// was truncated) since it was verified.
    SizeMismatch {
        /// The size the sidecar records.
        recorded: u64,
    },
    /// Valid, and recording this file's size; `stamped` when its stamp is
    /// still the file's (trusted without hashing).
    Valid {
        /// The recorded digests.
        digests: Digests,
        /// Whether the stamp still matches.
        stamped: bool,
    },
}

/// Reads `file`'s sidecar for a health check (`meta`: the file's).
pub fn state(file: &Path, meta: &Metadata) -> SidecarState {
    let text = match std::fs::read_to_string(path_for(file)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return SidecarState::Missing,
        Err(e) => return SidecarState::Unreadable(e.to_string()),
    };
    let s: Sidecar = match toml::from_str(&text) {
        Ok(s) => s,
        Err(e) => return SidecarState::Unreadable(e.message().to_owned()),
    };
    if !is_hex(&s.sha256, 64) || s.md5.as_ref().is_some_and(|m| !is_hex(m, 32)) {
        return SidecarState::Unreadable("its sha256 or md5 is not hex of the right length".into());
    }
    if s.size != meta.len() {
        return SidecarState::SizeMismatch { recorded: s.size };
    }
    let stamped = read_trusted(file, meta).is_some();
    SidecarState::Valid {
        digests: Digests {
            md5: s.md5.map(|m| m.to_ascii_lowercase()),
            sha256: s.sha256.to_ascii_lowercase(),
            size: s.size,
        },
        stamped,
    }
}

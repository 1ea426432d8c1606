//! The driver cache's health: the directory writable, each cached file's
//! sidecar (`fetch/sidecar.rs`) valid and of the file's size (with `deep`,
//! each file hashed again and compared), the frame cache's entries
//! (`bundle/frame_cache.rs`), and leftovers: partial downloads, corrupt
//! copies kept as `.bak`, temporary files of interrupted runs. Reads only;
//! nothing is repaired or removed.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use indicatif::HumanBytes;

use super::{Finding, Status};
use crate::blocks::digests_of;
use crate::bundle::{EntryState, FRAMES_DIR, audit_frame_cache};
use crate::fetch::{SidecarState, sidecar_path, sidecar_state};
use crate::progress::Progress;

/// A driver file found in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Cached {
    /// Its file name (the registry's).
    pub name: String,
    /// Its size.
    pub size: u64,
    /// Its sha256, when a valid sidecar (or `--deep`) says it.
    pub sha256: Option<String>,
}

/// The findings, and the drivers cached (for the space check).
#[derive(Debug, Default)]
pub(super) struct CacheReport {
    pub findings: Vec<Finding>,
    pub drivers: Vec<Cached>,
}

/// Checks the driver cache `dir`.
pub(super) fn check(dir: &Path, deep: bool) -> CacheReport {
    let mut r = CacheReport::default();
    let shown = dir.display().to_string();
    match fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            r.findings.push(Finding::ok(
                "cache",
                shown,
                "not made yet (the first fetch or bake makes it)",
            ));
            return r;
        }
        Err(e) => {
            r.findings.push(Finding::bad(
                Status::Fail,
                "cache",
                shown,
                format!("cannot be read: {e}"),
                "fix its permissions, or use another with --cache DIR",
            ));
            return r;
        }
        Ok(m) if !m.is_dir() => {
            r.findings.push(Finding::bad(
                Status::Fail,
                "cache",
                shown,
                "is not a directory",
                "move it away, or use another cache with --cache DIR",
            ));
            return r;
        }
        Ok(_) => {}
    }
    match tempfile::tempfile_in(dir) {
        Ok(_) => r
            .findings
            .push(Finding::ok("cache", shown, "exists and is writable")),
        Err(e) => r.findings.push(Finding::bad(
            Status::Fail,
            "cache",
            shown,
            format!("is not writable: {e}"),
            "fix its permissions, or use another with --cache DIR",
        )),
    }
    scan(dir, deep, &mut r);
    let patched = dir.join("patched");
    for sub in sorted_entries(&patched) {
        let path = patched.join(&sub);
        if path.is_dir() {
            scan(&path, deep, &mut r);
        }
    }
    let frames = dir.join(FRAMES_DIR);
    if frames.is_dir() {
        frame_cache(&frames, deep, &mut r);
    }
    r
}

/// Names in `dir`, sorted (none if it cannot be read).
fn sorted_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// The files of one cache directory (the top, or a `patched/<key>/`).
fn scan(dir: &Path, deep: bool, r: &mut CacheReport) {
    let names = sorted_entries(dir);
    for name in &names {
        let path = dir.join(name);
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let shown = path.display().to_string();
        if let Some(leftover) = leftover(name, &path, &meta) {
            r.findings.push(leftover);
        } else if let Some(file) = name.strip_suffix(".digests.toml") {
            if !names.iter().any(|n| n == file) {
                r.findings.push(Finding::bad(
                    Status::Warn,
                    "cache",
                    shown,
                    format!("a sidecar without its file {file}"),
                    "remove it",
                ));
            }
        } else if meta.is_file() {
            cached_file(&path, name, &meta, deep, r);
        }
    }
}

/// A partial download, a `.bak` or a temporary file: a finding with its
/// size.
fn leftover(name: &str, path: &Path, meta: &fs::Metadata) -> Option<Finding> {
    let shown = path.display().to_string();
    let size = HumanBytes(if meta.is_dir() {
        dir_size(path)
    } else {
        meta.len()
    });
    if let Some(file) = name.strip_suffix(".part") {
        if in_use(path) {
            return Some(Finding::ok(
                "cache",
                shown,
                format!("partial download of {file} ({size}), in use by a running fetch"),
            ));
        }
        return Some(Finding::bad(
            Status::Warn,
            "cache",
            shown,
            format!("partial download of {file} ({size}) left by an interrupted fetch"),
            format!(
                "the next fetch of {file} resumes it; remove it if you will not fetch it again"
            ),
        ));
    }
    if let Some(file) = name.strip_suffix(".bak") {
        return Some(Finding::bad(
            Status::Warn,
            "cache",
            shown,
            format!("an earlier copy of {file} found corrupt and kept ({size})"),
            "remove it to free the space",
        ));
    }
    let temp = name.starts_with('.') && (name.ends_with(".tmp") || name.starts_with(".patch."));
    temp.then(|| {
        Finding::bad(
            Status::Warn,
            "cache",
            shown,
            format!(
                "temporary {} left by an interrupted run ({size})",
                kind(meta)
            ),
            "remove it (unless a vgpu-bake is running now)",
        )
    })
}

fn kind(meta: &fs::Metadata) -> &'static str {
    if meta.is_dir() { "directory" } else { "file" }
}

/// Bytes of the files under `dir` (one level of `.patch.*` work dirs is
/// all a cache holds; deeper ones are counted too).
fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) if m.is_file() => m.len(),
            _ => 0,
        })
        .sum()
}

/// Whether a running fetch holds the `.part`'s lock.
fn in_use(path: &Path) -> bool {
    File::open(path).is_ok_and(|f| matches!(f.try_lock(), Err(fs::TryLockError::WouldBlock)))
}

/// A cached driver (or patched installer) and its sidecar.
fn cached_file(path: &Path, name: &str, meta: &fs::Metadata, deep: bool, r: &mut CacheReport) {
    let shown = path.display().to_string();
    let size = HumanBytes(meta.len());
    let sidecar = sidecar_path(path).display().to_string();
    let mut sha256 = None;
    let finding = match sidecar_state(path, meta) {
        SidecarState::Missing => Finding::bad(
            Status::Warn,
            "cache",
            shown.clone(),
            format!("{size}, no sidecar ({sidecar}): its next use hashes it"),
            "run `vgpu-bake fetch PROFILE` for its profile to verify it now",
        ),
        SidecarState::Unreadable(why) => Finding::bad(
            Status::Warn,
            "cache",
            sidecar.clone(),
            format!(
                "sidecar of {name} is damaged ({why}): it is ignored and the file hashed again at its next use"
            ),
            format!("remove {sidecar}, or run `vgpu-bake fetch PROFILE` to rewrite it"),
        ),
        SidecarState::SizeMismatch { recorded } => Finding::bad(
            Status::Fail,
            "cache",
            shown.clone(),
            format!(
                "is {} bytes, its sidecar recorded {recorded}: truncated or replaced since it was verified",
                meta.len()
            ),
            format!("remove it and {sidecar}, then fetch it again"),
        ),
        SidecarState::Valid { digests, stamped } => {
            sha256 = Some(digests.sha256.clone());
            let how = if stamped {
                "sidecar valid"
            } else {
                "sidecar valid, the file was touched or copied since (its next use hashes it)"
            };
            Finding::ok("cache", shown.clone(), format!("{size}, {how}"))
        }
    };
    let rehash_it = deep && finding.status != Status::Fail;
    if !rehash_it || finding.status != Status::Ok {
        r.findings.push(finding);
    }
    if rehash_it {
        let recorded = sha256.clone();
        r.findings.push(rehash(
            path,
            &shown,
            &sidecar,
            recorded.as_deref(),
            &mut sha256,
        ));
    }
    r.drivers.push(Cached {
        name: name.to_owned(),
        size: meta.len(),
        sha256,
    });
}

/// `--deep`: hash the file and compare with the sidecar's sha256.
fn rehash(
    path: &Path,
    shown: &str,
    sidecar: &str,
    recorded: Option<&str>,
    learned: &mut Option<String>,
) -> Finding {
    let hashed = File::open(path).and_then(|f| {
        let len = f.metadata()?.len();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let bar = Progress::bytes(&format!("hashing {name}"), len);
        digests_of(f, false, |b| {
            bar.add(b.len() as u64);
            Ok(())
        })
    });
    let d = match hashed {
        Ok(d) => d,
        Err(e) => {
            return Finding::bad(
                Status::Fail,
                "cache",
                shown,
                format!("cannot be read: {e}"),
                "check the disk, remove the file and fetch it again",
            );
        }
    };
    let size = HumanBytes(d.size);
    match recorded {
        Some(want) if want == d.sha256 => Finding::ok(
            "cache",
            shown,
            format!("{size}, hashed again: matches its sidecar"),
        ),
        Some(want) => Finding::bad(
            Status::Fail,
            "cache",
            shown,
            format!(
                "sha256 is {}, its sidecar recorded {want}: the file is damaged",
                d.sha256
            ),
            format!("remove it and {sidecar}, then fetch it again"),
        ),
        None => {
            *learned = Some(d.sha256.clone());
            Finding::bad(
                Status::Warn,
                "cache",
                shown,
                format!(
                    "{size}, sha256 {} (no valid sidecar to compare with)",
                    d.sha256
                ),
                "run `vgpu-bake fetch PROFILE` for its profile to verify it against the pins",
            )
        }
    }
}

/// The frame cache's entries and leftovers.
fn frame_cache(dir: &Path, deep: bool, r: &mut CacheReport) {
    for name in sorted_entries(dir) {
        let path = dir.join(&name);
        if let Ok(meta) = fs::symlink_metadata(&path)
            && let Some(f) = leftover(&name, &path, &meta)
        {
            r.findings.push(f);
        }
    }
    let entries = match audit_frame_cache(dir, deep) {
        Ok(e) => e,
        Err(e) => {
            r.findings.push(Finding::bad(
                Status::Warn,
                "frame-cache",
                dir.display().to_string(),
                format!("cannot be read: {e}"),
                "fix its permissions, or remove it (bakes rebuild it)",
            ));
            return;
        }
    };
    let (mut sound, mut bytes) = (0usize, 0u64);
    for e in entries {
        let shown = e.path.display().to_string();
        let size = HumanBytes(e.bytes);
        match e.state {
            EntryState::Sound => {
                sound += 1;
                bytes += e.bytes;
            }
            EntryState::Unused(why) => r.findings.push(Finding::bad(
                Status::Warn,
                "frame-cache",
                shown,
                format!("{why}: no bake uses it ({size})"),
                "remove it and its .toml to free the space",
            )),
            EntryState::Damaged(why) => r.findings.push(Finding::bad(
                Status::Warn,
                "frame-cache",
                shown,
                format!("{why} ({size}); a bake ignores or rebuilds it"),
                "remove it and its .toml (the next bake makes it again)",
            )),
        }
    }
    let checked = if deep { ", CRC-32 checked" } else { "" };
    r.findings.push(Finding::ok(
        "frame-cache",
        dir.display().to_string(),
        format!("{sound} sound entries ({}){checked}", HumanBytes(bytes)),
    ));
}

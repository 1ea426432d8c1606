//! The one driver preparation `plan`, `fetch` and `bake` share: the
//! resolved driver's source (with the command line's overrides) into a
//! verified file in the cache; for a bake of a user's file with its sha256
//! pinned, into the instruction for the bundle writer to put it there as
//! it reads it ([`reads_once`]: the file is read once, not imported first
//! and read again).
//!
//! It takes a [`ResolvedDriver`], never the registry: everything the
//! registry said (URL, md5, demo bytes) was captured when the profile was
//! resolved, so it is looked up once.

use std::path::{Path, PathBuf};

use crate::bake::{BakeError, input_err};
use crate::fetch::{self, FetchOptions, FetchRequest, ImportTarget};
use crate::hash::Digests;
use crate::resolve::{DriverOverrides, DriverSource, ResolvedDriver};
use crate::stamp::FileStamp;
use crate::text::shown;

/// How far [`prepare_driver`] may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepare {
    /// `plan`: report a verified copy already in the cache; download,
    /// import and hash nothing new (the sidecar is refreshed if stale).
    CacheOnly,
    /// `bake`: trust a cached copy whose sidecar matches the pins (the
    /// bundle writer re-hashes every byte anyway); otherwise fetch, or
    /// leave a pinned user's file to the writer ([`reads_once`]).
    Trust,
    /// `fetch`: read and verify the cached copy again; otherwise fetch.
    Rehash,
}

/// A verified driver in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedDriver {
    /// The file in the cache.
    pub path: PathBuf,
    /// Its digests: the sha256, and the md5 only when one was declared
    /// (registry, profile or `--md5`) and so verified; the plan records it.
    pub digests: Digests,
    /// Its stamp when they were taken (from the cache's sidecar): the
    /// bundle writer does not hash a file that still has it.
    pub stamp: Option<FileStamp>,
    /// Where its bytes are read from when that is not `path`: the user's
    /// `--driver-file` just imported, with its stamp from the import (its
    /// bytes are still in the page cache; the copy went around it).
    pub read_from: Option<(PathBuf, FileStamp)>,
    /// Where this call found it: `fetch --json` reports it.
    pub origin: Origin,
    /// Not in the cache yet: the bake's single pass ([`reads_once`]). The
    /// bundle writer reads the user's file, hashes every byte while it
    /// compresses it, and copies it to `path`, committed only when it
    /// matched; `digests` are the pins and the file's size.
    pub import: Option<ImportTarget>,
}

/// Where [`prepare_driver`] found the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A verified copy already in the cache.
    Cached,
    /// Downloaded now.
    Downloaded,
    /// Copied from a local file (`--driver-file`, a profile `file`, the demo).
    Imported,
}

impl Origin {
    /// `cached`, `downloaded` or `imported`.
    pub fn name(self) -> &'static str {
        match self {
            Origin::Cached => "cached",
            Origin::Downloaded => "downloaded",
            Origin::Imported => "imported",
        }
    }
}

impl PreparedDriver {
    /// A file whose digests were checked against `req`: an md5 `req` does
    /// not declare is dropped (an older sidecar may hold one).
    fn verified(
        path: PathBuf,
        mut digests: Digests,
        stamp: Option<FileStamp>,
        req: &FetchRequest,
    ) -> Self {
        if req.md5.is_none() {
            digests.md5 = None;
        }
        Self {
            path,
            digests,
            stamp,
            read_from: None,
            origin: Origin::Cached,
            import: None,
        }
    }

    /// A user's file the bake's writer imports as it reads it.
    fn streamed(target: ImportTarget) -> Self {
        Self {
            path: target.dest.clone(),
            digests: Digests {
                md5: target.md5.clone(),
                sha256: target.sha256.clone(),
                size: target.size,
            },
            stamp: None,
            read_from: None,
            origin: Origin::Imported,
            import: Some(target),
        }
    }

    /// A file `fetch` just verified: its stamp from the sidecar it wrote.
    /// With `keep_source`, an imported file is read from the user's copy.
    fn fetched(got: fetch::Fetched, req: &FetchRequest, keep_source: bool) -> Self {
        let stamp = got.stamp();
        let read_from = match &got.outcome {
            fetch::Outcome::Imported {
                from,
                stamp: Some(s),
            } if keep_source => Some((from.clone(), *s)),
            _ => None,
        };
        let origin = match &got.outcome {
            fetch::Outcome::CacheHit => Origin::Cached,
            fetch::Outcome::Downloaded { .. } => Origin::Downloaded,
            fetch::Outcome::Imported { .. } => Origin::Imported,
        };
        Self {
            read_from,
            origin,
            ..Self::verified(got.path, got.digests, stamp, req)
        }
    }
}

/// The fetch request for `driver` after the command line's overrides.
///
/// Checksums bind: a `--md5` or `--sha256` may add a checksum the registry
/// and the profile do not give, never replace one they give. One that
/// contradicts a pin is refused ([`BakeError::PinConflict`]), whatever the
/// file: otherwise a flag could bless any file as the release.
pub fn fetch_request(
    driver: &ResolvedDriver,
    overrides: &DriverOverrides,
) -> Result<FetchRequest, BakeError> {
    let md5_origin = if driver.md5_from_registry {
        "the registry's md5 (data/drivers.toml)"
    } else {
        "the profile's `driver.md5`"
    };
    let md5 = bind(
        "md5",
        overrides.md5.as_deref(),
        driver.md5.as_deref(),
        md5_origin,
        driver,
    )?;
    let sha256 = bind(
        "sha256",
        overrides.sha256.as_deref(),
        driver.sha256.as_deref(),
        "the profile's `driver.sha256`",
        driver,
    )?;
    let (url, driver_file) = match driver.source_with(overrides) {
        DriverSource::Download { url } => (url, None),
        DriverSource::Demo { .. } => (None, None),
        DriverSource::UserFile { path } => (None, Some(path)),
    };
    Ok(FetchRequest {
        filename: driver.filename.clone(),
        url,
        md5,
        sha256,
        driver_file,
        record_unpinned: false,
    })
}

/// The checksum to expect: the pin, which a flag may repeat but not
/// contradict; the flag's value only where nothing is pinned.
fn bind(
    flag: &'static str,
    given: Option<&str>,
    pinned: Option<&str>,
    origin: &'static str,
    driver: &ResolvedDriver,
) -> Result<Option<String>, BakeError> {
    let given = given
        .map(|g| g.trim().to_ascii_lowercase())
        .filter(|g| !g.is_empty());
    match (given, pinned) {
        (Some(g), Some(p)) if g != p => Err(BakeError::PinConflict {
            flag,
            given: shown(&g),
            pinned: p.to_string(),
            origin,
            release: driver.release.clone(),
        }),
        (_, Some(p)) => Ok(Some(p.to_string())),
        (g, None) => Ok(g),
    }
}

/// Whether a user's driver file is read once, by the bundle writer, which
/// hashes it while it compresses it and copies it into the cache
/// ([`PreparedDriver::import`]), rather than imported first (read, hashed,
/// copied) and read again by the writer.
///
/// Only for a bake (`fetch` and `plan` write no bundle), of a user's file
/// (`--driver-file`, the profile's `file`), whose sha256 is pinned (the
/// writer declares it in the manifest before it reads a byte; without a
/// pin, the import says what to pin), and which is not patched (unlock
/// mode patches the copy in the cache before the writer runs).
pub fn reads_once(how: Prepare, user_file: bool, sha256_pinned: bool, patched: bool) -> bool {
    how == Prepare::Trust && user_file && sha256_pinned && !patched
}

/// Makes the driver available, verified, in `opts.cache_dir`, or (a bake
/// given the user's file, [`reads_once`]) says how the bundle writer
/// puts it there as it reads it.
///
/// Returns `None` only with [`Prepare::CacheOnly`] when no verified copy
/// matching the pins is cached. A demo driver is imported from the binary.
pub fn prepare_driver(
    driver: &ResolvedDriver,
    overrides: &DriverOverrides,
    opts: &FetchOptions,
    how: Prepare,
    notes: &mut Vec<String>,
) -> Result<Option<PreparedDriver>, BakeError> {
    let source = driver.source_with(overrides);
    let mut req = fetch_request(driver, overrides)?;
    let cached = opts.cache_dir.join(&req.filename);
    let user_file = matches!(source, DriverSource::UserFile { .. });
    // With an md5 declared, a sidecar without one is not trusted: the
    // file is hashed again, md5 included.
    if !user_file
        && how != Prepare::Rehash
        && let Some(c) = fetch::cached_file(&opts.cache_dir, &req.filename, req.md5.is_some())?
    {
        let d = c.digests;
        let md5_ok = req.md5.as_ref().is_none_or(|m| d.md5.as_ref() == Some(m));
        let sha_ok = req.sha256.as_ref().is_none_or(|s| *s == d.sha256);
        let pinned = req.md5.is_some() || req.sha256.is_some();
        if md5_ok && sha_ok && (pinned || how == Prepare::CacheOnly) {
            notes.push(format!(
                "driver {}: verified copy in the cache ({}), no download",
                req.filename,
                cached.display()
            ));
            return Ok(Some(PreparedDriver::verified(
                cached,
                d,
                Some(c.stamp),
                &req,
            )));
        }
    }
    if how == Prepare::CacheOnly {
        return Ok(None);
    }
    if req.md5.is_none() && req.sha256.is_none() && !user_file {
        // Nothing could verify a download or a cached copy: the profile
        // must pin the checksum (the bake's bundle then says which file).
        let cached = fetch::cached_digests(&opts.cache_dir, &req.filename)?
            .map(|d| (cached.clone(), d.sha256));
        return Err(BakeError::Unpinned {
            release: driver.release.clone(),
            filename: req.filename.clone(),
            cached,
        });
    }
    let patched = driver.patch.is_some();
    if reads_once(how, user_file, req.sha256.is_some(), patched)
        && let Some(target) = fetch::import_target(&req, opts)?
    {
        // The bake adds the note once the copy is in the cache.
        return Ok(Some(PreparedDriver::streamed(target)));
    }
    if let DriverSource::Demo { bytes } = source {
        let tmp = tempfile::Builder::new()
            .prefix(".demo-driver.")
            .tempfile()
            .map_err(|e| {
                input_err(
                    Path::new("(temp dir)"),
                    format!("cannot stage the demo driver: {e}"),
                )
            })?;
        std::fs::write(tmp.path(), bytes)
            .map_err(|e| input_err(tmp.path(), format!("cannot stage the demo driver: {e}")))?;
        req.driver_file = Some(tmp.path().to_path_buf());
        let got = fetch::fetch(&req, opts)?;
        notes.push(format!(
            "driver {}: demo installer from data/demo imported into the cache",
            req.filename
        ));
        // The staged demo file is removed when this returns.
        return Ok(Some(PreparedDriver::fetched(got, &req, false)));
    }
    let got = fetch::fetch(&req, opts)?;
    notes.push(format!("driver {}", got.describe()));
    Ok(Some(PreparedDriver::fetched(got, &req, true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The single pass only for a bake of a pinned, unpatched user's file;
    /// every other case keeps the import (or the cache, or the download).
    #[test]
    fn only_a_bake_of_a_pinned_unpatched_user_file_reads_it_once() {
        // (how, user's file, sha256 pinned, patched, read once, why)
        let cases = [
            (
                Prepare::Trust,
                true,
                true,
                false,
                true,
                "bake --driver-file, pinned",
            ),
            (
                Prepare::Rehash,
                true,
                true,
                false,
                false,
                "fetch imports at once",
            ),
            (
                Prepare::CacheOnly,
                true,
                true,
                false,
                false,
                "plan reads nothing",
            ),
            (
                Prepare::Trust,
                true,
                false,
                false,
                false,
                "unpinned: the import says what to pin",
            ),
            (
                Prepare::Trust,
                false,
                true,
                false,
                false,
                "no user's file: cache or download",
            ),
            (
                Prepare::Trust,
                true,
                true,
                true,
                false,
                "unlock mode patches the cached copy",
            ),
        ];
        for (how, user_file, pinned, patched, once, why) in cases {
            assert_eq!(reads_once(how, user_file, pinned, patched), once, "{why}");
        }
    }
}

//! `vgpu-bake guest-drivers --fetch`: a guest driver into the driver cache
//! through [`crate::fetch`] (cache, `.part` resume, retries, HTML refusal).

use std::fmt::Write as _;

use indicatif::HumanBytes;
use serde::Serialize;

use super::{GuestDriver, GuestError};
use crate::fetch::{FetchRequest, Fetched, Outcome};

/// The request for `driver`: its catalog file name and URL; verified
/// against `sha256` when given, else recorded as it comes
/// ([`FetchRequest::record_unpinned`]).
pub fn request(driver: &GuestDriver, sha256: Option<&str>) -> Result<FetchRequest, GuestError> {
    let (filename, url) = driver.download()?;
    Ok(FetchRequest {
        filename: filename.to_owned(),
        url: Some(url.to_owned()),
        sha256: sha256.map(str::to_owned),
        record_unpinned: sha256.is_none(),
        ..FetchRequest::default()
    })
}

/// `guest-drivers --fetch --json`'s `driver` (docs/JSON.md): the file in
/// the cache and how it got there.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct FetchedGuest {
    pub release: String,
    /// `linux` or `windows`.
    pub os: &'static str,
    /// The guest driver's version, as the catalog gives it.
    pub version: Option<String>,
    /// The file in the cache.
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// `cached`, `downloaded` or `imported`.
    pub source: &'static str,
    /// Verified against `--sha256`; `false`: recorded as it came (the
    /// catalog publishes no checksum), pin it with `[[guest-driver]]`.
    pub pinned: bool,
}

/// The document's `driver` for `fetched`.
pub fn document(driver: &GuestDriver, fetched: &Fetched, pinned: bool) -> FetchedGuest {
    FetchedGuest {
        release: driver.release.clone(),
        os: driver.os.as_str(),
        version: driver.version.clone(),
        path: fetched.path.display().to_string(),
        size: fetched.digests.size,
        sha256: fetched.digests.sha256.to_string(),
        source: match fetched.outcome {
            Outcome::CacheHit => "cached",
            Outcome::Downloaded { .. } => "downloaded",
            Outcome::Imported { .. } => "imported",
        },
        pinned,
    }
}

/// What to tell the user: how the file got into the cache, its sha256 and,
/// when it was not verified against one, the exact `[[guest-driver]]`
/// lines that pin it in a profile.
pub fn summary(driver: &GuestDriver, fetched: &Fetched, pinned: bool) -> String {
    let mut out = String::new();
    let path = fetched.path.display();
    let size = HumanBytes(fetched.digests.size);
    if pinned {
        let _ = writeln!(out, "{}", fetched.describe());
    } else {
        let how = match &fetched.outcome {
            Outcome::CacheHit => "already in the cache".to_owned(),
            Outcome::Downloaded { attempts, .. } => format!("downloaded ({attempts} attempt(s))"),
            Outcome::Imported { .. } => "imported".to_owned(),
        };
        let _ = writeln!(
            out,
            "{path} ({size}): {how}; the catalog publishes no checksum, so it is recorded with the sha256 it has"
        );
    }
    let _ = writeln!(out, "sha256 {}", fetched.digests.sha256);
    if !pinned {
        let _ = write!(
            out,
            "pin it: add this to the profile to bake it into the bundle\n\
             [[guest-driver]]\nrelease = \"{}\"\nos = \"{}\"\nsha256 = \"{}\"\n",
            driver.release,
            driver.os.as_str(),
            fetched.digests.sha256
        );
    }
    out
}

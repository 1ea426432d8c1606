//! Getting the bundle into the staging directory: each source in order
//! (one file per kind: [`path`], [`label`], [`url`]); a copy counts only
//! when its size and sha256 are the index's ([`verify`]). A source that
//! fails is reported and the next is tried.

use std::path::{Path, PathBuf};

use vgpu_bake::rollout::config::Source;
use vgpu_bake::rollout::index::IndexBundle;

use crate::report;

pub mod label;
pub mod path;
pub mod url;
pub mod verify;

/// No source gave the bundle; every source's reason, in order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "could not get bundle {name} ({file}, {size} bytes, sha256 {sha256}) from any source: {}; make it reachable from one of them (or make the hook again with another --from-*), and the installer runs the hook again at the next boot",
    numbered(reasons)
)]
pub struct FetchError {
    /// The plan's name.
    pub name: String,
    /// The file, relative to a source.
    pub file: String,
    /// The index's size.
    pub size: u64,
    /// The index's sha256.
    pub sha256: String,
    /// `source: reason`, one per source.
    pub reasons: Vec<String>,
}

fn numbered(reasons: &[String]) -> String {
    reasons
        .iter()
        .enumerate()
        .map(|(i, r)| format!("{}) {r}", i + 1))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where the fetch happens.
#[derive(Debug, Clone)]
pub struct Place<'a> {
    /// The root every path is under.
    pub root: &'a Path,
    /// The private staging directory.
    pub staging: &'a Path,
}

/// The bundle's file name in the staging directory.
fn staged_name(bundle: &IndexBundle) -> &str {
    bundle.file.rsplit('/').next().unwrap_or(&bundle.file)
}

/// The verified bundle in `place.staging`, from the first source that has
/// it.
pub fn fetch(
    sources: &[Source],
    bundle: &IndexBundle,
    place: &Place<'_>,
) -> Result<PathBuf, FetchError> {
    let dest = place.staging.join(staged_name(bundle));
    let mut reasons = Vec::new();
    for source in sources {
        let got = match source {
            Source::Path { path } => path::get(place.root, path, bundle, &dest),
            Source::Label { label } => label::get(place, label, bundle, &dest),
            Source::Url {
                url,
                cert_fingerprint,
            } => url::get(
                url,
                cert_fingerprint.as_deref(),
                bundle,
                &dest,
                place.staging,
            ),
        }
        .and_then(|()| verify::verify(&dest, bundle));
        match got {
            Ok(()) => {
                report::note(&format!(
                    "got bundle {} ({}) from {}: size and sha256 match the index",
                    bundle.name, bundle.file, source
                ));
                return Ok(dest);
            }
            Err(reason) => {
                let _ = std::fs::remove_file(&dest);
                let line = format!("{}: {reason}", source);
                report::warn(&line);
                reasons.push(line);
            }
        }
    }
    Err(FetchError {
        name: bundle.name.clone(),
        file: bundle.file.clone(),
        size: bundle.size,
        sha256: bundle.sha256.as_str().to_owned(),
        reasons,
    })
}

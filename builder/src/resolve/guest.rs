//! `[[guest-driver]]`: guest (VM) drivers from the catalog
//! (`data/guest_drivers.csv`, [`crate::guest`]) baked into the bundle under
//! `vgpu_plan::layout::GUEST_DRIVERS_DIR`, where the host keeps them.

use serde::Serialize;
use std::path::PathBuf;
use vgpu_plan::digest::Sha256;

use super::driver::is_zero;
use super::files::profile_path;
use super::{Ctx, ResolveError};
use crate::guest::{Catalog, GuestOs};
use crate::profile::Profile;
use crate::text::shown;

/// Where a guest driver's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestSource {
    /// The catalog's URL (downloaded into the driver cache, verified
    /// against the pinned sha256).
    Url(String),
    /// The profile's `file` (joined to the profile's directory).
    File(PathBuf),
}

/// One guest driver as resolved: the catalog entry, its name in the
/// bundle and its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct GuestDriverSource {
    /// vGPU release.
    pub release: String,
    /// Guest OS.
    pub os: GuestOs,
    /// Driver version from the catalog (none for a release without a link).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// File name in the bundle's guest driver directory.
    pub path: String,
    /// Where the bytes come from.
    pub source: GuestSource,
    /// The pinned sha256 (required for a URL; checked when given for a file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256>,
}

/// Resolves every `[[guest-driver]]`.
pub(super) fn guest_drivers(
    profile: &Profile,
    cx: &Ctx,
) -> Result<Vec<GuestDriverSource>, ResolveError> {
    if profile.guest_drivers.is_empty() {
        return Ok(Vec::new());
    }
    let catalog = Catalog::builtin().map_err(|e| cx.err(e.to_string()))?;
    let mut out: Vec<GuestDriverSource> = Vec::new();
    for (i, g) in profile.guest_drivers.iter().enumerate() {
        let key = format!("guest-driver[{i}]");
        let entry = catalog
            .find(&g.release, &g.os)
            .map_err(|e| cx.err(format!("`{key}`: {e}")))?;
        let sha256 = g
            .sha256
            .as_ref()
            .map(|sha| {
                let pin = Sha256::parse_any_case(sha).map_err(|_| {
                    cx.err(format!(
                        "`{key}.sha256` = {} is not 64 hex digits: use the line `vgpu-bake guest-drivers --fetch` prints",
                        shown(sha)
                    ))
                })?;
                if is_zero(pin.as_str()) {
                    return Err(cx.err(format!(
                        "`{key}.sha256` is 64 zeros, a placeholder and not a checksum: use the line `vgpu-bake guest-drivers --fetch` prints"
                    )));
                }
                Ok(pin)
            })
            .transpose()?;
        let (path, source) = match (&g.file, entry.download()) {
            (Some(file), _) => {
                let full = profile_path(cx, &format!("{key}.file"), file)?;
                let name = match &entry.filename {
                    Some(name) => name.clone(),
                    None => file
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                };
                (name, GuestSource::File(full))
            }
            (None, Ok((filename, url))) => {
                if sha256.is_none() {
                    return Err(cx.err(format!(
                        "`{key}` (release {}, {}) has no `sha256`: the catalog publishes no checksum, so the download must be pinned. Run `vgpu-bake guest-drivers --fetch --release {} --os {}` and add the line it prints under this [[guest-driver]]: `sha256 = \"<hex>\"`",
                        g.release, g.os, g.release, g.os
                    )));
                }
                (filename.to_owned(), GuestSource::Url(url.to_owned()))
            }
            (None, Err(e)) => {
                return Err(cx.err(format!(
                    "`{key}`: {e}, then give it with `file = \"PATH\"` (relative to the profile's directory)"
                )));
            }
        };
        if !usable_name(&path) {
            return Err(cx.err(format!(
                "`{key}`: {} is not a usable file name in the bundle: use a plain file name (no `/`, not starting with `.`)",
                shown(&path)
            )));
        }
        if out.iter().any(|o| o.path == path) {
            return Err(cx.err(format!(
                "`{key}`: {} is already baked by an earlier [[guest-driver]]: remove one of them",
                shown(&path)
            )));
        }
        out.push(GuestDriverSource {
            release: entry.release.clone(),
            os: entry.os,
            version: entry.version.clone(),
            path,
            source,
            sha256,
        });
    }
    Ok(out)
}

/// A file name the layout accepts under the guest driver directory.
fn usable_name(name: &str) -> bool {
    vgpu_plan::layout::in_guest_drivers(&format!("{}/{name}", vgpu_plan::layout::GUEST_DRIVERS_DIR))
}

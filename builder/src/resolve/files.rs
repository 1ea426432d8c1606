//! The files a profile names: where they may be and what they must be.
//!
//! The rule (README, "Files a profile names"): a path in a profile is
//! relative to the profile's directory and stays inside it. No absolute
//! paths, no `..`, and no symbolic link that leads outside: a profile
//! cannot pull `/etc/shadow` or `~/.ssh/id_rsa` into a bundle, and a
//! profile directory copied elsewhere bakes the same bytes.
//!
//! [`profile_path`] is the lexical half (pure, part of `resolve`);
//! [`check_files`] is the half about the payload inputs, which looks at the
//! disk: run by `validate`, `plan`, `fetch` and `bake` right after
//! `resolve`, before anything is read (`check`, which judges a plan's
//! target against hosts' facts, needs no payload and skips it).

use std::path::{Component, Path, PathBuf};

use super::driver::is_zero;
use super::{Ctx, ResolveError, Resolved};
use crate::input::kind_of;
use crate::text::{has_controls, shown};

/// A path in a profile is at most this many characters.
pub const PATH_CHARS: usize = 1024;

const RULE: &str =
    "paths in a profile are relative to the profile's directory and may not leave it";

/// Checks the path a profile gives for `key` and returns it joined to the
/// profile's directory.
pub(super) fn profile_path(cx: &Ctx, key: &str, path: &Path) -> Result<PathBuf, ResolveError> {
    let text = path.to_string_lossy();
    if text.is_empty() {
        return Err(cx.err(format!(
            "`{key}` is empty: give the file's path relative to the profile's directory"
        )));
    }
    if text.chars().count() > PATH_CHARS || has_controls(&text) {
        return Err(cx.err(format!(
            "`{key}` = {} is not a usable path: use at most {PATH_CHARS} characters and no control characters",
            shown(&text)
        )));
    }
    if path.is_absolute() {
        return Err(cx.err(format!(
            "`{key}` = {} is an absolute path: {RULE}; copy the file next to the profile and give its relative path",
            shown(&text)
        )));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(cx.err(format!(
            "`{key}` = {} uses `..`: {RULE}; copy the file next to the profile and give its relative path",
            shown(&text)
        )));
    }
    Ok(cx.base().join(path))
}

/// Checks every file `resolved` names on disk: it exists, is a regular
/// file, and (after following symbolic links) is inside the directory of
/// `file`, the profile it was resolved from.
pub fn check_files(resolved: &Resolved, file: &Path) -> Result<(), ResolveError> {
    let cx = Ctx {
        file,
        warnings: Vec::new(),
    };
    let mut named: Vec<(String, &Path)> = Vec::new();
    if let Some(p) = resolved.driver.as_ref().and_then(|d| d.patch.as_ref()) {
        named.push(("unlock.patch".into(), &p.source));
    }
    if let Some(u) = &resolved.unlock {
        // The unlock example ships this placeholder; `check` may judge the
        // template against hosts, but nothing can read or bake it.
        if is_zero(u.library.sha256.as_str()) {
            return Err(cx.err(
                "`unlock.library-sha256` is 64 zeros, the example's placeholder and not a checksum: run `sha256sum` on your libvgpu_unlock_rs.so and paste the hash",
            ));
        }
        named.push(("unlock.library".into(), &u.library.source));
    }
    for (i, deb) in resolved.host.offline_debs.iter().enumerate() {
        named.push((format!("host.offline-debs[{i}]"), &deb.source));
    }
    for (i, g) in resolved.guest_drivers.iter().enumerate() {
        if let super::GuestSource::File(path) = &g.source {
            named.push((format!("guest-driver[{i}].file"), path));
        }
    }
    if let Some(pin) = resolved
        .licensing
        .image
        .as_ref()
        .and_then(|i| i.sha256.as_ref())
        && is_zero(pin.as_str())
    {
        return Err(cx.err(
            "`licensing.image-sha256` is 64 zeros, the example's placeholder and not a checksum: save the FastAPI-DLS image with `podman save --format oci-archive`, run `sha256sum` on the archive and paste the hash",
        ));
    }
    for (key, file) in [
        ("licensing.token", &resolved.licensing.token),
        ("licensing.image", &resolved.licensing.image),
    ] {
        if let Some(f) = file {
            named.push((key.into(), &f.source));
        }
    }
    if named.is_empty() {
        return Ok(());
    }
    let base = match cx.base() {
        b if b.as_os_str().is_empty() => Path::new("."),
        b => b,
    };
    let root = base.canonicalize().map_err(|e| {
        cx.err(format!(
            "cannot open the profile's directory {}: {e}",
            base.display()
        ))
    })?;
    for (key, source) in named {
        let shown_path = shown(&source.to_string_lossy());
        let meta = std::fs::metadata(source).map_err(|e| {
            let what = if e.kind() == std::io::ErrorKind::NotFound {
                "does not exist".to_string()
            } else {
                format!("cannot be read ({e})")
            };
            cx.err(format!(
                "`{key}`: {shown_path} {what}: put the file there ({RULE})"
            ))
        })?;
        let real = source
            .canonicalize()
            .map_err(|e| cx.err(format!("`{key}`: {shown_path} cannot be resolved: {e}")))?;
        if !real.starts_with(&root) {
            return Err(cx.err(format!(
                "`{key}`: {shown_path} is a symbolic link that leads outside the profile's directory: {RULE}; copy the file itself next to the profile"
            )));
        }
        if !meta.is_file() {
            return Err(cx.err(format!(
                "`{key}`: {shown_path} is {}, not a regular file: give the path of the file itself",
                kind_of(&meta)
            )));
        }
    }
    Ok(())
}

//! The unlock patch, applied at bake time with the installer's own
//! `--apply-patch`; the result is cached keyed by both inputs' hashes.

use std::path::{Path, PathBuf};
use std::process::Command;

use vgpu_plan::plan::Sha256;

use super::{BakeError, input_err};
use crate::fetch;
use crate::hash::{self, Digests};
use crate::input::{PATCH_LIMIT, read_limited};

fn patch_file_name(patch: &Path) -> String {
    patch
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Runs the installer's own `--apply-patch` on the cached driver and caches
/// the resulting `-custom.run` keyed by both inputs' hashes. Returns the
/// patched installer, its digests and the patch's sha256.
pub(super) fn apply_patch(
    driver: &Path,
    driver_digests: &Digests,
    patch: &Path,
    release: &str,
    cache_dir: &Path,
    notes: &mut Vec<String>,
) -> Result<(PathBuf, Digests, Sha256), BakeError> {
    let patch_bytes = read_limited(patch, PATCH_LIMIT).map_err(|e| input_err(patch, format!("cannot read `unlock.patch`: {e}; point it at the patch in your copy of the vgpu-proxmox repository")))?;
    let patch_sha = hash::digest_bytes(&patch_bytes).sha256();
    let stem = driver
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let custom_name = format!("{}-custom.run", stem.trim_end_matches(".run"));
    let dir = cache_dir.join("patched").join(format!(
        "{}-{}",
        &driver_digests.sha256[..16],
        &patch_sha[..16]
    ));
    if let Some(d) = fetch::cached_digests(&dir, &custom_name)? {
        notes.push(format!(
            "patched installer {custom_name}: cached ({}), no re-patch",
            dir.display()
        ));
        return Ok((dir.join(&custom_name), d, patch_sha));
    }
    check_gnu_patch(notes)?;
    let work = tempfile::Builder::new()
        .prefix(".patch.")
        .tempdir_in(cache_dir)
        .map_err(|e| input_err(cache_dir, format!("cannot make a work directory: {e}")))?;
    let staged = work.path().join(&stem);
    // The link lives in the work directory: a relative `driver` (from a
    // relative `--cache`) would point nowhere from there.
    let driver_abs = std::path::absolute(driver).map_err(|e| input_err(driver, e.to_string()))?;
    std::os::unix::fs::symlink(&driver_abs, &staged)
        .map_err(|e| input_err(&staged, format!("cannot stage the driver: {e}")))?;
    let patch_abs = std::path::absolute(patch).map_err(|e| input_err(patch, e.to_string()))?;
    let command = format!("sh {stem} --apply-patch {}", patch_abs.display());
    let out = Command::new("sh")
        .arg(&stem)
        .arg("--apply-patch")
        .arg(&patch_abs)
        .current_dir(work.path())
        .output()
        .map_err(|e| input_err(Path::new("sh"), format!("cannot run `{command}`: {e}")))?;
    let produced = work.path().join(&custom_name);
    if !out.status.success() || !produced.is_file() {
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        let status = if out.status.success() {
            format!("exit 0 but no {custom_name} was written")
        } else {
            out.status.to_string()
        };
        return Err(BakeError::Patch {
            patch: patch.to_path_buf(),
            command,
            status,
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            release: release.to_string(),
        });
    }
    std::fs::create_dir_all(&dir).map_err(|e| input_err(&dir, format!("cannot create: {e}")))?;
    let dest = dir.join(&custom_name);
    std::fs::rename(&produced, &dest)
        .map_err(|e| input_err(&dest, format!("cannot move the patched installer: {e}")))?;
    crate::atomic::sync_dir(&dir).map_err(|e| input_err(&dir, e.to_string()))?;
    let d = fetch::cached_digests(&dir, &custom_name)?
        .ok_or_else(|| input_err(&dest, "the patched installer vanished from the cache"))?;
    notes.push(format!("patched installer {custom_name}: {} applied with the installer's --apply-patch (sha256 {})", patch_file_name(patch), d.sha256));
    Ok((dest, d, patch_sha))
}

/// What to do about a GNU patch that fails on the vgpu_unlock patches.
pub(crate) const PATCH_FIX: &str = "install GNU patch 2.7.6 first on PATH: Debian 12's `patch` package (2.7.6-7), or build it from https://ftp.gnu.org/gnu/patch/patch-2.7.6.tar.gz (`./configure && make && make install` puts it in /usr/local/bin), then bake again";

/// The driver's `--apply-patch` runs the `patch` on PATH: GNU patch 2.8
/// (Debian 13) stops on the vgpu_unlock patches with "patch line N contains
/// NUL byte" where 2.7.6 applies them, so 2.8 and newer are refused before
/// anything runs. A `patch` that is missing or not GNU is not known to
/// fail: the installer reports its own error.
fn check_gnu_patch(notes: &mut Vec<String>) -> Result<(), BakeError> {
    let out = match Command::new("patch").arg("--version").output() {
        Ok(out) => out,
        Err(e) => {
            notes.push(format!(
                "`patch --version`: {e}; the driver's --apply-patch needs GNU patch 2.7.6"
            ));
            return Ok(());
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or_default().trim();
    match gnu_patch_version(first) {
        Some(v) if v >= [2, 8] => Err(input_err(
            Path::new("patch"),
            format!(
                "`patch --version` says \"{first}\": GNU patch 2.8 and newer fail on the vgpu_unlock patches (\"patch line N contains NUL byte\"); {PATCH_FIX}"
            ),
        )),
        Some(_) => Ok(()),
        None => {
            notes.push(format!("`patch --version` says \"{first}\", not GNU patch: the driver's --apply-patch needs GNU patch 2.7.6"));
            Ok(())
        }
    }
}

/// `[major, minor]` from `GNU patch 2.7.6` (the first line of
/// `patch --version`); `None` when it is not GNU patch.
pub fn gnu_patch_version(line: &str) -> Option<[u32; 2]> {
    let mut parts = line.strip_prefix("GNU patch ")?.split(['.', ' ']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |m| m.parse().ok())?;
    Some([major, minor])
}

#[cfg(test)]
mod tests {
    use super::gnu_patch_version;

    #[test]
    fn gnu_patch_versions_are_read_from_the_first_line() {
        assert_eq!(gnu_patch_version("GNU patch 2.7.6"), Some([2, 7]));
        assert_eq!(gnu_patch_version("GNU patch 2.8"), Some([2, 8]));
        assert_eq!(gnu_patch_version("GNU patch 3"), Some([3, 0]));
        assert_eq!(gnu_patch_version("patch 2.8 (BusyBox)"), None);
        assert_eq!(gnu_patch_version("GNU patch x"), None);
    }
}

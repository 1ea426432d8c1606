//! What the hook writes under the root: the bundle (the same code as
//! `vgpu-bake install`), the trusted keys, and the marker that makes a
//! second run skip straight to starting the agent.

use std::path::{Path, PathBuf};

use vgpu_bake::install::{InstallError, Installed, install_trusted};
use vgpu_bake::sign::{SignError, TrustedKey};
use vgpu_plan::digest::Sha256;
use vgpu_rootfs::Root;

/// The marker, relative to the root: the laid bundle's sha256.
pub const MARKER: &str = "var/lib/proxmox-first-boot/vgpu-hook.done";

/// Where the agent reads trusted keys from, relative to the root.
pub use vgpu_plan::layout::TRUSTED_KEYS_DIR as KEYS_DIR;

/// A write under the root failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {what}: {source}")]
pub struct WriteError {
    /// What was being written.
    pub what: String,
    /// The cause (names the path).
    #[source]
    pub source: vgpu_rootfs::Error,
}

/// A trusted key the hook carries, parsed, with its text.
#[derive(Debug, Clone)]
pub struct CarriedKey {
    /// The parsed key.
    pub key: TrustedKey,
    /// The `.pub` text as carried.
    pub text: String,
}

/// Parses the carried keys (`trusted-keys[i]` in messages).
pub fn parse_keys(texts: &[String]) -> Result<Vec<CarriedKey>, SignError> {
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let origin = PathBuf::from(format!("the hook's trusted-keys[{i}]"));
            Ok(CarriedKey {
                key: TrustedKey::from_text(text, &origin)?,
                text: text.clone(),
            })
        })
        .collect()
}

/// Whether the marker names `sha256` (this bundle was laid already).
pub fn already_laid(root: &Root, sha256: &Sha256) -> bool {
    matches!(
        root.read_bounded(MARKER, 4096),
        Ok(Some(bytes)) if String::from_utf8_lossy(&bytes).split_whitespace().next() == Some(sha256.as_str())
    )
}

/// Lays the staged bundle onto `root` with [`install_trusted`]: with keys,
/// it must be signed by one of them; a refusal writes nothing.
pub fn install(
    staged: &Path,
    root: &Path,
    keys: &[CarriedKey],
) -> Result<Vec<Installed>, InstallError> {
    let keys: Vec<TrustedKey> = keys.iter().map(|k| k.key.clone()).collect();
    install_trusted(staged, root, &keys).map(|(written, _)| written)
}

/// Writes each key as `<KEYS_DIR>/<key id>.pub` (atomically, 0644).
pub fn write_keys(root: &Root, keys: &[CarriedKey]) -> Result<Vec<String>, WriteError> {
    let mut written = Vec::new();
    if keys.is_empty() {
        return Ok(written);
    }
    root.create_dir_all(KEYS_DIR, 0o755)
        .map_err(|source| WriteError {
            what: format!("the trusted keys' directory {KEYS_DIR}"),
            source,
        })?;
    for k in keys {
        let rel = format!("{KEYS_DIR}/{}.pub", k.key.key_id());
        root.write_atomic(&rel, k.text.as_bytes(), 0o644)
            .map_err(|source| WriteError {
                what: format!("trusted key {}", k.key.key_id()),
                source,
            })?;
        written.push(rel);
    }
    Ok(written)
}

/// Writes the marker (atomically): `<sha256> <name>`.
pub fn write_marker(root: &Root, sha256: &Sha256, name: &str) -> Result<(), WriteError> {
    root.create_dir_all("var/lib/proxmox-first-boot", 0o755)
        .and_then(|()| {
            root.write_atomic(
                MARKER,
                format!("{} {name}\n", sha256.as_str()).as_bytes(),
                0o644,
            )
        })
        .map_err(|source| WriteError {
            what: format!("the marker {MARKER}"),
            source,
        })
}

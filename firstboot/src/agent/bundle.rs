//! The installed bundle, checked before phase 1 acts: the manifest's
//! minisign signature against the host's trusted keys
//! ([`layout::TRUSTED_KEYS_DIR`]), then the plan and every file the
//! manifest lists under [`layout::STATE_DIR`] (payload, offline packages,
//! the GPU table) by size and sha256. The agent acts on nothing that is not
//! what was baked (and, with a trusted key on the host, signed).

use minisign_verify::{PublicKey, Signature};
use vgpu_plan::layout;
use vgpu_plan::manifest::Manifest;
use vgpu_rootfs::Root;

use super::host::StepError;
use super::shown::shown;
use crate::sha256::sha256_reader;

/// What to tell the operator when the installed bundle is not what was
/// baked.
pub(crate) const REINSTALL: &str =
    "re-install the bundle from a verified copy (`vgpu-bake install`), then `vgpu-firstboot retry`";

/// Largest trusted key or signature file read (minisign's are ~100-400 bytes).
const MAX_SMALL: u64 = 4096;
/// Largest manifest read.
const MAX_MANIFEST: u64 = 4 << 20;

/// What [`check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The trusted key file (under [`layout::TRUSTED_KEYS_DIR`]) that
    /// verified the signature; `None` when the host trusts no key.
    pub signed_by: Option<String>,
    /// Whether the bundle carries a signature (checked or not).
    pub signed: bool,
    /// Files checked besides the plan (every file the manifest lists under
    /// [`layout::STATE_DIR`]), root-relative, with their sha256 and size.
    pub files: Hashed,
}

/// Reads the regular file `rel` (not a symlink: the bundle lays none
/// there), refusing more than `max` bytes (`Root::read_bounded`); `None`
/// if it does not exist.
fn read_bounded(fs: &Root, rel: &str, max: u64) -> Result<Option<Vec<u8>>, StepError> {
    match fs.symlink_metadata(rel)? {
        None => return Ok(None),
        Some(m) if !m.is_file() => {
            return Err(StepError::new(format!(
                "{} is not a regular file: {REINSTALL}",
                shown(rel)
            )));
        }
        Some(_) => {}
    }
    match fs.read_bounded(rel, max)? {
        None => Err(StepError::new(format!(
            "{} went away while being read",
            shown(rel)
        ))),
        bytes => Ok(bytes),
    }
}

/// The host's trusted keys, `(file name, key)`, in name order: every
/// `*.pub` file in [`layout::TRUSTED_KEYS_DIR`]. A key file that is not a
/// regular file, too large or not a minisign public key is an error: a
/// key the operator meant to trust is never skipped silently.
pub fn trusted_keys(fs: &Root) -> Result<Vec<(String, PublicKey)>, StepError> {
    let dir = layout::TRUSTED_KEYS_DIR;
    let fix =
        "keep only minisign public keys (`*.pub` from `vgpu-bake keygen` or `minisign -G`) there";
    match fs.symlink_metadata(dir)? {
        None => return Ok(Vec::new()),
        Some(m) if !m.is_dir() => {
            return Err(StepError::new(format!(
                "{} is not a directory: {fix}",
                shown(dir)
            )));
        }
        Some(_) => {}
    }
    let mut names: Vec<String> = Vec::new();
    for n in fs.read_dir(dir)?.unwrap_or_default() {
        let n = n.into_string().map_err(|n| {
            StepError::new(format!(
                "{}/{}: the name is not UTF-8: {fix}",
                shown(dir),
                n.to_string_lossy()
            ))
        })?;
        if n.ends_with(".pub") {
            names.push(n);
        }
    }
    // Unstable: names are unique, and the agent already links this sort.
    names.sort_unstable();
    let mut keys = Vec::new();
    for n in names {
        let rel = format!("{dir}/{n}");
        let bad = |why: &dyn std::fmt::Display| {
            StepError::new(format!("trusted key {}: {why}; {fix}", shown(&rel)))
        };
        let meta = fs
            .symlink_metadata(&rel)?
            .ok_or_else(|| bad(&"went away"))?;
        if !meta.is_file() {
            return Err(bad(&"not a regular file"));
        }
        let bytes = fs
            .read_bounded(&rel, MAX_SMALL)
            .map_err(|e| bad(&e.source))?
            .ok_or_else(|| bad(&"went away"))?;
        let text = String::from_utf8(bytes).map_err(|_| bad(&"not UTF-8 text"))?;
        let key = PublicKey::decode(&text)
            .map_err(|e| bad(&format_args!("not a minisign public key ({e})")))?;
        keys.push((n, key));
    }
    Ok(keys)
}

/// Verifies the manifest's bytes with one of `keys`: the key file's name
/// and the signature's trusted comment.
fn verify_signature(
    keys: &[(String, PublicKey)],
    manifest: &[u8],
    sig: Option<&[u8]>,
) -> Result<(String, String), StepError> {
    let sig_name = shown(layout::SIGNATURE_FILE);
    let key_names = keys
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let trusted = format!("{} ({key_names})", shown(layout::TRUSTED_KEYS_DIR));
    let Some(sig) = sig else {
        return Err(StepError::new(format!(
            "the bundle is unsigned ({sig_name} is missing) but this host trusts the keys in {trusted}: install one baked with `vgpu-bake bake --sign-key` and one of them"
        )));
    };
    let sig = std::str::from_utf8(sig)
        .ok()
        .and_then(|t| Signature::decode(t).ok())
        .ok_or_else(|| {
            StepError::new(format!(
                "{sig_name} is not a minisign signature: {REINSTALL}"
            ))
        })?;
    let key = keys
        .iter()
        .find(|(_, k)| k.verify(manifest, &sig, false).is_ok())
        .ok_or_else(|| {
            StepError::new(format!(
                "the signature {sig_name} of {} does not verify with any key in {trusted} (the manifest changed after signing, or another key signed it); install a bundle signed with a trusted key",
                shown(layout::MANIFEST_FILE)
            ))
        })?;
    Ok((key.0.clone(), sig.trusted_comment().to_owned()))
}

/// Checks the installed bundle under `fs`: the signature when the host
/// trusts any key, the manifest, the plan's bytes (`plan_sha256`,
/// `plan_size`, as the agent read them) and every file the manifest lists
/// under [`layout::STATE_DIR`]. The first difference is the error.
pub fn check(
    fs: &Root,
    plan_name: &str,
    plan_sha256: &str,
    plan_size: u64,
) -> Result<Checked, StepError> {
    let keys = trusted_keys(fs)?;
    let manifest_name = shown(layout::MANIFEST_FILE);
    let bytes = read_bounded(fs, layout::MANIFEST_FILE, MAX_MANIFEST)?
        .ok_or_else(|| StepError::new(format!("{manifest_name} is missing: {REINSTALL}")))?;
    let sig = read_bounded(fs, layout::SIGNATURE_FILE, MAX_SMALL)?;
    let signed = if keys.is_empty() {
        None
    } else {
        Some(verify_signature(&keys, &bytes, sig.as_deref())?)
    };
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| StepError::new(format!("{manifest_name} is not UTF-8: {REINSTALL}")))?;
    let manifest = Manifest::from_toml(text)
        .map_err(|e| StepError::new(format!("{manifest_name}: {e}: {REINSTALL}")))?;
    if let Some((key, comment)) = &signed {
        let want = layout::signature_comment(&manifest.name);
        if *comment != want {
            return Err(StepError::new(format!(
                "the signature {} (key {key}) has the trusted comment {comment:?}, not {want:?}: it was made for another bundle; install the bundle it belongs to",
                shown(layout::SIGNATURE_FILE)
            )));
        }
    }
    if manifest.name != plan_name {
        return Err(StepError::new(format!(
            "{manifest_name} is the manifest of bundle {:?}, but the plan is {plan_name:?}: {REINSTALL}",
            manifest.name
        )));
    }
    let plan_rel = layout::PLAN_FILE;
    let entry = manifest
        .get(plan_rel)
        .filter(|e| e.size.is_some())
        .ok_or_else(|| {
            StepError::new(format!(
                "{manifest_name} does not list the plan {}: {REINSTALL}",
                shown(plan_rel)
            ))
        })?;
    let listed = entry.sha256.as_deref().unwrap_or_default();
    if entry.size != Some(plan_size) || !listed.eq_ignore_ascii_case(plan_sha256) {
        return Err(StepError::new(format!(
            "the plan {} is not the one baked: the manifest lists sha256 {listed} ({} bytes), found sha256 {plan_sha256} ({plan_size} bytes); nothing was changed: {REINSTALL}",
            shown(plan_rel),
            entry.size.unwrap_or_default()
        )));
    }
    let mut hashed = Hashed::new();
    let under = format!("{}/", layout::STATE_DIR);
    for f in manifest
        .files()
        .filter(|f| f.path.starts_with(&under) && f.path != plan_rel)
    {
        let (Some(sha256), Some(size)) = (&f.sha256, f.size) else {
            continue;
        };
        check_file(fs, &mut hashed, &f.path, sha256, size, REINSTALL)?;
    }
    Ok(Checked {
        signed_by: signed.map(|(key, _)| key),
        signed: sig.is_some(),
        files: hashed,
    })
}

/// The bundle check `run` makes before phase 1 ([`check`]), for the dry
/// run. Reads only.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Preview {
    /// `run` would go on; false: it would refuse the bundle and change
    /// nothing.
    pub passes: bool,
    /// Why `run` would refuse it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// `verified` (by `signed-by`), `unchecked` (a signature, but no trusted
    /// key) or `none` (no signature and no trusted key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<&'static str>,
    /// The trusted key file that verified the signature, else the trusted
    /// keys' directory (absolute).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// Every file checked against the manifest (size, sha256), absolute,
    /// the plan first.
    pub files: Vec<String>,
}

/// [`check`] as a [`Preview`].
pub fn preview(fs: &Root, plan_name: &str, plan_sha256: &str, plan_size: u64) -> Preview {
    match check(fs, plan_name, plan_sha256, plan_size) {
        Ok(c) => Preview {
            passes: true,
            refused: None,
            signature: Some(match (&c.signed_by, c.signed) {
                (Some(_), _) => "verified",
                (None, true) => "unchecked",
                (None, false) => "none",
            }),
            signed_by: Some(
                c.signed_by
                    .unwrap_or_else(|| shown(layout::TRUSTED_KEYS_DIR)),
            ),
            files: std::iter::once(layout::PLAN_FILE)
                .chain(c.files.iter().map(|f| f.0.as_str()))
                .map(shown)
                .collect(),
        },
        Err(e) => Preview {
            passes: false,
            refused: Some(e.reason),
            signature: None,
            signed_by: None,
            files: Vec::new(),
        },
    }
}

/// sha256 and size per file already hashed: the installer is hundreds of
/// MB and may be listed both in the manifest and in the plan.
pub type Hashed = Vec<(String, (String, u64))>;

/// Checks the file `rel` is a regular file (not a symlink) of `size` bytes
/// with this sha256; `fix` says what to do when it is not.
pub(crate) fn check_file(
    fs: &Root,
    hashed: &mut Hashed,
    rel: &str,
    sha256: &str,
    size: u64,
    fix: &str,
) -> Result<(), StepError> {
    let name = shown(rel);
    let what = if layout::in_payload(rel.trim_start_matches('/')) {
        "payload file"
    } else {
        "bundle file"
    };
    let meta = match fs.symlink_metadata(rel) {
        Ok(Some(m)) => m,
        Ok(None) => {
            return Err(StepError::new(format!(
                "{what} {name} is missing (expected {size} bytes, sha256 {sha256}): {fix}"
            )));
        }
        Err(e) => return Err(StepError::new(format!("reading {name}: {}", e.source))),
    };
    if !meta.is_file() {
        return Err(StepError::new(format!(
            "{what} {name} is not a regular file: {fix}"
        )));
    }
    // A size mismatch (a truncated copy) needs no hashing.
    if meta.len() != size {
        return Err(StepError::new(format!(
            "{what} {name} has the wrong size: expected {size} bytes (sha256 {sha256}), found {} bytes: {fix}",
            meta.len()
        )));
    }
    let actual = match hashed.iter().find(|(p, _)| p == rel) {
        Some((_, h)) => h.clone(),
        None => {
            let h = fs
                .open(rel)
                .map_err(|e| e.source)
                .and_then(|f| sha256_reader(f.ok_or_else(|| std::io::Error::from_raw_os_error(2))?))
                .map_err(|e| StepError::new(format!("reading {name}: {e}")))?;
            hashed.push((rel.to_owned(), h.clone()));
            h
        }
    };
    if !actual.0.eq_ignore_ascii_case(sha256) || actual.1 != size {
        return Err(StepError::new(format!(
            "{what} {name} is corrupt: expected sha256 {sha256} ({size} bytes), found sha256 {} ({} bytes): {fix}",
            actual.0, actual.1
        )));
    }
    Ok(())
}

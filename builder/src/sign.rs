//! minisign keys and bundle signatures.
//!
//! A signed bundle carries [`layout::SIGNATURE_FILE`], a minisign signature
//! (prehashed Ed25519, the `minisign` tool's default) of the exact bytes of
//! [`layout::MANIFEST_FILE`], with the trusted comment
//! [`trusted_comment`]`(name)`. The manifest lists the plan's and every other
//! entry's sha256, so the signature covers the whole bundle; the comment
//! binds it to the bundle's name. `minisign -V -p KEY.pub -m manifest.toml
//! -x manifest.toml.minisig` verifies it, and keys made by `minisign -G -W`
//! sign with `vgpu-bake bake --sign-key`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use minisign::{KeyPair, PublicKey, PublicKeyBox, SecretKey, SecretKeyBox, SignatureBox};
use vgpu_plan::layout;

use crate::atomic::{self, AtomicError, AtomicFile};

/// Environment variable holding the password of an encrypted secret key.
/// Without it, only unencrypted keys (`vgpu-bake keygen`, `minisign -G -W`)
/// sign: `vgpu-bake` never prompts.
pub const PASSWORD_ENV: &str = "VGPU_BAKE_KEY_PASSWORD";

/// Largest key or signature file read.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// The trusted (signed) comment of a bundle's signature
/// ([`layout::signature_comment`], shared with the agent).
pub fn trusted_comment(bundle: &str) -> String {
    layout::signature_comment(bundle)
}

/// A key id as minisign prints it: 16 upper-case hex digits.
fn key_id(keynum: &[u8]) -> String {
    let mut id = [0u8; 8];
    id.copy_from_slice(&keynum[..8]);
    format!("{:016X}", u64::from_le_bytes(id))
}

/// Error making keys, signing or checking a signature; names the file or
/// bundle and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// A key file could not be read.
    #[error("cannot read the {what} {}: {source}; check the path (`vgpu-bake keygen PREFIX` makes a key pair)", path.display())]
    Read {
        /// `secret key`, `public key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A key file that is not a minisign key.
    #[error("{} is not a minisign {what} ({reason}); {fix}", path.display())]
    BadKey {
        /// `secret key`, `public key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
        /// What to do.
        fix: &'static str,
    },
    /// An encrypted key without a password.
    #[error(
        "the secret key {} is encrypted: set {PASSWORD_ENV} to its password, or sign with an unencrypted key (`vgpu-bake keygen`, `minisign -G -W`)",
        path.display()
    )]
    Encrypted {
        /// The file.
        path: PathBuf,
    },
    /// keygen would overwrite a key.
    #[error("{} already exists: keygen never overwrites a key; pass --force to replace it, or choose another name", path.display())]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// Signing failed.
    #[error("signing with {}: {reason}", path.display())]
    Sign {
        /// The secret key.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Writing a key file failed.
    #[error("writing the key: {0}; check that the prefix's directory exists and is writable")]
    Write(#[from] AtomicError),
    /// A bundle that must be signed is not.
    #[error(
        "bundle {}: it is unsigned (no {}), but --trusted-key {} was given: bake it with `vgpu-bake bake --sign-key KEY`, or install a signed bundle",
        bundle.display(), layout::SIGNATURE_FILE, keys
    )]
    Unsigned {
        /// The bundle.
        bundle: PathBuf,
        /// The trusted key files, comma-separated.
        keys: String,
    },
    /// The signature file is not a minisign signature.
    #[error("bundle {}: {} is not a minisign signature ({reason}); re-bake the bundle with --sign-key", bundle.display(), layout::SIGNATURE_FILE)]
    BadSignature {
        /// The bundle.
        bundle: PathBuf,
        /// Why.
        reason: String,
    },
    /// No trusted key verifies the signature.
    #[error(
        "bundle {}: the signature (key id {key_id}) does not verify with any trusted key ({keys}): {reason}; the bundle was changed after signing or signed by another key: get the bundle from its baker again, or trust the right key",
        bundle.display()
    )]
    Untrusted {
        /// The bundle.
        bundle: PathBuf,
        /// The signature's key id.
        key_id: String,
        /// The trusted key files and their ids.
        keys: String,
        /// What the verifying key said.
        reason: String,
    },
    /// A valid signature made for another bundle.
    #[error(
        "bundle {}: the signature by {} (key id {key_id}) has the trusted comment {found:?}, not {expected:?}: it belongs to another bundle; re-bake and sign this one",
        bundle.display(), key.display()
    )]
    Comment {
        /// The bundle.
        bundle: PathBuf,
        /// The key file that verified it.
        key: PathBuf,
        /// The key id.
        key_id: String,
        /// The comment signed.
        found: String,
        /// The comment expected.
        expected: String,
    },
}

fn read_small(path: &Path, what: &'static str) -> Result<String, SignError> {
    let read = |source| SignError::Read {
        what,
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    if meta.len() > MAX_KEY_FILE {
        return Err(read(std::io::Error::other(format!(
            "larger than {MAX_KEY_FILE} bytes"
        ))));
    }
    std::fs::read_to_string(path).map_err(read)
}

/// Debian's `minisign` 0.11 writes `-W` (unencrypted) secret keys with an
/// all-zero checksum, which minisign-rs refuses as corrupt. Such a key
/// (KDF none, checksum all zero) is read as it is; a damaged one signs
/// nothing that verifies with its public key.
fn minisign_unencrypted_without_checksum(text: &str) -> Option<SecretKey> {
    let bytes = base64_decode(text.lines().nth(1)?.trim())?;
    // sig alg 2, kdf alg 2, chk alg 2, salt 32, limits 16, keynum 8,
    // secret key 64, checksum 32.
    if bytes.len() != 158 || bytes[2..4] != [0, 0] || bytes[126..].iter().any(|&b| b != 0) {
        return None;
    }
    SecretKey::from_bytes(&bytes).ok()
}

/// Standard base64 with padding; `None` on anything else.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let got = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&got[..3 - pad.min(2)]);
    }
    Some(out)
}

/// A secret key to sign bundles with. Its `Debug` shows the file and key
/// id, never the key.
#[derive(Clone)]
pub struct SigningKey {
    path: PathBuf,
    key_id: String,
    secret: Arc<SecretKey>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("path", &self.path)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl PartialEq for SigningKey {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.key_id == other.key_id
    }
}

impl Eq for SigningKey {}

impl SigningKey {
    /// Reads a minisign secret key file: unencrypted, or encrypted with
    /// the password in [`PASSWORD_ENV`].
    pub fn load(path: &Path) -> Result<Self, SignError> {
        const WHAT: &str = "secret key";
        const FIX: &str = "pass the .key file `vgpu-bake keygen` wrote (or minisign's minisign.key), not the .pub";
        let text = read_small(path, WHAT)?;
        let bad = |reason: String| SignError::BadKey {
            what: WHAT,
            path: path.to_path_buf(),
            reason,
            fix: FIX,
        };
        let boxed = SecretKeyBox::from_string(&text).map_err(|e| bad(e.to_string()))?;
        let secret = match SecretKey::from_unencrypted_box(boxed.clone()) {
            Ok(k) => k,
            // minisign-rs says so when the key's KDF is not "none".
            Err(e) if e.to_string().contains("encrypted") => {
                let Some(password) = std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty())
                else {
                    return Err(SignError::Encrypted {
                        path: path.to_path_buf(),
                    });
                };
                SecretKey::from_box(boxed, Some(password)).map_err(|e| {
                    bad(format!(
                        "cannot decrypt it with the password in {PASSWORD_ENV}: {e}"
                    ))
                })?
            }
            Err(e) => match minisign_unencrypted_without_checksum(&text) {
                Some(k) => k,
                None => return Err(bad(e.to_string())),
            },
        };
        if secret.is_encrypted() {
            return Err(bad("its checksum does not match (wrong password?)".into()));
        }
        Ok(Self {
            path: path.to_path_buf(),
            key_id: key_id(secret.keynum()),
            secret: Arc::new(secret),
        })
    }

    /// The key file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key id, as minisign prints it.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The signature file's text for a bundle's manifest bytes.
    pub fn sign_manifest(&self, bundle: &str, manifest: &[u8]) -> Result<String, SignError> {
        let sig = minisign::sign(
            None,
            &self.secret,
            manifest,
            Some(&trusted_comment(bundle)),
            Some(&format!(
                "signature from vgpu-bake secret key {}",
                self.key_id
            )),
        )
        .map_err(|e| SignError::Sign {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        Ok(sig.into_string())
    }
}

/// A public key given with `--trusted-key`.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    path: PathBuf,
    key_id: String,
    key: PublicKey,
}

impl TrustedKey {
    /// Reads a minisign public key file (`NAME.pub`, `minisign.pub`).
    pub fn load(path: &Path) -> Result<Self, SignError> {
        let text = read_small(path, "public key")?;
        Self::from_text(&text, path)
    }

    /// A public key from the text of a `.pub` file (as a hook carries
    /// it); `origin` names it in messages, as [`TrustedKey::path`] does.
    pub fn from_text(text: &str, origin: &Path) -> Result<Self, SignError> {
        const WHAT: &str = "public key";
        let path = origin;
        let key = PublicKeyBox::from_string(text)
            .and_then(PublicKeyBox::into_public_key)
            .map_err(|e| SignError::BadKey {
                what: WHAT,
                path: path.to_path_buf(),
                reason: e.to_string(),
                fix: "pass the .pub file `vgpu-bake keygen` or `minisign -G` wrote",
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            key_id: key_id(key.keynum()),
            key,
        })
    }

    /// The key file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key id.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
}

/// What a bundle's signature is, as far as it was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureInfo {
    /// The key id the signature names.
    pub key_id: String,
    /// Its trusted comment.
    pub trusted_comment: String,
    /// The trusted key file that verified it; `None` when no key was given
    /// (the signature was then not checked).
    pub verified_by: Option<PathBuf>,
}

/// Checks a bundle's signature text `sig` (its [`layout::SIGNATURE_FILE`],
/// `None` if absent) over the manifest bytes. With `keys`, the bundle must
/// be signed by one of them with the trusted comment naming `name`;
/// without, an unsigned bundle gives `None` and a signed one its key id,
/// unchecked.
pub fn check_bundle(
    bundle: &Path,
    manifest: &[u8],
    sig: Option<&str>,
    name: &str,
    keys: &[TrustedKey],
) -> Result<Option<SignatureInfo>, SignError> {
    let key_list = || {
        keys.iter()
            .map(|k| format!("{} ({})", k.path.display(), k.key_id))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(sig) = sig else {
        if keys.is_empty() {
            return Ok(None);
        }
        return Err(SignError::Unsigned {
            bundle: bundle.to_path_buf(),
            keys: key_list(),
        });
    };
    let parsed = SignatureBox::from_string(sig).map_err(|e| SignError::BadSignature {
        bundle: bundle.to_path_buf(),
        reason: e.to_string(),
    })?;
    let comment = parsed
        .trusted_comment()
        .map_err(|e| SignError::BadSignature {
            bundle: bundle.to_path_buf(),
            reason: e.to_string(),
        })?;
    let sig_key_id = key_id(parsed.keynum());
    let mut info = SignatureInfo {
        key_id: sig_key_id.clone(),
        trusted_comment: comment.clone(),
        verified_by: None,
    };
    if keys.is_empty() {
        return Ok(Some(info));
    }
    let mut reasons = Vec::new();
    for k in keys {
        match minisign::verify(
            &k.key,
            &parsed,
            std::io::Cursor::new(manifest),
            true,
            false,
            false,
        ) {
            Ok(()) => {
                let expected = trusted_comment(name);
                if comment != expected {
                    return Err(SignError::Comment {
                        bundle: bundle.to_path_buf(),
                        key: k.path.clone(),
                        key_id: sig_key_id,
                        found: comment,
                        expected,
                    });
                }
                info.verified_by = Some(k.path.clone());
                return Ok(Some(info));
            }
            Err(e) => reasons.push(format!("{}: {e}", k.path.display())),
        }
    }
    Err(SignError::Untrusted {
        bundle: bundle.to_path_buf(),
        key_id: sig_key_id,
        keys: key_list(),
        reason: reasons.join("; "),
    })
}

/// What [`keygen`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// `PREFIX.key`, mode 0600.
    pub secret: PathBuf,
    /// `PREFIX.pub`, mode 0644.
    pub public: PathBuf,
    /// The key id.
    pub key_id: String,
}

/// Makes an unencrypted key pair (as `minisign -G -W`): `PREFIX.key`
/// (mode 0600) and `PREFIX.pub`, each written atomically. Refuses to
/// replace either file unless `force`.
pub fn keygen(prefix: &Path, force: bool) -> Result<NewKey, SignError> {
    let with = |ext: &str| {
        let mut p = prefix.as_os_str().to_owned();
        p.push(ext);
        PathBuf::from(p)
    };
    let (secret_path, public_path) = (with(".key"), with(".pub"));
    if !force {
        for p in [&secret_path, &public_path] {
            if p.symlink_metadata().is_ok() {
                return Err(SignError::Exists { path: p.clone() });
            }
        }
    }
    let sign_err = |e: minisign::PError| SignError::Sign {
        path: secret_path.clone(),
        reason: e.to_string(),
    };
    let pair = KeyPair::generate_unencrypted_keypair().map_err(sign_err)?;
    let id = key_id(pair.pk.keynum());
    let secret_text = pair
        .sk
        .to_box(Some(&format!("vgpu-bake secret key {id}")))
        .map_err(sign_err)?
        .into_string();
    let public_text = pair.pk.to_box().map_err(sign_err)?.into_string();
    // The secret key's temp file is 0600 before a byte of it is written.
    let mut f = AtomicFile::create(&secret_path)?;
    f.set_mode(0o600)?;
    f.write_all(secret_text.as_bytes())
        .map_err(|source| AtomicError {
            action: "writing",
            path: secret_path.clone(),
            source,
        })?;
    f.commit()?;
    atomic::write(&public_path, public_text.as_bytes(), 0o644)?;
    Ok(NewKey {
        secret: secret_path,
        public: public_path,
        key_id: id,
    })
}

#[cfg(test)]
mod tests;

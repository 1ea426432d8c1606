//! The first-boot hook's configuration and the trailer that carries it.
//!
//! A hook is the `vgpu-hook` template executable with a trailer appended:
//!
//! ```text
//! [template ELF][config TOML, UTF-8][length of the TOML: u64 little-endian][MAGIC]
//! ```
//!
//! The kernel loads an ELF by its program headers, so bytes after the last
//! section do not change how it runs; the hook reads its own file
//! (`/proc/self/exe`) and finds the trailer from the end. The whole hook,
//! trailer included, must fit the installer's 1 MiB ([`HOOK_MAX`]).
//!
//! ```toml
//! schema = 1
//! made-by = "vgpu-bake 0.1.0"
//! trusted-keys = ["untrusted comment: ...\nRW...\n"]   # minisign public keys
//!
//! [[source]]                 # tried in this order:
//! path = "/srv/vgpu"         #   a directory on the host,
//! [[source]]
//! label = "VGPU"             #   a filesystem label (a USB stick),
//! [[source]]
//! url = "https://10.0.0.5/fleet/"   # a base URL,
//! cert-fingerprint = "AB:CD:..."    # optional: SHA-256 of the server's certificate
//!
//! [index]                    # an index (see `index.rs`)
//! ...
//! ```

use serde::{Deserialize, Serialize};

use super::index::{Index, IndexError, is_safe_relative};

/// The installer's limit for the first-boot executable
/// (`FIRST_BOOT_EXEC_MAX_SIZE`, checked by `prepare-iso --on-first-boot`
/// and again by the installer).
pub const HOOK_MAX: u64 = 1024 * 1024;

/// The last 8 bytes of a hook.
pub const MAGIC: &[u8; 8] = b"VGPUHOOK";

/// The schema this version writes and reads.
pub const SCHEMA: u32 = 1;

/// What the hook carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HookConfig {
    /// [`SCHEMA`].
    pub schema: u32,
    /// `vgpu-bake VERSION`, for `--help` and messages.
    pub made_by: String,
    /// minisign public keys (the text of `.pub` files): when any is given
    /// the bundle must be signed by one, and the hook installs them all in
    /// `/etc/vgpu-firstboot/trusted-keys/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_keys: Vec<String>,
    /// Where to look for the bundle, in order.
    #[serde(rename = "source")]
    pub sources: Vec<Source>,
    /// The bundles and which host takes which.
    pub index: Index,
}

/// One place to look for bundles. The bundle is `<source>/<file>`, with
/// `file` from the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Source {
    /// An absolute directory on the host.
    Path {
        /// The directory.
        path: String,
    },
    /// A filesystem with this label (`/dev/disk/by-label/LABEL`), mounted
    /// read-only for the copy.
    Label {
        /// The label.
        label: String,
    },
    /// A base URL (`http://` or `https://`, ending in `/`).
    Url {
        /// The base URL.
        url: String,
        /// SHA-256 fingerprint of the server's TLS certificate (`AB:CD:...`,
        /// as `openssl x509 -fingerprint -sha256` prints it); https only.
        #[serde(
            default,
            rename = "cert-fingerprint",
            skip_serializing_if = "Option::is_none"
        )]
        cert_fingerprint: Option<String>,
    },
}

impl std::fmt::Display for Source {
    /// `path DIR`, `label LABEL`, `url URL` (with `(certificate FP)`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Path { path } => write!(f, "path {path}"),
            Source::Label { label } => write!(f, "label {label}"),
            Source::Url {
                url,
                cert_fingerprint: None,
            } => write!(f, "url {url}"),
            Source::Url {
                url,
                cert_fingerprint: Some(fp),
            } => write!(f, "url {url} (certificate {fp})"),
        }
    }
}

impl Source {
    /// Source order by kind: paths first, then labels, then URLs.
    pub fn rank(&self) -> u8 {
        match self {
            Source::Path { .. } => 0,
            Source::Label { .. } => 1,
            Source::Url { .. } => 2,
        }
    }
}

/// A hook configuration or trailer that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A rule of the configuration is broken.
    #[error("hook configuration: {0}")]
    Invalid(String),
    /// The index inside is not valid.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The executable has no trailer: it is the bare template.
    #[error(
        "this executable carries no hook configuration: it is the vgpu-hook template; make a hook with `vgpu-bake hook` or `vgpu-bake fleet`"
    )]
    NoTrailer,
    /// The trailer is damaged.
    #[error("the hook's trailer is damaged ({0}); make the hook again with `vgpu-bake hook`")]
    Damaged(String),
}

/// The label rule, shared by `--from-label` and `vgpu-bake usb --label`:
/// 1-16 bytes of `[A-Za-z0-9._-]` (an ext4 label holds 16 bytes; no
/// character udev would escape in `/dev/disk/by-label/`).
pub fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 16
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// A certificate fingerprint in the form `AB:CD:...` (32 octets, upper
/// case), from upper or lower case, with or without colons.
pub fn normalize_fingerprint(text: &str) -> Option<String> {
    let hex: String = text.trim().chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let hex = hex.to_ascii_uppercase();
    Some(
        (0..32)
            .map(|i| &hex[2 * i..2 * i + 2])
            .collect::<Vec<_>>()
            .join(":"),
    )
}

impl Source {
    /// The rules for one source, as its command-line flag; the message
    /// names the flag.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Source::Path { path } => {
                if !path.starts_with('/')
                    || !(path == "/"
                        || is_safe_relative(path.trim_start_matches('/').trim_end_matches('/')))
                {
                    return Err(format!(
                        "--from-path {path:?} must be an absolute path of plain names"
                    ));
                }
            }
            Source::Label { label } => {
                if !valid_label(label) {
                    return Err(format!(
                        "--from-label {label:?} must be 1 to 16 letters, digits, `-`, `_` or `.` (an ext4 label holds 16 bytes)"
                    ));
                }
            }
            Source::Url {
                url,
                cert_fingerprint,
            } => {
                let https = url.starts_with("https://");
                if !(https || url.starts_with("http://"))
                    || !url.ends_with('/')
                    || url.chars().any(|c| c.is_control() || c.is_whitespace())
                {
                    return Err(format!(
                        "--from-url {url:?} must be an http:// or https:// base URL ending in `/`"
                    ));
                }
                if let Some(fp) = cert_fingerprint {
                    if !https {
                        return Err(format!(
                            "--cert-fingerprint applies to https URLs only, not {url}"
                        ));
                    }
                    if normalize_fingerprint(fp).as_deref() != Some(fp.as_str()) {
                        return Err(format!(
                            "--cert-fingerprint {fp:?} is not a SHA-256 fingerprint as AB:CD:... (32 octets)"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

impl HookConfig {
    /// The rules: schema, at least one source, well-formed sources in
    /// kind order, a valid index.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.schema != SCHEMA {
            return bad(format!(
                "`schema` = {} is not {SCHEMA}: made by another version of vgpu-bake",
                self.schema
            ));
        }
        if self.sources.is_empty() {
            return bad(
                "no source: give --from-path, --from-label or --from-url so the hook can find its bundle"
                    .to_owned(),
            );
        }
        if !self.sources.windows(2).all(|w| w[0].rank() <= w[1].rank()) {
            return bad("sources must be in the order paths, labels, URLs".to_owned());
        }
        for s in &self.sources {
            s.check().map_err(ConfigError::Invalid)?;
        }
        self.index.validate()?;
        Ok(())
    }

    /// The template with this configuration appended; refuses a result
    /// over [`HOOK_MAX`], saying by how much.
    pub fn append_to(&self, template: &[u8]) -> Result<Vec<u8>, ConfigError> {
        self.validate()?;
        if read_trailer(template).is_ok() {
            return Err(ConfigError::Invalid(
                "the template already carries a configuration: give the bare vgpu-hook binary"
                    .to_owned(),
            ));
        }
        let trailer = self.trailer()?;
        let mut out = Vec::with_capacity(template.len() + trailer.len());
        out.extend_from_slice(template);
        out.extend_from_slice(&trailer);
        let size = out.len() as u64;
        if template.len() as u64 + 16 >= HOOK_MAX {
            return Err(ConfigError::Invalid(format!(
                "the template alone is {} bytes, over the installer's 1 MiB ({HOOK_MAX} bytes) for the whole hook: use the small build (`cargo build --profile hook -p vgpu-hook`, target/hook/vgpu-hook) as --hook-template",
                template.len()
            )));
        }
        if size > HOOK_MAX {
            return Err(ConfigError::Invalid(format!(
                "the hook would be {size} bytes (template {} + configuration {} + 16): over the installer's 1 MiB ({HOOK_MAX} bytes) by {}; list fewer hosts or bundles per hook",
                template.len(),
                trailer.len() - 16,
                size - HOOK_MAX
            )));
        }
        Ok(out)
    }

    /// The trailer alone (configuration, length, [`MAGIC`]), without the
    /// 1 MiB check: [`HookConfig::append_to`] is the way to make a hook;
    /// this lets tests append it to a debug build (several MiB).
    pub fn trailer(&self) -> Result<Vec<u8>, ConfigError> {
        self.validate()?;
        let text = toml::to_string(self).expect("a hook configuration always serialises");
        let mut out = Vec::with_capacity(text.len() + 16);
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(&(text.len() as u64).to_le_bytes());
        out.extend_from_slice(MAGIC);
        Ok(out)
    }
}

/// The configuration at the end of a hook executable's bytes.
pub fn read_trailer(exe: &[u8]) -> Result<HookConfig, ConfigError> {
    let Some(rest) = exe.strip_suffix(MAGIC.as_slice()) else {
        return Err(ConfigError::NoTrailer);
    };
    let Some((head, len)) = rest.split_last_chunk::<8>() else {
        return Err(ConfigError::Damaged("shorter than its trailer".into()));
    };
    let len = u64::from_le_bytes(*len);
    let text_len = usize::try_from(len)
        .ok()
        .filter(|l| *l <= head.len() && (*l as u64) < HOOK_MAX)
        .ok_or_else(|| ConfigError::Damaged(format!("length {len} is not possible")))?;
    let text = std::str::from_utf8(&head[head.len() - text_len..])
        .map_err(|_| ConfigError::Damaged("configuration is not UTF-8".into()))?;
    // Through `toml::Table` (the agent's reader): smaller in the hook than
    // a second serde deserializer, and the hook must stay small.
    let config: HookConfig =
        vgpu_plan::from_toml(text).map_err(|e| ConfigError::Damaged(e.message().to_owned()))?;
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::super::index::IndexBundle;
    use super::*;
    use vgpu_plan::digest::Sha256;

    fn config() -> HookConfig {
        let sha = Sha256::parse(&"a".repeat(64)).unwrap();
        HookConfig {
            schema: SCHEMA,
            made_by: "vgpu-bake test".into(),
            trusted_keys: vec![],
            sources: vec![
                Source::Path {
                    path: "/srv/vgpu".into(),
                },
                Source::Label {
                    label: "VGPU".into(),
                },
                Source::Url {
                    url: "https://10.0.2.100/fleet/".into(),
                    cert_fingerprint: Some(normalize_fingerprint(&"ab".repeat(32)).unwrap()),
                },
            ],
            index: Index {
                schema: super::super::index::SCHEMA,
                default: Some(sha.clone()),
                bundles: vec![IndexBundle {
                    sha256: sha,
                    size: 1,
                    file: "demo.cpio.zst".into(),
                    name: "demo".into(),
                }],
                hosts: vec![],
            },
        }
    }

    #[test]
    fn trailer_round_trips() {
        let template = b"\x7fELF not really".to_vec();
        let hook = config().append_to(&template).unwrap();
        assert!(hook.starts_with(&template));
        assert_eq!(read_trailer(&hook).unwrap(), config());
        assert_eq!(read_trailer(&template), Err(ConfigError::NoTrailer));
        let e = config().append_to(&hook).unwrap_err().to_string();
        assert!(e.contains("already carries"), "{e}");
    }

    #[test]
    fn refuses_damage_and_size() {
        let mut hook = config().append_to(b"ELF").unwrap();
        let n = hook.len();
        hook[n - 9] ^= 0xff; // the length's top byte
        assert!(matches!(read_trailer(&hook), Err(ConfigError::Damaged(_))));
        let big = vec![0u8; HOOK_MAX as usize];
        let e = config().append_to(&big).unwrap_err().to_string();
        assert!(e.contains("over the installer's 1 MiB"), "{e}");
    }

    #[test]
    fn labels_are_short_and_plain() {
        assert!(valid_label("VGPU"));
        assert!(valid_label("vgpu-fleet_1.0"));
        assert!(valid_label(&"a".repeat(16)));
        assert!(!valid_label(&"a".repeat(17)));
        assert!(!valid_label(""));
        assert!(!valid_label("has space"));
        assert!(!valid_label("ü"));
        assert!(!valid_label("a/b"));
    }

    #[test]
    fn checks_sources() {
        let mut c = config();
        c.sources.reverse();
        assert!(c.validate().is_err());
        let mut c = config();
        c.sources = vec![Source::Url {
            url: "http://x/".into(),
            cert_fingerprint: Some("AB".into()),
        }];
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("https URLs only")
        );
        let mut c = config();
        c.sources = vec![Source::Label {
            label: "has space".into(),
        }];
        assert!(c.validate().is_err());
        c.sources = vec![];
        assert!(c.validate().is_err());
    }
}

//! `vgpu-bake hook`: the configuration from a bundle or a fleet index, the
//! sources and the trusted keys, every bundle checked now (so a bad or
//! unsigned bundle is refused when the hook is made, not at first boot),
//! then [`write_hook`].

use std::path::{Path, PathBuf};

use vgpu_plan::digest::Sha256;

use super::config::{self, ConfigError, HOOK_MAX, HookConfig, Source, normalize_fingerprint};
use super::hook::{HookError, write_hook};
use super::index::{Index, IndexBundle, IndexError};
use crate::inspect::{InspectError, inspect_trusted};
use crate::sign::{SignError, TrustedKey};

/// What the hook is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookInput {
    /// One bundle: the index lists it as the default, by file name.
    Bundle(PathBuf),
    /// A fleet index; its bundles are found relative to its directory.
    Index(PathBuf),
}

/// The source flags as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceFlags {
    /// `--from-path`.
    pub paths: Vec<String>,
    /// `--from-label`.
    pub labels: Vec<String>,
    /// `--from-url`.
    pub urls: Vec<String>,
    /// `--cert-fingerprint`, for the https URLs.
    pub cert_fingerprint: Option<String>,
}

/// Why a hook was not made; names the file or flag.
#[derive(Debug, thiserror::Error)]
pub enum MakeError {
    /// A flag is not usable.
    #[error("{0}")]
    Flags(String),
    /// A trusted key could not be read.
    #[error(transparent)]
    Key(#[from] SignError),
    /// A file could not be read.
    #[error("cannot read {}: {cause}; check the path", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause (in the message: not a `source`, so it is said once).
        cause: std::io::Error,
    },
    /// The index is not valid.
    #[error("{}: {source}", path.display())]
    Index {
        /// The index file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: IndexError,
    },
    /// A bundle of the index is not the one it lists.
    #[error("{}: bundle {name}: {reason}; make the fleet directory again with `vgpu-bake fleet`", index.display())]
    Mismatch {
        /// The index file.
        index: PathBuf,
        /// The bundle's name.
        name: String,
        /// What differs.
        reason: String,
    },
    /// A bundle failed verification (or its signature).
    #[error("refusing to make a hook for it: {0}")]
    Bundle(#[from] InspectError),
    /// The configuration is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The hook could not be written.
    #[error(transparent)]
    Hook(#[from] HookError),
}

/// What [`make_hook`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadeHook {
    /// The hook.
    pub out: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// What it carries.
    pub config: HookConfig,
}

impl SourceFlags {
    /// The sources in kind order (paths, labels, URLs); the fingerprint
    /// goes with every https URL and needs one.
    pub fn sources(&self) -> Result<Vec<Source>, MakeError> {
        let fp = match &self.cert_fingerprint {
            None => None,
            Some(f) => Some(normalize_fingerprint(f).ok_or_else(|| {
                MakeError::Flags(format!(
                    "--cert-fingerprint {f:?} is not a SHA-256 fingerprint (64 hex digits, colons optional): print it with `openssl x509 -in CERT -noout -fingerprint -sha256`"
                ))
            })?),
        };
        if fp.is_some() && !self.urls.iter().any(|u| u.starts_with("https://")) {
            return Err(MakeError::Flags(
                "--cert-fingerprint needs an https:// --from-url".into(),
            ));
        }
        let mut out: Vec<Source> = Vec::new();
        out.extend(self.paths.iter().map(|p| Source::Path { path: p.clone() }));
        out.extend(
            self.labels
                .iter()
                .map(|l| Source::Label { label: l.clone() }),
        );
        out.extend(self.urls.iter().map(|u| {
            let url = if u.ends_with('/') {
                u.clone()
            } else {
                format!("{u}/")
            };
            Source::Url {
                cert_fingerprint: fp.clone().filter(|_| url.starts_with("https://")),
                url,
            }
        }));
        if out.is_empty() {
            return Err(MakeError::Flags(
                "no source: give --from-path DIR, --from-label LABEL or --from-url URL so the hook can find its bundle at first boot".into(),
            ));
        }
        for s in &out {
            s.check().map_err(MakeError::Flags)?;
        }
        Ok(out)
    }
}

/// Reads `--trusted-key` files: their parsed keys and texts.
pub fn read_keys(paths: &[PathBuf]) -> Result<(Vec<TrustedKey>, Vec<String>), MakeError> {
    let mut keys = Vec::new();
    let mut texts = Vec::new();
    for p in paths {
        keys.push(TrustedKey::load(p)?);
        texts.push(std::fs::read_to_string(p).map_err(|cause| MakeError::Read {
            path: p.clone(),
            cause,
        })?);
    }
    Ok((keys, texts))
}

/// The index for one bundle, checked with `keys`.
pub fn bundle_index(bundle: &Path, keys: &[TrustedKey]) -> Result<Index, MakeError> {
    let report = inspect_trusted(bundle, keys)?;
    let size = std::fs::metadata(bundle)
        .map_err(|cause| MakeError::Read {
            path: bundle.to_owned(),
            cause,
        })?
        .len();
    let sha256 = Sha256::parse(&report.bundle_sha256).expect("inspect reports hex sha256");
    let file = bundle
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            MakeError::Flags(format!(
                "--bundle {}: its file name must be UTF-8",
                bundle.display()
            ))
        })?
        .to_owned();
    Ok(Index {
        schema: super::index::SCHEMA,
        default: Some(sha256.clone()),
        bundles: vec![IndexBundle {
            sha256,
            size,
            file,
            name: report.manifest.name,
        }],
        hosts: vec![],
    })
}

/// Reads a fleet index and checks every bundle it lists: present beside
/// it, the listed size and sha256, and it passes `inspect` with `keys`.
pub fn fleet_index(path: &Path, keys: &[TrustedKey]) -> Result<Index, MakeError> {
    let read_err = |cause| MakeError::Read {
        path: path.to_owned(),
        cause,
    };
    let bytes = crate::input::read_limited(path, super::index::INDEX_LIMIT).map_err(read_err)?;
    let text = String::from_utf8(bytes)
        .map_err(|e| read_err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    let index = Index::parse(&text).map_err(|source| MakeError::Index {
        path: path.to_owned(),
        source,
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    for b in &index.bundles {
        let file = dir.join(&b.file);
        let mismatch = |reason: String| MakeError::Mismatch {
            index: path.to_owned(),
            name: b.name.clone(),
            reason,
        };
        let meta = std::fs::metadata(&file)
            .map_err(|e| mismatch(format!("{} is missing or unreadable ({e})", file.display())))?;
        if meta.len() != b.size {
            return Err(mismatch(format!(
                "{} is {} bytes, the index says {}",
                file.display(),
                meta.len(),
                b.size
            )));
        }
        let changed = |sha256: &str| {
            mismatch(format!(
                "{} has sha256 {sha256}, the index says {}",
                file.display(),
                b.sha256.as_str()
            ))
        };
        // One read on the way that works: inspect hashes the whole file. Only
        // when it refuses is the file hashed apart, to say it changed since
        // the index was written rather than how the change breaks it.
        let report = match inspect_trusted(&file, keys) {
            Ok(r) => r,
            Err(e) => {
                let sha256 = std::fs::File::open(&file)
                    .and_then(crate::hash::digest_reader)
                    .map_err(|e| mismatch(format!("{}: {e}", file.display())))?
                    .sha256;
                return Err(if sha256 == b.sha256.as_str() {
                    e.into()
                } else {
                    changed(&sha256)
                });
            }
        };
        if report.bundle_sha256 != b.sha256.as_str() {
            return Err(changed(&report.bundle_sha256));
        }
        if report.manifest.name != b.name {
            return Err(mismatch(format!(
                "{} holds plan {:?}, the index says {:?}",
                file.display(),
                report.manifest.name,
                b.name
            )));
        }
    }
    Ok(index)
}

/// Makes the hook: the index from `input`, the sources, the keys' texts;
/// writes `out` from `template` (nothing is written on any error).
pub fn make_hook(
    input: &HookInput,
    flags: &SourceFlags,
    key_paths: &[PathBuf],
    template: &Path,
    out: &Path,
) -> Result<MadeHook, MakeError> {
    let sources = flags.sources()?;
    let (keys, texts) = read_keys(key_paths)?;
    let index = match input {
        HookInput::Bundle(b) => bundle_index(b, &keys)?,
        HookInput::Index(i) => fleet_index(i, &keys)?,
    };
    let config = HookConfig {
        schema: config::SCHEMA,
        made_by: format!("vgpu-bake {}", env!("CARGO_PKG_VERSION")),
        trusted_keys: texts,
        sources,
        index,
    };
    config.validate()?;
    let size = write_hook(template, &config, out)?;
    Ok(MadeHook {
        out: out.to_owned(),
        size,
        config,
    })
}

/// `1,048,576`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The one line `vgpu-bake hook` (and `fleet`) prints about a hook.
pub fn summary(out: &Path, size: u64, config: &HookConfig) -> String {
    let n = |k: usize, one: &str| format!("{k} {one}{}", if k == 1 { "" } else { "s" });
    let sources: Vec<String> = config.sources.iter().map(ToString::to_string).collect();
    format!(
        "wrote {}: first-boot hook for the Proxmox automated installer (prepare-iso --on-first-boot), {} bytes of {}; {}, {}, {}, sources: {}",
        out.display(),
        thousands(size),
        thousands(HOOK_MAX),
        n(config.index.bundles.len(), "bundle"),
        n(config.index.hosts.len(), "host"),
        n(config.trusted_keys.len(), "trusted key"),
        sources.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_sizes() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(812_345), "812,345");
        assert_eq!(thousands(1_048_576), "1,048,576");
    }

    #[test]
    fn orders_sources_and_pins_https_only() {
        let flags = SourceFlags {
            paths: vec!["/srv/vgpu".into()],
            labels: vec!["VGPU".into()],
            urls: vec!["http://10.0.2.2:8000".into(), "https://h/f/".into()],
            cert_fingerprint: Some("ab".repeat(32)),
        };
        let s = flags.sources().unwrap();
        let shown: Vec<String> = s.iter().map(ToString::to_string).collect();
        assert_eq!(shown[0], "path /srv/vgpu");
        assert_eq!(shown[1], "label VGPU");
        assert_eq!(shown[2], "url http://10.0.2.2:8000/");
        assert!(
            shown[3].starts_with("url https://h/f/ (certificate AB:AB:"),
            "{}",
            shown[3]
        );
        let only_http = SourceFlags {
            urls: vec!["http://x/".into()],
            cert_fingerprint: Some("ab".repeat(32)),
            ..SourceFlags::default()
        };
        assert!(only_http.sources().is_err());
        assert!(SourceFlags::default().sources().is_err());
    }
}

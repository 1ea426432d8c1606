//! The hook's sources and trusted keys from the command line's
//! `--from-path`, `--from-label`, `--from-url`, `--cert-fingerprint` and
//! `--trusted-key` (shared by `vgpu-bake hook` and `vgpu-bake fleet`).

use std::path::PathBuf;

use super::config::{ConfigError, Source, normalize_fingerprint};

/// The sources in the order the hook tries them: paths, labels, URLs (each
/// kind in the order given). A URL without a trailing `/` gets one. The
/// `--cert-fingerprint` applies to every https URL and needs at least one.
pub fn sources(
    paths: &[String],
    labels: &[String],
    urls: &[String],
    cert_fingerprint: Option<&str>,
) -> Result<Vec<Source>, ConfigError> {
    let fp = cert_fingerprint
        .map(|fp| {
            normalize_fingerprint(fp).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "--cert-fingerprint {fp:?} is not a SHA-256 fingerprint: give the 32 octets `openssl x509 -noout -fingerprint -sha256 -in CERT.pem` prints"
                ))
            })
        })
        .transpose()?;
    if fp.is_some() && !urls.iter().any(|u| u.starts_with("https://")) {
        return Err(ConfigError::Invalid(
            "--cert-fingerprint needs an https --from-url to apply to".to_owned(),
        ));
    }
    let mut out: Vec<Source> = paths
        .iter()
        .map(|p| Source::Path { path: p.clone() })
        .collect();
    out.extend(labels.iter().map(|l| Source::Label { label: l.clone() }));
    out.extend(urls.iter().map(|u| {
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
    Ok(out)
}

/// A `--trusted-key` file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Not a minisign public key, or unreadable.
    #[error(transparent)]
    Key(#[from] crate::sign::SignError),
    /// Read as a key but not as text.
    #[error("{}: cannot read the public key text: {cause}", path.display())]
    Text {
        /// The key file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
}

/// The text of each `--trusted-key` file (what the hook installs), each
/// first checked to be a minisign public key.
pub fn trusted_key_texts(paths: &[PathBuf]) -> Result<Vec<String>, KeyError> {
    paths
        .iter()
        .map(|p| {
            crate::sign::TrustedKey::load(p)?;
            std::fs::read_to_string(p).map_err(|cause| KeyError::Text {
                path: p.clone(),
                cause,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_kinds_and_applies_the_fingerprint_to_https() {
        let s = sources(
            &["/srv/vgpu".into()],
            &["VGPU".into()],
            &["http://a/x".into(), "https://b/".into()],
            Some(&"ab".repeat(32)),
        )
        .unwrap();
        assert_eq!(s.iter().map(Source::rank).collect::<Vec<_>>(), [0, 1, 2, 2]);
        assert_eq!(
            s[2],
            Source::Url {
                url: "http://a/x/".into(),
                cert_fingerprint: None
            }
        );
        let Source::Url {
            cert_fingerprint: Some(fp),
            ..
        } = &s[3]
        else {
            panic!("{s:?}")
        };
        assert!(fp.starts_with("AB:AB:"), "{fp}");
        let e = sources(&[], &[], &["http://a/".into()], Some(&"ab".repeat(32)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs an https --from-url"), "{e}");
        assert!(sources(&[], &[], &[], Some("AB")).is_err());
    }
}

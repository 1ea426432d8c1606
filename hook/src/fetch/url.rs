//! A base URL (`--from-url`): `wget` (pve-manager depends on it) fetches
//! `BASE<file>`. With a certificate fingerprint, `openssl s_client`
//! (pve-cluster depends on openssl) first fetches the server's certificate;
//! its SHA-256 must be the pinned one, and only then does wget download
//! with `--no-check-certificate` (the installer's hosts have no CA for a
//! private server).
//!
//! Integrity never rests on TLS: the bundle's sha256 pinned in the index is
//! checked before anything is written, so a wrong server or a tampered
//! download is refused either way. The fingerprint keeps the hook from
//! talking to any other server than the one meant.

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};
use vgpu_bake::rollout::config::normalize_fingerprint;
use vgpu_bake::rollout::index::IndexBundle;

use crate::command::{CommandError, Tool};

/// wget's own retries and timeouts keep it well inside this.
const WGET_DEADLINE: Duration = Duration::from_secs(600);
/// The TLS handshake's deadline.
const S_CLIENT_DEADLINE: Duration = Duration::from_secs(30);

/// Downloads `<base><file>` to `dest`.
pub fn get(
    base: &str,
    fingerprint: Option<&str>,
    bundle: &IndexBundle,
    dest: &Path,
    scratch: &Path,
) -> Result<(), String> {
    let url = format!("{base}{}", bundle.file);
    let mut args = vec!["-q", "--tries=3", "--timeout=20"];
    if let Some(pinned) = fingerprint {
        check_certificate(base, pinned, scratch)?;
        args.push("--no-check-certificate");
    }
    let dest_s = dest.display().to_string();
    args.extend(["-O", &dest_s, &url]);
    Tool::new("wget", &args)
        .run(WGET_DEADLINE, scratch)
        .map(|_| ())
        .map_err(|e| match e {
            CommandError::Failed { status, .. } => format!(
                "`wget` could not download {url}: {}",
                wget_reason(status.code())
            ),
            other => other.to_string(),
        })
}

/// wget's exit codes (`man wget`, EXIT STATUS).
fn wget_reason(code: Option<i32>) -> String {
    let why = match code {
        Some(3) => "file I/O error (is the disk full?)",
        Some(4) => "network failure (no route, no answer or connection refused)",
        Some(5) => "TLS certificate verification failure",
        Some(6) => "authentication failure",
        Some(7) => "protocol error",
        Some(8) => "the server answered with an error (not found?)",
        _ => "failed",
    };
    match code {
        Some(c) => format!("{why} (exit code {c})"),
        None => format!("{why} (killed by a signal)"),
    }
}

/// `host:port` for `-connect` and the host for SNI (`None` for an IP
/// address, which SNI cannot carry).
pub fn endpoint(url: &str) -> Option<(String, Option<String>)> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit('@').next()?;
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = port.unwrap_or("443");
    if host.is_empty() || port.parse::<u16>().is_err() {
        return None;
    }
    let is_ip = host.parse::<std::net::IpAddr>().is_ok();
    let connect = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Some((connect, (!is_ip).then(|| host.to_owned())))
}

/// The server's certificate must have the pinned SHA-256.
fn check_certificate(base: &str, pinned: &str, scratch: &Path) -> Result<(), String> {
    let (connect, sni) =
        endpoint(base).ok_or_else(|| format!("{base} has no host and port to connect to"))?;
    let mut args = vec!["s_client", "-connect", &connect];
    if let Some(name) = &sni {
        args.extend(["-servername", name]);
    }
    args.push("-showcerts");
    let out = Tool::new("openssl", &args)
        .run(S_CLIENT_DEADLINE, scratch)
        .map_err(|e| format!("cannot get the server's certificate: {e}"))?;
    let der = first_certificate(&out.stdout)
        .ok_or_else(|| format!("`openssl s_client -connect {connect}` printed no certificate"))?;
    let actual = fingerprint(&der);
    let pinned = normalize_fingerprint(pinned).unwrap_or_else(|| pinned.to_owned());
    if actual != pinned {
        return Err(format!(
            "the server's certificate at {connect} has SHA-256 fingerprint {actual}, not the pinned {pinned}: refused (another server, or its certificate was replaced: make the hook again with the new --cert-fingerprint)"
        ));
    }
    Ok(())
}

/// `AB:CD:...` of DER bytes, as `openssl x509 -fingerprint -sha256` prints.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The DER bytes of the first PEM certificate in `text` (the server's own:
/// s_client prints the chain leaf first).
pub fn first_certificate(text: &str) -> Option<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = text.find(BEGIN)? + BEGIN.len();
    let len = text[start..].find(END)?;
    base64_decode(&text[start..start + len])
}

/// Standard base64 (RFC 4648, `=` padding), whitespace ignored.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits, mut pad) = (0u32, 0u32, 0usize);
    for b in text.bytes().filter(|b| !b.is_ascii_whitespace()) {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                pad += 1;
                continue;
            }
            _ => return None,
        };
        if pad > 0 {
            return None; // data after padding
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (pad <= 2 && acc == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_base64() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVs\nbG8h").unwrap(), b"hello!");
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("a$==").is_none());
        assert!(base64_decode("aG=k").is_none());
    }

    #[test]
    fn finds_the_endpoint() {
        assert_eq!(
            endpoint("https://pve.example/fleet/"),
            Some(("pve.example:443".into(), Some("pve.example".into())))
        );
        assert_eq!(
            endpoint("https://10.0.2.100:8443/"),
            Some(("10.0.2.100:8443".into(), None))
        );
        assert_eq!(
            endpoint("https://[fd00::1]:8443/x/"),
            Some(("[fd00::1]:8443".into(), None))
        );
        assert_eq!(endpoint("http://x/"), None);
        assert_eq!(endpoint("https://x:notaport/"), None);
    }

    #[test]
    fn takes_the_first_certificate() {
        let text = "CONNECTED\n-----BEGIN CERTIFICATE-----\naGVs\nbG8=\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\neA==\n-----END CERTIFICATE-----\n";
        assert_eq!(first_certificate(text).unwrap(), b"hello");
        assert_eq!(
            fingerprint(b"hello"),
            "2C:F2:4D:BA:5F:B0:A3:0E:26:E8:3B:2A:C5:B9:E2:9E:1B:16:1E:5C:1F:A7:42:5E:73:04:33:62:93:8B:98:24"
        );
    }
}

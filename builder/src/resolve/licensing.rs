//! `[licensing]` validation.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::Serialize;
use vgpu_plan::plan::{LicensingMode, LicensingPlan, Mode, Sha256, licensing_paths as lp};

use super::files::profile_path;
use super::sources::LicensingSource;
use super::{Ctx, ResolveError};
use crate::profile::Profile;
use crate::registry::Release;
use crate::text::shown;

/// FastAPI-DLS hands out leases of at most 90 days.
const MAX_LEASE_DAYS: u32 = 90;
/// Where the baked token is in the payload.
pub const TOKEN_PAYLOAD: &str = "licensing/client_configuration_token.tok";
/// Where the baked FastAPI-DLS image archive is in the payload.
pub const IMAGE_PAYLOAD: &str = "licensing/fastapi-dls.oci.tar";
/// The container runtime FastAPI-DLS runs under: Debian's own podman
/// (daemonless, so the systemd unit runs the container itself; no
/// third-party repository). docker.io would need its daemon as well.
pub const RUNTIME_PACKAGE: &str = "podman";
/// `licensing.timezone` is at most this many characters.
const TIMEZONE_CHARS: usize = 64;

/// Resolved `[licensing]`: the plan's section with the files as sources.
pub type ResolvedLicensing = LicensingPlan<LicensingSource>;

pub(super) fn licensing_plan(
    profile: &Profile,
    release: Option<&Release>,
    cx: &mut Ctx,
) -> Result<ResolvedLicensing, ResolveError> {
    let l = &profile.licensing;
    let mode = l.mode;
    let word = match mode {
        LicensingMode::FastapiDls => "fastapi-dls",
        LicensingMode::External => "external",
        LicensingMode::None => "none",
    };
    let refuse = |key: &str, cx: &Ctx| {
        cx.err(format!(
            "`licensing.{key}` is set but `licensing.mode` = \"{word}\": it belongs to `licensing.mode` = \"{}\"; remove `licensing.{key}` or change the mode",
            if key == "token" { "external" } else { "fastapi-dls" }
        ))
    };
    if mode == LicensingMode::None {
        for (key, set) in [
            ("server", l.server.is_some()),
            ("port", l.port.is_some()),
            ("lease-days", l.lease_days.is_some()),
            ("token", l.token.is_some()),
            ("image", l.image.is_some()),
            ("image-sha256", l.image_sha256.is_some()),
            ("timezone", l.timezone.is_some()),
        ] {
            if set {
                return Err(cx.err(format!(
                    "`licensing.{key}` is set but `licensing.mode` = \"none\": set `licensing.mode` to \"external\" or \"fastapi-dls\", or remove `licensing.{key}`"
                )));
            }
        }
        return Ok(LicensingPlan {
            mode,
            server: None,
            port: None,
            lease_days: None,
            timezone: None,
            token: None,
            image: None,
            applied: false,
        });
    }
    if profile.vgpu.mode == Mode::Passthrough {
        return Err(cx.err(format!(
            "`licensing.mode` = \"{word}\" but `vgpu.mode` = \"passthrough\": licensing is for vGPU guests and a passthrough host has none (a passed-through card is licensed inside its VM); remove `[licensing]` or choose another `vgpu.mode`"
        )));
    }
    if let Some(server) = &l.server {
        check_server(server, cx)?;
    } else if mode == LicensingMode::External {
        return Err(cx.err(
            "missing `licensing.server`: `licensing.mode` = \"external\" needs the DLS server's host name or IP address",
        ));
    }
    if l.port == Some(0) {
        return Err(cx.err("`licensing.port` = 0 is not a port: use 1 to 65535"));
    }
    let lease_days = l.lease_days.unwrap_or(MAX_LEASE_DAYS);
    if !(1..=MAX_LEASE_DAYS).contains(&lease_days) {
        return Err(cx.err(format!(
            "`licensing.lease-days` = {lease_days} is out of range: use 1 to {MAX_LEASE_DAYS} (licences are renewed before they expire)"
        )));
    }
    let port = l.port.unwrap_or(match mode {
        LicensingMode::FastapiDls => 8443,
        _ => 443,
    });
    let (mut token, mut image, mut timezone) = (None, None, None);
    if mode == LicensingMode::External {
        for (key, set) in [
            ("image", l.image.is_some()),
            ("image-sha256", l.image_sha256.is_some()),
            ("timezone", l.timezone.is_some()),
        ] {
            if set {
                return Err(refuse(key, cx));
            }
        }
        let Some(file) = &l.token else {
            return Err(cx.err(
                "missing `licensing.token`: `licensing.mode` = \"external\" needs the client configuration token file (.tok) your DLS issued (DLS web UI: Service Instance > Generate client config token); put it next to the profile and give its relative path",
            ));
        };
        token = Some(LicensingSource {
            path: TOKEN_PAYLOAD.into(),
            source: profile_path(cx, "licensing.token", file)?,
            sha256: None,
        });
    } else {
        if l.token.is_some() {
            return Err(refuse("token", cx));
        }
        let Some(file) = &l.image else {
            return Err(cx.err(
                "missing `licensing.image`: `licensing.mode` = \"fastapi-dls\" needs the FastAPI-DLS container image as an OCI archive (e.g. `podman pull docker.io/collinwebdesigns/fastapi-dls:latest && podman save --format oci-archive -o fastapi-dls.oci.tar docker.io/collinwebdesigns/fastapi-dls:latest`), next to the profile, and its `licensing.image-sha256`",
            ));
        };
        let Some(pin) = &l.image_sha256 else {
            return Err(cx.err(
                "missing `licensing.image-sha256`: the image archive is pinned so a swapped file is refused at bake; run `sha256sum` on it and paste the hash",
            ));
        };
        let sha256 = Sha256::parse_any_case(pin).map_err(|_| {
            cx.err(format!(
                "`licensing.image-sha256` = {} is not 64 hex digits: run `sha256sum` on the image archive and paste the hash",
                shown(pin)
            ))
        })?;
        image = Some(LicensingSource {
            path: IMAGE_PAYLOAD.into(),
            source: profile_path(cx, "licensing.image", file)?,
            sha256: Some(sha256),
        });
        let tz = l.timezone.clone().unwrap_or_else(|| "UTC".into());
        check_timezone(&tz, cx)?;
        timezone = Some(tz);
        let newer = release.and_then(Release::major).is_some_and(|m| m >= 18);
        cx.warnings.push(format!(
            "FastAPI-DLS: guests with vGPU 18.x and later guest drivers take no licence from it without patched guest drivers (gridd-unlock-patcher){}; consider an external DLS server for them",
            if newer { ", and this profile's driver release is 18.x or later" } else { "" }
        ));
    }
    Ok(LicensingPlan {
        mode,
        server: l.server.clone(),
        port: Some(port),
        lease_days: Some(lease_days),
        timezone,
        token,
        image,
        applied: true,
    })
}

/// `licensing.timezone`: a tz database name such as `UTC` or
/// `Europe/Berlin` (letters, digits, `/`, `_`, `+`, `-`); it goes into the
/// unit's `TZ=` as it is.
fn check_timezone(tz: &str, cx: &Ctx) -> Result<(), ResolveError> {
    let ok = !tz.is_empty()
        && tz.chars().count() <= TIMEZONE_CHARS
        && !tz.starts_with(['/', '-'])
        && !tz.ends_with('/')
        && !tz.contains("..")
        && tz
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(cx.err(format!(
            "`licensing.timezone` = {} is not a time zone name: use a tz database name like \"UTC\" or \"Europe/Berlin\"",
            shown(tz)
        )))
    }
}

/// What the `licensing` step touches on the host: `vgpu-bake plan` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Footprint {
    /// Files and directories the step writes or makes (absolute paths).
    pub files: Vec<String>,
    /// systemd units it writes and enables.
    pub units: Vec<String>,
    /// Ports involved: `host:port` the step checks or serves on.
    pub ports: Vec<String>,
    /// Packages the host gets for it.
    pub packages: Vec<String>,
}

/// The host footprint of a licensing plan (empty for `none`).
pub fn footprint<D>(l: &LicensingPlan<D>) -> Footprint {
    let abs = |p: &str| format!("/{p}");
    let port = l.port.unwrap_or(0);
    match l.mode {
        LicensingMode::None => Footprint {
            files: vec![],
            units: vec![],
            ports: vec![],
            packages: vec![],
        },
        LicensingMode::External => Footprint {
            files: vec![abs(lp::TOKEN), abs(lp::GUEST_LINUX), abs(lp::GUEST_WINDOWS)],
            units: vec![],
            ports: vec![format!(
                "{}:{port} (the DLS, checked from the host)",
                l.server.as_deref().unwrap_or("?")
            )],
            packages: vec![],
        },
        LicensingMode::FastapiDls => Footprint {
            files: vec![
                abs(lp::UNIT),
                format!("{}/webserver.key", abs(lp::CERT_DIR)),
                format!("{}/webserver.crt", abs(lp::CERT_DIR)),
                format!("{}/instance.private.pem", abs(lp::CERT_DIR)),
                format!("{}/instance.public.pem", abs(lp::CERT_DIR)),
                format!("{}/ (database)", abs(lp::DB_DIR)),
                abs(lp::TOKEN),
                abs(lp::GUEST_LINUX),
                abs(lp::GUEST_WINDOWS),
            ],
            units: vec![lp::UNIT_NAME.into()],
            ports: vec![format!(
                "0.0.0.0:{port} -> container 443 (FastAPI-DLS, HTTPS; guests use {}:{port})",
                l.server.as_deref().unwrap_or("this host's address")
            )],
            packages: vec![RUNTIME_PACKAGE.into()],
        },
    }
}

/// `licensing.server`: a DNS host name, an IPv4 address or an IPv6
/// address (bare or in brackets), nothing else: no scheme, port, path or
/// anything a command line could take for an option.
fn check_server(server: &str, cx: &Ctx) -> Result<(), ResolveError> {
    const KEY: &str = "licensing.server";
    let advice = "give the DLS server's host name or IP address only (no scheme, path or port: use `licensing.port` for the port)";
    if server.is_empty() {
        return Err(cx.err(format!("`{KEY}` is empty: {advice}")));
    }
    if server.starts_with('-') {
        return Err(cx.err(format!(
            "`{KEY}` = {} starts with `-` like a command-line option: {advice}",
            shown(server)
        )));
    }
    if let Some((scheme, _)) = server.split_once(':')
        && !scheme.is_empty()
        && scheme.chars().all(|c| c.is_ascii_alphabetic())
        && server.parse::<Ipv6Addr>().is_err()
        && {
            let rest = &server[scheme.len() + 1..];
            rest.is_empty() || !rest.chars().all(|c| c.is_ascii_digit())
        }
    {
        return Err(cx.err(format!(
            "`{KEY}` = {} has a URL scheme (`{}:`): {advice}",
            shown(server),
            shown(scheme).trim_matches('"')
        )));
    }
    if let Some((host, port)) = server.rsplit_once(':')
        && !port.is_empty()
        && port.chars().all(|c| c.is_ascii_digit())
        && !host.contains(':')
    {
        return Err(cx.err(format!(
            "`{KEY}` = {} holds a port: set `licensing.server` = {} and `licensing.port` = {port}",
            shown(server),
            shown(host)
        )));
    }
    let bare = server
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(server);
    let ok = bare.parse::<Ipv6Addr>().is_ok() || (bare == server && is_host_name(server));
    if !ok {
        return Err(cx.err(format!(
            "`{KEY}` = {} is not a host name or IP address: {advice}",
            shown(server)
        )));
    }
    Ok(())
}

/// A DNS host name (letters, digits, `-` in dot-separated labels of 1 to
/// 63 characters, 253 in all) or a dotted IPv4 address.
fn is_host_name(s: &str) -> bool {
    if s.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    let s = s.strip_suffix('.').unwrap_or(s);
    // All-numeric dotted names are mistyped IPv4 addresses.
    let numeric = s.chars().all(|c| c.is_ascii_digit() || c == '.');
    !numeric
        && !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn servers_are_host_names_or_addresses() {
        let cx = Ctx {
            file: Path::new("p.toml"),
            warnings: Vec::new(),
        };
        for ok in [
            "dls.example.lan",
            "dls",
            "10.0.0.5",
            "fd00::5",
            "[fd00::5]",
            "dead::beef",
            "::1",
            "a-b.c.",
        ] {
            assert!(check_server(ok, &cx).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "gopher:",
            "https://dls",
            "--insecure",
            "-x",
            "dls.lan:443",
            "1.2.3",
            "dls_x",
            "a..b",
            "-a.b",
            "a-.b",
            "[dls.lan]",
            "dls lan",
            &"a".repeat(64),
        ] {
            assert!(check_server(bad, &cx).is_err(), "{bad}");
        }
    }
}

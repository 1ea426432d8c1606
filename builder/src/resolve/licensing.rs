//! `[licensing]` validation.

use std::net::{Ipv4Addr, Ipv6Addr};

use vgpu_plan::plan::{LicensingMode, LicensingPlan, Mode};

use super::{Ctx, ResolveError};
use crate::profile::Profile;
use crate::registry::Release;
use crate::text::shown;

/// FastAPI-DLS hands out leases of at most 90 days.
const MAX_LEASE_DAYS: u32 = 90;

pub(super) fn licensing_plan(
    profile: &Profile,
    release: Option<&Release>,
    cx: &mut Ctx,
) -> Result<LicensingPlan, ResolveError> {
    let l = &profile.licensing;
    let mode = l.mode;
    if mode == LicensingMode::None {
        for (key, set) in [
            ("server", l.server.is_some()),
            ("port", l.port.is_some()),
            ("lease-days", l.lease_days.is_some()),
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
            applied: false,
        });
    }
    if profile.vgpu.mode == Mode::Passthrough {
        let word = match mode {
            LicensingMode::FastapiDls => "fastapi-dls",
            _ => "external",
        };
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
    if mode == LicensingMode::FastapiDls
        && release.and_then(Release::major).is_some_and(|m| m >= 18)
    {
        cx.warnings.push(
            "FastAPI-DLS does not license vGPU 18.x and newer guests without extra patches (gridd-unlock); consider an external DLS server".to_string(),
        );
    }
    Ok(LicensingPlan {
        mode,
        server: l.server.clone(),
        port: Some(port),
        lease_days: Some(lease_days),
        applied: false,
    })
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

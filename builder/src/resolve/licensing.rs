//! `[licensing]` validation.

use vgpu_plan::plan::{LicensingMode, LicensingPlan};

use super::{Ctx, ResolveError};
use crate::profile::Profile;
use crate::registry::Release;

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
    if let Some(server) = &l.server {
        let ok = !server.is_empty()
            && server.len() <= 253
            && server
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
        if !ok {
            return Err(cx.err(format!(
                "`licensing.server` = {server:?} is not a host name or IP address (no scheme, path or port: use `licensing.port` for the port)"
            )));
        }
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

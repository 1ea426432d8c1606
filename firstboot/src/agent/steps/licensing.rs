//! Step licensing (`[licensing]`): guests get what they need to take a
//! vGPU licence.
//!
//! `external`: the baked client configuration token is placed at
//! [`lp::TOKEN`] (0600), the DLS must answer at `server:port`, and the guest
//! scripts embed the token. `fastapi-dls`: FastAPI-DLS runs on this host
//! ([`super::fastapi_dls`]); once `/-/health` answers, its client token is
//! fetched to [`lp::TOKEN`] and the guest scripts fetch their own from
//! `/-/client-token`. Both write [`lp::GUEST_LINUX`] (0700) and
//! [`lp::GUEST_WINDOWS`] (0600) under [`lp::DIR`] (0700), which `finish`
//! keeps. Every part is skipped when already in place, so the step can run
//! again after a power cut anywhere.

use super::dls_check::{dls_answers, host_address, local_get, private_dir};
use super::fastapi_dls::{serve, thumbprint};
use super::guest_scripts::{Token, linux, windows};
use super::payload_paths::{RECOPY, payload_rel};
use crate::agent::host::{Host, StepError, StepOutcome};
use crate::agent::shown::shown;
use vgpu_plan::layout::absolute;
use vgpu_plan::plan::{LicensingMode, licensing_paths as lp};

/// A token is at most this large (the builder's limit).
const TOKEN_LIMIT: u64 = 64 << 10;

/// Whether `text` is token text: base64url/JWT characters on one line (the
/// scripts embed it between quotes).
pub(super) fn is_token_text(text: &str) -> bool {
    let body = text.trim_end();
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=._-".contains(&b))
}

/// Writes `rel` with `mode` unless it holds exactly `bytes` already.
fn put(host: &mut Host, rel: &str, bytes: &[u8], mode: u32, what: &str) -> Result<(), StepError> {
    let same = host.fs()?.read_bounded(rel, TOKEN_LIMIT * 4).ok().flatten();
    let mode_ok = host.fs()?.metadata(rel).ok().flatten().is_some_and(|m| {
        std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777 == mode
    });
    if same.as_deref() == Some(bytes) && mode_ok {
        return Ok(());
    }
    host.write_atomic(rel, bytes, mode)?;
    host.note(format!("{}: {what}", absolute(rel)));
    Ok(())
}

fn guest_scripts(host: &mut Host, token: &Token, dls: &str) -> Result<(), StepError> {
    private_dir(host, lp::GUEST_DIR)?;
    put(
        host,
        lp::GUEST_LINUX,
        linux(token, dls).as_bytes(),
        0o700,
        "Linux guest licensing script",
    )?;
    put(
        host,
        lp::GUEST_WINDOWS,
        windows(token, dls).as_bytes(),
        0o600,
        "Windows guest licensing script",
    )
}

/// The baked token, read from the payload and checked against the plan.
fn baked_token(host: &Host) -> Result<String, StepError> {
    let file = host.plan.licensing.token.as_ref().ok_or_else(|| {
        StepError::new("the plan's `licensing.mode` is external but it carries no token: bake the bundle again")
    })?;
    let rel = payload_rel(file);
    let bytes = host
        .fs()?
        .read_bounded(&rel, TOKEN_LIMIT)?
        .ok_or_else(|| StepError::new(format!("{} is missing: {RECOPY}", shown(&rel))))?;
    if crate::sha256::sha256_hex(&bytes) != file.sha256.as_str() {
        return Err(StepError::new(format!(
            "{} is not the token that was baked (sha256 differs): {RECOPY}",
            shown(&rel)
        )));
    }
    String::from_utf8(bytes)
        .ok()
        .filter(|t| is_token_text(t))
        .ok_or_else(|| StepError::new(format!("{} is not token text: {RECOPY}", shown(&rel))))
}

/// Applies the plan's licensing.
pub fn run(host: &mut Host) -> Result<StepOutcome, StepError> {
    let l = host.plan.licensing.clone();
    let port = l.port.unwrap_or(443);
    match l.mode {
        LicensingMode::None => {
            host.note("licensing.mode is none: nothing to do");
        }
        LicensingMode::External => {
            let server = l.server.clone().ok_or_else(|| {
                StepError::new(
                    "the plan's external licensing names no server: bake the bundle again",
                )
            })?;
            let token = baked_token(host)?;
            private_dir(host, lp::DIR)?;
            put(
                host,
                lp::TOKEN,
                token.as_bytes(),
                0o600,
                "the DLS client configuration token",
            )?;
            dls_answers(host, &server, port)?;
            let dls = format!("the DLS at {server}:{port}");
            guest_scripts(host, &Token::Embedded(&token), &dls)?;
        }
        LicensingMode::FastapiDls => {
            let image = l.image.clone().ok_or_else(|| {
                StepError::new(
                    "the plan's fastapi-dls licensing carries no image: bake the bundle again",
                )
            })?;
            let port = l.port.unwrap_or(8443);
            let address = host_address(host)?;
            private_dir(host, lp::DIR)?;
            serve(host, &image, &address)?;
            let token = local_get(host, port, "/-/client-token")?;
            if !is_token_text(&token) {
                return Err(StepError::new(format!(
                    "FastAPI-DLS answered /-/client-token with no token ({} bytes): check `journalctl -u {}`, then `vgpu-firstboot retry licensing`",
                    token.len(),
                    lp::UNIT_NAME
                )));
            }
            put(
                host,
                lp::TOKEN,
                token.as_bytes(),
                0o600,
                "a client configuration token from FastAPI-DLS",
            )?;
            let ca_pem = host
                .read_opt(&format!("{}/webserver.crt", lp::CERT_DIR))?
                .unwrap_or_default();
            let thumb = thumbprint(host)?;
            let url = format!(
                "https://{}/-/client-token",
                super::dls_check::connect_arg(&address, port)
            );
            let dls = format!("FastAPI-DLS on this host ({url})");
            guest_scripts(
                host,
                &Token::Fetch {
                    url: &url,
                    ca_pem: &ca_pem,
                    thumbprint: &thumb,
                },
                &dls,
            )?;
        }
    }
    Ok(StepOutcome::Done)
}

/// Dry run of [`run`].
pub fn preview(host: &Host) -> Result<Vec<String>, StepError> {
    let l = &host.plan.licensing;
    let scripts = format!(
        "would write the guest scripts {} and {}",
        absolute(lp::GUEST_LINUX),
        absolute(lp::GUEST_WINDOWS)
    );
    Ok(match l.mode {
        LicensingMode::None => vec!["nothing to do: licensing.mode is none".into()],
        LicensingMode::External => vec![
            format!(
                "would place the baked client token at {} (0600)",
                absolute(lp::TOKEN)
            ),
            format!(
                "would run openssl s_client -connect {}: the DLS answers",
                super::dls_check::connect_arg(
                    l.server.as_deref().unwrap_or("?"),
                    l.port.unwrap_or(443)
                )
            ),
            scripts,
        ],
        LicensingMode::FastapiDls => {
            let address = host_address(host).unwrap_or_else(|e| format!("(unknown: {})", e.reason));
            let port = l.port.unwrap_or(8443);
            vec![
                "would run podman load on the baked image unless it is loaded".into(),
                format!(
                    "would make {}/webserver.key, webserver.crt, instance.private.pem, instance.public.pem with openssl unless present",
                    absolute(lp::CERT_DIR)
                ),
                format!(
                    "would write {} and run systemctl enable --now {} (port {port}, DLS_URL={address})",
                    absolute(lp::UNIT),
                    lp::UNIT_NAME
                ),
                format!("would wait for https://127.0.0.1:{port}/-/health"),
                format!(
                    "would fetch a client token to {} (0600)",
                    absolute(lp::TOKEN)
                ),
                scripts,
            ]
        }
    })
}

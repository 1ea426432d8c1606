//! Checks the licensing step and post-check share: the DLS answers (TLS
//! handshake with `openssl s_client`, which a Proxmox VE host has through
//! pve-cluster), FastAPI-DLS's `/-/health` answers (`wget`, which
//! pve-manager depends on, verifying the certificate the step made), and
//! the address guests reach this host at.

use std::time::{Duration, Instant};

use crate::agent::host::{Host, StepError};
use crate::runner::format_failure;
use vgpu_plan::plan::{LicensingMode, licensing_paths as lp};

/// One TLS handshake or HTTP request may take this long.
const ONE_TRY: Duration = Duration::from_secs(10);
/// How long the step waits for FastAPI-DLS's health check by default
/// (podman starts the container, uvicorn loads); `VGPU_FIRSTBOOT_DLS_WAIT`
/// (seconds) changes it.
const HEALTH_WAIT: Duration = Duration::from_secs(120);
/// Between two health requests.
const HEALTH_PAUSE: Duration = Duration::from_secs(2);

/// `host:port` for `openssl s_client -connect` (an IPv6 address in brackets).
pub(super) fn connect_arg(server: &str, port: u16) -> String {
    if server.contains(':') && !server.starts_with('[') {
        format!("[{server}]:{port}")
    } else {
        format!("{server}:{port}")
    }
}

/// Fails unless a TLS server answers at `server:port`.
pub(super) fn dls_answers(host: &mut Host, server: &str, port: u16) -> Result<(), StepError> {
    let connect = connect_arg(server, port);
    let name = server.trim_start_matches('[').trim_end_matches(']');
    let spec = host
        .command(
            "openssl",
            &[
                "s_client",
                "-connect",
                &connect,
                "-servername",
                name,
                "-brief",
            ],
            "check the DLS answers (TLS handshake)",
        )
        .timeout(ONE_TRY);
    let out = host.run_status(&spec)?;
    if out.success() {
        host.note(format!("the DLS answers at {connect}"));
        return Ok(());
    }
    Err(StepError {
        reason: format!(
            "{}; the DLS at {connect} does not answer: check `licensing.server` and `.port`, that the DLS runs and this host reaches it (firewall), then `vgpu-firstboot retry licensing`",
            format_failure(&spec, &out)
        ),
        exit_code: out.exit_code,
        stderr_tail: out.stderr_tail,
    })
}

/// `https://127.0.0.1:PORT/PATH`, fetched with `wget` trusting only the
/// certificate the step made; the body on success.
pub(super) fn local_get(host: &mut Host, port: u16, path: &str) -> Result<String, StepError> {
    let ca = host.path(&format!("{}/webserver.crt", lp::CERT_DIR))?;
    let url = format!("https://127.0.0.1:{port}{path}");
    let ca_arg = format!("--ca-certificate={}", ca.display());
    let spec = host
        .command(
            "wget",
            &["-q", "-O", "-", "--timeout=5", "--tries=1", &ca_arg, &url],
            "ask the local FastAPI-DLS",
        )
        .timeout(ONE_TRY);
    let out = host.run_status(&spec)?;
    if out.success() {
        Ok(out.stdout_tail)
    } else {
        Err(StepError {
            reason: format_failure(&spec, &out),
            exit_code: out.exit_code,
            stderr_tail: out.stderr_tail,
        })
    }
}

/// Directory `rel` (and its missing parents) with mode 0700, also when it
/// was there already: it holds secrets.
pub(super) fn private_dir(host: &mut Host, rel: &str) -> Result<(), StepError> {
    host.create_dir_all(rel, 0o700)?;
    host.fs()?.set_mode(rel, 0o700)?;
    Ok(())
}

/// How long to wait for the health check.
fn health_wait() -> Duration {
    std::env::var("VGPU_FIRSTBOOT_DLS_WAIT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(HEALTH_WAIT, Duration::from_secs)
}

/// Asks `/-/health` until it answers or the wait is over.
pub(super) fn wait_healthy(host: &mut Host, port: u16) -> Result<(), StepError> {
    let deadline = Instant::now() + health_wait();
    loop {
        match local_get(host, port, "/-/health") {
            Ok(_) => {
                host.note(format!(
                    "FastAPI-DLS answers https://127.0.0.1:{port}/-/health"
                ));
                return Ok(());
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(StepError {
                    reason: format!(
                        "{}; FastAPI-DLS did not answer /-/health in time: check `systemctl status {}` and `journalctl -u {}`, then `vgpu-firstboot retry licensing`",
                        e.reason,
                        lp::UNIT_NAME,
                        lp::UNIT_NAME
                    ),
                    ..e
                });
            }
            Err(_) => std::thread::sleep(HEALTH_PAUSE),
        }
    }
}

/// The address guests reach this host at: the plan's `licensing.server`,
/// else the non-loopback address `/etc/hosts` gives this host's name (the
/// Proxmox VE installer writes that line, and the cluster relies on it).
pub(super) fn host_address(host: &Host) -> Result<String, StepError> {
    if let Some(s) = &host.plan.licensing.server {
        return Ok(s.clone());
    }
    let name = host.read_opt("etc/hostname")?.unwrap_or_default();
    let hosts = host.read_opt("etc/hosts")?.unwrap_or_default();
    address_of(&hosts, name.trim()).ok_or_else(|| {
        StepError::new(format!(
            "cannot tell the address guests reach this host at: /etc/hosts has no non-loopback address for the host name {:?} (/etc/hostname); add one, or set `licensing.server` in the profile and bake again",
            name.trim()
        ))
    })
}

/// Whether `s` looks like an IPv4 address (four dot-separated decimal
/// parts) or an IPv6 one (hex digits, `:` and `.`, at least two `:`). A
/// light check instead of `std::net`'s parser, which costs the agent's
/// size budget; the addresses come from `/etc/hosts` or a checked plan.
pub(super) fn is_ip(s: &str) -> bool {
    let v4 = s.split('.').count() == 4
        && s.split('.')
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
    let v6 = s.matches(':').count() >= 2
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    v4 || v6
}

/// The first non-loopback address `hosts` lists for `name` (or its short
/// form).
pub fn address_of(hosts: &str, name: &str) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    let short = name.split('.').next().unwrap_or(name);
    hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let addr = words.next()?;
        let local = addr.starts_with("127.") || matches!(addr, "::1" | "::" | "0.0.0.0");
        if !is_ip(addr) || local {
            return None;
        }
        words
            .any(|w| w == name || w == short)
            .then(|| addr.to_owned())
    })
}

/// The post-check's licensing part: the server answers again (the DLS's
/// TLS handshake, or FastAPI-DLS's `/-/health`).
pub(super) fn recheck(host: &mut Host) -> Result<(), StepError> {
    let l = host.plan.licensing.clone();
    match l.mode {
        LicensingMode::None => Ok(()),
        LicensingMode::External => dls_answers(
            host,
            l.server.as_deref().unwrap_or_default(),
            l.port.unwrap_or(443),
        ),
        LicensingMode::FastapiDls => {
            let port = l.port.unwrap_or(8443);
            local_get(host, port, "/-/health").map_err(|e| StepError {
                reason: format!(
                    "{}; FastAPI-DLS does not answer /-/health: check `systemctl status {}`",
                    e.reason,
                    lp::UNIT_NAME
                ),
                ..e
            })?;
            host.note("FastAPI-DLS answers /-/health");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_line_of_the_host_name_gives_the_address() {
        let hosts = "127.0.0.1 localhost\n127.0.1.1 pve1.lan pve1\n# 10.0.0.1 pve1\n192.168.1.20 pve1.example.lan pve1\n";
        assert_eq!(address_of(hosts, "pve1").as_deref(), Some("192.168.1.20"));
        assert_eq!(
            address_of(hosts, "pve1.example.lan").as_deref(),
            Some("192.168.1.20")
        );
        assert_eq!(address_of(hosts, "other"), None);
        assert_eq!(address_of(hosts, ""), None);
        assert_eq!(
            address_of("fd00::5 pve1\n", "pve1").as_deref(),
            Some("fd00::5")
        );
        assert_eq!(address_of("::1 pve1\nbad pve1\n", "pve1"), None);
        assert!(is_ip("10.0.0.1") && is_ip("fd00::5") && is_ip("::ffff:1.2.3.4"));
        assert!(!is_ip("pve1.lan") && !is_ip("1.2.3") && !is_ip("dead:beef"));
    }

    #[test]
    fn ipv6_servers_are_bracketed_for_connect() {
        assert_eq!(connect_arg("fd00::5", 443), "[fd00::5]:443");
        assert_eq!(connect_arg("[fd00::5]", 443), "[fd00::5]:443");
        assert_eq!(connect_arg("dls.lan", 8443), "dls.lan:8443");
    }
}

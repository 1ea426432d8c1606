//! FastAPI-DLS on this host (`licensing.mode = "fastapi-dls"`): the baked
//! OCI image loaded into Debian's podman, the TLS key and certificate and
//! the instance key pair made here with `openssl` (never baked), a systemd
//! unit that runs the container, and its health check.
//!
//! Differences from the seed (§10): Debian's podman, not Docker CE from
//! Docker's repository; the image comes from the bundle (sha256-pinned at
//! bake, checked by verify-payload), so the host needs no registry; a
//! systemd unit, not compose; the guest scripts trust only this host's
//! certificate.

use super::commands::run_or;
use super::dls_check::{is_ip, private_dir, wait_healthy};
use super::openssl_files::{make_files, tmp_of};
use super::payload_paths::payload_rel;
use super::systemd_units::enable_now;
use crate::agent::host::{Host, StepError};
use crate::agent::journal::Change;
use crate::edits::{owned_header, write_if_changed};
use vgpu_plan::layout::absolute;
use vgpu_plan::plan::{PayloadFile, licensing_paths as lp};

/// Debian's podman.
pub(super) const PODMAN: &str = "/usr/bin/podman";

/// The files of the certificate directory the container reads.
pub(super) const WEB_KEY: &str = "webserver.key";
pub(super) const WEB_CRT: &str = "webserver.crt";
const INSTANCE_KEY: &str = "instance.private.pem";
const INSTANCE_PUB: &str = "instance.public.pem";

fn cert(name: &str) -> String {
    format!("{}/{name}", lp::CERT_DIR)
}

/// The name the loaded image is tagged with: it changes with the archive.
pub(super) fn image_tag(image: &PayloadFile) -> String {
    format!(
        "localhost/vgpu-bake/fastapi-dls:{}",
        &image.sha256.as_str()[..12]
    )
}

/// What FastAPI-DLS is started with.
pub(super) struct Settings<'a> {
    /// The image tag ([`image_tag`]).
    pub image: &'a str,
    /// Host port, mapped to the container's 443.
    pub port: u16,
    /// The address guests reach this host at (`DLS_URL`).
    pub address: &'a str,
    /// `LEASE_EXPIRE_DAYS`.
    pub lease_days: u32,
    /// `TZ`.
    pub timezone: &'a str,
}

/// The container's command line, as the unit's `ExecStart=` runs it.
pub(super) fn exec_start(s: &Settings) -> String {
    let cert_dir = absolute(lp::CERT_DIR);
    let db_dir = absolute(lp::DB_DIR);
    let (image, port, address, lease, tz) = (s.image, s.port, s.address, s.lease_days, s.timezone);
    format!(
        "{PODMAN} run --rm --replace --name {container} -p {port}:443 \
-v {cert_dir}:/app/cert:ro -v {db_dir}:/app/database \
-e TZ={tz} -e DLS_URL={address} -e DLS_PORT={port} -e LEASE_EXPIRE_DAYS={lease} \
-e DATABASE=sqlite:////app/database/db.sqlite -e DEBUG=false \
{image} uvicorn main:app --host 0.0.0.0 --port 443 \
--ssl-keyfile /app/cert/{WEB_KEY} --ssl-certfile /app/cert/{WEB_CRT}",
        container = lp::CONTAINER,
    )
}

/// The unit file.
pub(super) fn unit_text(s: &Settings) -> String {
    format!(
        "{}[Unit]
Description=FastAPI-DLS licence server for vGPU guests (vgpu-bake)
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart={}
ExecStop={PODMAN} stop --ignore --time 10 {}
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
",
        owned_header("FastAPI-DLS in podman, from the image the bundle carried"),
        exec_start(s),
        lp::CONTAINER
    )
}

/// Loads the image unless podman has it under [`image_tag`] already.
fn load_image(host: &mut Host, image: &PayloadFile) -> Result<String, StepError> {
    let tag = image_tag(image);
    let exists = host.command(PODMAN, &["image", "exists", &tag], "is the image loaded?");
    if host.run_status(&exists)?.success() {
        host.note(format!("podman has {tag} already"));
        return Ok(tag);
    }
    let archive = host.path(&payload_rel(image))?;
    let archive = archive.to_string_lossy();
    host.record(Change::ContainerImage(tag.clone()))?;
    let load = host.command(
        PODMAN,
        &["load", "-i", &archive],
        "load the FastAPI-DLS image the bundle carried (no registry needed)",
    );
    let out = run_or(
        host,
        load,
        "check that podman is installed (apt-install installs it) and the archive is an OCI image",
    )?;
    let loaded = loaded_ref(&out.stdout_tail).ok_or_else(|| {
        StepError::new(format!(
            "`podman load` did not say which image it loaded (output: {:?}); retry, or load {archive} by hand and check it",
            out.stdout_tail.trim()
        ))
    })?;
    let spec = host.command(
        PODMAN,
        &["tag", &loaded, &tag],
        "name the image for the unit",
    );
    host.run(spec)?;
    host.note(format!("loaded the FastAPI-DLS image as {tag}"));
    Ok(tag)
}

/// The first reference in `podman load`'s `Loaded image: REF` (or
/// `Loaded image(s): REF,REF`) line.
pub(super) fn loaded_ref(stdout: &str) -> Option<String> {
    stdout.lines().find_map(|l| {
        let rest = l
            .strip_prefix("Loaded image(s): ")
            .or_else(|| l.strip_prefix("Loaded image: "))?;
        let first = rest.split(',').next()?.trim();
        (!first.is_empty() && !first.starts_with('-')).then(|| first.to_owned())
    })
}

/// The TLS key and certificate (for `address` and 127.0.0.1) and the
/// instance key pair, each made once.
fn ensure_keys(host: &mut Host, address: &str) -> Result<(), StepError> {
    let (key, crt) = (cert(WEB_KEY), cert(WEB_CRT));
    if !(host.exists(&key) && host.exists(&crt)) {
        let bare = address.trim_start_matches('[').trim_end_matches(']');
        let kind = if is_ip(bare) { "IP" } else { "DNS" };
        let san = format!("subjectAltName={kind}:{bare},IP:127.0.0.1");
        let subj = format!("/CN={bare}");
        let (_, k) = tmp_of(host, &key)?;
        let (_, c) = tmp_of(host, &crt)?;
        make_files(
            host,
            &[(&key, 0o600), (&crt, 0o644)],
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", &subj,
                "-addext", &san, "-keyout", &k, "-out", &c,
            ],
            "make FastAPI-DLS's TLS key and certificate on this host (never baked)",
        )?;
        host.note(format!("made {} and {}", absolute(&key), absolute(&crt)));
    }
    let (private, public) = (cert(INSTANCE_KEY), cert(INSTANCE_PUB));
    if !host.exists(&private) {
        let (_, p) = tmp_of(host, &private)?;
        make_files(
            host,
            &[(&private, 0o600)],
            &["genrsa", "-out", &p, "2048"],
            "make FastAPI-DLS's instance key on this host (never baked)",
        )?;
        host.note(format!("made {}", absolute(&private)));
    }
    if !host.exists(&public) {
        let private_path = host.path(&private)?.to_string_lossy().into_owned();
        let (_, p) = tmp_of(host, &public)?;
        make_files(
            host,
            &[(&public, 0o644)],
            &[
                "rsa",
                "-in",
                &private_path,
                "-outform",
                "PEM",
                "-pubout",
                "-out",
                &p,
            ],
            "derive FastAPI-DLS's instance public key",
        )?;
        host.note(format!("made {}", absolute(&public)));
    }
    Ok(())
}

/// The SHA-1 thumbprint of the certificate (the Windows script's pin).
pub(super) fn thumbprint(host: &mut Host) -> Result<String, StepError> {
    let crt = host.path(&cert(WEB_CRT))?.to_string_lossy().into_owned();
    let spec = host.command(
        "openssl",
        &["x509", "-in", &crt, "-noout", "-fingerprint", "-sha1"],
        "the certificate's thumbprint for the Windows guest script",
    );
    let out = host.run(spec)?;
    out.stdout_tail
        .lines()
        .find_map(|l| l.split_once('=').map(|(_, v)| v.replace(':', "")))
        .filter(|t| t.len() == 40 && t.chars().all(|c| c.is_ascii_hexdigit()))
        .ok_or_else(|| {
            StepError::new(format!(
                "openssl printed no SHA-1 fingerprint for {crt} (output: {:?}); retry",
                out.stdout_tail.trim()
            ))
        })
}

/// Everything up to a healthy server: image, keys, directories, unit,
/// `enable --now`, `/-/health`.
pub(super) fn serve(host: &mut Host, image: &PayloadFile, address: &str) -> Result<(), StepError> {
    let l = &host.plan.licensing;
    let port = l.port.unwrap_or(8443);
    let lease_days = l.lease_days.unwrap_or(90);
    let timezone = l.timezone.clone().unwrap_or_else(|| "UTC".into());
    private_dir(host, lp::CERT_DIR)?;
    private_dir(host, lp::DB_DIR)?;
    let tag = load_image(host, image)?;
    ensure_keys(host, address)?;
    let text = unit_text(&Settings {
        image: &tag,
        port,
        address,
        lease_days,
        timezone: &timezone,
    });
    let existed = host.exists(lp::UNIT);
    let current = host.read_opt(lp::UNIT)?;
    let ops: Vec<_> = write_if_changed(lp::UNIT, current.as_deref(), text, "the FastAPI-DLS unit")
        .into_iter()
        .collect();
    let changed = host.apply(&ops)?;
    if changed {
        let spec = host.command("systemctl", &["daemon-reload"], "see the FastAPI-DLS unit");
        host.run(spec)?;
    }
    enable_now(host, lp::UNIT_NAME, "FastAPI-DLS licence server")?;
    if changed && existed {
        let spec = host.command(
            "systemctl",
            &["restart", lp::UNIT_NAME],
            "run FastAPI-DLS with the changed unit",
        );
        host.run(spec)?;
    }
    wait_healthy(host, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podman_load_names_the_image() {
        assert_eq!(
            loaded_ref("Getting image source signatures\nLoaded image: localhost/x:1\n").as_deref(),
            Some("localhost/x:1")
        );
        assert_eq!(
            loaded_ref("Loaded image(s): a:1,b:2\n").as_deref(),
            Some("a:1")
        );
        assert_eq!(
            loaded_ref("Loaded image: sha256:abc").as_deref(),
            Some("sha256:abc")
        );
        assert_eq!(loaded_ref("nothing"), None);
    }

    #[test]
    fn the_unit_runs_the_seed_command_with_the_plan_settings() {
        let s = Settings {
            image: "localhost/vgpu-bake/fastapi-dls:0123456789ab",
            port: 9443,
            address: "10.0.0.2",
            lease_days: 30,
            timezone: "Europe/Berlin",
        };
        let u = unit_text(&s);
        assert!(u.contains("ExecStart=/usr/bin/podman run --rm --replace --name vgpu-bake-fastapi-dls -p 9443:443 -v /etc/vgpu-bake/licensing/cert:/app/cert:ro -v /var/lib/vgpu-bake/fastapi-dls:/app/database -e TZ=Europe/Berlin -e DLS_URL=10.0.0.2 -e DLS_PORT=9443 -e LEASE_EXPIRE_DAYS=30 -e DATABASE=sqlite:////app/database/db.sqlite -e DEBUG=false localhost/vgpu-bake/fastapi-dls:0123456789ab uvicorn main:app --host 0.0.0.0 --port 443 --ssl-keyfile /app/cert/webserver.key --ssl-certfile /app/cert/webserver.crt\n"), "{u}");
        assert!(u.contains("WantedBy=multi-user.target"));
    }
}

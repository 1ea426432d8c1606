//! Step secure-boot: a module signing key made on the host, DKMS told to sign
//! with it, and its enrolment as a Machine Owner Key queued.
//!
//! With Secure Boot on, the kernel loads only signed modules, so the NVIDIA
//! module DKMS builds must be signed with a key the firmware trusts. The key
//! is a secret, so it is made here, never baked into the bundle. Enrolment
//! needs a person at the console once (the MOK manager after the reboot);
//! until the key is enrolled this step reports
//! [`StepOutcome::NeedsOperator`] and runs again at the next boot. Unlike
//! the seed (§8) the certificate is imported as DER (mokutil rejects PEM)
//! and the one-time MOK password is the root password (`--root-pw`), so
//! nothing prompts.

use super::commands::run_or;
use super::dpkg::{install, installed_version};
use super::file_ops::ops_lines;
use super::openssl_files::{make_files, tmp_of};
use super::signing_key::{DER, KEY, KEY_DIR};
use crate::agent::host::{Host, StepError, StepOutcome};
use crate::edits::{FileOp, owned_header, write_if_changed};
use vgpu_plan::layout::absolute;

/// DKMS signing settings (we own it).
const DKMS_CONF: &str = "etc/dkms/framework.conf.d/vgpu-bake.conf";
/// The certificate's common name, looked for in `mokutil --list-new`.
const CN: &str = "vgpu-firstboot module signing";
/// What the operator does at the console.
const ENROL: &str = "reboot, and at the blue MOK screen choose Enroll MOK, Continue, Yes, then type the root password";

fn secure_boot_on(host: &Host) -> bool {
    host.facts.firmware.secure_boot == Some(true)
}

/// Makes the key, configures DKMS signing and queues the key's enrolment;
/// done once the firmware lists the key as enrolled.
pub fn run(host: &mut Host) -> Result<StepOutcome, StepError> {
    if !secure_boot_on(host) {
        host.note("Secure Boot is off (or the firmware does not say): modules need no signing key");
        return Ok(StepOutcome::Done);
    }
    ensure_key(host)?;
    let ops = dkms_ops(host)?;
    host.apply(&ops)?;
    if installed_version(host, "mokutil")?.is_none() {
        install(
            host,
            &["mokutil".into()],
            "mokutil queues the key's enrolment",
        )?;
    }
    let der = host.path(DER)?.to_string_lossy().into_owned();
    let spec = host.command("mokutil", &["--test-key", &der], "is the key enrolled?");
    let test = host.run_status(&spec)?;
    if test.success() && test.stdout_tail.contains("is already enrolled") {
        host.note(format!("module signing key {} is enrolled", absolute(DER)));
        return Ok(StepOutcome::Done);
    }
    let mut queued = test
        .stdout_tail
        .contains("already in the enrollment request");
    if !queued {
        let spec = host.command("mokutil", &["--list-new"], "is the key's enrolment queued?");
        let listed = host.run_status(&spec)?;
        queued = listed.success() && listed.stdout_tail.contains(CN);
    }
    if queued {
        host.note("the key's enrolment is queued but not yet confirmed at the console");
        return Ok(StepOutcome::NeedsOperator(ENROL.into()));
    }
    let spec = host.command(
        "mokutil",
        &["--import", &der, "--root-pw"],
        "queue the module signing key for enrolment at the next boot, with the root password as the one-time password",
    );
    run_or(
        host,
        spec,
        "--root-pw needs a root password in /etc/shadow (set one with `passwd`); the firmware must also allow MOK changes",
    )?;
    host.note("the module signing key's enrolment is queued");
    Ok(StepOutcome::NeedsOperator(ENROL.into()))
}

/// Makes the key pair when either half is missing. openssl writes
/// temporary files that are renamed into place (key first), so a crash
/// leaves no half-written key that a re-run would trust.
fn ensure_key(host: &mut Host) -> Result<(), StepError> {
    if host.exists(KEY) && host.exists(DER) {
        return Ok(());
    }
    let root = host.fs()?;
    root.create_dir_all(KEY_DIR, 0o700)?;
    root.set_mode(KEY_DIR, 0o700)?;
    let (_, k) = tmp_of(host, KEY)?;
    let (_, d) = tmp_of(host, DER)?;
    make_files(
        host,
        &[(KEY, 0o600), (DER, 0o644)],
        &[
            "req",
            "-new",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "36500",
            "-subj",
            "/CN=vgpu-firstboot module signing/",
            "-keyout",
            &k,
            "-outform",
            "DER",
            "-out",
            &d,
        ],
        "make this host's module signing key (made on the host, never baked)",
    )?;
    host.note(format!("made the module signing key {}", absolute(KEY)));
    Ok(())
}

fn dkms_ops(host: &Host) -> Result<Vec<FileOp>, StepError> {
    let content = format!(
        "{}mok_signing_key={}\nmok_certificate={}\n",
        owned_header("DKMS signs the modules it builds with this host's MOK key"),
        absolute(KEY),
        absolute(DER)
    );
    let current = host.read_opt(DKMS_CONF)?;
    Ok(write_if_changed(
        DKMS_CONF,
        current.as_deref(),
        content,
        "DKMS signs the modules it builds (the NVIDIA driver) with the host's MOK key",
    )
    .into_iter()
    .collect())
}

/// Dry run of [`run`].
pub fn preview(host: &Host) -> Result<Vec<String>, StepError> {
    if !secure_boot_on(host) {
        return Ok(vec![
            "Secure Boot is off (or the firmware does not say): nothing to do".into(),
        ]);
    }
    let mut lines = Vec::new();
    if !(host.exists(KEY) && host.exists(DER)) {
        lines.push(format!(
            "would run `openssl req -new -x509 -newkey rsa:2048 ...` to make {} (0600) and {}: a signing key made on this host",
            absolute(KEY),
            absolute(DER)
        ));
    }
    lines.extend(ops_lines(&dkms_ops(host)?));
    lines.push(format!(
        "would run `mokutil --import {} --root-pw` unless `mokutil --test-key` or `--list-new` shows it enrolled or queued; then: {ENROL}",
        absolute(DER)
    ));
    Ok(lines)
}

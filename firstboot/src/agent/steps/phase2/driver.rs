//! The driver: run the installer, enable its services and SR-IOV, and
//! check that the vGPU manager answers.

use std::os::unix::fs::PermissionsExt;

use super::{driver, payload_rel, shown};
use crate::agent::host::{Host, StepError, StepOutcome};
use crate::runner::{CommandSpec, format_failure};
use vgpu_plan::plan::Mode;

/// The module signing key the secure-boot step makes on the host (private
/// key, never baked).
pub const SIGNING_KEY: &str = "var/lib/vgpu-firstboot/secure-boot/module-signing.key";
/// Its certificate in DER, the form MOK enrolment and the installer take.
pub const SIGNING_CERT: &str = "var/lib/vgpu-firstboot/secure-boot/module-signing.der";

/// Secure Boot is on and the signing key pair exists.
fn signing(host: &Host) -> bool {
    host.facts.firmware.secure_boot == Some(true)
        && host.exists(SIGNING_KEY)
        && host.exists(SIGNING_CERT)
}

/// The installer command: the payload's installer run directly, with the
/// plan's arguments plus the signing arguments when Secure Boot is on (so
/// the modules load under Secure Boot, and DKMS rebuilds stay signed).
fn installer_spec(host: &Host) -> Result<CommandSpec, StepError> {
    let d = driver(host)?;
    let program = host.path(&payload_rel(&d.installer, "driver installer")?)?;
    let mut args = d.install_args.clone();
    if signing(host) {
        args.push(format!(
            "--module-signing-secret-key={}",
            host.path(SIGNING_KEY)?.display()
        ));
        args.push(format!(
            "--module-signing-public-key={}",
            host.path(SIGNING_CERT)?.display()
        ));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Ok(host.command(
        &program.to_string_lossy(),
        &args,
        &format!("install the vGPU host driver {}", d.version),
    ))
}

/// The installed driver's own installer, which says which version is
/// installed (`--version`) and whether every file it installed is still
/// there with the checksum it recorded (`--sanity`). NVIDIA's installs
/// itself as /usr/bin/nvidia-installer; the demo stand-in keeps its copy
/// apart, so a demo never looks like an NVIDIA driver.
fn installed_tool(host: &Host) -> &'static str {
    if host.plan.demo {
        "usr/lib/vgpu-demo/nvidia-installer"
    } else {
        "usr/bin/nvidia-installer"
    }
}

/// After a run of the installer was cut short (power loss between its exit
/// and the agent's marker), whether it left `version` installed and intact:
/// `Ok(())` if the installed tool says so, else why not. Only a positive
/// answer skips the installer; anything else (no driver, another version,
/// a file torn by the cut, a check that cannot run) installs again.
fn earlier_install(host: &mut Host, version: &str) -> Result<Result<(), String>, StepError> {
    let rel = installed_tool(host);
    let tool = host.path(rel)?;
    if host.fs()?.metadata(rel).ok().flatten().is_none() {
        return Ok(Err(format!("left no {}", shown(rel))));
    }
    let program = tool.to_string_lossy().into_owned();
    let spec = host.command(&program, &["--version"], "see which driver is installed");
    let out = host.run_status(&spec)?;
    if !out.success() || !out.stdout_tail.split_whitespace().any(|w| w == version) {
        return Ok(Err(format!(
            "`{} --version` does not report {version}",
            shown(rel)
        )));
    }
    let spec = host.command(
        &program,
        &["--sanity", "-s"],
        "check every installed file against its recorded checksum",
    );
    let out = host.run_status(&spec)?;
    if !out.success() {
        let why = out
            .stderr_tail
            .lines()
            .chain(out.stdout_tail.lines())
            .last();
        return Ok(Err(format!(
            "`{} --sanity` finds the installation incomplete ({})",
            shown(rel),
            why.unwrap_or("no output").trim()
        )));
    }
    Ok(Ok(()))
}

/// Runs the driver installer, once. Before it runs, an intent file names
/// the installer (by hash); after it, `sync` and a marker. A run that finds
/// the marker does nothing; one that finds only the intent (the power was
/// cut while the installer ran or right after; a failed run removes it)
/// asks the installed driver whether it is complete and installs again
/// only if not. Running NVIDIA's installer again is safe: it uninstalls the
/// previous copy first.
pub fn install_driver(host: &mut Host) -> Result<StepOutcome, StepError> {
    let d = driver(host)?;
    let spec = installer_spec(host)?;
    let rel = payload_rel(&d.installer, "driver installer")?;
    let root = host.fs()?;
    let meta = root
        .metadata(&rel)
        .map_err(|e| e.source)
        .and_then(|m| m.ok_or_else(|| std::io::Error::from_raw_os_error(2)))
        .map_err(|e| {
            StepError::new(format!(
                "driver installer {}: {e}: re-copy or re-bake the bundle",
                shown(&rel)
            ))
        })?;
    if meta.permissions().mode() & 0o777 != 0o755 {
        root.set_mode(&rel, 0o755).map_err(|e| {
            StepError::new(format!("making {} executable: {}", shown(&rel), e.source))
        })?;
    }
    if host.facts.firmware.secure_boot == Some(true) && !signing(host) {
        host.note(format!(
            "Secure Boot is on but {} or {} is missing: the modules are installed unsigned and may not load",
            shown(SIGNING_KEY),
            shown(SIGNING_CERT)
        ));
    }
    let marker = format!("{}/driver-installed", vgpu_plan::layout::STATE_DIR);
    let intent = format!("{}/driver-installing", vgpu_plan::layout::STATE_DIR);
    let stamp = format!("{} {}\n", d.installer.sha256, d.version);
    if host.read_opt(&marker)?.as_deref() == Some(stamp.as_str()) {
        host.note(format!(
            "the vGPU host driver {} was installed by an earlier run",
            d.version
        ));
        return Ok(StepOutcome::Done);
    }
    if host.read_opt(&intent)?.as_deref() == Some(stamp.as_str()) {
        match earlier_install(host, &d.version)? {
            Ok(()) => {
                host.note(format!(
                    "the vGPU host driver {} was installed by an earlier run that stopped before recording it; {} --sanity finds every file intact: not installing again",
                    d.version,
                    shown(installed_tool(host))
                ));
                return record_installed(host, &marker, &intent, &stamp);
            }
            Err(why) => host.note(format!(
                "an earlier run of the driver installer did not finish and {why}: installing again"
            )),
        }
    } else {
        host.write_atomic(&intent, stamp.as_bytes(), 0o644)?;
    }
    let log = if host.plan.demo {
        "/var/log/vgpu-demo-installer.log"
    } else {
        "/var/log/nvidia-installer.log"
    };
    if let Err(e) = host.run(spec) {
        // It ended, with a failure: a retry runs it again, no questions.
        remove_if_there(host, &intent)?;
        return Err(StepError {
            reason: format!("driver installer {}; look at {log} for the cause", e.reason),
            ..e
        });
    }
    crate::agent::run::fault("install-driver", "installer-ran");
    host.note(format!("installed the vGPU host driver {}", d.version));
    record_installed(host, &marker, &intent, &stamp)
}

/// Flushes the driver's files and writes the durable marker. The installer
/// does not fsync what it writes: without the `sync`, a power cut right
/// after could leave a half-written driver behind a marker that says it is
/// installed (seen in the VM test: an empty /var/lib/vgpu-demo/installed).
fn record_installed(
    host: &mut Host,
    marker: &str,
    intent: &str,
    stamp: &str,
) -> Result<StepOutcome, StepError> {
    let sync = host.command("sync", &[], "flush the driver's files to disk");
    host.run(sync)?;
    host.write_atomic(marker, stamp.as_bytes(), 0o644)?;
    remove_if_there(host, intent)?;
    Ok(StepOutcome::Done)
}

fn remove_if_there(host: &Host, rel: &str) -> Result<(), StepError> {
    host.path(rel)?;
    host.fs()?.remove_file(rel)?;
    Ok(())
}

/// Fails with `missing` unless systemd knows `unit`.
fn require_unit(host: &mut Host, unit: &str, missing: String) -> Result<(), StepError> {
    let spec = host.command("systemctl", &["cat", unit], "check the unit exists");
    if host.run_status(&spec)?.success() {
        Ok(())
    } else {
        Err(StepError::new(missing))
    }
}

/// `systemctl enable --now unit`, unless it is enabled and active already.
fn enable_now(host: &mut Host, unit: &str, why: &str) -> Result<(), StepError> {
    let probe = |host: &mut Host, verb: &str| {
        let spec = host.command("systemctl", &[verb, unit], "see whether it is needed");
        host.run_status(&spec).map(|o| o.success())
    };
    if probe(host, "is-enabled")? && probe(host, "is-active")? {
        host.note(format!("{unit} is enabled and running already"));
        return Ok(());
    }
    let spec = host.command("systemctl", &["enable", "--now", unit], why);
    host.run(spec).map_err(|e| StepError {
        reason: format!("{}; check journalctl -u {unit}", e.reason),
        ..e
    })?;
    host.note(format!("{unit}: enabled and started ({why})"));
    Ok(())
}

/// Enables the driver's services. `daemon-reload` first, so systemd sees
/// the units the installer just added; then each unit must exist (a
/// non-vGPU driver ships none: seed §16 #4, "unit does not exist").
pub fn enable_services(host: &mut Host) -> Result<StepOutcome, StepError> {
    let d = driver(host)?;
    let spec = host.command(
        "systemctl",
        &["daemon-reload"],
        "see the units the driver installer added",
    );
    host.run(spec)?;
    for unit in &d.services {
        require_unit(
            host,
            unit,
            format!(
                "{unit} does not exist: the installer did not install the vGPU manager — is this the vGPU-KVM (host) driver?"
            ),
        )?;
        enable_now(host, unit, "vGPU host service of the driver")?;
    }
    Ok(StepOutcome::Done)
}

/// PCI addresses of NVIDIA GPUs that have SR-IOV virtual functions.
fn sriov_cards(host: &Host) -> Vec<String> {
    host.facts
        .gpus()
        .filter(|g| g.sriov_totalvfs.unwrap_or(0) > 0)
        .map(|g| g.address.clone())
        .collect()
}

/// Enables the SR-IOV unit when a card has virtual functions (native
/// Ampere and newer expose vGPUs only through them). The bash installer
/// ignored a failure here; a host without its VFs has no vGPUs, so it is
/// an error.
pub fn sriov(host: &mut Host) -> Result<StepOutcome, StepError> {
    let Some(unit) = driver(host)?.sriov_unit.as_deref() else {
        host.note("the plan has no SR-IOV unit; skipped");
        return Ok(StepOutcome::Done);
    };
    let cards = sriov_cards(host);
    if cards.is_empty() {
        host.note("no SR-IOV capable card; skipped");
        return Ok(StepOutcome::Done);
    }
    require_unit(
        host,
        unit,
        format!(
            "{unit} does not exist: it comes with the pve-nvidia-vgpu-helper package; install it and rerun"
        ),
    )?;
    let why = format!(
        "enable the SR-IOV virtual functions of {}",
        cards.join(", ")
    );
    enable_now(host, unit, &why)?;
    Ok(StepOutcome::Done)
}

/// What to look at when the driver does not answer.
fn post_check_hint(host: &Host) -> String {
    let mut hint = "check systemctl status nvidia-vgpud nvidia-vgpu-mgr, lsmod | grep nvidia, and journalctl -u nvidia-vgpu-mgr".to_owned();
    if host.facts.firmware.secure_boot == Some(true) {
        hint.push_str(" (Secure Boot is on: the modules must be signed with an enrolled key, see mokutil --list-enrolled)");
    }
    hint
}

/// `nvidia-smi vgpu` must succeed and `mdevctl types` must list at least
/// one type: the check users did by hand when "mdevctl types is empty"
/// (seed §16 #4). In unlock mode `nvidia-smi vgpu` reports "No supported
/// devices in vGPU mode" from a plain shell (the unlock library is only
/// preloaded into the daemons), so plain `nvidia-smi` stands in for it
/// there; `mdevctl types` is the real check in both modes.
pub fn post_check(host: &mut Host) -> Result<StepOutcome, StepError> {
    let spec = host.command("nvidia-smi", &["vgpu"], "check the vGPU manager answers");
    let out = host.run_status(&spec)?;
    if !out.success() {
        let plain = host.command("nvidia-smi", &[], "check the driver answers");
        let fallback = host.plan.mode == Mode::Unlock && host.run_status(&plain)?.success();
        if !fallback {
            return Err(StepError {
                reason: format!("{}; {}", format_failure(&spec, &out), post_check_hint(host)),
                exit_code: out.exit_code,
                stderr_tail: out.stderr_tail,
            });
        }
        host.note(
            "nvidia-smi vgpu does not answer outside the unlocked daemons; plain nvidia-smi does",
        );
    }
    let spec = host.command("mdevctl", &["types"], "list the vGPU types");
    let out = host.run_status(&spec)?;
    if !out.success() || out.stdout_tail.trim().is_empty() {
        let what = if out.success() {
            "`mdevctl types` lists no vGPU types: the vGPU manager registered no GPU".to_owned()
        } else {
            format_failure(&spec, &out)
        };
        return Err(StepError {
            reason: format!("{what}; {}", post_check_hint(host)),
            exit_code: out.exit_code,
            stderr_tail: out.stderr_tail,
        });
    }
    host.note("nvidia-smi vgpu answers and mdevctl types lists vGPU types");
    Ok(StepOutcome::Done)
}

pub(super) fn preview_install(host: &Host) -> Result<Vec<String>, StepError> {
    let spec = installer_spec(host)?;
    Ok(vec![format!(
        "would run {}: {}",
        spec.command_line(),
        spec.why
    )])
}

pub(super) fn preview_services(host: &Host) -> Result<Vec<String>, StepError> {
    Ok(driver(host)?
        .services
        .iter()
        .map(|u| format!("would run systemctl enable --now {u} unless it is enabled and running: vGPU host service of the driver"))
        .collect())
}

pub(super) fn preview_sriov(host: &Host) -> Result<Vec<String>, StepError> {
    let cards = sriov_cards(host);
    Ok(vec![match driver(host)?.sriov_unit.as_deref() {
        None => "nothing: the plan has no SR-IOV unit".to_owned(),
        Some(_) if cards.is_empty() => "nothing: no SR-IOV capable card".to_owned(),
        Some(unit) => format!(
            "would run systemctl enable --now {unit}: SR-IOV virtual functions of {}",
            cards.join(", ")
        ),
    }])
}

pub(super) fn preview_post_check() -> Vec<String> {
    vec![
        "would run nvidia-smi vgpu: the vGPU manager answers".to_owned(),
        "would run mdevctl types: at least one vGPU type is listed".to_owned(),
    ]
}

//! Step install-driver: the driver installer, run once, crash-safe.

use std::os::unix::fs::PermissionsExt;

use super::driver_plan::driver;
use super::payload_paths::payload_rel;
use super::signing_key;
use crate::agent::fault::fault;
use crate::agent::host::{Host, StepError, StepOutcome};
use crate::agent::journal::{Change, Journal, Record};
use crate::agent::shown::shown;
use crate::runner::CommandSpec;

/// Secure Boot is on and the signing key pair exists.
fn signing(host: &Host) -> bool {
    host.facts.firmware.secure_boot == Some(true)
        && host.exists(signing_key::KEY)
        && host.exists(signing_key::DER)
}

/// The installer command: the payload's installer run directly, with the
/// plan's arguments plus the signing arguments when Secure Boot is on (so
/// the modules load under Secure Boot, and DKMS rebuilds stay signed).
fn installer_spec(host: &Host) -> Result<CommandSpec, StepError> {
    let d = driver(host)?;
    let program = host.path(&payload_rel(&d.installer))?;
    let mut args = d.install_args.clone();
    if signing(host) {
        args.push(format!(
            "--module-signing-secret-key={}",
            host.path(signing_key::KEY)?.display()
        ));
        args.push(format!(
            "--module-signing-public-key={}",
            host.path(signing_key::DER)?.display()
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
pub fn run(host: &mut Host) -> Result<StepOutcome, StepError> {
    let d = driver(host)?;
    let spec = installer_spec(host)?;
    let rel = payload_rel(&d.installer);
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
            shown(signing_key::KEY),
            shown(signing_key::DER)
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
        // An upgrade: another driver installed by an earlier plan goes
        // first, with its own uninstaller.
        remove_other_driver(host, &d.version)?;
        host.write_atomic(&intent, stamp.as_bytes(), 0o644)?;
    }
    // Journaled first: undo and upgrade remove it with its own uninstaller,
    // and undo then removes the tool's directories the installer made.
    if let Some((dir, _)) = installed_tool(host).rsplit_once('/') {
        host.touch_dir(dir)?;
    }
    host.record(Change::Driver {
        version: d.version.clone(),
        tool: installed_tool(host).to_owned(),
    })?;
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
    fault("install-driver", "installer-ran");
    host.note(format!("installed the vGPU host driver {}", d.version));
    record_installed(host, &marker, &intent, &stamp)
}

/// The drivers an earlier plan installed that are not `version`, as
/// `(version, tool)`: the journal's driver records, and the marker's
/// version with this plan's tool (a host provisioned before the journal).
/// Pure.
pub(crate) fn other_drivers(
    journal: &Journal,
    marker: Option<&str>,
    tool: &str,
    version: &str,
) -> Vec<(String, String)> {
    let from_journal = journal.records.iter().filter_map(|r| match r {
        Record::Change(Change::Driver { version, tool }) => Some((version.as_str(), tool.as_str())),
        _ => None,
    });
    let from_marker = marker
        .and_then(|m| m.split_whitespace().nth(1))
        .map(|v| (v, tool));
    let mut found: Vec<(String, String)> = Vec::new();
    for (v, t) in from_journal.chain(from_marker) {
        if v != version && !found.iter().any(|(fv, ft)| fv == v && ft == t) {
            found.push((v.to_owned(), t.to_owned()));
        }
    }
    found
}

/// Removes a driver an earlier plan installed whose version is not
/// `version`: its installed tool, asked with `--version`, must still report
/// it; then `tool --uninstall -s`. Crash-safe: once it has run the tool is
/// gone (or reports another version), so a run cut between the uninstall
/// and the install goes straight to the install.
fn remove_other_driver(host: &mut Host, version: &str) -> Result<(), StepError> {
    let journal = Journal::read(&host.fs()?)?;
    let marker = host.read_opt(&format!(
        "{}/driver-installed",
        vgpu_plan::layout::STATE_DIR
    ))?;
    for (old, tool) in other_drivers(&journal, marker.as_deref(), installed_tool(host), version) {
        if host.fs()?.metadata(&tool).ok().flatten().is_none() {
            continue;
        }
        let program = host.path(&tool)?.to_string_lossy().into_owned();
        let spec = host.command(&program, &["--version"], "see which driver is installed");
        let out = host.run_status(&spec)?;
        if !out.success() || !out.stdout_tail.split_whitespace().any(|w| w == old) {
            continue;
        }
        let spec = host.command(
            &program,
            &["--uninstall", "-s"],
            &format!("remove the driver {old} of the earlier plan before installing {version}"),
        );
        host.run(spec).map_err(|e| StepError {
            reason: format!(
                "uninstalling the earlier driver {old}: {}; see the installer's log, remove it by hand if need be, then `vgpu-firstboot retry`",
                e.reason
            ),
            ..e
        })?;
        fault("install-driver", "uninstalled");
        host.note(format!(
            "removed the earlier vGPU host driver {old} with {} --uninstall",
            shown(&tool)
        ));
    }
    Ok(())
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

/// Dry run of [`run`]: the installer command line.
pub fn preview(host: &Host) -> Result<Vec<String>, StepError> {
    let spec = installer_spec(host)?;
    Ok(vec![format!(
        "would run {}: {}",
        spec.command_line(),
        spec.why
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_drivers_come_from_the_journal_and_the_marker() {
        let tool = "usr/lib/vgpu-demo/nvidia-installer";
        let driver = |v: &str| {
            Record::Change(Change::Driver {
                version: v.into(),
                tool: tool.into(),
            })
        };
        let journal = Journal {
            records: vec![driver("1.0-demo"), driver("1.1-demo")],
        };
        assert_eq!(
            other_drivers(&journal, Some("abc 1.0-demo\n"), tool, "1.1-demo"),
            [("1.0-demo".to_string(), tool.to_string())]
        );
        assert!(other_drivers(&journal, None, tool, "9").len() == 2);
        assert!(
            other_drivers(
                &Journal::default(),
                Some("abc 1.1-demo\n"),
                tool,
                "1.1-demo"
            )
            .is_empty()
        );
        assert_eq!(
            other_drivers(
                &Journal::default(),
                Some("abc 550.1\n"),
                "usr/bin/nvidia-installer",
                "550.2"
            ),
            [("550.1".to_string(), "usr/bin/nvidia-installer".to_string())]
        );
    }
}

//! Undo's effects: each [`Action`] carried out on the host, idempotently.
//!
//! Files are put back through the root's [`vgpu_rootfs::Root`] directly,
//! not through [`Host::write_atomic`] and its siblings: those journal, and
//! undo must not add to the journal it is reverting. Commands go through
//! the host's runner like every step's.

use std::os::unix::fs::PermissionsExt;

use super::{Action, DRIVER_MARKERS, Verdict, verdict};
use crate::agent::host::{Host, StepError};
use crate::agent::journal::{Before, Journal, Record};
use crate::agent::shown::shown;
use crate::agent::steps::{desired_kernel_args, installed_version};
use crate::edits::kernel_cmdline::{DEFAULT_GRUB, GRUB_DROPIN, KERNEL_CMDLINE};
use crate::facts::{BootloaderKind, resolve_bootloader};

/// Every backup the journal names is there and readable: checked before
/// undo changes anything, so a journal that cannot be honoured changes
/// nothing.
pub fn check_backups(host: &Host, journal: &Journal) -> Result<(), StepError> {
    let root = host.fs()?;
    for r in &journal.records {
        if let Record::Path {
            before: Before::File { backup, .. },
            ..
        } = r
        {
            Journal::backup(&root, *backup)?;
        }
    }
    Ok(())
}

/// Carries out `actions` in order; the first failure stops undo (a second
/// `undo` goes over everything again).
pub fn execute(host: &mut Host, actions: &[Action]) -> Result<(), StepError> {
    for a in actions {
        match a {
            Action::Restore { path, before } => restore(host, path, before)?,
            Action::Purge(packages) => purge(host, packages)?,
            Action::UninstallDriver { version, tool } => uninstall_driver(host, version, tool)?,
            Action::DisableUnit(unit) => {
                let spec = host.command(
                    "systemctl",
                    &["disable", "--now", unit],
                    "undo: the agent enabled it",
                );
                host.run(spec)?;
                host.note(format!("{unit}: disabled and stopped"));
            }
            Action::RestorePin { version, previous } => {
                let why = format!("undo: the agent pinned kernel {version}");
                let spec = match previous {
                    Some(p) => host.command("proxmox-boot-tool", &["kernel", "pin", p], &why),
                    None => host.command("proxmox-boot-tool", &["kernel", "unpin"], &why),
                };
                host.run(spec)?;
                host.note(match previous {
                    Some(p) => format!("kernel pin back to {p}"),
                    None => format!("kernel {version} unpinned"),
                });
            }
            Action::RemoveImage(image) => remove_image(host, image)?,
            Action::RefreshInitramfs => {
                let spec = host.command(
                    "update-initramfs",
                    &["-u", "-k", "all"],
                    "undo: rebuild every initramfs without the agent's modules, blacklist and rules",
                );
                host.run(spec)?;
            }
            Action::RefreshBoot => {
                let kind = resolve_bootloader(host.plan.host.bootloader, host.facts).kind;
                let (program, args): (&str, &[&str]) = match kind {
                    BootloaderKind::Grub => ("update-grub", &[]),
                    BootloaderKind::SystemdBoot => ("proxmox-boot-tool", &["refresh"]),
                };
                let spec = host.command(
                    program,
                    args,
                    "undo: the boot configuration without the agent's kernel arguments",
                );
                host.run(spec)?;
            }
        }
    }
    Ok(())
}

/// `path` as it was before the agent (see [`Action::Restore`]).
fn restore(host: &mut Host, path: &str, before: &Before) -> Result<(), StepError> {
    host.path(path)?;
    let root = host.fs()?;
    let now = root.symlink_metadata(path)?;
    let is_dir = now.as_ref().is_some_and(|m| m.is_dir());
    match before {
        Before::Absent | Before::AbsentDir if now.is_none() => {}
        Before::Absent | Before::AbsentDir if is_dir => {
            let empty = root.read_dir(path)?.is_none_or(|e| e.is_empty());
            if empty {
                root.remove_all(path)?;
                host.note(format!("{}: removed (the agent created it)", shown(path)));
            } else {
                host.note(format!(
                    "{}: left in place: the agent created it, but it holds files the agent did not make",
                    shown(path)
                ));
            }
        }
        Before::Absent => {
            root.remove_file(path)?;
            host.note(format!("{}: removed (the agent created it)", shown(path)));
        }
        Before::AbsentDir => host.note(format!(
            "{}: left in place: the agent created a directory there, it is now something else",
            shown(path)
        )),
        Before::File { backup, mode } => {
            if is_dir {
                return Err(StepError::new(format!(
                    "{} is a directory now, but it was a file before the agent: move it aside, then `vgpu-firstboot undo` again",
                    shown(path)
                )));
            }
            let bytes = Journal::backup(&root, *backup)?;
            let file = now.as_ref().is_some_and(|m| m.is_file());
            let same = file
                && now
                    .as_ref()
                    .is_some_and(|m| m.permissions().mode() & 0o7777 == *mode)
                && root.read_bounded(path, 64 << 20)?.as_deref() == Some(&bytes[..]);
            if !same {
                root.write_atomic(path, &bytes, *mode)?;
                host.note(format!(
                    "{}: restored as it was before the agent (mode {mode:04o})",
                    shown(path)
                ));
            }
        }
        Before::Symlink(target) => {
            let current = root.read_link(path)?;
            if current.as_deref().and_then(|p| p.to_str()) != Some(target.as_str()) {
                if is_dir {
                    return Err(StepError::new(format!(
                        "{} is a directory now, but it was a symlink before the agent: move it aside, then `vgpu-firstboot undo` again",
                        shown(path)
                    )));
                }
                root.remove_file(path)?;
                root.symlink(target, path)?;
                host.note(format!("{}: symlink to {target} restored", shown(path)));
            }
        }
    }
    Ok(())
}

/// One `apt-get purge -y` of the agent's packages that are still installed.
fn purge(host: &mut Host, packages: &[String]) -> Result<(), StepError> {
    let mut installed = Vec::new();
    for p in packages {
        if installed_version(host, p)?.is_some() {
            installed.push(p.as_str());
        }
    }
    if installed.is_empty() {
        host.note(format!(
            "packages {}: none installed any more",
            packages.join(" ")
        ));
        return Ok(());
    }
    let mut args = vec!["purge", "-y"];
    args.extend(&installed);
    let spec = host.command(
        "apt-get",
        &args,
        "undo: remove the packages the agent installed (and only those)",
    );
    host.run(spec).map_err(|mut e| {
        e.reason
            .push_str("; check `apt-get -s purge` of these packages and dpkg's state, then `vgpu-firstboot undo` again");
        e
    })?;
    host.note(format!("purged {}", installed.join(" ")));
    Ok(())
}

/// The driver's own uninstaller, when it is still there; then the
/// install-driver step's markers, so a later run installs it again.
fn uninstall_driver(host: &mut Host, version: &str, tool: &str) -> Result<(), StepError> {
    host.path(tool)?;
    let root = host.fs()?;
    if root.resolves(tool) {
        let program = format!("/{}", tool.trim_start_matches('/'));
        let spec = host.command(
            &program,
            &["--uninstall", "-s"],
            &format!("undo: remove the vGPU host driver {version} with its own uninstaller"),
        );
        host.run(spec).map_err(|mut e| {
            e.reason.push_str(
                "; look at /var/log/nvidia-uninstall.log, fix the cause, then `vgpu-firstboot undo` again",
            );
            e
        })?;
        host.note(format!("vGPU host driver {version} uninstalled"));
    } else {
        host.note(format!(
            "vGPU host driver {version}: its uninstaller {} is gone, so the driver was removed already: skipped",
            shown(tool)
        ));
    }
    for m in DRIVER_MARKERS {
        root.remove_file(m)?;
    }
    Ok(())
}

/// `podman rmi`, when podman is there and has the image.
fn remove_image(host: &mut Host, image: &str) -> Result<(), StepError> {
    let probe = host.command(
        "podman",
        &["image", "exists", image],
        "undo: is the agent's image still there?",
    );
    match host.run_status(&probe) {
        Err(_) => {
            host.note(format!("container image {image}: podman is gone: skipped"));
            return Ok(());
        }
        Ok(o) if !o.success() => {
            host.note(format!("container image {image}: not there any more"));
            return Ok(());
        }
        Ok(_) => {}
    }
    let spec = host.command("podman", &["rmi", image], "undo: the agent loaded it");
    host.run(spec)?;
    host.note(format!("container image {image}: removed"));
    Ok(())
}

/// The reboot verdict for the host as it is after the actions ran.
pub fn judge(host: &Host, actions: &[Action]) -> Result<Verdict, StepError> {
    let running = host.read_opt("proc/cmdline")?.unwrap_or_default();
    let planned = desired_kernel_args(host).unwrap_or_default();
    let root = host.fs()?;
    let mut configured = String::new();
    let mut files = vec![DEFAULT_GRUB.to_string(), KERNEL_CMDLINE.to_string()];
    let dropins = GRUB_DROPIN.rsplit_once('/').map_or("", |(d, _)| d);
    for name in root.read_dir(dropins)?.unwrap_or_default() {
        files.push(format!("{dropins}/{}", name.to_string_lossy()));
    }
    for f in files {
        if let Ok(Some(text)) = root.read_to_string(&f) {
            configured.push_str(&text);
            configured.push('\n');
        }
    }
    Ok(verdict(actions, &running, &planned, &configured))
}

//! The trial boot's effects (the record and the decisions are in
//! [`crate::agent::trial`]): arming it in phase 1 (kernel-args), the commit
//! and the clean-up in phase 2 (verify-reboot), its removal by undo, and
//! the "came up" observation every run makes at start-up. With a kernel
//! kernel-pin chose and nothing pinned yet ([`pin_pending`]), the entry is
//! that kernel's and the commit pins it.
//!
//! GRUB: the script [`grub::SCRIPT`] is written through [`Host`] (so it is
//! journaled, and undo removes it), then `update-grub` and `grub-reboot`.
//! systemd-boot: each ESP of `/etc/kernel/proxmox-boot-uuids` is mounted
//! under `/run/vgpu-firstboot/esp/UUID`, the entry written or removed, and
//! unmounted. ESP writes are not journaled: the ESP is not mounted when
//! undo runs, and the entry never outlives the trial (removed at the
//! commit, at a failure, and by undo through the trial record).

use super::commands::run_or;
use super::iommu_args::desired_kernel_args;
use super::pinned_kernel::{pin, pin_pending};
use crate::agent::host::{Host, StepError};
use crate::agent::shown::shown;
use crate::agent::trial::{
    self, ENTRY_ID, Seen, TRIAL_FILE, Trial, TrialStatus, grub, systemd_boot as sd,
};
use crate::edits::FileOp;
use crate::edits::kernel_cmdline::{
    self as kc, cmdline_from_proc, kernel_cmdline, missing_args, plan_grub, plan_systemd_boot,
};
use crate::facts::BootloaderKind;

const BOOT_ID: &str = "proc/sys/kernel/random/boot_id";

/// The current boot id.
pub(super) fn boot_id(host: &Host) -> Result<String, StepError> {
    host.read_opt(BOOT_ID)?
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            StepError::new(format!(
                "{} is missing or empty: is /proc mounted under the root?",
                shown(BOOT_ID)
            ))
        })
}

/// The trial record, if there is one.
pub(crate) fn load(host: &Host) -> Result<Option<Trial>, StepError> {
    host.read_opt(TRIAL_FILE)?
        .map(|t| {
            Trial::from_text(&t).map_err(|e| {
                StepError::new(format!(
                    "{} is not a trial record ({e}); remove it if the boot loader has no trial entry left, then retry",
                    shown(TRIAL_FILE)
                ))
            })
        })
        .transpose()
}

/// Writes the record atomically (the agent's state directory: not journaled).
pub(crate) fn save(host: &Host, t: &Trial) -> Result<(), StepError> {
    Ok(host
        .fs()?
        .write_atomic(TRIAL_FILE, t.to_text().as_bytes(), 0o600)?)
}

/// Whether this boot runs the trial: every one of its arguments on the
/// running command line, and with a pin its kernel
/// (`/proc/sys/kernel/osrelease`).
fn running_trial(host: &Host, t: &Trial) -> Result<bool, StepError> {
    let cmdline = host.read_opt("proc/cmdline")?.unwrap_or_default();
    Ok(missing_args(&cmdline, &t.args).is_empty()
        && (!t.pin || host.facts.kernel.release.as_deref() == Some(t.kernel.as_str())))
}

/// The trial as this boot sees it; a trial whose arguments this boot runs
/// is recorded "came up" (with this boot id) before anything else happens.
pub(crate) fn observe(host: &mut Host) -> Result<(Option<Trial>, Seen), StepError> {
    let Some(mut t) = load(host)? else {
        return Ok((None, Seen::Over));
    };
    let boot = boot_id(host)?;
    let seen = trial::seen(Some(&t), &boot, running_trial(host, &t)?);
    if seen == Seen::Up && t.status == TrialStatus::Armed {
        t.status = TrialStatus::CameUp;
        t.came_up_boot = Some(boot);
        save(host, &t)?;
        host.note(format!("trial boot came up: {}", t.describe()));
    }
    Ok((Some(t), seen))
}

/// The file operations that make `args` the boot loader's default (the
/// drop-in, or `/etc/kernel/cmdline`), as they were before the trial.
pub(super) fn default_ops(
    host: &Host,
    kind: BootloaderKind,
    args: &[String],
) -> Result<Vec<FileOp>, StepError> {
    let ops = match kind {
        BootloaderKind::Grub => plan_grub(
            args,
            host.read_opt(kc::DEFAULT_GRUB)?.as_deref(),
            host.read_opt(kc::GRUB_DROPIN)?.as_deref(),
        ),
        BootloaderKind::SystemdBoot => plan_systemd_boot(args, &current_cmdline(host)?),
    }
    .map_err(|e| StepError::new(format!("{e}; fix the kernel arguments in the profile")))?;
    for op in &ops {
        if let crate::edits::FileAction::Write { content, .. } = &op.action
            && op.path == kc::KERNEL_CMDLINE
        {
            need_root(content)?;
        }
    }
    Ok(ops)
}

/// `/etc/kernel/cmdline`, else the running command line as
/// proxmox-boot-tool would take it.
fn current_cmdline(host: &Host) -> Result<String, StepError> {
    Ok(match host.read_opt(kc::KERNEL_CMDLINE)? {
        Some(c) => c,
        None => cmdline_from_proc(&host.facts.kernel.cmdline.join(" ")),
    })
}

fn need_root(cmdline: &str) -> Result<(), StepError> {
    if cmdline.split_whitespace().any(|t| t.starts_with("root=")) {
        return Ok(());
    }
    Err(StepError::new(
        "refusing to write /etc/kernel/cmdline without root= (the host would not boot): write it by hand, e.g. `root=ZFS=rpool/ROOT/pve-1 boot=zfs`, then retry",
    ))
}

/// Regenerates the boot configuration: `update-grub`, or `proxmox-boot-tool
/// refresh`.
pub(super) fn refresh(host: &mut Host, kind: BootloaderKind, why: &str) -> Result<(), StepError> {
    let (program, args): (&str, &[&str]) = match kind {
        BootloaderKind::Grub => ("update-grub", &[]),
        BootloaderKind::SystemdBoot => ("proxmox-boot-tool", &["refresh"]),
    };
    let spec = host.command(program, args, why);
    run_or(
        host,
        spec,
        "check /boot and the ESPs (`proxmox-boot-tool status`)",
    )?;
    Ok(())
}

fn trial_title(default_title: &str, args: &[String]) -> String {
    format!("vgpu-bake trial: {default_title} + {}", args.join(" "))
}

/// The GRUB trial entry: the title, the `menuentry` text, the kernel. With
/// `pin`, the entry that boots that kernel, else the default entry.
pub(super) fn grub_trial(
    host: &Host,
    args: &[String],
    pin: Option<&str>,
) -> Result<(String, String, String), StepError> {
    let cfg = host.read_opt(grub::GRUB_CFG)?.ok_or_else(|| {
        StepError::new(format!(
            "{} is missing (GRUB's menu); run update-grub, then retry",
            shown(grub::GRUB_CFG)
        ))
    })?;
    let fs = host.fs()?;
    let mut settings = vec![host.read_opt(kc::DEFAULT_GRUB)?.unwrap_or_default()];
    let dir = "etc/default/grub.d";
    let mut names: Vec<String> = fs
        .read_dir(dir)?
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| n.into_string().ok())
        .filter(|n| n.ends_with(".cfg"))
        .collect();
    names.sort_unstable();
    for n in names {
        settings.extend(fs.read_to_string(&format!("{dir}/{n}"))?);
    }
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let default = grub::grub_default(&settings);
    let menu = grub::parse_menu(&cfg).map_err(|e| {
        StepError::new(format!(
            "{}: {e}; run update-grub, then retry",
            shown(grub::GRUB_CFG)
        ))
    })?;
    let env = host.read_opt(grub::GRUBENV)?;
    let (titles, body) = match pin {
        Some(v) => grub::kernel_entry(&menu, v)
            .map(|(t, b)| (vec![t], b))
            .ok_or_else(|| {
                format!(
                    "{} has no entry that boots kernel {v}; run update-grub, then retry",
                    shown(grub::GRUB_CFG)
                )
            }),
        None => grub::resolve_default(&menu, &default, env.as_deref()),
    }
    .map_err(StepError::new)?;
    let title = trial_title(&titles.join(" > "), args);
    let (text, kernel) = grub::trial_entry(&title, body, args).map_err(StepError::new)?;
    Ok((title, text, kernel))
}

/// Runs `f` with ESP `uuid` mounted (its root-relative mount directory
/// passed in); unmounts it whatever `f` returned. Not generic: one copy.
fn with_esp(
    host: &mut Host,
    uuid: &str,
    f: &mut dyn FnMut(&mut Host, &str) -> Result<(), StepError>,
) -> Result<(), StepError> {
    let dir = format!("{}/{uuid}", sd::MOUNT_DIR);
    host.fs()?.create_dir_all(&dir, 0o700)?;
    let abs = host.path(&dir)?.display().to_string();
    let dev = format!("/dev/disk/by-uuid/{uuid}");
    let spec = host.command(
        "mount",
        &["-t", "vfat", &dev, &abs],
        "mount the ESP for the trial boot entry",
    );
    run_or(host, spec, "check the ESP (`proxmox-boot-tool status`)")?;
    // An ESP without systemd-boot's loader/ fails in `f` (no default
    // entry), before anything is written.
    let result = f(host, &dir);
    let spec = host.command("umount", &[&abs], "unmount the ESP");
    let unmounted = run_or(host, spec, "unmount it by hand");
    result?;
    unmounted.map(|_| ())
}

/// Arms the trial: the record (saved before any entry is written, so a
/// clean-up knows what to remove), the entry, the boot loader's one-shot.
/// Run again after a power cut it writes the same entry again, never a
/// second one. systemd-boot: each ESP is mounted once, its default entry
/// (with a pin, that kernel's `proxmox-V.conf`) read and the trial entry
/// written next to it.
pub(super) fn arm(host: &mut Host, kind: BootloaderKind, args: &[String]) -> Result<(), StepError> {
    let boot = boot_id(host)?;
    let pinned = pin_pending(host)?;
    let to_pin = pinned.as_deref();
    let mut trial = match kind {
        BootloaderKind::Grub => {
            let (title, text, kernel) = grub_trial(host, args, to_pin)?;
            let mut trial = Trial::armed(kind, ENTRY_ID, &title, args, &kernel, &boot);
            trial.pin = to_pin.is_some();
            save(host, &trial)?;
            host.write_atomic(grub::SCRIPT, grub::script(&text).as_bytes(), 0o755)?;
            refresh(host, kind, "add the trial boot entry to grub.cfg")?;
            let spec = host.command(
                "grub-reboot",
                &[ENTRY_ID],
                "boot the trial entry once, at the next boot",
            );
            run_or(host, spec, "check /boot/grub/grubenv")?;
            trial
        }
        BootloaderKind::SystemdBoot => {
            let uuids = sd::esp_uuids(&host.read_opt(sd::BOOT_UUIDS)?.unwrap_or_default())
                .map_err(StepError::new)?;
            let options = kernel_cmdline(&current_cmdline(host)?, args);
            need_root(&options)?;
            let running = host.facts.kernel.release.clone().unwrap_or_default();
            let mut trial = Trial::armed(kind, sd::ENTRY_FILE, "", args, "", &boot);
            trial.pin = to_pin.is_some();
            trial.esps = uuids.clone();
            for uuid in &uuids {
                with_esp(host, uuid, &mut |host, dir| {
                    let fs = host.fs()?;
                    let entries_dir = format!("{dir}/{}", sd::ENTRIES_DIR);
                    let entries: Vec<String> = fs
                        .read_dir(&entries_dir)?
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|n| n.into_string().ok())
                        .collect();
                    let conf = fs.read_to_string(&format!("{dir}/{}", sd::LOADER_CONF))?;
                    let default = conf.as_deref().and_then(|c| sd::value(c, "default"));
                    let name = sd::default_entry(
                        default.filter(|_| to_pin.is_none()),
                        &entries,
                        to_pin.unwrap_or(&running),
                    )
                    .map_err(|e| StepError::new(format!("ESP {uuid}: {e}")))?;
                    let text = fs
                        .read_to_string(&format!("{entries_dir}/{name}"))?
                        .unwrap_or_default();
                    let title = trial_title(sd::value(&text, "title").unwrap_or(&name), args);
                    let (entry, kernel) = sd::trial_entry(&text, &title, &options)
                        .map_err(|e| StepError::new(format!("ESP {uuid}, {name}: {e}")))?;
                    if trial.title.is_empty() {
                        trial.title = title;
                        trial.kernel = kernel;
                        save(host, &trial)?;
                    }
                    let path = format!("{entries_dir}/{}", sd::ENTRY_FILE);
                    Ok(fs.write_atomic(&path, entry.as_bytes(), 0o644)?)
                })?;
            }
            let spec = host.command(
                "bootctl",
                &["set-oneshot", sd::ENTRY_FILE],
                "boot the trial entry once, at the next boot",
            );
            run_or(host, spec, "check `bootctl status` and the EFI variables")?;
            trial
        }
    };
    trial.oneshot_boot = Some(boot);
    save(host, &trial)?;
    host.note(format!(
        "trial boot armed: {}; the default unchanged until it comes up",
        trial.describe()
    ));
    Ok(())
}

/// Removes the trial entry (GRUB: the script, then `update-grub`;
/// systemd-boot: the entry on every ESP). Idempotent.
fn remove_entry(host: &mut Host, t: &Trial) -> Result<(), StepError> {
    match t.loader {
        BootloaderKind::Grub => {
            if host.exists(grub::SCRIPT) {
                host.remove_file(grub::SCRIPT)?;
                refresh(host, t.loader, "remove the trial boot entry from grub.cfg")?;
            }
        }
        BootloaderKind::SystemdBoot => {
            for uuid in &t.esps {
                with_esp(host, uuid, &mut |host, dir| {
                    host.fs()?.remove_file(&format!(
                        "{dir}/{}/{}",
                        sd::ENTRIES_DIR,
                        sd::ENTRY_FILE
                    ))?;
                    Ok(())
                })?;
            }
        }
    }
    Ok(())
}

/// Makes the trial's arguments the default (the drop-in or
/// `/etc/kernel/cmdline`, as before the trial) and pins its kernel when it
/// is a pin's, removes the trial entry, and records it committed.
/// Idempotent: a power cut in it is finished by running it again (the pin
/// runs once: not again once the pin file names the kernel).
pub(super) fn commit(host: &mut Host, t: &mut Trial) -> Result<(), StepError> {
    let args = desired_kernel_args(host)?;
    let ops = default_ops(host, t.loader, &args)?;
    host.apply(&ops)?;
    if t.pin {
        pin(host, &t.kernel)?;
    }
    match t.loader {
        BootloaderKind::Grub => {
            host.remove_file(grub::SCRIPT)?;
            refresh(
                host,
                t.loader,
                "make the trial the default, without its entry",
            )?;
        }
        BootloaderKind::SystemdBoot => {
            refresh(host, t.loader, "make the trial the default")?;
            remove_entry(host, t)?;
        }
    }
    t.status = TrialStatus::Committed;
    save(host, t)?;
    host.note(format!(
        "trial committed: {} came up, it is the default now",
        t.describe()
    ));
    Ok(())
}

/// Ends a trial that must not become the default: its entry removed, the
/// record failed with `reason`; returns the step's error. A problem while
/// removing the entry is added to the reason.
pub(super) fn fail(host: &mut Host, t: &mut Trial, reason: String) -> StepError {
    let mut reason = reason;
    if let Err(e) = remove_entry(host, t) {
        reason.push_str(&format!(
            "; removing the trial entry failed too ({}): remove it by hand (/etc/grub.d/42_vgpu-bake-trial, or each ESP's loader/entries/vgpu-bake-trial.conf)",
            e.reason
        ));
    }
    t.status = TrialStatus::Failed;
    t.reason = Some(reason.clone());
    if let Err(e) = save(host, t) {
        reason.push_str(&format!("; {}", e.reason));
    }
    StepError::new(reason)
}

/// Undo: an armed or came-up trial's entry removed (files through the
/// root, not journaled) and an unused one-shot cleared; the record marked
/// failed. Nothing when no trial is under way.
pub(crate) fn undo(host: &mut Host) -> Result<(), StepError> {
    let Some(mut t) = load(host)?.filter(Trial::active) else {
        return Ok(());
    };
    match t.loader {
        BootloaderKind::Grub => {
            host.fs()?.remove_file(grub::SCRIPT)?;
            if t.status == TrialStatus::Armed {
                let env = host.path(grub::GRUBENV)?.display().to_string();
                let spec = host.command(
                    "grub-editenv",
                    &[&env, "unset", "next_entry"],
                    "undo: the trial boot must not happen",
                );
                host.run(spec)?;
            }
        }
        BootloaderKind::SystemdBoot => {
            remove_entry(host, &t)?;
            if t.status == TrialStatus::Armed {
                let spec = host.command(
                    "bootctl",
                    &["set-oneshot", ""],
                    "undo: the trial boot must not happen",
                );
                host.run(spec)?;
            }
        }
    }
    t.status = TrialStatus::Failed;
    t.reason = Some("removed by `vgpu-firstboot undo`".into());
    save(host, &t)?;
    host.note(format!("trial boot entry removed: {}", t.describe()));
    Ok(())
}

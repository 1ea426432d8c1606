//! The trial boot: new kernel arguments are booted once, through a one-shot
//! boot entry, before they become the default.
//!
//! Phase 1 (`kernel-args`) does not change the default entry. It writes an
//! extra entry (GRUB: a generated `menuentry` in
//! [`grub::SCRIPT`], then `grub-reboot`; systemd-boot: a loader entry on
//! every ESP, then `bootctl set-oneshot`) and records the trial here. The
//! next boot boots it once. Phase 2 (`verify-reboot`) makes the arguments
//! the default only when that boot came up and passed its checks (the
//! commit). A trial that does not come up (panic, hang, power cut) is
//! followed by a boot of the old default, which is unchanged: the agent
//! reports it and stops, it never loops.
//!
//! The record ([`TRIAL_FILE`], in the agent's state directory, written
//! atomically) says what the trial is and how far it got; [`seen`] is the
//! pure decision over it, the boot and the running command line. The
//! effects are in the steps (`steps/boot_trial.rs`).

pub mod grub;
pub mod systemd_boot;

use std::fmt::Write as _;

use toml::{Table, Value};

use crate::facts::BootloaderKind;

/// The trial's record.
pub const TRIAL_FILE: &str = "var/lib/vgpu-firstboot/trial.toml";
/// The id of the trial entry (GRUB `--id`; systemd-boot entry file stem).
pub const ENTRY_ID: &str = "vgpu-bake-trial";

/// How far a trial got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrialStatus {
    /// The entry is written (and, once `oneshot_boot` is set, the one-shot
    /// is set): the trial boot is ahead.
    Armed,
    /// A boot ran with the trial's arguments: they are proven bootable.
    CameUp,
    /// The arguments are the default now; the trial entry is gone.
    Committed,
    /// The trial did not come up, or its boot failed a check, or it was
    /// undone: the default is unchanged and the entry is gone.
    Failed,
}

impl TrialStatus {
    /// The word in the record and in `status`.
    pub fn name(self) -> &'static str {
        match self {
            TrialStatus::Armed => "armed",
            TrialStatus::CameUp => "came-up",
            TrialStatus::Committed => "committed",
            TrialStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            TrialStatus::Armed,
            TrialStatus::CameUp,
            TrialStatus::Committed,
            TrialStatus::Failed,
        ]
        .into_iter()
        .find(|t| t.name() == s)
    }
}

/// One trial of new kernel arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trial {
    /// The boot loader that boots it.
    pub loader: BootloaderKind,
    /// The one-shot target: GRUB's entry id, or the loader entry's file name.
    pub entry: String,
    /// The trial entry's title.
    pub title: String,
    /// The arguments the trial adds to the default entry's.
    pub args: Vec<String>,
    /// The kernel version the entry boots.
    pub kernel: String,
    /// systemd-boot: the ESPs (UUIDs) that hold the entry.
    pub esps: Vec<String>,
    /// The boot in which the trial was armed.
    pub armed_boot: String,
    /// The boot in which the one-shot was set (`grub-reboot` or `bootctl
    /// set-oneshot` succeeded); the next boot uses it up.
    pub oneshot_boot: Option<String>,
    /// How far it got.
    pub status: TrialStatus,
    /// The boot that ran the trial's arguments.
    pub came_up_boot: Option<String>,
    /// The boot in which the agent asked for the one reboot into the
    /// committed default (a trial that came up before a power cut).
    pub commit_reboot_boot: Option<String>,
    /// Why it failed.
    pub reason: Option<String>,
}

impl Trial {
    /// A trial armed now (the one-shot not yet set).
    pub fn armed(
        loader: BootloaderKind,
        entry: &str,
        title: &str,
        args: &[String],
        kernel: &str,
        boot: &str,
    ) -> Trial {
        Trial {
            loader,
            entry: entry.to_owned(),
            title: title.to_owned(),
            args: args.to_vec(),
            kernel: kernel.to_owned(),
            esps: Vec::new(),
            armed_boot: boot.to_owned(),
            oneshot_boot: None,
            status: TrialStatus::Armed,
            came_up_boot: None,
            commit_reboot_boot: None,
            reason: None,
        }
    }

    /// Whether the trial is still under way (its entry may be on disk).
    pub fn active(&self) -> bool {
        matches!(self.status, TrialStatus::Armed | TrialStatus::CameUp)
    }

    /// One line: what the trial is.
    pub fn describe(&self) -> String {
        format!(
            "{} entry \"{}\" (kernel {}, adding {})",
            self.loader,
            self.title,
            self.kernel,
            self.args.join(" ")
        )
    }

    /// The `trial` object of `status --json` (kebab-case keys).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        let s = |v: &str| serde_json::to_string(v);
        let mut o = format!(
            "{{\"status\":{},\"loader\":{},\"entry\":{},\"title\":{},\"kernel\":{},\"args\":{}",
            s(self.status.name())?,
            s(&self.loader.to_string())?,
            s(&self.entry)?,
            s(&self.title)?,
            s(&self.kernel)?,
            serde_json::to_string(&self.args)?
        );
        if let Some(r) = &self.reason {
            o.push_str(&format!(",\"reason\":{}", s(r)?));
        }
        o.push('}');
        Ok(o)
    }

    /// One line for `status`.
    pub fn status_line(&self) -> String {
        let mut line = format!("trial boot: {}: {}", self.status.name(), self.describe());
        if let Some(r) = &self.reason {
            line.push_str(&format!(": {r}"));
        }
        line
    }

    /// The record's text.
    pub fn to_toml(&self) -> String {
        let mut o = String::from("# vgpu-firstboot: the trial boot of new kernel arguments\n");
        let q = |s: &str| {
            let mut out = String::new();
            crate::state::toml_string(&mut out, s);
            out
        };
        let list = |v: &[String]| {
            let items: Vec<String> = v.iter().map(|s| q(s)).collect();
            format!("[{}]", items.join(", "))
        };
        let loader = match self.loader {
            BootloaderKind::Grub => "grub",
            BootloaderKind::SystemdBoot => "systemd-boot",
        };
        let _ = writeln!(o, "loader = {}", q(loader));
        let _ = writeln!(o, "entry = {}", q(&self.entry));
        let _ = writeln!(o, "title = {}", q(&self.title));
        let _ = writeln!(o, "args = {}", list(&self.args));
        let _ = writeln!(o, "kernel = {}", q(&self.kernel));
        let _ = writeln!(o, "esps = {}", list(&self.esps));
        let _ = writeln!(o, "armed-boot = {}", q(&self.armed_boot));
        let _ = writeln!(o, "status = {}", q(self.status.name()));
        for (k, v) in [
            ("oneshot-boot", &self.oneshot_boot),
            ("came-up-boot", &self.came_up_boot),
            ("commit-reboot-boot", &self.commit_reboot_boot),
            ("reason", &self.reason),
        ] {
            if let Some(v) = v {
                let _ = writeln!(o, "{k} = {}", q(v));
            }
        }
        o
    }

    /// Reads a record; the error names the key.
    pub fn from_toml(text: &str) -> Result<Trial, String> {
        let t: Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
        let s = |k: &str| -> Result<String, String> {
            t.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("`{k}` is missing or not a string"))
        };
        let opt = |k: &str| t.get(k).and_then(Value::as_str).map(str::to_owned);
        let list = |k: &str| -> Result<Vec<String>, String> {
            let bad = || format!("`{k}` is missing or not a list of strings");
            t.get(k)
                .and_then(Value::as_array)
                .ok_or_else(bad)?
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or_else(bad))
                .collect()
        };
        let loader = match s("loader")?.as_str() {
            "grub" => BootloaderKind::Grub,
            "systemd-boot" => BootloaderKind::SystemdBoot,
            other => return Err(format!("`loader` = {other:?} is not grub or systemd-boot")),
        };
        let status = s("status")?;
        Ok(Trial {
            loader,
            entry: s("entry")?,
            title: s("title")?,
            args: list("args")?,
            kernel: s("kernel")?,
            esps: list("esps")?,
            armed_boot: s("armed-boot")?,
            oneshot_boot: opt("oneshot-boot"),
            status: TrialStatus::parse(&status)
                .ok_or_else(|| format!("`status` = {status:?} is not a trial status"))?,
            came_up_boot: opt("came-up-boot"),
            commit_reboot_boot: opt("commit-reboot-boot"),
            reason: opt("reason"),
        })
    }
}

/// What the running boot says about a trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// No trial, or one that is over (committed or failed).
    Over,
    /// Armed; the one-shot is not yet used: the trial boot is ahead.
    Ahead,
    /// This boot runs with the trial's arguments.
    Up,
    /// The one-shot was used by an earlier boot that never came up: the
    /// host is back on its old default.
    DidNotComeUp,
    /// The trial came up in an earlier boot and this one lacks its
    /// arguments: the power went before (or during) the commit.
    CameUpEarlier,
}

/// The decision over the record, the current boot id and whether the
/// running command line has the trial's arguments. A one-shot is used by
/// the boot after the one that set it, so a later boot without the
/// arguments, with no boot seen running them, means the trial boot did not
/// come up.
pub fn seen(trial: Option<&Trial>, boot: &str, running_has_args: bool) -> Seen {
    let Some(t) = trial.filter(|t| t.active()) else {
        return Seen::Over;
    };
    if running_has_args {
        return Seen::Up;
    }
    match (t.status, t.oneshot_boot.as_deref()) {
        (TrialStatus::CameUp, _) => Seen::CameUpEarlier,
        (_, Some(set)) if set != boot => Seen::DidNotComeUp,
        _ => Seen::Ahead,
    }
}

/// The failure when the trial boot did not come up: what it was, that the
/// default is unchanged, and what to do.
pub fn did_not_come_up(t: &Trial) -> String {
    format!(
        "the trial boot of {} did not come up (panic, hang or power cut): the host booted its old default entry, which is unchanged, and the arguments were not made the default; check the arguments on a console (boot the trial entry by hand from the boot menu and read the kernel's messages), fix the profile's extra kernel arguments (`host.kernel-args`) and rebake, or `vgpu-firstboot retry` to try the same arguments once more",
        t.describe()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial() -> Trial {
        Trial::armed(
            BootloaderKind::Grub,
            ENTRY_ID,
            "vgpu-bake trial: Proxmox VE GNU/Linux + intel_iommu=on",
            &["intel_iommu=on".to_owned(), "iommu=pt".to_owned()],
            "6.8.12-9-pve",
            "boot-1",
        )
    }

    #[test]
    fn record_round_trips() {
        let mut t = trial();
        assert_eq!(Trial::from_toml(&t.to_toml()).unwrap(), t);
        t.loader = BootloaderKind::SystemdBoot;
        t.esps = vec!["1234-ABCD".into()];
        t.oneshot_boot = Some("boot-1".into());
        t.status = TrialStatus::Failed;
        t.reason = Some("a \"quoted\"\nreason".into());
        assert_eq!(Trial::from_toml(&t.to_toml()).unwrap(), t);
        let bad = t.to_toml().replace("\"failed\"", "\"maybe\"");
        assert!(Trial::from_toml(&bad).unwrap_err().contains("`status`"));
    }

    #[test]
    fn seen_follows_the_one_shot() {
        let mut t = trial();
        assert_eq!(seen(None, "boot-1", false), Seen::Over);
        // Armed, the one-shot not set yet, or set in this boot: ahead.
        assert_eq!(seen(Some(&t), "boot-2", false), Seen::Ahead);
        t.oneshot_boot = Some("boot-1".into());
        assert_eq!(seen(Some(&t), "boot-1", false), Seen::Ahead);
        // The next boot used it up.
        assert_eq!(seen(Some(&t), "boot-2", true), Seen::Up);
        assert_eq!(seen(Some(&t), "boot-2", false), Seen::DidNotComeUp);
        t.status = TrialStatus::CameUp;
        assert_eq!(seen(Some(&t), "boot-3", false), Seen::CameUpEarlier);
        assert_eq!(seen(Some(&t), "boot-3", true), Seen::Up);
        for s in [TrialStatus::Committed, TrialStatus::Failed] {
            t.status = s;
            assert_eq!(seen(Some(&t), "boot-3", false), Seen::Over);
            assert_eq!(seen(Some(&t), "boot-3", true), Seen::Over);
        }
    }
}

//! The trial boot: new kernel arguments, or a kernel the plan pins, are
//! booted once, through a one-shot boot entry, before they become the
//! default.
//!
//! Phase 1 (`kernel-args`) does not change the default entry (and
//! `kernel-pin` does not pin: it only records its choice). It writes an
//! extra entry (GRUB: a generated `menuentry` in
//! [`grub::SCRIPT`], then `grub-reboot`; systemd-boot: a loader entry on
//! every ESP, then `bootctl set-oneshot`) and records the trial here. The
//! next boot boots it once (with a pin, the chosen kernel's entry).
//! Phase 2 (`verify-reboot`) makes the arguments the default and pins the
//! kernel only when that boot came up and passed its checks (the commit).
//! A trial that does not come up (panic, hang, power cut) is followed by a
//! boot of the old default, which is unchanged: the agent reports it and
//! stops, it never loops.
//!
//! The record ([`TRIAL_FILE`], in the agent's state directory, written
//! atomically) says what the trial is and how far it got; [`seen`] is the
//! pure decision over it, the boot and the running command line. The
//! effects are in the steps (`steps/boot_trial.rs`).

pub mod grub;
pub mod systemd_boot;

use std::fmt::Write as _;

use crate::facts::BootloaderKind;

/// The trial's record.
pub const TRIAL_FILE: &str = "var/lib/vgpu-firstboot/trial";
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
        use TrialStatus::*;
        [Armed, CameUp, Committed, Failed]
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
    /// The kernel is the one kernel-pin chose: the commit pins it, and the
    /// trial came up only when it runs.
    pub pin: bool,
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
            pin: false,
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
            "{} entry \"{}\" (kernel {}{}, adding {})",
            self.loader,
            self.title,
            self.kernel,
            if self.pin { " to pin" } else { "" },
            self.args.join(" ")
        )
    }

    /// The `trial` object of `status --json`: its status, what it is
    /// (as [`Trial::describe`] says it) and why it failed.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        let s = |v: &str| serde_json::to_string(v);
        Ok(format!(
            "{{\"status\":\"{}\",\"trial\":{},\"reason\":{}}}",
            self.status.name(),
            s(&self.describe())?,
            s(self.reason.as_deref().unwrap_or(""))?
        ))
    }

    /// One line for `status`.
    pub fn status_line(&self) -> String {
        let mut line = format!("trial boot: {}: {}", self.status.name(), self.describe());
        if let Some(r) = &self.reason {
            line.push_str(&format!(": {r}"));
        }
        line
    }

    /// The record's text: one `key: value` a line (values never hold a
    /// newline: one is written as a space; arguments and ESP UUIDs never
    /// hold whitespace, so they are space-separated). Hand-made, like the
    /// state file's codec, to keep the agent small.
    pub fn to_text(&self) -> String {
        let loader = match self.loader {
            BootloaderKind::Grub => "grub",
            BootloaderKind::SystemdBoot => "systemd-boot",
        };
        let mut o = format!(
            "loader: {loader}\nentry: {}\ntitle: {}\nargs: {}\nkernel: {}\npin: {}\nesps: {}\narmed-boot: {}\nstatus: {}\n",
            self.entry,
            self.title.replace(['\n', '\r'], " "),
            self.args.join(" "),
            self.kernel,
            self.pin,
            self.esps.join(" "),
            self.armed_boot,
            self.status.name()
        );
        for (k, v) in [
            ("oneshot-boot", &self.oneshot_boot),
            ("came-up-boot", &self.came_up_boot),
            ("commit-reboot-boot", &self.commit_reboot_boot),
            ("reason", &self.reason),
        ] {
            if let Some(v) = v {
                // One value a line: a newline in a reason becomes a space.
                let _ = writeln!(o, "{k}: {}", v.replace(['\n', '\r'], " "));
            }
        }
        o
    }

    /// Reads a record written by [`Trial::to_text`]; the error names the
    /// line it could not take.
    pub fn from_text(text: &str) -> Result<Trial, String> {
        let mut t = Trial::armed(BootloaderKind::Grub, "", "", &[], "", "");
        let mut status = None;
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (k, v) = line.split_once(':').unwrap_or((line, ""));
            let v = v.strip_prefix(' ').unwrap_or(v).to_owned();
            let words = || v.split_whitespace().map(str::to_owned).collect();
            let bad = format!("line {line:?} is not a trial record line");
            match k {
                "loader" if v == "grub" => t.loader = BootloaderKind::Grub,
                "loader" if v == "systemd-boot" => t.loader = BootloaderKind::SystemdBoot,
                "status" if status.is_none() => {
                    status = TrialStatus::parse(&v);
                    if status.is_none() {
                        return Err(bad);
                    }
                }
                "entry" => t.entry = v,
                "title" => t.title = v,
                "args" => t.args = words(),
                "kernel" => t.kernel = v,
                "pin" => t.pin = v == "true",
                "esps" => t.esps = words(),
                "armed-boot" => t.armed_boot = v,
                "oneshot-boot" => t.oneshot_boot = Some(v),
                "came-up-boot" => t.came_up_boot = Some(v),
                "commit-reboot-boot" => t.commit_reboot_boot = Some(v),
                "reason" => t.reason = Some(v),
                _ => return Err(bad),
            }
        }
        t.status = status.ok_or("no `status` line")?;
        if t.entry.is_empty() {
            return Err("no `entry` line".into());
        }
        Ok(t)
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

/// The decision over the record, the current boot id and whether this
/// boot runs the trial (its arguments, and with a pin its kernel). A
/// one-shot is used by the boot after the one that set it, so a later boot
/// that does not run the trial, with no boot seen running it, means the
/// trial boot did not come up.
pub fn seen(trial: Option<&Trial>, boot: &str, running_trial: bool) -> Seen {
    let Some(t) = trial.filter(|t| t.active()) else {
        return Seen::Over;
    };
    if running_trial {
        return Seen::Up;
    }
    match (t.status, t.oneshot_boot.as_deref()) {
        (TrialStatus::CameUp, _) => Seen::CameUpEarlier,
        (_, Some(set)) if set != boot => Seen::DidNotComeUp,
        _ => Seen::Ahead,
    }
}

/// The kernel version of a `linux` image path: `/boot/vmlinuz-V` gives `V`.
pub fn image_kernel(image: &str) -> &str {
    image
        .rsplit('/')
        .next()
        .unwrap_or(image)
        .trim_start_matches("vmlinuz-")
}

/// The failure when the trial boot did not come up: what it was, that the
/// default is unchanged, and what to do.
pub fn did_not_come_up(t: &Trial) -> String {
    format!(
        "the trial boot of {} did not come up (panic, hang or power cut): the host booted its old default, which is unchanged (no pin); boot the trial entry from the boot menu to read its kernel's messages, fix `host.kernel-args` or `host.kernel-pin` and rebake, or `vgpu-firstboot retry` to try it once more",
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
        assert_eq!(Trial::from_text(&t.to_text()).unwrap(), t);
        t.loader = BootloaderKind::SystemdBoot;
        t.esps = vec!["1234-ABCD".into()];
        t.pin = true;
        t.oneshot_boot = Some("boot-1".into());
        t.status = TrialStatus::Failed;
        t.reason = Some("a \"quoted\": reason".into());
        assert_eq!(Trial::from_text(&t.to_text()).unwrap(), t);
        let bad = t.to_text().replace("status: failed", "status: maybe");
        assert!(
            Trial::from_text(&bad)
                .unwrap_err()
                .contains("\"status: maybe\"")
        );
        // A newline in a value cannot break the record.
        t.reason = Some("two\nlines".into());
        assert_eq!(
            Trial::from_text(&t.to_text()).unwrap().reason.unwrap(),
            "two lines"
        );
        assert!(Trial::from_text("loader: grub\n").is_err());
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

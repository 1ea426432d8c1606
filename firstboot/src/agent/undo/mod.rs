//! `vgpu-firstboot undo`: every change in the change journal
//! ([`crate::agent::journal`]) reverted, newest first.
//!
//! The pure part is here: the journal becomes an ordered list of
//! [`Action`]s ([`actions`]), and the reboot verdict is a decision over what
//! was reverted and what the running kernel has ([`verdict`]). The effects
//! are in [`apply`]; every action is idempotent, so an undo cut short by a
//! power cut is finished by running `undo` again (the journal is moved
//! aside only once everything succeeded).

pub mod apply;

use crate::agent::journal::{Before, Change, Journal, Record};
use vgpu_plan::layout::STATE_DIR;

/// Written when an undo finished: the plan's changes are reverted and
/// nothing applies them again (`run` refuses while it exists).
pub const UNDONE_MARKER: &str = "var/lib/vgpu-firstboot/undone";
/// Where the journal goes once its changes are reverted.
pub const UNDONE_JOURNAL: &str = "var/lib/vgpu-firstboot/journal.undone";
/// The install-driver step's markers (in the agent's state directory, not
/// journaled): removed with the driver, so a later run installs it again.
pub const DRIVER_MARKERS: [&str; 2] = [
    "var/lib/vgpu-firstboot/driver-installed",
    "var/lib/vgpu-firstboot/driver-installing",
];

/// One thing undo does, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `path` put back as it was before the agent: removed (it was absent),
    /// removed when empty (a directory the agent created), its backup
    /// written back with its mode, or the symlink made again.
    Restore {
        /// Root-relative path.
        path: String,
        /// What it was.
        before: Before,
    },
    /// Every package the agent installed that is still installed, in one
    /// `apt-get purge -y`.
    Purge(Vec<String>),
    /// `tool --uninstall -s`, when the tool is still there.
    UninstallDriver {
        /// The driver version.
        version: String,
        /// Root-relative path of the installed driver's own tool.
        tool: String,
    },
    /// `systemctl disable --now unit`.
    DisableUnit(String),
    /// `proxmox-boot-tool kernel pin previous`, or `kernel unpin`.
    RestorePin {
        /// The version the agent pinned.
        version: String,
        /// The pin before it.
        previous: Option<String>,
    },
    /// `podman rmi image`, when podman has it.
    RemoveImage(String),
    /// `update-initramfs -u -k all`.
    RefreshInitramfs,
    /// The boot loader's configuration regenerated (`update-grub` or
    /// `proxmox-boot-tool refresh`, as the kernel-args step does).
    RefreshBoot,
}

/// Paths whose change goes into the initramfs or the module set the kernel
/// loads at boot.
const BOOT_TIME_PREFIXES: [&str; 6] = [
    "etc/modprobe.d",
    "etc/modules",
    "etc/modules-load.d",
    "etc/initramfs-tools",
    "etc/udev",
    "etc/kernel/proxmox-boot-pin",
];

/// The journal's records as actions, newest first; the packages go in one
/// purge where the oldest package record was (after everything done after
/// any install: the driver, the pin, the files), and the boot refreshes
/// come last, when anything was journaled.
pub fn actions(journal: &Journal) -> Vec<Action> {
    let mut out = Vec::new();
    let mut packages: Vec<String> = Vec::new();
    let mut purge_at = None;
    for r in journal.records.iter().rev() {
        match r {
            Record::Path { path, before } => out.push(Action::Restore {
                path: path.clone(),
                before: before.clone(),
            }),
            Record::Change(c) => match c {
                Change::Package(p) => {
                    if !packages.contains(p) {
                        packages.insert(0, p.clone());
                    }
                    purge_at = Some(out.len());
                }
                Change::Driver { version, tool } => out.push(Action::UninstallDriver {
                    version: version.clone(),
                    tool: tool.clone(),
                }),
                Change::UnitEnabled(u) => out.push(Action::DisableUnit(u.clone())),
                Change::KernelPin { version, previous } => out.push(Action::RestorePin {
                    version: version.clone(),
                    previous: previous.clone(),
                }),
                Change::ContainerImage(i) => out.push(Action::RemoveImage(i.clone())),
            },
        }
    }
    if let Some(at) = purge_at {
        out.insert(at, Action::Purge(packages));
    }
    if !journal.records.is_empty() {
        out.push(Action::RefreshInitramfs);
        out.push(Action::RefreshBoot);
    }
    out
}

impl Action {
    /// One line for `undo --dry-run` and the journal.
    pub fn describe(&self) -> String {
        match self {
            Action::Restore { path, before } => match before {
                Before::Absent => format!("remove /{path} (the agent created it)"),
                Before::AbsentDir => {
                    format!("remove directory /{path} when empty (the agent created it)")
                }
                Before::File { backup, mode } => format!(
                    "restore /{path} from the backup taken before the agent's first edit ({STATE_DIR}/journal/backup/{backup}, mode {mode:04o})"
                ),
                Before::Symlink(t) => format!("restore symlink /{path} -> {t}"),
            },
            Action::Purge(p) => format!(
                "`apt-get purge -y` of those still installed of the packages the agent installed: {}",
                p.join(" ")
            ),
            Action::UninstallDriver { version, tool } => {
                format!("`/{tool} --uninstall -s`: remove the vGPU host driver {version}")
            }
            Action::DisableUnit(u) => format!("`systemctl disable --now {u}`"),
            Action::RestorePin { version, previous } => match previous {
                Some(p) => format!("`proxmox-boot-tool kernel pin {p}`: the pin before the agent's {version}"),
                None => format!("`proxmox-boot-tool kernel unpin`: no kernel was pinned before the agent's {version}"),
            },
            Action::RemoveImage(i) => format!("`podman rmi {i}`"),
            Action::RefreshInitramfs => {
                "`update-initramfs -u -k all`: rebuild every initramfs without the agent's modules, blacklist and rules".into()
            }
            Action::RefreshBoot => {
                "refresh the boot configuration (`update-grub` or `proxmox-boot-tool refresh`, as kernel-args did)".into()
            }
        }
    }

    /// Whether reverting this changes what the next boot loads.
    fn changes_boot(&self) -> Option<String> {
        match self {
            Action::Restore { path, .. }
                if BOOT_TIME_PREFIXES.iter().any(|p| {
                    path == p
                        || path.starts_with(&format!("{p}/"))
                        || path.starts_with(&format!("{p}."))
                }) =>
            {
                Some(format!("/{path} changed the modules or the initramfs"))
            }
            Action::UninstallDriver { version, .. } => Some(format!(
                "the driver {version} was removed (its modules may be loaded)"
            )),
            Action::RestorePin { version, .. } => {
                Some(format!("the kernel pin {version} was reverted"))
            }
            _ => None,
        }
    }
}

/// Whether the host needs a reboot after an undo, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// A reboot is needed.
    pub reboot: bool,
    /// Why (or why not), one phrase each.
    pub because: Vec<String>,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "reboot needed: {}, because {}",
            if self.reboot { "yes" } else { "no" },
            self.because.join("; ")
        )
    }
}

/// The verdict: a reboot is needed when the running kernel's command line
/// (`running`) still has one of the agent's kernel arguments (`planned`)
/// that the restored boot configuration (`configured`, the text of its
/// files) no longer has, or when an action changed the modules, the
/// initramfs, the driver or the kernel pin.
pub fn verdict(actions: &[Action], running: &str, planned: &[String], configured: &str) -> Verdict {
    let conf: Vec<&str> = configured
        .split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .collect();
    let stale: Vec<&str> = running
        .split_whitespace()
        .filter(|a| planned.iter().any(|p| p == a) && !conf.contains(a))
        .collect();
    let mut because = Vec::new();
    if !stale.is_empty() {
        because.push(format!(
            "the running kernel still has {} on /proc/cmdline and the boot configuration no longer does",
            stale.join(" ")
        ));
    }
    let mut seen = Vec::new();
    for why in actions.iter().filter_map(Action::changes_boot) {
        if !seen.contains(&why) {
            seen.push(why);
        }
    }
    because.extend(seen);
    let reboot = !because.is_empty();
    if !reboot {
        because.push(
            "the running kernel has none of the agent's arguments and no module, driver or pin changed"
                .into(),
        );
    }
    Verdict { reboot, because }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str, before: Before) -> Record {
        Record::Path {
            path: p.into(),
            before,
        }
    }

    #[test]
    fn actions_are_newest_first_with_one_purge_where_the_first_install_was() {
        let j = Journal {
            records: vec![
                path(
                    "etc/apt/sources.list",
                    Before::File {
                        backup: 0,
                        mode: 0o644,
                    },
                ),
                Record::Change(Change::Package("proxmox-kernel-6.5".into())),
                path("etc/kernel/proxmox-boot-pin", Before::Absent),
                Record::Change(Change::KernelPin {
                    version: "6.5".into(),
                    previous: None,
                }),
                Record::Change(Change::Package("hello".into())),
                path("etc/modprobe.d", Before::AbsentDir),
                path("etc/modprobe.d/x.conf", Before::Absent),
                Record::Change(Change::Driver {
                    version: "1.0".into(),
                    tool: "usr/bin/nvidia-installer".into(),
                }),
                Record::Change(Change::UnitEnabled("a.service".into())),
            ],
        };
        let a = actions(&j);
        let kinds: Vec<String> = a.iter().map(|a| format!("{a:?}")).collect();
        assert_eq!(a[0], Action::DisableUnit("a.service".into()), "{kinds:#?}");
        assert!(matches!(a[1], Action::UninstallDriver { .. }), "{kinds:#?}");
        assert!(matches!(&a[2], Action::Restore { path, .. } if path == "etc/modprobe.d/x.conf"));
        assert!(matches!(&a[3], Action::Restore { path, .. } if path == "etc/modprobe.d"));
        assert!(matches!(a[4], Action::RestorePin { .. }), "{kinds:#?}");
        assert!(
            matches!(&a[5], Action::Restore { path, .. } if path == "etc/kernel/proxmox-boot-pin")
        );
        assert_eq!(
            a[6],
            Action::Purge(vec!["proxmox-kernel-6.5".into(), "hello".into()])
        );
        assert!(matches!(&a[7], Action::Restore { path, .. } if path == "etc/apt/sources.list"));
        assert_eq!(a[8..], [Action::RefreshInitramfs, Action::RefreshBoot]);
        assert!(actions(&Journal::default()).is_empty());
    }

    #[test]
    fn a_reboot_is_needed_for_stale_arguments_or_boot_time_files() {
        let planned = vec!["intel_iommu=on".to_string(), "iommu=pt".to_string()];
        let files = [Action::Restore {
            path: "etc/default/grub.d/vgpu-bake.cfg".into(),
            before: Before::Absent,
        }];
        let v = verdict(
            &files,
            "ro quiet intel_iommu=on iommu=pt",
            &planned,
            "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"",
        );
        assert!(v.reboot);
        assert!(
            v.to_string().starts_with(
                "reboot needed: yes, because the running kernel still has intel_iommu=on iommu=pt"
            ),
            "{v}"
        );
        // The admin had one of the arguments already: it stays, no reboot for it.
        let v = verdict(
            &files,
            "ro intel_iommu=on",
            &planned,
            "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet intel_iommu=on\"",
        );
        assert!(!v.reboot, "{v}");
        assert!(
            v.to_string().starts_with("reboot needed: no, because"),
            "{v}"
        );
        let modules = [Action::Restore {
            path: "etc/modprobe.d/vgpu-bake-blacklist.conf".into(),
            before: Before::Absent,
        }];
        let v = verdict(&modules, "ro", &planned, "");
        assert!(
            v.reboot && v.to_string().contains("vgpu-bake-blacklist.conf"),
            "{v}"
        );
        let modules_file = [Action::Restore {
            path: "etc/modules".into(),
            before: Before::File {
                backup: 1,
                mode: 0o644,
            },
        }];
        assert!(verdict(&modules_file, "ro", &planned, "").reboot);
        let unrelated = [Action::Restore {
            path: "etc/modules-extra-notes".into(),
            before: Before::Absent,
        }];
        assert!(!verdict(&unrelated, "ro", &planned, "").reboot);
    }
}

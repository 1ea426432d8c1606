//! Decisions the plan leaves to the host: pure functions over [`Facts`].

use serde::{Deserialize, Serialize};

use super::{Facts, FactsError, Vendor};
use vgpu_plan::compat::{CompatEntry, CompatTable, Support};
pub use vgpu_plan::facts::{Obstacle, Severity, proxmox_major, vgpu_possible};
use vgpu_plan::plan::{Bootloader, Iommu};

/// The CPU vendor whose IOMMU arguments to use: the plan's choice, or for
/// `auto` the host's `vendor_id`.
///
/// An explicit choice wins even when the CPU disagrees: the profile's
/// author may know better (and phase 2 checks that the IOMMU came up).
pub fn resolve_iommu(plan: Iommu, facts: &Facts) -> Result<Vendor, FactsError> {
    match plan.fixed_vendor() {
        Some(vendor) => Ok(vendor),
        None => facts
            .cpu
            .vendor()
            .ok_or_else(|| FactsError::UnknownCpuVendor {
                vendor_id: facts.cpu.vendor_id.clone(),
            }),
    }
}

/// Which boot loader's command line the agent edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootloaderKind {
    /// `/etc/default/grub.d/` and `update-grub` (or `proxmox-boot-tool
    /// refresh` when it manages GRUB ESPs).
    Grub,
    /// `/etc/kernel/cmdline` and `proxmox-boot-tool refresh`.
    SystemdBoot,
}

impl std::fmt::Display for BootloaderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BootloaderKind::Grub => "GRUB",
            BootloaderKind::SystemdBoot => "systemd-boot",
        })
    }
}

/// A boot loader decision and the evidence for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BootloaderChoice {
    /// The boot loader.
    pub kind: BootloaderKind,
    /// Why, naming the files (or the plan) that decided it.
    pub reason: String,
}

/// Decides the boot loader.
///
/// systemd-boot only when proxmox-boot-tool manages the ESPs
/// (`/etc/kernel/proxmox-boot-uuids`), the host booted UEFI and
/// `/etc/kernel/cmdline` exists: the ZFS-on-UEFI layout. Everything else,
/// including ESPs that proxmox-boot-tool manages with GRUB (legacy boot),
/// uses GRUB. An explicit plan choice wins; the reason then says when the
/// host's files point the other way.
pub fn resolve_bootloader(plan: Bootloader, facts: &Facts) -> BootloaderChoice {
    let detected = detect_bootloader(facts);
    let (kind, word) = match plan {
        Bootloader::Auto => return detected,
        Bootloader::Grub => (BootloaderKind::Grub, "grub"),
        Bootloader::SystemdBoot => (BootloaderKind::SystemdBoot, "systemd-boot"),
    };
    let mut reason = format!("the plan says host.bootloader = \"{word}\"");
    if detected.kind != kind {
        reason.push_str(&format!(
            "; the host's files point to {}: {}",
            detected.kind, detected.reason
        ));
    }
    BootloaderChoice { kind, reason }
}

fn detect_bootloader(facts: &Facts) -> BootloaderChoice {
    let boot = &facts.boot;
    let grub = |reason: String| BootloaderChoice {
        kind: BootloaderKind::Grub,
        reason,
    };
    if !boot.proxmox_boot_uuids {
        let grub_file = if boot.default_grub {
            "/etc/default/grub present"
        } else {
            "/etc/default/grub missing too, GRUB assumed"
        };
        return grub(format!(
            "no /etc/kernel/proxmox-boot-uuids, so proxmox-boot-tool does not manage the ESPs ({grub_file})"
        ));
    }
    if !facts.firmware.uefi {
        return grub(
            "/etc/kernel/proxmox-boot-uuids exists but the host booted legacy BIOS (no /sys/firmware/efi): proxmox-boot-tool manages GRUB ESPs".into(),
        );
    }
    if boot.kernel_cmdline.is_none() {
        return grub(
            "/etc/kernel/proxmox-boot-uuids exists and the host booted UEFI, but there is no /etc/kernel/cmdline: proxmox-boot-tool manages GRUB ESPs".into(),
        );
    }
    BootloaderChoice {
        kind: BootloaderKind::SystemdBoot,
        reason: "/etc/kernel/proxmox-boot-uuids and /etc/kernel/cmdline exist and the host booted UEFI: proxmox-boot-tool manages systemd-boot ESPs (ZFS-on-UEFI install)".into(),
    }
}

/// One GPU found on the host with what the compatibility table says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GpuVerdict {
    /// PCI address.
    pub address: String,
    /// Device id, 4 hex digits.
    pub device: String,
    /// The table's row; `None` when the id is not in the table.
    pub compat: Option<CompatEntry>,
}

impl GpuVerdict {
    /// Support the table records; `None` when the card is unknown.
    pub fn support(&self) -> Option<Support> {
        self.compat.as_ref().map(|c| c.support)
    }
}

/// Classifies every GPU (not the audio/USB functions) with `table`.
pub fn classify_gpus(facts: &Facts, table: &CompatTable) -> Vec<GpuVerdict> {
    facts
        .gpus()
        .map(|gpu| GpuVerdict {
            address: gpu.address.clone(),
            device: gpu.device.clone(),
            compat: table.lookup(&gpu.device).cloned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{Cpu, PciFunction};

    fn host(vendor: &str, flags: &str, groups: u32) -> Facts {
        let mut facts = Facts::default();
        facts.cpu = crate::facts::read::parse_cpuinfo(&format!(
            "vendor_id : {vendor}\nflags : fpu {flags}\n"
        ));
        facts.iommu.group_count = groups;
        facts.nvidia.push(PciFunction {
            address: "0000:01:00.0".into(),
            vendor: "10de".into(),
            device: "1eb8".into(),
            class: "030200".into(),
            ..PciFunction::default()
        });
        facts
    }

    fn severities(facts: &Facts) -> Vec<Severity> {
        vgpu_possible(facts)
            .err()
            .unwrap_or_default()
            .iter()
            .map(|o| o.severity)
            .collect()
    }

    #[test]
    fn iommu_vendor() {
        let intel = host("GenuineIntel", "vmx", 5);
        let amd = host("AuthenticAMD", "svm", 5);
        assert_eq!(resolve_iommu(Iommu::Auto, &intel).unwrap(), Vendor::Intel);
        assert_eq!(resolve_iommu(Iommu::Auto, &amd).unwrap(), Vendor::Amd);
        assert_eq!(resolve_iommu(Iommu::Amd, &intel).unwrap(), Vendor::Amd);
        let odd = host("HygonGenuine", "svm", 5);
        let err = resolve_iommu(Iommu::Auto, &odd).unwrap_err().to_string();
        assert!(
            err.contains("`HygonGenuine` is neither GenuineIntel nor AuthenticAMD"),
            "{err}"
        );
        let none = Facts::default();
        let err = resolve_iommu(Iommu::Auto, &none).unwrap_err().to_string();
        assert!(err.contains("(no vendor_id in /proc/cpuinfo)"), "{err}");
        assert_eq!(resolve_iommu(Iommu::Intel, &none).unwrap(), Vendor::Intel);
    }

    #[test]
    fn bootloader_rules() {
        let mut f = Facts::default();
        let auto = |f: &Facts| resolve_bootloader(Bootloader::Auto, f).kind;
        assert_eq!(auto(&f), BootloaderKind::Grub);
        f.boot.proxmox_boot_uuids = true;
        f.boot.kernel_cmdline = Some("root=ZFS=rpool/ROOT/pve-1 boot=zfs".into());
        assert_eq!(auto(&f), BootloaderKind::Grub, "legacy BIOS");
        f.firmware.uefi = true;
        assert_eq!(auto(&f), BootloaderKind::SystemdBoot);
        f.boot.kernel_cmdline = None;
        let choice = resolve_bootloader(Bootloader::Auto, &f);
        assert_eq!(choice.kind, BootloaderKind::Grub);
        assert!(
            choice.reason.contains("no /etc/kernel/cmdline"),
            "{}",
            choice.reason
        );
        let forced = resolve_bootloader(Bootloader::SystemdBoot, &f);
        assert_eq!(forced.kind, BootloaderKind::SystemdBoot);
        assert!(forced.reason.starts_with(
            "the plan says host.bootloader = \"systemd-boot\"; the host's files point to GRUB: "
        ));
        let agreed = resolve_bootloader(Bootloader::Grub, &f);
        assert_eq!(agreed.reason, "the plan says host.bootloader = \"grub\"");
    }

    #[test]
    fn obstacles() {
        use Severity::*;
        assert_eq!(vgpu_possible(&host("GenuineIntel", "vmx", 3)), Ok(()));
        assert_eq!(severities(&host("GenuineIntel", "vmx", 0)), [PreReboot]);
        assert_eq!(severities(&host("GenuineIntel", "", 3)), [Fatal]);
        assert_eq!(severities(&host("GenuineIntel", "hypervisor", 0)), [Fatal]);
        assert_eq!(severities(&host("GenuineIntel", "hypervisor", 2)), [Fatal]);
        assert_eq!(
            severities(&host("GenuineIntel", "vmx hypervisor", 2)),
            [Warning]
        );
        assert_eq!(
            severities(&host("GenuineIntel", "vmx hypervisor", 0)),
            [PreReboot, Warning]
        );
        let mut no_gpu = host("GenuineIntel", "vmx", 0);
        no_gpu.nvidia[0].class = "040300".into();
        assert_eq!(severities(&no_gpu), [Fatal, PreReboot]);
        let empty = Facts {
            cpu: Cpu::default(),
            ..no_gpu
        };
        assert_eq!(severities(&empty), [Fatal, PreReboot, Warning]);
    }

    #[test]
    fn majors() {
        let mut f = Facts::default();
        assert_eq!(proxmox_major(&f), None);
        for (name, major) in [
            ("bullseye", Some(7)),
            ("bookworm", Some(8)),
            ("trixie", Some(9)),
            ("sid", None),
        ] {
            f.os.codename = Some(name.into());
            assert_eq!(proxmox_major(&f), major, "{name}");
        }
    }
}

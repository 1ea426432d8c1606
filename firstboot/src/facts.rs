//! Host facts: what the agent knows about the machine it runs on.
//!
//! [`read_facts`] reads everything from files under a root directory (`/` on
//! a real host, a fixture tree in tests, a mounted disk), never from
//! commands such as `lspci`. Every path is resolved by the kernel inside
//! that root ([`vgpu_rootfs::Root`]): relative symlinks (sysfs is full of
//! them) are followed, an absolute link means the same path under the root
//! and `..` stops at the root, as in a chroot, so nothing outside the root
//! is ever read. A symlink loop is recorded in [`Facts::notes`].
//!
//! A missing optional file is a fact (`None`, `false`, empty list), not an
//! error. The decisions the plan leaves to the host (CPU vendor, boot loader,
//! GPU classification, whether vGPU can work at all) are pure functions over
//! [`Facts`] (`resolve_iommu`, `resolve_bootloader`, ...); `render_human` and
//! `render_json` print both.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod decide;
mod read;
mod render;
mod report;

pub use decide::{
    BootloaderChoice, BootloaderKind, GpuVerdict, Obstacle, Severity, classify_gpus, proxmox_major,
    resolve_bootloader, resolve_iommu, vgpu_possible,
};
pub use read::read_facts;
pub use render::render_human;
pub use report::{Decisions, FactsReport, JSON_SCHEMA, VgpuReport, render_json};
/// The CPU vendor, which decides the IOMMU kernel arguments.
pub use vgpu_plan::iommu::Vendor;

/// PCI vendor id of NVIDIA.
pub const NVIDIA_VENDOR: &str = "10de";

/// Everything the agent reads about the host, recorded in the state file.
///
/// Deserialising fills absent fields with their defaults, so a state file
/// written by an older agent still reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct Facts {
    /// `/proc/cpuinfo`.
    pub cpu: Cpu,
    /// `/etc/os-release` and Proxmox hints.
    pub os: Os,
    /// UEFI and Secure Boot.
    pub firmware: Firmware,
    /// Boot loader configuration files.
    pub boot: BootFiles,
    /// The running kernel.
    pub kernel: Kernel,
    /// Kernel modules present in `/sys/module`.
    pub modules: Modules,
    /// IOMMU groups.
    pub iommu: IommuFacts,
    /// Every NVIDIA PCI function (GPUs and their audio/USB functions),
    /// sorted by address.
    pub nvidia: Vec<PciFunction>,
    /// The filesystem mounted on `/`.
    pub root_fs: Option<Mount>,
    /// `/etc/machine-id`.
    pub machine_id: Option<String>,
    /// `/proc/sys/kernel/random/boot_id`: changes at every boot.
    pub boot_id: Option<String>,
    /// Things the reader skipped and why (refused symlinks, unreadable ids).
    pub notes: Vec<String>,
}

/// CPU facts from `/proc/cpuinfo` (first `vendor_id` and first `flags` line).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct Cpu {
    /// `GenuineIntel`, `AuthenticAMD`, ...
    pub vendor_id: Option<String>,
    /// A `flags` line was found. Without it the flags below say nothing.
    pub flags_read: bool,
    /// Intel VT-x.
    pub vmx: bool,
    /// AMD-V.
    pub svm: bool,
    /// Running under a hypervisor.
    pub hypervisor: bool,
}

impl Cpu {
    /// The vendor, if it is one the IOMMU arguments exist for.
    pub fn vendor(&self) -> Option<Vendor> {
        Vendor::from_vendor_id(self.vendor_id.as_deref()?)
    }

    /// Hardware virtualisation (VT-x or AMD-V) is visible.
    pub fn virtualisation(&self) -> bool {
        self.vmx || self.svm
    }
}

/// Operating system facts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct Os {
    /// `ID`, e.g. `debian`.
    pub id: Option<String>,
    /// `PRETTY_NAME`.
    pub pretty_name: Option<String>,
    /// `VERSION_ID`, e.g. `12`.
    pub version_id: Option<String>,
    /// `VERSION_CODENAME`, or the word in parentheses in `VERSION`.
    pub codename: Option<String>,
    /// `/etc/pve` exists (the Proxmox cluster filesystem).
    pub etc_pve: bool,
    /// `/usr/bin/pveversion` exists.
    pub pveversion: bool,
}

impl Os {
    /// The host looks like Proxmox VE (plain Debian is allowed too).
    pub fn proxmox_hint(&self) -> bool {
        self.etc_pve || self.pveversion
    }
}

/// Firmware facts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct Firmware {
    /// `/sys/firmware/efi` exists: the host booted through UEFI.
    pub uefi: bool,
    /// From the `SecureBoot` efivar. `Some(false)` on legacy BIOS (Secure
    /// Boot needs UEFI); `None` when UEFI has no readable variable.
    pub secure_boot: Option<bool>,
}

/// Boot loader configuration files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct BootFiles {
    /// `/etc/kernel/proxmox-boot-uuids` exists: proxmox-boot-tool manages
    /// the ESPs (with GRUB or systemd-boot).
    pub proxmox_boot_uuids: bool,
    /// Content of `/etc/kernel/cmdline` (trimmed), if it exists.
    pub kernel_cmdline: Option<String>,
    /// `/etc/default/grub` exists.
    pub default_grub: bool,
}

/// The running kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct Kernel {
    /// `/proc/sys/kernel/osrelease`, e.g. `6.8.12-9-pve`.
    pub release: Option<String>,
    /// `/proc/cmdline` split into arguments; double-quoted values keep
    /// their quotes and spaces.
    pub cmdline: Vec<String>,
}

/// Modules with a `/sys/module/<name>` directory (loaded or built in).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct Modules {
    /// `nouveau`: must be gone before the NVIDIA driver loads.
    pub nouveau: bool,
    /// `nvidia`.
    pub nvidia: bool,
    /// `vfio_pci`.
    pub vfio_pci: bool,
}

/// IOMMU groups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct IommuFacts {
    /// Entries of `/sys/kernel/iommu_groups`; 0 means the IOMMU is off.
    pub group_count: u32,
    /// The groups holding an NVIDIA function, sorted by id.
    pub groups: Vec<IommuGroup>,
}

/// One IOMMU group: passthrough has to take all of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct IommuGroup {
    /// Group number.
    pub id: u32,
    /// Every device in the group, sorted by address.
    pub devices: Vec<GroupMember>,
}

/// A device in an IOMMU group, NVIDIA or not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct GroupMember {
    /// PCI address, e.g. `0000:01:00.0`.
    pub address: String,
    /// `vendor:device` in lower-case hex, if readable.
    pub id: Option<String>,
    /// Class, 6 hex digits, if readable.
    pub class: Option<String>,
    /// Bound driver.
    pub driver: Option<String>,
}

/// An NVIDIA PCI function.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct PciFunction {
    /// PCI address, e.g. `0000:01:00.0`.
    pub address: String,
    /// Vendor id, 4 lower-case hex digits (always `10de` here).
    pub vendor: String,
    /// Device id, 4 lower-case hex digits.
    pub device: String,
    /// Class code, 6 lower-case hex digits (`030000` VGA, `030200` 3D,
    /// `040300` audio, `0c0330` USB).
    pub class: String,
    /// Subsystem vendor id, if readable.
    pub subsystem_vendor: Option<String>,
    /// Subsystem device id, if readable.
    pub subsystem_device: Option<String>,
    /// Bound driver (basename of the `driver` link); `None` when unbound.
    pub driver: Option<String>,
    /// IOMMU group (basename of the `iommu_group` link).
    pub iommu_group: Option<u32>,
    /// SR-IOV virtual functions the card supports.
    pub sriov_totalvfs: Option<u32>,
    /// SR-IOV virtual functions enabled now.
    pub sriov_numvfs: Option<u32>,
}

impl PciFunction {
    /// A display controller: VGA (`0300xx`) or 3D (`0302xx`).
    pub fn is_gpu(&self) -> bool {
        self.class.starts_with("0300") || self.class.starts_with("0302")
    }

    /// `vendor:device`, e.g. `10de:1eb8`.
    pub fn id(&self) -> String {
        format!("{}:{}", self.vendor, self.device)
    }

    /// Short name of the class for humans.
    pub fn class_name(&self) -> &'static str {
        class_name(&self.class)
    }
}

/// Short name of a 6-hex-digit PCI class for humans.
pub(crate) fn class_name(class: &str) -> &'static str {
    match class.get(..4).unwrap_or("") {
        "0300" => "VGA controller",
        "0302" => "3D controller",
        "0403" => "audio device",
        "0c03" => "USB controller",
        "0c80" => "serial bus controller",
        "0604" => "PCI bridge",
        "0600" => "host bridge",
        _ => "other device",
    }
}

/// The filesystem on `/`, from `/proc/self/mounts`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct Mount {
    /// Source, e.g. `/dev/mapper/pve-root` or `rpool/ROOT/pve-1`.
    pub source: String,
    /// Filesystem type, e.g. `ext4`, `zfs`.
    pub fstype: String,
}

impl Mount {
    /// The root is a ZFS dataset.
    pub fn is_zfs(&self) -> bool {
        self.fstype == "zfs"
    }

    /// The ZFS pool holding the root (first component of the dataset).
    pub fn zfs_pool(&self) -> Option<&str> {
        self.is_zfs()
            .then(|| self.source.split('/').next())
            .flatten()
            .filter(|p| !p.is_empty())
    }
}

impl Facts {
    /// NVIDIA functions that are GPUs (not their audio or USB functions).
    pub fn gpus(&self) -> impl Iterator<Item = &PciFunction> {
        self.nvidia.iter().filter(|f| f.is_gpu())
    }

    /// An IOMMU group holding an NVIDIA function.
    pub fn group(&self, id: u32) -> Option<&IommuGroup> {
        self.iommu.groups.iter().find(|g| g.id == id)
    }

    /// The other devices in `function`'s IOMMU group.
    pub fn group_peers(&self, function: &PciFunction) -> Vec<&GroupMember> {
        function
            .iommu_group
            .and_then(|id| self.group(id))
            .map(|g| {
                g.devices
                    .iter()
                    .filter(|d| d.address != function.address)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Error reading facts or deciding from them.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    /// The root directory itself cannot be read.
    #[error("cannot read the root directory {}: {source}", path.display())]
    Root {
        /// The root given.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file exists but cannot be read (not merely missing).
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file, root prefix included.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The plan leaves the CPU vendor to the host and the host's is unknown.
    #[error(
        "cannot choose the IOMMU kernel arguments: CPU vendor {} is neither GenuineIntel nor AuthenticAMD; set host.iommu = \"intel\" or \"amd\" in the profile",
        vendor_id.as_deref().map_or("(no vendor_id in /proc/cpuinfo)".to_string(), |v| format!("`{v}`"))
    )]
    UnknownCpuVendor {
        /// The `vendor_id` found, if any.
        vendor_id: Option<String>,
    },
}

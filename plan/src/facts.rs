//! The host facts document: what the agent reads about a machine.
//!
//! The agent (`vgpu-firstboot`) fills a [`Facts`] from files under its root
//! and writes it in the state file and in `facts --json`
//! ([`FactsDocument`] is the part of that document `vgpu-bake check --facts`
//! reads back). The host gate ([`crate::gate`]) and the "vGPU possible"
//! obstacles ([`vgpu_possible`]) are pure functions over it, so both
//! programs decide alike.

use serde::{Deserialize, Serialize};

pub use crate::iommu::Vendor;

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
pub fn class_name(class: &str) -> &'static str {
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

/// The part of the `vgpu-firstboot facts --json` document (schema
/// [`JSON_SCHEMA`]) that `vgpu-bake check --facts` reads: the facts
/// themselves. The agent's decisions in the same document are not read
/// back: the builder decides again with its own GPU database.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FactsDocument {
    /// [`JSON_SCHEMA`].
    pub schema: u32,
    /// What the agent read.
    pub facts: Facts,
}

/// Version of the `facts --json` document.
pub const JSON_SCHEMA: u32 = 1;

/// How bad an [`Obstacle`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// vGPU cannot work on this host as it is.
    Fatal,
    /// Expected before the agent's reboot (the agent or the operator fixes
    /// it, e.g. IOMMU kernel arguments); fatal if still true after it.
    PreReboot,
    /// Worth knowing; vGPU may still work.
    Warning,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Fatal => "fatal",
            Severity::PreReboot => "before reboot",
            Severity::Warning => "warning",
        })
    }
}

/// One reason vGPU cannot work, or might not yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Obstacle {
    /// How bad.
    pub severity: Severity,
    /// A plain sentence for the operator.
    pub message: String,
}

impl Obstacle {
    /// An obstacle of `severity` saying `message`.
    pub fn new(severity: Severity, message: impl Into<String>) -> Self {
        Obstacle {
            severity,
            message: message.into(),
        }
    }
}

/// Says plainly why vGPU cannot work here. `Ok(())` when nothing stands in
/// the way; otherwise every obstacle, most severe first. Only
/// [`Severity::Fatal`] ones rule vGPU out now.
pub fn vgpu_possible(facts: &Facts) -> Result<(), Vec<Obstacle>> {
    use Severity::*;
    let mut out = Vec::new();
    let cpu = &facts.cpu;
    let iommu_off = facts.iommu.group_count == 0;
    if facts.gpus().next().is_none() {
        out.push(Obstacle::new(
            Fatal,
            "no NVIDIA GPU found (no PCI function with vendor 10de and a VGA or 3D controller class): vGPU needs one",
        ));
    }
    if cpu.hypervisor {
        if !cpu.virtualisation() && iommu_off {
            out.push(Obstacle::new(
                Fatal,
                "this is a virtual machine without nested virtualisation/IOMMU (hypervisor flag, no vmx/svm, no IOMMU groups): vGPU needs bare metal",
            ));
        } else if !cpu.virtualisation() {
            out.push(Obstacle::new(
                Fatal,
                "this is a virtual machine without nested virtualisation (hypervisor flag, no vmx/svm): vGPU needs bare metal",
            ));
        } else {
            out.push(Obstacle::new(
                Warning,
                "this is a virtual machine (hypervisor flag): vGPU here needs the GPU passed through with a virtual IOMMU and nested virtualisation; use bare metal",
            ));
        }
    } else if cpu.flags_read && !cpu.virtualisation() {
        out.push(Obstacle::new(
            Fatal,
            "CPU virtualisation is off (no vmx/svm flag): enable VT-x/AMD-V in the firmware",
        ));
    } else if !cpu.flags_read {
        out.push(Obstacle::new(
            Warning,
            "no CPU flags in /proc/cpuinfo: cannot tell whether VT-x/AMD-V is on",
        ));
    }
    // In a VM without nested virtualisation the fatal reason already
    // covers the IOMMU.
    let vm_without_nesting = cpu.hypervisor && !cpu.virtualisation();
    if iommu_off && !vm_without_nesting {
        out.push(Obstacle::new(
            PreReboot,
            "IOMMU is off (no IOMMU groups): enable VT-d/AMD-Vi in the firmware; the agent adds the kernel arguments",
        ));
    }
    if out.is_empty() {
        return Ok(());
    }
    // Most severe first, keeping the order within a severity.
    let mut sorted = Vec::with_capacity(out.len());
    for severity in [Fatal, PreReboot, Warning] {
        sorted.extend(out.iter().filter(|o| o.severity == severity).cloned());
    }
    Err(sorted)
}

/// Proxmox VE major release matching the Debian codename (bullseye 7,
/// bookworm 8, trixie 9). Plain Debian gets the release it would become.
pub fn proxmox_major(facts: &Facts) -> Option<u8> {
    match facts.os.codename.as_deref()? {
        "bullseye" => Some(7),
        "bookworm" => Some(8),
        "trixie" => Some(9),
        _ => None,
    }
}

//! The resolved plan: every choice concrete, steps in order.
//!
//! `vgpu-bake` turns a profile into a `Plan` (see the builder's `resolve`
//! module); the agent executes it. Choices only the target can make (which
//! CPU vendor when the profile says `auto`, GRUB or systemd-boot, the running
//! kernel) are recorded here as `auto` and decided on the host from facts.

use serde::{Deserialize, Serialize};

use crate::compat::Support;
pub use crate::digest::{DigestError, Md5, Sha256};
use crate::iommu::Vendor;

/// Current plan format version.
pub const SCHEMA: u32 = 1;

/// The whole plan, as written to `var/lib/vgpu-firstboot/plan.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Plan {
    /// Format version, [`SCHEMA`].
    pub schema: u32,
    /// Bundle name (from the profile).
    pub name: String,
    /// One line for humans.
    pub description: String,
    /// A demo plan: the driver is the stand-in installer from `data/demo/`.
    pub demo: bool,
    /// Proxmox VE major release the profile targets (7, 8 or 9).
    pub proxmox: u8,
    /// Debian codename of that release.
    pub codename: String,
    /// What the host is provisioned for.
    pub mode: Mode,
    /// Host configuration: repositories, kernel, IOMMU, modules.
    pub host: HostPlan,
    /// The host driver; absent in passthrough mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<DriverPlan>,
    /// vgpu_unlock settings; present only in unlock mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlock: Option<UnlockPlan>,
    /// Licensing settings, validated and carried for the licensing steps.
    pub licensing: LicensingPlan,
    /// How the agent behaves.
    pub agent: AgentPlan,
    /// Where the agent reports its progress (a plan without the section
    /// reports to the default textfile directory only).
    #[serde(default)]
    pub report: ReportPlan,
    /// Cards the profile names, classified.
    #[serde(default, rename = "gpu")]
    pub gpus: Vec<GpuRule>,
    /// Disagreements found while resolving that did not stop the bake.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Steps in the order the agent runs them.
    #[serde(rename = "step")]
    pub steps: Vec<Step>,
}

/// What the host is provisioned for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Official vGPU cards with the unpatched vGPU-KVM driver.
    Native,
    /// Consumer cards through vgpu_unlock and a patched driver.
    Unlock,
    /// No vGPU driver: IOMMU, vfio and passthrough rules only.
    Passthrough,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Native => "native",
            Mode::Unlock => "unlock",
            Mode::Passthrough => "passthrough",
        })
    }
}

/// CPU vendor for the IOMMU kernel arguments ([`Vendor::iommu_kernel_args`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Iommu {
    /// Decided on the host from `/proc/cpuinfo`.
    Auto,
    /// `intel_iommu=on iommu=pt`.
    Intel,
    /// `amd_iommu=on iommu=pt`.
    Amd,
}

impl Iommu {
    /// The vendor the plan fixes; `None` for `auto`, which the host decides.
    pub fn fixed_vendor(self) -> Option<Vendor> {
        match self {
            Iommu::Auto => None,
            Iommu::Intel => Some(Vendor::Intel),
            Iommu::Amd => Some(Vendor::Amd),
        }
    }
}

/// Boot loader whose kernel command line the agent edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bootloader {
    /// Decided on the host (`/etc/kernel/proxmox-boot-uuids`, `/etc/kernel/cmdline`).
    Auto,
    /// `/etc/default/grub.d/` drop-in and `update-grub`.
    Grub,
    /// `/etc/kernel/cmdline` and `proxmox-boot-tool refresh`.
    SystemdBoot,
}

/// Host configuration. `D` is what an offline package is at this stage:
/// a baked [`PayloadFile`] in a plan (the default), or the builder's
/// not-yet-read source while it resolves a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "kebab-case",
    deny_unknown_fields,
    bound(serialize = "D: Serialize", deserialize = "D: Deserialize<'de>")
)]
pub struct HostPlan<D = PayloadFile> {
    /// CPU vendor for the IOMMU arguments.
    pub iommu: Iommu,
    /// Boot loader.
    pub bootloader: Bootloader,
    /// Extra kernel arguments from the profile's `host.kernel-args`, added
    /// to the vendor's IOMMU arguments ([`Vendor::iommu_kernel_args`]).
    /// Spelled as in the profile; plans baked before wrote
    /// `kernel-args-extra`, which is still read.
    #[serde(default, rename = "kernel-args", alias = "kernel-args-extra")]
    pub kernel_args_extra: Vec<String>,
    /// Packages phase 1 installs. `{kernel}` stands for the kernel that will run.
    pub packages: Vec<String>,
    /// Offline `.deb` files in the payload (paths relative to the payload dir).
    #[serde(default)]
    pub offline_debs: Vec<D>,
    /// Modules loaded at boot through `/etc/modules-load.d/`.
    pub vfio_modules: Vec<String>,
    /// Modules blacklisted through `/etc/modprobe.d/`.
    pub blacklist: Vec<String>,
    /// Kernel pin, when the driver cannot build on newer kernels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_pin: Option<KernelPin>,
}

/// A kernel series to pin when the running kernel is too new.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KernelPin {
    /// Pin only when the running kernel is at least this version.
    pub when_running_at_least: String,
    /// Kernel series to install and pin, e.g. `6.5` or `6.14.11`; the newest
    /// `proxmox-kernel-<series>*` the host's repositories carry is chosen.
    pub series: String,
    /// Exact version used when the repositories list none, e.g. `6.5.13-6-pve`.
    pub fallback: String,
    /// Refuse to downgrade a ZFS root whose pool has features the old kernel
    /// cannot import (OpenZFS 2.4 `block_cloning_endian`).
    pub zfs_guard: bool,
    /// Why the pin is needed.
    pub reason: String,
}

/// A file in the bundle's payload directory, baked: its path is never
/// empty and its digest is a real one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PayloadFile {
    /// Path relative to `var/lib/vgpu-firstboot/payload/`.
    #[serde(deserialize_with = "payload_path")]
    pub path: String,
    /// Its SHA-256.
    pub sha256: Sha256,
    /// Size in bytes.
    pub size: u64,
}

/// The host driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DriverPlan {
    /// vGPU software release, e.g. `17.5`.
    pub release: String,
    /// Host driver version, e.g. `550.144.02`.
    pub version: String,
    /// NVIDIA's `.run` file name (before patching).
    pub filename: String,
    /// MD5 of NVIDIA's `.run`, present when one was declared (the
    /// registry's, the profile's `driver.md5` or `--md5`) and verified at
    /// bake time; absent when nothing declared one (it is not computed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<Md5>,
    /// SHA-256 of NVIDIA's `.run`, as verified at bake time.
    pub sha256: Sha256,
    /// Size of NVIDIA's `.run` in bytes.
    pub size: u64,
    /// The installer the agent runs: NVIDIA's file, or in unlock mode the
    /// `-custom.run` the builder patched.
    pub installer: PayloadFile,
    /// The vgpu_unlock patch applied at bake time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<PatchRecord>,
    /// Arguments passed to the installer (signing arguments are added on the
    /// host when Secure Boot is on).
    pub install_args: Vec<String>,
    /// Services the driver ships that the agent enables.
    pub services: Vec<String>,
    /// SR-IOV unit enabled after the driver (native Ampere and newer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sriov_unit: Option<String>,
}

/// The unlock patch that turned NVIDIA's `.run` into the `-custom.run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PatchRecord {
    /// Patch file name, e.g. `550.144.02.patch`.
    pub file: String,
    /// SHA-256 of the patch file.
    pub sha256: Sha256,
}

/// vgpu_unlock settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct UnlockPlan {
    /// The prebuilt `libvgpu_unlock_rs.so` in the payload.
    pub library: PayloadFile,
    /// Where the agent installs it (absolute path on the host).
    pub library_path: String,
    /// Content of `/etc/vgpu_unlock/profile_override.toml`.
    pub profile_override: String,
}

/// Licensing (DLS) settings. `D` is what a baked licensing file is at this
/// stage: a [`PayloadFile`] in a plan (the default), or the builder's
/// not-yet-read source while it resolves a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "kebab-case",
    deny_unknown_fields,
    bound(serialize = "D: Serialize", deserialize = "D: Deserialize<'de>")
)]
pub struct LicensingPlan<D = PayloadFile> {
    /// Which licensing setup.
    pub mode: LicensingMode,
    /// `external`: the DLS server's address (host name or IP).
    /// `fastapi-dls`: the address guests reach this host at (`DLS_URL`);
    /// absent: the host's own address, from its facts at first boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Server port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Lease length in days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_days: Option<u32>,
    /// `fastapi-dls`: the server's time zone (`TZ`), e.g. `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// `external`: the client configuration token (`.tok`) the DLS issued,
    /// in the payload; a secret (mode 0600, flagged in the manifest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<D>,
    /// `fastapi-dls`: the container image, an OCI archive, in the payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<D>,
    /// Whether the plan's `licensing` step applies the settings: true for
    /// `external` and `fastapi-dls`, false for `none`.
    pub applied: bool,
}

/// Where the `licensing` step puts things on the host (relative to the
/// root). Per-host secrets (FastAPI-DLS's keys) are made there at first
/// boot; the baked token is copied there from the payload, which `finish`
/// deletes.
pub mod licensing_paths {
    /// Everything the step writes except the unit: mode 0700.
    pub const DIR: &str = "etc/vgpu-bake/licensing";
    /// The client configuration token (both modes; fastapi-dls fetches it
    /// from the local server): mode 0600.
    pub const TOKEN: &str = "etc/vgpu-bake/licensing/client_configuration_token.tok";
    /// Guest setup script for Linux guests: mode 0700.
    pub const GUEST_LINUX: &str = "etc/vgpu-bake/licensing/guest/license_linux.sh";
    /// Guest setup script for Windows guests: mode 0600.
    pub const GUEST_WINDOWS: &str = "etc/vgpu-bake/licensing/guest/license_windows.ps1";
    /// The guest scripts' directory.
    pub const GUEST_DIR: &str = "etc/vgpu-bake/licensing/guest";
    /// FastAPI-DLS's certificate directory (`/app/cert` in the container):
    /// `webserver.key`, `webserver.crt`, `instance.private.pem`,
    /// `instance.public.pem`, made on the host.
    pub const CERT_DIR: &str = "etc/vgpu-bake/licensing/cert";
    /// FastAPI-DLS's database directory (`/app/database`).
    pub const DB_DIR: &str = "var/lib/vgpu-bake/fastapi-dls";
    /// The systemd unit that runs the container.
    pub const UNIT: &str = "etc/systemd/system/vgpu-bake-fastapi-dls.service";
    /// Its name.
    pub const UNIT_NAME: &str = "vgpu-bake-fastapi-dls.service";
    /// The container's name.
    pub const CONTAINER: &str = "vgpu-bake-fastapi-dls";
}

/// Which licensing setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LicensingMode {
    /// No licensing (unlicensed vGPUs are throttled after a grace period).
    None,
    /// An existing DLS server.
    External,
    /// A FastAPI-DLS server on the host itself.
    FastapiDls,
}

/// Agent behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AgentPlan {
    /// Reboots the agent may trigger before it stops and reports.
    pub reboot_cap: u32,
    /// Keep the payload after success (default: delete it).
    pub keep_payload: bool,
    /// Timeout for one command, in seconds: `command-timeout`, spelled as
    /// the profile's `agent.command-timeout`. Plans baked before the rename
    /// (an installed bundle, the state's archived plan) wrote
    /// `command-timeout-secs`, which is still read.
    #[serde(rename = "command-timeout", alias = "command-timeout-secs")]
    pub command_timeout_secs: u64,
}

/// The directory Debian's prometheus-node-exporter reads `*.prom` files
/// from with its textfile collector: package prometheus-node-exporter
/// 1.5.0-1+b6 (bookworm) ships it empty and names it in
/// `/usr/share/doc/prometheus-node-exporter/README.textfile` ("create files
/// in the /var/lib/prometheus/node-exporter directory"); its
/// `/etc/default/prometheus-node-exporter` sets no other (`ARGS=""`).
pub const DEFAULT_TEXTFILE_DIR: &str = "/var/lib/prometheus/node-exporter";

/// Where the agent reports its progress (`[report]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ReportPlan {
    /// `http://` or `https://` URL the agent POSTs its `status --json`
    /// document to at each phase change; none: no POST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Absolute directory of the node_exporter textfile
    /// `vgpu-firstboot.prom` ([`DEFAULT_TEXTFILE_DIR`] by default).
    #[serde(default = "default_textfile_dir")]
    pub textfile_dir: String,
}

fn default_textfile_dir() -> String {
    DEFAULT_TEXTFILE_DIR.to_owned()
}

impl Default for ReportPlan {
    /// No URL, [`DEFAULT_TEXTFILE_DIR`].
    fn default() -> Self {
        ReportPlan {
            url: None,
            textfile_dir: default_textfile_dir(),
        }
    }
}

/// A card the profile names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GpuRule {
    /// `10de:XXXX`.
    pub id: String,
    /// What the profile wants done with it.
    pub role: GpuRole,
    /// Marketing name from the database (empty if unknown).
    pub name: String,
    /// Support the corrected database records (absent if the id is unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<Support>,
    /// Support the profile declares for this card, overriding the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared: Option<Support>,
    /// The PCI address the card must be at (`0000:01:00.0`), when the
    /// profile gives one; the host gate checks it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// What to do with a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GpuRole {
    /// Use it for vGPU.
    Vgpu,
    /// Bind it (and its IOMMU group) to vfio-pci for passthrough.
    Passthrough,
}

/// Boot phase a step belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Before the reboot.
    One,
    /// The reboot barrier between the phases.
    Reboot,
    /// After the reboot.
    Two,
}

/// One step. Its id is its kind's ([`StepKind::id`]): a plan has each kind
/// at most once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Step {
    /// Phase.
    pub phase: Phase,
    /// What it does.
    pub kind: StepKind,
    /// Why the plan contains it, for `plan` and `status`.
    pub why: String,
}

/// Declares [`StepKind`] from one list: each line is a variant and its
/// stable id, so adding a kind is one line here (plus its file and table row
/// in the agent). `ALL` and `id()` come from the same list; a test checks
/// each id is the variant's serde (kebab-case) name.
macro_rules! step_kinds {
    ($( $(#[$doc:meta])* $variant:ident = $id:literal, )*) => {
        /// What a step does; its settings are in the plan's sections.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum StepKind {
            $( $(#[$doc])* $variant, )*
        }

        impl StepKind {
            /// Every kind, in the order a plan runs them.
            pub const ALL: &[StepKind] = &[$(StepKind::$variant),*];

            /// The step's stable id, its kebab-case name (as in `kind = ...`):
            /// the state file, `retry STEP`, `status` and the fault hook use it.
            pub fn id(self) -> &'static str {
                match self {
                    $(StepKind::$variant => $id,)*
                }
            }
        }
    };
}

step_kinds! {
    /// Enterprise repositories off, no-subscription on.
    AptRepositories = "apt-repositories",
    /// `host.kernel-pin` (before apt-install, which fills `{kernel}` in
    /// with the pinned kernel).
    KernelPin = "kernel-pin",
    /// `host.packages` and `host.offline-debs`.
    AptInstall = "apt-install",
    /// IOMMU kernel arguments for the boot loader.
    KernelArgs = "kernel-args",
    /// `host.vfio-modules`.
    VfioModules = "vfio-modules",
    /// `host.blacklist`.
    BlacklistModules = "blacklist-modules",
    /// vfio-pci rules for the passthrough cards' IOMMU groups.
    PassthroughRules = "passthrough-rules",
    /// `update-initramfs -u -k all`.
    Initramfs = "initramfs",
    /// Module signing key and MOK enrolment when Secure Boot is on.
    SecureBoot = "secure-boot",
    /// Reboot if the running system lacks what phase 2 needs.
    Reboot = "reboot",
    /// The reboot took effect.
    VerifyReboot = "verify-reboot",
    /// Every payload file matches the manifest.
    VerifyPayload = "verify-payload",
    /// Unlock library, service drop-ins, profile override.
    UnlockSetup = "unlock-setup",
    /// Run the driver installer.
    InstallDriver = "install-driver",
    /// Enable the driver's services.
    EnableServices = "enable-services",
    /// Enable SR-IOV virtual functions.
    Sriov = "sriov",
    /// `[licensing]`: the external token and guest scripts, or the
    /// FastAPI-DLS container, its keys, unit and health check.
    Licensing = "licensing",
    /// `nvidia-smi vgpu` and `mdevctl types` answer.
    PostCheck = "post-check",
    /// Done marker, unit link removed, payload deleted.
    Finish = "finish",
}

impl std::fmt::Display for StepKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// A payload path must name a file: an empty one was never baked.
fn payload_path<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let path = String::deserialize(d)?;
    if path.trim_start_matches('/').is_empty() {
        return Err(serde::de::Error::custom(format!(
            "payload `path` = {path:?} names no file: the plan was resolved but never baked; bake the bundle with `vgpu-bake bake`"
        )));
    }
    Ok(path)
}

/// Error reading a plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Not valid TOML or not the plan format.
    #[error("plan is not valid: {0}")]
    Parse(#[from] toml::de::Error),
    /// A schema this agent does not know.
    #[error(
        "plan schema {found} is not supported (this build reads schema {SCHEMA}); bake the bundle again with a matching vgpu-bake"
    )]
    Schema {
        /// The schema found in the file.
        found: u32,
    },
}

impl Plan {
    /// Parses and checks the schema version.
    pub fn from_toml(text: &str) -> Result<Self, PlanError> {
        // Check the schema first so a future format reports its version,
        // not an unknown field.
        #[derive(Deserialize)]
        struct Head {
            schema: u32,
        }
        let head: Head = crate::from_toml(text)?;
        if head.schema != SCHEMA {
            return Err(PlanError::Schema { found: head.schema });
        }
        Ok(crate::from_toml(text)?)
    }

    /// Serialises to TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("plan serialises")
    }

    /// The step with this id.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.kind.id() == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The id is the name serde gives the kind, so `kind = "..."` in the
    /// plan and the ids in the state file are the same words.
    #[test]
    fn step_ids_are_the_kinds_kebab_case_names() {
        for kind in StepKind::ALL {
            let toml = toml::to_string(&std::collections::BTreeMap::from([("k", kind)])).unwrap();
            assert_eq!(toml.trim(), format!("k = \"{}\"", kind.id()));
        }
    }
}

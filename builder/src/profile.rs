//! The raw profile: strict TOML schema, no I/O beyond reading the file.
//!
//! Rules for the schema: every table denies unknown keys, keys are
//! kebab-case, optional keys have the default a homelab user expects, and
//! nothing here is interpreted: meaning is checked in `resolve`, where the
//! registry and the GPU database are at hand.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use vgpu_plan::plan::{Bootloader, GpuRole, Iommu, LicensingMode, Mode};

use crate::input::{PROFILE_LIMIT, read_limited};
use crate::text::{ECHO_CHARS, escape_controls};

/// A parsed profile file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Profile {
    /// Bundle name; default: the file name without `.toml`.
    pub name: Option<String>,
    /// One line for humans.
    #[serde(default)]
    pub description: String,
    /// Proxmox VE major release of the hosts: 7, 8 or 9.
    pub proxmox: u8,
    /// What the hosts are provisioned for.
    pub vgpu: VgpuSection,
    /// The host driver (not used in passthrough mode).
    pub driver: Option<DriverSection>,
    /// Host settings.
    #[serde(default)]
    pub host: HostSection,
    /// Cards the fleet has.
    #[serde(default, rename = "gpu")]
    pub gpus: Vec<GpuSection>,
    /// vgpu_unlock inputs (unlock mode only).
    pub unlock: Option<UnlockSection>,
    /// Licensing (DLS) settings.
    #[serde(default)]
    pub licensing: LicensingSection,
    /// Agent behaviour.
    #[serde(default)]
    pub agent: AgentSection,
    /// Where the agent reports its progress.
    #[serde(default)]
    pub report: ReportSection,
    /// Guest (VM) drivers to carry in the bundle.
    #[serde(default, rename = "guest-driver")]
    pub guest_drivers: Vec<GuestDriverSection>,
}

/// `[[guest-driver]]`: one driver of the guest catalog
/// (`vgpu-bake guest-drivers`), kept on the host.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GuestDriverSection {
    /// vGPU release of the catalog, e.g. `"18.4"`.
    pub release: String,
    /// `linux` or `windows`.
    pub os: String,
    /// Pins the file's SHA-256 (required for a download: the catalog has
    /// no checksums; `vgpu-bake guest-drivers --fetch` prints it).
    pub sha256: Option<String>,
    /// A file (relative to the profile's directory) instead of the
    /// catalog's URL.
    pub file: Option<PathBuf>,
}

/// `[vgpu]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct VgpuSection {
    /// `native`, `unlock` or `passthrough`.
    pub mode: Mode,
}

/// `[driver]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DriverSection {
    /// vGPU release from `data/drivers.toml`, e.g. `"17.5"`, or `"demo"`.
    pub release: String,
    /// Pins the `.run` file's SHA-256 (recommended for fleets).
    pub sha256: Option<String>,
    /// MD5 for releases the registry has none for.
    pub md5: Option<String>,
}

/// `[host]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HostSection {
    /// CPU vendor: `auto` (decided on the host), `intel` or `amd`.
    #[serde(default = "auto_iommu")]
    pub iommu: Iommu,
    /// `auto`, `grub` or `systemd-boot`.
    #[serde(default = "auto_bootloader")]
    pub bootloader: Bootloader,
    /// Extra kernel arguments.
    #[serde(default)]
    pub kernel_args: Vec<String>,
    /// Extra packages for phase 1.
    #[serde(default)]
    pub packages: Vec<String>,
    /// `.deb` files baked into the bundle and installed offline in phase 1
    /// (paths relative to the profile).
    #[serde(default)]
    pub offline_debs: Vec<PathBuf>,
}

/// `[[gpu]]`: one card model the fleet has.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GpuSection {
    /// `10de:XXXX`.
    pub id: String,
    /// `vgpu` (default) or `passthrough`.
    #[serde(default = "vgpu_role")]
    pub role: GpuRole,
    /// The fleet's own word on what the card can do, overriding the database:
    /// `native`, `unlock` or `none`.
    pub mode: Option<CardModeWord>,
    /// The card's PCI address, e.g. `0000:01:00.0`: the host gate then
    /// requires the card there, not just somewhere on the host.
    pub address: Option<String>,
}

/// `gpu.mode`. Not `vgpu_plan::compat::Support`: the profile spells "not
/// usable" `none` where the compatibility table says `no`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CardModeWord {
    /// An official vGPU card.
    Native,
    /// Works through vgpu_unlock.
    Unlock,
    /// Not usable for vGPU.
    None,
}

/// `[unlock]`: files from the operator's machine, paths relative to the
/// profile's directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct UnlockSection {
    /// The vgpu_unlock patch for the release (from a copy of the
    /// polloloco vgpu-proxmox repository), e.g. `vgpu-proxmox/550.144.02.patch`.
    pub patch: PathBuf,
    /// A prebuilt `libvgpu_unlock_rs.so`.
    pub library: PathBuf,
    /// Its SHA-256.
    pub library_sha256: String,
    /// Content for `/etc/vgpu_unlock/profile_override.toml` (default: empty).
    #[serde(default)]
    pub profile_override: String,
}

/// `[licensing]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LicensingSection {
    /// `none`, `external` or `fastapi-dls`.
    pub mode: LicensingMode,
    /// DLS server address.
    pub server: Option<String>,
    /// DLS server port.
    pub port: Option<u16>,
    /// Lease length in days (1 to 90).
    pub lease_days: Option<u32>,
    /// `external`: the client configuration token file (`.tok`) the DLS
    /// issued, relative to the profile's directory.
    pub token: Option<PathBuf>,
    /// `fastapi-dls`: the container image, an OCI archive, relative to the
    /// profile's directory.
    pub image: Option<PathBuf>,
    /// `fastapi-dls`: the image archive's sha256 (required with `image`).
    pub image_sha256: Option<String>,
    /// `fastapi-dls`: the server's time zone (default `UTC`).
    pub timezone: Option<String>,
}

impl Default for LicensingSection {
    fn default() -> Self {
        Self {
            mode: LicensingMode::None,
            server: None,
            port: None,
            lease_days: None,
            token: None,
            image: None,
            image_sha256: None,
            timezone: None,
        }
    }
}

/// `[agent]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AgentSection {
    /// Reboots allowed before the agent stops and reports (default 2).
    #[serde(default = "default_reboot_cap")]
    pub reboot_cap: u32,
    /// Keep the payload after success (default false).
    #[serde(default)]
    pub keep_payload: bool,
    /// Timeout for one command in seconds (default 3600: DKMS builds and
    /// initramfs rebuilds are slow on small hosts).
    #[serde(default = "default_command_timeout")]
    pub command_timeout: u64,
}

/// `[report]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ReportSection {
    /// `http://` or `https://` URL the agent POSTs its status to.
    pub url: Option<String>,
    /// Directory of the node_exporter textfile (default Debian's).
    pub textfile_dir: Option<String>,
}

impl Default for HostSection {
    fn default() -> Self {
        Self {
            iommu: auto_iommu(),
            bootloader: auto_bootloader(),
            kernel_args: Vec::new(),
            packages: Vec::new(),
            offline_debs: Vec::new(),
        }
    }
}

fn auto_iommu() -> Iommu {
    Iommu::Auto
}

fn auto_bootloader() -> Bootloader {
    Bootloader::Auto
}

fn vgpu_role() -> GpuRole {
    GpuRole::Vgpu
}

fn default_reboot_cap() -> u32 {
    2
}

fn default_command_timeout() -> u64 {
    3600
}

impl Default for AgentSection {
    fn default() -> Self {
        Self {
            reboot_cap: 2,
            keep_payload: false,
            command_timeout: default_command_timeout(),
        }
    }
}

/// A profile that could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file could not be read, is not a regular file or is larger
    /// than [`PROFILE_LIMIT`].
    #[error("{}: cannot read the profile: {source}; give the path of a profile .toml file (a regular file of at most 1 MiB)", escape_controls(&path.display().to_string()))]
    Read {
        /// The profile file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not UTF-8 text.
    #[error("{}: the profile is not UTF-8 text: save it as UTF-8", escape_controls(&path.display().to_string()))]
    NotUtf8 {
        /// The profile file.
        path: PathBuf,
    },
    /// TOML syntax or schema error.
    #[error("{}:{line}:{column}: {message}", escape_controls(&path.display().to_string()))]
    Parse {
        /// The profile file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong, naming the key.
        message: String,
    },
}

impl Profile {
    /// Reads and parses a profile file.
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let read = |source| ProfileError::Read {
            path: path.to_path_buf(),
            source,
        };
        let bytes = read_limited(path, PROFILE_LIMIT).map_err(read)?;
        let text = String::from_utf8(bytes).map_err(|_| ProfileError::NotUtf8 {
            path: path.to_path_buf(),
        })?;
        Self::parse(&text, path)
    }

    /// Parses profile text; `path` is used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Profile, ProfileError> {
        toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..text.len());
            let offset = span.start.min(text.len());
            let (line, column) = line_col(text, offset);
            // A span over the whole document is about the top level.
            let whole = span.start == 0 && (span.end == 0 || span.end >= text.trim_end().len());
            let table = if whole {
                None
            } else {
                key_table(text, line, column)
            };
            let key = if whole { None } else { value_key(text, line) };
            let message = describe(e.message(), table.as_deref(), key.as_deref());
            ProfileError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        })
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The full path of the table holding the key an error at `line` and
/// `column` (1-based) is about, e.g. `licensing`, `gpu[1]`, `host.kernel-pin`.
///
/// On a header line (`[webhook]`, `[[gpu]]`), the error is about the
/// header's last part, a key of its parent; on a `key = value` line, the
/// key's dotted prefix (`agent.bogus = 1` at the top level) is part of the
/// path. Array-of-tables headers get their index (`gpu[0]` is the first
/// `[[gpu]]`).
fn key_table(text: &str, line: usize, column: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().take(line).collect();
    let here = lines.last().copied().unwrap_or("");
    let header_at = |l: &str| -> Option<(String, bool)> {
        let l = l.trim();
        if let Some(inner) = l.strip_prefix("[[").and_then(|s| s.strip_suffix("]]")) {
            return Some((inner.trim().to_string(), true));
        }
        let inner = l.strip_prefix('[')?.split_once(']')?.0;
        Some((inner.trim().to_string(), false))
    };
    // Index each `[[name]]` header by how many came before it.
    let path_of = |upto: usize| -> Option<String> {
        let (i, (name, array)) = lines[..upto]
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, l)| header_at(l).map(|h| (i, h)))?;
        if !array {
            return Some(name);
        }
        let n = lines[..i]
            .iter()
            .filter(|l| header_at(l).is_some_and(|(other, a)| a && other == name))
            .count();
        Some(format!("{name}[{n}]"))
    };
    if let Some((name, _)) = header_at(here) {
        // The header names an unknown (or misplaced) key of its parent.
        return name
            .rsplit_once('.')
            .map(|(parent, _)| parent.trim().to_string());
    }
    let table = path_of(lines.len());
    // A dotted key on this line: the parts before the one in error (the
    // key's last part when the error is about the value).
    let before = here
        .chars()
        .take(column.saturating_sub(1))
        .collect::<String>();
    let prefix = match here.split_once('=') {
        Some((key, _)) if before.len() > key.len() => {
            key.trim().rsplit_once('.').map(|(p, _)| p.trim())
        }
        _ => before.trim().strip_suffix('.').map(str::trim),
    }
    .filter(|p| !p.is_empty());
    match (table, prefix) {
        (Some(t), Some(p)) => Some(format!("{t}.{p}")),
        (t, p) => t.or_else(|| p.map(str::to_string)),
    }
}

/// The key of a `key = value` line (its last dotted part), if the line is one.
fn value_key(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?.trim();
    if l.starts_with('[') {
        return None;
    }
    let (key, _) = l.split_once('=')?;
    let key = key.rsplit('.').next()?.trim().trim_matches('"');
    (!key.is_empty()).then(|| key.to_string())
}

/// Turns serde's wording into one that names the key with its table and
/// says what is allowed; `key` is the key on the line in error, when the
/// error is about its value.
fn describe(message: &str, table: Option<&str>, key: Option<&str>) -> String {
    let message = message.trim();
    let qualify = |key: &str| {
        let key = match table {
            Some(t) => format!("{t}.{key}"),
            None => key.to_string(),
        };
        cut(&escape_controls(&key), ECHO_CHARS)
    };
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((key, allowed)) = rest.split_once('`')
    {
        let allowed = allowed.trim_start_matches(", expected ").trim();
        return format!("unknown key `{}`: allowed here are {allowed}", qualify(key));
    }
    if let Some(rest) = message.strip_prefix("missing field `")
        && let Some((key, _)) = rest.split_once('`')
    {
        return format!("missing key `{}`: it is required", qualify(key));
    }
    if let Some(rest) = message.strip_prefix("unknown variant `")
        && let Some((value, allowed)) = rest.split_once('`')
    {
        let allowed = allowed.trim_start_matches(", expected ").trim();
        let key = match (table, key) {
            (_, Some(k)) => format!(" for `{}`", qualify(k)),
            (Some(t), None) => format!(" for a key in `[{t}]`"),
            (None, None) => String::new(),
        };
        let value = cut(&escape_controls(value), ECHO_CHARS);
        return format!("`{value}` is not allowed{key}: use {allowed}");
    }
    // serde's own wording may quote the offending value: keep it short and
    // free of control characters.
    let message = cut(&escape_controls(message), 300);
    match table {
        Some(t) => format!("{message} (in `[{}]`)", cut(&escape_controls(t), 80)),
        None => message,
    }
}

/// `s` cut to `max` characters, with `...` where it was cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let head: String = s.chars().take(max).collect();
    format!("{head}...")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Profile::parse(text, Path::new("p.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn minimal_profile_gets_defaults() {
        let p = Profile::parse(
            "proxmox = 8\n[vgpu]\nmode = \"passthrough\"\n",
            Path::new("p.toml"),
        )
        .unwrap();
        assert_eq!(p.vgpu.mode, Mode::Passthrough);
        assert_eq!(p.host.iommu, Iommu::Auto);
        assert_eq!(p.host.bootloader, Bootloader::Auto);
        assert_eq!(p.licensing.mode, LicensingMode::None);
        assert_eq!(p.agent.reboot_cap, 2);
        assert!(p.gpus.is_empty());
    }

    #[test]
    fn unknown_key_names_table_and_allowed_keys() {
        let e = err("proxmox = 8\n[vgpu]\nmode = \"native\"\n[host]\niommuu = \"intel\"\n");
        assert!(
            e.starts_with("p.toml:5:1: unknown key `host.iommuu`: allowed here are one of `iommu`"),
            "{e}"
        );
    }

    #[test]
    fn snake_case_key_is_rejected() {
        let e = err("proxmox = 8\n[vgpu]\nmode = \"native\"\n[agent]\nreboot_cap = 3\n");
        assert!(e.contains("unknown key `agent.reboot_cap`"), "{e}");
        assert!(e.contains("`reboot-cap`"), "{e}");
    }

    #[test]
    fn bad_enum_value_lists_choices() {
        let e = err("proxmox = 8\n[vgpu]\nmode = \"magic\"\n");
        assert!(
            e.contains(
                "`magic` is not allowed for `vgpu.mode`: use one of `native`, `unlock`, `passthrough`"
            ),
            "{e}"
        );
        // The full path: the table's index in an array, a dotted key.
        let e = err(
            "proxmox = 8\n[vgpu]\nmode = \"native\"\n[[gpu]]\nid = \"10de:1eb8\"\n[[gpu]]\nid = \"10de:2204\"\nrole = \"x\"\n",
        );
        assert!(e.contains("`x` is not allowed for `gpu[1].role`"), "{e}");
        let e = err("proxmox = 8\nvgpu.mode = \"magic\"\n");
        assert!(e.contains("`magic` is not allowed for `vgpu.mode`"), "{e}");
    }

    #[test]
    fn missing_key_is_named() {
        let e = err("[vgpu]\nmode = \"native\"\n");
        assert!(e.contains("missing key `proxmox`"), "{e}");
    }
}

//! Reading [`Facts`] from the files under a root.

use std::fs::Metadata;
use std::io::{self, Read};
use std::path::Path;

use vgpu_rootfs::Root;

use super::{
    BootFiles, Cpu, Facts, FactsError, Firmware, GroupMember, IommuFacts, IommuGroup, Kernel,
    Modules, Mount, NVIDIA_VENDOR, Os, PciFunction,
};

/// The `SecureBoot` variable in the EFI global-variable namespace.
const SECURE_BOOT_VAR: &str =
    "sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// Larger files are truncated: nothing we read is near this, and it stops a
/// link to something like `/dev/zero` from eating memory.
const MAX_FILE: u64 = 4 << 20;

/// Reads the host facts from the files under `root`.
///
/// Missing files give `None`/`false`/empty values; paths resolve inside the
/// root (see the module doc), a symlink loop is listed in [`Facts::notes`].
/// Errors: the root is not a readable directory, or a file exists but
/// cannot be read.
pub fn read_facts(root: &Path) -> Result<Facts, FactsError> {
    let root_error = |source| FactsError::Root {
        path: root.to_path_buf(),
        source,
    };
    let mut r = Reader {
        root: Root::at(root).map_err(|e| root_error(e.source))?,
        notes: Vec::new(),
    };

    let cpu = parse_cpuinfo(&r.text("proc/cpuinfo")?.unwrap_or_default());
    let os_release = match r.text("etc/os-release")? {
        Some(t) => Some(t),
        None => r.text("usr/lib/os-release")?,
    };
    let os = parse_os_release(
        &os_release.unwrap_or_default(),
        Os {
            etc_pve: r.exists("etc/pve")?,
            pveversion: r.exists("usr/bin/pveversion")?,
            ..Os::default()
        },
    );
    let uefi = r.exists("sys/firmware/efi")?;
    let secure_boot = if uefi {
        let var = r.bytes(SECURE_BOOT_VAR)?;
        let value = var.as_deref().and_then(secure_boot_value);
        if var.is_some() && value.is_none() {
            r.note(format!(
                "{SECURE_BOOT_VAR}: shorter than 5 bytes, Secure Boot unknown"
            ));
        }
        value
    } else {
        Some(false)
    };
    let boot = BootFiles {
        proxmox_boot_uuids: r.exists("etc/kernel/proxmox-boot-uuids")?,
        kernel_cmdline: r.text("etc/kernel/cmdline")?.map(|t| t.trim().to_string()),
        default_grub: r.exists("etc/default/grub")?,
    };
    let kernel = Kernel {
        release: r.attr("proc/sys/kernel/osrelease")?,
        cmdline: split_cmdline(&r.text("proc/cmdline")?.unwrap_or_default()),
    };
    let modules = Modules {
        nouveau: r.exists("sys/module/nouveau")?,
        nvidia: r.exists("sys/module/nvidia")?,
        vfio_pci: r.exists("sys/module/vfio_pci")?,
    };
    let nvidia = r.nvidia_functions()?;
    let iommu = r.iommu(&nvidia)?;
    let mounts = match r.text("proc/self/mounts")? {
        Some(t) => Some(t),
        None => r.text("proc/mounts")?,
    };
    Ok(Facts {
        cpu,
        os,
        firmware: Firmware { uefi, secure_boot },
        boot,
        kernel,
        modules,
        iommu,
        nvidia,
        root_fs: mounts.as_deref().and_then(root_mount),
        machine_id: r.attr("etc/machine-id")?,
        boot_id: r.attr("proc/sys/kernel/random/boot_id")?,
        notes: r.notes,
    })
}

/// File access under the root, collecting notes about what was skipped.
struct Reader {
    root: Root,
    notes: Vec<String>,
}

fn read_error(e: vgpu_rootfs::Error) -> FactsError {
    FactsError::Read {
        path: e.path,
        source: e.source,
    }
}

/// ELOOP: a symlink loop, or a `/proc` magic link the root handle refuses.
fn is_loop(e: &io::Error) -> bool {
    e.raw_os_error() == Some(40)
}

impl Reader {
    fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    /// A failed lookup: a loop becomes a note and counts as missing.
    fn skip<T>(&mut self, rel: &str, e: vgpu_rootfs::Error) -> Result<Option<T>, FactsError> {
        if is_loop(&e.source) {
            self.note(format!(
                "{rel}: too many levels of symbolic links, not followed"
            ));
            return Ok(None);
        }
        Err(read_error(e))
    }

    /// Metadata of what `rel` resolves to inside the root.
    fn lookup(&mut self, rel: &str) -> Result<Option<Metadata>, FactsError> {
        match self.root.metadata(rel) {
            Ok(m) => Ok(m),
            Err(e) => self.skip(rel, e),
        }
    }

    fn exists(&mut self, rel: &str) -> Result<bool, FactsError> {
        Ok(self.lookup(rel)?.is_some())
    }

    /// Content of a regular file (anything else is noted and skipped, so a
    /// FIFO cannot block us).
    fn bytes(&mut self, rel: &str) -> Result<Option<Vec<u8>>, FactsError> {
        let Some(meta) = self.lookup(rel)? else {
            return Ok(None);
        };
        if !meta.is_file() {
            self.note(format!("{rel}: not a regular file, not read"));
            return Ok(None);
        }
        let file = match self.root.open(rel) {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(None),
            Err(e) => return self.skip(rel, e),
        };
        let mut buf = Vec::new();
        match file.take(MAX_FILE).read_to_end(&mut buf) {
            Ok(_) => Ok(Some(buf)),
            Err(e) => Err(FactsError::Read {
                path: self.root.host_path(rel),
                source: e,
            }),
        }
    }

    /// A text file; invalid UTF-8 is replaced rather than refused.
    fn text(&mut self, rel: &str) -> Result<Option<String>, FactsError> {
        Ok(self
            .bytes(rel)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// A one-line attribute, trimmed; empty counts as missing.
    fn attr(&mut self, rel: &str) -> Result<Option<String>, FactsError> {
        Ok(self
            .text(rel)?
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty()))
    }

    /// Names in a directory, sorted; missing directory = none.
    fn entries(&mut self, rel: &str) -> Result<Vec<String>, FactsError> {
        let Some(meta) = self.lookup(rel)? else {
            return Ok(Vec::new());
        };
        if !meta.is_dir() {
            return Ok(Vec::new());
        }
        let found = match self.root.read_dir(rel) {
            Ok(found) => found,
            Err(e) => self.skip(rel, e)?,
        };
        let mut names: Vec<String> = Vec::new();
        for name in found.unwrap_or_default() {
            let name = name.to_string_lossy().into_owned();
            // Sorted insertion: directories here hold at most a few hundred
            // entries, and it avoids linking a whole sort implementation.
            let at = names.binary_search(&name).unwrap_or_else(|i| i);
            names.insert(at, name);
        }
        Ok(names)
    }

    /// Basename of a symlink's target (sysfs `driver`, `iommu_group`),
    /// read from the link; the target need not exist.
    fn link_name(&mut self, rel: &str) -> Result<Option<String>, FactsError> {
        let target = match self.root.read_link(rel) {
            Ok(t) => t,
            Err(e) => self.skip(rel, e)?,
        };
        Ok(target
            .as_deref()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned()))
    }

    /// A hex attribute normalised to `width` digits; garbage is noted.
    fn hex(&mut self, rel: &str, width: usize) -> Result<Option<String>, FactsError> {
        let Some(raw) = self.attr(rel)? else {
            return Ok(None);
        };
        let value = parse_hex(&raw, width);
        if value.is_none() {
            self.note(format!(
                "{rel}: {} is not a {width}-digit hex id",
                shown(&raw)
            ));
        }
        Ok(value)
    }

    fn decimal(&mut self, rel: &str) -> Result<Option<u32>, FactsError> {
        let Some(raw) = self.attr(rel)? else {
            return Ok(None);
        };
        let value = raw.parse().ok();
        if value.is_none() {
            self.note(format!("{rel}: {} is not a number", shown(&raw)));
        }
        Ok(value)
    }

    fn nvidia_functions(&mut self) -> Result<Vec<PciFunction>, FactsError> {
        let mut out = Vec::new();
        for address in self.entries("sys/bus/pci/devices")? {
            let dir = format!("sys/bus/pci/devices/{address}");
            if self.hex(&format!("{dir}/vendor"), 4)?.as_deref() != Some(NVIDIA_VENDOR) {
                continue;
            }
            let (Some(device), Some(class)) = (
                self.hex(&format!("{dir}/device"), 4)?,
                self.hex(&format!("{dir}/class"), 6)?,
            ) else {
                self.note(format!(
                    "{dir}: NVIDIA function without a readable device id and class, skipped"
                ));
                continue;
            };
            let group_link = format!("{dir}/iommu_group");
            let iommu_group = match self.link_name(&group_link)? {
                Some(n) => {
                    let id = n.parse().ok();
                    if id.is_none() {
                        self.note(format!("{group_link}: group {} is not a number", shown(&n)));
                    }
                    id
                }
                None => None,
            };
            out.push(PciFunction {
                vendor: NVIDIA_VENDOR.to_string(),
                device,
                class,
                subsystem_vendor: self.hex(&format!("{dir}/subsystem_vendor"), 4)?,
                subsystem_device: self.hex(&format!("{dir}/subsystem_device"), 4)?,
                driver: self.link_name(&format!("{dir}/driver"))?,
                iommu_group,
                sriov_totalvfs: self.decimal(&format!("{dir}/sriov_totalvfs"))?,
                sriov_numvfs: self.decimal(&format!("{dir}/sriov_numvfs"))?,
                address,
            });
        }
        Ok(out)
    }

    fn iommu(&mut self, nvidia: &[PciFunction]) -> Result<IommuFacts, FactsError> {
        let all = self.entries("sys/kernel/iommu_groups")?;
        let mut ids: Vec<u32> = Vec::new();
        for id in nvidia.iter().filter_map(|f| f.iommu_group) {
            if let Err(at) = ids.binary_search(&id) {
                ids.insert(at, id);
            }
        }
        let mut groups = Vec::new();
        for id in ids {
            let dir = format!("sys/kernel/iommu_groups/{id}/devices");
            let mut devices = Vec::new();
            for address in self.entries(&dir)? {
                let dev = format!("{dir}/{address}");
                let vendor = self.hex(&format!("{dev}/vendor"), 4)?;
                let device = self.hex(&format!("{dev}/device"), 4)?;
                devices.push(GroupMember {
                    id: vendor.zip(device).map(|(v, d)| format!("{v}:{d}")),
                    class: self.hex(&format!("{dev}/class"), 6)?,
                    driver: self.link_name(&format!("{dev}/driver"))?,
                    address,
                });
            }
            groups.push(IommuGroup { id, devices });
        }
        Ok(IommuFacts {
            group_count: u32::try_from(all.len()).unwrap_or(u32::MAX),
            groups,
        })
    }
}

/// Odd input quoted for a note: at most 40 characters, escaped.
fn shown(raw: &str) -> String {
    format!("{:?}", raw.chars().take(40).collect::<String>())
}

/// `0x10de` (or `10de`) → `10de`, padded to `width` digits; `None` if it
/// is not hex or does not fit.
pub(crate) fn parse_hex(raw: &str, width: usize) -> Option<String> {
    let digits = raw.trim();
    let digits = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
        .unwrap_or(digits);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let value = u32::from_str_radix(digits, 16).ok()?;
    let text = format!("{value:0width$x}");
    (text.len() == width).then_some(text)
}

/// First `vendor_id` and first `flags` line of `/proc/cpuinfo`.
pub(crate) fn parse_cpuinfo(text: &str) -> Cpu {
    let mut cpu = Cpu::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim() {
            "vendor_id" if cpu.vendor_id.is_none() => {
                cpu.vendor_id = Some(value.trim().to_string()).filter(|v| !v.is_empty());
            }
            "flags" if !cpu.flags_read => {
                cpu.flags_read = true;
                for flag in value.split_whitespace() {
                    match flag {
                        "vmx" => cpu.vmx = true,
                        "svm" => cpu.svm = true,
                        "hypervisor" => cpu.hypervisor = true,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    cpu
}

/// Fills `os` from an os-release file (`KEY=value`, values optionally
/// quoted with shell-style escapes).
pub(crate) fn parse_os_release(text: &str, mut os: Os) -> Os {
    // The last assignment of a key wins, as when a shell sources the file.
    let get = |key: &str| {
        text.lines()
            .filter_map(|line| line.trim().split_once('='))
            .filter(|(k, _)| k.trim() == key)
            .map(|(_, v)| unquote(v.trim()))
            .next_back()
            .filter(|v| !v.is_empty())
    };
    os.id = get("ID");
    os.pretty_name = get("PRETTY_NAME");
    os.version_id = get("VERSION_ID");
    // Debian has VERSION="12 (bookworm)" even where VERSION_CODENAME is absent.
    let from_version = get("VERSION").and_then(|v| {
        let inner = v.split_once('(')?.1.split_once(')')?.0.trim();
        (!inner.is_empty()).then(|| inner.to_string())
    });
    os.codename = get("VERSION_CODENAME").or(from_version);
    os
}

fn unquote(value: &str) -> String {
    let bytes = value.as_bytes();
    let quoted = bytes.len() >= 2
        && (bytes[0] == b'"' || bytes[0] == b'\'')
        && bytes[bytes.len() - 1] == bytes[0];
    if !quoted {
        return value.to_string();
    }
    let inner = &value[1..value.len() - 1];
    if bytes[0] == b'\'' {
        return inner.to_string();
    }
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// Splits a kernel command line on whitespace outside double quotes.
pub(crate) fn split_cmdline(text: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    args.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        args.push(current);
    }
    args
}

/// The `SecureBoot` efivar: 4 attribute bytes, then the value.
pub(crate) fn secure_boot_value(var: &[u8]) -> Option<bool> {
    var.get(4).map(|&b| b == 1)
}

/// The last mount on `/` in a mounts table (later mounts hide earlier ones).
pub(crate) fn root_mount(text: &str) -> Option<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let source = fields.next()?;
            let target = fields.next()?;
            let fstype = fields.next()?;
            (unescape_mount(target) == "/").then(|| Mount {
                source: unescape_mount(source),
                fstype: unescape_mount(fstype),
            })
        })
        .next_back()
}

/// Undoes the kernel's octal escapes in mounts (`\040` for a space).
fn unescape_mount(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                let v = (u32::from(d[0] - b'0') << 6)
                    | (u32::from(d[1] - b'0') << 3)
                    | u32::from(d[2] - b'0');
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids() {
        assert_eq!(parse_hex("0x10de\n", 4).as_deref(), Some("10de"));
        assert_eq!(parse_hex("0X1EB8", 4).as_deref(), Some("1eb8"));
        assert_eq!(parse_hex("0x030200", 6).as_deref(), Some("030200"));
        assert_eq!(parse_hex("0x10", 4).as_deref(), Some("0010"));
        for bad in [
            "",
            "0x",
            "nvidia",
            "0x10de0",
            "0x-1",
            "0xffffffffff",
            "０x10de",
            "0x1 0",
        ] {
            assert_eq!(parse_hex(bad, 4), None, "{bad:?}");
        }
    }

    #[test]
    fn cpuinfo_first_vendor_and_flags() {
        let cpu = parse_cpuinfo(
            "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vmx hypervisor\n\n\
             processor\t: 1\nvendor_id\t: AuthenticAMD\nflags\t\t: svm\n",
        );
        assert_eq!(cpu.vendor_id.as_deref(), Some("GenuineIntel"));
        assert!(cpu.flags_read && cpu.vmx && cpu.hypervisor && !cpu.svm);
        assert_eq!(parse_cpuinfo(""), Cpu::default());
        assert_eq!(
            parse_cpuinfo("vendor_id:\nflags\n::::\n\u{0}"),
            Cpu::default()
        );
    }

    #[test]
    fn os_release_values() {
        let os = parse_os_release(
            "# comment\nPRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nID=debian\n\
             VERSION_ID='13'\nVERSION_CODENAME=trixie\nNAME=\"a \\\"b\\\"\"\n",
            Os::default(),
        );
        assert_eq!(
            os.pretty_name.as_deref(),
            Some("Debian GNU/Linux 13 (trixie)")
        );
        assert_eq!(os.id.as_deref(), Some("debian"));
        assert_eq!(os.version_id.as_deref(), Some("13"));
        assert_eq!(os.codename.as_deref(), Some("trixie"));
        let old = parse_os_release("VERSION=\"11 (bullseye)\"\n", Os::default());
        assert_eq!(old.codename.as_deref(), Some("bullseye"));
        assert_eq!(
            parse_os_release("VERSION=\"(\"\n=\n\"\n", Os::default()),
            Os::default()
        );
        assert_eq!(unquote("\"a\\\\b\""), "a\\b");
        assert_eq!(unquote("\"\\\""), "");
    }

    #[test]
    fn cmdline_tokens() {
        assert_eq!(
            split_cmdline("BOOT_IMAGE=/vmlinuz  ro quiet\tfoo=\"a b\" x\n"),
            ["BOOT_IMAGE=/vmlinuz", "ro", "quiet", "foo=\"a b\"", "x"]
        );
        assert!(split_cmdline(" \n").is_empty());
    }

    #[test]
    fn secure_boot_byte() {
        assert_eq!(secure_boot_value(&[6, 0, 0, 0, 1]), Some(true));
        assert_eq!(secure_boot_value(&[6, 0, 0, 0, 0]), Some(false));
        assert_eq!(secure_boot_value(&[6, 0, 0, 0]), None);
    }

    #[test]
    fn root_mount_last_wins() {
        let m = root_mount(
            "rootfs / rootfs rw 0 0\nproc /proc proc rw 0 0\n\
             rpool/ROOT/pve-1 / zfs rw,xattr 0 0\n/dev/sda1 /mnt/a\\040b ext4 rw 0 0\n",
        )
        .unwrap();
        assert_eq!(
            (m.source.as_str(), m.fstype.as_str()),
            ("rpool/ROOT/pve-1", "zfs")
        );
        assert_eq!(m.zfs_pool(), Some("rpool"));
        assert_eq!(unescape_mount("a\\040b\\134\\"), "a b\\\\");
        assert_eq!(root_mount("garbage\n/ /\n"), None);
    }
}

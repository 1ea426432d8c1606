//! Host configuration: kernel arguments, packages, modules, kernel pin.

use vgpu_plan::iommu::Vendor;
use vgpu_plan::plan::{HostPlan, Iommu, KernelPin, Mode};

/// Payload directory of the offline `.deb` files.
pub const OFFLINE_DEBS_PAYLOAD: &str = "debs";

use super::files::profile_path;
use super::sources::DebSource;
use super::{Ctx, ResolveError};
use crate::profile::Profile;
use crate::registry::Release;
use crate::text::shown;

pub(super) fn host_plan(
    profile: &Profile,
    mode: Mode,
    release: Option<&Release>,
    cx: &Ctx,
) -> Result<HostPlan<DebSource>, ResolveError> {
    let h = &profile.host;
    check_kernel_args(&h.kernel_args, h.iommu, cx)?;
    if h.packages.len() > MAX_PACKAGES {
        return Err(cx.err(format!(
            "`host.packages` lists {} packages: use at most {MAX_PACKAGES} (bake an offline `.deb` or install the rest later)",
            h.packages.len()
        )));
    }
    for (i, pkg) in h.packages.iter().enumerate() {
        let name = pkg.replace("{kernel}", "k");
        let ok = name.len() >= 2
            && pkg.len() <= PACKAGE_CHARS
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
        if !ok {
            return Err(cx.err(format!(
                "`host.packages[{i}]` = {} is not a Debian package name (2 to {PACKAGE_CHARS} lower-case letters, digits, `+`, `-`, `.`; `{{kernel}}` stands for the kernel release)",
                shown(pkg)
            )));
        }
    }
    let mut offline_debs: Vec<DebSource> = Vec::new();
    for (i, deb) in h.offline_debs.iter().enumerate() {
        let key = format!("host.offline-debs[{i}]");
        let source = profile_path(cx, &key, deb)?;
        let name = deb
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ok = name.ends_with(".deb")
            && name.len() > 4
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-._~".contains(c));
        if !ok {
            return Err(cx.err(format!(
                "`{key}` = {} is not a .deb file name (letters, digits, `+-._~`, ending in .deb)",
                shown(&deb.to_string_lossy())
            )));
        }
        let path = format!("{OFFLINE_DEBS_PAYLOAD}/{name}");
        if offline_debs.iter().any(|d| d.path == path) {
            return Err(cx.err(format!(
                "`{key}`: {name} is listed twice (two entries with the same file name would be the same file in the bundle): list each package once"
            )));
        }
        offline_debs.push(DebSource { path, source });
    }
    let mut packages = Vec::new();
    // The demo driver builds nothing: it needs no compiler or headers, so a
    // demo bakes and provisions offline.
    let demo = release.is_some_and(|r| r.demo);
    if mode != Mode::Passthrough && !demo {
        let headers = if profile.proxmox >= 8 {
            "proxmox-headers-{kernel}"
        } else {
            "pve-headers-{kernel}"
        };
        packages.extend(["build-essential", "dkms", "mdevctl", headers].map(String::from));
    }
    // `pve-nvidia-sriov@.service` (the sriov step) comes with Proxmox's
    // helper package, offered from Proxmox VE 8.3 on: every 9.x has it, an
    // 8.x may be older, so there the agent falls back to NVIDIA's
    // `sriov-manage` when the unit is missing.
    if mode == Mode::Native && !demo && profile.proxmox >= 9 {
        packages.push("pve-nvidia-vgpu-helper".into());
    }
    for p in &h.packages {
        if !packages.contains(p) {
            packages.push(p.clone());
        }
    }
    let mut vfio_modules: Vec<String> = ["vfio", "vfio_iommu_type1", "vfio_pci"]
        .map(String::from)
        .into();
    if profile.proxmox == 7 {
        // Folded into `vfio` in kernel 6.2; Proxmox VE 7 runs 5.15.
        vfio_modules.push("vfio_virqfd".into());
    }
    Ok(HostPlan {
        iommu: h.iommu,
        bootloader: h.bootloader,
        kernel_args_extra: h.kernel_args.clone(),
        packages,
        offline_debs,
        vfio_modules,
        blacklist: vec!["nouveau".into()],
        kernel_pin: kernel_pin(profile.proxmox, mode, release),
    })
}

/// The unlock patches build only on kernels older than the release's limit
/// (seed installer sections 3.7 and 4.7): on majors whose kernels can reach
/// that limit, pin the newest series below it.
fn kernel_pin(proxmox: u8, mode: Mode, release: Option<&Release>) -> Option<KernelPin> {
    if mode != Mode::Unlock {
        return None;
    }
    let release = release?;
    let below = release.unlock_kernel_below.as_deref()?;
    let (series, fallback) = match (proxmox, below) {
        (8, "6.8") => ("6.5", "6.5.13-6-pve"),
        (9, "6.17") => ("6.14.11", "6.14.11-9-pve"),
        // Proxmox VE 7 kernels (5.15, 6.2) and Proxmox VE 8 kernels for
        // 17.6 (up to 6.14) are all below the limit.
        _ => return None,
    };
    Some(KernelPin {
        when_running_at_least: below.to_string(),
        series: series.to_string(),
        fallback: fallback.to_string(),
        zfs_guard: true,
        reason: format!(
            "the vgpu_unlock patch for {} ({}) does not build on kernel {below} or newer",
            release.release, release.version
        ),
    })
}

/// The x86 kernel command line holds 2048 bytes (`COMMAND_LINE_SIZE`),
/// the terminating NUL included.
const COMMAND_LINE_SIZE: usize = 2048;

/// Room left for what the distribution and the boot loader put on the
/// command line before the plan's arguments: Proxmox VE's usual
/// `BOOT_IMAGE=/boot/vmlinuz-6.14.11-4-pve root=ZFS=rpool/ROOT/pve-1
/// boot=zfs ro quiet` is about 90 bytes; 512 leaves room for an operator's
/// own arguments too (`console=`, `crashkernel=`, ...).
const DISTRO_RESERVE: usize = 512;

/// The budget for the plan's arguments (the IOMMU arguments and
/// `host.kernel-args`, each with a separating space): 2048 - 512 = 1536
/// bytes.
pub const KERNEL_ARGS_BUDGET: usize = COMMAND_LINE_SIZE - DISTRO_RESERVE;

/// One `host.kernel-args` entry is at most this long.
pub const KERNEL_ARG_CHARS: usize = 256;

/// `host.packages` holds at most this many names.
pub const MAX_PACKAGES: usize = 64;

/// One `host.packages` entry is at most this long.
pub const PACKAGE_CHARS: usize = 128;

/// The IOMMU arguments the plan adds for `iommu` (for `auto`, the longer
/// vendor's, since the host decides).
fn plan_iommu_args(iommu: Iommu) -> &'static [&'static str] {
    match iommu {
        Iommu::Intel => Vendor::Intel.iommu_kernel_args(),
        Iommu::Amd => Vendor::Amd.iommu_kernel_args(),
        Iommu::Auto => {
            let (i, a) = (
                Vendor::Intel.iommu_kernel_args(),
                Vendor::Amd.iommu_kernel_args(),
            );
            if line_len(i.iter().copied()) >= line_len(a.iter().copied()) {
                i
            } else {
                a
            }
        }
    }
}

/// Bytes the arguments take on the command line, a space before each.
fn line_len<'a>(args: impl Iterator<Item = &'a str>) -> usize {
    args.map(|a| a.len() + 1).sum()
}

fn check_kernel_args(args: &[String], iommu: Iommu, cx: &Ctx) -> Result<(), ResolveError> {
    for (i, arg) in args.iter().enumerate() {
        let key = format!("host.kernel-args[{i}]");
        if arg.len() > KERNEL_ARG_CHARS {
            return Err(cx.err(format!(
                "`{key}` = {} is too long: one kernel argument is at most {KERNEL_ARG_CHARS} characters",
                shown(arg)
            )));
        }
        let ok = !arg.is_empty()
            && arg
                .chars()
                .all(|c| c.is_ascii_graphic() && !"\"'\\`$;".contains(c));
        if !ok {
            return Err(cx.err(format!(
                "`{key}` = {} is not a single kernel argument: no spaces, quotes or shell characters",
                shown(arg)
            )));
        }
        iommu_conflict(&key, arg, iommu, cx)?;
        if args[..i].contains(arg) {
            return Err(cx.err(format!(
                "`{key}` = {} is listed twice: list it once",
                shown(arg)
            )));
        }
    }
    let ours = plan_iommu_args(iommu);
    let used = line_len(ours.iter().copied()) + line_len(args.iter().map(String::as_str));
    if used > KERNEL_ARGS_BUDGET {
        return Err(cx.err(format!(
            "`host.kernel-args` ({} arguments) with the plan's IOMMU arguments ({}) take {used} bytes of the kernel command line: the plan may use at most {KERNEL_ARGS_BUDGET} of its 2048 bytes (the rest is kept for the boot loader's `BOOT_IMAGE=... root=... ro quiet`); remove arguments",
            args.len(),
            ours.join(" ")
        )));
    }
    Ok(())
}

/// The plan owns the IOMMU arguments (`host.iommu`): an extra argument
/// about the IOMMU either repeats them or fights them.
fn iommu_conflict(key: &str, arg: &str, iommu: Iommu, cx: &Ctx) -> Result<(), ResolveError> {
    let (name, value) = arg.split_once('=').unwrap_or((arg, ""));
    let vendor = match name {
        "intel_iommu" => Some(Iommu::Intel),
        "amd_iommu" => Some(Iommu::Amd),
        "iommu" => None,
        _ => return Ok(()),
    };
    let iommu_word = match iommu {
        Iommu::Auto => "auto",
        Iommu::Intel => "intel",
        Iommu::Amd => "amd",
    };
    let ours = plan_iommu_args(iommu).join(" ");
    if value == "off" || (name == "iommu" && value != "pt") {
        let what = if value == "off" {
            "turns the IOMMU off, which vGPU and passthrough need"
        } else {
            "contradicts the plan's `iommu=pt`"
        };
        return Err(cx.err(format!(
            "`{key}` = {} {what}: remove it (`host.iommu` = \"{iommu_word}\" makes the plan add the IOMMU arguments itself)",
            shown(arg)
        )));
    }
    match (vendor, iommu) {
        (Some(v), Iommu::Intel | Iommu::Amd) if v != iommu => Err(cx.err(format!(
            "`{key}` = {} contradicts `host.iommu` = \"{iommu_word}\" (the plan adds {ours}): remove it, or set `host.iommu` to the hosts' CPU vendor",
            shown(arg)
        ))),
        (Some(_), Iommu::Auto) => Err(cx.err(format!(
            "`{key}` = {} fixes the CPU vendor but `host.iommu` = \"auto\" lets the agent choose per host: remove it, or set `host.iommu` = \"intel\" or \"amd\"",
            shown(arg)
        ))),
        _ if value != "on" && value != "pt" => Ok(()),
        _ => Err(cx.err(format!(
            "`{key}` = {} is already added by the plan (`host.iommu` = \"{iommu_word}\" adds {}): remove it",
            shown(arg),
            if iommu == Iommu::Auto { "intel_iommu=on or amd_iommu=on, and iommu=pt".to_string() } else { ours.clone() }
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn cx() -> Ctx<'static> {
        Ctx {
            file: Path::new("p.toml"),
            warnings: Vec::new(),
        }
    }

    /// Distinct arguments of `len` bytes each (`len` >= 8).
    fn args(count: usize, len: usize) -> Vec<String> {
        (0..count)
            .map(|i| format!("a{i:06}={}", "x".repeat(len - 8)))
            .collect()
    }

    #[test]
    fn the_budget_counts_the_iommu_arguments_and_every_space() {
        // intel_iommu=on iommu=pt: 15 + 9 bytes with their spaces.
        let iommu = 24;
        // 6 arguments of 251 bytes: 6 * 252 = 1512, + 24 = 1536 exactly.
        let fits = args(6, 251);
        assert!(check_kernel_args(&fits, Iommu::Intel, &cx()).is_ok());
        assert_eq!(iommu + 6 * 252, KERNEL_ARGS_BUDGET);
        let mut over = fits.clone();
        over[0].push('x');
        let e = check_kernel_args(&over, Iommu::Intel, &cx()).unwrap_err();
        assert!(e.message.contains("take 1537 bytes"), "{}", e.message);
        // `auto` counts the longer vendor's arguments (intel's).
        assert!(check_kernel_args(&fits, Iommu::Auto, &cx()).is_ok());
        assert!(check_kernel_args(&over, Iommu::Auto, &cx()).is_err());
    }

    #[test]
    fn iommu_options_that_neither_repeat_nor_fight_the_plan_are_kept() {
        let ok = vec!["intel_iommu=igfx_off".to_string()];
        assert!(check_kernel_args(&ok, Iommu::Intel, &cx()).is_ok());
        assert!(check_kernel_args(&ok, Iommu::Amd, &cx()).is_err());
        assert!(check_kernel_args(&ok, Iommu::Auto, &cx()).is_err());
        let pt = vec!["iommu=pt".to_string()];
        assert!(check_kernel_args(&pt, Iommu::Auto, &cx()).is_err());
    }
}

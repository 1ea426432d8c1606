//! Host configuration: kernel arguments, packages, modules, kernel pin.

use vgpu_plan::plan::{HostPlan, KernelPin, Mode};

/// Payload directory of the offline `.deb` files.
pub const OFFLINE_DEBS_PAYLOAD: &str = "debs";

use super::sources::DebSource;
use super::{Ctx, ResolveError};
use crate::profile::Profile;
use crate::registry::Release;

pub(super) fn host_plan(
    profile: &Profile,
    mode: Mode,
    release: Option<&Release>,
    cx: &Ctx,
) -> Result<HostPlan<DebSource>, ResolveError> {
    let h = &profile.host;
    for (i, arg) in h.kernel_args.iter().enumerate() {
        let ok = !arg.is_empty()
            && arg
                .chars()
                .all(|c| c.is_ascii_graphic() && !"\"'\\`$;".contains(c));
        if !ok {
            return Err(cx.err(format!(
                "`host.kernel-args[{i}]` = {arg:?} is not a single kernel argument: no spaces, quotes or shell characters"
            )));
        }
    }
    for (i, pkg) in h.packages.iter().enumerate() {
        let name = pkg.replace("{kernel}", "k");
        let ok = name.len() >= 2
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
        if !ok {
            return Err(cx.err(format!(
                "`host.packages[{i}]` = {pkg:?} is not a Debian package name (lower-case letters, digits, `+`, `-`, `.`; `{{kernel}}` stands for the kernel release)"
            )));
        }
    }
    let mut offline_debs: Vec<DebSource> = Vec::new();
    for (i, deb) in h.offline_debs.iter().enumerate() {
        let name = deb
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ok = name.ends_with(".deb")
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-._~".contains(c));
        if !ok {
            return Err(cx.err(format!(
                "`host.offline-debs[{i}]` = {:?} is not a .deb file name (letters, digits, `+-._~`, ending in .deb)",
                deb.display()
            )));
        }
        let path = format!("{OFFLINE_DEBS_PAYLOAD}/{name}");
        if offline_debs.iter().any(|d| d.path == path) {
            return Err(cx.err(format!("`host.offline-debs[{i}]`: {name} is listed twice")));
        }
        offline_debs.push(DebSource {
            path,
            source: cx.base().join(deb),
        });
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

//! Printing facts and the decisions taken from them.

use std::fmt::Write as _;

use super::decide::{
    GpuVerdict, Obstacle, Severity, proxmox_major, resolve_bootloader, resolve_iommu, vgpu_possible,
};
use super::{Facts, PciFunction, class_name};
use vgpu_plan::compat::Support;
use vgpu_plan::plan::{Bootloader, Iommu};

/// [`vgpu_possible`]'s obstacles plus a warning when GPUs were found but
/// the table lists none of them for vGPU (fine for passthrough).
pub(super) fn obstacles(facts: &Facts, verdicts: &[GpuVerdict]) -> Vec<Obstacle> {
    let mut list = vgpu_possible(facts).err().unwrap_or_default();
    let capable = |v: &GpuVerdict| matches!(v.support(), Some(Support::Native | Support::Unlock));
    if !verdicts.is_empty() && !verdicts.iter().any(capable) {
        list.push(Obstacle {
            severity: Severity::Warning,
            message: "no GPU here is listed for vGPU (native or unlock) in the compatibility table"
                .into(),
        });
    }
    list
}

fn or_none(value: Option<&str>) -> &str {
    value.unwrap_or("(none)")
}

fn yes_no(value: bool, yes: &'static str, no: &'static str) -> &'static str {
    if value { yes } else { no }
}

/// A readable report: facts, `auto` decisions, GPUs with their verdicts,
/// and a plain statement of whether vGPU can work here.
pub fn render_human(facts: &Facts, verdicts: &[GpuVerdict]) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_human(&mut out, facts, verdicts);
    out
}

fn write_human(out: &mut String, facts: &Facts, verdicts: &[GpuVerdict]) -> std::fmt::Result {
    let os = &facts.os;
    writeln!(out, "Host")?;
    let mut system = or_none(os.pretty_name.as_deref()).to_string();
    let codename = or_none(os.codename.as_deref());
    match proxmox_major(facts) {
        Some(major) => write!(system, "; {codename} is the base of Proxmox VE {major}")?,
        None => write!(system, "; codename {codename} is not a Proxmox VE base")?,
    }
    let hints: Vec<&str> = [(os.etc_pve, "/etc/pve"), (os.pveversion, "pveversion")]
        .into_iter()
        .filter_map(|(present, name)| present.then_some(name))
        .collect();
    if hints.is_empty() {
        system.push_str(" (plain Debian: no /etc/pve, no pveversion)");
    } else {
        write!(system, " (Proxmox: {})", hints.join(", "))?;
    }
    writeln!(out, "  system       {system}")?;

    let cpu = &facts.cpu;
    let vendor = match resolve_iommu(Iommu::Auto, facts) {
        Ok(v) => format!(
            "{} (IOMMU arguments for {v})",
            or_none(cpu.vendor_id.as_deref())
        ),
        Err(e) => e.to_string(),
    };
    let mut flags: Vec<&str> = [(cpu.vmx, "vmx"), (cpu.svm, "svm")]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
    if flags.is_empty() {
        flags.push("no vmx/svm");
    }
    let place = yes_no(cpu.hypervisor, "virtual machine", "bare metal");
    writeln!(
        out,
        "  cpu          {vendor}; {}; {place}",
        flags.join(", ")
    )?;

    let fw = &facts.firmware;
    let sb = match (fw.uefi, fw.secure_boot) {
        (false, _) => "no Secure Boot",
        (true, Some(true)) => "Secure Boot on",
        (true, Some(false)) => "Secure Boot off",
        (true, None) => "Secure Boot unknown (no readable SecureBoot variable)",
    };
    writeln!(
        out,
        "  firmware     {}, {sb}",
        yes_no(fw.uefi, "UEFI", "legacy BIOS")
    )?;
    let boot = resolve_bootloader(Bootloader::Auto, facts);
    writeln!(out, "  boot loader  {}: {}", boot.kind, boot.reason)?;
    if let Some(cmdline) = &facts.boot.kernel_cmdline {
        writeln!(out, "  /etc/kernel/cmdline  {cmdline}")?;
    }
    writeln!(
        out,
        "  kernel       {}",
        or_none(facts.kernel.release.as_deref())
    )?;
    writeln!(out, "  cmdline      {}", facts.kernel.cmdline.join(" "))?;
    match &facts.root_fs {
        Some(m) => writeln!(out, "  root fs      {} on {}", m.fstype, m.source)?,
        None => writeln!(out, "  root fs      unknown (no mounts table)")?,
    }
    let m = &facts.modules;
    writeln!(
        out,
        "  modules      nouveau {}, nvidia {}, vfio_pci {}",
        yes_no(m.nouveau, "loaded", "not loaded"),
        yes_no(m.nvidia, "loaded", "not loaded"),
        yes_no(m.vfio_pci, "loaded", "not loaded"),
    )?;
    match facts.iommu.group_count {
        0 => writeln!(out, "  iommu        off (no IOMMU groups)")?,
        n => writeln!(out, "  iommu        on, {n} groups")?,
    }
    writeln!(
        out,
        "  machine-id   {}",
        or_none(facts.machine_id.as_deref())
    )?;
    writeln!(out, "  boot-id      {}", or_none(facts.boot_id.as_deref()))?;

    writeln!(out, "NVIDIA functions")?;
    if facts.nvidia.is_empty() {
        writeln!(out, "  (none)")?;
    }
    for f in &facts.nvidia {
        write_function(out, facts, f, verdicts)?;
    }

    writeln!(out, "vGPU")?;
    match obstacles(facts, verdicts) {
        list if list.is_empty() => writeln!(out, "  possible: nothing found that rules it out")?,
        list => {
            let fatal = list.iter().any(|o| o.severity == Severity::Fatal);
            let verdict = yes_no(
                fatal,
                "NOT possible on this host",
                "possible after the agent's changes",
            );
            writeln!(out, "  {verdict}")?;
            for o in &list {
                writeln!(out, "  {}: {}", o.severity, o.message)?;
            }
        }
    }
    if !facts.notes.is_empty() {
        writeln!(out, "Notes")?;
        for note in &facts.notes {
            writeln!(out, "  {note}")?;
        }
    }
    Ok(())
}

fn write_function(
    out: &mut String,
    facts: &Facts,
    f: &PciFunction,
    verdicts: &[GpuVerdict],
) -> std::fmt::Result {
    let subsystem = match (&f.subsystem_vendor, &f.subsystem_device) {
        (Some(v), Some(d)) => format!(", subsystem {v}:{d}"),
        _ => String::new(),
    };
    writeln!(
        out,
        "  {} {} {}{subsystem}, {}",
        f.address,
        f.id(),
        f.class_name(),
        f.driver
            .as_deref()
            .map_or("no driver bound".into(), |d| format!("driver {d}"))
    )?;
    let group = match f.iommu_group {
        None => "no IOMMU group".to_string(),
        Some(id) => {
            let peers: Vec<String> = facts
                .group_peers(f)
                .iter()
                .map(|p| {
                    let what = p.class.as_deref().map_or("unknown device", class_name);
                    format!(
                        "{} {} {what} (driver {})",
                        p.address,
                        or_none(p.id.as_deref()),
                        or_none(p.driver.as_deref())
                    )
                })
                .collect();
            if peers.is_empty() {
                format!("IOMMU group {id}, alone")
            } else {
                format!("IOMMU group {id} with {}", peers.join("; "))
            }
        }
    };
    writeln!(out, "      {group}")?;
    if let Some(total) = f.sriov_totalvfs {
        writeln!(
            out,
            "      SR-IOV: {} of {total} virtual functions enabled",
            f.sriov_numvfs.unwrap_or(0)
        )?;
    }
    if let Some(v) = verdicts.iter().find(|v| v.address == f.address) {
        match &v.compat {
            Some(c) => {
                let majors: Vec<String> = c.majors.iter().map(u32::to_string).collect();
                let majors = if majors.is_empty() {
                    "none".into()
                } else {
                    majors.join(", ")
                };
                writeln!(
                    out,
                    "      {} ({}): vGPU support {}, releases {majors}",
                    c.name, c.chip, c.support
                )?;
                if let Some(why) = &c.correction {
                    writeln!(out, "      correction: {why}")?;
                }
            }
            None => writeln!(
                out,
                "      not in the GPU compatibility table: vGPU support unknown"
            )?,
        }
    }
    Ok(())
}

//! `facts --json`: every fact, the `auto` decisions, the GPU verdicts and
//! the vGPU obstacles.
//!
//! Written field by field (see `crate::json` for why). Keys and values are
//! the serde (kebab-case) forms of the same types, with `null` where serde
//! would leave a `None` out; a test compares the two for every fixture host,
//! so a field added to [`Facts`] and forgotten here fails it.

use super::decide::{
    BootloaderKind, GpuVerdict, Severity, proxmox_major, resolve_bootloader, resolve_iommu,
};
use super::render::obstacles;
use super::{Facts, IommuGroup, PciFunction};
use crate::json::JsonWriter;
use vgpu_plan::compat::CompatEntry;
use vgpu_plan::plan::{Bootloader, Iommu};

/// The facts, the `auto` decisions, the GPU verdicts and the vGPU obstacles
/// as one pretty-printed JSON object with the keys `facts`, `decisions`,
/// `gpus` and `vgpu`. Absent facts are `null`.
pub fn render_json(facts: &Facts, verdicts: &[GpuVerdict]) -> String {
    let mut w = JsonWriter::new();
    w.open_object(None);
    write_facts(&mut w, facts);

    w.open_object(Some("decisions"));
    let vendor = resolve_iommu(Iommu::Auto, facts);
    let vendor_word = vendor.as_ref().ok().map(|v| v.to_string());
    w.string(Some("cpu-vendor"), vendor_word.as_deref());
    let vendor_error = vendor.err().map(|e| e.to_string());
    w.string(Some("cpu-vendor-error"), vendor_error.as_deref());
    let boot = resolve_bootloader(Bootloader::Auto, facts);
    w.open_object(Some("bootloader"));
    let kind = match boot.kind {
        BootloaderKind::Grub => "grub",
        BootloaderKind::SystemdBoot => "systemd-boot",
    };
    w.string(Some("kind"), Some(kind));
    w.string(Some("reason"), Some(&boot.reason));
    w.close_object();
    w.number(Some("proxmox-major"), proxmox_major(facts).map(u64::from));
    w.boolean(Some("proxmox-hint"), facts.os.proxmox_hint());
    let zfs = facts.root_fs.as_ref().is_some_and(|m| m.is_zfs());
    w.boolean(Some("zfs-root"), zfs);
    w.close_object();

    w.open_array(Some("gpus"));
    for v in verdicts {
        w.open_object(None);
        w.string(Some("address"), Some(&v.address));
        w.string(Some("device"), Some(&v.device));
        match &v.compat {
            Some(c) => write_compat(&mut w, c),
            None => w.null(Some("compat")),
        }
        w.close_object();
    }
    w.close_array();

    let obstacles = obstacles(facts, verdicts);
    w.open_object(Some("vgpu"));
    let fatal = obstacles.iter().any(|o| o.severity == Severity::Fatal);
    w.boolean(Some("possible"), !fatal);
    w.open_array(Some("obstacles"));
    for o in &obstacles {
        w.open_object(None);
        let severity = match o.severity {
            Severity::Fatal => "fatal",
            Severity::PreReboot => "pre-reboot",
            Severity::Warning => "warning",
        };
        w.string(Some("severity"), Some(severity));
        w.string(Some("message"), Some(&o.message));
        w.close_object();
    }
    w.close_array();
    w.close_object();

    w.close_object();
    w.finish()
}

fn write_facts(w: &mut JsonWriter, f: &Facts) {
    w.open_object(Some("facts"));

    w.open_object(Some("cpu"));
    w.string(Some("vendor-id"), f.cpu.vendor_id.as_deref());
    w.boolean(Some("flags-read"), f.cpu.flags_read);
    w.boolean(Some("vmx"), f.cpu.vmx);
    w.boolean(Some("svm"), f.cpu.svm);
    w.boolean(Some("hypervisor"), f.cpu.hypervisor);
    w.close_object();

    w.open_object(Some("os"));
    w.string(Some("id"), f.os.id.as_deref());
    w.string(Some("pretty-name"), f.os.pretty_name.as_deref());
    w.string(Some("version-id"), f.os.version_id.as_deref());
    w.string(Some("codename"), f.os.codename.as_deref());
    w.boolean(Some("etc-pve"), f.os.etc_pve);
    w.boolean(Some("pveversion"), f.os.pveversion);
    w.close_object();

    w.open_object(Some("firmware"));
    w.boolean(Some("uefi"), f.firmware.uefi);
    match f.firmware.secure_boot {
        Some(on) => w.boolean(Some("secure-boot"), on),
        None => w.null(Some("secure-boot")),
    }
    w.close_object();

    w.open_object(Some("boot"));
    w.boolean(Some("proxmox-boot-uuids"), f.boot.proxmox_boot_uuids);
    w.string(Some("kernel-cmdline"), f.boot.kernel_cmdline.as_deref());
    w.boolean(Some("default-grub"), f.boot.default_grub);
    w.close_object();

    w.open_object(Some("kernel"));
    w.string(Some("release"), f.kernel.release.as_deref());
    w.strings(Some("cmdline"), &f.kernel.cmdline);
    w.close_object();

    w.open_object(Some("modules"));
    w.boolean(Some("nouveau"), f.modules.nouveau);
    w.boolean(Some("nvidia"), f.modules.nvidia);
    w.boolean(Some("vfio-pci"), f.modules.vfio_pci);
    w.close_object();

    w.open_object(Some("iommu"));
    w.number(Some("group-count"), Some(u64::from(f.iommu.group_count)));
    w.open_array(Some("groups"));
    for g in &f.iommu.groups {
        write_group(w, g);
    }
    w.close_array();
    w.close_object();

    w.open_array(Some("nvidia"));
    for p in &f.nvidia {
        write_function(w, p);
    }
    w.close_array();

    match &f.root_fs {
        Some(m) => {
            w.open_object(Some("root-fs"));
            w.string(Some("source"), Some(&m.source));
            w.string(Some("fstype"), Some(&m.fstype));
            w.close_object();
        }
        None => w.null(Some("root-fs")),
    }
    w.string(Some("machine-id"), f.machine_id.as_deref());
    w.string(Some("boot-id"), f.boot_id.as_deref());
    w.strings(Some("notes"), &f.notes);
    w.close_object();
}

fn write_group(w: &mut JsonWriter, g: &IommuGroup) {
    w.open_object(None);
    w.number(Some("id"), Some(u64::from(g.id)));
    w.open_array(Some("devices"));
    for d in &g.devices {
        w.open_object(None);
        w.string(Some("address"), Some(&d.address));
        w.string(Some("id"), d.id.as_deref());
        w.string(Some("class"), d.class.as_deref());
        w.string(Some("driver"), d.driver.as_deref());
        w.close_object();
    }
    w.close_array();
    w.close_object();
}

fn write_function(w: &mut JsonWriter, p: &PciFunction) {
    w.open_object(None);
    w.string(Some("address"), Some(&p.address));
    w.string(Some("vendor"), Some(&p.vendor));
    w.string(Some("device"), Some(&p.device));
    w.string(Some("class"), Some(&p.class));
    w.string(Some("subsystem-vendor"), p.subsystem_vendor.as_deref());
    w.string(Some("subsystem-device"), p.subsystem_device.as_deref());
    w.string(Some("driver"), p.driver.as_deref());
    w.number(Some("iommu-group"), p.iommu_group.map(u64::from));
    w.number(Some("sriov-totalvfs"), p.sriov_totalvfs.map(u64::from));
    w.number(Some("sriov-numvfs"), p.sriov_numvfs.map(u64::from));
    w.close_object();
}

fn write_compat(w: &mut JsonWriter, c: &CompatEntry) {
    w.open_object(Some("compat"));
    w.string(Some("device"), Some(&c.device));
    w.string(Some("name"), Some(&c.name));
    w.string(Some("chip"), Some(&c.chip));
    w.string(Some("support"), Some(&c.support.to_string()));
    w.open_array(Some("majors"));
    for m in &c.majors {
        w.number(None, Some(u64::from(*m)));
    }
    w.close_array();
    w.string(Some("correction"), c.correction.as_deref());
    w.close_object();
}

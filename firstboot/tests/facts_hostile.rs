//! Facts from trees that try to lead the reader out of its root, or hold
//! garbage: nothing outside the root is read, nothing panics or hangs.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use vgpu_firstboot::facts::{read_facts, render_human, render_json};

fn put(root: &Path, rel: &str, content: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn link(root: &Path, rel: &str, target: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    symlink(target, path).unwrap();
}

/// A device directory with NVIDIA ids, linked from `sys/bus/pci/devices`.
fn gpu(root: &Path, addr: &str, device: &str) -> String {
    let dir = format!("sys/devices/pci0000:00/{addr}");
    put(root, &format!("{dir}/vendor"), b"0x10de\n");
    put(root, &format!("{dir}/device"), device.as_bytes());
    put(root, &format!("{dir}/class"), b"0x030200\n");
    link(
        root,
        &format!("sys/bus/pci/devices/{addr}"),
        &format!("../../../devices/pci0000:00/{addr}"),
    );
    dir
}

/// Links are resolved by the kernel inside the root, as in a chroot: an
/// absolute target means the same path under the root, and `..` stops at
/// the root. Every link below would reach the build machine's own files if
/// followed outside; none does.
#[test]
fn symlinks_leaving_the_root_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    let dev = gpu(r, "0000:01:00.0", "0x1eb8");
    // Absolute: read as written, so the driver's name is the link's last
    // component (as a chroot would see it); nothing is read through it.
    link(r, &format!("{dev}/driver"), "/etc");
    // Relative, climbing past the root: `..` stops at the root, so this is
    // the root's kernel/iommu_groups/3.
    link(
        r,
        &format!("{dev}/iommu_group"),
        "../../../../../../../../kernel/iommu_groups/3",
    );
    // A device only reachable through an absolute link is looked up under
    // the root, where it does not exist: not listed.
    link(
        r,
        "sys/bus/pci/devices/0000:02:00.0",
        "/sys/devices/pci0000:00/0000:02:00.0",
    );
    // Climbing back to itself: a loop.
    link(
        r,
        "sys/bus/pci/devices/0000:03:00.0",
        "../../../../../../../../../../sys/bus/pci/devices/0000:03:00.0",
    );
    // Files that would be read from the real host: each resolves to itself
    // under the root, a loop.
    link(r, "etc/os-release", "/etc/os-release");
    link(r, "proc/cpuinfo", "../../proc/cpuinfo");
    link(r, "sys/kernel/iommu_groups", "/sys/kernel/iommu_groups");
    link(r, "sys/firmware/efi", "../../../sys/firmware/efi");
    link(r, "proc/self", "/proc/self");
    // A loop.
    link(r, "etc/machine-id", "../etc/machine-id");
    // The host's /proc/cmdline exists; the root's is what is read.
    put(r, "proc/cmdline", b"fixture=1\n");
    link(r, "etc/kernel/cmdline", "/proc/cmdline");

    let f = read_facts(r).unwrap();
    assert_eq!(f.nvidia.len(), 1);
    assert_eq!(f.nvidia[0].driver.as_deref(), Some("etc"));
    assert_eq!(f.nvidia[0].iommu_group, Some(3));
    assert_eq!(f.os.pretty_name, None);
    assert_eq!(f.cpu.vendor_id, None);
    assert_eq!(f.iommu.group_count, 0);
    assert_eq!(f.iommu.groups.len(), 1);
    assert!(f.iommu.groups[0].devices.is_empty());
    assert!(!f.firmware.uefi);
    assert_eq!(f.root_fs, None);
    assert_eq!(f.machine_id, None);
    assert_eq!(f.boot.kernel_cmdline.as_deref(), Some("fixture=1"));
    assert_eq!(f.kernel.cmdline, ["fixture=1"]);
    let notes = f.notes.join("\n");
    for looped in [
        "sys/bus/pci/devices/0000:03:00.0/vendor",
        "etc/os-release",
        "proc/cpuinfo",
        "sys/kernel/iommu_groups",
        "sys/kernel/iommu_groups/3/devices",
        "sys/firmware/efi",
        "proc/self/mounts",
        "etc/machine-id",
    ] {
        let expected = format!("{looped}: too many levels of symbolic links, not followed");
        assert!(
            f.notes.contains(&expected),
            "missing note {expected:?} in\n{notes}"
        );
    }
    assert_eq!(f.notes.len(), 8, "{notes}");
    let human = render_human(&f, &[]);
    assert!(
        human
            .contains("\nNotes\n  proc/cpuinfo: too many levels of symbolic links, not followed\n"),
        "{human}"
    );
}

#[test]
fn garbage_is_noted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    put(r, "proc/cpuinfo", b"");
    put(
        r,
        "etc/os-release",
        b"\xff\xfe=\x00\nID=\"debian\nVERSION=\"(\"\n",
    );
    put(
        r,
        "sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c",
        b"\x06\x00",
    );
    fs::create_dir_all(r.join("proc/cmdline")).unwrap();
    put(r, "proc/mounts", b"/dev/sda1\n\\\\ / \\0\n");
    put(r, "etc/machine-id", b"\n\n");
    // Not NVIDIA, not hex, empty: skipped.
    let other = gpu(r, "0000:00:02.0", "0x1234");
    put(
        r,
        &format!("{other}/vendor"),
        "ûnïcødé garbage that goes on and on and on and on".as_bytes(),
    );
    let empty = gpu(r, "0000:00:03.0", "0x1234");
    put(r, &format!("{empty}/vendor"), b"");
    // NVIDIA with a garbage device id: skipped with a note.
    gpu(r, "0000:01:00.0", "nvidia!");
    // NVIDIA with odd extras: kept, the extras dropped.
    let ok = gpu(r, "0000:02:00.0", "0x2204");
    put(r, &format!("{ok}/sriov_totalvfs"), b"lots\n");
    put(r, &format!("{ok}/subsystem_vendor"), b"0x1\n");
    link(
        r,
        &format!("{ok}/iommu_group"),
        "../../../kernel/iommu_groups/abc",
    );
    fs::create_dir_all(r.join("sys/kernel/iommu_groups/abc")).unwrap();

    let f = read_facts(r).unwrap();
    assert_eq!(f.cpu, Default::default());
    assert_eq!(
        f.os.id.as_deref(),
        Some("\"debian"),
        "an unterminated quote is kept raw"
    );
    assert_eq!(f.os.codename, None);
    assert!(f.firmware.uefi);
    assert_eq!(f.firmware.secure_boot, None);
    assert!(f.kernel.cmdline.is_empty());
    assert_eq!(f.root_fs.as_ref().map(|m| m.source.as_str()), Some("\\\\"));
    assert_eq!(f.machine_id, None);
    assert_eq!(f.nvidia.len(), 1);
    let g = &f.nvidia[0];
    assert_eq!(
        (g.address.as_str(), g.device.as_str()),
        ("0000:02:00.0", "2204")
    );
    assert_eq!(
        (
            g.sriov_totalvfs,
            g.iommu_group,
            g.subsystem_vendor.as_deref()
        ),
        (None, None, Some("0001"))
    );
    assert_eq!(f.iommu.group_count, 1);
    let notes = f.notes.join("\n");
    for expected in [
        "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c: shorter than 5 bytes, Secure Boot unknown",
        "proc/cmdline: not a regular file, not read",
        "sys/bus/pci/devices/0000:00:02.0/vendor: \"ûnïcødé garbage that goes on and on and \" is not a 4-digit hex id",
        "sys/bus/pci/devices/0000:01:00.0/device: \"nvidia!\" is not a 4-digit hex id",
        "sys/bus/pci/devices/0000:01:00.0: NVIDIA function without a readable device id and class, skipped",
        "sys/bus/pci/devices/0000:02:00.0/sriov_totalvfs: \"lots\" is not a number",
        "sys/bus/pci/devices/0000:02:00.0/iommu_group: group \"abc\" is not a number",
    ] {
        assert!(
            notes.contains(expected),
            "missing note {expected:?} in\n{notes}"
        );
    }
    // Printing odd facts works too.
    assert!(render_json(&f, &[]).unwrap().contains("\"notes\": ["));
    assert!(render_human(&f, &[]).contains("Secure Boot unknown"));
}

/// A FIFO where a file should be would block `open`; it is skipped.
#[test]
fn special_files_are_not_opened() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    fs::create_dir_all(r.join("proc")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(r.join("proc/cpuinfo"))
        .status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("mkfifo not available; skipped");
        return;
    }
    let f = read_facts(r).unwrap();
    assert_eq!(f.notes, ["proc/cpuinfo: not a regular file, not read"]);
}

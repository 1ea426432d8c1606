//! Host facts read from the fixture trees in `tests/hosts/` (written by
//! `tests/hosts/generate.sh`) and the decisions taken from them.

use vgpu_firstboot::facts::{
    BootFiles, BootloaderKind, Cpu, Facts, Firmware, GroupMember, IommuFacts, IommuGroup, Kernel,
    Modules, Mount, Obstacle, Os, PciFunction, Severity, Vendor, classify_gpus, proxmox_major,
    read_facts, render_human, resolve_bootloader, resolve_iommu, vgpu_possible,
};
use vgpu_plan::compat::Support;
use vgpu_plan::plan::{Bootloader, Iommu};

#[allow(dead_code)]
mod support {
    pub mod hosts;
}
use support::hosts::{facts, table};

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn cpu(vendor: &str, vmx: bool, svm: bool, hypervisor: bool) -> Cpu {
    Cpu {
        vendor_id: s(vendor),
        flags_read: true,
        vmx,
        svm,
        hypervisor,
    }
}

fn bookworm(pve: bool) -> Os {
    Os {
        id: s("debian"),
        pretty_name: s("Debian GNU/Linux 12 (bookworm)"),
        version_id: s("12"),
        codename: s("bookworm"),
        etc_pve: pve,
        pveversion: pve,
    }
}

fn grub_only() -> BootFiles {
    BootFiles {
        default_grub: true,
        ..BootFiles::default()
    }
}

fn nv(
    address: &str,
    device: &str,
    class: &str,
    subsystem: &str,
    driver: &str,
    group: Option<u32>,
) -> PciFunction {
    PciFunction {
        address: address.into(),
        vendor: "10de".into(),
        device: device.into(),
        class: class.into(),
        subsystem_vendor: s("10de"),
        subsystem_device: s(subsystem),
        driver: (!driver.is_empty()).then(|| driver.into()),
        iommu_group: group,
        sriov_totalvfs: None,
        sriov_numvfs: None,
    }
}

fn member(address: &str, id: &str, class: &str, driver: &str) -> GroupMember {
    GroupMember {
        address: address.into(),
        id: s(id),
        class: s(class),
        driver: (!driver.is_empty()).then(|| driver.into()),
    }
}

fn mount(source: &str, fstype: &str) -> Option<Mount> {
    Some(Mount {
        source: source.into(),
        fstype: fstype.into(),
    })
}

fn cmdline(line: &str) -> Vec<String> {
    line.split(' ').map(str::to_string).collect()
}

fn messages(facts: &Facts) -> Vec<(Severity, String)> {
    vgpu_possible(facts)
        .err()
        .unwrap_or_default()
        .into_iter()
        .map(|Obstacle { severity, message }| (severity, message))
        .collect()
}

const IOMMU_OFF: &str = "IOMMU is off (no IOMMU groups): enable VT-d/AMD-Vi in the firmware; the agent adds the kernel arguments";
const GRUB_NO_UUIDS: &str = "no /etc/kernel/proxmox-boot-uuids, so proxmox-boot-tool does not manage the ESPs (/etc/default/grub present)";

#[test]
fn debian_plain() {
    let f = facts("debian-plain");
    assert_eq!(
        f,
        Facts {
            cpu: cpu("GenuineIntel", true, false, false),
            os: bookworm(false),
            firmware: Firmware {
                uefi: false,
                secure_boot: Some(false)
            },
            boot: grub_only(),
            kernel: Kernel {
                release: s("6.1.0-28-amd64"),
                cmdline: cmdline(
                    "BOOT_IMAGE=/boot/vmlinuz-6.1.0-28-amd64 root=UUID=3f1c0a52-7e4b-4d8e-9a51-0c2b6f5d9e11 ro quiet"
                ),
            },
            modules: Modules::default(),
            iommu: IommuFacts::default(),
            nvidia: vec![],
            root_fs: mount("/dev/sda1", "ext4"),
            machine_id: s("0f3e8a1b2c4d4e6f8a9b0c1d2e3f4a5b"),
            boot_id: s("7d2f1e6a-3b4c-4d5e-8f90-a1b2c3d4e5f6"),
            notes: vec![],
        }
    );
    assert_eq!(resolve_iommu(Iommu::Auto, &f).unwrap(), Vendor::Intel);
    let boot = resolve_bootloader(Bootloader::Auto, &f);
    assert_eq!(
        (boot.kind, boot.reason.as_str()),
        (BootloaderKind::Grub, GRUB_NO_UUIDS)
    );
    assert_eq!(proxmox_major(&f), Some(8));
    assert!(!f.os.proxmox_hint());
    assert!(classify_gpus(&f, &table()).is_empty());
    assert_eq!(messages(&f), [
        (Severity::Fatal, "no NVIDIA GPU found (no PCI function with vendor 10de and a VGA or 3D controller class): vGPU needs one".into()),
        (Severity::PreReboot, IOMMU_OFF.into()),
    ]);
}

#[test]
fn pve8_grub() {
    let f = facts("pve8-grub");
    assert_eq!(
        f,
        Facts {
            cpu: cpu("GenuineIntel", true, false, false),
            os: bookworm(true),
            firmware: Firmware {
                uefi: true,
                secure_boot: Some(false)
            },
            boot: grub_only(),
            kernel: Kernel {
                release: s("6.8.12-9-pve"),
                cmdline: cmdline(
                    "BOOT_IMAGE=/boot/vmlinuz-6.8.12-9-pve root=/dev/mapper/pve-root ro quiet"
                ),
            },
            modules: Modules {
                nouveau: true,
                nvidia: false,
                vfio_pci: false
            },
            iommu: IommuFacts {
                group_count: 4,
                groups: vec![IommuGroup {
                    id: 12,
                    devices: vec![member("0000:01:00.0", "10de:1eb8", "030200", "")]
                }],
            },
            nvidia: vec![nv("0000:01:00.0", "1eb8", "030200", "12a2", "", Some(12))],
            root_fs: mount("/dev/mapper/pve-root", "ext4"),
            machine_id: s("5a1d2c3b4e5f40718293a4b5c6d7e8f9"),
            boot_id: s("0b7c6d5e-4f3a-4b2c-9d1e-0f9e8d7c6b5a"),
            notes: vec![],
        }
    );
    assert_eq!(resolve_iommu(Iommu::Auto, &f).unwrap(), Vendor::Intel);
    let boot = resolve_bootloader(Bootloader::Auto, &f);
    assert_eq!(
        (boot.kind, boot.reason.as_str()),
        (BootloaderKind::Grub, GRUB_NO_UUIDS)
    );
    assert_eq!(proxmox_major(&f), Some(8));
    assert!(f.os.proxmox_hint());
    assert!(f.group_peers(&f.nvidia[0]).is_empty());
    let verdicts = classify_gpus(&f, &table());
    assert_eq!(verdicts.len(), 1);
    assert_eq!(
        (verdicts[0].address.as_str(), verdicts[0].support()),
        ("0000:01:00.0", Some(Support::Native))
    );
    assert_eq!(verdicts[0].compat.as_ref().unwrap().name, "NVIDIA Tesla T4");
    assert_eq!(vgpu_possible(&f), Ok(()));
}

#[test]
fn pve9_zfs_sdboot() {
    let f = facts("pve9-zfs-sdboot");
    let group = vec![
        member("0000:0a:00.0", "10de:1e07", "030000", "nouveau"),
        member("0000:0a:00.1", "10de:10f7", "040300", "snd_hda_intel"),
        member("0000:0a:00.2", "10de:1ad6", "0c0330", "xhci_hcd"),
    ];
    assert_eq!(
        f,
        Facts {
            cpu: cpu("AuthenticAMD", false, true, false),
            os: Os {
                id: s("debian"),
                pretty_name: s("Debian GNU/Linux 13 (trixie)"),
                version_id: s("13"),
                codename: s("trixie"),
                etc_pve: true,
                pveversion: true,
            },
            firmware: Firmware {
                uefi: true,
                secure_boot: Some(true)
            },
            boot: BootFiles {
                proxmox_boot_uuids: true,
                kernel_cmdline: s("root=ZFS=rpool/ROOT/pve-1 boot=zfs"),
                default_grub: true,
            },
            kernel: Kernel {
                release: s("6.14.11-4-pve"),
                cmdline: cmdline(
                    r"initrd=\EFI\proxmox\6.14.11-4-pve\initrd.img-6.14.11-4-pve root=ZFS=rpool/ROOT/pve-1 boot=zfs"
                ),
            },
            modules: Modules {
                nouveau: true,
                nvidia: false,
                vfio_pci: false
            },
            iommu: IommuFacts {
                group_count: 3,
                groups: vec![IommuGroup {
                    id: 15,
                    devices: group
                }]
            },
            nvidia: vec![
                nv(
                    "0000:0a:00.0",
                    "1e07",
                    "030000",
                    "12fa",
                    "nouveau",
                    Some(15)
                ),
                nv(
                    "0000:0a:00.1",
                    "10f7",
                    "040300",
                    "12fa",
                    "snd_hda_intel",
                    Some(15)
                ),
                nv(
                    "0000:0a:00.2",
                    "1ad6",
                    "0c0330",
                    "12fa",
                    "xhci_hcd",
                    Some(15)
                ),
            ],
            root_fs: mount("rpool/ROOT/pve-1", "zfs"),
            machine_id: s("c0ffee00112233445566778899aabbcc"),
            boot_id: s("9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"),
            notes: vec![],
        }
    );
    assert_eq!(f.root_fs.as_ref().unwrap().zfs_pool(), Some("rpool"));
    assert_eq!(resolve_iommu(Iommu::Auto, &f).unwrap(), Vendor::Amd);
    let boot = resolve_bootloader(Bootloader::Auto, &f);
    assert_eq!(boot.kind, BootloaderKind::SystemdBoot);
    assert_eq!(
        boot.reason,
        "/etc/kernel/proxmox-boot-uuids and /etc/kernel/cmdline exist and the host booted UEFI: proxmox-boot-tool manages systemd-boot ESPs (ZFS-on-UEFI install)"
    );
    let forced = resolve_bootloader(Bootloader::Grub, &f);
    assert_eq!(forced.kind, BootloaderKind::Grub);
    assert!(
        forced
            .reason
            .contains("the host's files point to systemd-boot"),
        "{}",
        forced.reason
    );
    assert_eq!(proxmox_major(&f), Some(9));
    let peers: Vec<&str> = f
        .group_peers(&f.nvidia[0])
        .iter()
        .map(|m| m.address.as_str())
        .collect();
    assert_eq!(peers, ["0000:0a:00.1", "0000:0a:00.2"]);
    let verdicts = classify_gpus(&f, &table());
    assert_eq!(verdicts.len(), 1, "audio and USB functions are not GPUs");
    assert_eq!(
        (verdicts[0].device.as_str(), verdicts[0].support()),
        ("1e07", Some(Support::Unlock))
    );
    assert_eq!(vgpu_possible(&f), Ok(()));
}

#[test]
fn pve8_two_gpus() {
    let f = facts("pve8-two-gpus");
    assert_eq!(f.cpu, cpu("GenuineIntel", true, false, false));
    assert_eq!(f.os, bookworm(true));
    assert_eq!(
        f.firmware,
        Firmware {
            uefi: true,
            secure_boot: Some(false)
        }
    );
    assert_eq!(f.boot, grub_only());
    assert_eq!(f.kernel.cmdline[4..], ["intel_iommu=on", "iommu=pt"]);
    assert_eq!(
        f.modules,
        Modules {
            nouveau: false,
            nvidia: false,
            vfio_pci: true
        }
    );
    assert_eq!(
        f.nvidia,
        [
            nv("0000:01:00.0", "1eb8", "030200", "12a2", "", Some(20)),
            nv(
                "0000:02:00.0",
                "2204",
                "030000",
                "1454",
                "vfio-pci",
                Some(21)
            ),
            nv(
                "0000:02:00.1",
                "1aef",
                "040300",
                "1454",
                "vfio-pci",
                Some(21)
            ),
        ]
    );
    assert!(f.nvidia.iter().all(|g| g.sriov_totalvfs.is_none()));
    assert_eq!(
        f.iommu,
        IommuFacts {
            group_count: 5,
            groups: vec![
                IommuGroup {
                    id: 20,
                    devices: vec![member("0000:01:00.0", "10de:1eb8", "030200", "")]
                },
                IommuGroup {
                    id: 21,
                    devices: vec![
                        member("0000:02:00.0", "10de:2204", "030000", "vfio-pci"),
                        member("0000:02:00.1", "10de:1aef", "040300", "vfio-pci"),
                    ],
                },
            ],
        }
    );
    assert_eq!(f.root_fs, mount("/dev/mapper/pve-root", "ext4"));
    assert!(f.notes.is_empty());
    assert_eq!(resolve_iommu(Iommu::Auto, &f).unwrap(), Vendor::Intel);
    assert_eq!(
        resolve_bootloader(Bootloader::Auto, &f).kind,
        BootloaderKind::Grub
    );
    assert_eq!(proxmox_major(&f), Some(8));
    let verdicts: Vec<_> = classify_gpus(&f, &table())
        .into_iter()
        .map(|v| (v.address.clone(), v.device.clone(), v.support()))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("0000:01:00.0".into(), "1eb8".into(), Some(Support::Native)),
            ("0000:02:00.0".into(), "2204".into(), Some(Support::No)),
        ]
    );
    assert_eq!(vgpu_possible(&f), Ok(()));
}

#[test]
fn vm_no_iommu() {
    let f = facts("vm-no-iommu");
    assert_eq!(
        f,
        Facts {
            cpu: cpu("GenuineIntel", false, false, true),
            os: bookworm(false),
            firmware: Firmware {
                uefi: false,
                secure_boot: Some(false)
            },
            boot: grub_only(),
            kernel: Kernel {
                release: s("6.1.0-28-amd64"),
                cmdline: cmdline(
                    "BOOT_IMAGE=/boot/vmlinuz-6.1.0-28-amd64 root=/dev/vda1 ro console=ttyS0"
                ),
            },
            modules: Modules {
                nouveau: true,
                nvidia: false,
                vfio_pci: false
            },
            iommu: IommuFacts::default(),
            nvidia: vec![nv(
                "0000:00:10.0",
                "1eb8",
                "030200",
                "12a2",
                "nouveau",
                None
            )],
            root_fs: mount("/dev/vda1", "ext4"),
            machine_id: s("00112233445566778899aabbccddeeff"),
            boot_id: s("13572468-9abc-4def-8123-456789abcdef"),
            notes: vec![],
        }
    );
    let verdicts = classify_gpus(&f, &table());
    assert_eq!(verdicts[0].support(), Some(Support::Native));
    assert_eq!(messages(&f), [(
        Severity::Fatal,
        "this is a virtual machine without nested virtualisation/IOMMU (hypervisor flag, no vmx/svm, no IOMMU groups): vGPU needs bare metal".into(),
    )]);
    let human = render_human(&f, &verdicts);
    assert!(
        human.contains("vGPU\n  NOT possible on this host\n  fatal: this is a virtual machine"),
        "{human}"
    );
}

#[test]
fn unreadable_root_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-root");
    let err = read_facts(&missing).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "cannot read the root directory {}: ",
            missing.display()
        )),
        "{err}"
    );
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let err = read_facts(&file).unwrap_err().to_string();
    assert!(err.contains(&file.display().to_string()), "{err}");
}

#[test]
fn an_empty_root_is_a_host_with_no_facts() {
    let dir = tempfile::tempdir().unwrap();
    let f = read_facts(dir.path()).unwrap();
    assert_eq!(
        f,
        Facts {
            firmware: Firmware {
                uefi: false,
                secure_boot: Some(false)
            },
            ..Facts::default()
        }
    );
    let err = resolve_iommu(Iommu::Auto, &f).unwrap_err().to_string();
    assert!(err.contains("(no vendor_id in /proc/cpuinfo)"), "{err}");
    let severities: Vec<Severity> = messages(&f).into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        severities,
        [Severity::Fatal, Severity::PreReboot, Severity::Warning]
    );
    assert!(render_human(&f, &[]).contains("  (none)\n"));
}

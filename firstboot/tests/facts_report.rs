//! Printing facts: the human report, `--json`, and the TOML form the state
//! file records.

use serde_json::Value;
use vgpu_firstboot::facts::{
    Facts, GpuVerdict, JSON_SCHEMA, Obstacle, Severity, classify_gpus, render_human, render_json,
    resolve_bootloader, resolve_iommu, vgpu_possible,
};
use vgpu_plan::plan::{Bootloader, Iommu};

#[allow(dead_code)]
mod support {
    pub mod hosts;
}
use support::hosts::{HOSTS, facts, table};

fn messages(facts: &Facts) -> Vec<(Severity, String)> {
    vgpu_possible(facts)
        .err()
        .unwrap_or_default()
        .into_iter()
        .map(|Obstacle { severity, message }| (severity, message))
        .collect()
}

#[test]
fn human_report_for_the_zfs_host() {
    let f = facts("pve9-zfs-sdboot");
    let human = render_human(&f, &classify_gpus(&f, &table()));
    let expected = r"Host
  system       Debian GNU/Linux 13 (trixie); trixie is the base of Proxmox VE 9 (Proxmox: /etc/pve, pveversion)
  cpu          AuthenticAMD (IOMMU arguments for amd); svm; bare metal
  firmware     UEFI, Secure Boot on
  boot loader  systemd-boot: /etc/kernel/proxmox-boot-uuids and /etc/kernel/cmdline exist and the host booted UEFI: proxmox-boot-tool manages systemd-boot ESPs (ZFS-on-UEFI install)
  /etc/kernel/cmdline  root=ZFS=rpool/ROOT/pve-1 boot=zfs
  kernel       6.14.11-4-pve
  cmdline      initrd=\EFI\proxmox\6.14.11-4-pve\initrd.img-6.14.11-4-pve root=ZFS=rpool/ROOT/pve-1 boot=zfs
  root fs      zfs on rpool/ROOT/pve-1
  modules      nouveau loaded, nvidia not loaded, vfio_pci not loaded
  iommu        on, 3 groups
  machine-id   c0ffee00112233445566778899aabbcc
  boot-id      9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b
NVIDIA functions
  0000:0a:00.0 10de:1e07 VGA controller, subsystem 10de:12fa, driver nouveau
      IOMMU group 15 with 0000:0a:00.1 10de:10f7 audio device (driver snd_hda_intel); 0000:0a:00.2 10de:1ad6 USB controller (driver xhci_hcd)
      NVIDIA GeForce RTX 2080 Ti (TU102): vGPU support unlock, releases 17, 16
  0000:0a:00.1 10de:10f7 audio device, subsystem 10de:12fa, driver snd_hda_intel
      IOMMU group 15 with 0000:0a:00.0 10de:1e07 VGA controller (driver nouveau); 0000:0a:00.2 10de:1ad6 USB controller (driver xhci_hcd)
  0000:0a:00.2 10de:1ad6 USB controller, subsystem 10de:12fa, driver xhci_hcd
      IOMMU group 15 with 0000:0a:00.0 10de:1e07 VGA controller (driver nouveau); 0000:0a:00.1 10de:10f7 audio device (driver snd_hda_intel)
vGPU
  possible: nothing found that rules it out
";
    assert_eq!(human, expected);
}

#[test]
fn human_report_warns_when_no_card_is_listed_for_vgpu() {
    let f = facts("pve8-two-gpus");
    let mut verdicts = classify_gpus(&f, &table());
    verdicts.retain(|v| v.device == "2204");
    let human = render_human(&f, &verdicts);
    assert!(
        human.contains("NVIDIA GeForce RTX 3090 (GA102): vGPU support no, releases none"),
        "{human}"
    );
    assert!(
        human.contains(
            "  possible after the agent's changes\n  warning: no GPU here is listed for vGPU"
        ),
        "{human}"
    );
    let human = render_human(
        &facts("pve8-grub"),
        &classify_gpus(&facts("pve8-grub"), &table()),
    );
    assert!(human.contains("0000:01:00.0 10de:1eb8 3D controller, subsystem 10de:12a2, no driver bound\n      IOMMU group 12, alone\n"), "{human}");
    assert!(
        human.contains("correction: NVIDIA lists the T4 for vGPU 18 to 20"),
        "{human}"
    );
}

/// Parses `render_json`'s output (it must be valid JSON).
fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// `render_json` is valid JSON, versioned, whose `facts` and `gpus` read
/// back as the same values (so nothing is left out), for every host.
#[test]
fn json_report_is_complete_for_every_host() {
    for name in HOSTS {
        let f = facts(name);
        let verdicts = classify_gpus(&f, &table());
        let text = render_json(&f, &verdicts).unwrap();
        let json = parse(&text);
        assert_eq!(json["schema"], JSON_SCHEMA, "{name}");
        assert_eq!(json["facts"], serde_json::to_value(&f).unwrap(), "{name}");
        assert_eq!(
            serde_json::from_value::<Facts>(json["facts"].clone()).unwrap(),
            f,
            "{name}"
        );
        assert_eq!(
            serde_json::from_value::<Vec<GpuVerdict>>(json["gpus"].clone()).unwrap(),
            verdicts,
            "{name}"
        );
        let boot = resolve_bootloader(Bootloader::Auto, &f);
        let d = &json["decisions"];
        assert_eq!(
            d["bootloader"],
            serde_json::to_value(&boot).unwrap(),
            "{name}"
        );
        let vendor = resolve_iommu(Iommu::Auto, &f).unwrap();
        assert_eq!(
            d["cpu-vendor"],
            serde_json::to_value(vendor).unwrap(),
            "{name}"
        );
        assert_eq!(d["cpu-vendor-error"], Value::Null, "{name}");
        // No fixture has only cards the table rules out, so the obstacles
        // are exactly vgpu_possible's.
        let obstacles = vgpu_possible(&f).err().unwrap_or_default();
        let expected = serde_json::to_value(&obstacles).unwrap();
        assert_eq!(json["vgpu"]["obstacles"], expected, "{name}");
        let possible = json["vgpu"]["possible"].as_bool().unwrap();
        let fatal = messages(&f).iter().any(|(s, _)| *s == Severity::Fatal);
        assert_eq!(possible, !fatal, "{name}");
    }
    let f = facts("pve8-grub");
    let text = render_json(&f, &classify_gpus(&f, &table())).unwrap();
    assert!(
        text.contains("\n        \"driver\": null,\n"),
        "absent facts are null:\n{text}"
    );
    let f = facts("pve9-zfs-sdboot");
    let json = parse(&render_json(&f, &classify_gpus(&f, &table())).unwrap());
    let d = &json["decisions"];
    assert_eq!(d["cpu-vendor"].as_str(), Some("amd"));
    assert_eq!(d["bootloader"]["kind"].as_str(), Some("systemd-boot"));
    assert_eq!(d["proxmox-major"].as_u64(), Some(9));
    assert_eq!(d["zfs-root"].as_bool(), Some(true));
    assert_eq!(
        json["facts"]["kernel"]["cmdline"][0].as_str(),
        Some(r"initrd=\EFI\proxmox\6.14.11-4-pve\initrd.img-6.14.11-4-pve")
    );
    assert_eq!(
        json["gpus"][0]["compat"]["support"].as_str(),
        Some("unlock")
    );
    let vm = facts("vm-no-iommu");
    let json = parse(&render_json(&vm, &[]).unwrap());
    assert_eq!(json["vgpu"]["possible"].as_bool(), Some(false));
    assert_eq!(
        json["vgpu"]["obstacles"][0]["severity"].as_str(),
        Some("fatal")
    );
}

/// The state file records the facts as TOML: they must read back equal.
#[test]
fn facts_round_trip_through_toml() {
    for name in HOSTS {
        let f = facts(name);
        let text = toml::to_string(&f).unwrap();
        assert_eq!(toml::from_str::<Facts>(&text).unwrap(), f, "{name}\n{text}");
    }
    // Fields missing from an older record take their defaults.
    let old: Facts = toml::from_str("machine-id = \"abc\"\n[cpu]\nvmx = true\n").unwrap();
    assert_eq!(
        (
            old.machine_id.as_deref(),
            old.cpu.vmx,
            old.iommu.group_count
        ),
        (Some("abc"), true, 0)
    );
}

/// Every field set, some with characters JSON must escape: nothing can
/// hide behind a default, and everything reads back equal.
#[test]
fn json_writes_every_field() {
    use vgpu_firstboot::facts::{
        BootFiles, Cpu, Firmware, GroupMember, IommuFacts, IommuGroup, Kernel, Modules, Mount, Os,
        PciFunction,
    };
    let s = |v: &str| Some(v.to_string());
    let f = Facts {
        cpu: Cpu {
            vendor_id: s("GenuineIntel"),
            flags_read: true,
            vmx: true,
            svm: true,
            hypervisor: true,
        },
        os: Os {
            id: s("debian"),
            pretty_name: s("Debian \"quoted\"\tname"),
            version_id: s("13"),
            codename: s("trixie"),
            etc_pve: true,
            pveversion: true,
        },
        firmware: Firmware {
            uefi: true,
            secure_boot: Some(true),
        },
        boot: BootFiles {
            proxmox_boot_uuids: true,
            kernel_cmdline: s("a b"),
            default_grub: true,
        },
        kernel: Kernel {
            release: s("6.14"),
            cmdline: vec!["x=\"a b\"".into(), "\\".into()],
        },
        modules: Modules {
            nouveau: true,
            nvidia: true,
            vfio_pci: true,
        },
        iommu: IommuFacts {
            group_count: 9,
            groups: vec![IommuGroup {
                id: 3,
                devices: vec![GroupMember {
                    address: "a".into(),
                    id: s("10de:2236"),
                    class: s("030200"),
                    driver: s("nvidia"),
                }],
            }],
        },
        nvidia: vec![PciFunction {
            address: "0000:41:00.0".into(),
            vendor: "10de".into(),
            device: "2236".into(),
            class: "030200".into(),
            subsystem_vendor: s("10de"),
            subsystem_device: s("1482"),
            driver: s("nvidia"),
            iommu_group: Some(3),
            sriov_totalvfs: Some(16),
            sriov_numvfs: Some(4),
        }],
        root_fs: Some(Mount {
            source: "rpool/ROOT/pve-1".into(),
            fstype: "zfs".into(),
        }),
        machine_id: s("m"),
        boot_id: s("b"),
        notes: vec!["a note\nwith a newline".into()],
    };
    let mut compat = table().gpus[1].clone();
    compat.device = "2236".into();
    let verdicts = vec![GpuVerdict {
        address: "0000:41:00.0".into(),
        device: "2236".into(),
        compat: Some(compat),
    }];
    let json = parse(&render_json(&f, &verdicts).unwrap());
    assert_eq!(
        serde_json::from_value::<Facts>(json["facts"].clone()).unwrap(),
        f
    );
    assert_eq!(
        serde_json::from_value::<Vec<GpuVerdict>>(json["gpus"].clone()).unwrap(),
        verdicts
    );
    assert_eq!(
        json["facts"]["os"]["pretty-name"],
        "Debian \"quoted\"\tname"
    );
    assert_eq!(json["facts"]["notes"][0], "a note\nwith a newline");
    assert_eq!(
        toml::from_str::<Facts>(&toml::to_string(&f).unwrap()).unwrap(),
        f
    );
}

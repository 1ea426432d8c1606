//! The host gate as a pure function: each check, its kind, demo plans, and
//! what is only a note.

use std::path::Path;

use vgpu_plan::compat::{CompatEntry, CompatTable, Support};
use vgpu_plan::facts::{Facts, PciFunction};
use vgpu_plan::gate::{Check, Kind, gate};
use vgpu_plan::plan::{GpuRole, GpuRule, Mode, Plan};

fn plan(name: &str) -> Plan {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/plans")
        .join(format!("{name}.toml"));
    Plan::from_toml(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn table() -> CompatTable {
    let row = |device: &str, name: &str, support| CompatEntry {
        device: device.into(),
        name: name.into(),
        chip: String::new(),
        support,
        majors: vec![],
        correction: None,
    };
    CompatTable {
        schema: 1,
        source: "test".into(),
        gpus: vec![
            row("1e07", "RTX 2080 Ti", Support::Unlock),
            row("1eb8", "Tesla T4", Support::Native),
            row("2204", "RTX 3090", Support::No),
        ],
    }
}

fn function(address: &str, device: &str, class: &str) -> PciFunction {
    PciFunction {
        address: address.into(),
        vendor: "10de".into(),
        device: device.into(),
        class: class.into(),
        ..PciFunction::default()
    }
}

/// A Proxmox VE 8 host, VT-x and IOMMU on, with these functions.
fn pve8(nvidia: Vec<PciFunction>) -> Facts {
    let mut f = Facts::default();
    f.os.id = Some("debian".into());
    f.os.pretty_name = Some("Debian GNU/Linux 12 (bookworm)".into());
    f.os.codename = Some("bookworm".into());
    f.os.etc_pve = true;
    f.cpu.vendor_id = Some("GenuineIntel".into());
    f.cpu.flags_read = true;
    f.cpu.vmx = true;
    f.iommu.group_count = 12;
    f.nvidia = nvidia;
    f
}

fn rule(id: &str, role: GpuRole) -> GpuRule {
    GpuRule {
        id: id.into(),
        role,
        name: String::new(),
        database: None,
        declared: None,
        address: None,
    }
}

fn reasons(plan: &Plan, facts: &Facts) -> Vec<(Kind, Check, String)> {
    gate(plan.into(), facts, &table())
        .reasons
        .into_iter()
        .map(|r| (r.kind, r.check, r.message))
        .collect()
}

#[test]
fn a_fitting_host_passes_and_undeclared_functions_are_notes() {
    let p = plan("native-pve8");
    let t4 = function("0000:01:00.0", "1eb8", "030200");
    let r = gate((&p).into(), &pve8(vec![t4.clone()]), &table());
    assert!(
        r.passed() && r.reasons.is_empty() && r.notes.is_empty(),
        "{r:?}"
    );
    assert_eq!(r.verdict(), None);
    assert_eq!(r.lines(), ["host gate: passed"]);

    // Declared cards: the others, and their audio functions, are left alone.
    let mut p = plan("native-pve8");
    p.gpus = vec![rule("10de:1eb8", GpuRole::Vgpu)];
    let facts = pve8(vec![
        t4,
        function("0000:02:00.0", "2204", "030000"),
        function("0000:02:00.1", "1aef", "040300"),
    ]);
    let r = gate((&p).into(), &facts, &table());
    assert!(r.passed(), "{r:?}");
    assert_eq!(
        r.notes,
        [
            "0000:02:00.0 10de:2204 RTX 3090 (VGA controller) is not in the plan: left alone",
            "0000:02:00.1 10de:1aef (audio device) is not in the plan: left alone",
        ]
    );
}

#[test]
fn a_card_of_the_wrong_class_fails() {
    // No vGPU on a passthrough-only card, no native plan on an
    // unlock-only card.
    let mut p = plan("native-pve8");
    p.gpus = vec![
        rule("10de:2204", GpuRole::Vgpu),
        rule("10de:1e07", GpuRole::Vgpu),
    ];
    let facts = pve8(vec![
        function("0000:01:00.0", "1e07", "030000"),
        function("0000:02:00.0", "2204", "030000"),
    ]);
    assert_eq!(
        reasons(&p, &facts),
        [
            (
                Kind::Fail,
                Check::Class,
                "0000:02:00.0 10de:2204 (RTX 3090) is a passthrough-only card (not usable for vGPU), but the plan's mode `native` needs a native vGPU card: use a bundle of the card's mode".to_string()
            ),
            (
                Kind::Fail,
                Check::Class,
                "0000:01:00.0 10de:1e07 (RTX 2080 Ti) is a vgpu_unlock consumer card, but the plan's mode `native` needs a native vGPU card: use a bundle of the card's mode".to_string()
            ),
        ]
    );
    // The profile's own word (`mode` in `[[gpu]]`) wins over the table.
    p.gpus[0].declared = Some(Support::Native);
    p.gpus[1].declared = Some(Support::Native);
    assert_eq!(reasons(&p, &facts), []);
    // A passthrough card has no class to fit.
    p.gpus = vec![rule("10de:2204", GpuRole::Passthrough)];
    p.mode = Mode::Passthrough;
    assert_eq!(reasons(&p, &facts), []);
}

#[test]
fn vt_x_off_in_the_firmware_needs_an_operator_and_a_fail_wins() {
    let p = plan("native-pve8");
    let mut facts = pve8(vec![function("0000:01:00.0", "1eb8", "030200")]);
    facts.cpu.vmx = false;
    let r = gate((&p).into(), &facts, &table());
    assert_eq!(r.verdict(), Some(Kind::NeedsOperator));
    assert_eq!(
        reasons(&p, &facts),
        [(
            Kind::NeedsOperator,
            Check::Vgpu,
            "CPU virtualisation is off (no vmx/svm flag): enable VT-x/AMD-V in the firmware"
                .to_string()
        )]
    );
    facts.os.etc_pve = false;
    let r = gate((&p).into(), &facts, &table());
    assert_eq!(r.verdict(), Some(Kind::Fail));
    assert_eq!(r.reasons.len(), 2);
    // IOMMU off before the agent added its kernel arguments is no reason.
    let mut facts = pve8(vec![function("0000:01:00.0", "1eb8", "030200")]);
    facts.iommu.group_count = 0;
    let r = gate((&p).into(), &facts, &table());
    assert!(r.passed(), "{r:?}");
    assert_eq!(
        r.notes,
        [
            "before reboot: IOMMU is off (no IOMMU groups): enable VT-d/AMD-Vi in the firmware; the agent adds the kernel arguments"
        ]
    );
}

#[test]
fn a_demo_plan_is_bound_by_the_os_check_only() {
    let p = plan("demo");
    let mut facts = pve8(vec![]);
    facts.os.etc_pve = false;
    let r = gate((&p).into(), &facts, &table());
    assert!(r.passed(), "{r:?}");
    assert!(r.reasons.iter().all(|r| !r.binding), "{r:?}");
    assert_eq!(r.reasons.len(), 2, "{r:?}");
    facts.os.codename = Some("trixie".into());
    facts.os.pretty_name = Some("Debian GNU/Linux 13 (trixie)".into());
    let r = gate((&p).into(), &facts, &table());
    assert!(!r.passed());
    let binding: Vec<Check> = r.binding().map(|r| r.check).collect();
    assert_eq!(binding, [Check::Os]);
    // No codename at all: not this release either.
    facts.os.codename = None;
    assert!(!gate((&p).into(), &facts, &table()).passed());
}

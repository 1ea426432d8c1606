//! `vgpu-bake answer`'s boot line spares the reboot: an installed system
//! whose first boot already runs with the line's arguments (the installer
//! copies its boot line into the installed system's boot configuration)
//! runs both phases in one boot, 0 reboots.
//!
//! The line is read from the builder's golden output
//! (`tests/answer/demo.out`, which `vgpu-bake answer profiles/demo.toml`
//! must print: builder/tests/answer.rs), so the two crates agree on it.

#[path = "agent/harness.rs"]
mod agent_harness;

use agent_harness::{SimHost, workspace};
use vgpu_plan::layout;

/// The line `answer` gives for Intel CPUs.
fn intel_line() -> String {
    let text = std::fs::read_to_string(workspace().join("tests/answer/demo.out")).unwrap();
    let mut lines = text.lines();
    lines
        .find(|l| l.starts_with("# for Intel CPUs"))
        .expect("the demo's answer has an Intel line");
    lines.next().unwrap().to_owned()
}

#[test]
fn with_the_answers_boot_line_the_agent_does_not_reboot() {
    let line = intel_line();
    assert!(line.starts_with("intel_iommu=on iommu=pt"), "{line}");
    let mut host = SimHost::new("pve8-grub", "demo");
    let root = host.root();
    assert!(
        std::fs::read_to_string(root.join("proc/cpuinfo"))
            .unwrap()
            .contains("GenuineIntel")
    );
    // The first boot of the installed system: the installer's boot line
    // (with ours appended) is on /proc/cmdline, and modprobe.blacklist
    // kept nouveau from loading.
    let cmdline = std::fs::read_to_string(root.join("proc/cmdline")).unwrap();
    std::fs::write(
        root.join("proc/cmdline"),
        format!("{} {line}\n", cmdline.trim()),
    )
    .unwrap();
    std::fs::remove_dir_all(root.join("sys/module/nouveau")).unwrap();
    let b = host.converge(&[], 4, |_| {});
    let reboots = host
        .commands()
        .iter()
        .filter(|c| *c == "systemctl reboot")
        .count();
    assert_eq!(reboots, 0, "{:#?}\n{:?}", b.outs, host.commands());
    assert_eq!(b.outs.len(), 1, "one boot: {:#?}", b.outs);
    assert!(
        root.join(layout::DONE_MARKER).exists(),
        "not done: {:#?}",
        b.outs
    );
    assert!(b.outs[0].contains("no reboot"), "{}", b.outs[0]);
}

/// Without the line, the same host reboots once: the test above is not
/// passing by accident.
#[test]
fn without_it_the_agent_reboots_once() {
    let mut host = SimHost::new("pve8-grub", "demo");
    let b = host.converge(&[], 4, |_| {});
    let reboots = host
        .commands()
        .iter()
        .filter(|c| *c == "systemctl reboot")
        .count();
    assert_eq!(reboots, 1, "{:#?}", b.outs);
    assert!(host.root().join(layout::DONE_MARKER).exists());
}

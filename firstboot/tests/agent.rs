//! The real agent binary on simulated hosts: two boots, a third that does
//! nothing, and power cuts at every step boundary and inside steps.

#[path = "agent/harness.rs"]
mod agent_harness;

use agent_harness::{Boots, SimHost};
use vgpu_plan::layout;
use vgpu_plan::plan::Plan;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails, showing both outputs, unless `o` exited with `code`.
fn assert_exit(o: &std::process::Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "{}\n{}", stdout(o), stderr(o));
}

#[test]
fn two_boots_then_nothing() {
    let mut host = SimHost::new("pve8-grub", "demo");
    let first = host.boot_run(&[]).unwrap();
    assert_exit(&first, 0);
    assert!(stdout(&first).contains("rebooting"), "{}", stdout(&first));
    let cmds = host.commands();
    for expected in [
        "update-grub",
        "update-initramfs -u -k all",
        "systemctl reboot",
    ] {
        assert!(
            cmds.iter().any(|c| c == expected),
            "{expected} not run: {cmds:?}"
        );
    }
    assert_eq!(cmds.last().map(String::as_str), Some("systemctl reboot"));
    assert!(
        cmds.iter().any(|c| c.starts_with("apt-get install")
            && c.ends_with("/var/lib/vgpu-firstboot/payload/debs/hello_2.10-3_amd64.deb")),
        "the offline .deb was not installed: {cmds:?}"
    );
    assert!(
        !cmds.iter().any(|c| c.starts_with("apt-get update")),
        "an offline-only plan must not need the network: {cmds:?}"
    );
    // Phase 1 arms a one-time trial of the arguments; the default entry
    // stays as it is until the trial boot came up.
    assert!(
        !host
            .root()
            .join("etc/default/grub.d/vgpu-bake.cfg")
            .exists()
    );
    let trial = std::fs::read_to_string(host.root().join("etc/grub.d/42_vgpu-bake-trial")).unwrap();
    assert!(trial.contains("intel_iommu=on iommu=pt"), "{trial}");
    // The state says a reboot was requested before it happened.
    let (code, status) = {
        let o = host.agent(&["status", "--json"], &[]);
        (o.status.code(), stdout(&o))
    };
    assert_eq!(code, Some(3), "{status}");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["schema"], vgpu_firstboot::state::JSON_SCHEMA);
    assert_eq!(status["exit-code"], 3);
    assert_eq!(status["status"], "in-progress");

    host.reboot();
    let second = host.boot_run(&[]).unwrap();
    assert_exit(&second, 0);
    assert!(stdout(&second).contains("done"), "{}", stdout(&second));
    // The trial boot came up: its arguments are the default now.
    let grub =
        std::fs::read_to_string(host.root().join("etc/default/grub.d/vgpu-bake.cfg")).unwrap();
    assert!(grub.contains("intel_iommu=on iommu=pt"), "{grub}");
    assert!(!host.root().join("etc/grub.d/42_vgpu-bake-trial").exists());
    let installed =
        std::fs::read_to_string(host.root().join("var/lib/vgpu-demo/installed")).unwrap();
    assert!(installed.contains("dkms=yes"), "{installed}");
    assert!(host.root().join(layout::DONE_MARKER).exists());
    assert!(
        !host.root().join(layout::UNIT_WANTS_LINK).exists(),
        "the unit must disable itself"
    );
    assert!(
        !host.root().join(layout::PAYLOAD_DIR).exists(),
        "payload deleted by default"
    );
    let o = host.agent(&["status"], &[]);
    assert_exit(&o, 0);

    // Third boot: the unit does not start; even a manual run changes nothing.
    let before_cmds = host.commands().len();
    let before = host.tree();
    host.reboot();
    assert!(host.boot_run(&[]).is_none());
    let manual = host.agent(&["run"], &[]);
    assert_eq!(manual.status.code(), Some(0));
    assert_eq!(
        host.commands().len(),
        before_cmds,
        "a run after done ran commands"
    );
    let mut after = host.tree();
    after.remove("proc/cmdline");
    let mut before = before;
    before.remove("proc/cmdline");
    assert_eq!(before, after);

    // A power cut between the done marker and the link's removal (the
    // seal's two writes) leaves the link: the next boot starts the unit,
    // whose run only removes the link.
    let link = host.root().join(layout::UNIT_WANTS_LINK);
    std::os::unix::fs::symlink(layout::UNIT_WANTS_TARGET, &link).unwrap();
    host.reboot();
    let sealed = host.boot_run(&[]).expect("the link starts the unit");
    assert_exit(&sealed, 0);
    assert!(
        stderr(&sealed).contains("removed (the agent is not needed at boot any more)"),
        "{}",
        stderr(&sealed)
    );
    assert!(!link.exists() && std::fs::symlink_metadata(&link).is_err());
    assert_eq!(host.commands().len(), before_cmds, "sealing ran commands");
    assert!(host.boot_run(&[]).is_none(), "the unit starts again");
}

/// The final tree of an uninterrupted run, to compare crashed runs with.
fn reference(fixture: &str, plan: &str) -> (std::collections::BTreeMap<String, String>, usize) {
    let mut host = SimHost::new(fixture, plan);
    let b = host.converge(&[], 5, |_| {});
    assert!(
        host.root().join(layout::DONE_MARKER).exists() && b.cuts == 0,
        "reference run did not finish: {:#?}",
        b.outs
    );
    (
        host.tree(),
        host.commands()
            .iter()
            .filter(|c| *c == "systemctl reboot")
            .count(),
    )
}

/// The demo installer's log: one ` install ` line per run.
fn installer_runs(host: &SimHost) -> Vec<String> {
    std::fs::read_to_string(host.demo_log_path())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" install "))
        .map(String::from)
        .collect()
}

/// The tree after `b` finished is the reference's, with one power cut.
fn assert_same_end(
    host: &SimHost,
    b: &Boots,
    reference: &std::collections::BTreeMap<String, String>,
    label: &str,
) {
    assert_eq!(
        b.cuts, 1,
        "{label}: the power cut did not happen once: {:#?}",
        b.outs
    );
    assert!(
        host.root().join(layout::DONE_MARKER).exists(),
        "{label}: did not converge:\n{:#?}",
        b.outs
    );
    let mut got = host.tree();
    let mut want = reference.clone();
    // Boot-dependent files: the kernel command line is the boot loader's.
    got.remove("proc/cmdline");
    want.remove("proc/cmdline");
    assert_eq!(got, want, "{label}: final tree differs");
    let reboots = host
        .commands()
        .iter()
        .filter(|c| *c == "systemctl reboot")
        .count();
    assert!(reboots <= 2, "{label}: rebooted {reboots} times");
    // The state agrees: done, not "in progress" behind a done marker.
    let status = host.agent(&["status"], &[]);
    assert_eq!(
        status.status.code(),
        Some(0),
        "{label}: status after convergence: {}",
        stdout(&status)
    );
    // With what to do next in the Proxmox VE web UI (the demo is native).
    assert!(
        stdout(&status)
            .contains("Resource Mappings > PCI Devices > Add, tick \"Use with Mediated Devices\""),
        "{label}: {}",
        stdout(&status)
    );
}

fn assert_converges(
    fixture: &str,
    plan: &str,
    env: &[(&str, &str)],
    reference: &std::collections::BTreeMap<String, String>,
    label: &str,
) {
    let mut host = SimHost::new(fixture, plan);
    let b = host.converge(env, 8, |_| {});
    assert_same_end(&host, &b, reference, label);
    // The driver installer ran once, however the power was cut.
    let runs = installer_runs(&host);
    assert_eq!(
        runs.len(),
        1,
        "{label}: driver installed {} times: {runs:#?}",
        runs.len()
    );
}

#[test]
fn power_cut_at_every_step_boundary_converges() {
    let (want, _) = reference("pve8-grub", "demo");
    let plan = Plan::from_toml(
        &std::fs::read_to_string(agent_harness::workspace().join("tests/plans/demo.toml")).unwrap(),
    )
    .unwrap();
    let mut cuts = 0;
    for step in &plan.steps {
        for point in ["begun", "applied"] {
            let fault = format!("{}:{point}", step.kind.id());
            assert_converges(
                "pve8-grub",
                "demo",
                &[("VGPU_FIRSTBOOT_FAULT", &fault)],
                &want,
                &fault,
            );
            cuts += 1;
        }
    }
    assert_eq!(cuts, plan.steps.len() * 2);
}

#[test]
fn power_cut_inside_steps_converges() {
    let (want, _) = reference("pve8-grub", "demo");
    for command in [
        "apt-get",
        "update-grub",
        "update-initramfs",
        "systemctl",
        "mdevctl",
    ] {
        assert_converges(
            "pve8-grub",
            "demo",
            &[("VGPU_TEST_CRASH_IN", command)],
            &want,
            &format!("inside {command}"),
        );
    }
}

/// The power goes after the state says done, before the done marker and
/// the unit's link: the unit starts once more and only seals.
#[test]
fn power_cut_between_done_and_the_seal_converges() {
    let (want, _) = reference("pve8-grub", "demo");
    let mut host = SimHost::new("pve8-grub", "demo");
    let fault = [("VGPU_FIRSTBOOT_FAULT", "finish:recorded")];
    let b = host.converge(&fault, 8, |h| {
        assert!(!h.root().join(layout::DONE_MARKER).exists());
        assert!(h.root().join(layout::UNIT_WANTS_LINK).exists());
    });
    assert_same_end(&host, &b, &want, "cut before the seal");
    let last = b.outs.last().unwrap();
    assert!(
        last.contains("/var/lib/vgpu-firstboot/done: written (provisioning complete)"),
        "{last}"
    );
    assert_eq!(installer_runs(&host).len(), 1);
}

/// A power cut right after the driver installer exited, before the agent
/// recorded it; `after_cut` does what the cut did to the installer's files.
/// The end is the reference's, the installer ran `runs` times, and the
/// agent said `says`.
fn cut_after_the_installer(after_cut: fn(&SimHost), runs: usize, says: &str) {
    let (want, _) = reference("pve8-grub", "demo");
    let mut host = SimHost::new("pve8-grub", "demo");
    let fault = [("VGPU_FIRSTBOOT_FAULT", "install-driver:installer-ran")];
    let b = host.converge(&fault, 8, after_cut);
    assert_same_end(&host, &b, &want, says);
    assert_eq!(installer_runs(&host).len(), runs, "{:#?}", b.outs);
    let all = b.outs.concat();
    assert!(all.contains(says), "{all}");
}

/// The installer's files all reached the disk: the next boot asks the
/// installed driver (`--sanity`), finds it complete and does not install
/// it again.
#[test]
fn power_cut_after_the_driver_installer_does_not_install_twice() {
    cut_after_the_installer(
        |_| {},
        1,
        "was installed by an earlier run that stopped before recording it; /usr/lib/vgpu-demo/nvidia-installer --sanity finds every file intact: not installing again",
    );
}

/// A file had not reached the disk (the installer does not fsync):
/// `--sanity` finds it torn and the driver is installed again, over the
/// remains, with the same end.
#[test]
fn power_cut_that_tears_the_driver_installs_it_again() {
    cut_after_the_installer(
        |h| std::fs::write(h.root().join("var/lib/vgpu-demo/installed"), "").unwrap(),
        2,
        "an earlier run of the driver installer did not finish and `/usr/lib/vgpu-demo/nvidia-installer --sanity` finds the installation incomplete (vgpu-bake demo installer: The 'vgpu-bake demo driver' installation has been altered since it was originally installed. It is recommended that you reinstall.): installing again",
    );
}

#[test]
fn a_failed_step_stops_until_retry_and_says_why() {
    let host = SimHost::new("pve8-grub", "demo");
    let out = host
        .boot_run(&[("VGPU_TEST_FAIL", "update-initramfs")])
        .unwrap();
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("E: simulated failure of update-initramfs"),
        "{}",
        stderr(&out)
    );
    let st = host.agent(&["status"], &[]);
    assert_eq!(st.status.code(), Some(1));
    assert!(stdout(&st).contains("initramfs"), "{}", stdout(&st));
    let js = host.agent(&["status", "--json"], &[]);
    assert!(
        stdout(&js).contains("simulated failure of update-initramfs"),
        "{}",
        stdout(&js)
    );
    // A later boot does not retry on its own, and runs nothing.
    let n = host.commands().len();
    let again = host.boot_run(&[]).unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(host.commands().len(), n);
    // After `retry` the step runs again and the plan carries on.
    let retry = host.agent(&["retry"], &[]);
    assert_exit(&retry, 0);
    let resumed = host.boot_run(&[]).unwrap();
    assert!(
        stdout(&resumed).contains("rebooting"),
        "{}{}",
        stdout(&resumed),
        stderr(&resumed)
    );
}

#[test]
fn status_wait_never_passes_its_timeout() {
    let host = SimHost::new("pve8-grub", "demo");
    host.boot_run(&[]).unwrap();
    let start = std::time::Instant::now();
    let st = host.agent(&["status", "--wait", "--timeout", "1"], &[]);
    let took = start.elapsed();
    assert_eq!(st.status.code(), Some(3), "in progress: {}", stdout(&st));
    assert!(
        took >= std::time::Duration::from_millis(900) && took < std::time::Duration::from_secs(5),
        "{took:?}"
    );
    let fresh = SimHost::new("pve8-grub", "demo");
    assert_eq!(
        fresh.agent(&["status"], &[]).status.code(),
        Some(3),
        "not started"
    );
}

#[test]
fn a_state_from_another_machine_is_not_reused() {
    let host = SimHost::new("pve8-grub", "demo");
    host.boot_run(&[]).unwrap();
    std::fs::write(
        host.root().join("etc/machine-id"),
        "ffffffffffffffffffffffffffffffff\n",
    )
    .unwrap();
    let out = host.boot_run(&[]).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("ffffffffffffffffffffffffffffffff"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn plan_and_facts_describe_the_host_without_changing_it() {
    let host = SimHost::new("pve8-grub", "demo");
    let before = host.tree();
    let plan = host.agent(&["plan"], &[]);
    assert_eq!(plan.status.code(), Some(0));
    let text = stdout(&plan);
    for want in [
        "intel_iommu=on",
        "/etc/default/grub.d/vgpu-bake.cfg",
        "hello_2.10-3_amd64.deb",
        "nouveau",
        "update-initramfs",
        "DEMO plan",
    ] {
        assert!(
            text.contains(want),
            "{want} missing from the dry run:\n{text}"
        );
    }
    let facts = host.agent(&["facts", "--json"], &[]);
    assert_eq!(facts.status.code(), Some(0));
    assert!(stdout(&facts).contains("\"1eb8\""), "{}", stdout(&facts));
    let report: serde_json::Value = serde_json::from_str(&stdout(&facts)).unwrap();
    assert_eq!(report["schema"], vgpu_firstboot::facts::JSON_SCHEMA);
    assert_eq!(report["gpus"][0]["device"], "1eb8");
    assert_eq!(host.tree(), before, "plan and facts must not write");
    assert!(
        host.commands().is_empty(),
        "plan and facts must not run commands: {:?}",
        host.commands()
    );
    let bare = tempfile::tempdir().unwrap();
    let none = std::process::Command::new(env!("CARGO_BIN_EXE_vgpu-firstboot"))
        .args(["--root", bare.path().to_str().unwrap(), "plan"])
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(1), "no plan is a failure");
    assert!(stderr(&none).contains("no plan"), "{}", stderr(&none));
}

#[test]
fn a_reboot_that_did_not_take_effect_fails_without_another_reboot() {
    let mut host = SimHost::new("pve8-grub", "demo");
    assert!(stdout(&host.boot_run(&[]).unwrap()).contains("rebooting"));
    host.reboot_without_new_args();
    let out = host.boot_run(&[]).unwrap();
    assert_exit(&out, 1);
    let reboots = host
        .commands()
        .iter()
        .filter(|c| *c == "systemctl reboot")
        .count();
    assert_eq!(reboots, 1, "no second reboot: {:?}", host.commands());
    let st = host.agent(&["status", "--json"], &[]);
    assert_eq!(st.status.code(), Some(1));
    let text = stdout(&st);
    assert!(
        text.contains("verify-reboot") && text.contains("intel_iommu=on"),
        "{text}"
    );
}

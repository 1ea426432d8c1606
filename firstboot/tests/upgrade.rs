//! `vgpu-firstboot upgrade` on simulated hosts: a host the demo plan
//! (driver 1.0) provisioned gets the demo-1.1 bundle laid over it, and the
//! real agent applies the difference.

#[path = "agent/harness.rs"]
mod agent_harness;

use std::fs;

use agent_harness::{STAND_IN_LIBRARY, SimHost};
use vgpu_firstboot::edits::unlock::{VGPU_MGR_DROPIN, VGPUD_DROPIN};
use vgpu_firstboot::state::{self, Status};
use vgpu_plan::layout;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_exit(o: &std::process::Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "{}\n{}", stdout(o), stderr(o));
}

/// A host `plan` provisioned to done (two boots).
fn provisioned(fixture: &str, plan: &str) -> SimHost {
    let mut host = SimHost::new(fixture, plan);
    host.converge(&[], 4, |_| {});
    assert!(host.root().join(layout::DONE_MARKER).exists());
    assert_eq!(
        state::load(&host.root()).unwrap().status,
        Status::Done,
        "{plan} did not finish"
    );
    host
}

/// The demo installer's log lines after the first `skip`, each as
/// `version=V ... verb`: which installer did what.
fn demo_runs(host: &SimHost) -> Vec<String> {
    fs::read_to_string(host.demo_log_path())
        .unwrap()
        .lines()
        .map(|l| {
            let mut w = l.split_whitespace().skip(1);
            let version = w.next().unwrap().to_string();
            let verb = w.nth(1).unwrap().to_string();
            format!("{version} {verb}")
        })
        .collect()
}

fn reboots(host: &SimHost) -> usize {
    host.commands()
        .iter()
        .filter(|c| *c == "systemctl reboot")
        .count()
}

fn plan_sha(host: &SimHost) -> String {
    let bytes = fs::read(host.root().join(layout::PLAN_FILE)).unwrap();
    vgpu_firstboot::sha256::sha256_hex(&bytes)
}

fn history(host: &SimHost) -> Vec<String> {
    let dir = host.root().join("var/lib/vgpu-firstboot/history");
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn demo_1_0_to_1_1_uninstalls_the_old_driver_then_installs_without_a_reboot() {
    let host = provisioned("pve8-grub", "demo");
    assert_eq!(demo_runs(&host), ["version=1.0-demo install"]);
    let old_sha = plan_sha(&host);
    let rebooted = reboots(&host);
    assert_eq!(rebooted, 1, "the first provisioning reboots once");

    host.lay_bundle("demo-1.1", |_| {}, STAND_IN_LIBRARY);
    let out = host.agent(&["upgrade"], &[]);
    assert_exit(&out, 0);
    let archive = format!("1-demo-{}.state.toml", &old_sha[..8]);
    assert!(
        stdout(&out).contains(&format!(
            "the earlier state is archived at /var/lib/vgpu-firstboot/history/{archive}"
        )),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("upgrade: done"), "{}", stdout(&out));
    // The old driver's own uninstaller first, then the new installer.
    assert_eq!(
        demo_runs(&host),
        [
            "version=1.0-demo install",
            "version=1.0-demo uninstall",
            "version=1.1-demo install",
        ]
    );
    let installed = fs::read_to_string(host.root().join("var/lib/vgpu-demo/installed")).unwrap();
    assert!(installed.starts_with("version=1.1-demo\n"), "{installed}");
    assert_eq!(
        reboots(&host),
        rebooted,
        "a driver-only upgrade reboots 0 times"
    );

    // The old state archived and readable; the new one bound and done.
    assert_eq!(history(&host), std::slice::from_ref(&archive));
    let bytes = fs::read(
        host.root()
            .join("var/lib/vgpu-firstboot/history")
            .join(&archive),
    )
    .unwrap();
    let old = state::decode(bytes, std::path::Path::new(&archive)).unwrap();
    assert_eq!(
        (old.plan_sha256.as_str(), &old.status),
        (old_sha.as_str(), &Status::Done)
    );
    let new = state::load(&host.root()).unwrap();
    assert_eq!(new.plan_sha256, plan_sha(&host));
    assert_eq!((new.status, new.reboots), (Status::Done, 0));
    assert!(
        new.events[0]
            .what
            .starts_with("upgrade from plan demo (sha256 "),
        "{:?}",
        new.events[0]
    );
    // Sealed again: marker of the new plan, unit not wanted at boot.
    assert_eq!(
        fs::read_to_string(host.root().join(layout::DONE_MARKER)).unwrap(),
        "demo-1.1\nprovisioned by vgpu-firstboot\n"
    );
    assert!(!host.root().join(layout::UNIT_WANTS_LINK).exists());
    let status = host.agent(&["status"], &[]);
    assert_exit(&status, 0);
    assert!(
        stdout(&status).contains(&plan_sha(&host)),
        "{}",
        stdout(&status)
    );

    // Once more: the same plan, nothing to do, nothing run.
    let before = host.commands().len();
    let again = host.agent(&["upgrade"], &[]);
    assert_exit(&again, 0);
    assert!(
        stdout(&again).starts_with("vgpu-firstboot: nothing to upgrade: the installed plan"),
        "{}",
        stdout(&again)
    );
    assert_eq!(host.commands().len(), before);
    assert_eq!(history(&host), [archive]);
}

#[test]
fn run_meeting_a_newer_plan_over_a_finished_one_says_upgrade() {
    let host = provisioned("pve8-grub", "demo");
    host.lay_bundle("demo-1.1", |_| {}, STAND_IN_LIBRARY);
    // The bundle's install lays the unit's link; the done marker stays.
    fs::remove_file(host.root().join(layout::DONE_MARKER)).unwrap();
    let out = host.agent(&["run"], &[]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("`vgpu-firstboot upgrade` applies the new plan over a finished one (the state is archived)"),
        "{}",
        stderr(&out)
    );
}

/// A power cut inside the upgrade's run (in a command, then between the
/// old driver's uninstall and the new install): the next boot's unit
/// carries on, and the result is the same as without the cut.
#[test]
fn an_upgrade_cut_by_a_power_cut_resumes_at_the_next_boot() {
    for env in [
        ("VGPU_TEST_CRASH_IN", "systemctl"),
        ("VGPU_FIRSTBOOT_FAULT", "install-driver:uninstalled"),
    ] {
        let mut host = provisioned("pve8-grub", "demo");
        host.lay_bundle("demo-1.1", |_| {}, STAND_IN_LIBRARY);
        let out = host.agent(&["upgrade"], &[env]);
        assert_eq!(
            out.status.code(),
            None,
            "{env:?}: not cut\n{}",
            stderr(&out)
        );
        host.reboot();
        let boot = host.boot_run(&[]).expect("the unit starts the agent again");
        assert_exit(&boot, 0);
        assert!(stdout(&boot).contains("done"), "{env:?}: {}", stdout(&boot));
        assert_eq!(
            demo_runs(&host),
            [
                "version=1.0-demo install",
                "version=1.0-demo uninstall",
                "version=1.1-demo install",
            ],
            "{env:?}"
        );
        assert_eq!(state::load(&host.root()).unwrap().status, Status::Done);
        assert_eq!(history(&host).len(), 1);
        assert!(host.boot_run(&[]).is_none(), "sealed again");
    }
}

/// Cuts inside `upgrade` itself: after the archive (the old state still
/// rules: `upgrade` again reuses the archive), after the switch to the new
/// state (the done marker is still there, so no unit runs: `upgrade` again
/// resumes).
#[test]
fn an_upgrade_cut_before_its_run_is_finished_by_upgrade_again() {
    for point in ["upgrade:archived", "upgrade:bound"] {
        let host = provisioned("pve8-grub", "demo");
        host.lay_bundle("demo-1.1", |_| {}, STAND_IN_LIBRARY);
        let out = host.agent(&["upgrade"], &[("VGPU_FIRSTBOOT_FAULT", point)]);
        assert_eq!(
            out.status.code(),
            None,
            "{point}: not cut\n{}",
            stderr(&out)
        );
        assert_eq!(history(&host).len(), 1, "{point}");
        let again = host.agent(&["upgrade"], &[]);
        assert_exit(&again, 0);
        assert!(
            stdout(&again).contains("upgrade: done"),
            "{point}: {}",
            stdout(&again)
        );
        assert_eq!(history(&host).len(), 1, "{point}: one archive");
        assert_eq!(
            demo_runs(&host),
            [
                "version=1.0-demo install",
                "version=1.0-demo uninstall",
                "version=1.1-demo install",
            ],
            "{point}"
        );
        let st = state::load(&host.root()).unwrap();
        assert_eq!((st.status, st.plan_sha256), (Status::Done, plan_sha(&host)));
    }
}

#[test]
fn upgrade_is_refused_mid_run_and_before_the_old_plan_finished() {
    // Phase 1 done, the reboot pending: the state is in progress.
    let host = SimHost::new("pve8-grub", "demo");
    let first = host.boot_run(&[]).unwrap();
    assert!(stdout(&first).contains("rebooting"), "{}", stdout(&first));
    host.lay_bundle("demo-1.1", |_| {}, STAND_IN_LIBRARY);
    let before = host.commands().len();
    let out = host.agent(&["upgrade"], &[]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out)
            .contains("is in-progress, not done or failed: an upgrade starts from a finished plan"),
        "{}",
        stderr(&out)
    );
    assert_eq!(host.commands().len(), before, "nothing run");
    assert!(history(&host).is_empty());

    // A run holds the lock: refused, nothing changed.
    let host = provisioned("pve8-grub", "demo");
    host.lay_bundle("demo-1.1", |_| {}, STAND_IN_LIBRARY);
    let lock = fs::File::open(host.root().join(state::LOCK_FILE)).unwrap();
    lock.try_lock().unwrap();
    let st = fs::read(host.root().join(layout::STATE_FILE)).unwrap();
    let out = host.agent(&["upgrade"], &[]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("another vgpu-firstboot is running"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read(host.root().join(layout::STATE_FILE)).unwrap(), st);
    assert!(history(&host).is_empty());
    drop(lock);

    // A host nothing provisioned: nothing to upgrade from.
    let fresh = SimHost::new("pve8-grub", "demo-1.1");
    let out = fresh.agent(&["upgrade"], &[]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("nothing to upgrade from"),
        "{}",
        stderr(&out)
    );
}

/// Units the earlier plan had the agent enable and the new plan drops are
/// disabled; the kept ones are not touched beyond `enable --now`.
#[test]
fn units_the_new_plan_drops_are_disabled() {
    let host = provisioned("pve8-grub", "demo");
    host.lay_bundle(
        "demo-1.1",
        |p| {
            p.driver.as_mut().unwrap().services = vec!["nvidia-vgpud.service".into()];
        },
        STAND_IN_LIBRARY,
    );
    let before = host.commands().len();
    let out = host.agent(
        &["upgrade"],
        &[(
            "VGPU_TEST_ENABLED",
            "nvidia-vgpu-mgr.service nvidia-vgpud.service",
        )],
    );
    assert_exit(&out, 0);
    let cmds = host.commands()[before..].to_vec();
    assert!(
        cmds.contains(&"systemctl disable --now nvidia-vgpu-mgr.service".to_string()),
        "{cmds:?}"
    );
    assert!(
        !cmds
            .iter()
            .any(|c| c.starts_with("systemctl disable") && c.contains("vgpud")),
        "{cmds:?}"
    );
    assert!(stderr(&out).contains("nvidia-vgpu-mgr.service: disabled and stopped"));
}

/// An unlock host upgraded to another unlock plan (driver 1.1, a new
/// library build) keeps working: the drop-ins are there and the library is
/// the new bundle's.
#[test]
fn an_unlock_host_upgraded_keeps_its_drop_ins_and_gets_the_new_library() {
    let host = provisioned("pve8-grub", "unlock-demo");
    let lib = |h: &SimHost| {
        fs::read(
            h.root()
                .join("usr/local/lib/vgpu_unlock/libvgpu_unlock_rs.so"),
        )
        .unwrap()
    };
    assert_eq!(lib(&host), STAND_IN_LIBRARY);
    let new_library = b"stand-in unlock library, newer build\n";
    host.lay_bundle(
        "unlock-demo",
        |p| {
            p.name = "demo-unlock-1.1".into();
            let d = p.driver.as_mut().unwrap();
            d.version = "1.1-demo".into();
            d.filename = "vgpu-bake-demo-driver-1.1-vgpu-kvm.run".into();
        },
        new_library,
    );
    let out = host.agent(&["upgrade"], &[]);
    assert_exit(&out, 0);
    assert_eq!(lib(&host), new_library);
    for dropin in [VGPUD_DROPIN, VGPU_MGR_DROPIN] {
        let text = fs::read_to_string(host.root().join(dropin)).unwrap();
        assert!(
            text.contains("/usr/local/lib/vgpu_unlock/libvgpu_unlock_rs.so"),
            "{dropin}: {text}"
        );
    }
    assert_eq!(
        demo_runs(&host)[1..],
        ["version=1.0-demo uninstall", "version=1.1-demo install"]
    );
    assert_eq!(state::load(&host.root()).unwrap().status, Status::Done);
}

//! `vgpu-firstboot undo` on simulated hosts: the real agent applies a plan
//! across its two boots, then `undo` gives back the tree as it was before,
//! byte for byte and mode for mode (apart from the kernel's view and the
//! agent's own state directory), with stand-ins that keep dpkg's record
//! of installed packages so a purge really removes what the agent added.

#[path = "agent/harness.rs"]
mod agent_harness;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use agent_harness::SimHost;
use vgpu_firstboot::agent::journal::JOURNAL_FILE;
use vgpu_firstboot::agent::undo::{UNDONE_JOURNAL, UNDONE_MARKER};
use vgpu_plan::layout;
use vgpu_plan::plan::{KernelPin, Plan};

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A reboot: the harness boots the trial's kernel for a trial, else the
/// pinned kernel when one is pinned.
fn reboot(host: &mut SimHost) {
    host.reboot();
}

/// Runs the agent at every boot until it is done; fails otherwise.
fn provision(host: &mut SimHost) {
    for _ in 0..4 {
        let Some(out) = host.boot_run(&[]) else {
            return;
        };
        let t = text(&out);
        assert_eq!(out.status.code(), Some(0), "{t}");
        if t.contains("rebooting") {
            reboot(host);
        }
    }
    panic!("not done after 4 boots");
}

/// Fails with the differences (a few) unless the trees are equal.
fn assert_same_tree(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) {
    let mut diff = Vec::new();
    for (k, v) in before {
        match after.get(k) {
            None => diff.push(format!("missing after undo: {k}")),
            Some(w) if w != v => diff.push(format!("changed: {k}: {v:.80?} -> {w:.80?}")),
            _ => {}
        }
    }
    for k in after.keys().filter(|k| !before.contains_key(*k)) {
        diff.push(format!("left behind: {k} = {:.80?}", after[k]));
    }
    assert!(diff.is_empty(), "the tree differs:\n{}", diff.join("\n"));
}

/// The tree without dpkg's log (the package manager's own record, like
/// its status file, which the purge gives back as it was).
fn tree(host: &SimHost) -> BTreeMap<String, String> {
    let mut t = host.whole_tree();
    t.remove(agent_harness::DPKG_LOG);
    t
}

/// Apply then undo on `host`: the tree comes back; the agent stays off.
fn apply_then_undo(mut host: SimHost) -> (SimHost, String) {
    let mut before = tree(&host);
    // The unit's link goes and stays gone: the agent is off after undo.
    assert!(before.remove(layout::UNIT_WANTS_LINK).is_some());
    provision(&mut host);
    assert_ne!(tree(&host), before, "the plan changed nothing");
    let out = host.agent(&["undo"], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    reboot(&mut host);
    assert_same_tree(&before, &tree(&host));
    // Nothing applies the plan again: no link, and `run` refuses.
    assert!(!host.root().join(layout::UNIT_WANTS_LINK).exists());
    let run = host.agent(&["run"], &[]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    assert!(text(&run).contains("the plan was undone"), "{}", text(&run));
    assert!(host.root().join(UNDONE_MARKER).exists());
    assert!(host.root().join(UNDONE_JOURNAL).join("changes").exists());
    assert!(!host.root().join(JOURNAL_FILE).exists());
    let status = host.agent(&["status"], &[]);
    assert!(
        text(&status).contains("undone: the plan's changes were reverted"),
        "{}",
        text(&status)
    );
    assert!(
        !text(&status).contains("Resource Mappings"),
        "no web UI steps for an undone plan: {}",
        text(&status)
    );
    let json = host.agent(&["status", "--json"], &[]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(
        doc["undone"]
            .as_str()
            .unwrap()
            .contains("reboot needed: yes"),
        "{doc}"
    );
    // A second undo has nothing to do.
    let again = host.agent(&["undo"], &[]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(text(&again).contains("undone already"), "{}", text(&again));
    assert_same_tree(&before, &tree(&host));
    (host, t)
}

#[test]
fn demo_plan_undone_gives_back_the_same_tree() {
    let host = SimHost::new("pve8-grub", "demo");
    host.package_db(&["base-files 12.4"]);
    let (host, out) = apply_then_undo(host);
    assert!(
        out.contains(
            "reboot needed: yes, because the running kernel still has intel_iommu=on iommu=pt"
        ),
        "{out}"
    );
    let cmds = host.commands();
    for expected in [
        "apt-get purge -y hello",
        "systemctl disable --now nvidia-vgpu-mgr.service",
        "systemctl disable --now nvidia-vgpud.service",
        "update-initramfs -u -k all",
        "update-grub",
    ] {
        assert!(cmds.iter().any(|c| c == expected), "{expected}: {cmds:?}");
    }
    // The driver's own uninstaller ran (its log is the demo installer's).
    let demo = fs::read_to_string(host.demo_log_path()).unwrap();
    assert!(
        demo.lines().last().unwrap().ends_with("uninstall"),
        "{demo}"
    );
    // Newest first: the services stop before the packages go, and the
    // refreshes come last.
    let at = |c: &str| cmds.iter().rposition(|x| x == c).unwrap();
    assert!(at("systemctl disable --now nvidia-vgpud.service") < at("apt-get purge -y hello"));
    assert_eq!(cmds.last().map(String::as_str), Some("update-grub"));
    assert_eq!(host.packages(), ["base-files 12.4"]);
}

#[test]
fn unlock_demo_plan_undone_gives_back_the_same_tree() {
    let host = SimHost::new("pve8-grub", "unlock-demo");
    host.package_db(&[]);
    apply_then_undo(host);
}

#[test]
fn passthrough_plan_undone_gives_back_the_same_tree() {
    // systemd-boot: /etc/kernel/cmdline edited, `proxmox-boot-tool refresh`.
    let host = SimHost::new("pve9-zfs-sdboot", "passthrough");
    host.package_db(&[]);
    let (host, out) = apply_then_undo(host);
    assert!(out.contains("reboot needed: yes"), "{out}");
    let cmds = host.commands();
    assert_eq!(
        cmds.iter()
            .filter(|c| *c == "proxmox-boot-tool refresh")
            .count(),
        2,
        "once by kernel-args, once by undo: {cmds:?}"
    );
}

/// The demo plan with a kernel pin and packages, one of them installed
/// before the agent; a pin set before the agent; `/etc/apt` sources with
/// an unusual mode that the apt-repositories step edits.
fn pinned_host() -> SimHost {
    let host = SimHost::with_plan("pve8-grub", "demo", |p: &mut Plan| {
        p.host.packages = vec!["dkms".into(), "mdevctl".into()];
        agent_harness::add_kernel_pin(
            p,
            KernelPin {
                when_running_at_least: "6.8".into(),
                series: "6.5".into(),
                fallback: "6.5.13-6-pve".into(),
                zfs_guard: true,
                reason: "the test's driver needs 6.5".into(),
            },
        );
    });
    host.package_db(&["dkms 3.0.10-8", "base-files 12.4"]);
    let root = host.root();
    fs::create_dir_all(root.join("etc/kernel")).unwrap();
    fs::write(root.join("etc/kernel/proxmox-boot-pin"), "6.2.16-3-pve\n").unwrap();
    let apt = agent_harness::workspace().join("firstboot/tests/data/apt/pve8-bookworm/input");
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(apt)
        .arg(root.join("etc/apt"))
        .status()
        .unwrap();
    assert!(st.success());
    let enterprise = root.join("etc/apt/sources.list.d/pve-enterprise.list");
    fs::set_permissions(&enterprise, fs::Permissions::from_mode(0o640)).unwrap();
    host
}

#[test]
fn pin_packages_and_edited_files_come_back_as_they_were() {
    let host = pinned_host();
    let enterprise = host
        .root()
        .join("etc/apt/sources.list.d/pve-enterprise.list");
    let original = fs::read(&enterprise).unwrap();
    let (host, out) = apply_then_undo(host);
    assert!(
        out.contains("the kernel pin 6.5.13-6-pve was reverted"),
        "{out}"
    );
    let cmds = host.commands();
    assert!(
        cmds.iter()
            .any(|c| c == "proxmox-boot-tool kernel pin 6.5.13-6-pve"),
        "{cmds:?}"
    );
    assert!(
        cmds.iter()
            .any(|c| c == "proxmox-boot-tool kernel pin 6.2.16-3-pve"),
        "the earlier pin is set again: {cmds:?}"
    );
    let purge: Vec<&String> = cmds
        .iter()
        .filter(|c| c.starts_with("apt-get purge"))
        .collect();
    assert_eq!(
        purge,
        [
            "apt-get purge -y proxmox-kernel-6.5.13-6-pve proxmox-headers-6.5.13-6-pve mdevctl libmdevctl-dep-stand-in hello"
        ],
        "only what the agent installed (the dependency apt pulled in too), in one purge"
    );
    assert_eq!(host.packages(), ["dkms 3.0.10-8", "base-files 12.4"]);
    // The edited file is back with its bytes and its mode (the tree says
    // so too; this names the case).
    assert_eq!(fs::read(&enterprise).unwrap(), original);
    assert_eq!(
        fs::metadata(&enterprise).unwrap().permissions().mode() & 0o7777,
        0o640
    );
}

#[test]
fn undo_cut_in_the_middle_finishes_when_run_again() {
    let mut host = pinned_host();
    let mut before = tree(&host);
    before.remove(layout::UNIT_WANTS_LINK);
    provision(&mut host);
    let cut = host.agent(&["undo"], &[("VGPU_TEST_CRASH_IN", "apt-get")]);
    assert_eq!(cut.status.code(), None, "the cut: {}", text(&cut));
    // Cut in the middle: some done, the packages not yet, the journal kept.
    assert!(host.root().join(JOURNAL_FILE).exists());
    assert!(!host.root().join(UNDONE_MARKER).exists());
    assert!(host.packages().iter().any(|p| p.starts_with("hello ")));
    let again = host.agent(&["undo"], &[]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    reboot(&mut host);
    assert_same_tree(&before, &tree(&host));
    assert_eq!(host.packages(), ["dkms 3.0.10-8", "base-files 12.4"]);
}

#[test]
fn a_damaged_journal_is_refused_with_nothing_changed() {
    let mut host = SimHost::new("pve8-grub", "demo");
    host.package_db(&[]);
    provision(&mut host);
    let journal = host.root().join(JOURNAL_FILE);
    let mut text_of = fs::read_to_string(&journal).unwrap();
    let lines = text_of.lines().count();
    text_of.push_str("absent\tetc/x\textra-field\n");
    fs::write(&journal, text_of).unwrap();
    let all = tree(&host);
    let state_dir = host.root().join(layout::STATE_DIR);
    let state_before: Vec<_> = fs::read_dir(&state_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let calls = host.commands().len();
    let out = host.agent(&["undo"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains(&format!("/{JOURNAL_FILE} line {}", lines + 1))
            && t.contains("the journal is damaged")
            && t.contains("nothing was changed"),
        "{t}"
    );
    assert_eq!(host.commands().len(), calls, "no command ran");
    assert_eq!(tree(&host), all);
    let mut state_after: Vec<_> = fs::read_dir(&state_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    state_after.sort();
    let mut state_before = state_before;
    state_before.sort();
    assert_eq!(state_after, state_before);
    assert!(!host.root().join(UNDONE_MARKER).exists());
}

#[test]
fn undo_before_the_agent_finished_disables_it() {
    let host = SimHost::new("pve8-grub", "demo");
    host.package_db(&[]);
    let before = tree(&host);
    // Phase 1 only: the agent asks for its reboot and stops there.
    let first = host.boot_run(&[]).unwrap();
    assert!(text(&first).contains("rebooting"), "{}", text(&first));
    let calls = host.commands().len();
    let dry = host.agent(&["undo", "--dry-run"], &[]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    let d = String::from_utf8_lossy(&dry.stdout).into_owned();
    // Phase 1 armed a trial boot: its script goes, and its one-shot.
    assert!(
        d.contains("would remove /etc/grub.d/42_vgpu-bake-trial"),
        "{d}"
    );
    assert!(
        d.contains("would remove the trial boot entry") && d.contains("and clear its one-shot"),
        "{d}"
    );
    assert!(
        d.contains("would remove /etc/systemd/system/multi-user.target.wants"),
        "{d}"
    );
    // --json: the same lines, one document; still nothing run.
    let dry_json = host.agent(&["undo", "--dry-run", "--json"], &[]);
    assert_eq!(dry_json.status.code(), Some(0), "{}", text(&dry_json));
    let v: serde_json::Value = serde_json::from_slice(&dry_json.stdout).unwrap();
    assert_eq!(v["schema"], 1);
    assert_eq!(v["dry-run"], true);
    let lines: Vec<&str> = v["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(lines, d.lines().collect::<Vec<_>>());
    assert_eq!(host.commands().len(), calls, "the dry run ran nothing");
    assert!(!host.root().join(UNDONE_MARKER).exists());
    assert!(host.root().join(layout::UNIT_WANTS_LINK).exists());
    let out = host.agent(&["undo"], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("the agent had not finished: removed"), "{t}");
    assert!(
        host.boot_run(&[]).is_none(),
        "the unit does not start again"
    );
    let mut after = tree(&host);
    // The link is the one thing not put back: the agent stays off.
    let mut expected = before;
    expected.remove(layout::UNIT_WANTS_LINK);
    after.remove(layout::UNIT_WANTS_LINK);
    assert_same_tree(&expected, &after);
}

#[test]
fn undo_refuses_while_the_agent_runs() {
    let mut host = SimHost::new("pve8-grub", "demo");
    host.package_db(&[]);
    provision(&mut host);
    let before = tree(&host);
    let calls = host.commands().len();
    // The agent's lock, held as a running agent holds it.
    let lock = fs::File::options()
        .write(true)
        .open(host.root().join(layout::STATE_DIR).join("lock"))
        .unwrap();
    lock.lock().unwrap();
    let out = host.agent(&["undo"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("another vgpu-firstboot is running"),
        "{}",
        text(&out)
    );
    assert_eq!(host.commands().len(), calls, "no command ran");
    assert_eq!(tree(&host), before);
    assert!(host.root().join(JOURNAL_FILE).exists());
    drop(lock);
    let out = host.agent(&["undo"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

//! The trial boot (agent/trial) with the real agent on simulated hosts:
//! phase 1 arms a one-shot entry and leaves the default alone, phase 2
//! commits it once the trial boot came up, a trial that does not come up
//! is reported and never looped, a power cut after the trial came up ends
//! in the commit and one reboot, and undo removes an armed trial.

#[path = "agent/harness.rs"]
mod agent_harness;

use std::fs;

use agent_harness::SimHost;
use vgpu_plan::plan::KernelPin;

const SCRIPT: &str = "etc/grub.d/42_vgpu-bake-trial";
const DROPIN: &str = "etc/default/grub.d/vgpu-bake.cfg";
const TRIAL: &str = "var/lib/vgpu-firstboot/trial";

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn read(host: &SimHost, rel: &str) -> String {
    fs::read_to_string(host.root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn status_of_trial(host: &SimHost) -> String {
    let t = read(host, TRIAL);
    t.lines()
        .find_map(|l| l.strip_prefix("status: "))
        .unwrap()
        .to_owned()
}

/// The boot-loader commands run so far, in order.
fn boot_commands(host: &SimHost) -> Vec<String> {
    host.commands()
        .into_iter()
        .filter(|c| {
            agent_harness::BOOT_TOOL_NAMES
                .iter()
                .chain(&["proxmox-boot-tool", "systemctl reboot"])
                .any(|p| c.starts_with(p))
        })
        .collect()
}

/// The GRUB trial script holds the entry `title` with the `linux` line.
fn script_has(host: &SimHost, title: &str, linux: &str) {
    let script = read(host, SCRIPT);
    assert!(
        script.contains(&format!("menuentry '{title}' --id vgpu-bake-trial {{\n")),
        "{script}"
    );
    assert!(script.contains(&format!("\tlinux {linux}\n")), "{script}");
}

/// The boot after a trial boot that did not come up: it fails with
/// `says` in its output, the trial failed and its entry gone.
fn fails_as_not_come_up(host: &SimHost, says: &str) -> String {
    let second = host.boot_run(&[]).unwrap();
    let text = out(&second);
    assert_eq!(second.status.code(), Some(1), "{text}");
    assert!(text.contains(says), "{text}");
    assert!(
        text.contains("did not come up (panic, hang or power cut)"),
        "{text}"
    );
    assert_eq!(status_of_trial(host), "failed");
    assert!(!host.root().join(SCRIPT).exists(), "the trial stays armed");
    text
}

/// Further boots after a failed trial run nothing: no phase 1, no reboot.
fn further_boots_run_nothing(host: &mut SimHost) {
    let cmds = host.commands();
    host.reboot();
    let third = host.boot_run(&[]).unwrap();
    assert_eq!(third.status.code(), Some(1), "{}", out(&third));
    assert_eq!(host.commands(), cmds);
}

#[test]
fn grub_trial_is_armed_then_committed() {
    let mut host = SimHost::new("pve8-grub", "demo");
    let default_grub = read(&host, "etc/default/grub");
    let first = host.boot_run(&[]).unwrap();
    assert!(out(&first).contains("rebooting"), "{}", out(&first));
    // Phase 1: the default is unchanged, the trial entry armed once.
    assert!(
        !host.root().join(DROPIN).exists(),
        "phase 1 changed the default"
    );
    assert_eq!(read(&host, "etc/default/grub"), default_grub);
    script_has(
        &host,
        "vgpu-bake trial: Proxmox VE GNU/Linux + intel_iommu=on iommu=pt",
        "/boot/vmlinuz-6.8.12-9-pve root=/dev/mapper/pve-root ro quiet intel_iommu=on iommu=pt",
    );
    let cfg = read(&host, "boot/grub/grub.cfg");
    assert_eq!(cfg.matches("--id vgpu-bake-trial").count(), 1, "{cfg}");
    assert_eq!(
        read(&host, "boot/grub/grubenv"),
        "next_entry=vgpu-bake-trial\n"
    );
    assert_eq!(
        boot_commands(&host),
        [
            "update-grub",
            "grub-reboot vgpu-bake-trial",
            "systemctl reboot"
        ]
    );
    assert_eq!(status_of_trial(&host), "armed");
    let st = host.agent(&["status"], &[]);
    assert!(
        out(&st).contains("trial boot: armed: GRUB entry"),
        "{}",
        out(&st)
    );

    // The trial boot comes up: committed, the trial entry gone.
    host.reboot();
    assert!(read(&host, "proc/cmdline").contains("intel_iommu=on iommu=pt"));
    let second = host.boot_run(&[]).unwrap();
    assert!(out(&second).contains("done"), "{}", out(&second));
    assert_eq!(status_of_trial(&host), "committed");
    assert!(!host.root().join(SCRIPT).exists());
    let dropin = read(&host, DROPIN);
    assert!(dropin.contains("intel_iommu=on iommu=pt"), "{dropin}");
    let cfg = read(&host, "boot/grub/grub.cfg");
    assert!(!cfg.contains("vgpu-bake-trial"), "{cfg}");
    assert_eq!(
        boot_commands(&host)[3..],
        ["update-grub"],
        "the commit: drop-in, script removed, one update-grub"
    );
    let json = host.agent(&["status", "--json"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["trial"]["status"], "committed");
    assert!(
        v["trial"]["trial"]
            .as_str()
            .unwrap()
            .contains("(kernel 6.8.12-9-pve, adding intel_iommu=on iommu=pt)"),
        "{v}"
    );
    // The next boot boots the committed default.
    host.reboot();
    assert!(read(&host, "proc/cmdline").contains("intel_iommu=on iommu=pt"));
    assert!(
        host.boot_run(&[]).is_none(),
        "done: the unit does not start"
    );
}

#[test]
fn a_trial_that_does_not_come_up_fails_once_and_stays_failed() {
    let mut host = SimHost::with_plan("pve8-grub", "demo", |p| {
        p.host.kernel_args_extra = vec!["init=/nonexistent-vgpu-trial".into()];
    });
    host.failing_arg = Some("init=/nonexistent-vgpu-trial".into());
    let first = host.boot_run(&[]).unwrap();
    assert!(out(&first).contains("rebooting"), "{}", out(&first));
    // The trial panics; the power cycle boots the unchanged default.
    host.reboot();
    assert!(!read(&host, "proc/cmdline").contains("intel_iommu=on"));
    let text = fails_as_not_come_up(
        &host,
        "the trial boot of GRUB entry \"vgpu-bake trial: Proxmox VE GNU/Linux + intel_iommu=on iommu=pt init=/nonexistent-vgpu-trial\" (kernel 6.8.12-9-pve, adding intel_iommu=on iommu=pt init=/nonexistent-vgpu-trial) did not come up",
    );
    assert!(text.contains("which is unchanged"), "{text}");
    assert!(
        !host.root().join(DROPIN).exists(),
        "the failed args became the default"
    );
    assert!(!read(&host, "boot/grub/grub.cfg").contains("vgpu-bake-trial"));
    let cmds = boot_commands(&host);
    assert_eq!(
        cmds,
        [
            "update-grub",
            "grub-reboot vgpu-bake-trial",
            "systemctl reboot",
            "update-grub"
        ]
    );
    further_boots_run_nothing(&mut host);
    assert_eq!(boot_commands(&host), cmds);
    let st = host.agent(&["status"], &[]);
    assert!(out(&st).contains("trial boot: failed"), "{}", out(&st));
}

/// Phase 1, then the trial boot comes up (recorded at start-up) and the
/// power goes as verify-reboot begins, before the commit.
fn cut_after_the_trial_came_up(host: &mut SimHost) {
    host.boot_run(&[]).unwrap();
    host.reboot();
    let cut = host
        .boot_run(&[("VGPU_FIRSTBOOT_FAULT", "verify-reboot:begun")])
        .unwrap();
    assert_eq!(cut.status.code(), None, "{}", out(&cut));
    assert_eq!(status_of_trial(host), "came-up", "{}", out(&cut));
    assert!(!host.root().join(DROPIN).exists(), "{}", out(&cut));
}

#[test]
fn a_power_cut_after_the_trial_came_up_commits_and_reboots_once() {
    let mut host = SimHost::new("pve8-grub", "demo");
    cut_after_the_trial_came_up(&mut host);
    // The next boot is the old default (the one-shot is used up).
    host.reboot();
    assert!(
        !read(&host, "proc/cmdline").contains("intel_iommu=on"),
        "{} {:?}",
        read(&host, "proc/cmdline"),
        host.tree()
            .keys()
            .filter(|k| k.starts_with("etc") || k.starts_with("boot"))
            .collect::<Vec<_>>()
    );
    let again = host.boot_run(&[]).unwrap();
    assert!(out(&again).contains("rebooting"), "{}", out(&again));
    assert_eq!(status_of_trial(&host), "committed");
    assert!(read(&host, DROPIN).contains("intel_iommu=on iommu=pt"));
    assert!(!host.root().join(SCRIPT).exists());
    host.reboot();
    let last = host.boot_run(&[]).unwrap();
    assert!(out(&last).contains("done"), "{}", out(&last));
    let reboots = host
        .commands()
        .iter()
        .filter(|c| *c == "systemctl reboot")
        .count();
    assert_eq!(
        reboots, 2,
        "the phase 1 reboot and one into the committed default"
    );
}

#[test]
fn a_rerun_of_phase_1_after_a_cut_arms_one_entry() {
    let mut host = SimHost::new("pve8-grub", "demo");
    // The power goes in grub-reboot: the entry is in grub.cfg, no one-shot.
    let cut = host
        .boot_run(&[("VGPU_TEST_CRASH_IN", "grub-reboot")])
        .unwrap();
    assert_eq!(cut.status.code(), None, "{}", out(&cut));
    host.reboot();
    assert!(
        !read(&host, "proc/cmdline").contains("intel_iommu=on"),
        "no one-shot was set"
    );
    let first = host.boot_run(&[]).unwrap();
    assert!(out(&first).contains("rebooting"), "{}", out(&first));
    let cfg = read(&host, "boot/grub/grub.cfg");
    assert_eq!(cfg.matches("--id vgpu-bake-trial").count(), 1, "{cfg}");
    assert_eq!(
        fs::read_dir(host.root().join("etc/grub.d"))
            .unwrap()
            .count(),
        1
    );
    host.reboot();
    let second = host.boot_run(&[]).unwrap();
    assert!(out(&second).contains("done"), "{}", out(&second));
    assert_eq!(status_of_trial(&host), "committed");
}

#[test]
fn systemd_boot_trial_uses_each_esp_and_commits_the_cmdline() {
    let mut host = SimHost::new("pve9-zfs-sdboot", "passthrough");
    let cmdline = read(&host, "etc/kernel/cmdline");
    let first = host.boot_run(&[]).unwrap();
    assert!(out(&first).contains("rebooting"), "{}", out(&first));
    assert_eq!(
        read(&host, "etc/kernel/cmdline"),
        cmdline,
        "phase 1 changed the default"
    );
    let m = |u: &str| {
        let dir = format!("/run/vgpu-firstboot/esp/{u}");
        [
            format!("mount -t vfat /dev/disk/by-uuid/{u} {dir}"),
            format!("umount {dir}"),
        ]
    };
    let mut want: Vec<String> = Vec::new();
    // Each ESP mounted once: its default entry read, the trial entry written.
    want.extend(m("5E2A-1B3C"));
    want.extend(m("5E2A-4D5F"));
    want.push("bootctl set-oneshot vgpu-bake-trial.conf".into());
    want.push("systemctl reboot".into());
    assert_eq!(boot_commands(&host), want);
    for uuid in ["5E2A-1B3C", "5E2A-4D5F"] {
        let e = fs::read_to_string(
            host.test_path(&format!("esp/{uuid}/loader/entries/vgpu-bake-trial.conf")),
        )
        .unwrap();
        assert!(
            e.starts_with(
                "title   vgpu-bake trial: Proxmox Virtual Environment + amd_iommu=on iommu=pt pcie_acs_override=downstream\n"
            ),
            "{e}"
        );
        assert!(
            e.contains("linux    /EFI/proxmox/6.14.11-4-pve/vmlinuz-6.14.11-4-pve\n"),
            "{e}"
        );
        assert!(
            e.ends_with("options root=ZFS=rpool/ROOT/pve-1 boot=zfs amd_iommu=on iommu=pt pcie_acs_override=downstream\n"),
            "{e}"
        );
    }
    host.reboot();
    assert!(read(&host, "proc/cmdline").contains("amd_iommu=on iommu=pt"));
    let second = host.boot_run(&[]).unwrap();
    assert!(out(&second).contains("done"), "{}", out(&second));
    assert_eq!(status_of_trial(&host), "committed");
    assert_eq!(
        read(&host, "etc/kernel/cmdline"),
        "root=ZFS=rpool/ROOT/pve-1 boot=zfs amd_iommu=on iommu=pt pcie_acs_override=downstream\n"
    );
    let cmds = boot_commands(&host);
    let commit: Vec<&str> = cmds[want.len()..].iter().map(String::as_str).collect();
    assert_eq!(commit[0], "proxmox-boot-tool refresh");
    for uuid in ["5E2A-1B3C", "5E2A-4D5F"] {
        assert!(
            !host
                .test_path(&format!("esp/{uuid}/loader/entries/vgpu-bake-trial.conf"))
                .exists()
        );
    }
}

#[test]
fn undo_removes_an_armed_trial() {
    let host = SimHost::new("pve8-grub", "demo");
    host.boot_run(&[]).unwrap();
    assert!(host.root().join(SCRIPT).exists());
    let dry = host.agent(&["undo", "--dry-run"], &[]);
    assert!(
        out(&dry).contains("would remove the trial boot entry"),
        "{}",
        out(&dry)
    );
    let undo = host.agent(&["undo"], &[]);
    assert_eq!(undo.status.code(), Some(0), "{}", out(&undo));
    assert!(!host.root().join(SCRIPT).exists());
    assert!(
        !host.root().join("boot/grub/grubenv").exists(),
        "the one-shot stays set"
    );
    assert!(!read(&host, "boot/grub/grub.cfg").contains("vgpu-bake-trial"));
    let cmds = host.commands();
    let editenv = cmds
        .iter()
        .position(|c| c == "grub-editenv /boot/grub/grubenv unset next_entry")
        .unwrap();
    let last_grub = cmds.iter().rposition(|c| c == "update-grub").unwrap();
    assert!(editenv < last_grub, "{cmds:?}");
    assert_eq!(status_of_trial(&host), "failed");
}

#[test]
fn a_trial_boot_that_fails_a_check_is_not_committed() {
    let mut host = SimHost::new("pve8-grub", "demo");
    host.boot_run(&[]).unwrap();
    host.reboot();
    // The trial boot is up, but nouveau is still loaded.
    fs::create_dir_all(host.root().join("sys/module/nouveau")).unwrap();
    let second = host.boot_run(&[]).unwrap();
    let text = out(&second);
    assert_eq!(second.status.code(), Some(1), "{text}");
    assert!(text.contains("nouveau is still loaded"), "{text}");
    assert!(
        text.contains(
            "the trial boot was not made the default (the default entry is unchanged, no pin)"
        ),
        "{text}"
    );
    assert_eq!(status_of_trial(&host), "failed");
    assert!(
        !host.root().join(DROPIN).exists(),
        "committed after a failed check"
    );
    assert!(!host.root().join(SCRIPT).exists(), "the trial entry stayed");
}

#[test]
fn retry_after_a_failed_trial_tries_it_once_more() {
    let mut host = SimHost::with_plan("pve8-grub", "demo", |p| {
        p.host.kernel_args_extra = vec!["init=/nonexistent-vgpu-trial".into()];
    });
    host.failing_arg = Some("init=/nonexistent-vgpu-trial".into());
    host.boot_run(&[]).unwrap();
    host.reboot();
    let failed = host.boot_run(&[]).unwrap();
    assert_eq!(failed.status.code(), Some(1), "{}", out(&failed));
    // The operator fixed what made it panic (here: the boot now comes up).
    host.failing_arg = None;
    let retry = host.agent(&["retry"], &[]);
    assert_eq!(retry.status.code(), Some(0), "{}", out(&retry));
    let again = host.boot_run(&[]).unwrap();
    assert!(out(&again).contains("rebooting"), "{}", out(&again));
    assert_eq!(status_of_trial(&host), "armed");
    assert!(host.root().join(SCRIPT).exists());
    host.reboot();
    let done = host.boot_run(&[]).unwrap();
    assert!(out(&done).contains("done"), "{}", out(&done));
    assert_eq!(status_of_trial(&host), "committed");
    assert!(read(&host, DROPIN).contains("init=/nonexistent-vgpu-trial"));
}

#[test]
fn retry_after_a_failed_check_in_the_trial_boot_commits() {
    let mut host = SimHost::new("pve8-grub", "demo");
    host.boot_run(&[]).unwrap();
    host.reboot();
    fs::create_dir_all(host.root().join("sys/module/nouveau")).unwrap();
    let failed = host.boot_run(&[]).unwrap();
    assert_eq!(failed.status.code(), Some(1), "{}", out(&failed));
    // Fixed in the same boot (nouveau unloaded by hand), then retried.
    fs::remove_dir_all(host.root().join("sys/module/nouveau")).unwrap();
    let retry = host.agent(&["retry"], &[]);
    assert_eq!(retry.status.code(), Some(0), "{}", out(&retry));
    let done = host.boot_run(&[]).unwrap();
    assert!(out(&done).contains("done"), "{}", out(&done));
    assert_eq!(status_of_trial(&host), "committed");
    assert!(read(&host, DROPIN).contains("intel_iommu=on iommu=pt"));
}

#[test]
fn iommu_off_in_the_trial_boot_fails_at_verify_reboot_and_ends_the_trial() {
    let mut host = SimHost::new("pve8-grub", "demo");
    host.boot_run(&[]).unwrap();
    host.reboot();
    // The trial boot is up with the arguments, but the firmware has the
    // IOMMU off: no groups.
    let groups = host.root().join("sys/kernel/iommu_groups");
    fs::remove_dir_all(&groups).unwrap();
    fs::create_dir_all(&groups).unwrap();
    let second = host.boot_run(&[]).unwrap();
    let text = out(&second);
    assert_eq!(second.status.code(), Some(1), "{text}");
    assert!(
        text.contains("step verify-reboot failed: IOMMU is off: enable VT-d"),
        "{text}"
    );
    assert!(!text.contains("step reboot failed"), "{text}");
    assert!(!text.contains("rebooting"), "{text}");
    assert_eq!(status_of_trial(&host), "failed");
    assert!(!host.root().join(DROPIN).exists(), "committed");
    assert!(!host.root().join(SCRIPT).exists(), "the trial entry stayed");
    assert_eq!(
        boot_commands(&host).last().map(String::as_str),
        Some("update-grub")
    );
}

const PIN_FILE: &str = "etc/kernel/proxmox-boot-pin";

/// `plan` on `fixture` with a kernel pin of `series` (fallback `version`:
/// the stand-in `apt-cache` lists no kernel), the pin step before
/// apt-install or kernel-args as the builder places it, and the stand-ins
/// that keep dpkg's record (a kernel package's install writes its GRUB
/// entry and its loader entry on each ESP). With `args_running`, the boot
/// already runs the plan's kernel arguments: a pin-only trial.
fn pinned(fixture: &str, plan: &str, series: &str, version: &str, args_running: bool) -> SimHost {
    let (series, version) = (series.to_owned(), version.to_owned());
    let host = SimHost::with_plan(fixture, plan, |p| {
        agent_harness::add_kernel_pin(
            p,
            KernelPin {
                when_running_at_least: "6.0".into(),
                series,
                fallback: version,
                zfs_guard: false,
                reason: "the test's driver needs it".into(),
            },
        )
    });
    host.package_db(&[]);
    if args_running {
        let args = host.agent(&["plan"], &[]);
        let text = out(&args);
        let line = text
            .lines()
            .filter_map(|l| l.split("kernel argument ").nth(1))
            .map(|l| l.split(':').next().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(!line.is_empty(), "{text}");
        for rel in ["proc/cmdline", "cmdline.base"] {
            let path = if rel == "cmdline.base" {
                host.test_path(rel)
            } else {
                host.root().join(rel)
            };
            let c = fs::read_to_string(&path).unwrap();
            fs::write(&path, format!("{} {line}\n", c.trim())).unwrap();
        }
    }
    host
}

fn osrelease(host: &SimHost) -> String {
    read(host, "proc/sys/kernel/osrelease").trim().to_owned()
}

fn pin_commands(host: &SimHost) -> Vec<String> {
    host.commands()
        .into_iter()
        .filter(|c| c.starts_with("proxmox-boot-tool kernel"))
        .collect()
}

/// The first boot arms the trial and reboots, pinning nothing.
fn arms_without_pinning(host: &SimHost) {
    let first = host.boot_run(&[]).unwrap();
    assert!(out(&first).contains("rebooting"), "{}", out(&first));
    assert_eq!(pin_commands(host), Vec::<String>::new());
    assert!(!host.root().join(PIN_FILE).exists());
}

/// The trial boot runs the chosen kernel `v`: committed, pinned once.
fn trial_boot_pins(host: &mut SimHost, v: &str) {
    host.reboot();
    assert_eq!(osrelease(host), v);
    let second = host.boot_run(&[]).unwrap();
    assert!(out(&second).contains("done"), "{}", out(&second));
    assert_eq!(status_of_trial(host), "committed");
    assert_eq!(
        pin_commands(host),
        [format!("proxmox-boot-tool kernel pin {v}")]
    );
}

fn trial_line(host: &SimHost) -> String {
    let json = host.agent(&["status", "--json"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    v["trial"]["trial"].as_str().unwrap().to_owned()
}

#[test]
fn grub_pin_only_trial_boots_the_kernel_once_and_pins_it_at_the_commit() {
    let mut host = pinned("pve8-grub", "demo", "6.5", "6.5.13-6-pve", true);
    // Phase 1 pinned nothing: the trial entry boots the chosen kernel.
    arms_without_pinning(&host);
    assert!(
        !host.root().join(DROPIN).exists(),
        "phase 1 changed the default"
    );
    script_has(
        &host,
        "vgpu-bake trial: Proxmox VE GNU/Linux, with Linux 6.5.13-6-pve + intel_iommu=on iommu=pt",
        "/boot/vmlinuz-6.5.13-6-pve root=/dev/mapper/pve-root ro quiet intel_iommu=on iommu=pt",
    );
    assert!(read(&host, TRIAL).contains("\npin: true\n"));
    assert!(
        trial_line(&host).contains("(kernel 6.5.13-6-pve to pin, adding intel_iommu=on iommu=pt)"),
        "{}",
        trial_line(&host)
    );
    trial_boot_pins(&mut host, "6.5.13-6-pve");
    assert_eq!(read(&host, PIN_FILE), "6.5.13-6-pve\n");
    assert!(!host.root().join(SCRIPT).exists());
    let st = host.agent(&["status"], &[]);
    assert!(
        out(&st).contains("trial boot: committed: GRUB entry") && out(&st).contains("to pin"),
        "{}",
        out(&st)
    );
    // The default boots the pinned kernel from now on.
    host.reboot();
    assert_eq!(osrelease(&host), "6.5.13-6-pve");
    assert!(host.boot_run(&[]).is_none());
}

#[test]
fn systemd_boot_pin_only_trial_uses_the_kernels_loader_entry() {
    let mut host = pinned(
        "pve9-zfs-sdboot",
        "passthrough",
        "6.8.12",
        "6.8.12-9-pve",
        true,
    );
    let cmdline = read(&host, "etc/kernel/cmdline");
    arms_without_pinning(&host);
    assert_eq!(read(&host, "etc/kernel/cmdline"), cmdline);
    for uuid in ["5E2A-1B3C", "5E2A-4D5F"] {
        let e = fs::read_to_string(
            host.test_path(&format!("esp/{uuid}/loader/entries/vgpu-bake-trial.conf")),
        )
        .unwrap();
        assert!(
            e.contains("linux    /EFI/proxmox/6.8.12-9-pve/vmlinuz-6.8.12-9-pve\ninitrd   /EFI/proxmox/6.8.12-9-pve/initrd.img-6.8.12-9-pve\n"),
            "{e}"
        );
        assert!(
            e.ends_with("options root=ZFS=rpool/ROOT/pve-1 boot=zfs amd_iommu=on iommu=pt pcie_acs_override=downstream\n"),
            "{e}"
        );
    }
    assert!(
        trial_line(&host).contains("(kernel 6.8.12-9-pve to pin, adding "),
        "{}",
        trial_line(&host)
    );
    trial_boot_pins(&mut host, "6.8.12-9-pve");
    // The commit: the pin, then the refresh, then the entries removed.
    let cmds = host.commands();
    let pin = cmds
        .iter()
        .position(|c| c == "proxmox-boot-tool kernel pin 6.8.12-9-pve")
        .unwrap();
    assert_eq!(cmds[pin + 1], "proxmox-boot-tool refresh", "{cmds:?}");
    for uuid in ["5E2A-1B3C", "5E2A-4D5F"] {
        assert!(
            !host
                .test_path(&format!("esp/{uuid}/loader/entries/vgpu-bake-trial.conf"))
                .exists()
        );
    }
    host.reboot();
    assert_eq!(osrelease(&host), "6.8.12-9-pve");
}

#[test]
fn a_pin_and_new_arguments_are_one_trial() {
    let mut host = pinned("pve8-grub", "demo", "6.5", "6.5.13-6-pve", false);
    arms_without_pinning(&host);
    let script = read(&host, SCRIPT);
    assert!(
        script.contains("\tlinux /boot/vmlinuz-6.5.13-6-pve root=/dev/mapper/pve-root ro quiet intel_iommu=on iommu=pt\n"),
        "{script}"
    );
    assert_eq!(script.matches("menuentry").count(), 1, "{script}");
    trial_boot_pins(&mut host, "6.5.13-6-pve");
    assert!(read(&host, DROPIN).contains("intel_iommu=on iommu=pt"));
    host.reboot();
    assert_eq!(osrelease(&host), "6.5.13-6-pve");
    assert!(read(&host, "proc/cmdline").contains("intel_iommu=on iommu=pt"));
}

#[test]
fn a_pin_trial_that_does_not_come_up_never_pins() {
    let mut host = pinned("pve8-grub", "demo", "6.5", "6.5.13-6-pve", true);
    host.failing_kernel = Some("6.5.13-6-pve".into());
    host.boot_run(&[]).unwrap();
    // The trial kernel panics; the power cycle boots the old default.
    host.reboot();
    assert_eq!(osrelease(&host), "6.8.12-9-pve");
    let text = fails_as_not_come_up(
        &host,
        "(kernel 6.5.13-6-pve to pin, adding intel_iommu=on iommu=pt) did not come up",
    );
    assert!(text.contains("no pin"), "{text}");
    assert!(!host.root().join(PIN_FILE).exists());
    // Further boots change nothing and never pin.
    further_boots_run_nothing(&mut host);
    assert_eq!(osrelease(&host), "6.8.12-9-pve");
    assert_eq!(pin_commands(&host), Vec::<String>::new());
}

#[test]
fn a_power_cut_after_the_pin_trial_came_up_pins_once() {
    let mut host = pinned("pve8-grub", "demo", "6.5", "6.5.13-6-pve", false);
    cut_after_the_trial_came_up(&mut host);
    assert_eq!(pin_commands(&host), Vec::<String>::new());
    // The next boot is the old default, old kernel: the commit finishes
    // (the pin once) and reboots into it once.
    host.reboot();
    assert_eq!(osrelease(&host), "6.8.12-9-pve");
    let again = host.boot_run(&[]).unwrap();
    assert!(out(&again).contains("rebooting"), "{}", out(&again));
    assert_eq!(status_of_trial(&host), "committed");
    assert_eq!(
        pin_commands(&host),
        ["proxmox-boot-tool kernel pin 6.5.13-6-pve"]
    );
    host.reboot();
    assert_eq!(osrelease(&host), "6.5.13-6-pve");
    let last = host.boot_run(&[]).unwrap();
    assert!(out(&last).contains("done"), "{}", out(&last));
    assert_eq!(
        pin_commands(&host),
        ["proxmox-boot-tool kernel pin 6.5.13-6-pve"]
    );
}

#[test]
fn undo_after_the_commit_reverts_the_pin() {
    let mut host = pinned("pve8-grub", "demo", "6.5", "6.5.13-6-pve", true);
    arms_without_pinning(&host);
    trial_boot_pins(&mut host, "6.5.13-6-pve");
    assert_eq!(read(&host, PIN_FILE), "6.5.13-6-pve\n");
    let undo = host.agent(&["undo"], &[]);
    assert_eq!(undo.status.code(), Some(0), "{}", out(&undo));
    assert!(
        out(&undo).contains("the kernel pin 6.5.13-6-pve was reverted"),
        "{}",
        out(&undo)
    );
    assert!(!host.root().join(PIN_FILE).exists());
    assert_eq!(
        pin_commands(&host),
        [
            "proxmox-boot-tool kernel pin 6.5.13-6-pve",
            "proxmox-boot-tool kernel unpin"
        ]
    );
}

/// The README's way past a loader that never boots the one-shot (GRUB on
/// ESPs kept by proxmox-boot-tool, legacy BIOS): the arguments made the
/// default by hand, a reboot, `retry`; verify-reboot commits.
#[test]
fn a_one_shot_never_booted_then_arguments_added_by_hand_commit_at_retry() {
    let mut host = SimHost::new("pve8-grub", "demo");
    host.boot_run(&[]).unwrap();
    // The loader ignored the one-shot: the old default booted.
    host.reboot_without_new_args();
    let failed = host.boot_run(&[]).unwrap();
    let text = out(&failed);
    assert_eq!(failed.status.code(), Some(1), "{text}");
    assert!(text.contains("did not come up"), "{text}");
    assert_eq!(status_of_trial(&host), "failed");
    // By hand: the arguments in the default entry, then a reboot (the
    // blacklist phase 1 wrote keeps nouveau off, as at any boot).
    host.reboot_without_new_args();
    let _ = fs::remove_dir_all(host.root().join("sys/module/nouveau"));
    let cmdline = read(&host, "proc/cmdline");
    fs::write(
        host.root().join("proc/cmdline"),
        format!("{} intel_iommu=on iommu=pt\n", cmdline.trim()),
    )
    .unwrap();
    let retry = host.agent(&["retry"], &[]);
    assert_eq!(retry.status.code(), Some(0), "{}", out(&retry));
    let done = host.boot_run(&[]).unwrap();
    assert!(out(&done).contains("done"), "{}", out(&done));
    assert!(!out(&done).contains("rebooting"), "{}", out(&done));
    assert_eq!(status_of_trial(&host), "committed");
    assert!(read(&host, DROPIN).contains("intel_iommu=on iommu=pt"));
}

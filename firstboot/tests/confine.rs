//! `run` and `retry` with `--root R` run R's programs only: never one of
//! the machine they were started on, and without the privileges to enter R
//! they refuse, saying so.

#[path = "agent/harness.rs"]
mod agent_harness;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use agent_harness::{PATH, SimHost};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A program in `dir` that only leaves `marker` behind.
fn marker_program(dir: &Path, name: &str, marker: &Path) {
    let p = dir.join(name);
    fs::write(
        &p,
        format!("#!/bin/sh\necho \"$0 $*\" >>'{}'\n", marker.display()),
    )
    .unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn run_never_runs_a_program_of_the_machine_it_started_on() {
    let host = SimHost::new("pve8-grub", "demo");
    // This machine's `PATH` starts with programs of the same names as the
    // root's stand-ins; with a naive runner they would run first.
    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("ran-outside");
    for name in [
        "update-grub",
        "update-initramfs",
        "apt-get",
        "systemctl",
        "dpkg-deb",
        "sync",
    ] {
        marker_program(outside.path(), name, &marker);
    }
    let path = format!("{}:{PATH}", outside.path().display());
    let out = host.boot_run(&[("PATH", &path)]).unwrap();
    assert!(
        !marker.exists(),
        "a program outside the root ran: {}",
        fs::read_to_string(&marker).unwrap_or_default()
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("rebooting"), "{}", text(&out));
    let cmds = host.commands();
    for inside in [
        "update-grub",
        "update-initramfs -u -k all",
        "systemctl reboot",
    ] {
        assert!(
            cmds.iter().any(|c| c == inside),
            "{inside} did not run inside the root: {cmds:?}"
        );
    }
    // `retry` enters the root too (here it has nothing to retry).
    let retry = host.agent(&["retry"], &[("PATH", &path)]);
    assert!(
        text(&retry).contains("working inside --root"),
        "{}",
        text(&retry)
    );
    assert!(!marker.exists());
}

/// A root like a mounted disk (empty /proc and /sys, no /dev or /run): the
/// commands see the kernel's, mounted in a namespace of the agent's own,
/// and nothing is left mounted under the root afterwards.
#[test]
fn the_kernel_dirs_are_mounted_inside_and_vanish_with_the_agent() {
    let host = SimHost::new("pve8-grub", "demo");
    let root = host.root();
    for dir in ["proc", "sys"] {
        fs::remove_dir_all(root.join(dir)).unwrap();
        fs::create_dir(root.join(dir)).unwrap();
    }
    let out = host
        .boot_run(&[("VGPU_TEST_MOUNTINFO", "/vgpu-test/mountinfo")])
        .unwrap();
    let said = text(&out);
    assert!(
        said.contains("mounted /proc, /sys, /dev, /run in a private mount namespace"),
        "{said}"
    );
    let seen = fs::read_to_string(host.test_path("mountinfo"))
        .unwrap_or_else(|e| panic!("no stand-in ran ({e}):\n{said}"));
    // mountinfo: ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS ... - TYPE SOURCE ...
    let mounts: Vec<(String, String)> = seen
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            Some((fields[4].to_string(), fields.get(dash + 1)?.to_string()))
        })
        .collect();
    for (point, kind) in [("/proc", "proc"), ("/sys", "sysfs"), ("/run", "tmpfs")] {
        assert!(
            mounts.iter().any(|(p, k)| p == point && k == kind),
            "{point} ({kind}) not mounted for the commands:\n{seen}"
        );
    }
    assert!(
        mounts.iter().any(|(p, _)| p == "/dev"),
        "/dev not mounted:\n{seen}"
    );
    // From here (this machine's namespace) the mount points are the empty
    // directories they were: nothing leaked, nothing to unmount.
    for dir in ["proc", "sys", "dev", "run"] {
        let entries = fs::read_dir(root.join(dir)).unwrap().count();
        assert_eq!(entries, 0, "{dir} under the root is not empty out here");
    }
    let here = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root_text = root.display().to_string();
    assert!(
        !here.contains(&root_text),
        "mounts under the root leaked into this namespace:\n{here}"
    );
}

#[test]
fn without_privileges_run_and_retry_refuse_and_run_nothing() {
    let host = SimHost::new("pve8-grub", "demo");
    // An unprivileged user must reach the root and the agent to be refused
    // for the right reason.
    fs::set_permissions(host.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let agent = host.dir.path().join("vgpu-firstboot");
    fs::copy(env!("CARGO_BIN_EXE_vgpu-firstboot"), &agent).unwrap();
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("setpriv (util-linux) runs the agent as nobody");
    for command in ["run", "retry"] {
        let out = Command::new(setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&agent)
            .arg("--root")
            .arg(host.root())
            .arg(command)
            .env("PATH", PATH)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command}: {}", text(&out));
        for want in [
            format!("--root {}:", host.root().display()),
            "may not set them up".into(),
            "Run the agent as root".into(),
            "never runs this machine's commands".into(),
        ] {
            assert!(said.contains(&want), "{command}: {want:?} missing: {said}");
        }
    }
    assert!(host.commands().is_empty(), "{:?}", host.commands());
    assert!(
        !host
            .root()
            .join("var/lib/vgpu-firstboot/state.toml")
            .exists(),
        "a refused run must not start the plan"
    );
}

#[test]
fn an_unusable_root_is_refused_by_name() {
    let agent = env!("CARGO_BIN_EXE_vgpu-firstboot");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-root");
    let out = Command::new(agent)
        .arg("--root")
        .arg(&missing)
        .arg("run")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!("--root {}: ", missing.display()))
            && said.contains("give the directory the host's root filesystem is mounted at"),
        "{said}"
    );

    // A /dev that is a file would be hidden or followed by a mount.
    let host = SimHost::new("pve8-grub", "demo");
    fs::write(host.root().join("dev"), "not a directory\n").unwrap();
    let out = host.boot_run(&[]).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    let dev = host.root().join("dev");
    assert!(
        said.contains(&format!(
            "cannot mount this machine's /dev on {}",
            dev.display()
        )),
        "{said}"
    );
    assert!(host.commands().is_empty(), "{:?}", host.commands());
    // Refused before any change: no mount point was made.
    assert!(!host.root().join("run").exists(), "/run was created");
}

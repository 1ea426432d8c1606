//! The real agent on a fixture root full of symlinks that point out of it
//! (absolute ones and `../..` ones): every step of the demo plan runs, and
//! nothing outside the root is created or changed. Writes through such a
//! link land inside the root (an absolute target means that path under the
//! root, `..` stops at the root), or are refused with a clear error.

#[path = "agent/harness.rs"]
mod agent_harness;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use agent_harness::SimHost;
use support::step_env::{Env, LIBRARY, reason};
use vgpu_firstboot::agent::host::StepOutcome;
use vgpu_firstboot::agent::steps;
use vgpu_plan::layout;

mod support {
    pub mod step_env;
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every entry under `dir` (not entering `skip`): kind, mode and content or
/// link target.
fn snapshot(dir: &Path, skip: &[PathBuf]) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if skip.contains(&p) {
                continue;
            }
            let meta = fs::symlink_metadata(&p).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let what = if meta.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&p).unwrap().display())
            } else if meta.is_dir() {
                todo.push(p.clone());
                format!("dir {mode:o}")
            } else {
                format!(
                    "{mode:o} {}",
                    String::from_utf8_lossy(&fs::read(&p).unwrap())
                )
            };
            out.insert(p, what);
        }
    }
    out
}

/// Replaces whatever is at `path` with a symlink to `target`.
fn plant(path: &Path, target: &Path) {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).unwrap(),
        Ok(_) => fs::remove_file(path).unwrap(),
        Err(_) => fs::create_dir_all(path.parent().unwrap()).unwrap(),
    }
    symlink(target, path).unwrap();
}

/// `abs` (an absolute host path) as the same path under `root`.
fn under(root: &Path, abs: &Path) -> PathBuf {
    root.join(abs.strip_prefix("/").unwrap())
}

/// The harness's reboot reads the boot configuration through host paths,
/// which would follow the planted links out of the root; this one reads
/// where the agent really wrote it: the trial entry phase 1 armed (the
/// one-shot boot), its `linux` line's arguments.
fn reboot(host: &mut SimHost) {
    host.reboot();
    let root = host.root();
    let script = fs::read_to_string(root.join("outside/42_vgpu-bake-trial")).unwrap();
    let linux = script
        .lines()
        .find(|l| l.trim_start().starts_with("linux"))
        .unwrap();
    let words: Vec<&str> = linux.split_whitespace().collect();
    let cmdline = format!("BOOT_IMAGE={} {}", words[1], words[2..].join(" "));
    assert!(cmdline.contains("intel_iommu=on"), "{cmdline}");
    fs::write(root.join("proc/cmdline"), format!("{cmdline}\n")).unwrap();
    let _ = fs::remove_dir_all(root.join("sys/module/nouveau"));
}

#[test]
fn planted_symlinks_never_lead_a_write_out_of_the_root() {
    let mut host = SimHost::new("pve8-grub", "demo");
    let root = host.root();
    let dir = host.dir.path().to_path_buf();
    let outside = dir.join("outside");
    fs::create_dir_all(outside.join("modprobe.d")).unwrap();
    fs::write(outside.join("modprobe.d/keep.conf"), "outside\n").unwrap();
    fs::write(outside.join("state.toml"), "outside state\n").unwrap();
    fs::write(outside.join("done"), "outside done\n").unwrap();

    // Absolute: etc/modprobe.d means <root>/<outside>/modprobe.d, made here
    // so the write lands there.
    plant(&root.join("etc/modprobe.d"), &outside.join("modprobe.d"));
    fs::create_dir_all(under(&root, &outside.join("modprobe.d"))).unwrap();
    // `..` climbing out of the root: stops at the root, so <root>/outside.
    plant(
        &root.join("etc/default/grub.d"),
        Path::new("../../../outside"),
    );
    // The trial boot's script (phase 1 writes it, not the drop-in).
    plant(&root.join("etc/grub.d"), Path::new("../../../outside"));
    fs::create_dir_all(root.join("outside")).unwrap();
    // Bookkeeping files aimed at outside files.
    let state_dir = root.join(layout::STATE_DIR);
    plant(&root.join(layout::STATE_FILE), &outside.join("state.toml"));
    plant(
        &state_dir.join("lock"),
        Path::new("../../../../../../../outside/lock"),
    );
    // The done marker: an outside file exists there, the agent must not
    // take it for its own (the harness's `boot_run` would: it runs the
    // agent directly here).
    plant(&root.join(layout::DONE_MARKER), &outside.join("done"));

    // Everything outside the root: the sibling `outside` and the test dir.
    let skip = [
        root.clone(),
        dir.join("commands.log"),
        dir.join("demo-installer.log"),
    ];
    let before = snapshot(&dir, &skip);
    let unchanged = |when: &str| {
        assert_eq!(
            snapshot(&dir, &skip),
            before,
            "{when}: something outside the root changed"
        );
    };

    // Boot 1: phase 1, through the links.
    let first = host.agent(&["run"], &[]);
    assert!(text(&first).contains("rebooting"), "{}", text(&first));
    unchanged("after phase 1");
    let blacklist = under(&root, &outside.join("modprobe.d/vgpu-bake-blacklist.conf"));
    assert!(
        fs::read_to_string(&blacklist)
            .unwrap()
            .contains("blacklist nouveau"),
        "the blacklist did not land under the root"
    );
    let grub = fs::read_to_string(root.join("outside/42_vgpu-bake-trial")).unwrap();
    assert!(grub.contains("intel_iommu=on"), "{grub}");
    let state = fs::symlink_metadata(root.join(layout::STATE_FILE)).unwrap();
    assert!(state.is_file(), "the state file replaced the link");
    assert!(
        root.join("outside/lock").is_file(),
        "the lock is in the root"
    );

    // A payload file that is a link to an outside copy with the right
    // content: following it would pass the sha256 check. Planted after
    // phase 1, which checks every bundle file first and would refuse it
    // before the writes above (tests/signed_bundle.rs).
    let installer = fs::read_dir(root.join(layout::PAYLOAD_DIR).join("driver"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".run"))
        .unwrap();
    fs::copy(&installer, outside.join("installer.run")).unwrap();
    plant(&installer, &outside.join("installer.run"));
    let before = snapshot(&dir, &skip);
    let unchanged = |when: &str| {
        assert_eq!(
            snapshot(&dir, &skip),
            before,
            "{when}: something outside the root changed"
        );
    };

    // Boot 2: the payload link is refused, with what to do.
    reboot(&mut host);
    let second = host.agent(&["run"], &[]);
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    let rel = installer.strip_prefix(&root).unwrap().display().to_string();
    assert!(
        text(&second).contains(&format!(
            "payload file /{rel} is not a regular file: re-copy or re-bake the bundle"
        )),
        "{}",
        text(&second)
    );
    unchanged("after the refused payload");

    // The operator re-copies the file; the plan carries on to the end.
    fs::remove_file(&installer).unwrap();
    fs::copy(outside.join("installer.run"), &installer).unwrap();
    fs::set_permissions(&installer, fs::Permissions::from_mode(0o755)).unwrap();
    let retry = host.agent(&["retry"], &[]);
    assert_eq!(retry.status.code(), Some(0), "{}", text(&retry));
    let last = host.agent(&["run"], &[]);
    assert_eq!(last.status.code(), Some(0), "{}", text(&last));
    assert!(text(&last).contains("done"), "{}", text(&last));
    unchanged("after phase 2");
    let marker = fs::symlink_metadata(root.join(layout::DONE_MARKER)).unwrap();
    assert!(marker.is_file(), "the done marker replaced the link");
    assert!(!root.join(layout::PAYLOAD_DIR).exists());
    assert!(
        fs::symlink_metadata(root.join(layout::UNIT_WANTS_LINK)).is_err(),
        "the unit disabled itself"
    );
    let status = host.agent(&["status"], &[]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    unchanged("at the end");
}

/// The steps the demo plan does not run (unlock setup, Secure Boot) and the
/// payload check and removal, one by one on a root whose links point out.
#[test]
fn unlock_secure_boot_and_payload_steps_stay_in_the_root() {
    let mut env = Env::new("pve8-grub", "unlock-demo");
    env.bake();
    let root = env.root.clone();
    let dir = root.parent().unwrap().to_path_buf();
    let outside = dir.join("outside");
    let library = b"\x7fELF unlock library stand-in";
    fs::create_dir_all(outside.join("lib")).unwrap();
    fs::create_dir_all(outside.join("keys")).unwrap();
    fs::write(outside.join("lib/libvgpu_unlock_rs.so"), library).unwrap();
    fs::write(outside.join("secret"), "outside\n").unwrap();

    // The library's directory: an absolute link out, holding a library
    // with the right sha256 (following it would skip the copy).
    plant(
        &root.join("usr/local/lib/vgpu_unlock"),
        &outside.join("lib"),
    );
    fs::create_dir_all(under(&root, &outside.join("lib"))).unwrap();
    // A drop-in directory climbing out: stops at the root.
    plant(
        &root.join("etc/systemd/system/nvidia-vgpud.service.d"),
        Path::new("../../../../outside"),
    );
    fs::create_dir_all(root.join("outside")).unwrap();
    // The payload's library, a link to the outside copy (right content).
    let payload_lib = root.join(layout::PAYLOAD_DIR).join(LIBRARY);
    plant(&payload_lib, &outside.join("lib/libvgpu_unlock_rs.so"));
    // Links in the payload to an outside directory and file.
    plant(&root.join(layout::PAYLOAD_DIR).join("escape"), &outside);
    plant(
        &root.join(layout::PAYLOAD_DIR).join("driver/secret"),
        &outside.join("secret"),
    );
    // The key directory: an absolute link out, nothing under the root.
    plant(
        &root.join("var/lib/vgpu-firstboot/secure-boot"),
        &outside.join("keys"),
    );

    let before = snapshot(&dir, std::slice::from_ref(&root));
    let unchanged = |when: &str| {
        assert_eq!(
            snapshot(&dir, std::slice::from_ref(&root)),
            before,
            "{when}: something outside the root changed"
        );
    };

    let why = reason(env.run(steps::verify_payload::run));
    assert!(
        why.contains("libvgpu_unlock_rs.so is not a regular file: re-copy or re-bake the bundle"),
        "{why}"
    );
    fs::remove_file(&payload_lib).unwrap();
    fs::write(&payload_lib, library).unwrap();
    assert_eq!(
        env.run(steps::verify_payload::run).unwrap(),
        StepOutcome::Done
    );

    assert_eq!(
        env.run(steps::unlock_setup::run).unwrap(),
        StepOutcome::Done
    );
    let installed = under(&root, &outside.join("lib/libvgpu_unlock_rs.so"));
    assert_eq!(
        fs::read(&installed).unwrap(),
        library,
        "copied under the root"
    );
    let dropin = fs::read_to_string(root.join("outside/vgpu_unlock.conf")).unwrap();
    assert!(dropin.contains("LD_PRELOAD="), "{dropin}");
    unchanged("after unlock-setup");

    env.facts.firmware.secure_boot = Some(true);
    let why = reason(env.run(steps::secure_boot::run));
    assert!(
        why.contains(&format!(
            "creating the directory {}: it is a symlink whose target is not a directory inside the root; remove the link",
            root.join("var/lib/vgpu-firstboot/secure-boot").display()
        )),
        "{why}"
    );
    assert!(env.commands().iter().all(|c| !c.starts_with("openssl")));
    unchanged("after secure-boot");

    assert_eq!(env.run(steps::finish::run).unwrap(), StepOutcome::Done);
    assert!(!root.join(layout::PAYLOAD_DIR).exists());
    unchanged("after finish");
}

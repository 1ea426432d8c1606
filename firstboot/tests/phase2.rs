//! The reboot barrier, the payload check and the unlock setup on copies of
//! the fixture hosts, with golden plans and a recording command runner.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use support::step_env::*;
use vgpu_firstboot::agent::host::StepOutcome;
use vgpu_firstboot::agent::steps;
use vgpu_firstboot::sha256::sha256_hex;
use vgpu_plan::layout::{MANIFEST_FILE, PAYLOAD_DIR};
use vgpu_plan::plan::StepKind;

mod support {
    pub mod step_env;
}

// ---- reboot barrier ----

#[test]
fn reboot_when_kernel_args_are_missing() {
    let mut env = Env::new("pve8-grub", "demo");
    fs::remove_dir_all(env.at("sys/module/nouveau")).unwrap();
    env.refresh();
    let StepOutcome::Reboot(why) = env.run(steps::reboot::run).unwrap() else {
        panic!("expected a reboot")
    };
    assert_eq!(
        why,
        "reboot needed: kernel arguments intel_iommu=on iommu=pt not on /proc/cmdline"
    );
    assert!(
        env.commands().is_empty(),
        "the caller reboots, not the step"
    );
}

#[test]
fn no_reboot_when_the_running_system_is_ready() {
    let mut env = Env::new("pve8-two-gpus", "demo");
    assert_eq!(env.run(steps::reboot::run).unwrap(), StepOutcome::Done);
    assert!(env.logged("no reboot"));
    assert!(env.commands().is_empty());
    assert_eq!(
        env.run(steps::verify_reboot::run).unwrap(),
        StepOutcome::Done
    );
}

#[test]
fn nouveau_loaded_forces_a_reboot() {
    let mut env = Env::new("pve8-two-gpus", "demo");
    env.write("sys/module/nouveau/initstate", "live\n");
    env.refresh();
    assert_eq!(
        env.run(steps::reboot::run).unwrap(),
        StepOutcome::Reboot("reboot needed: nouveau is loaded".into())
    );
    // pve8-grub lacks both.
    let mut env = Env::new("pve8-grub", "demo");
    let StepOutcome::Reboot(why) = env.run(steps::reboot::run).unwrap() else {
        panic!("expected a reboot")
    };
    assert!(
        why.contains("intel_iommu=on") && why.contains("nouveau is loaded"),
        "{why}"
    );
}

#[test]
fn pinned_kernel_must_be_running() {
    let mut env = Env::new("pve8-two-gpus", "unlock-pve8-pin65");
    env.write("etc/kernel/proxmox-boot-pin", "6.5.13-6-pve\n");
    assert_eq!(
        env.run(steps::reboot::run).unwrap(),
        StepOutcome::Reboot(
            "reboot needed: pinned kernel 6.5.13-6-pve is not running (running 6.8.12-9-pve)"
                .into()
        )
    );
    let why = reason(env.run(steps::verify_reboot::run));
    assert!(
        why.starts_with("kernel 6.5.13-6-pve is pinned but 6.8.12-9-pve is running after reboot"),
        "{why}"
    );
    env.write("etc/kernel/proxmox-boot-pin", "6.8.12-9-pve\n");
    assert_eq!(env.run(steps::reboot::run).unwrap(), StepOutcome::Done);
    assert_eq!(
        env.run(steps::verify_reboot::run).unwrap(),
        StepOutcome::Done
    );
}

#[test]
fn iommu_off_with_args_present_fails_at_verify_reboot_without_reboot() {
    let mut env = Env::new("vm-no-iommu", "demo");
    // Without the arguments a reboot may turn the IOMMU on.
    assert!(matches!(
        env.run(steps::reboot::run).unwrap(),
        StepOutcome::Reboot(_)
    ));
    env.write(
        "proc/cmdline",
        "BOOT_IMAGE=/boot/vmlinuz-6.1.0-28-amd64 root=/dev/vda1 ro intel_iommu=on iommu=pt\n",
    );
    // nouveau is loaded too, but a reboot cannot fix the firmware: no
    // reboot, and verify-reboot (next) fails with the firmware advice.
    assert_eq!(env.run(steps::reboot::run).unwrap(), StepOutcome::Done);
    let why = reason(env.run(steps::verify_reboot::run));
    assert!(
        why.starts_with("IOMMU is off: enable VT-d / AMD-Vi (SVM + IOMMU) in the firmware setup"),
        "{why}"
    );
    // The step fails, and a failed state waits for `retry` (the agent does
    // not resume by itself): the advice must say so.
    assert!(
        why.contains("boot, then run `vgpu-firstboot retry`"),
        "{why}"
    );
    assert!(why.contains("nouveau is still loaded"), "{why}");
    assert!(env.commands().is_empty());
}

#[test]
fn verify_reboot_names_what_did_not_take_effect() {
    let mut env = Env::new("pve8-grub", "demo");
    let why = reason(env.run(steps::verify_reboot::run));
    assert!(
        why.starts_with(
            "kernel arguments intel_iommu=on iommu=pt missing from /proc/cmdline after reboot: the boot loader did not pick up the change; check update-grub / proxmox-boot-tool refresh"
        ),
        "{why}"
    );
    assert!(
        why.contains("nouveau is still loaded after reboot"),
        "{why}"
    );
    assert!(!why.contains('\n'));
    // systemd-boot on AMD: the loader adds initrd=, the arguments are there.
    let mut env = Env::new("pve9-zfs-sdboot", "unlock-pve9-pin614");
    env.write(
        "proc/cmdline",
        "initrd=\\EFI\\proxmox\\6.14.11-4-pve\\initrd.img-6.14.11-4-pve root=ZFS=rpool/ROOT/pve-1 boot=zfs amd_iommu=on iommu=pt\n",
    );
    fs::remove_dir_all(env.at("sys/module/nouveau")).unwrap();
    env.refresh();
    assert_eq!(
        env.run(steps::verify_reboot::run).unwrap(),
        StepOutcome::Done
    );
    assert!(env.logged("reboot took effect"));
}

// ---- payload ----

#[test]
fn verify_payload_accepts_the_baked_payload() {
    let mut env = Env::new("pve8-grub", "unlock-demo");
    env.bake();
    assert_eq!(
        env.run(steps::verify_payload::run).unwrap(),
        StepOutcome::Done
    );
    assert!(env.logged("3 payload files match"), "{:?}", env.log);
}

#[test]
fn verify_payload_finds_a_tampered_byte() {
    let mut env = Env::new("pve8-grub", "demo");
    env.bake();
    let rel = format!("{PAYLOAD_DIR}/{INSTALLER}");
    let mut bytes = fs::read(env.at(&rel)).unwrap();
    bytes[3] ^= 1;
    fs::write(env.at(&rel), &bytes).unwrap();
    let want = &env.plan.driver.as_ref().unwrap().installer.sha256.clone();
    let why = reason(env.run(steps::verify_payload::run));
    assert!(
        why.contains("/var/lib/vgpu-firstboot/payload/driver/installer.run is corrupt"),
        "{why}"
    );
    assert!(why.contains(&format!("expected sha256 {want}")), "{why}");
    assert!(
        why.contains(&format!("found sha256 {}", sha256_hex(&bytes))),
        "{why}"
    );
    assert!(why.ends_with("re-copy or re-bake the bundle"), "{why}");
}

#[test]
fn verify_payload_finds_missing_and_truncated_files() {
    let mut env = Env::new("pve8-grub", "demo");
    env.bake();
    fs::remove_file(env.at(&format!("{PAYLOAD_DIR}/{DEB}"))).unwrap();
    let why = reason(env.run(steps::verify_payload::run));
    assert!(
        why.starts_with("payload file /var/lib/vgpu-firstboot/payload/debs/extra.deb is missing"),
        "{why}"
    );

    let mut env = Env::new("pve8-grub", "demo");
    env.bake();
    env.write(&format!("{PAYLOAD_DIR}/{DEB}"), "!<arch>");
    let why = reason(env.run(steps::verify_payload::run));
    assert!(
        why.contains("extra.deb has the wrong size: expected 21 bytes"),
        "{why}"
    );
    assert!(why.contains("found 7 bytes"), "{why}");

    let mut env = Env::new("pve8-grub", "demo");
    env.bake();
    fs::remove_file(env.at(MANIFEST_FILE)).unwrap();
    let why = reason(env.run(steps::verify_payload::run));
    assert_eq!(
        why,
        "/var/lib/vgpu-firstboot/manifest.toml is missing: re-copy or re-bake the bundle"
    );
}

#[test]
fn verify_payload_checks_the_plan_against_the_files() {
    let mut env = Env::new("pve8-grub", "unlock-demo");
    env.bake();
    env.plan.unlock.as_mut().unwrap().library.sha256 = "0".repeat(64).parse().unwrap();
    let why = reason(env.run(steps::verify_payload::run));
    assert!(why.contains("libvgpu_unlock_rs.so is corrupt"), "{why}");
    assert!(
        why.contains(&format!("expected sha256 {}", "0".repeat(64))),
        "{why}"
    );
    // A plan resolved but never baked names no installer: the agent's plan
    // reader (`Plan::from_toml`, as in `agent::run`) refuses it.
    let mut env = Env::new("pve8-grub", "demo");
    env.bake();
    let baked = format!(
        "path = \"{}\"",
        env.plan.driver.as_ref().unwrap().installer.path
    );
    let text = env.plan.to_toml();
    assert!(text.contains(&baked), "{text}");
    let why = vgpu_plan::plan::Plan::from_toml(&text.replace(&baked, "path = \"\""))
        .unwrap_err()
        .to_string();
    assert!(why.contains("names no file"), "{why}");
    assert!(why.contains("never baked"), "{why}");
}

// ---- unlock ----

#[test]
fn unlock_setup_refuses_an_unusable_library_path_naming_the_real_keys() {
    let mut env = Env::new("pve8-grub", "unlock-demo");
    env.bake();
    env.plan.unlock.as_mut().unwrap().library_path = "/usr/lib/a b.so".into();
    let why = reason(env.run(steps::unlock_setup::run));
    // The profile has `unlock.library` (the file baked in); the host path
    // is the plan's, written by vgpu-bake.
    assert!(why.contains("`unlock.library`"), "{why}");
    assert!(!why.contains("unlock.library-path in the profile"), "{why}");
    assert!(why.contains("bake the bundle again"), "{why}");
    assert!(env.commands().is_empty(), "{:?}", env.commands());
}

#[test]
fn unlock_setup_writes_once_then_changes_nothing() {
    let mut env = Env::new("pve8-grub", "unlock-demo");
    env.bake();
    assert_eq!(
        env.run(steps::unlock_setup::run).unwrap(),
        StepOutcome::Done
    );
    let lib = "usr/local/lib/vgpu_unlock/libvgpu_unlock_rs.so";
    assert_eq!(
        fs::read(env.at(lib)).unwrap(),
        b"\x7fELF unlock library stand-in"
    );
    let mode = fs::metadata(env.at(lib)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    for dropin in [
        "etc/systemd/system/nvidia-vgpud.service.d/vgpu_unlock.conf",
        "etc/systemd/system/nvidia-vgpu-mgr.service.d/vgpu_unlock.conf",
    ] {
        assert!(
            env.read(dropin).contains(
                "Environment=LD_PRELOAD=/usr/local/lib/vgpu_unlock/libvgpu_unlock_rs.so\n"
            )
        );
    }
    assert_eq!(
        env.read("etc/vgpu_unlock/profile_override.toml"),
        "[profile.nvidia-259]\nnum_displays = 1\n"
    );
    assert_eq!(env.commands(), ["systemctl daemon-reload"]);

    // Second run: nothing written, no daemon-reload.
    assert_eq!(
        env.run(steps::unlock_setup::run).unwrap(),
        StepOutcome::Done
    );
    assert_eq!(env.commands().len(), 1);
    assert!(env.preview(StepKind::UnlockSetup)[0].starts_with("nothing to change"));

    // A damaged library is replaced; the drop-ins are unchanged, so still
    // no daemon-reload.
    env.write(lib, "other");
    assert!(env.preview(StepKind::UnlockSetup)[0].starts_with("would copy"));
    assert_eq!(
        env.run(steps::unlock_setup::run).unwrap(),
        StepOutcome::Done
    );
    assert_eq!(
        fs::read(env.at(lib)).unwrap(),
        b"\x7fELF unlock library stand-in"
    );
    assert_eq!(env.commands().len(), 1);
}

//! The driver steps, SR-IOV, the post-check and finish on copies of the
//! fixture hosts, with golden plans and a recording command runner.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use support::step_env::*;
use vgpu_firstboot::agent::host::{Host, StepError, StepOutcome};
use vgpu_firstboot::agent::steps;
use vgpu_firstboot::runner::Response;
use vgpu_plan::layout::{
    DONE_MARKER, GUEST_DRIVERS_DIR, MANIFEST_FILE, PAYLOAD_DIR, UNIT_WANTS_LINK,
};
use vgpu_plan::plan::StepKind;

mod support {
    pub mod step_env;
}

// ---- driver ----

#[test]
fn install_driver_runs_the_payload_installer() {
    let mut env = Env::new("pve8-grub", "demo");
    env.bake();
    // Keys exist but Secure Boot is off on this host: no signing arguments.
    env.write(KEY, "key");
    env.write(DER, "der");
    assert_eq!(
        env.run(steps::install_driver::run).unwrap(),
        StepOutcome::Done
    );
    let installer = env.at(&format!("{PAYLOAD_DIR}/{INSTALLER}"));
    // `sync` flushes the installer's files before the marker records it.
    assert_eq!(
        env.commands(),
        [format!("{} --dkms -s", installer.display()), "sync".into()]
    );
    assert_eq!(env.runner.calls()[0].timeout, Duration::from_secs(3600));
    let mode = fs::metadata(&installer).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755);
}

#[test]
fn install_driver_signs_modules_under_secure_boot() {
    let mut env = Env::new("pve9-zfs-sdboot", "unlock-pve9-pin614");
    assert_eq!(env.facts.firmware.secure_boot, Some(true));
    env.bake();
    // Keys not made yet: installed unsigned, with a note.
    env.run(steps::install_driver::run).unwrap();
    assert!(
        !env.commands()[0].contains("--module-signing"),
        "{:?}",
        env.commands()
    );
    assert!(env.logged("Secure Boot is on but"));
    env.write(KEY, "key");
    env.write(DER, "der");
    // The first install left its marker; without it the step installs again.
    fs::remove_file(env.at("var/lib/vgpu-firstboot/driver-installed")).unwrap();
    env.run(steps::install_driver::run).unwrap();
    let args = &env.runner.calls()[2].args;
    assert_eq!(
        args[args.len() - 2..],
        [
            format!("--module-signing-secret-key={}", env.at(KEY).display()),
            format!("--module-signing-public-key={}", env.at(DER).display()),
        ]
    );
    assert_eq!(args[..3], ["--dkms", "-m=kernel", "-s"]);
}

#[test]
fn install_driver_runs_the_installer_once() {
    let mut env = Env::new("pve8-grub", "demo");
    env.bake();
    env.run(steps::install_driver::run).unwrap();
    env.run(steps::install_driver::run).unwrap();
    assert_eq!(env.commands().len(), 2, "{:?}", env.commands());
    assert!(env.logged("installed by an earlier run"));
}

/// What the driver step leaves while the installer runs: its hash and
/// version, as the intent file and the marker hold them.
fn stamp(env: &Env) -> String {
    let d = env.plan.driver.as_ref().unwrap();
    format!("{} {}\n", d.installer.sha256, d.version)
}

const INTENT: &str = "var/lib/vgpu-firstboot/driver-installing";
const MARKER: &str = "var/lib/vgpu-firstboot/driver-installed";
const TOOL: &str = "usr/bin/nvidia-installer";

/// An NVIDIA host (not the demo) where a run of the installer was cut
/// short: the intent file is there, the marker is not.
fn cut_short() -> Env {
    let mut env = Env::new("pve8-grub", "demo");
    env.plan.demo = false;
    env.bake();
    env.write(INTENT, stamp(&env));
    env
}

/// An installed `nvidia-installer` whose `--version` says `version` (the
/// plan's when `None`).
fn installed(env: &mut Env, version: Option<&str>) {
    env.write(TOOL, "installed by the driver");
    let plan_version = env.plan.driver.as_ref().unwrap().version.clone();
    let version = version.unwrap_or(&plan_version);
    env.runner.respond(
        "nvidia-installer",
        &["--version"],
        Response::ok().stdout(format!(
            "\nnvidia-installer:  version {version}  (buildmeister@builder)\n"
        )),
    );
}

#[test]
fn install_driver_after_a_cut_keeps_a_complete_install() {
    let mut env = cut_short();
    installed(&mut env, None);
    env.runner
        .respond("nvidia-installer", &["--sanity"], Response::ok());
    assert_eq!(
        env.run(steps::install_driver::run).unwrap(),
        StepOutcome::Done
    );
    let tool = env.at(TOOL).display().to_string();
    assert_eq!(
        env.commands(),
        [
            format!("{tool} --version"),
            format!("{tool} --sanity -s"),
            "sync".into()
        ]
    );
    assert!(env.logged("--sanity finds every file intact: not installing again"));
    assert_eq!(env.read(MARKER), stamp(&env));
    assert!(!env.at(INTENT).exists());
}

#[test]
fn install_driver_after_a_cut_installs_again_unless_sure() {
    let installer = |env: &Env| {
        format!(
            "{} --dkms -s",
            env.at(&format!("{PAYLOAD_DIR}/{INSTALLER}")).display()
        )
    };
    // No installed driver at all.
    let mut env = cut_short();
    env.run(steps::install_driver::run).unwrap();
    assert_eq!(env.commands(), [installer(&env), "sync".into()]);
    assert!(env.logged("did not finish and left no /usr/bin/nvidia-installer: installing again"));
    assert_eq!(env.read(MARKER), stamp(&env));
    assert!(!env.at(INTENT).exists());

    // Another version (the one this install was replacing).
    let mut env = cut_short();
    installed(&mut env, Some("535.54.06"));
    env.run(steps::install_driver::run).unwrap();
    assert_eq!(env.commands()[1..], [installer(&env), "sync".into()]);
    assert!(env.logged("`/usr/bin/nvidia-installer --version` does not report"));

    // The right version, with a file the cut tore.
    let mut env = cut_short();
    installed(&mut env, None);
    env.runner.respond(
        "nvidia-installer",
        &["--sanity"],
        Response::exit(1).stderr("ERROR: The 'NVIDIA Accelerated Graphics Driver' installation has been altered since it was originally installed."),
    );
    env.run(steps::install_driver::run).unwrap();
    assert_eq!(env.commands()[2..], [installer(&env), "sync".into()]);
    assert!(env.logged("--sanity` finds the installation incomplete (ERROR: The 'NVIDIA Accelerated Graphics Driver' installation has been altered since it was originally installed.): installing again"));
}

#[test]
fn a_failed_installer_run_is_retried_without_questions() {
    let mut env = Env::new("pve8-grub", "demo");
    env.bake();
    env.runner.respond_once(
        "installer.run",
        &[],
        Response::exit(1).stderr("ERROR: boom"),
    );
    env.run(steps::install_driver::run).unwrap_err();
    assert!(
        !env.at(INTENT).exists(),
        "a run that ended leaves no intent"
    );
    assert!(!env.at(MARKER).exists());
    env.run(steps::install_driver::run).unwrap();
    assert_eq!(env.commands().len(), 3, "{:?}", env.commands());
    assert!(!env.commands().iter().any(|c| c.contains("--sanity")));
    assert_eq!(env.read(MARKER), stamp(&env));
}

#[test]
fn install_driver_failure_points_at_the_installer_log() {
    let mut env = Env::new("pve8-grub", "demo");
    env.plan.demo = false;
    env.bake();
    env.runner.respond(
        "installer.run",
        &[],
        Response::exit(1).stderr("ERROR: Unable to build the NVIDIA kernel module."),
    );
    let err = env.run(steps::install_driver::run).unwrap_err();
    assert_eq!(err.exit_code, Some(1));
    assert!(
        err.reason.starts_with("driver installer `"),
        "{}",
        err.reason
    );
    assert!(
        err.reason.contains("installer.run --dkms -s"),
        "{}",
        err.reason
    );
    assert!(err.reason.contains("exit code 1"), "{}", err.reason);
    assert!(err.reason.contains("Unable to build"), "{}", err.reason);
    assert!(
        err.reason
            .ends_with("look at /var/log/nvidia-installer.log for the cause")
    );
    assert!(err.stderr_tail.contains("Unable to build"));
}

#[test]
fn missing_service_unit_is_an_explicit_error() {
    let mut env = Env::new("pve8-grub", "demo");
    env.runner.respond(
        "systemctl",
        &["cat", "nvidia-vgpud.service"],
        Response::exit(1),
    );
    assert_eq!(
        reason(env.run(steps::enable_services::run)),
        "nvidia-vgpud.service does not exist: the installer did not install the vGPU manager — is this the vGPU-KVM (host) driver?"
    );
    assert!(!env.commands().iter().any(|c| c.contains("enable")));
}

#[test]
fn services_are_enabled_only_when_needed() {
    let mut env = Env::new("pve8-grub", "demo");
    env.runner
        .respond_once(
            "systemctl",
            &["is-enabled", "nvidia-vgpud.service"],
            Response::exit(1),
        )
        .respond_once(
            "systemctl",
            &["is-active", "nvidia-vgpu-mgr.service"],
            Response::exit(3),
        );
    env.run(steps::enable_services::run).unwrap();
    let enables: Vec<String> = env
        .commands()
        .into_iter()
        .filter(|c| c.contains("enable --now"))
        .collect();
    assert_eq!(
        enables,
        [
            "systemctl enable --now nvidia-vgpud.service",
            "systemctl enable --now nvidia-vgpu-mgr.service"
        ]
    );
    assert_eq!(env.commands()[0], "systemctl daemon-reload");
    // Everything enabled and active now (the runner answers 0): no enable.
    let before = env.commands().len();
    env.run(steps::enable_services::run).unwrap();
    assert!(!env.commands()[before..].iter().any(|c| c.contains("--now")));
    // A failing enable names the unit's journal.
    env.runner
        .respond("systemctl", &["is-active"], Response::exit(3))
        .respond(
            "systemctl",
            &["enable"],
            Response::exit(1).stderr("Job failed."),
        );
    let why = reason(env.run(steps::enable_services::run));
    assert!(why.contains("journalctl -u nvidia-vgpud.service"), "{why}");
}

#[test]
fn sriov_skipped_without_capable_cards() {
    let mut env = Env::new("pve8-two-gpus", "demo");
    assert_eq!(env.run(steps::sriov::run).unwrap(), StepOutcome::Done);
    assert!(env.logged("no SR-IOV capable card; skipped"));
    assert!(env.commands().is_empty());
    assert_eq!(
        env.preview(StepKind::Sriov),
        ["nothing: no SR-IOV capable card"]
    );
}

#[test]
fn sriov_enabled_on_capable_cards_and_failure_reported() {
    let mut env = Env::new("pve8-two-gpus", "demo");
    env.write(
        "sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/sriov_totalvfs",
        "16\n",
    );
    env.refresh();
    env.runner
        .respond_once("systemctl", &["is-enabled"], Response::exit(1));
    env.run(steps::sriov::run).unwrap();
    assert_eq!(
        env.commands().last().unwrap(),
        "systemctl enable --now pve-nvidia-sriov@ALL.service"
    );
    env.runner
        .respond("systemctl", &["is-active"], Response::exit(3))
        .respond("systemctl", &["enable"], Response::exit(1));
    let why = reason(env.run(steps::sriov::run));
    assert!(why.contains("pve-nvidia-sriov@ALL.service"), "{why}");
    assert!(why.contains("0000:01:00.0"), "{why}");
}

#[test]
fn sriov_without_the_proxmox_unit_uses_nvidias_sriov_manage() {
    let mut env = Env::new("pve8-two-gpus", "demo");
    env.write(
        "sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/sriov_totalvfs",
        "16\n",
    );
    env.refresh();
    // No pve-nvidia-vgpu-helper: systemd does not know its unit.
    env.runner
        .respond("systemctl", &["cat"], Response::exit(1))
        .respond_once("systemctl", &["is-enabled"], Response::exit(1));
    // Nor the driver's tool: nothing can enable the virtual functions.
    let why = reason(env.run(steps::sriov::run));
    assert!(why.contains("pve-nvidia-vgpu-helper"), "{why}");
    assert!(why.contains("/usr/lib/nvidia/sriov-manage"), "{why}");
    env.write("usr/lib/nvidia/sriov-manage", "#!/bin/sh\n");
    env.run(steps::sriov::run).unwrap();
    let unit = env.read("etc/systemd/system/vgpu-bake-sriov.service");
    assert!(
        unit.contains("ExecStart=/usr/lib/nvidia/sriov-manage -e ALL"),
        "{unit}"
    );
    assert!(unit.contains("Before=nvidia-vgpud.service"), "{unit}");
    let cmds = env.commands();
    assert_eq!(
        cmds[cmds.len() - 3..],
        [
            "systemctl daemon-reload",
            "systemctl is-enabled vgpu-bake-sriov.service",
            "systemctl enable --now vgpu-bake-sriov.service"
        ]
    );
    // A second run finds the unit written and does not reload again.
    let before = env.commands().len();
    env.run(steps::sriov::run).unwrap();
    assert!(
        !env.commands()[before..]
            .iter()
            .any(|c| c.contains("daemon-reload")),
        "{:?}",
        env.commands()
    );
}

#[test]
fn post_check_needs_vgpu_types() {
    let mut env = Env::new("pve8-grub", "demo");
    let why = reason(env.run(steps::post_check::run));
    assert!(
        why.starts_with("`mdevctl types` lists no vGPU types"),
        "{why}"
    );
    assert!(why.contains("journalctl -u nvidia-vgpu-mgr"), "{why}");

    env.runner.respond(
        "mdevctl",
        &["types"],
        Response::ok().stdout("0000:01:00.0\n  nvidia-222\n    Name: GRID T4-1B\n"),
    );
    assert_eq!(env.run(steps::post_check::run).unwrap(), StepOutcome::Done);
    assert_eq!(
        env.commands()[env.commands().len() - 2..],
        ["nvidia-smi vgpu", "mdevctl types"]
    );

    env.runner.respond_once(
        "nvidia-smi",
        &["vgpu"],
        Response::exit(9).stderr(
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
        ),
    );
    let err = env.run(steps::post_check::run).unwrap_err();
    assert_eq!(err.exit_code, Some(9));
    assert!(
        err.reason.contains("couldn't communicate"),
        "{}",
        err.reason
    );
}

#[test]
fn post_check_in_unlock_mode_accepts_plain_nvidia_smi() {
    let mut env = Env::new("pve8-grub", "unlock-demo");
    env.runner
        .respond(
            "nvidia-smi",
            &["vgpu"],
            Response::exit(6).stdout("No supported devices in vGPU mode"),
        )
        .respond(
            "mdevctl",
            &["types"],
            Response::ok().stdout("0000:0a:00.0\n  nvidia-259\n"),
        );
    assert_eq!(env.run(steps::post_check::run).unwrap(), StepOutcome::Done);
    assert!(env.commands().contains(&"nvidia-smi".to_owned()));
}

// ---- finish ----

/// The finish step and, as the run loop does once the state says done,
/// the seal.
fn finish_and_seal(host: &mut Host) -> Result<StepOutcome, StepError> {
    steps::finish::run(host)?;
    vgpu_firstboot::agent::seal::seal(host)?;
    Ok(StepOutcome::Done)
}

#[test]
fn finish_removes_the_payload_and_seal_disables_the_unit_idempotently() {
    let mut env = Env::new("pve8-grub", "demo");
    env.bake();
    link_unit(&env);
    assert_eq!(env.run(steps::finish::run).unwrap(), StepOutcome::Done);
    assert!(!env.at(PAYLOAD_DIR).exists());
    assert!(env.at(MANIFEST_FILE).exists(), "only the payload goes");
    // Until the state says done, the unit must start again.
    assert!(!env.at(DONE_MARKER).exists());
    assert!(fs::symlink_metadata(env.at(UNIT_WANTS_LINK)).is_ok());
    env.run(finish_and_seal).unwrap();
    assert_eq!(
        env.read(DONE_MARKER),
        "demo\nprovisioned by vgpu-firstboot\n"
    );
    assert!(fs::symlink_metadata(env.at(UNIT_WANTS_LINK)).is_err());
    env.log.clear();
    assert_eq!(env.run(finish_and_seal).unwrap(), StepOutcome::Done);
    assert_eq!(
        env.read(DONE_MARKER),
        "demo\nprovisioned by vgpu-firstboot\n"
    );
    assert!(env.log.is_empty(), "second run changed {:?}", env.log);
    assert!(env.commands().is_empty());
}

/// `[[guest-driver]]` files are not payload: the host keeps them after
/// `finish` deletes the payload.
#[test]
fn finish_keeps_the_guest_drivers() {
    let mut env = Env::new("pve8-grub", "demo");
    env.bake();
    let guest = env.at(&format!(
        "{GUEST_DRIVERS_DIR}/NVIDIA-Linux-x86_64-demo-grid.run"
    ));
    fs::create_dir_all(guest.parent().unwrap()).unwrap();
    fs::write(&guest, b"guest driver\n").unwrap();
    link_unit(&env);
    env.run(finish_and_seal).unwrap();
    assert!(!env.at(PAYLOAD_DIR).exists());
    assert_eq!(fs::read(&guest).unwrap(), b"guest driver\n");
}

#[test]
fn finish_keeps_the_payload_when_asked() {
    let mut env = Env::new("pve8-two-gpus", "licensing-external");
    assert!(env.plan.agent.keep_payload);
    env.bake();
    link_unit(&env);
    env.run(finish_and_seal).unwrap();
    assert!(env.at(&format!("{PAYLOAD_DIR}/{INSTALLER}")).exists());
    assert!(fs::symlink_metadata(env.at(UNIT_WANTS_LINK)).is_err());
    assert!(env.at(DONE_MARKER).exists());
}

// ---- dry run and a whole phase 2 ----

#[test]
fn preview_runs_nothing_and_names_each_action() {
    let mut env = Env::new("pve8-grub", "demo");
    env.bake();
    let all: Vec<String> = [
        StepKind::Reboot,
        StepKind::VerifyReboot,
        StepKind::VerifyPayload,
        StepKind::InstallDriver,
        StepKind::EnableServices,
        StepKind::Sriov,
        StepKind::PostCheck,
        StepKind::Finish,
    ]
    .into_iter()
    .flat_map(|k| env.preview(k))
    .collect();
    let text = all.join("\n");
    for want in [
        "would run systemctl reboot: kernel arguments intel_iommu=on iommu=pt not on /proc/cmdline; nouveau is loaded",
        "would check /proc/cmdline has intel_iommu=on iommu=pt",
        "would check /var/lib/vgpu-firstboot/payload/driver/installer.run (",
        "installer.run --dkms -s: install the vGPU host driver 1.0-demo",
        "would run systemctl enable --now nvidia-vgpu-mgr.service",
        "would run mdevctl types",
        "would delete /var/lib/vgpu-firstboot/payload",
        "would remove /etc/systemd/system/multi-user.target.wants/vgpu-firstboot.service",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(env.commands().is_empty());
    assert!(env.at(PAYLOAD_DIR).exists());
}

#[test]
fn whole_phase_two_on_a_ready_host() {
    let mut env = Env::new("pve8-two-gpus", "demo");
    env.bake();
    link_unit(&env);
    env.runner
        .respond("systemctl", &["is-enabled"], Response::exit(1))
        .respond(
            "mdevctl",
            &["types"],
            Response::ok().stdout("0000:01:00.0\n  nvidia-222\n"),
        );
    let steps: [StepFn; 8] = [
        steps::reboot::run,
        steps::verify_reboot::run,
        steps::verify_payload::run,
        steps::install_driver::run,
        steps::enable_services::run,
        steps::sriov::run,
        steps::post_check::run,
        finish_and_seal,
    ];
    for step in steps {
        assert_eq!(env.run(step).unwrap(), StepOutcome::Done);
    }
    let installer = env.at(&format!("{PAYLOAD_DIR}/{INSTALLER}"));
    let want: Vec<String> = vec![
        format!("{} --dkms -s", installer.display()),
        "sync".into(),
        "systemctl daemon-reload".into(),
        "systemctl cat nvidia-vgpud.service".into(),
        "systemctl is-enabled nvidia-vgpud.service".into(),
        "systemctl enable --now nvidia-vgpud.service".into(),
        "systemctl cat nvidia-vgpu-mgr.service".into(),
        "systemctl is-enabled nvidia-vgpu-mgr.service".into(),
        "systemctl enable --now nvidia-vgpu-mgr.service".into(),
        "nvidia-smi vgpu".into(),
        "mdevctl types".into(),
    ];
    assert_eq!(env.commands(), want);
    assert!(env.at(DONE_MARKER).exists());
    assert!(!env.at(PAYLOAD_DIR).exists());
}

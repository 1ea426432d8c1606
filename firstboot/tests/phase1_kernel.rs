//! Phase 1 kernel steps on copies of the fixture hosts: the kernel pin
//! (ZFS guard, choice from the repositories, Secure Boot) and the kernel
//! arguments for GRUB and systemd-boot, each run twice.

use std::fs;

use vgpu_firstboot::agent::steps;
use vgpu_firstboot::runner::Response;
use vgpu_plan::plan::StepKind;

#[allow(dead_code)]
mod support {
    pub mod bed;
}
use support::bed::{Bed, Fake, INSTALL, all_installed, installed, pve9_on_617, query, run_all};

#[test]
fn kernel_args_in_effect_and_configured_run_nothing() {
    let bed = Bed::new("pve8-two-gpus", "two-gpu");
    let mut r = Fake::new(&bed);
    run_all(&bed, &mut r, &[steps::kernel_args::run]);
    assert_eq!(r.lines(), ["update-grub"]);
    let before = bed.snapshot();
    let mut r = Fake::new(&bed);
    let log = run_all(&bed, &mut r, &[steps::kernel_args::run]);
    assert_eq!(r.lines(), Vec::<String>::new());
    bed.assert_unchanged(&before);
    assert!(
        log.iter()
            .any(|l| l.contains("already configured and in effect")),
        "{log:?}"
    );
}

const ESPS: [&str; 2] = ["5E2A-1B3C", "5E2A-4D5F"];
const TRIAL_ENTRY: &str = "loader/entries/vgpu-bake-trial.conf";

/// The fixture's ESPs as the (recording, effect-free) runner leaves them
/// "mounted": their files already in the agent's mount directories.
fn lay_esps(bed: &Bed) {
    for uuid in ESPS {
        let esp = format!("run/vgpu-firstboot/esp/{uuid}");
        bed.write(
            &format!("{esp}/loader/loader.conf"),
            "timeout 3\ndefault proxmox-*\n",
        );
        bed.write(
            &format!("{esp}/loader/entries/proxmox-6.14.11-4-pve.conf"),
            "title    Proxmox Virtual Environment\nversion  6.14.11-4-pve\noptions  root=ZFS=rpool/ROOT/pve-1 boot=zfs\nlinux    /EFI/proxmox/6.14.11-4-pve/vmlinuz-6.14.11-4-pve\ninitrd   /EFI/proxmox/6.14.11-4-pve/initrd.img-6.14.11-4-pve\n",
        );
    }
}

/// mount and umount of each ESP, as `with_esp` runs them.
fn esp_rounds(bed: &Bed, rounds: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..rounds {
        for uuid in ESPS {
            let dir = bed.path(&format!("run/vgpu-firstboot/esp/{uuid}"));
            let dir = dir.display();
            out.push(format!("mount -t vfat /dev/disk/by-uuid/{uuid} {dir}"));
            out.push(format!("umount {dir}"));
        }
    }
    out
}

#[test]
fn systemd_boot_host_arms_a_trial_and_keeps_kernel_cmdline() {
    let mut bed = Bed::new("pve9-zfs-sdboot", "unlock-pve9-pin614");
    lay_esps(&bed);
    let cmdline = bed.read("etc/kernel/cmdline");
    let mut r = Fake::new(&bed);
    run_all(&bed, &mut r, &[steps::kernel_args::run]);
    // Phase 1 leaves the default alone: the trial entry on each ESP, then
    // the one-shot.
    assert_eq!(bed.read("etc/kernel/cmdline"), cmdline);
    let mut want = esp_rounds(&bed, 1);
    want.push("bootctl set-oneshot vgpu-bake-trial.conf".into());
    assert_eq!(r.lines(), want);
    for uuid in ESPS {
        let entry = bed.read(&format!("run/vgpu-firstboot/esp/{uuid}/{TRIAL_ENTRY}"));
        assert!(
            entry.ends_with("options root=ZFS=rpool/ROOT/pve-1 boot=zfs amd_iommu=on iommu=pt\n"),
            "{entry}"
        );
    }
    assert!(!bed.path("etc/default/grub.d").exists());

    // Again before the reboot (a power cut): the same entry, armed again.
    let before = bed.snapshot();
    let mut r = Fake::new(&bed);
    run_all(&bed, &mut r, &[steps::kernel_args::run]);
    bed.assert_unchanged(&before);
    assert_eq!(r.lines(), want);

    // The trial boot runs the arguments: kernel-args leaves the commit to
    // verify-reboot and runs nothing.
    bed.write(
        "proc/cmdline",
        "initrd=\\EFI\\proxmox\\x\\initrd.img root=ZFS=rpool/ROOT/pve-1 boot=zfs amd_iommu=on iommu=pt\n",
    );
    bed.write(
        "proc/sys/kernel/random/boot_id",
        "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c00\n",
    );
    bed.reread();
    let mut r = Fake::new(&bed);
    let log = run_all(&bed, &mut r, &[steps::kernel_args::run]);
    assert_eq!(r.lines(), Vec::<String>::new());
    assert_eq!(bed.read("etc/kernel/cmdline"), cmdline);
    assert!(
        log.iter().any(|l| l.contains("trial boot came up")),
        "{log:?}"
    );
}

#[test]
fn missing_kernel_cmdline_starts_from_proc_cmdline() {
    let mut bed = Bed::new("pve9-zfs-sdboot", "unlock-pve9-pin614");
    fs::remove_file(bed.path("etc/kernel/cmdline")).unwrap();
    bed.reread();
    lay_esps(&bed);
    run_all(&bed, &mut Fake::new(&bed), &[steps::kernel_args::run]);
    assert!(!bed.path("etc/kernel/cmdline").exists());
    let entry = bed.read(&format!("run/vgpu-firstboot/esp/{}/{TRIAL_ENTRY}", ESPS[0]));
    assert!(
        entry.ends_with("options root=ZFS=rpool/ROOT/pve-1 boot=zfs amd_iommu=on iommu=pt\n"),
        "{entry}"
    );
}

#[test]
fn kernel_cmdline_without_root_is_refused() {
    let mut bed = Bed::new("pve9-zfs-sdboot", "unlock-pve9-pin614");
    fs::remove_file(bed.path("etc/kernel/cmdline")).unwrap();
    bed.write("proc/cmdline", "quiet\n");
    bed.reread();
    let mut r = Fake::new(&bed);
    let (out, _) = bed.run(&mut r, steps::kernel_args::run);
    assert!(out.unwrap_err().reason.contains("without root="));
    assert!(!bed.path("etc/kernel/cmdline").exists());
    assert_eq!(r.lines(), Vec::<String>::new());
}

/// kernel-pin's record of the kernel it chose, pinned at the trial's commit.
const CHOSEN: &str = "var/lib/vgpu-firstboot/kernel-pin";

const ZPOOL: &str = "zpool get -H -o value feature@block_cloning_endian rpool";

#[test]
fn kernel_pin_is_refused_on_a_pool_with_block_cloning_endian() {
    let bed = pve9_on_617();
    let mut r = Fake::new(&bed);
    r.respond("zpool", &["get"], Response::ok().stdout("active\n"));
    let (out, _) = bed.run(&mut r, steps::kernel_pin::run);
    let err = out.unwrap_err();
    assert!(
        err.reason.contains("feature@block_cloning_endian active"),
        "{err}"
    );
    assert!(err.reason.contains("rpool"), "{err}");
    assert_eq!(r.lines(), [ZPOOL]);
    assert!(!bed.path("etc/kernel/proxmox-boot-pin").exists());
}

#[test]
fn kernel_pin_installs_the_newest_signed_kernel_and_chooses_it_once() {
    let bed = pve9_on_617();
    assert_eq!(bed.facts.firmware.secure_boot, Some(true));
    let mut r = Fake::new(&bed);
    r.respond("zpool", &["get"], Response::ok().stdout("disabled\n"));
    r.respond(
        "apt-cache",
        &["pkgnames"],
        Response::ok().stdout(
            "proxmox-kernel-6.14.11-4-pve-signed\nproxmox-kernel-6.14.11-10-pve\n\
             proxmox-kernel-6.14.11-9-pve\nproxmox-kernel-6.14.11-9-pve-signed\n\
             proxmox-kernel-6.14.11-4-pve\nproxmox-kernel-6.14.11\n",
        ),
    );
    run_all(&bed, &mut r, &[steps::kernel_pin::run]);
    assert_eq!(
        r.lines(),
        [
            ZPOOL.to_owned(),
            "apt-cache pkgnames proxmox-kernel-6.14.11".into(),
            query("proxmox-kernel-6.14.11-9-pve-signed"),
            query("proxmox-headers-6.14.11-9-pve"),
            format!("{INSTALL} proxmox-kernel-6.14.11-9-pve-signed proxmox-headers-6.14.11-9-pve"),
        ]
    );
    // Not pinned in phase 1: the choice is recorded for the trial boot,
    // whose commit pins it.
    assert!(!bed.path("etc/kernel/proxmox-boot-pin").exists());
    assert_eq!(bed.read(CHOSEN), "6.14.11-9-pve\n");

    // {kernel} is now the chosen kernel.
    let mut r = Fake::new(&bed);
    r.respond(
        "dpkg-query",
        &["proxmox-headers-6.14.11-9-pve"],
        installed("6.14.11-9"),
    );
    run_all(&bed, &mut r, &[steps::apt_install::run]);
    assert_eq!(
        r.lines().last().unwrap(),
        &format!("{INSTALL} build-essential dkms mdevctl")
    );
    assert!(r.lines().contains(&query("proxmox-headers-6.14.11-9-pve")));

    let before = bed.snapshot();
    let mut r = all_installed(&bed);
    run_all(&bed, &mut r, &[steps::kernel_pin::run]);
    assert_eq!(
        r.lines(),
        [
            query("proxmox-kernel-6.14.11-9-pve-signed"),
            query("proxmox-headers-6.14.11-9-pve")
        ]
    );
    bed.assert_unchanged(&before);
}

#[test]
fn headers_are_installed_for_the_pinned_kernel_in_plan_order() {
    let bed = pve9_on_617();
    // The plan's phase 1 package steps, in the order the plan lists them.
    let order: Vec<StepKind> = bed
        .plan
        .steps
        .iter()
        .map(|s| s.kind)
        .filter(|k| matches!(k, StepKind::KernelPin | StepKind::AptInstall))
        .collect();
    assert_eq!(order, [StepKind::KernelPin, StepKind::AptInstall]);
    let mut r = Fake::new(&bed);
    r.respond("zpool", &["get"], Response::ok().stdout("disabled\n"));
    r.respond(
        "dpkg-query",
        &["proxmox-headers-6.14.11-9-pve"],
        installed("6.14.11-9"),
    );
    run_all(
        &bed,
        &mut r,
        &order
            .iter()
            .map(|k| steps::step_impl(*k).run)
            .collect::<Vec<_>>(),
    );
    let lines = r.lines();
    // Never the running 6.17 kernel's headers: they would be built against
    // a kernel the host no longer boots.
    assert!(
        !lines.iter().any(|l| l.contains("proxmox-headers-6.17")),
        "{lines:#?}"
    );
    assert_eq!(
        lines.last().unwrap(),
        &format!("{INSTALL} build-essential dkms mdevctl")
    );
}

#[test]
fn kernel_pin_falls_back_when_the_repositories_list_none() {
    let bed = pve9_on_617();
    let mut r = Fake::new(&bed);
    r.respond("zpool", &["get"], Response::ok().stdout("disabled\n"));
    run_all(&bed, &mut r, &[steps::kernel_pin::run]);
    let lines = r.lines();
    assert!(
        lines.contains(&format!(
            "{INSTALL} proxmox-kernel-6.14.11-9-pve-signed proxmox-headers-6.14.11-9-pve"
        )),
        "{lines:#?}"
    );
    assert_eq!(
        lines.last().unwrap(),
        &format!("{INSTALL} proxmox-kernel-6.14.11-9-pve-signed proxmox-headers-6.14.11-9-pve")
    );
    assert!(
        !lines.iter().any(|l| l.contains("kernel pin")),
        "{lines:#?}"
    );
    assert_eq!(bed.read(CHOSEN), "6.14.11-9-pve\n");
}

#[test]
fn kernel_pin_is_not_needed_on_an_older_kernel() {
    let bed = Bed::new("pve9-zfs-sdboot", "unlock-pve9-pin614");
    let mut r = Fake::new(&bed);
    let log = run_all(&bed, &mut r, &[steps::kernel_pin::run]);
    assert_eq!(r.lines(), Vec::<String>::new());
    assert!(
        log.iter()
            .any(|l| l.contains("6.14.11-4-pve is older than 6.17")),
        "{log:?}"
    );
}

//! Phase 1 steps on copies of the fixture hosts with golden plans and a
//! recording runner: files written, exact commands, and that a second run
//! changes no file and runs no mutating command.

use std::fs;
use std::os::unix::fs::symlink;

use vgpu_firstboot::agent::host::StepOutcome;
use vgpu_firstboot::agent::steps;
use vgpu_firstboot::runner::Response;
use vgpu_plan::plan::{PayloadFile, StepKind};

#[allow(dead_code)]
mod support {
    pub mod bed;
}
use support::bed::{
    Bed, Fake, INSTALL, StepFn, all_installed, installed, pve9_on_617, query, read_only, run_all,
    unknown,
};

const GRUB_STEPS: [StepFn; 7] = [
    steps::apt_repositories::run,
    steps::apt_install::run,
    steps::kernel_args::run,
    steps::vfio_modules::run,
    steps::blacklist_modules::run,
    steps::passthrough_rules::run,
    steps::secure_boot::run,
];

#[test]
fn grub_host_is_configured_once() {
    let bed = Bed::new("pve8-grub", "native-pve8").with_apt("pve8-bookworm");
    let mut r = Fake::new(&bed);
    run_all(&bed, &mut r, &GRUB_STEPS);

    let mut want = vec!["apt-get update --error-on=any".to_owned()];
    let pkgs = [
        "build-essential",
        "dkms",
        "mdevctl",
        "proxmox-headers-6.8.12-9-pve",
    ];
    want.extend(pkgs.iter().map(|p| query(p)));
    want.push(format!("{INSTALL} {}", pkgs.join(" ")));
    // The arguments are tried once (a one-shot entry), not made the default.
    want.push("update-grub".into());
    want.push("grub-reboot vgpu-bake-trial".into());
    assert_eq!(r.lines(), want);
    let first = &r.rec.calls()[0];
    assert_eq!(first.timeout.as_secs(), 3600);
    assert!(
        first
            .env
            .contains(&("DEBIAN_FRONTEND".into(), "noninteractive".into()))
    );

    // Repositories as the edits' golden files say.
    let expected = support::bed::workspace("firstboot/tests/data/apt/pve8-bookworm/expected");
    for e in fs::read_dir(expected.join("sources.list.d")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        let got = bed.read(&format!("etc/apt/sources.list.d/{name}"));
        assert_eq!(got, fs::read_to_string(e.path()).unwrap(), "{name}");
    }
    assert!(
        !bed.path("etc/default/grub.d/vgpu-bake.cfg").exists(),
        "phase 1 must leave the default entry as it is"
    );
    let trial = bed.read("etc/grub.d/42_vgpu-bake-trial");
    assert!(
        trial.contains(
            "\tlinux /boot/vmlinuz-6.8.12-9-pve root=/dev/mapper/pve-root ro quiet intel_iommu=on iommu=pt\n"
        ),
        "{trial}"
    );
    assert_eq!(bed.mode("etc/grub.d/42_vgpu-bake-trial"), 0o755);
    assert_eq!(
        bed.read("etc/default/grub"),
        "GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX=\"\"\n"
    );
    let vfio = bed.read("etc/modules-load.d/vgpu-bake-vfio.conf");
    assert!(
        vfio.ends_with("\nvfio\nvfio_iommu_type1\nvfio_pci\n"),
        "{vfio}"
    );
    let blacklist = bed.read("etc/modprobe.d/vgpu-bake-blacklist.conf");
    assert!(
        blacklist.ends_with("\nblacklist nouveau\noptions nouveau modeset=0\n"),
        "{blacklist}"
    );
    assert!(
        !bed.path("etc/udev/rules.d/90-vgpu-bake-vfio.rules")
            .exists(),
        "the T4 is for vGPU"
    );
    assert!(!bed.path("etc/dkms").exists(), "Secure Boot is off");

    // Second run: no file changes; probes only, plus the trial armed again
    // (the same entry) because the running kernel still lacks the
    // arguments (the reboot is ahead).
    let before = bed.snapshot();
    let mut r = all_installed(&bed);
    run_all(&bed, &mut r, &GRUB_STEPS);
    bed.assert_unchanged(&before);
    let mutating: Vec<String> = r.lines().into_iter().filter(|l| !read_only(l)).collect();
    assert_eq!(mutating, ["update-grub", "grub-reboot vgpu-bake-trial"]);
}

#[test]
fn two_gpu_host_binds_only_the_3090_group() {
    let mut bed = Bed::new("pve8-two-gpus", "two-gpu");
    // Put the root port in the 3090's group: bridges are never bound.
    symlink(
        "../../../../devices/pci0000:00/0000:00:01.1",
        bed.path("sys/kernel/iommu_groups/21/devices/0000:00:01.1"),
    )
    .unwrap();
    bed.reread();
    assert_eq!(bed.facts.group(21).unwrap().devices.len(), 3);
    let mut r = Fake::new(&bed);
    run_all(&bed, &mut r, &[steps::passthrough_rules::run]);
    let rules = bed.read("etc/udev/rules.d/90-vgpu-bake-vfio.rules");
    let lines: Vec<&str> = rules.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        [
            r#"ACTION=="add", SUBSYSTEM=="pci", KERNELS=="0000:02:00.0", ATTR{driver_override}="vfio-pci""#,
            r#"ACTION=="add", SUBSYSTEM=="pci", KERNELS=="0000:02:00.1", ATTR{driver_override}="vfio-pci""#,
        ]
    );
    assert_eq!(r.lines(), Vec::<String>::new());
    let before = bed.snapshot();
    run_all(&bed, &mut r, &[steps::passthrough_rules::run]);
    bed.assert_unchanged(&before);
}

#[test]
fn vgpu_card_sharing_a_group_with_a_passthrough_card_is_refused() {
    let mut bed = Bed::new("pve8-two-gpus", "two-gpu");
    symlink(
        "../../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0",
        bed.path("sys/kernel/iommu_groups/21/devices/0000:01:00.0"),
    )
    .unwrap();
    bed.reread();
    let (out, _) = bed.run(&mut Fake::new(&bed), steps::passthrough_rules::run);
    let err = out.unwrap_err();
    assert!(err.reason.contains("0000:01:00.0"), "{err}");
    assert!(
        !bed.path("etc/udev/rules.d/90-vgpu-bake-vfio.rules")
            .exists()
    );
}

#[test]
fn passthrough_mode_binds_every_nvidia_gpu_group() {
    let bed = Bed::new("pve9-zfs-sdboot", "passthrough");
    run_all(&bed, &mut Fake::new(&bed), &[steps::passthrough_rules::run]);
    let rules = bed.read("etc/udev/rules.d/90-vgpu-bake-vfio.rules");
    for f in ["0000:0a:00.0", "0000:0a:00.1", "0000:0a:00.2"] {
        assert!(rules.contains(&format!("KERNELS==\"{f}\"")), "{rules}");
    }
    assert_eq!(rules.lines().filter(|l| l.starts_with("ACTION")).count(), 3);
}

#[test]
fn passthrough_without_iommu_binds_the_gpu_functions() {
    let bed = Bed::new("vm-no-iommu", "passthrough");
    let log = run_all(&bed, &mut Fake::new(&bed), &[steps::passthrough_rules::run]);
    let rules = bed.read("etc/udev/rules.d/90-vgpu-bake-vfio.rules");
    assert_eq!(rules.lines().filter(|l| l.starts_with("ACTION")).count(), 1);
    assert!(rules.contains("KERNELS==\"0000:00:10.0\""), "{rules}");
    assert!(
        log.iter().any(|l| l.contains("has no IOMMU group")),
        "{log:?}"
    );
}

#[test]
fn failed_apt_update_reports_exit_code_and_stderr_tail() {
    let bed = Bed::new("pve8-grub", "native-pve8").with_apt("pve8-bookworm");
    let mut r = Fake::new(&bed);
    let stderr = "W: Failed to fetch http://download.proxmox.com/debian/pve/dists/bookworm/InRelease  Temporary failure resolving 'download.proxmox.com'\nE: Some index files failed to download. They have been ignored, or old ones used instead.\n";
    r.respond("apt-get", &["update"], Response::exit(100).stderr(stderr));
    let (out, _) = bed.run(&mut r, steps::apt_repositories::run);
    let err = out.unwrap_err();
    assert_eq!(err.exit_code, Some(100));
    assert_eq!(err.stderr_tail, stderr);
    assert!(err.reason.contains("exit code 100"), "{err}");
    assert!(
        err.reason.contains("Some index files failed to download"),
        "{err}"
    );
    assert!(err.reason.contains("check the network"), "{err}");
    assert!(!bed.path("var/lib/vgpu-firstboot/apt-update.stamp").exists());
}

#[test]
fn offline_only_plan_does_not_update() {
    let bed = Bed::new("pve8-grub", "passthrough").with_apt("pve8-bookworm");
    let mut r = Fake::new(&bed);
    run_all(
        &bed,
        &mut r,
        &[steps::apt_repositories::run, steps::apt_install::run],
    );
    assert_eq!(r.lines(), Vec::<String>::new());
    assert!(
        bed.path("etc/apt/sources.list.d/pve-no-subscription.list")
            .exists()
    );
}

#[test]
fn offline_debs_are_installed_then_skipped() {
    let mut bed = Bed::new("pve8-grub", "demo");
    bed.plan.host.packages.clear();
    bed.plan.host.offline_debs = vec![PayloadFile {
        path: "debs/mdevctl_1.3.0-1_all.deb".into(),
        sha256: vgpu_firstboot::sha256::sha256_hex(b"!<arch>\n")
            .parse()
            .unwrap(),
        size: 8,
    }];
    bed.write(
        "var/lib/vgpu-firstboot/payload/debs/mdevctl_1.3.0-1_all.deb",
        "!<arch>\n",
    );
    let deb = bed.path("var/lib/vgpu-firstboot/payload/debs/mdevctl_1.3.0-1_all.deb");
    let deb = deb.to_str().unwrap();
    let fields = Response::ok().stdout("Package: mdevctl\nVersion: 1.3.0-1\n");

    let mut r = Fake::new(&bed);
    r.respond("dpkg-deb", &[], fields.clone());
    r.respond("dpkg-query", &[], unknown("mdevctl"));
    run_all(
        &bed,
        &mut r,
        &[steps::apt_repositories::run, steps::apt_install::run],
    );
    assert_eq!(
        r.lines(),
        [
            format!("dpkg-deb -f {deb} Package Version"),
            query("mdevctl"),
            format!("{INSTALL} {deb}"),
        ]
    );

    // An older version installed: installed again.
    let mut r = Fake::new(&bed);
    r.respond("dpkg-deb", &[], fields.clone());
    r.respond("dpkg-query", &[], installed("1.2.0-1"));
    run_all(&bed, &mut r, &[steps::apt_install::run]);
    assert_eq!(r.lines().last().unwrap(), &format!("{INSTALL} {deb}"));

    // The same version: probes only.
    let mut r = Fake::new(&bed);
    r.respond("dpkg-deb", &[], fields);
    r.respond("dpkg-query", &[], installed("1.3.0-1"));
    run_all(&bed, &mut r, &[steps::apt_install::run]);
    assert!(r.lines().iter().all(|l| read_only(l)), "{:?}", r.lines());

    fs::remove_file(deb).unwrap();
    let (out, _) = bed.run(&mut Fake::new(&bed), steps::apt_install::run);
    assert!(out.unwrap_err().reason.contains("missing from the payload"));
}

const DER: &str = "var/lib/vgpu-firstboot/secure-boot/module-signing.der";
const KEY: &str = "var/lib/vgpu-firstboot/secure-boot/module-signing.key";

#[test]
fn secure_boot_makes_a_key_queues_it_and_finishes_once_enrolled() {
    let bed = Bed::new("pve9-zfs-sdboot", "unlock-pve9-pin614");
    let der = bed.path(DER).to_str().unwrap().to_owned();
    let key = bed.path(KEY).to_str().unwrap().to_owned();
    let sb_runner = |list_new: Response, test_key: Response| {
        let mut r = Fake::new(&bed);
        r.respond("dpkg-query", &["mokutil"], installed("0.6.0-2"));
        r.respond("mokutil", &["--test-key"], test_key);
        r.respond("mokutil", &["--list-new"], list_new);
        r
    };
    let not_enrolled = || Response::exit(1).stdout(format!("{der} is not enrolled\n"));

    let mut r = sb_runner(
        Response::exit(1).stdout("MokNew is empty\n"),
        not_enrolled(),
    );
    let (out, _) = bed.run(&mut r, steps::secure_boot::run);
    let enrol = "reboot, and at the blue MOK screen choose Enroll MOK, Continue, Yes, then type the root password";
    assert_eq!(out.unwrap(), StepOutcome::NeedsOperator(enrol.into()));
    let dir = bed.path("var/lib/vgpu-firstboot/secure-boot");
    let (tk, td) = (
        dir.join(".module-signing.key.tmp"),
        dir.join(".module-signing.der.tmp"),
    );
    assert_eq!(
        r.lines(),
        [
            format!(
                "openssl req -new -x509 -newkey rsa:2048 -nodes -days 36500 -subj '/CN=vgpu-firstboot module signing/' -keyout {} -outform DER -out {}",
                tk.display(),
                td.display()
            ),
            query("mokutil"),
            format!("mokutil --test-key {der}"),
            "mokutil --list-new".into(),
            format!("mokutil --import {der} --root-pw"),
        ]
    );
    assert_eq!(bed.mode(KEY), 0o600);
    assert_eq!(bed.mode("var/lib/vgpu-firstboot/secure-boot"), 0o700);
    assert!(bed.path(DER).exists() && !tk.exists() && !td.exists());
    let conf = bed.read("etc/dkms/framework.conf.d/vgpu-bake.conf");
    assert!(
        conf.ends_with(&format!("mok_signing_key=/{KEY}\nmok_certificate=/{DER}\n")),
        "{conf}"
    );
    assert!(
        !conf.contains(&key),
        "the conf names host paths, not the test root"
    );

    // Same boot, run again: the enrolment is queued; nothing is redone.
    let before = bed.snapshot();
    let queued = Response::ok().stdout("[key 1]\nSubject: CN = vgpu-firstboot module signing\n");
    let mut r = sb_runner(queued, not_enrolled());
    let (out, _) = bed.run(&mut r, steps::secure_boot::run);
    assert_eq!(out.unwrap(), StepOutcome::NeedsOperator(enrol.into()));
    assert!(r.lines().iter().all(|l| read_only(l)), "{:?}", r.lines());
    bed.assert_unchanged(&before);

    // Next boot, enrolled at the console.
    let enrolled = Response::ok().stdout(format!("{der} is already enrolled\n"));
    let mut r = sb_runner(Response::exit(1), enrolled);
    let (out, _) = bed.run(&mut r, steps::secure_boot::run);
    assert_eq!(out.unwrap(), StepOutcome::Done);
    assert_eq!(
        r.lines(),
        [query("mokutil"), format!("mokutil --test-key {der}")]
    );
    bed.assert_unchanged(&before);
}

#[test]
fn secure_boot_off_needs_nothing() {
    let bed = Bed::new("pve8-grub", "demo");
    let mut r = Fake::new(&bed);
    let before = bed.snapshot();
    let (out, _) = bed.run(&mut r, steps::secure_boot::run);
    assert_eq!(out.unwrap(), StepOutcome::Done);
    assert_eq!(r.lines(), Vec::<String>::new());
    bed.assert_unchanged(&before);
}

#[test]
fn initramfs_runs_every_time_and_reports_failure() {
    let bed = Bed::new("pve8-grub", "demo");
    let mut r = Fake::new(&bed);
    run_all(
        &bed,
        &mut r,
        &[steps::initramfs::run, steps::initramfs::run],
    );
    assert_eq!(
        r.lines(),
        ["update-initramfs -u -k all", "update-initramfs -u -k all"]
    );
    let mut r = Fake::new(&bed);
    r.respond(
        "update-initramfs",
        &[],
        Response::exit(1).stderr("E: mkinitramfs failure zstd 28\n"),
    );
    let (out, _) = bed.run(&mut r, steps::initramfs::run);
    let err = out.unwrap_err();
    assert_eq!(err.exit_code, Some(1));
    assert!(err.reason.contains("mkinitramfs failure"), "{err}");
}

#[test]
fn preview_names_files_arguments_and_commands_without_running_any() {
    let bed = Bed::new("pve8-grub", "native-pve8").with_apt("pve8-bookworm");
    let before = bed.snapshot();
    let mut r = Fake::new(&bed);
    let host = bed.host(&mut r);
    let mut lines = Vec::new();
    for step in &bed.plan.steps {
        if matches!(step.kind, StepKind::Reboot) {
            break;
        }
        lines.extend(steps::preview(step, &host));
    }
    drop(host);
    assert_eq!(r.lines(), Vec::<String>::new());
    bed.assert_unchanged(&before);
    let text = lines.join("\n");
    for want in [
        "would write /etc/apt/sources.list.d/pve-no-subscription.list (mode 0644)",
        "would run `apt-get update --error-on=any`",
        "package proxmox-headers-6.8.12-9-pve: would install",
        "boot loader GRUB:",
        "kernel argument intel_iommu=on: would be tried once at the next boot",
        "would write /etc/grub.d/42_vgpu-bake-trial (mode 0755): the trial entry \"vgpu-bake trial: Proxmox VE GNU/Linux + intel_iommu=on iommu=pt\" (kernel 6.8.12-9-pve)",
        "would run `update-grub`, then `grub-reboot vgpu-bake-trial`",
        "verify-reboot would then commit: would write /etc/default/grub.d/vgpu-bake.cfg (mode 0644)",
        "module vfio_pci: loaded at boot",
        "would write /etc/modprobe.d/vgpu-bake-blacklist.conf (mode 0644)",
        "would run `update-initramfs -u -k all`",
        "Secure Boot is off",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(!text.contains("cannot tell yet"), "{text}");

    let bed = pve9_on_617();
    let mut r = Fake::new(&bed);
    let host = bed.host(&mut r);
    let pin = steps::kernel_pin::preview(&host).unwrap().join("\n");
    let sb = steps::secure_boot::preview(&host).unwrap().join("\n");
    drop(host);
    assert!(
        pin.contains("zpool get -H -o value feature@block_cloning_endian rpool"),
        "{pin}"
    );
    assert!(pin.contains("proxmox-kernel-6.14.11*-pve-signed"), "{pin}");
    assert!(
        sb.contains(
            "mokutil --import /var/lib/vgpu-firstboot/secure-boot/module-signing.der --root-pw"
        ),
        "{sb}"
    );
    assert!(
        sb.contains("would write /etc/dkms/framework.conf.d/vgpu-bake.conf"),
        "{sb}"
    );
    assert_eq!(r.lines(), Vec::<String>::new());
}

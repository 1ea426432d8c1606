//! Host-file edits on copies of real Proxmox VE files: golden outputs, and
//! idempotence (a second pass over the result plans nothing) for every edit
//! and every fixture. Fixtures are under `tests/data/`; run with
//! `VGPU_BLESS=1` to rewrite the expected files after an intended change.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use vgpu_firstboot::edits::{
    FileAction, FileOp, apply_ops_in_memory, apply_ops_preview, apt, kernel_cmdline as kc, modules,
    passthrough, unlock,
};
use vgpu_plan::plan::{PayloadFile, UnlockPlan};

fn data(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(sub)
}

fn bless() -> bool {
    std::env::var_os("VGPU_BLESS").is_some()
}

/// The case directories under `tests/data/<sub>`, sorted.
fn cases(sub: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(data(sub))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no fixtures in {sub}");
    dirs
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_opt(path: &Path) -> Option<String> {
    path.exists().then(|| read(path))
}

fn words(path: &Path) -> Vec<String> {
    read(path).split_whitespace().map(str::to_owned).collect()
}

/// Compares `actual` with the golden file, or rewrites it when blessing.
fn golden(path: &Path, actual: &str) {
    if bless() {
        fs::write(path, actual).unwrap();
    } else {
        assert_eq!(read(path), actual, "golden file {}", path.display());
    }
}

fn assert_only_writes(ops: &[FileOp], case: &Path) {
    for op in ops {
        assert!(
            matches!(op.action, FileAction::Write { mode: 0o644, .. }),
            "{}: {op:?} is not a 0644 write",
            case.display()
        );
    }
}

// ---------------------------------------------------------------- APT ----

/// `/etc/apt` under `dir` as root-relative paths (`etc/apt/sources.list`,
/// `etc/apt/sources.list.d/<name>`).
fn read_apt_tree(dir: &Path) -> BTreeMap<String, String> {
    let mut tree = BTreeMap::new();
    if let Some(text) = read_opt(&dir.join("sources.list")) {
        tree.insert("etc/apt/sources.list".to_owned(), text);
    }
    if let Ok(entries) = fs::read_dir(dir.join("sources.list.d")) {
        for e in entries {
            let name = e.unwrap().file_name().into_string().unwrap();
            let text = read(&dir.join("sources.list.d").join(&name));
            tree.insert(format!("{}/{name}", apt::SOURCES_DIR), text);
        }
    }
    tree
}

fn write_apt_tree(dir: &Path, tree: &BTreeMap<String, String>) {
    let _ = fs::remove_dir_all(dir);
    for (path, text) in tree {
        let file = dir.join(path.strip_prefix("etc/apt/").unwrap());
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(file, text).unwrap();
    }
}

/// The map `plan_apt_repos` takes.
fn apt_input(tree: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    tree.iter()
        .map(|(path, text)| {
            let name = match path.strip_prefix("etc/apt/sources.list.d/") {
                Some(name) => name.to_owned(),
                None => apt::SOURCES_LIST_KEY.to_owned(),
            };
            (name, text.clone())
        })
        .collect()
}

/// Enabled entries of `suite` with `component`, whose URI contains
/// `uri_part`, across all files apt reads. Deliberately simple and separate
/// from the parser under test.
fn count_enabled(
    tree: &BTreeMap<String, String>,
    suite: &str,
    component: &str,
    uri_part: &str,
) -> usize {
    let mut n = 0;
    for (path, text) in tree {
        if path.ends_with(".list") {
            n += text
                .lines()
                .map(|l| l.split('#').next().unwrap())
                .filter(|l| {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    w.first() == Some(&"deb")
                        && l.contains(uri_part)
                        && w.contains(&suite)
                        && w.last() == Some(&component)
                })
                .count();
        } else if path.ends_with(".sources") {
            for stanza in text.split("\n\n") {
                let lower = stanza.to_ascii_lowercase();
                let field = |name: &str| {
                    lower
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(|v| {
                            v.trim_start_matches(':')
                                .split_whitespace()
                                .map(str::to_owned)
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default()
                };
                let off = field("enabled").iter().any(|v| v == "no" || v == "false");
                if !off
                    && lower.contains(uri_part)
                    && field("suites").iter().any(|s| s == suite)
                    && field("components").iter().any(|c| c == component)
                {
                    n += 1;
                }
            }
        }
    }
    n
}

#[test]
fn apt_fixtures_match_golden_files_and_are_idempotent() {
    for case in cases("apt") {
        let codename = read(&case.join("codename")).trim().to_owned();
        let input = read_apt_tree(&case.join("input"));
        let ops = apt::plan_apt_repos(&codename, &apt_input(&input));
        golden(&case.join("expected-plan.txt"), &apply_ops_preview(&ops));

        let mut result = input.clone();
        apply_ops_in_memory(&mut result, &ops);
        if bless() {
            write_apt_tree(&case.join("expected"), &result);
        }
        assert_eq!(
            read_apt_tree(&case.join("expected")),
            result,
            "{}",
            case.display()
        );

        // Admin files are edited in place, never deleted or renamed.
        assert_only_writes(&ops, &case);
        assert!(input.keys().all(|k| result.contains_key(k)));

        // Enterprise off everywhere apt looks.
        for pve in ["pve-enterprise", "enterprise"] {
            assert_eq!(
                count_enabled(&result, &codename, pve, "enterprise.proxmox.com"),
                0
            );
        }
        // No-subscription on, exactly once (a mirror counts).
        assert_eq!(
            count_enabled(&result, &codename, "pve-no-subscription", "/debian/pve"),
            1,
            "{}",
            case.display()
        );
        let ceph = if codename == "bullseye" {
            "main"
        } else {
            "no-subscription"
        };
        assert_eq!(
            count_enabled(&result, &codename, ceph, "/debian/ceph-"),
            1,
            "{}",
            case.display()
        );

        let again = apt::plan_apt_repos(&codename, &apt_input(&result));
        assert!(
            again.is_empty(),
            "{}: second pass planned {again:?}",
            case.display()
        );
    }
}

// --------------------------------------------------------------- GRUB ----

#[test]
fn grub_dropins_match_golden_files_and_are_idempotent() {
    for case in cases("grub") {
        let args = words(&case.join("args"));
        let default = read_opt(&case.join("default-grub"));
        let dropin = kc::grub_dropin(&args, default.as_deref());
        golden(&case.join("expected.cfg"), &dropin);

        // update-grub sources /etc/default/grub, then the drop-in: together
        // they leave nothing to add.
        let combined = format!("{}\n{dropin}", default.clone().unwrap_or_default());
        let again = kc::grub_dropin(&args, Some(&combined));
        assert!(
            !again.lines().any(|l| l.starts_with("GRUB_")),
            "{}: still adds after the drop-in:\n{again}",
            case.display()
        );

        // Only our drop-in is ever written; a second plan writes nothing.
        let ops = kc::plan_grub(&args, default.as_deref(), None).unwrap();
        assert_only_writes(&ops, &case);
        assert!(ops.iter().all(|op| op.path == kc::GRUB_DROPIN));
        let mut files = BTreeMap::new();
        apply_ops_in_memory(&mut files, &ops);
        let current = files.get(kc::GRUB_DROPIN).map(String::as_str);
        let again = kc::plan_grub(&args, default.as_deref(), current).unwrap();
        assert!(again.is_empty(), "{}: {again:?}", case.display());
    }
}

#[test]
fn commented_grub_lines_are_neither_edited_nor_counted() {
    let case = data("grub/commented-line");
    let args = words(&case.join("args"));
    let default = read(&case.join("default-grub"));
    assert!(default.contains("#GRUB_CMDLINE_LINUX_DEFAULT=\"quiet intel_iommu=on iommu=pt\""));
    let dropin = kc::grub_dropin(&args, Some(&default));
    assert!(dropin.ends_with(
        "GRUB_CMDLINE_LINUX_DEFAULT=\"${GRUB_CMDLINE_LINUX_DEFAULT} intel_iommu=on iommu=pt\"\n"
    ));
}

#[test]
fn grub_adds_only_the_missing_argument() {
    let case = data("grub/partial");
    let dropin = kc::grub_dropin(
        &words(&case.join("args")),
        Some(&read(&case.join("default-grub"))),
    );
    assert!(dropin.contains("# Already set in /etc/default/grub: intel_iommu=on\n"));
    assert!(
        dropin.ends_with("GRUB_CMDLINE_LINUX_DEFAULT=\"${GRUB_CMDLINE_LINUX_DEFAULT} iommu=pt\"\n")
    );
}

// ------------------------------------------------------- systemd-boot ----

#[test]
fn kernel_cmdlines_match_golden_files_and_are_idempotent() {
    for case in cases("kernel-cmdline") {
        let args = words(&case.join("args"));
        let current = read(&case.join("cmdline"));
        let new = kc::kernel_cmdline(&current, &args);
        golden(&case.join("expected"), &new);

        assert!(
            new.ends_with('\n') && new.matches('\n').count() == 1,
            "{new:?}"
        );
        assert_eq!(kc::kernel_cmdline(&new, &args), new, "{}", case.display());
        assert!(kc::missing_args(&new, &args).is_empty());
        for token in current
            .split_whitespace()
            .filter(|t| t.starts_with("root=") || *t == "boot=zfs")
        {
            assert!(
                new.split_whitespace().any(|t| t == token),
                "{token} lost in {new:?}"
            );
        }

        let ops = kc::plan_systemd_boot(&args, &current).unwrap();
        assert_only_writes(&ops, &case);
        assert_eq!(ops.is_empty(), kc::missing_args(&current, &args).is_empty());
        assert!(kc::plan_systemd_boot(&args, &new).unwrap().is_empty());
    }
}

#[test]
fn systemd_boot_replaces_a_contradicting_argument_in_place() {
    let case = data("kernel-cmdline/conflicting");
    let new = kc::kernel_cmdline(&read(&case.join("cmdline")), &words(&case.join("args")));
    assert_eq!(
        new,
        "root=ZFS=rpool/ROOT/pve-1 boot=zfs intel_iommu=on quiet iommu=pt\n"
    );
}

#[test]
fn missing_args_reads_real_proc_cmdlines() {
    let args: Vec<String> = ["intel_iommu=on", "iommu=pt"].map(String::from).into();
    let grub = "BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=/dev/mapper/pve-root ro quiet intel_iommu=on iommu=pt\n";
    assert!(kc::missing_args(grub, &args).is_empty());
    let efi = "initrd=\\EFI\\proxmox\\6.8.12-4-pve\\initrd.img-6.8.12-4-pve root=ZFS=rpool/ROOT/pve-1 boot=zfs intel_iommu=on\n";
    assert_eq!(kc::missing_args(efi, &args), ["iommu=pt"]);
    assert_eq!(
        kc::cmdline_from_proc(efi),
        "root=ZFS=rpool/ROOT/pve-1 boot=zfs intel_iommu=on\n"
    );
}

// ------------------------------------------------------------ modules ----

const ETC_MODULES_STOCK: &str = "# /etc/modules: kernel modules to load at boot time.\n#\n\
# This file contains the names of kernel modules that should be loaded\n\
# at boot time, one per line. Lines beginning with \"#\" are ignored.\n\
# Parameters can be specified after the module name.\n\n";

fn strings(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn vfio_modules_are_planned_once_and_never_in_etc_modules() {
    let seed_appended =
        format!("{ETC_MODULES_STOCK}vfio\nvfio_iommu_type1\nvfio_pci\nvfio_virqfd\n");
    let partial = format!("{ETC_MODULES_STOCK}vfio\n");
    let inputs: [(Option<&str>, &str); 4] = [
        (None, "vfio vfio_iommu_type1 vfio_pci"),
        (Some(ETC_MODULES_STOCK), "vfio vfio_iommu_type1 vfio_pci"),
        (Some(&partial), "vfio_iommu_type1 vfio_pci"),
        (Some(&seed_appended), ""),
    ];
    for wanted in [
        "vfio vfio_iommu_type1 vfio_pci",
        "vfio vfio_iommu_type1 vfio_pci vfio_pci",
    ] {
        for (etc, expect) in inputs {
            let ops = modules::plan_vfio_modules(&strings(wanted), etc, None);
            assert!(ops.iter().all(|op| op.path == modules::MODULES_LOAD_CONF));
            let mut files = BTreeMap::new();
            apply_ops_in_memory(&mut files, &ops);
            let conf = files.get(modules::MODULES_LOAD_CONF);
            let listed: Vec<&str> = conf
                .map(|c| c.lines().filter(|l| !l.starts_with('#')).collect())
                .unwrap_or_default();
            assert_eq!(listed.join(" "), expect);
            let conf = conf.map(String::as_str);
            assert!(modules::plan_vfio_modules(&strings(wanted), etc, conf).is_empty());
        }
    }
    // An earlier run's file goes once /etc/modules loads everything.
    let ops = modules::plan_vfio_modules(&strings("vfio"), Some("vfio\n"), Some("vfio\n"));
    assert!(matches!(
        ops[..],
        [FileOp {
            action: FileAction::Delete,
            ..
        }]
    ));
    assert!(modules::listed_in_etc_modules(
        Some(&seed_appended),
        &strings("vfio vfio_pci")
    ));
}

#[test]
fn blacklist_is_whole_and_idempotent() {
    let ops = modules::plan_blacklist(&strings("nouveau"), None);
    let mut files = BTreeMap::new();
    apply_ops_in_memory(&mut files, &ops);
    let conf = &files[modules::BLACKLIST_CONF];
    let body: Vec<&str> = conf.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(body, ["blacklist nouveau", "options nouveau modeset=0"]);
    assert!(modules::plan_blacklist(&strings("nouveau"), Some(conf)).is_empty());
    assert_eq!(modules::blacklist_conf(&strings("nouveau")), *conf);
}

// -------------------------------------------------------- passthrough ----

#[test]
fn udev_rules_are_sorted_deduplicated_and_idempotent() {
    // What the seed's appending produced after two runs, plus short forms.
    let addresses =
        strings("0000:02:00.1 0000:02:00.0 0000:02:00.1 02:00.0 0000:01:00.0 0000:AF:00.0");
    let rules = passthrough::udev_rules(&addresses).unwrap();
    let body: Vec<&str> = rules.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        body,
        [
            r#"ACTION=="add", SUBSYSTEM=="pci", KERNELS=="0000:01:00.0", ATTR{driver_override}="vfio-pci""#,
            r#"ACTION=="add", SUBSYSTEM=="pci", KERNELS=="0000:02:00.0", ATTR{driver_override}="vfio-pci""#,
            r#"ACTION=="add", SUBSYSTEM=="pci", KERNELS=="0000:02:00.1", ATTR{driver_override}="vfio-pci""#,
            r#"ACTION=="add", SUBSYSTEM=="pci", KERNELS=="0000:af:00.0", ATTR{driver_override}="vfio-pci""#,
        ]
    );
    let ops = passthrough::plan_passthrough(&addresses, None).unwrap();
    assert_only_writes(&ops, Path::new("udev"));
    let mut files = BTreeMap::new();
    apply_ops_in_memory(&mut files, &ops);
    let current = files.get(passthrough::UDEV_RULES).map(String::as_str);
    assert!(
        passthrough::plan_passthrough(&addresses, current)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        passthrough::udev_rules(&strings("02:00.1 02:00.0 01:00.0 af:00.0")).unwrap(),
        rules
    );

    // No passthrough device any more: our file goes, then nothing.
    let ops = passthrough::plan_passthrough(&[], current).unwrap();
    apply_ops_in_memory(&mut files, &ops);
    assert!(files.is_empty());
    assert!(passthrough::plan_passthrough(&[], None).unwrap().is_empty());
    assert!(passthrough::plan_passthrough(&strings("02:00.1\"x"), None).is_err());
}

// ------------------------------------------------------------- unlock ----

#[test]
fn unlock_files_are_written_once() {
    let plan = UnlockPlan {
        library: PayloadFile {
            path: "unlock/libvgpu_unlock_rs.so".to_owned(),
            sha256: "0".repeat(64).parse().unwrap(),
            size: 1,
        },
        library_path: "/usr/local/lib/vgpu-bake/libvgpu_unlock_rs.so".to_owned(),
        profile_override: "[profile.nvidia-259]\nnum_displays = 1\n".to_owned(),
    };
    let ops = unlock::plan_unlock(&plan, [None, None, None]).unwrap();
    assert_eq!(
        ops.iter().map(|o| o.path.as_str()).collect::<Vec<_>>(),
        [
            unlock::VGPUD_DROPIN,
            unlock::VGPU_MGR_DROPIN,
            unlock::PROFILE_OVERRIDE
        ]
    );
    let mut files = BTreeMap::new();
    apply_ops_in_memory(&mut files, &ops);
    for dropin in [unlock::VGPUD_DROPIN, unlock::VGPU_MGR_DROPIN] {
        let body: Vec<&str> = files[dropin]
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect();
        assert_eq!(
            body,
            [
                "[Service]",
                "Environment=LD_PRELOAD=/usr/local/lib/vgpu-bake/libvgpu_unlock_rs.so"
            ]
        );
    }
    assert_eq!(files[unlock::PROFILE_OVERRIDE], plan.profile_override);
    let current = [
        unlock::VGPUD_DROPIN,
        unlock::VGPU_MGR_DROPIN,
        unlock::PROFILE_OVERRIDE,
    ]
    .map(|p| files.get(p).map(String::as_str));
    assert!(unlock::plan_unlock(&plan, current).unwrap().is_empty());
}

//! `install`: onto a temp root, against hostile fixtures, and against a
//! target that has something in the way.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::process::Command;

use vgpu_bake::install::{InstallError, install};

use super::consumers::{Node, require, tree};
use super::*;

/// Every path under `root` whose name looks like a leftover temp file.
fn leftovers(root: &Path) -> Vec<String> {
    tree(root)
        .into_keys()
        .filter(|p| {
            let name = p.rsplit('/').next().unwrap();
            name.starts_with('.') || name.ends_with(".tmp")
        })
        .collect()
}

#[test]
fn install_lays_out_files_modes_and_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let spec = layout_spec(dir.path(), "inst", 3 << 20);
    let (o, _) = bake(&spec, &dir.path().join("out"), 2);
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    let installed = install(&o.bundle, &root).unwrap();
    let report = inspect(&o.bundle).unwrap();
    let paths: Vec<&str> = installed.iter().map(|i| i.path.as_str()).collect();
    let expected: Vec<&str> = report.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, expected);

    let agent = installed
        .iter()
        .find(|i| i.path == layout::AGENT_BIN)
        .unwrap();
    assert_eq!((agent.kind, agent.mode), ("file", 0o755));
    let link = installed
        .iter()
        .find(|i| i.path == layout::UNIT_WANTS_LINK)
        .unwrap();
    assert_eq!(link.kind, "symlink");
    assert_eq!(
        fs::read_link(root.join(layout::UNIT_WANTS_LINK)).unwrap(),
        Path::new(layout::UNIT_WANTS_TARGET)
    );
    // The link resolves to the unit inside the root.
    assert_eq!(
        fs::read(root.join(layout::UNIT_WANTS_LINK)).unwrap(),
        b"[Unit]\nDescription=vgpu firstboot\n"
    );
    let mode = |p: &str| {
        fs::symlink_metadata(root.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode(layout::AGENT_BIN), 0o755);
    assert_eq!(mode(layout::PLAN_FILE), 0o600);
    assert_eq!(mode(layout::STATE_DIR), 0o700);
    assert_eq!(mode("usr/local"), 0o755);
    let run = format!(
        "{}/NVIDIA-Linux-x86_64-test-vgpu-kvm.run",
        layout::PAYLOAD_DIR
    );
    let payload = fs::read(root.join(&run)).unwrap();
    assert_eq!(
        digest_bytes(&payload).sha256,
        o.manifest.get(&run).unwrap().sha256.as_deref().unwrap()
    );
    assert_eq!(
        installed.iter().find(|i| i.path == run).unwrap().size,
        3 << 20
    );
    let manifest = fs::read_to_string(root.join(layout::MANIFEST_FILE)).unwrap();
    assert_eq!(Manifest::from_toml(&manifest).unwrap(), o.manifest);
    assert_eq!(leftovers(&root), Vec::<String>::new());

    // Installing again over the result replaces files and the link.
    let before = tree(&root);
    assert_eq!(install(&o.bundle, &root).unwrap(), installed);
    assert_eq!(tree(&root), before);
}

#[test]
fn install_of_a_corrupt_bundle_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (o, bytes) = bake(
        &layout_spec(dir.path(), "c", 1 << 20),
        &dir.path().join("out"),
        2,
    );
    fs::write(&o.bundle, &bytes[..bytes.len() - 10]).unwrap();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    let err = install(&o.bundle, &root).unwrap_err();
    assert!(
        matches!(err, InstallError::Bundle(InspectError::Read { .. })),
        "{err}"
    );
    assert_eq!(listing(&root), Vec::<String>::new());
}

/// Paths the hostile fixtures aim at outside the root.
const OUTSIDE: [&str; 2] = [
    "/tmp/vgpu-bake-fixture-absolute",
    "/tmp/vgpu-bake-fixture-through-symlink",
];

#[test]
fn install_refuses_hostile_fixtures_and_writes_nothing() {
    type Expect = fn(&Problem) -> bool;
    let cases: [(&str, Expect); 5] = [
        (
            "traversal",
            |p| matches!(p, Problem::UnsafePath(r) if r.contains("..")),
        ),
        (
            "traversal-nested",
            |p| matches!(p, Problem::UnsafePath(r) if r.contains("..")),
        ),
        (
            "absolute",
            |p| matches!(p, Problem::UnsafePath(r) if r.contains("absolute")),
        ),
        ("duplicate", |p| *p == Problem::Duplicate),
        (
            "symlink-through",
            |p| matches!(p, Problem::ParentNotDir { parent, what: "a symlink" } if parent == "etc/link"),
        ),
    ];
    for (name, expected) in cases {
        for p in OUTSIDE {
            let _ = fs::remove_file(p);
        }
        let fixture = repo_tests().join(format!("fixtures/{name}.cpio.zst"));
        let Err(InspectError::Entry { problem, .. }) = inspect(&fixture) else {
            panic!("{name}: inspect accepted a hostile bundle")
        };
        assert!(expected(&problem), "{name}: {problem}");

        let parent = tempfile::tempdir().unwrap();
        let root = parent.path().join("root");
        fs::create_dir(&root).unwrap();
        let err = install(&fixture, &root).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, InstallError::Bundle(InspectError::Entry { .. })),
            "{name}: {msg}"
        );
        assert!(msg.contains(&format!("{name}.cpio.zst")), "{msg}");
        assert_eq!(
            listing(parent.path()),
            ["root"],
            "{name}: wrote beside the root"
        );
        assert_eq!(
            listing(&root),
            Vec::<String>::new(),
            "{name}: wrote into the root"
        );
        for p in OUTSIDE {
            assert!(!Path::new(p).exists(), "{name}: created {p}");
        }
    }
}

/// The checked-in fixtures are what their scripts make (compared
/// decompressed: another zstd CLI version may compress differently).
#[test]
fn fixtures_match_their_generators() {
    require("zstd", "zstd");
    require("python3", "python3");
    let fixtures = repo_tests().join("fixtures");
    let out = tempfile::tempdir().unwrap();
    let mut scripts = 0;
    for e in fs::read_dir(&fixtures).unwrap() {
        let script = e.unwrap().path();
        let Some(name) = script
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .strip_suffix(".gen.sh")
        else {
            continue;
        };
        scripts += 1;
        let status = Command::new("sh")
            .arg(&script)
            .arg(out.path())
            .status()
            .unwrap();
        assert!(status.success(), "{} failed", script.display());
        let made = fs::read(out.path().join(format!("{name}.cpio.zst"))).unwrap();
        let kept = fs::read(fixtures.join(format!("{name}.cpio.zst"))).unwrap();
        assert!(
            zstd::decode_all(&made[..]).unwrap() == zstd::decode_all(&kept[..]).unwrap(),
            "{name}.cpio.zst is stale: run {}",
            script.display()
        );
    }
    assert_eq!(scripts, 5);
}

#[test]
fn install_refuses_a_symlink_where_the_bundle_has_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (o, _) = bake(
        &layout_spec(dir.path(), "s", 1000),
        &dir.path().join("out"),
        2,
    );
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    for linked in ["etc", "var/lib", layout::STATE_DIR] {
        let root = dir
            .path()
            .join(format!("root-{}", linked.replace('/', "-")));
        let link = root.join(linked);
        fs::create_dir_all(link.parent().unwrap()).unwrap();
        symlink(&outside, &link).unwrap();
        let err = install(&o.bundle, &root).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, InstallError::Refused { .. }),
            "{linked}: {msg}"
        );
        assert!(msg.contains("symlink") && msg.contains(linked), "{msg}");
        assert_eq!(
            listing(&outside),
            Vec::<String>::new(),
            "wrote through {linked}"
        );
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
    // A file where a directory goes.
    let root = dir.path().join("root-file");
    fs::create_dir_all(root.join("usr")).unwrap();
    fs::write(root.join("usr/local"), b"not a dir").unwrap();
    let err = install(&o.bundle, &root).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
}

/// An install refused part way: what was written before is complete, the
/// rest is absent, and no temp file is left behind.
#[test]
fn install_failure_part_way_leaves_no_half_written_file() {
    let dir = tempfile::tempdir().unwrap();
    let (o, _) = bake(
        &layout_spec(dir.path(), "p", 2 << 20),
        &dir.path().join("out"),
        2,
    );
    let outside_file = dir.path().join("outside-file");
    fs::write(&outside_file, b"keep me").unwrap();
    // plan.toml is the last entry: a directory in its place fails the
    // install after every other file; a symlink in the agent's place fails
    // it early.
    type Setup = fn(&Path, &Path);
    let setups: [(&str, Setup); 2] = [
        (layout::PLAN_FILE, |root, _| {
            fs::create_dir_all(root.join(layout::PLAN_FILE)).unwrap()
        }),
        (layout::AGENT_BIN, |root, outside| {
            fs::create_dir_all(root.join("usr/local/sbin")).unwrap();
            symlink(outside, root.join(layout::AGENT_BIN)).unwrap();
        }),
    ];
    for (entry, setup) in setups {
        let root = dir.path().join(format!("root-{}", entry.replace('/', "-")));
        fs::create_dir(&root).unwrap();
        setup(&root, &outside_file);
        let err = install(&o.bundle, &root).unwrap_err();
        assert!(
            matches!(&err, InstallError::Refused { entry: e, .. } if e == entry),
            "{entry}: {err}"
        );
        assert_eq!(leftovers(&root), Vec::<String>::new(), "{entry}");
        for (path, node) in tree(&root) {
            if path == layout::MANIFEST_FILE {
                let text = fs::read_to_string(root.join(&path)).unwrap();
                assert_eq!(text, o.manifest.to_toml());
            } else if let Node::File(mode, sha256) = node {
                let m = o
                    .manifest
                    .get(&path)
                    .unwrap_or_else(|| panic!("{path} is not from the bundle"));
                assert_eq!(
                    (mode_string(mode), &sha256),
                    (m.mode.clone(), &m.sha256.as_ref().unwrap().to_string()),
                    "{path}"
                );
            }
        }
        assert_eq!(fs::read(&outside_file).unwrap(), b"keep me");
    }
    let written = tree(
        &dir.path()
            .join(format!("root-{}", layout::PLAN_FILE.replace('/', "-"))),
    );
    assert!(matches!(written[layout::AGENT_BIN], Node::File(0o755, _)));
    assert!(matches!(written[layout::PLAN_FILE], Node::Dir(_)));
}

//! `install`: onto a temp root, against hostile fixtures, and against a
//! target that has something in the way.

use std::os::unix::fs::{PermissionsExt, symlink};

use vgpu_bake::install::{InstallError, install};

use super::consumers::tree;
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
    // The .sha256 beside it no longer matches: that is the refusal.
    let err = install(&o.bundle, &root).unwrap_err();
    assert!(
        matches!(err, InstallError::Bundle(InspectError::Checksum { .. })),
        "{err}"
    );
    assert_eq!(listing(&root), Vec::<String>::new());
    // Without it, the truncated stream is what refuses it.
    fs::remove_file(&o.sha256_file).unwrap();
    let err = install(&o.bundle, &root).unwrap_err();
    assert!(
        matches!(err, InstallError::Bundle(InspectError::Read { .. })),
        "{err}"
    );
    assert_eq!(listing(&root), Vec::<String>::new());
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

/// A conflict deep in the bundle (the plan is its last entry) or early
/// (the agent): the conflict pass finds it before anything is written, so
/// the target is exactly as it was: no directory, file or temp file of the
/// install is left.
#[test]
fn install_refused_by_a_conflict_leaves_the_target_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let (o, _) = bake(
        &layout_spec(dir.path(), "p", 2 << 20),
        &dir.path().join("out"),
        2,
    );
    let outside_file = dir.path().join("outside-file");
    fs::write(&outside_file, b"keep me").unwrap();
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
        let before = tree(&root);
        let err = install(&o.bundle, &root).unwrap_err();
        assert!(
            matches!(&err, InstallError::Refused { entry: e, .. } if e == entry),
            "{entry}: {err}"
        );
        assert_eq!(tree(&root), before, "{entry}");
        assert_eq!(fs::read(&outside_file).unwrap(), b"keep me");
    }
}

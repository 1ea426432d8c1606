//! Every hostile bundle class in `tests/fixtures/` (see its README), run
//! through the real `vgpu-bake inspect` and `install`: each is refused with
//! a non-zero exit and the message that names its fault, and the install
//! target is left exactly as it was (kinds, modes, contents, link targets).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use vgpu_bake::hash::hex;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn vgpu_bake(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vgpu-bake"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// (class, fragment of the message both commands print). Every
/// `X.cpio.zst` in the fixtures directory but `valid` must be here.
const CLASSES: &[(&str, &str)] = &[
    ("absolute", "the name is absolute"),
    ("traversal", "the name has a `..` component"),
    ("traversal-nested", "the name has a `..` component"),
    ("duplicate", "appears more than once"),
    ("symlink-through", "one symlink only"),
    (
        "etc-passwd",
        "entry etc/passwd: the path is outside the bundle layout",
    ),
    (
        "etc-shadow",
        "entry etc/shadow: the path is outside the bundle layout",
    ),
    (
        "ssh-authorized-keys",
        "entry root: the path is outside the bundle layout",
    ),
    (
        "extra-unit",
        "evil.service: a bundle holds one symlink only",
    ),
    (
        "state-toml",
        "state.toml: the path is outside the bundle layout",
    ),
    (
        "trusted-key",
        "entry etc/vgpu-firstboot: the path is outside the bundle layout",
    ),
    ("mode-setuid", "mode 4755: setuid mode"),
    ("mode-setgid-dir", "mode 2777: setgid mode"),
    ("mode-world-writable", "mode 0777: world-writable mode"),
    ("mode-sticky-dir", "mode 1755: sticky mode"),
    ("owner-nonroot", "owner 1000:1000 is not 0:0"),
    (
        "name-newline",
        "a\\nb.run\": the name has a control character",
    ),
    ("name-escape", "the name has a control character"),
    ("name-invalid-utf8", "is not UTF-8"),
    ("trailing-archive", "data after the TRAILER!!! entry"),
    (
        "trailing-zeros-16g",
        "more NUL bytes than the block padding after the TRAILER!!! entry",
    ),
    ("zstd-bomb", "(a decompression bomb)"),
    (
        "bomb-in-agent",
        "its header declares 2147483648 bytes, more than the 16777216 bytes",
    ),
    (
        "size-lie",
        "driver.run: size is 1048576, the manifest says 31",
    ),
    (
        "unlisted",
        "extra.run: the entry is not listed in the manifest",
    ),
    (
        "missing",
        "gone.run: the manifest lists this entry, but the archive has no such entry",
    ),
    ("manifest-missing", "it comes before the manifest"),
    (
        "dir-mode-mutant",
        "usr/local/sbin: mode is 0750, the manifest says 0755",
    ),
    (
        "symlink-target-mutant",
        "the unit's wants link must point to ../vgpu-firstboot.service",
    ),
    (
        "symlink-name-mutant",
        "getty@tty9.service: a bundle holds one symlink only",
    ),
    ("regenerated-manifest", "does not match its checksum file"),
    (
        "device-node",
        "payload/null: unsupported entry type (mode 20644): a device node",
    ),
    (
        "fifo",
        "payload/pipe: unsupported entry type (mode 10644): a device node, FIFO",
    ),
    ("hardlink", "link count 2: a hard link"),
    (
        "secret-mode-mutant",
        "is marked secret but is a file of mode 0644: a secret is a regular file of mode 0600",
    ),
    (
        "secret-flag-dropped",
        "client_configuration_token.tok: mode is 0600, the manifest says 0644",
    ),
    ("truncated", "the zstd stream is truncated or corrupt"),
];

/// Signed classes: run with `--trusted-key keys/test.pub` (inspect and
/// install), each refused with this fragment.
const SIGNED_CLASSES: &[(&str, &str)] = &[
    (
        "wrong-signature",
        "the signature (key id B30E2AE382CD467E) does not verify with any trusted key",
    ),
    (
        "unsigned-with-key",
        "it is unsigned (no var/lib/vgpu-firstboot/manifest.toml.minisig), but --trusted-key",
    ),
    (
        "signature-other-manifest",
        "the signature (key id 99991D95F45D37EF) does not verify with any trusted key",
    ),
    (
        "signature-other-bundle-comment",
        "has the trusted comment \"vgpu-bake bundle other-bundle\", not \"vgpu-bake bundle signature-other-bundle-comment\": it belongs to another bundle",
    ),
    (
        "signature-garbled",
        "manifest.toml.minisig is not a minisign signature",
    ),
    (
        "signature-bitflip",
        "keys/test.pub: Signature verification failed",
    ),
    (
        "signature-before-manifest",
        "entry var/lib/vgpu-firstboot/manifest.toml.minisig: it comes before the manifest",
    ),
    (
        "signature-listed-in-manifest",
        "the manifest cannot list itself or its signature",
    ),
];

/// The controls: every other fixture is a variant of one of these.
const CONTROLS: &[&str] = &["valid", "signed-valid"];

fn test_key(name: &str) -> PathBuf {
    fixtures().join("keys").join(name)
}

/// A file tree as kind, mode and content or target, by path.
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let meta = fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let t = meta.file_type();
            let node = if t.is_symlink() {
                format!("symlink -> {}", fs::read_link(&path).unwrap().display())
            } else if t.is_dir() {
                walk(root, &path, out);
                format!("dir {mode:04o}")
            } else if t.is_file() {
                let sha = hex(&Sha256::digest(fs::read(&path).unwrap()));
                format!("file {mode:04o} {sha}")
            } else {
                format!("special {mode:04o} fifo={}", t.is_fifo())
            };
            out.insert(rel, node);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// A target that already holds a host's files where a bundle goes.
fn populated_root(parent: &Path) -> PathBuf {
    let root = parent.join("root");
    for d in [
        "etc/systemd/system",
        "usr/local/sbin",
        "var/lib",
        "root/.ssh",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    fs::write(root.join("etc/shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
    fs::set_permissions(root.join("etc/shadow"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(root.join("usr/local/sbin/vgpu-firstboot"), "old agent\n").unwrap();
    fs::set_permissions(
        root.join("usr/local/sbin/vgpu-firstboot"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    symlink(
        "/lib/systemd/system/ssh.service",
        root.join("etc/systemd/system/sshd.service"),
    )
    .unwrap();
    root
}

/// Paths the fixtures aim at outside any root.
const OUTSIDE: &[&str] = &[
    "/tmp/vgpu-bake-fixture-absolute",
    "/tmp/vgpu-bake-fixture-traversal",
    "/tmp/vgpu-bake-fixture-through-symlink",
];

/// Runs inspect and install on `bundle` (each with the arguments `extra`
/// after the rest); both must fail with `fragment` (install with
/// `install_fragment`), and the target must not change.
fn assert_refused(
    class: &str,
    bundle: &Path,
    fragment: &str,
    install_fragment: Option<&str>,
    plant: fn(&Path),
    extra: &[&Path],
) {
    let out = vgpu_bake(&[&[Path::new("inspect"), bundle], extra].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    match install_fragment {
        None => {
            assert!(!out.status.success(), "{class}: inspect accepted it");
            assert!(
                stderr.contains(fragment),
                "{class}: want {fragment:?} in {stderr}"
            );
            assert!(
                stderr.contains(&bundle.display().to_string()),
                "{class}: {stderr}"
            );
            assert!(out.stdout.is_empty(), "{class}: inspect printed a report");
        }
        Some(_) => assert!(out.status.success(), "{class}: {stderr}"),
    }

    let parent = tempfile::tempdir().unwrap();
    let root = populated_root(parent.path());
    plant(&root);
    let before = tree(parent.path());
    let out = vgpu_bake(
        &[
            &[Path::new("install"), bundle, Path::new("--root"), &root],
            extra,
        ]
        .concat(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{class}: install accepted it");
    let want = install_fragment.unwrap_or(fragment);
    assert!(stderr.contains(want), "{class}: want {want:?} in {stderr}");
    assert_eq!(
        tree(parent.path()),
        before,
        "{class}: install changed the target"
    );
    for p in OUTSIDE {
        assert!(!Path::new(p).exists(), "{class}: created {p}");
    }
}

#[test]
fn the_valid_control_fixture_passes() {
    let out = vgpu_bake(&[Path::new("inspect"), &fixtures().join("valid.cpio.zst")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parent = tempfile::tempdir().unwrap();
    let root = populated_root(parent.path());
    let before = tree(&root);
    let out = vgpu_bake(&[
        Path::new("install"),
        &fixtures().join("valid.cpio.zst"),
        Path::new("--root"),
        &root,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = tree(&root);
    let agent = "usr/local/sbin/vgpu-firstboot";
    let stand_in = hex(&Sha256::digest(b"#!/bin/sh\necho stand-in agent\n"));
    assert_eq!(after[agent], format!("file 0755 {stand_in}"));
    // The host's own files are untouched; no temp or backup file is left.
    for (path, node) in &before {
        if path != agent {
            assert_eq!(&after[path], node, "{path}");
        }
    }
    assert!(
        after
            .keys()
            .all(|p| !p.ends_with(".tmp") && !p.contains("vgpu-bake-backup")),
        "{after:?}"
    );
}

#[test]
fn every_hostile_class_is_refused_and_the_target_is_unchanged() {
    for (class, fragment) in CLASSES {
        assert_refused(
            class,
            &fixtures().join(format!("{class}.cpio.zst")),
            fragment,
            None,
            |_| {},
            &[],
        );
    }
    // Every fixture has its class here, and its generator beside it.
    let mut on_disk: Vec<String> = fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".cpio.zst").map(str::to_owned)
        })
        .filter(|n| !CONTROLS.contains(&n.as_str()))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = CLASSES
        .iter()
        .chain(SIGNED_CLASSES)
        .map(|(c, _)| c.to_string())
        .collect();
    listed.sort();
    assert_eq!(on_disk, listed);
    for c in &on_disk {
        assert!(
            fixtures().join(format!("{c}.gen.sh")).is_file(),
            "{c}.gen.sh"
        );
        let len = fs::metadata(fixtures().join(format!("{c}.cpio.zst")))
            .unwrap()
            .len();
        assert!(len < 1 << 20, "{c}.cpio.zst is {len} bytes");
    }
    assert!(CLASSES.len() + 1 >= 24);
}

/// The class `preplanted-conflict`: the valid bundle onto a target that has
/// something in the way, deep in the bundle (after every directory and most
/// files are checked). Nothing is written.
#[test]
fn a_preplanted_conflict_leaves_the_target_byte_identical() {
    let valid = fixtures().join("valid.cpio.zst");
    type Plant = fn(&Path);
    let plants: &[(&str, Plant)] = &[
        ("a directory where a payload file goes", |root| {
            fs::create_dir_all(root.join("var/lib/vgpu-firstboot/payload/driver.run")).unwrap()
        }),
        ("a symlink where the payload directory goes", |root| {
            fs::create_dir_all(root.join("var/lib/vgpu-firstboot")).unwrap();
            symlink("/tmp", root.join("var/lib/vgpu-firstboot/payload")).unwrap();
        }),
        ("a FIFO where the plan goes", |root| {
            fs::create_dir_all(root.join("var/lib/vgpu-firstboot")).unwrap();
            let status = Command::new("mkfifo")
                .arg(root.join("var/lib/vgpu-firstboot/plan.toml"))
                .status()
                .unwrap();
            assert!(status.success());
        }),
        ("a symlink where the agent goes", |root| {
            fs::remove_file(root.join("usr/local/sbin/vgpu-firstboot")).unwrap();
            symlink("/etc/passwd", root.join("usr/local/sbin/vgpu-firstboot")).unwrap();
        }),
    ];
    for (what, plant) in plants {
        assert_refused(
            &format!("preplanted-conflict: {what}"),
            &valid,
            "",
            Some("move it out of the way and install again"),
            *plant,
            &[],
        );
    }
}

/// A bundle path that is a FIFO or a device is refused before a byte is
/// read (a FIFO would otherwise block until a writer came).
#[test]
fn a_bundle_that_is_not_a_regular_file_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.cpio.zst");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    for (path, what) in [
        (fifo.as_path(), "is a FIFO (named pipe), not a regular file"),
        (
            Path::new("/dev/zero"),
            "is a character device, not a regular file",
        ),
        (dir.path(), "is a directory, not a regular file"),
    ] {
        for cmd in ["inspect", "install"] {
            let (tx, rx) = mpsc::channel();
            let path_buf = path.to_path_buf();
            let root = dir.path().to_path_buf();
            std::thread::spawn(move || {
                let args: Vec<&Path> = if cmd == "inspect" {
                    vec![Path::new(cmd), &path_buf]
                } else {
                    vec![Path::new(cmd), &path_buf, Path::new("--root"), &root]
                };
                let _ = tx.send(vgpu_bake(&args));
            });
            // A guard against a hang, not a timing assertion.
            let out = rx
                .recv_timeout(Duration::from_secs(120))
                .unwrap_or_else(|_| panic!("{cmd} {} blocked", path.display()));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{cmd} {}", path.display());
            assert!(stderr.contains(what), "{cmd}: want {what:?} in {stderr}");
        }
    }
}

/// The checked-in fixtures are exactly what their scripts make (the zstd
/// frame is written by mknewc.py, so the bytes are the same anywhere).
#[test]
fn fixtures_match_their_generators() {
    let out = tempfile::tempdir().unwrap();
    let mut scripts = 0;
    for e in fs::read_dir(fixtures()).unwrap() {
        let script = e.unwrap().path();
        let name = script.file_name().unwrap().to_str().unwrap().to_owned();
        let Some(class) = name.strip_suffix(".gen.sh") else {
            continue;
        };
        scripts += 1;
        let status = Command::new("sh")
            .arg(&script)
            .arg(out.path())
            .status()
            .unwrap();
        assert!(status.success(), "{} failed", script.display());
        for made in fs::read_dir(out.path()).unwrap() {
            let made = made.unwrap().path();
            let file = made.file_name().unwrap().to_owned();
            assert!(
                file.to_str()
                    .unwrap()
                    .starts_with(&format!("{class}.cpio.zst")),
                "{name} wrote {}",
                made.display()
            );
            assert!(
                fs::read(&made).unwrap() == fs::read(fixtures().join(&file)).unwrap(),
                "{} is stale: run {}",
                file.display(),
                script.display()
            );
            fs::remove_file(&made).unwrap();
        }
    }
    assert_eq!(
        scripts,
        CLASSES.len() + SIGNED_CLASSES.len() + CONTROLS.len()
    );
}

/// The signed control: accepted with the test key it was signed by (inspect
/// and install, which lays the signature beside the manifest), reported as
/// signed but not verified without a key, refused with another key.
#[test]
fn the_signed_control_fixture_passes_with_its_key_only() {
    let bundle = fixtures().join("signed-valid.cpio.zst");
    let key = test_key("test.pub");
    let args = [
        Path::new("inspect"),
        &bundle,
        Path::new("--trusted-key"),
        &key,
    ];
    let out = vgpu_bake(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("signature verified: key id 99991D95F45D37EF")
            && stdout.contains("\"vgpu-bake bundle signed-valid\""),
        "{stdout}"
    );
    let out = vgpu_bake(&[Path::new("inspect"), &bundle]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.contains("not verified"), "{stdout}");

    let parent = tempfile::tempdir().unwrap();
    let root = populated_root(parent.path());
    let out = vgpu_bake(&[
        Path::new("install"),
        &bundle,
        Path::new("--root"),
        &root,
        Path::new("--trusted-key"),
        &key,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let laid = tree(&root);
    assert!(
        laid["var/lib/vgpu-firstboot/manifest.toml.minisig"].starts_with("file 0644 "),
        "{laid:?}"
    );

    assert_refused(
        "signed-valid with another key",
        &bundle,
        "the signature (key id 99991D95F45D37EF) does not verify with any trusted key",
        None,
        |_| {},
        &[Path::new("--trusted-key"), &test_key("other.pub")],
    );
}

/// Every signed class, with the test key required, is refused by inspect
/// and install, the target unchanged. The ones that are structurally sound
/// pass without a key: only the signature refuses them.
#[test]
fn every_signed_class_is_refused_with_a_trusted_key() {
    let key = test_key("test.pub");
    for (class, fragment) in SIGNED_CLASSES {
        assert_refused(
            class,
            &fixtures().join(format!("{class}.cpio.zst")),
            fragment,
            None,
            |_| {},
            &[Path::new("--trusted-key"), &key],
        );
    }
    for class in [
        "wrong-signature",
        "unsigned-with-key",
        "signature-other-manifest",
        "signature-other-bundle-comment",
        "signature-bitflip",
    ] {
        let out = vgpu_bake(&[
            Path::new("inspect"),
            &fixtures().join(format!("{class}.cpio.zst")),
        ]);
        assert!(
            out.status.success(),
            "{class} without a key: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `regenerated-manifest` without the original's `.sha256` beside it is a
/// consistent bundle: accepted without a key, refused as unsigned when a
/// key is required.
#[test]
fn a_regenerated_manifest_without_its_checksum_is_refused_when_a_key_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("regenerated-manifest.cpio.zst");
    fs::copy(fixtures().join("regenerated-manifest.cpio.zst"), &bundle).unwrap();
    let out = vgpu_bake(&[Path::new("inspect"), &bundle]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_refused(
        "regenerated-manifest without .sha256",
        &bundle,
        "it is unsigned (no var/lib/vgpu-firstboot/manifest.toml.minisig), but --trusted-key",
        None,
        |_| {},
        &[Path::new("--trusted-key"), &test_key("test.pub")],
    );
}

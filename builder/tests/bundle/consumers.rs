//! Real consumers read our bundles: the zstd CLI and GNU cpio.
//!
//! These tools are required: if one is missing the test fails and names the
//! Debian package to install (a skipped test would hide a broken format).

use std::process::{Command, Stdio};

use vgpu_bake::install::install;

use super::*;

/// Fails the test, naming the package, if `tool` does not run.
pub fn require(tool: &str, package: &str) {
    match Command::new(tool).arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => panic!(
            "`{tool}` is required by this test but is not installed or does not run: \
             install the Debian package `{package}` (apt-get install -y {package})"
        ),
    }
}

/// `zstd -dc BUNDLE | cpio ARGS` run in `cwd`: (cpio stdout, cpio stderr).
fn zstd_to_cpio(bundle: &Path, args: &[&str], cwd: &Path) -> (String, String) {
    require("zstd", "zstd");
    require("cpio", "cpio");
    let mut z = Command::new("zstd")
        .arg("-dc")
        .arg(bundle)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Command::new("cpio")
        .args(args)
        .current_dir(cwd)
        .stdin(z.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(z.wait().unwrap().success(), "zstd -dc failed");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "cpio {args:?} failed: {stderr}");
    // GNU cpio reports only the block count; anything else is a warning.
    let blocks = stderr.trim();
    assert!(
        blocks.ends_with(" blocks") || blocks.ends_with(" block"),
        "cpio {args:?} complained: {stderr}"
    );
    assert!(
        blocks.split(' ').next().unwrap().parse::<u64>().is_ok(),
        "cpio {args:?} complained: {stderr}"
    );
    (stdout, stderr)
}

/// A file tree as kinds, modes, contents and link targets.
#[derive(Debug, PartialEq, Eq)]
pub enum Node {
    Dir(u32),
    File(u32, String),
    Symlink(String),
}

pub fn tree(root: &Path) -> BTreeMap<String, Node> {
    use std::os::unix::fs::PermissionsExt;
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
        for e in fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            let meta = fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let node = if meta.file_type().is_symlink() {
                Node::Symlink(fs::read_link(&path).unwrap().to_str().unwrap().into())
            } else if meta.is_dir() {
                walk(root, &path, out);
                Node::Dir(mode)
            } else {
                Node::File(mode, digest_bytes(&fs::read(&path).unwrap()).sha256)
            };
            out.insert(rel, node);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn zstd_cli_accepts_our_bundle() {
    require("zstd", "zstd");
    let dir = tempfile::tempdir().unwrap();
    let (o, bytes) = bake(&layout_spec(dir.path(), "z", 5 << 20), dir.path(), 2);
    let t = Command::new("zstd")
        .arg("-t")
        .arg(&o.bundle)
        .output()
        .unwrap();
    assert!(
        t.status.success(),
        "zstd -t: {}",
        String::from_utf8_lossy(&t.stderr)
    );
    // The CLI's decompression equals the crate's (the frame is standard).
    let d = Command::new("zstd")
        .arg("-dc")
        .arg(&o.bundle)
        .output()
        .unwrap();
    assert!(d.status.success());
    assert!(d.stdout == zstd::decode_all(&bytes[..]).unwrap());
    // The checksum flag is on: `zstd -lv` reports it.
    let l = Command::new("zstd")
        .arg("-lv")
        .arg(&o.bundle)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&l.stdout);
    assert!(listing.contains("Check: XXH64"), "{listing}");
}

#[test]
fn gnu_cpio_lists_our_archive() {
    let dir = tempfile::tempdir().unwrap();
    let (o, _) = bake(&layout_spec(dir.path(), "list", 100_000), dir.path(), 2);
    let (stdout, _) = zstd_to_cpio(&o.bundle, &["-it"], dir.path());
    let listed: Vec<&str> = stdout.lines().collect();
    let report = inspect(&o.bundle).unwrap();
    let ours: Vec<&str> = report.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(listed, ours);
    // The golden bundle too.
    let (stdout, _) = zstd_to_cpio(
        &repo_tests().join("golden/small.cpio.zst"),
        &["-it"],
        dir.path(),
    );
    assert!(
        stdout.lines().any(|l| l == layout::UNIT_WANTS_LINK),
        "{stdout}"
    );
}

/// `zstd -dc | cpio -idm --no-absolute-filenames` and our `install` give
/// the same tree: paths, kinds, modes, contents, symlink targets.
#[test]
fn gnu_cpio_extract_matches_our_install() {
    let dir = tempfile::tempdir().unwrap();
    let spec = layout_spec(dir.path(), "same", 2 << 20);
    let opts = BakeOptions {
        mtime: 1_600_000_000,
        ..golden_opts()
    };
    let o = write_bundle(&spec, &dir.path().join("out"), &opts).unwrap();
    let by_cpio = dir.path().join("cpio");
    let by_us = dir.path().join("ours");
    fs::create_dir(&by_cpio).unwrap();
    fs::create_dir(&by_us).unwrap();
    zstd_to_cpio(&o.bundle, &["-idm", "--no-absolute-filenames"], &by_cpio);
    install(&o.bundle, &by_us).unwrap();
    let theirs = tree(&by_cpio);
    let ours = tree(&by_us);
    assert_eq!(theirs, ours);
    assert_eq!(ours.len(), o.entries);
    assert_eq!(ours[layout::STATE_DIR], Node::Dir(0o700));
    assert_eq!(
        ours[layout::PLAN_FILE],
        Node::File(
            0o600,
            o.manifest
                .get(layout::PLAN_FILE)
                .unwrap()
                .sha256
                .clone()
                .unwrap()
                .to_string()
        )
    );
    assert_eq!(
        ours[layout::UNIT_WANTS_LINK],
        Node::Symlink(layout::UNIT_WANTS_TARGET.into())
    );
    // cpio -m restored the mtime we baked in.
    let meta = fs::metadata(by_cpio.join(layout::AGENT_BIN)).unwrap();
    let mtime = meta
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    assert_eq!(mtime.as_secs(), 1_600_000_000);
}

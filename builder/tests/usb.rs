//! `vgpu-bake usb`: real ext4 images made with e2fsprogs, read back with
//! `blkid`, `dumpe2fs` and `debugfs` (no mount, no loop device).

use std::fs;
use std::path::Path;
use std::process::Command;

#[path = "support/made.rs"]
mod made;
#[path = "support/run.rs"]
mod run;
use made::{demo_bundle, fleet, s};
use run::vgpu_bake;

fn ok(args: &[&str]) -> String {
    let (code, out, err) = vgpu_bake(args);
    assert_eq!(code, 0, "vgpu-bake {}\n{out}\n{err}", args.join(" "));
    out
}

fn tool(program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {out:?}");
    out.stdout
}

fn label_of(img: &Path) -> String {
    String::from_utf8(tool("blkid", &["-p", "-o", "value", "-s", "LABEL", s(img)]))
        .unwrap()
        .trim()
        .to_owned()
}

/// A file's bytes from the image.
fn cat(img: &Path, path: &str) -> Vec<u8> {
    tool("debugfs", &["-R", &format!("cat {path}"), s(img)])
}

/// `ls -l` of a directory in the image.
fn ls(img: &Path, path: &str) -> String {
    String::from_utf8(tool("debugfs", &["-R", &format!("ls -l {path}"), s(img)])).unwrap()
}

#[test]
fn a_bundle_image_holds_it_and_its_checksum_reproducibly() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = demo_bundle(tmp.path());
    let img = tmp.path().join("usb.img");
    let line = ok(&["usb", s(&bundle), "--out", s(&img), "--label", "VGPU"]);
    assert!(
        line.starts_with(&format!("wrote {} (", img.display())),
        "{line}"
    );
    assert!(line.contains("ext4 label VGPU"), "{line}");
    assert!(
        line.contains(&format!(
            "dd if={} of=/dev/sdX bs=4M conv=fsync status=progress",
            img.display()
        )),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1);
    assert_eq!(label_of(&img), "VGPU");
    let header = String::from_utf8(tool("dumpe2fs", &["-h", s(&img)])).unwrap();
    assert!(
        header.contains("Filesystem volume name:   VGPU"),
        "{header}"
    );
    assert!(
        header.contains("Filesystem OS type:       Linux"),
        "{header}"
    );
    assert_eq!(cat(&img, "/demo.cpio.zst"), fs::read(&bundle).unwrap());
    assert_eq!(
        cat(&img, "/demo.cpio.zst.sha256"),
        fs::read(bundle.with_extension("zst.sha256")).unwrap()
    );
    let listing = ls(&img, "/");
    for l in listing.lines().filter(|l| l.contains("demo.cpio.zst")) {
        // mode 0644, owner 0:0
        assert!(l.contains("100644 (1)      0      0"), "{listing}");
    }
    // fsck finds nothing to fix.
    let fsck = Command::new("e2fsck")
        .args(["-fn", s(&img)])
        .output()
        .unwrap();
    assert!(fsck.status.success(), "{fsck:?}");

    // Again, to another file, a second later: the same bytes.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let again = tmp.path().join("again.img");
    ok(&["usb", s(&bundle), "--out", s(&again), "--label", "VGPU"]);
    assert!(
        fs::read(&img).unwrap() == fs::read(&again).unwrap(),
        "not reproducible"
    );

    // An existing --out needs --force; nothing is left beside it.
    let (code, _, err) = vgpu_bake(&["usb", s(&bundle), "--out", s(&img), "--label", "OTHER"]);
    assert_eq!(code, 1);
    assert!(err.contains("exists: pass --force"), "{err}");
    assert_eq!(label_of(&img), "VGPU");
    ok(&[
        "usb",
        s(&bundle),
        "--out",
        s(&img),
        "--label",
        "OTHER",
        "--force",
    ]);
    assert_eq!(label_of(&img), "OTHER");
    let mut names: Vec<String> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["again.img", "agent", "b", "cache", "usb.img"]);
}

#[test]
fn a_fleet_image_holds_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (dir, _) = fleet(t, &[]);
    let img = t.join("fleet.img");
    let line = ok(&["usb", s(&dir), "--out", s(&img), "--label", "VGPU-FLEET"]);
    assert!(line.contains("fleet directory"), "{line}");
    assert!(line.contains("(2 bundles)"), "{line}");
    assert_eq!(label_of(&img), "VGPU-FLEET");
    let index = fs::read_to_string(dir.join("index.toml")).unwrap();
    assert_eq!(cat(&img, "/index.toml"), index.as_bytes());
    assert_eq!(
        cat(&img, "/first-boot-hook"),
        fs::read(dir.join("first-boot-hook")).unwrap()
    );
    assert!(
        ls(&img, "/").contains("100755 (1)      0      0"),
        "the hook stays executable"
    );
    let parsed = vgpu_bake::rollout::index::Index::parse(&index).unwrap();
    for b in &parsed.bundles {
        assert_eq!(
            cat(&img, &format!("/{}", b.file)),
            fs::read(dir.join(&b.file)).unwrap()
        );
        assert_eq!(
            cat(&img, &format!("/{}.sha256", b.file)),
            fs::read(dir.join(format!("{}.sha256", b.file))).unwrap()
        );
    }
    // Reproducible from a copy made later.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let copy = t.join("copy");
    let status = Command::new("cp")
        .args(["-r", s(&dir), s(&copy)])
        .status()
        .unwrap();
    assert!(status.success());
    let again = t.join("again.img");
    ok(&["usb", s(&copy), "--out", s(&again), "--label", "VGPU-FLEET"]);
    assert!(
        fs::read(&img).unwrap() == fs::read(&again).unwrap(),
        "not reproducible"
    );

    // A bundle missing or damaged: refused, nothing written.
    let first = &parsed.bundles[0].file;
    let bytes = fs::read(copy.join(first)).unwrap();
    let mut damaged = bytes.clone();
    damaged[100] ^= 1;
    fs::write(copy.join(first), &damaged).unwrap();
    let bad = t.join("bad.img");
    let (code, _, err) = vgpu_bake(&["usb", s(&copy), "--out", s(&bad), "--label", "V"]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("{first} has sha256")), "{err}");
    assert!(err.contains("the index says"), "{err}");
    fs::remove_file(copy.join(first)).unwrap();
    let (code, _, err) = vgpu_bake(&["usb", s(&copy), "--out", s(&bad), "--label", "V"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "bundle demo: {}/{first} is missing or unreadable",
            copy.display()
        )),
        "{err}"
    );
    assert!(!bad.exists());
    // A directory without an index.
    let (code, _, err) = vgpu_bake(&["usb", s(&t.join("cache")), "--out", s(&bad), "--label", "V"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no index.toml: give a bundle file or a directory"),
        "{err}"
    );
    assert!(!bad.exists());
}

#[test]
fn bad_labels_and_bundles_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = demo_bundle(tmp.path());
    let img = tmp.path().join("usb.img");
    for label in ["", "has space", "seventeen-bytes-x", "ü"] {
        let (code, _, err) = vgpu_bake(&["usb", s(&bundle), "--out", s(&img), "--label", label]);
        assert_eq!(code, 2, "{label:?}: a bad --label is a usage error");
        assert!(err.contains("must be 1 to 16 letters"), "{err}");
    }
    // A .sha256 beside the bundle that does not match it.
    let sum = bundle.with_extension("zst.sha256");
    fs::write(&sum, format!("{}  demo.cpio.zst\n", "0".repeat(64))).unwrap();
    let (code, _, err) = vgpu_bake(&["usb", s(&bundle), "--out", s(&img), "--label", "VGPU"]);
    assert_eq!(code, 1);
    assert!(err.contains("not a valid bundle"), "{err}");
    // Not a bundle at all.
    let (code, _, err) = vgpu_bake(&[
        "usb",
        s(&tmp.path().join("agent")),
        "--out",
        s(&img),
        "--label",
        "VGPU",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("not a valid bundle"), "{err}");
    let (code, _, err) = vgpu_bake(&[
        "usb",
        s(&tmp.path().join("nothing.cpio.zst")),
        "--out",
        s(&img),
        "--label",
        "VGPU",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("nothing.cpio.zst"), "{err}");
    // A name the image would not hold as written.
    fs::remove_file(&sum).unwrap();
    let odd = tmp.path().join("my demo.cpio.zst");
    fs::copy(&bundle, &odd).unwrap();
    let (code, _, err) = vgpu_bake(&["usb", s(&odd), "--out", s(&img), "--label", "VGPU"]);
    assert_eq!(code, 1);
    assert!(err.contains("rename the copy"), "{err}");
    assert!(!img.exists());
    // mkfs.ext4 fails (a stand-in first on PATH that always fails, with
    // one of mke2fs' own messages): its stderr is in the error, and nothing
    // is left.
    let bin = tmp.path().join("bin");
    fs::create_dir(&bin).unwrap();
    let fake = bin.join("mkfs.ext4");
    fs::write(
        &fake,
        "#!/bin/sh
echo 'mke2fs: Device size reported to be zero.' >&2
exit 1
",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vgpu-bake"))
        .args(["usb", s(&bundle), "--out", s(&img), "--label", "VGPU"])
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("`mkfs.ext4 -q -F"), "{err}");
    assert!(
        err.contains("mke2fs: Device size reported to be zero."),
        "{err}"
    );
    assert!(err.contains("apt-get install e2fsprogs"), "{err}");
    assert!(!img.exists());
    let left: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".vgpu-usb"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

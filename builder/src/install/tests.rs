//! The second pass on its own: hostile archives that skip `inspect` must
//! still be refused with nothing written, a file that changed since the
//! first pass must not land, and a commit that fails part way is undone.

use crate::inspect::inspect;
use std::os::unix::fs::MetadataExt;

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use vgpu_plan::layout;

use super::*;
use crate::bundle::{BakeOptions, BundleSpec, Source, write_bundle};
use crate::hash::hex;
use crate::inspect::Problem;
use crate::newc::{Header, S_IFDIR, S_IFLNK, S_IFREG};

/// (name, mode with file type, body).
type RawEntry<'a> = (&'a str, u32, &'a [u8]);

/// A raw newc archive (no ordering or name checks), zstd-compressed.
fn raw_bundle(dir: &Path, entries: &[RawEntry<'_>]) -> PathBuf {
    let mut out = Vec::new();
    let trailer = ("TRAILER!!!", 0, &b""[..]);
    for (i, (name, mode, body)) in entries.iter().chain([&trailer]).enumerate() {
        let h = Header {
            ino: i as u32 + 1,
            mode: *mode,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: 0,
            filesize: body.len() as u32,
            devmajor: 0,
            devminor: 0,
            rdevmajor: 0,
            rdevminor: 0,
            check: 0,
            name: name.to_string(),
        };
        out.extend_from_slice(&h.encode());
        out.extend_from_slice(body);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    let path = dir.join("raw.cpio.zst");
    fs::write(&path, zstd::encode_all(&out[..], 3).unwrap()).unwrap();
    path
}

/// A real bundle with two payload files, `a.run` and `b.run`.
fn two_file_bundle(dir: &Path) -> PathBuf {
    let mut spec = BundleSpec::new("two");
    for (name, body) in [("a.run", &b"verified"[..]), ("b.run", b"the real b")] {
        spec.add_file(
            &format!("{}/{name}", layout::PAYLOAD_DIR),
            0o644,
            Source::Bytes(body.to_vec()),
        )
        .unwrap();
    }
    write_bundle(&spec, dir, &BakeOptions::default())
        .unwrap()
        .bundle
}

fn second_pass(
    bundle: &Path,
    root: &Path,
    digests: &BTreeMap<String, String>,
) -> Result<Vec<Installed>, InstallError> {
    let root_dir = Root::at(root).unwrap();
    let mut tx = Transaction::new(&root_dir);
    let laid = lay_out(
        Opened::open(bundle).unwrap(),
        &root_dir,
        Pass::Second(digests),
        &mut tx,
    )?;
    let Laid::Staged(done, _) = laid else {
        panic!("a second pass holds nothing")
    };
    tx.commit().map_err(|(_, e)| InstallError::Write {
        bundle: bundle.into(),
        root: root.into(),
        entry: String::new(),
        source: e,
    })?;
    Ok(done)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn second_pass_refuses_hostile_paths_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let link_target = outside.to_str().unwrap().to_owned();
    let abs = format!("{link_target}/abs");
    let cases: Vec<(&str, Vec<RawEntry<'_>>)> = vec![
        (
            "traversal",
            vec![("../outside/evil", S_IFREG | 0o644, b"x")],
        ),
        ("absolute", vec![(abs.as_str(), S_IFREG | 0o644, b"x")]),
        (
            "through a symlink",
            vec![
                ("etc", S_IFLNK | 0o777, link_target.as_bytes()),
                ("etc/passwd", S_IFREG | 0o644, b"x"),
            ],
        ),
        (
            "duplicate",
            vec![
                ("etc", S_IFDIR | 0o755, b""),
                ("etc", S_IFREG | 0o644, b"x"),
            ],
        ),
        ("outside the layout", vec![("evil", S_IFREG | 0o644, b"x")]),
        ("device", vec![("etc", 0o020644, b"")]),
    ];
    for (what, entries) in cases {
        let root = dir.path().join(format!("root-{}", what.replace(' ', "-")));
        fs::create_dir(&root).unwrap();
        let bundle = raw_bundle(dir.path(), &entries);
        let digests = entries
            .iter()
            .map(|(n, _, b)| (n.to_string(), hex(&Sha256::digest(b))))
            .collect();
        let err = second_pass(&bundle, &root, &digests).unwrap_err();
        assert!(
            matches!(
                err,
                InstallError::Bundle(InspectError::Entry { .. } | InspectError::Archive { .. })
            ),
            "{what}: {err}"
        );
        assert_eq!(
            names(&outside),
            Vec::<String>::new(),
            "{what}: wrote outside"
        );
        assert_eq!(names(&root), Vec::<String>::new(), "{what}: wrote inside");
    }
}

#[test]
fn a_file_that_changed_since_verification_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    let bundle = two_file_bundle(dir.path());
    let report = inspect(&bundle).unwrap();
    let mut digests: BTreeMap<String, String> = report
        .entries
        .into_iter()
        .filter_map(|e| Some((e.path, e.sha256?)))
        .collect();
    let b = format!("{}/b.run", layout::PAYLOAD_DIR);
    // What the first pass saw of b differs from what the second pass reads.
    digests.insert(b.clone(), hex(&Sha256::digest(b"what inspect saw")));
    let err = second_pass(&bundle, &root, &digests).unwrap_err();
    assert!(
        matches!(&err, InstallError::Bundle(InspectError::Entry { entry, problem: Problem::Sha256 { .. }, .. }) if *entry == b),
        "{err}"
    );
    // a was staged but never renamed into place; the directories the
    // second pass created are gone again.
    assert_eq!(names(&root), Vec::<String>::new());
}

#[test]
fn a_commit_that_fails_part_way_is_undone() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let payload = root.join(layout::PAYLOAD_DIR);
    fs::create_dir_all(&payload).unwrap();
    fs::write(payload.join("a.run"), b"the old a").unwrap();
    let old_ino = fs::metadata(payload.join("a.run")).unwrap().ino();
    let bundle = two_file_bundle(dir.path());
    let report = inspect(&bundle).unwrap();
    let digests = report
        .entries
        .into_iter()
        .filter_map(|e| Some((e.path, e.sha256?)))
        .collect();
    let root_dir = Root::at(&root).unwrap();
    let mut tx = Transaction::new(&root_dir);
    lay_out(
        Opened::open(&bundle).unwrap(),
        &root_dir,
        Pass::Second(&digests),
        &mut tx,
    )
    .unwrap();
    // Something appears where b goes after staging: a non-empty directory,
    // which no rename can replace.
    fs::create_dir_all(payload.join("b.run/x")).unwrap();
    let (entry, _) = tx.commit().unwrap_err();
    assert_eq!(entry, format!("{}/b.run", layout::PAYLOAD_DIR));
    // a, renamed into place first, is back as it was (the same inode).
    assert_eq!(fs::read(payload.join("a.run")).unwrap(), b"the old a");
    assert_eq!(fs::metadata(payload.join("a.run")).unwrap().ino(), old_ino);
    assert_eq!(names(&payload), ["a.run", "b.run"]);
    assert_eq!(names(&payload.join("b.run")), ["x"]);
}

#[test]
fn a_root_that_is_not_a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = two_file_bundle(dir.path());
    let file = dir.path().join("file");
    fs::write(&file, b"").unwrap();
    for root in [file, dir.path().join("missing")] {
        let err = install(&bundle, &root).unwrap_err();
        assert!(matches!(err, InstallError::Root { .. }), "{err}");
        assert!(err.to_string().contains("--root"), "{err}");
    }
    assert!(!dir.path().join("missing").exists());
}

/// Each entry's directory entries already refuse a symlink in their place;
/// this re-check guards against one appearing between two entries.
#[test]
fn ancestors_are_rechecked_for_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("a")).unwrap();
    std::os::unix::fs::symlink(dir.path(), root.join("a/b")).unwrap();
    fs::write(root.join("f"), b"").unwrap();
    let bundle = dir.path().join("x.cpio.zst");
    let root = Root::at(&root).unwrap();
    let ok = Target::new(&bundle, &root, "a/new");
    ok.check_ancestors().unwrap();
    for entry in ["a/b/c", "a/b/c/d", "f/x"] {
        let err = Target::new(&bundle, &root, entry)
            .check_ancestors()
            .unwrap_err();
        assert!(
            matches!(err, InstallError::Refused { .. }),
            "{entry}: {err}"
        );
    }
}

/// One pass with nothing held (as for a bundle whose guest drivers outgrow
/// the memory held before the manifest) asks for two passes, and the two
/// lay exactly what one pass lays.
#[test]
fn a_bundle_too_large_to_hold_is_laid_in_two_passes_alike() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = two_file_bundle(dir.path());
    let [one, two] = ["one", "two"].map(|n| dir.path().join(n));
    fs::create_dir(&one).unwrap();
    fs::create_dir(&two).unwrap();
    let laid_one = install(&bundle, &one).unwrap();
    let root = Root::at(&two).unwrap();
    let mut tx = Transaction::new(&root);
    let pass = Pass::One { keys: &[], hold: 0 };
    let laid = lay_out(
        Opened::open_deferred(&bundle, None).unwrap(),
        &root,
        pass,
        &mut tx,
    )
    .unwrap();
    assert!(matches!(laid, Laid::TooEarly));
    drop(tx);
    assert_eq!(
        names(&two),
        Vec::<String>::new(),
        "held entries were written"
    );
    let mut tx = Transaction::new(&root);
    let (laid_two, _) = two_passes(&bundle, &root, &[], &mut tx, None).unwrap();
    tx.commit().unwrap();
    assert_eq!(laid_one, laid_two);
    let tree = |r: &Path| {
        let mut v = Vec::new();
        for e in laid_one.iter().filter(|e| e.kind == "file") {
            v.push((e.path.clone(), fs::read(r.join(&e.path)).unwrap()));
        }
        v
    };
    assert_eq!(tree(&one), tree(&two));
}

/// A conflict under the payload, which streams after the manifest, is
/// found by the conflict pass before anything is staged.
#[test]
fn a_conflict_after_the_manifest_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = two_file_bundle(dir.path());
    let root = dir.path().join("root");
    let payload = root.join(layout::PAYLOAD_DIR);
    fs::create_dir_all(payload.join("b.run")).unwrap();
    let err = install(&bundle, &root).unwrap_err();
    assert!(
        matches!(&err, InstallError::Refused { entry, .. } if entry.ends_with("b.run")),
        "{err}"
    );
    assert_eq!(names(&payload), ["b.run"]);
    assert_eq!(names(&root), ["var"]);
    assert_eq!(names(&root.join("var/lib/vgpu-firstboot")), ["payload"]);
}

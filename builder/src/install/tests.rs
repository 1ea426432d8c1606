//! The second pass on its own: hostile archives that skip `inspect` must
//! still be refused, and a file that changed since the first pass must not
//! land.

use super::*;
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

fn second_pass(
    bundle: &Path,
    root: &Path,
    digests: &BTreeMap<String, String>,
) -> Result<Vec<Installed>, InstallError> {
    lay_out(Opened::open(bundle).unwrap(), root, digests)
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
                ("link", S_IFLNK | 0o777, link_target.as_bytes()),
                ("link/evil", S_IFREG | 0o644, b"x"),
            ],
        ),
        (
            "duplicate",
            vec![("d", S_IFDIR | 0o755, b""), ("d", S_IFREG | 0o644, b"x")],
        ),
        ("device", vec![("dev", 0o020644, b"")]),
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
            matches!(err, InstallError::Bundle(InspectError::Entry { .. })),
            "{what}: {err}"
        );
        assert_eq!(
            names(&outside),
            Vec::<String>::new(),
            "{what}: wrote outside"
        );
    }
}

#[test]
fn a_file_that_changed_since_verification_is_not_renamed_into_place() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    let bundle = raw_bundle(
        dir.path(),
        &[
            ("a", S_IFREG | 0o644, b"verified"),
            ("b", S_IFREG | 0o644, b"swapped after verification"),
        ],
    );
    let digests = BTreeMap::from([
        ("a".to_string(), hex(&Sha256::digest(b"verified"))),
        ("b".to_string(), hex(&Sha256::digest(b"what inspect saw"))),
    ]);
    let err = second_pass(&bundle, &root, &digests).unwrap_err();
    assert!(
        matches!(&err, InstallError::Bundle(InspectError::Entry { entry, problem: Problem::Sha256 { .. }, .. }) if entry == "b"),
        "{err}"
    );
    // `a` landed whole; `b` and its temp file are gone.
    assert_eq!(names(&root), ["a"]);
    assert_eq!(fs::read(root.join("a")).unwrap(), b"verified");
}

#[test]
fn a_root_that_is_not_a_directory_is_refused() {
    use crate::bundle::{BakeOptions, BundleSpec, Source, write_bundle};
    let dir = tempfile::tempdir().unwrap();
    let mut spec = BundleSpec::new("r");
    spec.add_file("etc/a", 0o644, Source::Bytes(b"a".to_vec()))
        .unwrap();
    let out = write_bundle(&spec, dir.path(), &BakeOptions::default()).unwrap();
    let file = dir.path().join("file");
    fs::write(&file, b"").unwrap();
    for root in [file, dir.path().join("missing")] {
        let err = install(&out.bundle, &root).unwrap_err();
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

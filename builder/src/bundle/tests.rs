use std::io::Read;

use vgpu_plan::manifest::{ManifestEntry, SCHEMA};

use super::*;
use crate::hash::digest_bytes;
use crate::newc::NewcReader;

fn bytes(b: &[u8]) -> Source {
    Source::Bytes(b.to_vec())
}

fn declared(path: &Path, size: u64) -> Source {
    Source::File {
        path: path.to_path_buf(),
        sha256: "AB".repeat(32),
        md5: Some("CD".repeat(16)),
        size,
        stamp: None,
    }
}

#[test]
fn add_rejects_unsafe_paths() {
    let mut spec = BundleSpec::new("t");
    for bad in [
        "", "/etc/x", "../x", "a/../b", "a/..", "a//b", "a/", "./a", "a/./b", "a\0b",
    ] {
        let err = spec.add_file(bad, 0o644, bytes(b"x")).unwrap_err();
        assert!(matches!(err, BundleError::BadPath { .. }), "{bad:?}: {err}");
        assert!(spec.add_dir(bad, 0o755).is_err(), "{bad:?}");
        assert!(spec.add_symlink(bad, "t").is_err(), "{bad:?}");
    }
    let long = "a/".repeat(2048) + "b";
    assert!(spec.add_dir(&long, 0o755).is_err());
    assert!(spec.add_symlink("l", "").is_err());
    assert!(spec.entries().is_empty());
}

#[test]
fn add_rejects_clashes() {
    let mut spec = BundleSpec::new("t");
    spec.add_file("etc/a", 0o644, bytes(b"x")).unwrap();
    spec.add_symlink("etc/link", "/tmp").unwrap();
    let err = spec.add_file("etc/a", 0o644, bytes(b"y")).unwrap_err();
    assert!(matches!(err, BundleError::Duplicate { .. }), "{err}");
    let err = spec.add_dir("etc/a", 0o755).unwrap_err();
    assert!(matches!(err, BundleError::Duplicate { .. }), "{err}");
    let err = spec.add_file("etc/a/b", 0o644, bytes(b"y")).unwrap_err();
    assert!(
        matches!(&err, BundleError::UnderNonDir { ancestor, kind: "file", .. } if ancestor == "etc/a"),
        "{err}"
    );
    let err = spec.add_file("etc/link/x", 0o644, bytes(b"y")).unwrap_err();
    assert!(
        matches!(
            &err,
            BundleError::UnderNonDir {
                kind: "symlink",
                ..
            }
        ),
        "{err}"
    );
    let err = spec.add_dir("etc/link/d/e", 0o755).unwrap_err();
    assert!(matches!(err, BundleError::UnderNonDir { .. }), "{err}");
    // A file or symlink where entries already live below.
    let err = spec.add_file("etc", 0o644, bytes(b"y")).unwrap_err();
    assert!(
        matches!(&err, BundleError::HasChildren { child, .. } if child == "etc/a"),
        "{err}"
    );
    assert!(spec.add_symlink("etc", "x").is_err());
    // A directory above existing entries is fine: it sets their parent's mode.
    spec.add_dir("etc", 0o700).unwrap();
    let err = spec
        .add_file(layout::MANIFEST_FILE, 0o644, bytes(b"x"))
        .unwrap_err();
    assert!(matches!(err, BundleError::Reserved { .. }), "{err}");
    assert_eq!(spec.entries().len(), 3);
}

#[test]
fn declared_digests_are_checked_and_lowercased() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = BundleSpec::new("t");
    spec.add_file("a", 0o644, declared(dir.path(), 1)).unwrap();
    let Entry::File {
        source: Source::File { sha256, md5, .. },
        ..
    } = &spec.entries()["a"]
    else {
        panic!()
    };
    assert_eq!(sha256, &"ab".repeat(32));
    assert_eq!(md5.as_deref(), Some("cd".repeat(16).as_str()));
    let mut short = declared(dir.path(), 1);
    if let Source::File { sha256, .. } = &mut short {
        sha256.pop();
    }
    let err = spec.add_file("b", 0o644, short).unwrap_err();
    assert!(
        matches!(err, BundleError::BadDigest { what: "sha256", .. }),
        "{err}"
    );
    let mut bad_md5 = declared(dir.path(), 1);
    if let Source::File { md5, .. } = &mut bad_md5 {
        *md5 = Some("zz".repeat(16));
    }
    let err = spec.add_file("b", 0o644, bad_md5).unwrap_err();
    assert!(
        matches!(err, BundleError::BadDigest { what: "md5", .. }),
        "{err}"
    );
}

#[test]
fn files_of_4_gib_or_more_are_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = BundleSpec::new("t");
    let err = spec
        .add_file("big.run", 0o644, declared(dir.path(), 1 << 32))
        .unwrap_err();
    assert!(
        matches!(err, BundleError::TooLarge { size, .. } if size == 1 << 32),
        "{err}"
    );
    assert!(err.to_string().contains("4 GiB"), "{err}");
    spec.add_file("max.run", 0o644, declared(dir.path(), u64::from(u32::MAX)))
        .unwrap();
}

#[test]
fn manifest_lists_every_entry_with_synthesised_parents() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = BundleSpec::new("demo");
    spec.add_file("z/run", 0o100755, declared(dir.path(), 9))
        .unwrap();
    spec.add_file("a/plan.toml", 0o600, bytes(b"abc")).unwrap();
    spec.add_dir("a", 0o700).unwrap();
    spec.add_symlink("a/link", "plan.toml").unwrap();
    let m = spec.manifest();
    assert_eq!((m.schema, m.name.as_str()), (SCHEMA, "demo"));
    assert_eq!(
        m.entries,
        [
            ManifestEntry::dir("a", 0o700),
            ManifestEntry::symlink("a/link", "plan.toml"),
            ManifestEntry::file(
                "a/plan.toml",
                0o600,
                3,
                digest_bytes(b"abc").sha256.parse().unwrap()
            ),
            ManifestEntry::dir("z", 0o755),
            ManifestEntry::file("z/run", 0o755, 9, "ab".repeat(32).parse().unwrap()),
        ]
    );
}

/// Reads a written bundle back: (path, mode, body) in archive order.
fn read_back(bundle: &Path) -> Vec<(String, u32, Vec<u8>)> {
    let decoder = zstd::Decoder::new(File::open(bundle).unwrap()).unwrap();
    let mut r = NewcReader::new(decoder);
    let mut out = Vec::new();
    while let Some(mut e) = r.next_entry().unwrap() {
        let mut body = Vec::new();
        e.read_to_end(&mut body).unwrap();
        out.push((e.header.name.clone(), e.header.mode, body));
    }
    out
}

#[test]
fn write_synthesises_parents_and_adds_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = BundleSpec::new("synth");
    spec.add_file("usr/local/sbin/agent", 0o755, bytes(b"#!"))
        .unwrap();
    spec.add_dir("usr/local", 0o750).unwrap();
    spec.add_symlink("etc/x.wants/a", "../a").unwrap();
    spec.add_file("etc-z", 0o644, bytes(b"")).unwrap();
    let out = write_bundle(&spec, dir.path(), &BakeOptions::default()).unwrap();
    let got = read_back(&out.bundle);
    let names: Vec<(&str, u32)> = got.iter().map(|(n, m, _)| (n.as_str(), *m)).collect();
    assert_eq!(
        names,
        [
            ("etc", 0o040755),
            // '-' sorts before '/': byte order, and still parents first.
            ("etc-z", 0o100644),
            ("etc/x.wants", 0o040755),
            ("etc/x.wants/a", 0o120777),
            ("usr", 0o040755),
            ("usr/local", 0o040750),
            ("usr/local/sbin", 0o040755),
            ("usr/local/sbin/agent", 0o100755),
            ("var", 0o040755),
            ("var/lib", 0o040755),
            ("var/lib/vgpu-firstboot", 0o040755),
            (layout::MANIFEST_FILE, 0o100644),
        ]
    );
    assert_eq!(got[3].2, b"../a");
    assert_eq!(out.entries, got.len());
    assert_eq!(got[11].2, spec.manifest().to_toml().as_bytes());
    assert_eq!(out.payload_digests.len(), 3);
}

#[test]
fn write_refuses_bad_names_and_a_manifest_path_that_clashes() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["", "a/b", ".hidden"] {
        let err =
            write_bundle(&BundleSpec::new(name), dir.path(), &BakeOptions::default()).unwrap_err();
        assert!(
            matches!(err, BundleError::BadName { .. }),
            "{name:?}: {err}"
        );
    }
    let mut spec = BundleSpec::new("clash");
    spec.add_file("var/lib", 0o644, bytes(b"a file where a dir goes"))
        .unwrap();
    let err = write_bundle(&spec, dir.path(), &BakeOptions::default()).unwrap_err();
    assert!(matches!(err, BundleError::UnderNonDir { .. }), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn missing_or_resized_sources_fail_before_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut spec = BundleSpec::new("pre");
    spec.add_file("gone", 0o644, declared(&dir.path().join("nope"), 3))
        .unwrap();
    let err = write_bundle(&spec, &out, &BakeOptions::default()).unwrap_err();
    assert!(matches!(err, BundleError::Source { .. }), "{err}");
    assert!(err.to_string().contains("nope"), "{err}");

    let real = dir.path().join("real");
    std::fs::write(&real, b"four").unwrap();
    let mut spec = BundleSpec::new("pre");
    spec.add_file("real", 0o644, declared(&real, 3)).unwrap();
    let err = write_bundle(&spec, &out, &BakeOptions::default()).unwrap_err();
    assert!(
        matches!(&err, BundleError::Mismatch { what: "size", expected, actual, .. } if expected == "3" && actual == "4"),
        "{err}"
    );
    assert!(!out.exists() || std::fs::read_dir(&out).unwrap().count() == 0);
}

#[test]
fn default_options_are_deterministic_settings() {
    let o = BakeOptions::default();
    assert_eq!((o.mtime, o.level), (0, 3));
    assert!(o.workers >= 1);
    assert!(
        format!("{:?}", bytes(&[0; 4096])).len() < 40,
        "Debug of big bytes is short"
    );
}

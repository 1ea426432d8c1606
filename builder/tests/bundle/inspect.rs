//! `inspect`: a good bundle, and bundles that differ from their manifest,
//! are truncated, corrupt or sit beside a checksum file that does not match.

use super::*;

/// Writes a bundle by hand: `files` are the archive's regular files (parent
/// directories synthesised, mode 0755), and the manifest lists `listed`
/// (and every synthesised directory), so the two can disagree.
fn hand_bundle(out: &Path, files: &[(&str, u32, &[u8])], listed: &[(&str, u32, &[u8])]) {
    let mut all: BTreeMap<String, Option<(u32, &[u8])>> = BTreeMap::new();
    let paths = files.iter().chain(listed).map(|(p, _, _)| *p);
    for path in paths.chain([layout::MANIFEST_FILE]) {
        for (i, _) in path.match_indices('/') {
            all.entry(path[..i].to_string()).or_insert(None);
        }
    }
    let mut entries: Vec<ManifestEntry> = all
        .keys()
        .map(|dir| ManifestEntry::dir(dir.clone(), 0o755))
        .chain(listed.iter().map(|(path, mode, body)| {
            ManifestEntry::file(
                path.to_string(),
                *mode,
                body.len() as u64,
                digest_bytes(body).sha256.parse().unwrap(),
            )
        }))
        .collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let manifest = Manifest {
        schema: SCHEMA,
        name: "hand".into(),
        entries,
    };
    let text = manifest.to_toml().into_bytes();
    for (path, mode, body) in files.iter().copied() {
        all.insert(path.into(), Some((mode, body)));
    }
    all.insert(layout::MANIFEST_FILE.into(), Some((0o644, &text)));
    let mut w = NewcWriter::new(Vec::new(), 0).unwrap();
    for (path, e) in &all {
        match e {
            None => w.append_dir(path, 0o755).unwrap(),
            Some((mode, body)) => w.append_file(path, *mode, body).unwrap(),
        }
    }
    let archive = w.finish().unwrap();
    fs::write(out, zstd::encode_all(&archive[..], 3).unwrap()).unwrap();
}

#[test]
fn inspect_verifies_a_good_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let spec = layout_spec(dir.path(), "good", 200_000);
    let (o, _) = bake(&spec, dir.path(), 2);
    let r = inspect(&o.bundle).unwrap();
    assert_eq!(r.bundle_sha256, o.sha256);
    assert_eq!(r.manifest, o.manifest);
    assert_eq!(
        r.plan_toml.as_deref(),
        Some("schema = 1\nname = \"test\"\n")
    );
    assert_eq!(r.entries.len(), o.entries);
    let paths: Vec<&str> = r.entries.iter().map(|e| e.path.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "archive order is byte order");
    let link = r
        .entries
        .iter()
        .find(|e| e.path == layout::UNIT_WANTS_LINK)
        .unwrap();
    assert_eq!(
        link.kind,
        EntryKind::Symlink {
            target: layout::UNIT_WANTS_TARGET.into()
        }
    );
    let state = r
        .entries
        .iter()
        .find(|e| e.path == layout::STATE_DIR)
        .unwrap();
    assert_eq!((state.kind.clone(), state.mode), (EntryKind::Dir, 0o700));
    let verified: Vec<&str> = r
        .entries
        .iter()
        .filter(|e| e.verified)
        .map(|e| e.path.as_str())
        .collect();
    // Every entry is listed and checked, except the manifest itself.
    let listed: Vec<&str> = o.manifest.entries.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(verified, listed);
    assert_eq!(r.checksum, Checksum::Matched(o.sha256_file.clone()));

    let human = render_report(&r, false);
    assert_eq!(human.lines().count(), r.entries.len() + 2, "{human}");
    assert!(
        human.contains(&format!(
            "0755 file    {:>12}  {}  ok (sha256)\n",
            TEST_AGENT.len(),
            layout::AGENT_BIN
        )),
        "{human}"
    );
    assert!(
        human.contains("-> ../vgpu-firstboot.service  ok"),
        "{human}"
    );
    let summary: Vec<&str> = human.lines().rev().take(2).collect();
    assert!(summary[1].contains(&o.sha256), "{human}");
    assert!(
        summary[0].contains(&format!("{} matches", o.sha256_file.display())),
        "{human}"
    );
    let json: serde_json::Value = serde_json::from_str(&render_report(&r, true)).unwrap();
    assert_eq!(json["schema"], vgpu_bake::inspect::JSON_SCHEMA);
    assert_eq!(json["bundle-sha256"], o.sha256.as_str());
    assert_eq!(json["name"], "good");
    assert_eq!(json["entries"].as_array().unwrap().len(), r.entries.len());
    assert_eq!(json["entries"][0]["path"], "etc");
    assert_eq!(json["entries"][0]["mode"], "0755");
    assert_eq!(json["files"], 7);
    assert_eq!(json["symlinks"], 1);
    assert_eq!(json["ok"], true);
    assert_eq!(
        json["checksum-file"],
        o.sha256_file.display().to_string().as_str()
    );
    assert_eq!(json["has-plan"], r.plan_toml.is_some());
    let bytes: u64 = r
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .map(|e| e.size)
        .sum();
    assert_eq!(json["file-bytes"], bytes);
}

fn inspect_err(bundle: &Path) -> (InspectError, String) {
    let err = inspect(bundle).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&bundle.display().to_string()),
        "names the bundle: {msg}"
    );
    assert!(msg.contains("re-bake"), "says what to do: {msg}");
    (err, msg)
}

#[test]
fn inspect_rejects_altered_file_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("altered.cpio.zst");
    let entry = "var/lib/vgpu-firstboot/payload/a.run";
    hand_bundle(
        &bundle,
        &[(entry, 0o755, b"tampered bytes")],
        &[(entry, 0o755, b"original bytes")],
    );
    let (err, msg) = inspect_err(&bundle);
    assert!(
        matches!(&err, InspectError::Entry { entry: e, problem: Problem::Sha256 { .. }, .. } if e == entry),
        "{msg}"
    );
    assert!(msg.contains(entry), "{msg}");

    // Same bytes, different mode: refused on the header, before the body.
    hand_bundle(&bundle, &[(entry, 0o750, b"x")], &[(entry, 0o755, b"x")]);
    let (err, msg) = inspect_err(&bundle);
    assert!(
        matches!(&err, InspectError::Entry { entry: e, problem: Problem::Mode { .. }, .. } if e == entry),
        "{msg}"
    );
    // A mode no bundle carries, even when the manifest agrees.
    hand_bundle(&bundle, &[(entry, 0o777, b"x")], &[(entry, 0o755, b"x")]);
    let (err, msg) = inspect_err(&bundle);
    assert!(
        matches!(&err, InspectError::Entry { entry: e, problem: Problem::BadMode { .. }, .. } if e == entry),
        "{msg}"
    );
    assert!(msg.contains("world-writable"), "{msg}");
    // A header size that differs from the manifest: refused before the body.
    hand_bundle(
        &bundle,
        &[(entry, 0o755, b"longer body")],
        &[(entry, 0o755, b"x")],
    );
    let (err, msg) = inspect_err(&bundle);
    assert!(
        matches!(&err, InspectError::Entry { entry: e, problem: Problem::Size { expected: 1, actual: 11 }, .. } if e == entry),
        "{msg}"
    );
}

const LISTED: &str = "var/lib/vgpu-firstboot/payload/listed";
const SNEAKY: &str = "var/lib/vgpu-firstboot/payload/sneaky";
const GONE: &str = "var/lib/vgpu-firstboot/payload/gone";

#[test]
fn inspect_rejects_extra_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("extra.cpio.zst");
    hand_bundle(
        &bundle,
        &[(LISTED, 0o644, b"a"), (SNEAKY, 0o644, b"b")],
        &[(LISTED, 0o644, b"a")],
    );
    let (err, msg) = inspect_err(&bundle);
    assert!(
        matches!(&err, InspectError::Entry { entry, problem: Problem::NotInManifest, .. } if entry == SNEAKY),
        "{msg}"
    );
    // Listed but missing: refused at the first entry that sorts after it.
    hand_bundle(
        &bundle,
        &[(LISTED, 0o644, b"a")],
        &[(GONE, 0o644, b"b"), (LISTED, 0o644, b"a")],
    );
    let (err, msg) = inspect_err(&bundle);
    assert!(
        matches!(&err, InspectError::Entry { entry, problem: Problem::Missing(_), .. } if entry == GONE),
        "{msg}"
    );
    // ... or at the trailer.
    hand_bundle(
        &bundle,
        &[(LISTED, 0o644, b"a")],
        &[(LISTED, 0o644, b"a"), (SNEAKY, 0o644, b"b")],
    );
    let (err, msg) = inspect_err(&bundle);
    assert!(
        matches!(&err, InspectError::Entry { entry, problem: Problem::Missing(_), .. } if entry == SNEAKY),
        "{msg}"
    );
    // A path outside the layout: refused on its header even if listed.
    hand_bundle(
        &bundle,
        &[("etc/passwd", 0o644, b"root::0:0::/:/bin/sh\n")],
        &[],
    );
    let (err, msg) = inspect_err(&bundle);
    assert!(
        matches!(&err, InspectError::Entry { entry, problem: Problem::Layout(_), .. } if entry == "etc/passwd"),
        "{msg}"
    );
}

#[test]
fn inspect_rejects_truncated_and_corrupt_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let spec = layout_spec(dir.path(), "t", 300_000);
    let (_, bytes) = bake(&spec, &dir.path().join("out"), 2);
    let bundle = dir.path().join("t.cpio.zst");
    for cut in [bytes.len() / 2, bytes.len() - 1, 20] {
        fs::write(&bundle, &bytes[..cut]).unwrap();
        let (err, msg) = inspect_err(&bundle);
        assert!(matches!(err, InspectError::Read { .. }), "cut {cut}: {msg}");
        assert!(msg.contains("truncated or corrupt"), "{msg}");
    }
    // Flip bytes in the middle: zstd's block decoding catches it, or the
    // entry's sha256 does (entries are checked as they stream, before the
    // frame's checksum at its end is reached).
    let mut corrupt = bytes.clone();
    let mid = corrupt.len() / 2;
    for b in &mut corrupt[mid..mid + 16] {
        *b ^= 0x5a;
    }
    fs::write(&bundle, &corrupt).unwrap();
    let (err, msg) = inspect_err(&bundle);
    assert!(
        matches!(
            err,
            InspectError::Read { .. }
                | InspectError::Entry {
                    problem: Problem::Sha256 { .. },
                    ..
                }
        ),
        "{msg}"
    );
    // Not zstd at all.
    fs::write(&bundle, b"this is not a zstd stream").unwrap();
    let (err, msg) = inspect_err(&bundle);
    assert!(matches!(err, InspectError::Read { .. }), "{msg}");
    // Garbage after the frame.
    let mut trailing = bytes.clone();
    trailing.extend_from_slice(b"junk");
    fs::write(&bundle, &trailing).unwrap();
    inspect_err(&bundle);
}

#[test]
fn inspect_rejects_a_bad_cpio_magic() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = NewcWriter::new(Vec::new(), 0).unwrap();
    w.append_dir("etc", 0o755).unwrap();
    let mut archive = w.finish().unwrap();
    archive[..6].copy_from_slice(b"070707"); // the old portable format
    let bundle = dir.path().join("magic.cpio.zst");
    fs::write(&bundle, zstd::encode_all(&archive[..], 3).unwrap()).unwrap();
    let (err, msg) = inspect_err(&bundle);
    assert!(
        matches!(
            err,
            InspectError::Archive {
                source: NewcError::BadMagic { offset: 0, .. },
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains("070701"), "{msg}");
    // A valid archive without a manifest.
    let mut w = NewcWriter::new(Vec::new(), 0).unwrap();
    w.append_dir("etc", 0o755).unwrap();
    let archive = w.finish().unwrap();
    fs::write(&bundle, zstd::encode_all(&archive[..], 3).unwrap()).unwrap();
    let (err, msg) = inspect_err(&bundle);
    assert!(
        matches!(&err, InspectError::Entry { entry, problem: Problem::Missing(_), .. } if entry == layout::MANIFEST_FILE),
        "{msg}"
    );
}

/// `NAME.cpio.zst.sha256` beside a bundle is checked when it is there: a
/// mismatch, another file's name or a malformed line is refused naming both
/// files; without one the report says nothing was checked.
#[test]
fn inspect_checks_the_sha256_file_beside_the_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let (o, bytes) = bake(&layout_spec(dir.path(), "sums", 10_000), dir.path(), 1);
    let sums = o.sha256_file.clone();
    assert_eq!(sums, vgpu_bake::inspect::checksum_path(&o.bundle));
    assert_eq!(
        inspect(&o.bundle).unwrap().checksum,
        Checksum::Matched(sums.clone())
    );

    let good = fs::read_to_string(&sums).unwrap();
    let other = "0".repeat(64);
    let cases = [
        (
            format!("{other}  sums.cpio.zst\n"),
            "the checksum file says 0000",
        ),
        (
            good.replace("sums.cpio.zst", "other.cpio.zst"),
            "not of \"sums.cpio.zst\"",
        ),
        ("not a checksum\n".to_string(), "as sha256sum writes it"),
        (format!("{good}{good}"), "as sha256sum writes it"),
    ];
    for (text, want) in cases {
        fs::write(&sums, &text).unwrap();
        let err = inspect(&o.bundle).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, InspectError::Checksum { .. }), "{msg}");
        assert!(msg.contains(want), "want {want:?} in {msg}");
        assert!(msg.contains(&sums.display().to_string()), "{msg}");
        assert!(msg.contains(&o.bundle.display().to_string()), "{msg}");
    }
    // The sha256sum binary form (`HEX *NAME`) and upper-case hex are fine.
    fs::write(
        &sums,
        good.to_uppercase()
            .replace("  SUMS.CPIO.ZST", " *sums.cpio.zst"),
    )
    .unwrap();
    assert!(inspect(&o.bundle).is_ok());
    // A bundle altered after baking, next to its original checksum.
    let mut altered = bytes.clone();
    let n = altered.len();
    altered[n - 5] ^= 1;
    fs::write(&o.bundle, &altered).unwrap();
    fs::write(&sums, &good).unwrap();
    let msg = inspect(&o.bundle).unwrap_err().to_string();
    assert!(msg.contains("does not match its checksum file"), "{msg}");
    // Absent: not checked, and the report says so.
    fs::write(&o.bundle, &bytes).unwrap();
    fs::remove_file(&sums).unwrap();
    let r = inspect(&o.bundle).unwrap();
    assert_eq!(r.checksum, Checksum::Absent(sums.clone()));
    assert!(render_report(&r, false).contains("absent: the bundle's sha256 was not checked"));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&render_report(&r, true)).unwrap()["checksum-file"],
        serde_json::Value::Null
    );
    // A checksum "file" that is a FIFO is refused, not waited on.
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&sums)
            .status()
            .unwrap()
            .success()
    );
    let msg = inspect(&o.bundle).unwrap_err().to_string();
    assert!(
        msg.contains("is a FIFO (named pipe), not a regular file"),
        "{msg}"
    );
}

/// The signature (written by a signed bake) is the one entry besides the
/// manifest a bundle may hold unlisted (a real one: `builder/tests/signing.rs`);
/// it must parse as a minisign signature even when no key is required, and it
/// is capped like the other small fixed files.
#[test]
fn the_signature_is_unlisted_parsed_and_capped() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("sig.cpio.zst");
    let payload = "var/lib/vgpu-firstboot/payload/a.run";
    let sig = vec![b's'; 200];
    hand_bundle(
        &bundle,
        &[
            (payload, 0o644, b"a"),
            (layout::SIGNATURE_FILE, 0o644, &sig),
        ],
        &[(payload, 0o644, b"a")],
    );
    let (err, msg) = inspect_err(&bundle);
    assert!(matches!(&err, InspectError::Signature(_)), "{msg}");
    assert!(msg.contains("sig.cpio.zst"), "{msg}");
    let big = vec![b's'; vgpu_bake::inspect::MAX_SMALL as usize + 1];
    hand_bundle(
        &bundle,
        &[
            (payload, 0o644, b"a"),
            (layout::SIGNATURE_FILE, 0o644, &big),
        ],
        &[(payload, 0o644, b"a")],
    );
    let (err, msg) = inspect_err(&bundle);
    assert!(
        matches!(&err, InspectError::Entry { entry, problem: Problem::TooLarge { .. }, .. } if entry == layout::SIGNATURE_FILE),
        "{msg}"
    );
}

/// After the trailer only NUL padding up to the next 512-byte boundary may
/// follow (GNU cpio pads to blocks); one byte more, or anything else, is
/// refused.
#[test]
fn only_block_padding_may_follow_the_trailer() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = bake(&layout_spec(dir.path(), "pad", 5000), dir.path(), 1);
    let archive = zstd::decode_all(&bytes[..]).unwrap();
    let pad = (512 - archive.len() % 512) % 512;
    assert!(pad > 0, "the writer does not pad: {} bytes", archive.len());
    let bundle = dir.path().join("padded.cpio.zst");
    let with = |tail: &[u8]| {
        let mut a = archive.clone();
        a.extend_from_slice(tail);
        fs::write(&bundle, zstd::encode_all(&a[..], 3).unwrap()).unwrap();
    };
    with(&vec![0; pad]);
    inspect(&bundle).unwrap();
    with(&vec![0; pad + 1]);
    let (err, msg) = inspect_err(&bundle);
    assert!(matches!(err, InspectError::Trailing { .. }), "{msg}");
    assert!(
        msg.contains("more NUL bytes than the block padding"),
        "{msg}"
    );
    with(b"\0\0x");
    let (err, msg) = inspect_err(&bundle);
    assert!(matches!(err, InspectError::Trailing { .. }), "{msg}");
    assert!(msg.contains("data after the TRAILER!!! entry"), "{msg}");
}

/// Entries before the manifest (the agent, its unit) are compared with it
/// as soon as it is read: altered agent bytes are refused naming the agent.
#[test]
fn entries_before_the_manifest_are_checked_when_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("agent.cpio.zst");
    hand_bundle(
        &bundle,
        &[(layout::AGENT_BIN, 0o755, b"a trojan agent!")],
        &[(layout::AGENT_BIN, 0o755, b"the baked agent")],
    );
    let (err, msg) = inspect_err(&bundle);
    assert!(
        matches!(&err, InspectError::Entry { entry, problem: Problem::Sha256 { .. }, .. } if entry == layout::AGENT_BIN),
        "{msg}"
    );
    // Listed before the manifest but never in the archive.
    hand_bundle(
        &bundle,
        &[(layout::PLAN_FILE, 0o600, b"p")],
        &[
            (layout::AGENT_BIN, 0o755, b"x"),
            (layout::PLAN_FILE, 0o600, b"p"),
        ],
    );
    let (err, msg) = inspect_err(&bundle);
    assert!(
        matches!(&err, InspectError::Entry { entry, problem: Problem::Missing(_), .. } if entry == layout::AGENT_BIN),
        "{msg}"
    );
}

/// A secret (the licensing token) is mode 0600 in the bundle, flagged in
/// the manifest, and `inspect` shows it without its digest, in both forms.
#[test]
fn a_secret_is_flagged_and_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = layout_spec(dir.path(), "secret", 1000);
    let token = b"eyJzZWNyZXQ.dG9rZW4.c2ln\n";
    let rel = format!(
        "{}/licensing/client_configuration_token.tok",
        layout::PAYLOAD_DIR
    );
    spec.add_secret_file(&rel, Source::Bytes(token.to_vec()))
        .unwrap();
    let out = dir.path().join("out");
    let (o, _) = bake(&spec, &out, 1);
    let report = inspect(&o.bundle).unwrap();
    let listed = report.manifest.get(&rel).unwrap();
    assert!(listed.secret);
    assert_eq!(listed.mode, "0600");
    assert!(
        report.manifest.entries.iter().filter(|e| e.secret).count() == 1,
        "only the token is secret"
    );
    let sha = digest_bytes(token).sha256;
    let text = render_report(&report, false);
    let line = text
        .lines()
        .find(|l| l.contains("client_configuration_token"))
        .unwrap();
    assert!(line.starts_with("0600 file"), "{line}");
    assert!(line.ends_with("ok (sha256), secret, redacted"), "{line}");
    let json = render_report(&report, true);
    assert!(
        !text.contains(&sha) && !json.contains(&sha),
        "the digest is not shown"
    );
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let entry = doc["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == rel.as_str())
        .unwrap();
    assert_eq!(entry["secret"], true);
    assert!(entry["sha256"].is_null());
    let other = doc["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == layout::PLAN_FILE)
        .unwrap();
    assert_eq!(other["secret"], false);
    assert!(other["sha256"].is_string());
}

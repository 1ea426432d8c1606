//! Fuzzing `vgpu-bake inspect` end to end (proptest, stable Rust): the demo
//! bundle, decompressed, mutated (flipped bytes, cuts, inserted and removed
//! bytes) and compressed again, must be accepted or refused with an error,
//! never a panic; and a change to any byte of a file's body must be
//! refused (the manifest's sha256 covers it). `cargo test` runs a short
//! pass; `VGPU_FUZZ_SECS=600` (or `tests/fuzz/run.sh`) a long one.

#[path = "../../tests/fuzz/support.rs"]
mod support;

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use support::{apply, edits, fuzz};
use vgpu_bake::inspect::inspect;
use vgpu_bake::newc::{NewcReader, S_IFMT, S_IFREG};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The demo bundle, baked by the real binary (with a stand-in agent),
/// decompressed.
fn demo_archive(dir: &Path) -> Vec<u8> {
    std::fs::write(dir.join("agent"), "#!/bin/sh\necho fake agent\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vgpu-bake"))
        .args(["bake", "profiles/demo.toml", "--out"])
        .arg(dir.join("out"))
        .arg("--cache")
        .arg(dir.join("cache"))
        .arg("--agent")
        .arg(dir.join("agent"))
        .current_dir(workspace())
        .env("SOURCE_DATE_EPOCH", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle = dir.join("out/demo.cpio.zst");
    inspect(&bundle).expect("the demo bundle inspects clean");
    zstd::decode_all(std::fs::File::open(bundle).unwrap()).unwrap()
}

/// Byte ranges of the regular files' bodies in the archive.
fn bodies(archive: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut r = NewcReader::new(Cursor::new(archive));
    let kind = |e: vgpu_bake::newc::NewcEntry<'_, _>| {
        (
            e.header.mode & S_IFMT == S_IFREG,
            e.header.filesize as usize,
        )
    };
    while let Some((regular, size)) = r.next_entry().unwrap().map(kind) {
        // The body was not read: the reader stands at its start.
        let start = r.offset() as usize;
        if regular && size > 0 {
            out.push((start, start + size));
        }
    }
    out
}

/// Where `m` first differs from `archive`: the header field or the name,
/// body or padding of which entry.
fn describe(archive: &[u8], m: &[u8]) -> String {
    let Some(i) = (0..archive.len().min(m.len())).find(|&i| archive[i] != m[i]) else {
        return format!(
            "{} bytes instead of {} (appended or cut at the end)",
            m.len(),
            archive.len()
        );
    };
    let h = archive[..=i]
        .windows(6)
        .rposition(|w| w == b"070701")
        .unwrap_or(0);
    let name_size = usize::from_str_radix(
        std::str::from_utf8(&archive[h + 94..h + 102]).unwrap_or("0"),
        16,
    )
    .unwrap_or(0);
    let name = String::from_utf8_lossy(&archive[h + 110..h + 110 + name_size.saturating_sub(1)]);
    let off = i - h;
    let what = match off {
        0..6 => "magic".to_string(),
        6..110 => format!("header field {}", (off - 6) / 8),
        _ if off < 110 + name_size => "name".to_string(),
        _ => "body or padding".to_string(),
    };
    format!("byte {i}: {what} of entry {name:?}")
}

/// Compresses `archive` into `path` and inspects it; true if accepted.
fn inspect_archive(archive: &[u8], path: &Path) -> Result<bool, TestCaseError> {
    let compressed = zstd::encode_all(archive, 1).unwrap();
    std::fs::write(path, compressed).unwrap();
    match inspect(path) {
        Ok(_) => Ok(true),
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(msg.contains(&path.display().to_string()), "{msg}");
            Ok(false)
        }
    }
}

#[test]
fn fuzz_inspect_mutations() {
    let dir = tempfile::tempdir().unwrap();
    let archive = demo_archive(dir.path());
    let path = dir.path().join("fuzz.cpio.zst");
    assert!(inspect_archive(&archive, &path).unwrap());
    // Changes inspect accepts: printed (the first 20) for review; a changed
    // body is never among them (the next target asserts it).
    let shown = std::cell::Cell::new(0);
    fuzz("inspect", 200, edits(4), |e| {
        let m = apply(&archive, &e);
        let ok = inspect_archive(&m, &path)?;
        if ok && m != archive && shown.get() < 20 {
            shown.set(shown.get() + 1);
            eprintln!(
                "inspect accepted a changed archive: {}",
                describe(&archive, &m)
            );
        }
        Ok(ok)
    });
}

#[test]
fn fuzz_inspect_body_changes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let archive = demo_archive(dir.path());
    let ranges = bodies(&archive);
    assert!(ranges.len() >= 5, "{ranges:?}");
    let path = dir.path().join("fuzz.cpio.zst");
    let strategy = (0..ranges.len(), any::<usize>(), 1..=255u8);
    fuzz("inspect-bodies", 200, strategy, |(file, at, flip)| {
        let (start, end) = ranges[file];
        let mut bytes = archive.clone();
        bytes[start + at % (end - start)] ^= flip;
        let accepted = inspect_archive(&bytes, &path)?;
        prop_assert!(!accepted, "a changed body of file {file} was accepted");
        Ok(false)
    });
}

/// An inner read error (not just a short archive) is reported, not a panic.
#[test]
fn a_bundle_that_is_no_zstd_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.cpio.zst");
    std::fs::write(&path, b"070701 not compressed").unwrap();
    let e = inspect(&path).unwrap_err().to_string();
    assert!(e.contains(&path.display().to_string()), "{e}");
}

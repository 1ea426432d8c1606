//! Integration tests of the bundle writer, `inspect` and `install`.
//!
//! Layout: this file holds the writer and inspect tests plus shared helpers;
//! `bundle/consumers.rs` runs GNU cpio and the zstd CLI on our output;
//! `bundle/frame_cache.rs` the frame cache and the frames' determinism;
//! `bundle/install.rs` covers install, including the hostile fixtures in
//! `tests/fixtures/`. The golden bundle lives in `tests/golden/` (see its
//! README for how to regenerate it).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use vgpu_bake::bundle::{
    BakeOptions, BakeOutput, BundleError, BundleSpec, Entry, Source, write_bundle,
};
use vgpu_bake::hash::{digest_bytes, md5_hex};
use vgpu_bake::inspect::{Checksum, EntryKind, InspectError, Problem, inspect, render_report};
use vgpu_bake::newc::{NewcError, NewcWriter};
use vgpu_plan::layout;
use vgpu_plan::manifest::{Manifest, ManifestEntry, SCHEMA};

#[path = "bundle/consumers.rs"]
mod consumers;
#[path = "bundle/frame_cache.rs"]
mod frame_cache;
#[path = "bundle/inspect.rs"]
mod inspect;
#[path = "bundle/install.rs"]
mod install;

/// The workspace's `tests/` directory.
fn repo_tests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests")
}

/// Deterministic pseudo-random bytes (xorshift), incompressible.
fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Deterministic text that compresses well but not trivially.
fn text_bytes(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 64);
    let mut i = 0u64;
    while out.len() < n {
        out.extend_from_slice(
            format!(
                "line {i}: nvidia vgpu {} profile {}\n",
                i * 7919 % 1000,
                i % 13
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(n);
    out
}

/// Writes `bytes` to `dir/name` and returns a file source declaring them.
fn file_source(dir: &Path, name: &str, bytes: &[u8]) -> Source {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    let d = digest_bytes(bytes);
    Source::File {
        path,
        sha256: d.sha256,
        md5: Some(md5_hex(bytes)),
        size: d.size,
        stamp: None,
    }
}

const TEST_AGENT: &[u8] = b"#!/bin/sh\necho vgpu-firstboot test agent\n";

/// A realistic spec: the layout's files plus a payload of `payload_len`
/// bytes (random and text halves) streamed from `dir`.
fn layout_spec(dir: &Path, name: &str, payload_len: usize) -> BundleSpec {
    let mut spec = BundleSpec::new(name);
    let agent = Source::Bytes(TEST_AGENT.to_vec());
    spec.add_file(layout::AGENT_BIN, 0o755, agent).unwrap();
    let unit = Source::Bytes(b"[Unit]\nDescription=vgpu firstboot\n".to_vec());
    spec.add_file(layout::UNIT_FILE, 0o644, unit).unwrap();
    spec.add_symlink(layout::UNIT_WANTS_LINK, layout::UNIT_WANTS_TARGET)
        .unwrap();
    spec.add_dir(layout::STATE_DIR, 0o700).unwrap();
    let plan = Source::Bytes(b"schema = 1\nname = \"test\"\n".to_vec());
    spec.add_file(layout::PLAN_FILE, 0o600, plan).unwrap();
    let compat = Source::Bytes(b"schema = 1\n".to_vec());
    spec.add_file(layout::COMPAT_FILE, 0o644, compat).unwrap();
    let mut payload = random_bytes(payload_len / 2, 7);
    payload.extend_from_slice(&text_bytes(payload_len - payload_len / 2));
    let run = file_source(dir, "driver.run", &payload);
    let run_path = format!(
        "{}/NVIDIA-Linux-x86_64-test-vgpu-kvm.run",
        layout::PAYLOAD_DIR
    );
    spec.add_file(&run_path, 0o755, run).unwrap();
    let patch = file_source(dir, "fix.patch", b"--- a\n+++ b\n");
    spec.add_file(
        &format!("{}/patches/fix.patch", layout::PAYLOAD_DIR),
        0o644,
        patch,
    )
    .unwrap();
    spec
}

/// The golden bundle's spec: small, fixed, covering a 0755 file, a 0600
/// file, a symlink, nested and explicit directories, and a file source.
fn golden_spec(scratch: &Path) -> BundleSpec {
    let mut spec = BundleSpec::new("small");
    let agent = Source::Bytes(b"#!/bin/sh\necho golden agent\n".to_vec());
    spec.add_file(layout::AGENT_BIN, 0o755, agent).unwrap();
    let unit = Source::Bytes(b"[Unit]\nDescription=golden\n".to_vec());
    spec.add_file(layout::UNIT_FILE, 0o644, unit).unwrap();
    spec.add_symlink(layout::UNIT_WANTS_LINK, layout::UNIT_WANTS_TARGET)
        .unwrap();
    spec.add_dir(layout::STATE_DIR, 0o700).unwrap();
    let plan = Source::Bytes(b"schema = 1\n".to_vec());
    spec.add_file(layout::PLAN_FILE, 0o600, plan).unwrap();
    let payload = file_source(scratch, "golden.bin", &text_bytes(3000));
    spec.add_file(
        &format!("{}/drivers/golden.bin", layout::PAYLOAD_DIR),
        0o644,
        payload,
    )
    .unwrap();
    spec
}

fn golden_opts() -> BakeOptions {
    BakeOptions {
        mtime: 0,
        level: 3,
        workers: 1,
        sign: None,
        frame_cache: None,
    }
}

fn bake(spec: &BundleSpec, out: &Path, workers: u32) -> (BakeOutput, Vec<u8>) {
    let opts = BakeOptions {
        workers,
        ..BakeOptions::default()
    };
    let o = write_bundle(spec, out, &opts).unwrap();
    let bytes = fs::read(&o.bundle).unwrap();
    (o, bytes)
}

/// Names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn same_spec_twice_gives_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let spec = layout_spec(dir.path(), "twice", 1 << 20);
    let (a, bytes_a) = bake(&spec, &dir.path().join("a"), 2);
    let (b, bytes_b) = bake(&spec, &dir.path().join("b"), 2);
    assert!(bytes_a == bytes_b, "two bakes of one spec differ");
    assert_eq!(a.sha256, b.sha256);
    assert_eq!(a.manifest, b.manifest);
}

#[test]
fn worker_counts_give_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // Large enough for several frames of the payload body.
    let spec = layout_spec(dir.path(), "workers", 24 << 20);
    let (_, one) = bake(&spec, &dir.path().join("1"), 1);
    for workers in [2, 4] {
        let (_, other) = bake(&spec, &dir.path().join(workers.to_string()), workers);
        assert!(one == other, "workers={workers} differs from workers=1");
    }
    // mtime is part of the bytes.
    let opts = BakeOptions {
        mtime: 1_700_000_000,
        ..golden_opts()
    };
    let o = write_bundle(&spec, &dir.path().join("mtime"), &opts).unwrap();
    assert!(fs::read(o.bundle).unwrap() != one);
}

#[test]
fn golden_small_bundle_matches_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let spec = golden_spec(dir.path());
    let out = write_bundle(&spec, &dir.path().join("out"), &golden_opts()).unwrap();
    let golden_path = repo_tests().join("golden/small.cpio.zst");
    let golden = fs::read(&golden_path)
        .unwrap_or_else(|e| panic!("{}: {e}; see tests/golden/README.md", golden_path.display()));
    let ours = fs::read(&out.bundle).unwrap();
    assert!(
        ours == golden,
        "the small bundle no longer matches {} ({} vs {} bytes): if the change is intended, \
         regenerate it (tests/golden/README.md) and explain why in the commit",
        golden_path.display(),
        ours.len(),
        golden.len()
    );
    // And it is a bundle that verifies.
    let report = inspect(&golden_path).unwrap();
    assert_eq!(report.bundle_sha256, out.sha256);
}

/// Regenerates `tests/golden/small.cpio.zst` (see tests/golden/README.md).
#[test]
#[ignore = "rewrites the golden bundle; run with VGPU_BAKE_REGEN_GOLDEN=1"]
fn regen_golden() {
    assert_eq!(
        std::env::var("VGPU_BAKE_REGEN_GOLDEN").as_deref(),
        Ok("1"),
        "set VGPU_BAKE_REGEN_GOLDEN=1 to rewrite the golden bundle"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = write_bundle(&golden_spec(dir.path()), dir.path(), &golden_opts()).unwrap();
    let dest = repo_tests().join("golden/small.cpio.zst");
    fs::copy(&out.bundle, &dest).unwrap();
    eprintln!("wrote {} (sha256 {})", dest.display(), out.sha256);
}

#[test]
fn output_files_and_fields() {
    let dir = tempfile::tempdir().unwrap();
    let spec = layout_spec(dir.path(), "fields", 100_000);
    let out_dir = dir.path().join("out");
    let (o, bytes) = bake(&spec, &out_dir, 2);
    assert_eq!(o.bundle, out_dir.join("fields.cpio.zst"));
    assert_eq!(o.sha256_file, out_dir.join("fields.cpio.zst.sha256"));
    assert_eq!(o.size, bytes.len() as u64);
    let d = digest_bytes(&bytes);
    assert_eq!(o.sha256, d.sha256);
    assert_eq!(
        fs::read_to_string(&o.sha256_file).unwrap(),
        format!("{}  fields.cpio.zst\n", d.sha256)
    );
    assert_eq!(
        listing(&out_dir),
        ["fields.cpio.zst", "fields.cpio.zst.sha256"]
    );
    assert_eq!(o.manifest, spec.manifest());
    assert!(o.manifest.get(layout::MANIFEST_FILE).is_none());
    assert_eq!(o.manifest.files().count(), 6, "{:#?}", o.manifest);
    // etc etc/systemd etc/systemd/system .../multi-user.target.wants link unit
    // usr usr/local usr/local/sbin agent var var/lib state-dir compat
    // manifest payload payload/NVIDIA... payload/patches payload/patches/fix.patch plan
    assert_eq!(o.entries, 20);
    let run = format!(
        "{}/NVIDIA-Linux-x86_64-test-vgpu-kvm.run",
        layout::PAYLOAD_DIR
    );
    let Entry::File {
        source: Source::File { md5, .. },
        ..
    } = &spec.entries()[&run]
    else {
        panic!("payload is a file source")
    };
    assert_eq!(o.payload_digests[&run].md5.as_ref(), md5.as_ref());
    assert!(o.payload_digests.contains_key(layout::MANIFEST_FILE));
    // sha256sum agrees, from the directory it was written in.
    let status = std::process::Command::new("sha256sum")
        .args(["-c", "--quiet", "fields.cpio.zst.sha256"])
        .current_dir(&out_dir)
        .status()
        .expect("sha256sum (coreutils) runs");
    assert!(status.success());
}

/// A file whose bytes differ from its declared digest fails the bake: no
/// bundle, no .sha256, no temp file, and an older bundle is untouched.
#[test]
fn declared_digest_mismatch_fails_and_keeps_the_old_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let good = layout_spec(dir.path(), "p", 3 << 20);
    let (old, old_bytes) = bake(&good, &out_dir, 2);
    let old_sums = fs::read(&old.sha256_file).unwrap();

    for what in ["sha256", "md5", "size"] {
        let mut spec = layout_spec(dir.path(), "p", 3 << 20);
        let path = format!("{}/late.bin", layout::PAYLOAD_DIR);
        let real = file_source(dir.path(), "late.bin", &random_bytes(2 << 20, 3));
        let Source::File {
            path: file,
            sha256,
            md5,
            size,
            ..
        } = real
        else {
            unreachable!()
        };
        let lie = match what {
            "sha256" => Source::File {
                path: file,
                sha256: digest_bytes(b"other").sha256,
                md5,
                size,
                stamp: None,
            },
            "md5" => Source::File {
                path: file,
                sha256,
                md5: Some(md5_hex(b"other")),
                size,
                stamp: None,
            },
            _ => Source::File {
                path: file,
                sha256,
                md5,
                size: size - 1,
                stamp: None,
            },
        };
        spec.add_file(&path, 0o644, lie).unwrap();
        let err = write_bundle(&spec, &out_dir, &BakeOptions::default()).unwrap_err();
        assert!(
            matches!(&err, BundleError::Mismatch { what: w, entry, .. } if *w == what && *entry == path),
            "{what}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("late.bin") && msg.contains("fetch it again"),
            "{msg}"
        );
        assert_eq!(
            listing(&out_dir),
            ["p.cpio.zst", "p.cpio.zst.sha256"],
            "{what}"
        );
        assert!(
            fs::read(&old.bundle).unwrap() == old_bytes,
            "old bundle changed"
        );
        assert_eq!(fs::read(&old.sha256_file).unwrap(), old_sums);
    }

    // Into a fresh directory: nothing at all appears.
    let mut spec = layout_spec(dir.path(), "fresh", 1000);
    let bad = Source::File {
        path: dir.path().join("driver.run"),
        sha256: "0".repeat(64),
        md5: None,
        size: 1000,
        stamp: None,
    };
    spec.add_file("var/lib/vgpu-firstboot/payload/z.run", 0o644, bad)
        .unwrap();
    let fresh = dir.path().join("fresh");
    assert!(write_bundle(&spec, &fresh, &BakeOptions::default()).is_err());
    assert_eq!(listing(&fresh), Vec::<String>::new());
}

/// Throughput of `write_bundle` on a 200 MB payload, half incompressible,
/// half text, in 1 MiB stripes. Run in release mode:
/// `cargo test --release -p vgpu-bake --test bundle -- --ignored --nocapture bench_write_bundle`
#[test]
#[ignore = "benchmark; run in release mode with --ignored --nocapture"]
fn bench_write_bundle_200mb() {
    const MB: usize = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let text = text_bytes(MB);
    let mut payload = Vec::with_capacity(200 * MB);
    for i in 0..200 {
        if i % 2 == 0 {
            payload.extend_from_slice(&random_bytes(MB, i as u64 + 1));
        } else {
            payload.extend_from_slice(&text);
            // Vary the text so zstd cannot just reference the previous stripe.
            let n = payload.len();
            payload[n - 8..].copy_from_slice(&(i as u64).to_le_bytes());
        }
    }
    let mut spec = layout_spec(dir.path(), "bench", 1000);
    let source = file_source(dir.path(), "big.run", &payload);
    drop(payload);
    spec.add_file("var/lib/vgpu-firstboot/payload/big.run", 0o755, source)
        .unwrap();
    let opts = BakeOptions::default();
    let mb = 200.0 * MB as f64 / 1e6;
    // The stages alone, for comparison (file in page cache).
    let Source::File { path: big, .. } = &file_source(dir.path(), "probe", b"") else {
        unreachable!()
    };
    let big = big.with_file_name("big.run");
    let start = std::time::Instant::now();
    vgpu_bake::hash::digest_reader(fs::File::open(&big).unwrap()).unwrap();
    let hash_secs = start.elapsed().as_secs_f64();
    let start = std::time::Instant::now();
    let mut enc = zstd::Encoder::new(std::io::sink(), opts.level).unwrap();
    enc.multithread(opts.workers).unwrap();
    std::io::copy(&mut fs::File::open(&big).unwrap(), &mut enc).unwrap();
    enc.finish().unwrap();
    let zstd_secs = start.elapsed().as_secs_f64();
    eprintln!(
        "stages alone: sha256 {:.0} MB/s, zstd L{} x{} {:.0} MB/s",
        mb / hash_secs,
        opts.level,
        opts.workers,
        mb / zstd_secs
    );
    let start = std::time::Instant::now();
    let o = write_bundle(&spec, &dir.path().join("out"), &opts).unwrap();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "write_bundle: {mb:.0} MB in {secs:.2} s = {:.0} MB/s (workers {}, level {}, ratio {:.2})",
        mb / secs,
        opts.workers,
        opts.level,
        mb * 1e6 / o.size as f64
    );
    let start = std::time::Instant::now();
    inspect(&o.bundle).unwrap();
    let secs = start.elapsed().as_secs_f64();
    eprintln!("inspect: {:.0} MB/s", mb / secs);
}

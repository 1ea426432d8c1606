//! The frame cache: a bundle's bytes do not depend on what the cache holds
//! or on the number of workers; a damaged entry is found and rebuilt; a
//! file whose stamp proves it unchanged is not hashed again.

use std::process::Command;

use vgpu_bake::bundle::{CACHE_MIN, CHUNK, FRAMES_DIR, FileDigests, Proof};
use vgpu_bake::install::install;
use vgpu_bake::stamp::FileStamp;

use super::consumers::{Node, require, tree};
use super::*;

const BIG: &str = "var/lib/vgpu-firstboot/payload/driver/big.run";
const TEXT: &str = "var/lib/vgpu-firstboot/payload/debs/text.deb";
const MEM: &str = "var/lib/vgpu-firstboot/payload/lib/mem.so";

/// The layout plus three large files: one of several frames (random and
/// text), one just over the threshold, one held in memory.
fn big_spec(dir: &Path) -> BundleSpec {
    let mut spec = layout_spec(dir, "frames", 100_000);
    let mut big = random_bytes(CHUNK + CHUNK / 2, 11);
    big.extend_from_slice(&text_bytes(CHUNK));
    spec.add_file(BIG, 0o755, file_source(dir, "big.run", &big))
        .unwrap();
    let text = text_bytes(CACHE_MIN as usize + 3);
    spec.add_file(TEXT, 0o644, file_source(dir, "text.deb", &text))
        .unwrap();
    let mem = Source::Bytes(random_bytes(CACHE_MIN as usize + 1, 5));
    spec.add_file(MEM, 0o644, mem).unwrap();
    spec
}

fn opts(cache: Option<&Path>, workers: u32) -> BakeOptions {
    BakeOptions {
        workers,
        frame_cache: cache.map(Path::to_path_buf),
        ..golden_opts()
    }
}

fn bake_with(spec: &BundleSpec, out: &Path, o: &BakeOptions) -> (BakeOutput, Vec<u8>) {
    let out = write_bundle(spec, out, o).unwrap();
    let bytes = fs::read(&out.bundle).unwrap();
    (out, bytes)
}

fn proof(o: &BakeOutput, path: &str) -> Proof {
    o.payload_digests[path].proof
}

/// The cache's frames files, sorted.
fn entries(cache: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "zst"))
        .collect();
    v.sort();
    v
}

/// Number of zstd frames in a file, as the zstd CLI counts them.
fn frame_count(bundle: &Path) -> u64 {
    require("zstd", "zstd");
    let l = Command::new("zstd").arg("-l").arg(bundle).output().unwrap();
    assert!(l.status.success(), "zstd -l: {l:?}");
    let listing = String::from_utf8_lossy(&l.stdout);
    // "Frames  Skips  Compressed ..." then one line per file.
    let line = listing.lines().nth(1).unwrap_or_default();
    line.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("zstd -l printed {listing}"))
}

#[test]
fn bytes_are_the_same_whatever_the_cache_holds_and_the_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    let spec = big_spec(dir.path());
    let (_, reference) = bake_with(&spec, &dir.path().join("ref"), &opts(None, 1));
    let cache = dir.path().join("cache").join(FRAMES_DIR);

    // Cold: every large file compressed and stored.
    let (cold, bytes) = bake_with(&spec, &dir.path().join("cold"), &opts(Some(&cache), 2));
    assert!(bytes == reference, "a cold cache changed the bytes");
    assert_eq!(entries(&cache).len(), 3, "one entry per large file");
    assert_eq!(proof(&cold, BIG), Proof::Hashed);
    assert_eq!(proof(&cold, MEM), Proof::Memory);
    assert!(
        cold.notes
            .iter()
            .any(|n| n.contains("0 large file(s) copied from it, 3 stored")),
        "{:?}",
        cold.notes
    );

    // Warm, with 1, 2 and 4 workers: nothing large is read.
    for workers in [1, 2, 4] {
        let out = dir.path().join(format!("warm{workers}"));
        let (warm, bytes) = bake_with(&spec, &out, &opts(Some(&cache), workers));
        assert!(bytes == reference, "warm with {workers} workers differs");
        for path in [BIG, TEXT, MEM] {
            assert_eq!(proof(&warm, path), Proof::Cached, "{path}");
        }
        assert_eq!(warm.sha256, cold.sha256);
    }

    // Partially warm: one entry gone is compressed again, the rest copied.
    let gone = entries(&cache)
        .into_iter()
        .find(|p| fs::metadata(p).unwrap().len() > CHUNK as u64)
        .expect("the multi-frame entry");
    fs::remove_file(&gone).unwrap();
    let (part, bytes) = bake_with(&spec, &dir.path().join("part"), &opts(Some(&cache), 4));
    assert!(
        bytes == reference,
        "a partly filled cache changed the bytes"
    );
    assert_eq!(proof(&part, BIG), Proof::Hashed);
    assert_eq!(proof(&part, TEXT), Proof::Cached);
    assert!(gone.exists(), "the missing entry was stored again");

    // Frames: the headers, each large body, and the trailer's own.
    assert!(frame_count(&dir.path().join("part/frames.cpio.zst")) >= 7);
}

#[test]
fn a_damaged_entry_is_found_rebuilt_and_never_reaches_a_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let spec = big_spec(dir.path());
    let cache = dir.path().join("cache");
    let (_, reference) = bake_with(&spec, &dir.path().join("cold"), &opts(Some(&cache), 2));
    let big_entry = entries(&cache)
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let good = fs::read(&big_entry).unwrap();

    // One byte flipped, same size: the CRC finds it while copying.
    let mut bad = good.clone();
    bad[good.len() / 2] ^= 0x40;
    fs::write(&big_entry, &bad).unwrap();
    let out = dir.path().join("flipped");
    let (o, bytes) = bake_with(&spec, &out, &opts(Some(&cache), 2));
    assert!(bytes == reference, "a damaged entry reached the bundle");
    assert!(
        o.notes
            .iter()
            .any(|n| n.contains("did not match its checksum")),
        "{:?}",
        o.notes
    );
    assert_eq!(proof(&o, BIG), Proof::Hashed, "rebuilt from the source");
    assert!(
        fs::read(&big_entry).unwrap() == good,
        "the entry was rebuilt"
    );
    assert_eq!(listing(&out), ["frames.cpio.zst", "frames.cpio.zst.sha256"]);

    // Truncated, and a sidecar that does not parse: both a miss, rebuilt.
    fs::write(&big_entry, &good[..good.len() - 1]).unwrap();
    let (o, bytes) = bake_with(&spec, &dir.path().join("short"), &opts(Some(&cache), 1));
    assert!(bytes == reference);
    assert_eq!(proof(&o, BIG), Proof::Hashed);
    fs::write(big_entry.with_extension("toml"), "frames-size = \"x\"\n").unwrap();
    let (o, bytes) = bake_with(&spec, &dir.path().join("garbled"), &opts(Some(&cache), 1));
    assert!(bytes == reference);
    assert_eq!(proof(&o, BIG), Proof::Hashed);
    let (o, _) = bake_with(&spec, &dir.path().join("again"), &opts(Some(&cache), 1));
    assert_eq!(proof(&o, BIG), Proof::Cached, "the rebuilt entry is used");
}

/// A stamp that still matches spares the hash; a file changed in place
/// (new mtime) is hashed and its new content refused.
#[test]
fn a_matching_stamp_spares_the_hash_and_a_changed_file_is_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = layout_spec(dir.path(), "stamp", 1000);
    let content = text_bytes(2 * CACHE_MIN as usize);
    let Source::File {
        path, sha256, size, ..
    } = file_source(dir.path(), "stamped.run", &content)
    else {
        unreachable!()
    };
    let stamp = FileStamp::of(&fs::metadata(&path).unwrap());
    let source = Source::File {
        path: path.clone(),
        sha256,
        md5: None,
        size,
        stamp: Some(stamp),
    };
    spec.add_file(BIG, 0o755, source).unwrap();
    let (o, _) = bake_with(&spec, &dir.path().join("a"), &opts(None, 2));
    assert_eq!(proof(&o, BIG), Proof::Stamp);
    let FileDigests { md5, .. } = &o.payload_digests[BIG];
    assert_eq!(md5, &None, "no md5 declared, none computed");

    // Same size, other bytes, a new mtime: the stamp no longer proves it.
    let mut changed = content.clone();
    changed[0] ^= 1;
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(&path, &changed).unwrap();
    let err = write_bundle(&spec, &dir.path().join("b"), &opts(None, 2)).unwrap_err();
    assert!(
        matches!(&err, BundleError::Mismatch { what: "sha256", .. }),
        "{err}"
    );
}

/// GNU cpio, the zstd CLI, `inspect` and `install` read a bundle made of
/// many frames, some of them copied from the cache.
#[test]
fn consumers_read_a_bundle_of_cached_frames() {
    require("cpio", "cpio");
    let dir = tempfile::tempdir().unwrap();
    let spec = big_spec(dir.path());
    let cache = dir.path().join("cache");
    bake_with(&spec, &dir.path().join("cold"), &opts(Some(&cache), 2));
    let (o, bytes) = bake_with(&spec, &dir.path().join("warm"), &opts(Some(&cache), 2));
    assert_eq!(proof(&o, BIG), Proof::Cached);
    let t = Command::new("zstd")
        .arg("-t")
        .arg(&o.bundle)
        .output()
        .unwrap();
    assert!(t.status.success(), "zstd -t: {t:?}");
    // The crate's decoder reads concatenated frames as one stream.
    let archive = zstd::decode_all(&bytes[..]).unwrap();
    let d = Command::new("zstd")
        .arg("-dc")
        .arg(&o.bundle)
        .output()
        .unwrap();
    assert!(d.stdout == archive);
    inspect(&o.bundle).unwrap();
    let by_cpio = dir.path().join("cpio");
    let by_us = dir.path().join("ours");
    fs::create_dir(&by_cpio).unwrap();
    fs::create_dir(&by_us).unwrap();
    let mut z = Command::new("zstd")
        .arg("-dc")
        .arg(&o.bundle)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let cpio = Command::new("cpio")
        .args(["-idm", "--quiet", "--no-absolute-filenames"])
        .current_dir(&by_cpio)
        .stdin(z.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(z.wait().unwrap().success());
    assert!(cpio.status.success(), "cpio: {cpio:?}");
    install(&o.bundle, &by_us).unwrap();
    let theirs = tree(&by_cpio);
    assert_eq!(theirs, tree(&by_us));
    let big = fs::read(dir.path().join("big.run")).unwrap();
    assert_eq!(
        theirs[BIG],
        Node::File(0o755, digest_bytes(&big).sha256),
        "the cached body is the file"
    );
}

//! A bake given the user's driver file with its sha256 pinned reads it once:
//! the bundle writer hashes every byte while it compresses it and copies it
//! into the driver cache, committed only when it matched the pin.

use std::fs;
use std::path::{Path, PathBuf};

use vgpu_bake::fetch::{FetchOptions, ProgressMode};
use vgpu_bake::gpudb::GpuDb;
use vgpu_bake::prepare::{Origin, Prepare, prepare_driver};
use vgpu_bake::profile::Profile;
use vgpu_bake::registry::{DRIVERS_TOML, Registry};
use vgpu_bake::resolve::{self, DriverOverrides};

#[path = "support/pinned.rs"]
mod pinned;
#[path = "support/run.rs"]
mod run;

/// A driver larger than the frame cache's threshold (read in blocks), and
/// one below it (read whole).
const SIZES: [usize; 2] = [3 << 20 | 4321, 200 << 10];

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    /// `driver.run` of `size` bytes and `p.toml` pinning the sha256 of `pinned`
    /// (the driver's own bytes unless given).
    fn new(size: usize, pinned: Option<&[u8]>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..size)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
            .collect();
        fs::write(dir.path().join("driver.run"), &bytes).unwrap();
        let sha = vgpu_bake::hash::digest_bytes(pinned.unwrap_or(&bytes)).sha256;
        pinned::write_profile_and_agent(dir.path(), &sha);
        Case { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `bake` into OUT with the cache CACHE, and `extra` arguments.
    fn bake(&self, out: &str, cache: &str, extra: &[&str]) -> (i32, String) {
        let (p, o, c, a) = (
            self.path("p.toml"),
            self.path(out),
            self.path(cache),
            self.path("agent"),
        );
        let mut args = vec!["bake", s(&p), "--out", s(&o), "--cache", s(&c)];
        args.extend(["--agent", s(&a)]);
        args.extend(extra);
        let (code, stdout, stderr) = run::vgpu_bake(&args);
        (code, format!("{stdout}{stderr}"))
    }

    fn driver_file_args(&self) -> [String; 2] {
        ["--driver-file".into(), s(&self.path("driver.run")).into()]
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The files under `dir`, recursively, relative to it (none if it is missing).
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// The driver's name in the cache: the one `.run` file there.
fn cached_run(cache: &Path) -> String {
    let runs: Vec<String> = files(cache)
        .into_iter()
        .filter(|f| f.ends_with(".run"))
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

#[test]
fn a_pinned_driver_file_is_imported_while_the_bundle_is_written() {
    for size in SIZES {
        let case = Case::new(size, None);
        let driver = fs::read(case.path("driver.run")).unwrap();
        let sha = vgpu_bake::hash::digest_bytes(&driver).sha256;
        let [flag, file] = case.driver_file_args();
        let (code, text) = case.bake("o1", "c1", &[&flag, &file]);
        assert_eq!(code, 0, "{text}");
        let cache = case.path("c1");
        let name = cached_run(&cache);
        let cached = cache.join(&name);
        assert!(
            text.contains(&format!("driver imported {file} into {}", cached.display()))
                && text.contains("checksum ok"),
            "{text}"
        );
        // The driver, its sidecar, the frames: no temp file, no `.part`.
        let mut want = vec![name.clone(), format!("{name}.digests.toml")];
        let frames: Vec<String> = files(&cache)
            .into_iter()
            .filter(|f| f.starts_with("frames/"))
            .collect();
        assert_eq!(frames.is_empty(), size < 1 << 20, "{frames:?}");
        want.extend(frames);
        want.sort();
        assert_eq!(files(&cache), want);
        assert_eq!(fs::read(&cached).unwrap(), driver);
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&cached).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o644);
        let sidecar = fs::read_to_string(cache.join(format!("{name}.digests.toml"))).unwrap();
        assert!(
            sidecar.contains(&format!("sha256 = \"{sha}\"")),
            "{sidecar}"
        );
        // Its stamp is the new file's: trusted without hashing.
        let meta = fs::metadata(&cached).unwrap();
        match vgpu_bake::fetch::sidecar_state(&cached, &meta) {
            vgpu_bake::fetch::SidecarState::Valid { digests, stamped } => {
                assert!(stamped, "{sidecar}");
                assert_eq!((digests.sha256, digests.size), (sha.clone(), size as u64));
            }
            other => panic!("{other:?}: {sidecar}"),
        }

        // The same bundle as `fetch --driver-file`, then a bake from the cache.
        let (p, c2) = (case.path("p.toml"), case.path("c2"));
        let (code, out, err) = run::vgpu_bake(&["fetch", s(&p), "--cache", s(&c2), &flag, &file]);
        assert_eq!(code, 0, "{out}{err}");
        let (code, text2) = case.bake("o2", "c2", &[]);
        assert_eq!(code, 0, "{text2}");
        let bundle = |out: &str| fs::read(case.path(out).join("p.cpio.zst")).unwrap();
        assert!(bundle("o1") == bundle("o2"), "the bundles differ");

        // The cache the one pass filled serves the next bake.
        let (code, text3) = case.bake("o3", "c1", &[]);
        assert_eq!(code, 0, "{text3}");
        assert!(
            text3.contains(&format!(
                "driver {name}: verified copy in the cache ({}), no download",
                cached.display()
            )),
            "{text3}"
        );
        assert!(bundle("o3") == bundle("o1"), "the bundles differ");
    }
}

#[test]
fn a_driver_file_that_is_not_the_pinned_one_leaves_no_bundle_and_no_cache_file() {
    for size in SIZES {
        // The pin is of other bytes of the same size.
        let case = Case::new(size, Some(&vec![7u8; size]));
        let pinned = vgpu_bake::hash::digest_bytes(&vec![7u8; size]).sha256;
        let got = vgpu_bake::hash::digest_bytes(&fs::read(case.path("driver.run")).unwrap()).sha256;
        let [flag, file] = case.driver_file_args();
        let (code, text) = case.bake("o", "c", &[&flag, &file]);
        assert_eq!(code, 1, "{text}");
        assert!(
            text.contains(&format!(
                "{file}: checksum mismatch (sha256 expected {pinned}, got {got}); this is not the expected NVIDIA-Linux-"
            )) && text.contains("Download it again"),
            "{text}"
        );
        assert_eq!(files(&case.path("o")), Vec::<String>::new());
        assert_eq!(files(&case.path("c")), Vec::<String>::new());
    }
}

/// The frame cache holds the pinned sha256's frames (a bake of the right
/// file made them), the driver cache not the file: a different file given
/// for it is still read and hashed, and refused; the right one is imported.
#[test]
fn a_warm_frame_cache_does_not_vouch_for_an_unverified_driver_file() {
    let size = SIZES[0];
    let case = Case::new(size, None);
    let [flag, file] = case.driver_file_args();
    let (code, text) = case.bake("o1", "c", &[&flag, &file]);
    assert_eq!(code, 0, "{text}");
    let cache = case.path("c");
    let name = cached_run(&cache);
    fs::remove_file(cache.join(&name)).unwrap();
    fs::remove_file(cache.join(format!("{name}.digests.toml"))).unwrap();
    let frames = files(&cache);
    assert!(!frames.is_empty() && frames.iter().all(|f| f.starts_with("frames/")));

    let right = fs::read(case.path("driver.run")).unwrap();
    let mut wrong = right.clone();
    wrong[size / 2] ^= 1;
    fs::write(case.path("driver.run"), &wrong).unwrap();
    let (code, text) = case.bake("o2", "c", &[&flag, &file]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!("{file}: checksum mismatch (sha256 expected")),
        "{text}"
    );
    assert_eq!(files(&case.path("o2")), Vec::<String>::new());
    assert_eq!(files(&cache), frames, "the cache changed");

    fs::write(case.path("driver.run"), &right).unwrap();
    let (code, text) = case.bake("o3", "c", &[&flag, &file]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("1 large file(s) copied from it"), "{text}");
    assert!(text.contains("driver imported "), "{text}");
    assert_eq!(fs::read(cache.join(&name)).unwrap(), right);
    let bundle = |out: &str| fs::read(case.path(out).join("p.cpio.zst")).unwrap();
    assert!(bundle("o1") == bundle("o3"), "the bundles differ");
}

/// `prepare_driver` for a bake leaves a pinned user's file to the writer
/// (nothing copied yet); `fetch` (Rehash) still imports it at once.
#[test]
fn a_bake_prepares_a_pinned_driver_file_without_reading_it() {
    let case = Case::new(SIZES[1], None);
    let registry = Registry::parse(DRIVERS_TOML).unwrap();
    let p = case.path("p.toml");
    let profile = Profile::parse(&fs::read_to_string(&p).unwrap(), &p).unwrap();
    let resolved = resolve::resolve(&profile, &p, &registry, &GpuDb::builtin().unwrap()).unwrap();
    let driver = resolved.driver.unwrap();
    let opts = FetchOptions {
        progress: ProgressMode::Quiet,
        ..FetchOptions::new(case.path("cache"))
    };
    let overrides = DriverOverrides {
        driver_file: Some(case.path("driver.run")),
        ..DriverOverrides::default()
    };
    let mut notes = Vec::new();
    let trusted = prepare_driver(&driver, &overrides, &opts, Prepare::Trust, &mut notes)
        .unwrap()
        .unwrap();
    let target = trusted.import.clone().expect("the writer imports it");
    assert_eq!(target.from, case.path("driver.run"));
    assert_eq!(target.dest, case.path("cache").join(&driver.filename));
    assert_eq!(target.size, SIZES[1] as u64);
    let pinned = driver.sha256.clone().expect("the profile pins it");
    assert_eq!(target.sha256, pinned);
    assert_eq!(
        (trusted.origin, trusted.stamp, &trusted.read_from),
        (Origin::Imported, None, &None)
    );
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(files(&case.path("cache")), Vec::<String>::new());

    let fetched = prepare_driver(&driver, &overrides, &opts, Prepare::Rehash, &mut notes)
        .unwrap()
        .unwrap();
    assert_eq!(fetched.import, None);
    assert!(fetched.path.is_file());
    assert!(notes[0].contains("imported "), "{notes:?}");
}

//! The checks on fake machines (tools, versions, free space) and real
//! temporary caches.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::tools::patch_verdict;
use super::*;

/// A machine made up for a test.
#[derive(Default)]
struct Fake {
    /// Programs on PATH and what `--version` prints first.
    tools: BTreeMap<&'static str, &'static str>,
    /// Free bytes per directory; a directory not listed: probe error.
    space: BTreeMap<PathBuf, Space>,
}

impl Probes for Fake {
    fn find(&self, program: &str) -> Option<PathBuf> {
        self.tools
            .contains_key(program)
            .then(|| PathBuf::from("/usr/bin").join(program))
    }
    fn version(&self, program: &str) -> Result<String, String> {
        self.tools
            .get(program)
            .map(|v| (*v).to_owned())
            .ok_or_else(|| format!("`{program} --version`: not found"))
    }
    fn space(&self, dir: &Path) -> Result<Space, String> {
        self.space
            .get(dir)
            .copied()
            .ok_or_else(|| format!("{}: no such filesystem", dir.display()))
    }
}

fn all_tools() -> Fake {
    Fake {
        tools: BTreeMap::from([
            ("sh", ""),
            ("patch", "GNU patch 2.7.6"),
            ("mkfs.ext4", ""),
            ("debugfs", ""),
        ]),
        ..Fake::default()
    }
}

fn request(cache: &Path, profiles: Vec<ProfileNeeds>) -> Request {
    Request {
        cache: cache.to_path_buf(),
        out: PathBuf::from("/out"),
        deep: false,
        profiles,
        broken: Vec::new(),
    }
}

fn unlock_profile(size: Option<u64>) -> ProfileNeeds {
    ProfileNeeds {
        profile: "u.toml".into(),
        driver: Some("NVIDIA-x.run".into()),
        driver_size: size,
        unlock: true,
    }
}

fn find<'a>(findings: &'a [Finding], subject: &str) -> &'a Finding {
    findings
        .iter()
        .find(|f| f.subject.contains(subject))
        .unwrap_or_else(|| panic!("no finding about {subject}: {findings:#?}"))
}

#[test]
fn a_missing_tool_an_unlock_bake_needs_fails_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = all_tools();
    fake.tools.remove("patch");
    let req = request(dir.path(), vec![unlock_profile(Some(10))]);
    let findings = run(&req, &fake);
    let f = find(&findings, "tool patch");
    assert_eq!(f.status, Status::Fail, "{f:?}");
    assert!(f.message.contains("not found on PATH"), "{}", f.line());
    assert!(
        f.line().contains("apt-get install patch"),
        "says what to do: {}",
        f.line()
    );
    assert!(failed(&findings));

    // Without profiles it may not be needed: a warning, exit 0.
    let findings = run(&request(dir.path(), vec![]), &fake);
    assert_eq!(find(&findings, "tool patch").status, Status::Warn);
    assert!(!failed(&findings), "{findings:#?}");

    // Profiles that bake no unlock patch do not need it at all.
    let native = ProfileNeeds {
        unlock: false,
        ..unlock_profile(Some(10))
    };
    let findings = run(&request(dir.path(), vec![native]), &fake);
    assert_eq!(find(&findings, "tool patch").status, Status::Ok);
}

#[test]
fn usb_tools_are_a_warning_when_missing() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = all_tools();
    fake.tools.remove("debugfs");
    let findings = run(&request(dir.path(), vec![]), &fake);
    let f = find(&findings, "tool debugfs");
    assert_eq!(f.status, Status::Warn);
    assert!(
        f.line().contains("e2fsprogs") && f.line().contains("`usb`"),
        "{}",
        f.line()
    );
    assert_eq!(find(&findings, "tool mkfs.ext4").status, Status::Ok);
}

#[test]
fn patch_versions_follow_the_bakes_rule() {
    assert!(patch_verdict("GNU patch 2.7.6").is_ok());
    assert!(patch_verdict("GNU patch 2.7").is_ok());
    let new = patch_verdict("GNU patch 2.8").unwrap_err();
    assert!(new.contains("NUL byte"), "{new}");
    let old = patch_verdict("GNU patch 2.6.1").unwrap_err();
    assert!(old.contains("older than 2.7"), "{old}");
    assert!(patch_verdict("patch 2.7.6 (BusyBox)").is_err());

    let dir = tempfile::tempdir().unwrap();
    for version in ["GNU patch 2.6.1", "GNU patch 2.8"] {
        let mut fake = all_tools();
        fake.tools.insert("patch", version);
        let findings = run(&request(dir.path(), vec![unlock_profile(Some(1))]), &fake);
        let f = find(&findings, "tool patch");
        assert_eq!(f.status, Status::Fail, "{version}: {f:?}");
        assert!(
            f.line().contains("2.7.6"),
            "the fix names the version: {}",
            f.line()
        );
    }
}

#[test]
fn a_stray_part_file_is_a_warning_with_its_size() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("NVIDIA-x.run.part"), vec![7u8; 3000]).unwrap();
    fs::write(dir.path().join(".NVIDIA-x.run.123.0.tmp"), b"x").unwrap();
    let findings = run(&request(dir.path(), vec![]), &all_tools());
    let part = find(&findings, "NVIDIA-x.run.part");
    assert_eq!(part.status, Status::Warn, "{part:?}");
    assert!(part.message.contains("(2.93 KiB)"), "{}", part.line());
    assert!(part.line().contains("resumes it"), "{}", part.line());
    let tmp = find(&findings, ".NVIDIA-x.run.123.0.tmp");
    assert_eq!(tmp.status, Status::Warn);
    assert!(!failed(&findings));
}

#[test]
fn a_part_file_in_use_is_fine() {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("NVIDIA-x.run.part");
    let held = fs::File::create(&part).unwrap();
    held.lock().unwrap();
    let findings = run(&request(dir.path(), vec![]), &all_tools());
    let f = find(&findings, "NVIDIA-x.run.part");
    assert_eq!(f.status, Status::Ok, "{f:?}");
    assert!(f.message.contains("in use"), "{}", f.line());
}

impl Fake {
    /// The cache `cache` on filesystem `cache_fs` with `cache_free` bytes
    /// free, `/out` on `out_fs` with `out_free`.
    fn disks(&mut self, cache: &Path, cache_fs: u64, cache_free: u64, out_fs: u64, out_free: u64) {
        let space = |fs, free| Space { fs, free };
        self.space
            .insert(cache.to_path_buf(), space(cache_fs, cache_free));
        self.space
            .insert(PathBuf::from("/out"), space(out_fs, out_free));
    }
}

#[test]
fn not_enough_space_fails() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = all_tools();
    // Cache and out on one filesystem: a 100 MiB unlock driver not cached
    // needs the download, its frame entry, the patched installer and the
    // bundle: 400 MiB.
    fake.disks(dir.path(), 1, 399 << 20, 1, 399 << 20);
    let req = request(dir.path(), vec![unlock_profile(Some(100 << 20))]);
    let findings = run(&req, &fake);
    let f = find(&findings, "/out");
    assert_eq!(f.status, Status::Fail, "{f:?}");
    assert!(f.message.contains("400.00 MiB"), "{}", f.line());
    assert!(f.line().contains("--out DIR"), "{}", f.line());

    // Enough on separate filesystems: 300 MiB in the cache, 100 in out.
    fake.disks(dir.path(), 1, 300 << 20, 2, 100 << 20);
    let findings = run(&req, &fake);
    let spaces: Vec<_> = findings.iter().filter(|f| f.check == "space").collect();
    assert_eq!(spaces.len(), 2, "{spaces:#?}");
    assert!(spaces.iter().all(|f| f.status == Status::Ok), "{spaces:#?}");
}

#[test]
fn an_unknown_driver_size_is_said() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = all_tools();
    fake.disks(dir.path(), 1, 1 << 30, 1, 1 << 30);
    let findings = run(&request(dir.path(), vec![unlock_profile(None)]), &fake);
    let f = find(&findings, "NVIDIA-x.run");
    assert_eq!((f.check, f.status), ("space", Status::Warn), "{f:?}");
    assert!(f.message.contains("size unknown"), "{}", f.line());
}

#[test]
fn a_cached_file_gives_its_size_and_a_damaged_sidecar_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("NVIDIA-x.run");
    fs::write(&file, vec![1u8; 5000]).unwrap();
    fs::write(dir.path().join("NVIDIA-x.run.digests.toml"), "not = [toml").unwrap();
    let mut fake = all_tools();
    fake.disks(dir.path(), 1, 1 << 30, 1, 1 << 30);
    let findings = run(&request(dir.path(), vec![unlock_profile(None)]), &fake);
    let f = find(&findings, "digests.toml");
    assert_eq!(f.status, Status::Warn, "{f:?}");
    assert!(f.message.contains("damaged"), "{}", f.line());
    // The size came from the cache: nothing unknown.
    assert!(
        !findings.iter().any(|f| f.message.contains("size unknown")),
        "{findings:#?}"
    );
    let json = serde_json::to_value(Document::new(&findings)).unwrap();
    assert_eq!(json["schema"], 1);
    assert_eq!(json["failed"], false);
    assert!(json["findings"][0]["status"].is_string());
}

#[test]
fn broken_profiles_fail() {
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(dir.path(), vec![]);
    req.broken.push(("p.toml".into(), "bad key".into()));
    let findings = run(&req, &all_tools());
    assert_eq!(find(&findings, "p.toml").status, Status::Fail);
    assert!(failed(&findings));
}

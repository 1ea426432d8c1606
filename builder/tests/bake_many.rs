//! `vgpu-bake bake PROFILE... --out DIR`: many profiles in one run,
//! through the real binary.

#[path = "support/run.rs"]
mod run;

use std::fs;
use std::path::{Path, PathBuf};

use run::{vgpu_bake, workspace};

/// A directory of profiles: copies of the demo profiles under new bundle
/// names, with the demo's offline package beside them.
struct Fleet {
    dir: tempfile::TempDir,
}

impl Fleet {
    fn new() -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let debs = dir.path().join("demo");
        fs::create_dir(&debs).unwrap();
        let deb = "hello_2.10-3_amd64.deb";
        fs::copy(workspace().join("profiles/demo").join(deb), debs.join(deb)).unwrap();
        fs::write(dir.path().join("agent"), "#!/bin/sh\necho fake agent\n").unwrap();
        Fleet { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `profiles/<from>.toml` as `<name>.toml`, baking bundle `name`.
    fn profile(&self, from: &str, name: &str) -> String {
        let text = fs::read_to_string(workspace().join(format!("profiles/{from}.toml"))).unwrap();
        let renamed: Vec<String> = text
            .lines()
            .map(|l| {
                if l.starts_with("name = ") {
                    format!("name = \"{name}\"")
                } else {
                    l.to_string()
                }
            })
            .collect();
        assert!(renamed.iter().any(|l| l == &format!("name = \"{name}\"")));
        let path = self.path(&format!("{name}.toml"));
        fs::write(&path, renamed.join("\n") + "\n").unwrap();
        path.to_str().unwrap().to_string()
    }

    /// A profile `name` with this text; its path.
    fn raw(&self, name: &str, text: &str) -> String {
        let path = self.path(name);
        fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// `bake PROFILES --out OUT --cache CACHE --agent AGENT`.
    fn bake(&self, profiles: &[String], out: &str, cache: &str) -> (i32, String, String) {
        let flags = [("--out", out), ("--cache", cache), ("--agent", "agent")]
            .map(|(flag, rel)| [flag.to_string(), self.path(rel).display().to_string()]);
        let mut args = vec!["bake"];
        args.extend(
            profiles
                .iter()
                .chain(flags.iter().flatten())
                .map(String::as_str),
        );
        vgpu_bake(&args)
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn many_profiles_in_one_run_make_the_bytes_of_one_run_each() {
    let f = Fleet::new();
    let profiles = vec![
        f.profile("demo", "a"),
        f.profile("demo", "b"),
        f.profile("demo-1.1", "c"),
        f.profile("demo", "d"),
    ];
    let (code, stdout, stderr) = f.bake(&profiles, "together", "cache");
    assert_eq!(code, 0, "{stderr}");
    for p in &profiles {
        let (code, _, stderr) = f.bake(std::slice::from_ref(p), "alone", "cache-alone");
        assert_eq!(code, 0, "{stderr}");
    }
    assert_eq!(files(&f.path("together")), files(&f.path("alone")));
    assert_eq!(files(&f.path("together")).len(), 8);
    for name in ["a", "b", "c", "d"] {
        let bundle = format!("{name}.cpio.zst");
        let together = fs::read(f.path("together").join(&bundle)).unwrap();
        assert_eq!(
            together,
            fs::read(f.path("alone").join(&bundle)).unwrap(),
            "{name}"
        );
        let sums = fs::read_to_string(f.path("together").join(format!("{bundle}.sha256"))).unwrap();
        let sha = sums.split_whitespace().next().unwrap();
        // One line per bundle written: name, size, sha256.
        let line = format!("{name}  {} bytes  sha256 {sha}  ", together.len());
        assert!(
            stdout.lines().any(|l| l.starts_with(&line)),
            "{line:?} in {stdout}"
        );
    }
    assert!(stderr.contains("4 of 4 bundles written"), "{stderr}");
}

#[test]
fn profiles_sharing_a_driver_leave_it_once_in_the_cache() {
    let f = Fleet::new();
    let profiles: Vec<String> = (0..5)
        .map(|i| {
            f.profile(
                if i % 2 == 0 { "demo" } else { "demo-1.1" },
                &format!("p{i}"),
            )
        })
        .collect();
    let (code, _, stderr) = f.bake(&profiles, "out", "cache");
    assert_eq!(code, 0, "{stderr}");
    let runs: Vec<String> = files(&f.path("cache"))
        .into_iter()
        .filter(|n| n.ends_with(".run"))
        .collect();
    assert_eq!(
        runs,
        [
            "vgpu-bake-demo-driver-1.0-vgpu-kvm.run",
            "vgpu-bake-demo-driver-1.1-vgpu-kvm.run"
        ]
    );
    // Each driver was imported once; every other bake found it cached.
    for release in ["1.0", "1.1"] {
        let imported = format!(
            "vgpu-bake-demo-driver-{release}-vgpu-kvm.run: demo installer from data/demo imported"
        );
        assert_eq!(stderr.matches(&imported).count(), 1, "{stderr}");
    }
    // A frame cache under the cache directory holds at most one frame per
    // driver.
    assert!(files(&f.path("cache/frames")).len() <= 2);
}

#[test]
fn a_bad_profile_among_good_ones_fails_before_anything_is_written() {
    let f = Fleet::new();
    let native = "proxmox = 9\n[vgpu]\nmode = \"native\"\n[driver]\n";
    let bad = f.raw("bad.toml", &format!("{native}release = \"no-such\"\n"));
    let worse = f.raw("worse.toml", "proxmox = 9\n[vgpu]\nmodes = \"native\"\n");
    let profiles = vec![
        f.profile("demo", "a"),
        bad.clone(),
        f.profile("demo-1.1", "c"),
        worse.clone(),
    ];
    let (code, stdout, stderr) = f.bake(&profiles, "out", "cache");
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    // Every failing profile is named, with its key.
    for (p, key) in [(&bad, "release"), (&worse, "modes")] {
        let line = stderr
            .lines()
            .find(|l| l.contains(p.as_str()))
            .unwrap_or_else(|| panic!("{p} not named in {stderr}"));
        assert!(line.contains(key), "{key} in {line}");
    }
    assert!(
        stderr.contains("2 of 4 profiles failed to load; nothing was baked"),
        "{stderr}"
    );
    assert_eq!(files(&f.path("out")), Vec::<String>::new());
    assert_eq!(files(&f.path("cache")), Vec::<String>::new());
}

#[test]
fn two_profiles_making_one_bundle_name_are_refused() {
    let f = Fleet::new();
    let a = f.profile("demo", "same");
    let other = f.path("other");
    fs::create_dir(&other).unwrap();
    let b = other.join("same.toml");
    fs::copy(&a, &b).unwrap();
    fs::create_dir(other.join("demo")).unwrap();
    let deb = "demo/hello_2.10-3_amd64.deb";
    fs::copy(f.path(deb), other.join(deb)).unwrap();
    let profiles = [a.clone(), b.to_str().unwrap().to_string()];
    let (code, _, stderr) = f.bake(&profiles, "out", "cache");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{a} and {} both make the bundle same.cpio.zst; nothing was baked",
            b.display()
        )),
        "{stderr}"
    );
    assert_eq!(files(&f.path("out")), Vec::<String>::new());
}

#[test]
fn a_bundle_that_fails_to_bake_does_not_stop_the_others() {
    let f = Fleet::new();
    // Loads, but its driver cannot be prepared: nothing pins release 19.4.
    let unpinned = f.raw(
        "unpinned.toml",
        "proxmox = 9\n[vgpu]\nmode = \"native\"\n[driver]\nrelease = \"19.4\"\n",
    );
    let profiles = vec![
        f.profile("demo", "a"),
        unpinned.clone(),
        f.profile("demo-1.1", "c"),
    ];
    let (code, stdout, stderr) = f.bake(&profiles, "out", "cache");
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        files(&f.path("out")),
        [
            "a.cpio.zst",
            "a.cpio.zst.sha256",
            "c.cpio.zst",
            "c.cpio.zst.sha256"
        ]
    );
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(
        stderr.contains(&format!("{unpinned}: driver release 19.4")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("1 of 3 profiles failed to bake: {unpinned}; the bundles listed above were written and stay")),
        "{stderr}"
    );
    assert!(stderr.contains("2 of 3 bundles written"), "{stderr}");
}

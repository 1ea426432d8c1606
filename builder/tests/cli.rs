//! The real `vgpu-bake` binary, run in a fresh temp dir per test.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Run {
    dir: tempfile::TempDir,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

impl Run {
    fn new() -> Run {
        let dir = tempfile::tempdir().unwrap();
        // A stand-in agent: the bundle only needs bytes to carry.
        fs::write(dir.path().join("agent"), "#!/bin/sh\necho fake agent\n").unwrap();
        Run { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn cmd(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vgpu-bake"))
            .args(args)
            .current_dir(workspace())
            .env("SOURCE_DATE_EPOCH", "0")
            .env_remove("VGPU_DEMO_LOG")
            .output()
            .unwrap()
    }

    /// Runs and asserts the exit code; returns (stdout, stderr).
    fn expect(&self, code: i32, args: &[&str]) -> (String, String) {
        let out = self.cmd(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "vgpu-bake {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            args.join(" ")
        );
        (stdout, stderr)
    }

    fn bake(&self, profile: &str, out: &str) -> (String, String) {
        let out = self.path(out);
        let cache = self.path("cache");
        let agent = self.path("agent");
        self.expect(
            0,
            &[
                "bake",
                profile,
                "--out",
                out.to_str().unwrap(),
                "--cache",
                cache.to_str().unwrap(),
                "--agent",
                agent.to_str().unwrap(),
            ],
        )
    }
}

#[test]
fn validate_accepts_examples_and_reports_bad_profiles() {
    let r = Run::new();
    let (out, _) = r.expect(
        0,
        &[
            "validate",
            "profiles/demo.toml",
            "profiles/two-gpu.toml",
            "profiles/passthrough.toml",
            "profiles/native-intel-a100.toml",
            "profiles/unlock-amd-rtx2080ti.toml",
        ],
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok: ")).count(),
        5,
        "{out}"
    );
    let (_, err) = r.expect(
        1,
        &[
            "validate",
            "profiles/demo.toml",
            "tests/profiles/err-unknown-release.toml",
        ],
    );
    assert!(err.contains("tests/profiles/err-unknown-release.toml: `driver.release` = \"15.0\" is not a known vGPU release"), "{err}");
    assert!(err.contains("1 of 2 profile(s) failed validation"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    let r = Run::new();
    r.expect(2, &["bake"]);
    r.expect(2, &["frobnicate"]);
    r.expect(2, &["validate"]);
}

#[test]
fn plan_prints_toml_and_json() {
    let r = Run::new();
    let (toml_out, _) = r.expect(
        0,
        &[
            "plan",
            "profiles/two-gpu.toml",
            "--cache",
            r.path("c").to_str().unwrap(),
        ],
    );
    // The resolved stage, before anything is fetched: not a baked plan.
    assert!(vgpu_plan::plan::Plan::from_toml(&toml_out).is_err());
    let plan: toml::Table = toml::from_str(&toml_out).unwrap();
    assert_eq!(plan["name"].as_str(), Some("t4-plus-3090"));
    assert!(
        plan["step"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["kind"].as_str() == Some("passthrough-rules"))
    );
    assert_eq!(plan["driver"]["source"]["kind"].as_str(), Some("download"));
    assert!(
        !toml_out.contains("sha256 = \"\"") && !toml_out.contains("size = 0"),
        "no unbaked values: {toml_out}"
    );
    let (json_out, err) = r.expect(
        0,
        &[
            "plan",
            "profiles/two-gpu.toml",
            "--json",
            "--cache",
            r.path("c").to_str().unwrap(),
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(v["schema"], vgpu_plan::plan::SCHEMA);
    assert_eq!(v["name"], "t4-plus-3090");
    assert_eq!(
        v["driver"]["install-args"],
        serde_json::json!(["--dkms", "-s"])
    );
    assert!(err.contains("sha256 is pinned once it is fetched"), "{err}");
    assert!(err.contains("not applied by this version"), "{err}");
}

#[test]
fn demo_bake_is_reproducible_and_inspectable() {
    let r = Run::new();
    let (out1, err1) = r.bake("profiles/demo.toml", "a");
    let bundle = r.path("a/demo.cpio.zst");
    assert_eq!(
        out1.lines().last().unwrap(),
        bundle.to_str().unwrap(),
        "bake prints the bundle path last"
    );
    assert!(err1.contains("DEMO bundle"), "{err1}");
    let (_, err2) = r.bake("profiles/demo.toml", "b");
    assert!(
        err2.contains("verified copy in the cache"),
        "second bake must not re-import: {err2}"
    );
    assert_eq!(
        fs::read(&bundle).unwrap(),
        fs::read(r.path("b/demo.cpio.zst")).unwrap(),
        "two bakes differ"
    );
    let sha = fs::read_to_string(r.path("a/demo.cpio.zst.sha256")).unwrap();
    assert!(sha.ends_with("  demo.cpio.zst\n"), "{sha}");

    let (listing, _) = r.expect(0, &["inspect", bundle.to_str().unwrap()]);
    for path in [
        "usr/local/sbin/vgpu-firstboot",
        "etc/systemd/system/vgpu-firstboot.service",
        "var/lib/vgpu-firstboot/plan.toml",
        "var/lib/vgpu-firstboot/payload/driver/vgpu-bake-demo-driver-1.0-vgpu-kvm.run",
    ] {
        assert!(listing.contains(path), "{path} missing from:\n{listing}");
    }
    let (json, _) = r.expect(0, &["inspect", "--json", bundle.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["schema"], vgpu_bake::inspect::JSON_SCHEMA);
    assert_eq!(v["name"], "demo");
    assert_eq!(v["has-plan"], true);
}

#[test]
fn install_lays_the_bundle_and_plan_pins_the_driver() {
    let r = Run::new();
    r.bake("profiles/demo.toml", "o");
    let root = r.path("root");
    fs::create_dir(&root).unwrap();
    let (listing, _) = r.expect(
        0,
        &[
            "install",
            r.path("o/demo.cpio.zst").to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
        ],
    );
    assert!(listing.contains("vgpu-firstboot.service"), "{listing}");
    let plan_text = fs::read_to_string(root.join("var/lib/vgpu-firstboot/plan.toml")).unwrap();
    let plan = vgpu_plan::plan::Plan::from_toml(&plan_text).unwrap();
    let d = plan.driver.unwrap();
    let bytes = fs::read(
        root.join("var/lib/vgpu-firstboot/payload")
            .join(&d.installer.path),
    )
    .unwrap();
    let digests = vgpu_bake::hash::digest_bytes(&bytes);
    assert_eq!(d.sha256, digests.sha256);
    assert_eq!(d.md5, digests.md5);
    assert_eq!(d.installer.sha256, digests.sha256);
    assert!(plan.demo);
    let link = fs::read_link(
        root.join("etc/systemd/system/multi-user.target.wants/vgpu-firstboot.service"),
    )
    .unwrap();
    assert_eq!(link, Path::new("../vgpu-firstboot.service"));
}

#[test]
fn unlock_bake_patches_at_bake_time_and_records_both_hashes() {
    let r = Run::new();
    let (_, err) = r.bake("tests/profiles/unlock-demo.toml", "u");
    assert!(
        err.contains("applied with the installer's --apply-patch"),
        "{err}"
    );
    let root = r.path("root");
    fs::create_dir(&root).unwrap();
    r.expect(
        0,
        &[
            "install",
            r.path("u/demo-unlock.cpio.zst").to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
        ],
    );
    let plan_text = fs::read_to_string(root.join("var/lib/vgpu-firstboot/plan.toml")).unwrap();
    let plan = vgpu_plan::plan::Plan::from_toml(&plan_text).unwrap();
    let d = plan.driver.unwrap();
    assert_eq!(
        d.installer.path,
        "driver/vgpu-bake-demo-driver-1.0-vgpu-kvm-custom.run"
    );
    assert_ne!(
        d.installer.sha256, d.sha256,
        "patched and original hashes both recorded"
    );
    let patch = d.patch.unwrap();
    let patch_bytes = fs::read(workspace().join("data/demo/demo-unlock.patch")).unwrap();
    assert_eq!(
        patch.sha256,
        vgpu_bake::hash::digest_bytes(&patch_bytes).sha256
    );
    let custom = fs::read_to_string(
        root.join("var/lib/vgpu-firstboot/payload")
            .join(&d.installer.path),
    )
    .unwrap();
    assert!(
        custom.contains(&format!("DEMO_PATCHED=\"{}\"", patch.sha256)),
        "installer not patched"
    );
    let lib =
        fs::read(root.join("var/lib/vgpu-firstboot/payload/unlock/libvgpu_unlock_rs.so")).unwrap();
    assert_eq!(
        vgpu_bake::hash::digest_bytes(&lib).sha256,
        plan.unlock.unwrap().library.sha256
    );
    // A second bake reuses the cached patched installer.
    let (_, err2) = r.bake("tests/profiles/unlock-demo.toml", "u2");
    assert!(
        err2.contains("cached") && err2.contains("no re-patch"),
        "{err2}"
    );
    assert_eq!(
        fs::read(r.path("u/demo-unlock.cpio.zst")).unwrap(),
        fs::read(r.path("u2/demo-unlock.cpio.zst")).unwrap()
    );
}

#[test]
fn failed_bake_leaves_no_bundle() {
    let r = Run::new();
    // A profile whose unlock library hash is wrong fails after the driver
    // is staged: nothing may appear under the final names.
    let profile = r.path("bad-lib.toml");
    let text = fs::read_to_string(workspace().join("tests/profiles/unlock-demo.toml"))
        .unwrap()
        .replace(
            "../../data/demo/",
            &format!("{}/data/demo/", workspace().display()),
        )
        .replace("1706899d", "0706899d");
    fs::write(&profile, text).unwrap();
    let out = r.path("o");
    let (_, err) = r.expect(
        1,
        &[
            "bake",
            profile.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--cache",
            r.path("cache").to_str().unwrap(),
            "--agent",
            r.path("agent").to_str().unwrap(),
        ],
    );
    assert!(
        err.contains("libvgpu_unlock_rs-demo.so: sha256 is 1706899d"),
        "{err}"
    );
    assert!(err.contains("`unlock.library-sha256`"), "{err}");
    let left: Vec<_> = fs::read_dir(&out)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn bake_without_agent_says_how_to_get_one() {
    let r = Run::new();
    let out = r.cmd(&[
        "bake",
        "profiles/demo.toml",
        "--out",
        r.path("o").to_str().unwrap(),
        "--cache",
        r.path("c").to_str().unwrap(),
        "--agent",
        r.path("missing").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cargo build --release -p vgpu-firstboot"),
        "{err}"
    );
}

#[test]
fn gpus_explains_corrections() {
    let r = Run::new();
    let (out, _) = r.expect(0, &["gpus", "10de:20f1"]);
    assert!(out.contains("20f1"), "{out}");
    assert!(out.to_lowercase().contains("correct"), "{out}");
    let (json, _) = r.expect(0, &["gpus", "--json", "10de:1e07"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["schema"], vgpu_bake::gpudb::JSON_SCHEMA);
    assert_eq!(v["gpus"][0]["in-database"], true);
    r.expect(1, &["gpus", "nvidia"]);
}

#[test]
fn fetch_without_a_known_checksum_says_what_to_do_then_imports() {
    let r = Run::new();
    let profile = r.path("p.toml");
    fs::write(
        &profile,
        "proxmox = 9\n[vgpu]\nmode = \"native\"\n[driver]\nrelease = \"19.4\"\n",
    )
    .unwrap();
    let file = r.path("NVIDIA-Linux-x86_64-580.126.08-vgpu-kvm.run");
    fs::write(&file, b"#!/bin/sh\n# pretend driver\n").unwrap();
    let cache = r.path("cache");
    let args = |extra: &[&str]| {
        let mut v = vec![
            "fetch",
            profile.to_str().unwrap(),
            "--cache",
            cache.to_str().unwrap(),
            "--driver-file",
            file.to_str().unwrap(),
        ];
        v.extend_from_slice(extra);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let a = args(&[]);
    let (_, err) = r.expect(1, &a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        err.contains("--sha256"),
        "the error must say how to pass a checksum: {err}"
    );
    let sha = vgpu_bake::hash::digest_bytes(&fs::read(&file).unwrap()).sha256;
    let a = args(&["--sha256", &sha]);
    let (out, _) = r.expect(0, &a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.contains(&sha), "{out}");
    assert!(
        cache
            .join("NVIDIA-Linux-x86_64-580.126.08-vgpu-kvm.run")
            .is_file()
    );
    let wrong = "0".repeat(64);
    let a = args(&["--sha256", &wrong]);
    let (_, err) = r.expect(1, &a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        err.contains(&wrong) && err.contains(&sha),
        "expected and actual named: {err}"
    );
}

#[test]
fn plan_fetch_and_bake_share_the_prepared_driver() {
    let r = Run::new();
    let cache = r.path("cache");
    let cache = cache.to_str().unwrap();
    // Nothing fetched: `plan` says so and prints no driver digests.
    let (before, err) = r.expect(0, &["plan", "profiles/demo.toml", "--cache", cache]);
    assert!(err.contains("sha256 is pinned once it is fetched"), "{err}");
    assert!(!before.contains("[cached-driver]"), "{before}");
    // `fetch` prepares it (the demo installer, built in)...
    let (out, err) = r.expect(0, &["fetch", "profiles/demo.toml", "--cache", cache]);
    assert!(
        err.contains("demo installer from data/demo imported"),
        "{err}"
    );
    let sha = out
        .split_whitespace()
        .skip_while(|w| *w != "sha256")
        .nth(1)
        .unwrap()
        .to_string();
    // ...`plan` now finds it verified in the cache...
    let (after, err) = r.expect(0, &["plan", "profiles/demo.toml", "--cache", cache]);
    assert!(!err.contains("pinned once it is fetched"), "{err}");
    let table: toml::Table = toml::from_str(&after).unwrap();
    assert_eq!(
        table["cached-driver"]["sha256"].as_str(),
        Some(sha.as_str())
    );
    let (json, _) = r.expect(
        0,
        &["plan", "profiles/demo.toml", "--json", "--cache", cache],
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["cached-driver"]["sha256"], sha.as_str());
    // ...and `bake` uses the same verified copy and pins the same digest.
    let (_, err) = r.bake("profiles/demo.toml", "o");
    assert!(err.contains("verified copy in the cache"), "{err}");
    let root = r.path("root");
    fs::create_dir(&root).unwrap();
    r.expect(
        0,
        &[
            "install",
            r.path("o/demo.cpio.zst").to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
        ],
    );
    let plan_text = fs::read_to_string(root.join("var/lib/vgpu-firstboot/plan.toml")).unwrap();
    let plan = vgpu_plan::plan::Plan::from_toml(&plan_text).unwrap();
    assert_eq!(plan.driver.unwrap().sha256, sha);
    assert_eq!(plan.host.offline_debs.len(), 1);
}

/// A pipe whose reader is gone: every write to it fails (EPIPE).
fn closed_pipe() -> std::process::Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer.into()
}

/// `vgpu-bake validate p.toml | head -c0` and the like: no panic, the usual
/// exit code, whether stdout or stderr is the closed one.
#[test]
fn a_closed_stdout_or_stderr_is_no_panic() {
    for close_stdout in [true, false] {
        for (code, args) in [
            (0, &["validate", "profiles/demo.toml"][..]),
            (
                0,
                &["validate", "tests/profiles/declared-override-warning.toml"],
            ),
            (
                1,
                &[
                    "validate",
                    "profiles/demo.toml",
                    "tests/profiles/err-unknown-release.toml",
                ],
            ),
            (0, &["gpus", "10de:20f1", "10de:1e07"]),
            (0, &["gpus", "--json", "10de:1e07"]),
            (1, &["gpus", "nvidia"]),
            (0, &["plan", "profiles/demo.toml", "--json"]),
            (0, &["--help"]),
            (2, &["frobnicate"]),
        ] {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_vgpu-bake"));
            cmd.args(args).current_dir(workspace());
            if close_stdout {
                cmd.stdout(closed_pipe())
                    .stderr(std::process::Stdio::piped());
            } else {
                cmd.stdout(std::process::Stdio::piped())
                    .stderr(closed_pipe());
            }
            let out = cmd.output().unwrap();
            let seen = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!seen.contains("panicked"), "{args:?}: {seen}");
            assert_eq!(
                out.status.code(),
                Some(code),
                "{args:?} (closed stdout: {close_stdout}): {:?} {seen}",
                out.status
            );
        }
    }
}

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
        self.bake_with(0, profile, out, &[])
    }

    /// `bake PROFILE --out OUT` with this run's cache and agent and `extra`
    /// arguments; asserts the exit code.
    fn bake_with(&self, code: i32, profile: &str, out: &str, extra: &[&str]) -> (String, String) {
        let out = self.path(out);
        let cache = self.path("cache");
        let agent = self.path("agent");
        let mut args = vec![
            "bake",
            profile,
            "--out",
            out.to_str().unwrap(),
            "--cache",
            cache.to_str().unwrap(),
            "--agent",
            agent.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        self.expect(code, &args)
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
        ],
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok: ")).count(),
        4,
        "{out}"
    );
    // The unlock example is a template: it says what to fill in.
    let (_, err) = r.expect(1, &["validate", "profiles/unlock-amd-rtx2080ti.toml"]);
    assert!(
        err.contains("`unlock.library-sha256` is 64 zeros, the example's placeholder"),
        "{err}"
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

/// Contradictory or malformed flags the commands check themselves (after
/// clap) are usage errors too: exit code 2, the flag named, nothing done.
#[test]
fn usage_errors_found_after_parsing_exit_2() {
    let r = Run::new();
    let out = r.path("out");
    let out = out.to_str().unwrap();
    let (_, err) = r.expect(
        2,
        &[
            "bake",
            "profiles/demo.toml",
            "tests/profiles/demo-pve9.toml",
            "--sha256",
            &"0".repeat(64),
            "--out",
            out,
        ],
    );
    assert!(
        err.starts_with("vgpu-bake: error: --driver-file, --url, --md5 and --sha256 apply to one profile's driver"),
        "{err}"
    );
    assert!(!r.path("out").exists());
    let bundle = workspace().join("tests/fixtures/valid.cpio.zst");
    let bundle = bundle.to_str().unwrap();
    let hook = r.path("hook");
    let hook = hook.to_str().unwrap();
    let (_, err) = r.expect(
        2,
        &[
            "hook",
            "--bundle",
            bundle,
            "--from-path",
            "srv",
            "--out",
            hook,
        ],
    );
    assert_eq!(
        err,
        "vgpu-bake: error: --from-path \"srv\" must be an absolute path of plain names\n"
    );
    let (_, err) = r.expect(
        2,
        &[
            "hook",
            "--bundle",
            bundle,
            "--from-url",
            "ftp://x/",
            "--out",
            hook,
        ],
    );
    assert!(
        err.contains("--from-url \"ftp://x/\" must be an http:// or https://"),
        "{err}"
    );
    assert!(!r.path("hook").exists());
    let img = r.path("img");
    let (_, err) = r.expect(
        2,
        &[
            "usb",
            bundle,
            "--out",
            img.to_str().unwrap(),
            "--label",
            "much-too-long-label",
        ],
    );
    assert!(
        err.contains("--label \"much-too-long-label\" must be 1 to 16"),
        "{err}"
    );
    r.expect(
        2,
        &["answer", "profiles/demo.toml", "--hook-url", "ftp://x"],
    );
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
    // Licensing is applied: what it touches on the host is shown.
    assert!(!err.contains("not applied"), "{err}");
    assert_eq!(
        v["licensing-host"]["files"],
        serde_json::json!([
            "/etc/vgpu-bake/licensing/client_configuration_token.tok",
            "/etc/vgpu-bake/licensing/guest/license_linux.sh",
            "/etc/vgpu-bake/licensing/guest/license_windows.ps1"
        ])
    );
    assert_eq!(
        v["licensing-host"]["ports"],
        serde_json::json!(["dls.example.lan:443 (the DLS, checked from the host)"])
    );
    // The token is named by its source; its digest is never shown.
    assert_eq!(
        v["licensing"]["token"]["path"],
        "licensing/client_configuration_token.tok"
    );
    assert!(v["licensing"]["token"]["sha256"].is_null());

    let (out, err) = r.expect(0, &["plan", "tests/profiles/licensing-fastapi.toml"]);
    let plan: toml::Table = toml::from_str(&out).unwrap();
    let host = &plan["licensing-host"];
    assert_eq!(
        host["units"].as_array().unwrap(),
        &[toml::Value::from("vgpu-bake-fastapi-dls.service")]
    );
    assert!(
        host["files"]
            .as_array()
            .unwrap()
            .contains(&toml::Value::from(
                "/etc/vgpu-bake/licensing/cert/webserver.key"
            )),
        "{out}"
    );
    assert_eq!(
        host["ports"].as_array().unwrap(),
        &[toml::Value::from(
            "0.0.0.0:9443 -> container 443 (FastAPI-DLS, HTTPS; guests use pve1.example.lan:9443)"
        )]
    );
    assert!(err.contains("patched guest drivers"), "{err}");
    let (_, err) = r.expect(0, &["validate", "tests/profiles/licensing-fastapi.toml"]);
    assert!(
        err.contains("guests with vGPU 18.x and later guest drivers"),
        "{err}"
    );
}

/// A token is baked mode 0600, flagged secret and redacted by `inspect`;
/// the example's placeholder token is refused at bake.
#[test]
fn a_baked_token_is_a_redacted_secret() {
    let r = Run::new();
    let dir = r.path("p");
    fs::create_dir_all(dir.join("demo")).unwrap();
    fs::copy(
        workspace().join("profiles/demo/hello_2.10-3_amd64.deb"),
        dir.join("demo/hello_2.10-3_amd64.deb"),
    )
    .unwrap();
    let profile = fs::read_to_string(workspace().join("profiles/demo.toml")).unwrap()
        + "\n[licensing]\nmode = \"external\"\nserver = \"dls.lan\"\ntoken = \"client.tok\"\n";
    fs::write(dir.join("lic.toml"), profile).unwrap();
    let profile = dir.join("lic.toml");
    let profile = profile.to_str().unwrap();
    fs::copy(
        workspace().join("profiles/dls/client_configuration_token.tok"),
        dir.join("client.tok"),
    )
    .unwrap();
    let (_, err) = r.expect(
        1,
        &[
            "bake",
            profile,
            "--out",
            r.path("x").to_str().unwrap(),
            "--agent",
            r.path("agent").to_str().unwrap(),
            "--cache",
            r.path("cache").to_str().unwrap(),
        ],
    );
    assert!(
        err.contains("is the example's placeholder, not a token"),
        "{err}"
    );
    fs::write(dir.join("client.tok"), "eyJ0b2tlbiI6MX0.c2VjcmV0.c2ln\n").unwrap();
    r.bake(profile, "o");
    let bundle = r.path("o/demo.cpio.zst");
    let (listing, _) = r.expect(0, &["inspect", bundle.to_str().unwrap()]);
    let line = listing
        .lines()
        .find(|l| l.contains("client_configuration_token.tok"))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(line.starts_with("0600 file"), "{line}");
    assert!(line.ends_with("secret, redacted"), "{line}");
    let sha = vgpu_bake::hash::digest_bytes(b"eyJ0b2tlbiI6MX0.c2VjcmV0.c2ln\n").sha256;
    let (json, _) = r.expect(0, &["inspect", "--json", bundle.to_str().unwrap()]);
    assert!(!listing.contains(&sha) && !json.contains(&sha), "{json}");
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
    // The demo release declares an md5 (the registry's): computed, recorded.
    assert_eq!(
        d.md5.as_deref(),
        Some(vgpu_bake::hash::md5_hex(&bytes).as_str())
    );
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
        .replace("1706899d", "0706899d");
    fs::write(&profile, text).unwrap();
    copy_unlock_inputs(&r);
    let out = r.path("o");
    let (_, err) = r.bake_with(1, profile.to_str().unwrap(), "o", &[]);
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

/// The demo unlock inputs next to a profile in the test's directory.
fn copy_unlock_inputs(r: &Run) {
    fs::create_dir_all(r.path("unlock")).unwrap();
    for f in ["demo-unlock.patch", "libvgpu_unlock_rs-demo.so"] {
        fs::copy(
            workspace().join("tests/profiles/unlock").join(f),
            r.path("unlock").join(f),
        )
        .unwrap();
    }
}

/// Runs the binary in `dir`, killing it after 30 s: a command that blocks
/// on a FIFO fails the test instead of hanging it.
fn run_guarded(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vgpu-bake"))
        .args(args)
        .current_dir(dir)
        .env("SOURCE_DATE_EPOCH", "0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(30) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("vgpu-bake {} hung (killed after 30 s)", args.join(" "));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(ok.success(), "mkfifo {}", path.display());
}

#[test]
fn a_checksum_flag_cannot_bless_another_file() {
    let r = Run::new();
    let dummy = r.path("dummy.run");
    let bytes: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    fs::write(&dummy, &bytes).unwrap();
    let d = vgpu_bake::hash::digest_bytes(&bytes);
    let out = r.path("o");
    let bake = |extra: &[&str], profile: &str| {
        let mut args = vec!["--driver-file", dummy.to_str().unwrap()];
        args.extend_from_slice(extra);
        r.bake_with(1, profile, "o", &args)
    };
    // The registry's md5 for 18.4 wins over --md5.
    let md5 = vgpu_bake::hash::md5_hex(&bytes);
    let (_, err) = bake(&["--md5", &md5], "profiles/native-intel-a100.toml");
    assert!(
        err.contains(&format!(
            "--md5 \"{md5}\" contradicts the registry's md5 (data/drivers.toml)"
        )) && err
            .contains("for driver release 18.4: a checksum on the command line cannot override it"),
        "{err}"
    );
    // The profile's sha256 pin wins over --sha256.
    let pinned = r.path("pinned.toml");
    fs::write(
        &pinned,
        format!(
            "proxmox = 9\n[vgpu]\nmode = \"native\"\n[driver]\nrelease = \"20.1\"\nsha256 = \"{}\"\n",
            "ab".repeat(32)
        ),
    )
    .unwrap();
    let (_, err) = bake(&["--sha256", &d.sha256], pinned.to_str().unwrap());
    assert!(
        err.contains(&format!(
            "{}: --sha256 \"{}\" contradicts the profile's `driver.sha256` {}",
            pinned.display(),
            d.sha256,
            "ab".repeat(32)
        )),
        "{err}"
    );
    let left: Vec<_> = fs::read_dir(&out)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "a bundle was written: {left:?}");
    assert!(
        !r.path("cache")
            .join("NVIDIA-Linux-x86_64-570.172.07-vgpu-kvm.run")
            .exists()
    );
}

#[test]
fn a_release_without_checksum_is_pinned_with_the_line_fetch_prints() {
    let r = Run::new();
    let profile = r.path("p.toml");
    let base = "proxmox = 9\n[vgpu]\nmode = \"native\"\n[driver]\nrelease = \"19.4\"\n";
    fs::write(&profile, base).unwrap();
    let file = r.path("driver.run");
    fs::write(&file, b"#!/bin/sh\n# pretend driver\n").unwrap();
    let sha = vgpu_bake::hash::digest_bytes(&fs::read(&file).unwrap()).sha256;
    let cache = r.path("cache");
    let (p, c, f, o, a) = (
        profile.to_str().unwrap(),
        cache.to_str().unwrap(),
        file.to_str().unwrap(),
        r.path("o"),
        r.path("agent"),
    );
    let line = format!("sha256 = \"{sha}\"");
    let (_, err) = r.expect(
        0,
        &[
            "fetch",
            p,
            "--cache",
            c,
            "--driver-file",
            f,
            "--sha256",
            &sha,
        ],
    );
    assert!(
        err.contains(&format!("add this line under `[driver]` in {p}:\n{line}\n")),
        "{err}"
    );
    let bake = [
        "bake",
        p,
        "--cache",
        c,
        "--out",
        o.to_str().unwrap(),
        "--agent",
        a.to_str().unwrap(),
    ];
    let (_, err) = r.expect(1, &bake);
    assert!(
        err.contains(&format!("{p}: driver release 19.4 (NVIDIA-Linux-x86_64-580.126.08-vgpu-kvm.run) has no checksum in the registry and the profile pins none")),
        "{err}"
    );
    assert!(
        err.contains(&format!("under `[driver]` in the profile:\n    {line}")),
        "{err}"
    );
    // The line, added to the profile, is what the bake needed.
    fs::write(&profile, format!("{base}{line}\n")).unwrap();
    let (bundle, _) = r.expect(0, &bake);
    assert!(bundle.trim_end().ends_with(".cpio.zst"), "{bundle}");
}

/// Issue 14: a release nothing declares an md5 for (19.4: none in the
/// registry, the profile pins the sha256) is fetched, planned and baked
/// without one: `fetch` says so, the cache's sidecar and the baked plan
/// have none, and the bundle still inspects and installs.
#[test]
fn a_release_without_a_declared_md5_is_baked_without_one() {
    let r = Run::new();
    let file = r.path("driver.run");
    let bytes = b"#!/bin/sh\n# pretend 19.4 driver\n";
    fs::write(&file, bytes).unwrap();
    let sha = vgpu_bake::hash::digest_bytes(bytes).sha256;
    let profile = r.path("p.toml");
    fs::write(
        &profile,
        format!(
            "proxmox = 9\n[vgpu]\nmode = \"native\"\n[driver]\nrelease = \"19.4\"\nsha256 = \"{sha}\"\n"
        ),
    )
    .unwrap();
    let cache = r.path("cache");
    let (p, c) = (profile.to_str().unwrap(), cache.to_str().unwrap());
    let (out, _) = r.expect(
        0,
        &[
            "fetch",
            p,
            "--cache",
            c,
            "--driver-file",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.lines().next(),
        Some(format!("md5 not declared  sha256 {sha}  {} bytes", bytes.len()).as_str()),
        "{out}"
    );
    let run = "NVIDIA-Linux-x86_64-580.126.08-vgpu-kvm.run";
    let sidecar = fs::read_to_string(cache.join(format!("{run}.digests.toml"))).unwrap();
    assert!(
        sidecar.contains(&sha) && !sidecar.contains("md5"),
        "{sidecar}"
    );
    let (plan, _) = r.expect(0, &["plan", p, "--cache", c]);
    let plan: toml::Table = toml::from_str(&plan).unwrap();
    let cached = plan["cached-driver"].as_table().unwrap();
    assert_eq!(cached["sha256"].as_str(), Some(sha.as_str()));
    assert!(!cached.contains_key("md5"), "{cached:?}");

    let (bundle, err) = r.bake(p, "o");
    assert!(err.contains("verified copy in the cache"), "{err}");
    let bundle = PathBuf::from(bundle.trim_end());
    r.expect(0, &["inspect", bundle.to_str().unwrap()]);
    let root = r.path("root");
    fs::create_dir(&root).unwrap();
    r.expect(
        0,
        &[
            "install",
            bundle.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
        ],
    );
    let plan_text = fs::read_to_string(root.join("var/lib/vgpu-firstboot/plan.toml")).unwrap();
    assert!(!plan_text.contains("md5"), "{plan_text}");
    let d = vgpu_plan::plan::Plan::from_toml(&plan_text)
        .unwrap()
        .driver
        .unwrap();
    assert_eq!((d.md5, d.sha256.as_str()), (None, sha.as_str()));
}

/// A release the registry declares an md5 for (18.4): a file with another
/// md5 is refused with the mismatch named, and nothing is cached or baked.
#[test]
fn a_file_with_the_wrong_md5_is_refused() {
    let r = Run::new();
    let file = r.path("dummy.run");
    let bytes = b"#!/bin/sh\n# not the 18.4 driver\n";
    fs::write(&file, bytes).unwrap();
    let want = "5b370637f2aaf2f1828027aeaabafff9";
    let (_, err) = r.bake_with(
        1,
        "profiles/native-intel-a100.toml",
        "o",
        &["--driver-file", file.to_str().unwrap()],
    );
    assert!(
        err.contains(&format!(
            "checksum mismatch (md5 expected {want}, got {})",
            vgpu_bake::hash::md5_hex(bytes)
        )),
        "{err}"
    );
    assert!(
        !r.path("cache")
            .join("NVIDIA-Linux-x86_64-570.172.07-vgpu-kvm.run")
            .exists()
    );
    let left: Vec<_> = fs::read_dir(r.path("o"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "a bundle was written: {left:?}");
}

#[test]
fn fifos_and_devices_are_refused_without_blocking() {
    let r = Run::new();
    let dir = r.dir.path();
    // A profile that is a FIFO, or /dev/zero.
    mkfifo(&r.path("fifo.toml"));
    let (code, _, err) = run_guarded(dir, &["validate", "fifo.toml"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(
            "fifo.toml: cannot read the profile: it is a FIFO (named pipe), not a regular file"
        ),
        "{err}"
    );
    let (code, _, err) = run_guarded(dir, &["plan", "/dev/zero"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(
            "/dev/zero: cannot read the profile: it is a character device, not a regular file"
        ),
        "{err}"
    );
    // A profile larger than 1 MiB.
    let mut big = "proxmox = 8\n[vgpu]\nmode = \"passthrough\"\n".to_string();
    big.push_str(&"# padding\n".repeat(120_000));
    fs::write(r.path("big.toml"), big).unwrap();
    let (code, _, err) = run_guarded(dir, &["validate", "big.toml"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("more than the 1048576 bytes allowed here"),
        "{err}"
    );
    // An offline .deb that is a FIFO.
    fs::create_dir(r.path("debs")).unwrap();
    mkfifo(&r.path("debs/pipe_1.0_amd64.deb"));
    fs::write(
        r.path("deb.toml"),
        "proxmox = 8\n[vgpu]\nmode = \"passthrough\"\n[host]\noffline-debs = [\"debs/pipe_1.0_amd64.deb\"]\n",
    )
    .unwrap();
    let bake = ["bake", "deb.toml", "--out", "out", "--agent", "agent"];
    for args in [&["validate", "deb.toml"][..], &bake[..]] {
        let cmd = args[0];
        let (code, _, err) = run_guarded(dir, args);
        assert_eq!(code, Some(1), "{cmd}: {err}");
        assert!(
            err.contains("`host.offline-debs[0]`: \"debs/pipe_1.0_amd64.deb\" is a FIFO (named pipe), not a regular file"),
            "{cmd}: {err}"
        );
    }
    // A --driver-file that is a FIFO or /dev/zero.
    mkfifo(&r.path("driver.run"));
    let sha = "ab".repeat(32);
    fs::write(
        r.path("p.toml"),
        "proxmox = 9\n[vgpu]\nmode = \"native\"\n[driver]\nrelease = \"19.4\"\n",
    )
    .unwrap();
    for (file, kind) in [
        ("driver.run", "a FIFO (named pipe)"),
        ("/dev/zero", "a character device"),
    ] {
        let (code, _, err) = run_guarded(
            dir,
            &[
                "fetch",
                "p.toml",
                "--cache",
                "cache",
                "--driver-file",
                file,
                "--sha256",
                &sha,
            ],
        );
        assert_eq!(code, Some(1), "{file}: {err}");
        assert!(
            err.contains(&format!(
                "{file}: it is {kind}, not a regular file; pass the downloaded .run file itself"
            )),
            "{file}: {err}"
        );
    }
}

#[test]
fn profile_text_reaches_the_terminal_short_and_escaped() {
    let r = Run::new();
    let dir = r.dir.path();
    let base = "proxmox = 8\n[vgpu]\nmode = \"passthrough\"\n";
    let cases = [
        (
            "desc.toml",
            format!("description = \"{}\"\n{base}", "d".repeat(1_000_000)),
            "`description` = \"",
        ),
        (
            "esc.toml",
            format!("description = \"\\u001b[2J\\u001b]0;title\\u0007\"\n{base}"),
            "holds control characters",
        ),
        (
            "name.toml",
            format!("name = \"{}\"\n{base}", "n".repeat(200_000)),
            "(200000 characters) from `name` is not usable",
        ),
    ];
    for (file, text, want) in cases {
        fs::write(r.path(file), text).unwrap();
        let (code, out, err) = run_guarded(dir, &["validate", file]);
        assert_eq!(code, Some(1), "{file}: {err}");
        assert!(err.contains(want), "{file}: {err}");
        assert!(err.len() < 1_000, "{file}: {} bytes of error", err.len());
        assert!(
            !err.contains('\u{1b}') && !out.contains('\u{1b}'),
            "{file}: raw escape: {err:?}"
        );
        let (code, out, err) = run_guarded(dir, &["plan", file]);
        assert_eq!(code, Some(1), "{file}");
        assert!(
            !err.contains('\u{1b}') && !out.contains('\u{1b}'),
            "{file}: raw escape: {err:?}"
        );
    }
    // A profile path with an escape sequence in its name is escaped too.
    let odd = "odd\u{1b}[31m.toml";
    fs::write(r.path(odd), format!("name = \"odd\"\n{base}")).unwrap();
    let (code, out, err) = run_guarded(dir, &["validate", odd]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("ok: odd\\u{1b}[31m.toml"), "{out:?}");
}

#[test]
fn an_unlock_bake_with_a_relative_cache_works() {
    let r = Run::new();
    copy_unlock_inputs(&r);
    fs::copy(
        workspace().join("tests/profiles/unlock-demo.toml"),
        r.path("unlock-demo.toml"),
    )
    .unwrap();
    let (code, out, err) = run_guarded(
        r.dir.path(),
        &[
            "bake",
            "unlock-demo.toml",
            "--cache",
            "cache",
            "--out",
            "out",
            "--agent",
            "agent",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("applied with the installer's --apply-patch"),
        "{err}"
    );
    assert_eq!(out.trim_end(), "out/demo-unlock.cpio.zst");
    assert!(r.path("out/demo-unlock.cpio.zst").is_file());
}

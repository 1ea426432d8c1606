//! The output discipline of the real `vgpu-bake` binary: `--json`
//! documents of `validate`, `fetch`, `bake` and `install` (docs/JSON.md),
//! `-q` and `-v`, and colour only on a terminal without `NO_COLOR`.

#[path = "support/run.rs"]
mod run;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use run::{vgpu_bake, workspace};
use serde_json::Value;

/// A temp dir with a stand-in agent, and `vgpu-bake` run in the workspace.
struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("agent"), "#!/bin/sh\necho fake agent\n").unwrap();
        Dir(d)
    }

    fn p(&self, rel: &str) -> String {
        self.0.path().join(rel).to_str().unwrap().to_owned()
    }

    /// `bake PROFILE --out OUT` with this dir's cache and agent, and `extra`.
    fn bake(&self, profile: &str, out: &str, extra: &[&str]) -> (i32, String, String) {
        let (cache, agent, out) = (self.p("cache"), self.p("agent"), self.p(out));
        let mut args = vec![
            "bake", profile, "--out", &out, "--cache", &cache, "--agent", &agent,
        ];
        args.extend_from_slice(extra);
        vgpu_bake(&args)
    }
}

/// Parses stdout as exactly one JSON document.
fn doc(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout:?}"))
}

/// The first word of a `.sha256` file.
fn sha256_file(path: &str) -> String {
    let text = fs::read_to_string(path).unwrap();
    text.split_whitespace().next().unwrap().to_owned()
}

#[test]
fn validate_json_reports_each_profile() {
    let (code, out, err) = vgpu_bake(&[
        "validate",
        "--json",
        "profiles/demo.toml",
        "tests/profiles/err-unknown-release.toml",
    ]);
    assert_eq!(code, 1, "{err}");
    let v = doc(&out);
    assert_eq!(v["schema"], 1);
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"], "1 of 2 profile(s) failed validation");
    let p = v["profiles"].as_array().unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(p[0]["profile"], "profiles/demo.toml");
    assert_eq!(p[0]["ok"], true);
    assert_eq!(p[0]["name"], "demo");
    assert_eq!(p[0]["mode"], "native");
    assert_eq!(p[0]["proxmox"], 8);
    assert!(p[0]["steps"].as_u64().unwrap() > 5, "{v}");
    assert!(p[0].get("error").is_none(), "{v}");
    assert_eq!(p[1]["ok"], false);
    let e = p[1]["error"].as_str().unwrap();
    assert!(
        e.starts_with("tests/profiles/err-unknown-release.toml: `driver.release` = \"15.0\""),
        "{e}"
    );
    // The same errors on stderr, as without --json.
    assert!(err.contains(e), "{err}");
    assert!(
        err.ends_with("vgpu-bake: error: 1 of 2 profile(s) failed validation\n"),
        "{err}"
    );

    let (code, out, err) = vgpu_bake(&["validate", "--json", "profiles/passthrough.toml"]);
    assert_eq!(code, 0, "{err}");
    let v = doc(&out);
    assert_eq!(v["ok"], true);
    assert!(v.get("error").is_none(), "{v}");
    assert_eq!(v["profiles"][0]["mode"], "passthrough");
}

#[test]
fn fetch_json_names_the_verified_file() {
    let d = Dir::new();
    let cache = d.p("cache");
    let (code, out, err) = vgpu_bake(&["fetch", "--json", "profiles/demo.toml", "--cache", &cache]);
    assert_eq!(code, 0, "{err}");
    let v = doc(&out);
    assert_eq!(v["schema"], 1);
    assert_eq!(v["ok"], true);
    assert_eq!(v["profile"], "profiles/demo.toml");
    assert_eq!(v["mode"], "native");
    let drv = &v["driver"];
    let path = drv["path"].as_str().unwrap();
    assert!(path.starts_with(&cache), "{path}");
    let bytes = fs::read(path).unwrap();
    assert_eq!(drv["size"], bytes.len() as u64);
    assert_eq!(drv["sha256"], vgpu_bake::hash::digest_bytes(&bytes).sha256);
    // The demo release declares an md5 (the registry's): reported.
    assert_eq!(drv["md5"], vgpu_bake::hash::md5_hex(&bytes));
    assert_eq!(drv["source"], "imported");
    assert_eq!(drv["pinned"], true);
    assert_eq!(
        drv["filename"],
        Path::new(path).file_name().unwrap().to_str().unwrap()
    );

    // Passthrough needs no driver: `driver` is null.
    let (code, out, _) = vgpu_bake(&["fetch", "--json", "profiles/passthrough.toml"]);
    assert_eq!(code, 0);
    let v = doc(&out);
    assert_eq!(v["driver"], Value::Null);
    assert_eq!(v["mode"], "passthrough");

    // A failure: still the document, with the error stderr has too.
    let (code, out, err) =
        vgpu_bake(&["fetch", "--json", "tests/profiles/err-unknown-release.toml"]);
    assert_eq!(code, 1);
    let v = doc(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(v["driver"], Value::Null);
    let e = v["error"].as_str().unwrap();
    assert_eq!(err, format!("vgpu-bake: error: {e}\n"));
}

#[test]
fn bake_json_matches_the_bundle_and_its_sha256_file() {
    let d = Dir::new();
    let (code, out, err) = d.bake("profiles/demo.toml", "o", &["--json"]);
    assert_eq!(code, 0, "{err}");
    let v = doc(&out);
    assert_eq!(v["schema"], 1);
    assert_eq!(v["ok"], true);
    assert_eq!(v["out"], d.p("o"));
    let b = &v["bundles"][0];
    assert_eq!(v["bundles"].as_array().unwrap().len(), 1);
    assert_eq!(b["profile"], "profiles/demo.toml");
    assert_eq!(b["name"], "demo");
    assert_eq!(b["bundle"], d.p("o/demo.cpio.zst"));
    assert_eq!(b["sha256-file"], d.p("o/demo.cpio.zst.sha256"));
    assert_eq!(b["sha256"], sha256_file(&d.p("o/demo.cpio.zst.sha256")));
    let bytes = fs::read(d.p("o/demo.cpio.zst")).unwrap();
    assert_eq!(b["size"], bytes.len() as u64);
    assert_eq!(b["sha256"], vgpu_bake::hash::digest_bytes(&bytes).sha256);
    assert_eq!(b["demo"], true);
    assert_eq!(b["signed"], false);
    assert!(b.get("key-id").is_none(), "{b}");
    assert!(b["entries"].as_u64().unwrap() > 5);

    // Signed, and two profiles: one entry each, in order.
    vgpu_bake(&["keygen", &d.p("k")]);
    let (code, out, err) = d.bake(
        "profiles/demo.toml",
        "s",
        &[
            "tests/profiles/demo-pve9.toml",
            "--sign-key",
            &d.p("k.key"),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v = doc(&out);
    let names: Vec<&str> = v["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["demo", "demo-pve9"]);
    for b in v["bundles"].as_array().unwrap() {
        assert_eq!(b["signed"], true);
        assert_eq!(b["key-id"].as_str().unwrap().len(), 16, "{b}");
        assert_eq!(b["sha256"], sha256_file(b["sha256-file"].as_str().unwrap()));
    }
}

#[test]
fn bake_json_on_failure_carries_the_error() {
    let d = Dir::new();
    let (code, out, err) = d.bake(
        "profiles/demo.toml",
        "o",
        &["--json", "--sign-key", &d.p("no-such.key")],
    );
    assert_eq!(code, 1);
    let v = doc(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(v["bundles"], Value::Array(vec![]));
    let e = v["error"].as_str().unwrap();
    assert!(e.contains("no-such.key"), "{e}");
    assert_eq!(err, format!("vgpu-bake: error: {e}\n"));

    // A profile that fails: its own entry says why.
    let (code, out, _) = d.bake("tests/profiles/err-unknown-release.toml", "o", &["--json"]);
    assert_eq!(code, 1);
    let v = doc(&out);
    assert_eq!(v["bundles"][0]["ok"], false);
    assert_eq!(v["bundles"][0]["error"], v["error"]);
    assert!(!Path::new(&d.p("o/err-unknown-release.cpio.zst")).exists());
}

#[test]
fn install_json_counts_what_it_laid() {
    let d = Dir::new();
    let (code, _, err) = d.bake("profiles/demo.toml", "o", &[]);
    assert_eq!(code, 0, "{err}");
    fs::create_dir(d.p("root")).unwrap();
    let bundle = d.p("o/demo.cpio.zst");
    let root = d.p("root");
    let (code, out, err) = vgpu_bake(&["install", &bundle, "--root", &root, "--json"]);
    assert_eq!(code, 0, "{err}");
    let v = doc(&out);
    assert_eq!(v["schema"], 1);
    assert_eq!(v["ok"], true);
    assert_eq!(v["bundle"], bundle);
    assert_eq!(v["root"], root);
    assert_eq!(v["signature"], Value::Null);
    let laid = v["laid"].as_array().unwrap();
    assert_eq!(v["entries"], laid.len() as u64);
    let mut bytes = 0;
    for e in laid {
        let path = Path::new(&root).join(e["path"].as_str().unwrap());
        let meta = fs::symlink_metadata(&path).unwrap();
        match e["kind"].as_str().unwrap() {
            "file" => {
                assert_eq!(e["size"], meta.len(), "{e}");
                let mode = format!("{:04o}", meta.permissions().mode() & 0o7777);
                assert_eq!(e["mode"], mode, "{e}");
                bytes += meta.len();
            }
            "dir" => assert!(meta.is_dir(), "{e}"),
            "symlink" => {
                let target = fs::read_link(&path).unwrap();
                assert_eq!(e["size"], target.as_os_str().len() as u64);
                bytes += target.as_os_str().len() as u64;
            }
            k => panic!("kind {k}"),
        }
    }
    assert_eq!(v["bytes"], bytes);
    assert!(
        laid.iter()
            .any(|e| e["path"] == "var/lib/vgpu-firstboot/plan.toml" && e["kind"] == "file"),
        "{v}"
    );
}

#[test]
fn install_into_a_missing_root_says_so_once() {
    let d = Dir::new();
    let bundle = workspace().join("tests/fixtures/valid.cpio.zst");
    let bundle = bundle.to_str().unwrap();
    let root = d.p("missing");
    let want = format!(
        "cannot install into {root}: No such file or directory (os error 2); give an existing directory as --root"
    );
    let (code, out, err) = vgpu_bake(&["install", bundle, "--root", &root]);
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert_eq!(err, format!("vgpu-bake: error: {want}\n"));
    let (code, out, err) = vgpu_bake(&["install", bundle, "--root", &root, "--json"]);
    assert_eq!(code, 1);
    assert_eq!(err, format!("vgpu-bake: error: {want}\n"));
    let v = doc(&out);
    assert_eq!(v["error"], want);
    assert_eq!(v["entries"], 0);
}

#[test]
fn quiet_prints_only_errors_and_the_json() {
    let d = Dir::new();
    // Without -q a bake talks on both streams ...
    let (code, out, err) = d.bake("profiles/demo.toml", "a", &[]);
    assert_eq!(code, 0);
    assert!(!out.is_empty() && !err.is_empty(), "{out}{err}");
    // ... with -q on neither.
    assert_eq!(
        d.bake("profiles/demo.toml", "b", &["-q"]),
        (0, String::new(), String::new())
    );
    let (code, out, err) = d.bake("profiles/demo.toml", "c", &["--quiet", "--json"]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(doc(&out)["bundles"][0]["name"], "demo");
    fs::create_dir(d.p("root")).unwrap();
    let bundle = d.p("b/demo.cpio.zst");
    let root = d.p("root");
    assert_eq!(
        vgpu_bake(&["-q", "install", &bundle, "--root", &root]),
        (0, String::new(), String::new())
    );
    assert_eq!(
        vgpu_bake(&["validate", "-q", "profiles/demo.toml"]),
        (0, String::new(), String::new())
    );
    assert_eq!(
        vgpu_bake(&[
            "fetch",
            "-q",
            "profiles/demo.toml",
            "--cache",
            &d.p("cache")
        ]),
        (0, String::new(), String::new())
    );
    assert_eq!(
        vgpu_bake(&["keygen", "-q", &d.p("key")]),
        (0, String::new(), String::new())
    );
    // Errors still go to stderr.
    let (code, out, err) =
        vgpu_bake(&["validate", "-q", "tests/profiles/err-unknown-release.toml"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(err.contains("is not a known vGPU release"), "{err}");
    assert!(
        err.ends_with("1 of 1 profile(s) failed validation\n"),
        "{err}"
    );
    // -q and -v contradict each other: a usage error.
    assert_eq!(
        vgpu_bake(&["-q", "-v", "validate", "profiles/demo.toml"]).0,
        2
    );
}

#[test]
fn verbose_shows_the_writers_phases_and_each_payload_proof() {
    let d = Dir::new();
    let (code, _, quiet) = d.bake("profiles/demo.toml", "a", &[]);
    assert_eq!(code, 0);
    assert!(!quiet.contains("timings:"), "{quiet}");
    let (code, _, err) = d.bake("profiles/demo.toml", "b", &["-v"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("timings:"), "{err}");
    assert!(
        err.lines().any(
            |l| l.starts_with("  payload var/lib/vgpu-firstboot/payload/driver/")
                && l.contains("sha256 ")
                && (l.contains("read and hashed") || l.contains("stamp"))
        ),
        "{err}"
    );
    // The driver cache's answer is said in either mode.
    assert!(err.contains("verified copy in the cache"), "{err}");
}

/// Whether `bytes` hold an escape character (colour or cursor control).
fn has_esc(bytes: &[u8]) -> bool {
    bytes.contains(&0x1b)
}

/// `vgpu-bake ARGS` with its output in pipes and `env` set.
fn piped(args: &[&str], env: &[(&str, &str)]) -> (Vec<u8>, Vec<u8>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vgpu-bake"));
    cmd.args(args)
        .current_dir(workspace())
        .env_remove("NO_COLOR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (out.stdout, out.stderr)
}

/// `vgpu-bake ARGS` on a terminal (`script` from util-linux gives it a
/// pty): everything it wrote.
fn on_terminal(args: &str, no_color: Option<&str>) -> Vec<u8> {
    let mut cmd = Command::new("script");
    cmd.args([
        "-qec",
        &format!("{} {args}", env!("CARGO_BIN_EXE_vgpu-bake")),
    ])
    .arg("/dev/null")
    .current_dir(workspace())
    .env_remove("NO_COLOR")
    .env("TERM", "xterm");
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    cmd.output().unwrap().stdout
}

#[test]
fn colour_only_on_a_terminal_without_no_color() {
    // In pipes: none, even when clap's own variable would force it.
    for env in [
        &[][..],
        &[("CLICOLOR_FORCE", "1")][..],
        &[("NO_COLOR", "1")][..],
    ] {
        for args in [
            &["--help"][..],
            &["bake"][..],
            &["validate", "tests/profiles/err-unknown-key.toml"][..],
        ] {
            let (out, err) = piped(args, env);
            assert!(!out.is_empty() || !err.is_empty());
            assert!(!has_esc(&out) && !has_esc(&err), "{args:?} {env:?}");
        }
    }
    // On a terminal: clap's styling, unless NO_COLOR is set (non-empty).
    if Command::new("script").arg("--version").output().is_err() {
        panic!("`script` (util-linux) is needed for the terminal half of this test");
    }
    assert!(has_esc(&on_terminal("--help", None)));
    assert!(has_esc(&on_terminal("bake", None)));
    assert!(
        has_esc(&on_terminal("bake", Some(""))),
        "an empty NO_COLOR is unset"
    );
    let help = on_terminal("--help", Some("1"));
    assert!(String::from_utf8_lossy(&help).contains("Usage:"));
    assert!(!has_esc(&help));
    assert!(!has_esc(&on_terminal("bake", Some("1"))));
}

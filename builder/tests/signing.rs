//! Signed bundles through the real `vgpu-bake` binary: keygen, bake
//! --sign-key, inspect/install --trusted-key, and the real `minisign`
//! checking the signature inside the bundle laid with `install`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

struct Run {
    dir: tempfile::TempDir,
}

impl Run {
    fn new() -> Run {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("agent"), "#!/bin/sh\necho fake agent\n").unwrap();
        Run { dir }
    }

    fn path(&self, rel: &str) -> String {
        self.dir.path().join(rel).to_str().unwrap().to_owned()
    }

    /// Runs; asserts the exit code; returns stdout + stderr.
    fn expect(&self, code: i32, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_vgpu-bake"))
            .args(args)
            .current_dir(workspace())
            .env("SOURCE_DATE_EPOCH", "0")
            .env_remove("VGPU_BAKE_KEY_PASSWORD")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.code(),
            Some(code),
            "vgpu-bake {}\n{text}",
            args.join(" ")
        );
        text
    }

    fn bake(&self, out: &str, key: Option<&str>) -> String {
        let (o, c, a) = (self.path(out), self.path("cache"), self.path("agent"));
        let mut args = vec![
            "bake",
            "profiles/demo.toml",
            "--out",
            &o,
            "--cache",
            &c,
            "--agent",
            &a,
        ];
        if let Some(k) = key {
            args.extend(["--sign-key", k]);
        }
        self.expect(0, &args);
        format!("{o}/demo.cpio.zst")
    }
}

#[test]
fn a_signed_bundle_is_verified_by_inspect_install_and_minisign() {
    let r = Run::new();
    let keygen = r.expect(0, &["keygen", &r.path("fleet")]);
    assert!(
        keygen.contains("fleet.key") && keygen.contains("fleet.pub"),
        "{keygen}"
    );
    r.expect(1, &["keygen", &r.path("fleet")]);
    r.expect(0, &["keygen", &r.path("other")]);
    let (key, public, other) = (
        r.path("fleet.key"),
        r.path("fleet.pub"),
        r.path("other.pub"),
    );

    let signed = r.bake("signed", Some(&key));
    let unsigned = r.bake("unsigned", None);

    let text = r.expect(0, &["inspect", &signed]);
    assert!(
        text.contains("var/lib/vgpu-firstboot/manifest.toml.minisig"),
        "{text}"
    );
    assert!(
        text.contains("signed by key id") && text.contains("not verified"),
        "{text}"
    );
    let text = r.expect(
        0,
        &[
            "inspect",
            &signed,
            "--trusted-key",
            &other,
            "--trusted-key",
            &public,
        ],
    );
    assert!(
        text.contains("signature verified") && text.contains("fleet.pub"),
        "{text}"
    );
    let json = r.expect(0, &["inspect", "--json", &signed, "--trusted-key", &public]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["signature"]["trusted-comment"], "vgpu-bake bundle demo");
    assert!(
        v["signature"]["verified-by"]
            .as_str()
            .unwrap()
            .ends_with("fleet.pub")
    );

    // Refusals: wrong key, unsigned; install writes nothing then.
    let text = r.expect(1, &["inspect", &signed, "--trusted-key", &other]);
    assert!(
        text.contains("does not verify with any trusted key") && text.contains("other.pub"),
        "{text}"
    );
    let text = r.expect(1, &["inspect", &unsigned, "--trusted-key", &public]);
    assert!(
        text.contains("it is unsigned") && text.contains("--sign-key"),
        "{text}"
    );
    let text = r.expect(0, &["inspect", &unsigned]);
    assert!(text.contains("unsigned-unverified"), "{text}");
    let root = r.path("root");
    fs::create_dir(&root).unwrap();
    let text = r.expect(
        1,
        &[
            "install",
            &unsigned,
            "--root",
            &root,
            "--trusted-key",
            &public,
        ],
    );
    assert!(text.contains("it is unsigned"), "{text}");
    let text = r.expect(
        1,
        &["install", &signed, "--root", &root, "--trusted-key", &other],
    );
    assert!(text.contains("does not verify"), "{text}");
    assert_eq!(
        fs::read_dir(&root).unwrap().count(),
        0,
        "a refused bundle wrote nothing"
    );
    let text = r.expect(
        0,
        &[
            "install",
            &signed,
            "--root",
            &root,
            "--trusted-key",
            &public,
        ],
    );
    assert!(text.contains("signature verified"), "{text}");

    // The signature travels in the bundle: minisign checks it on the host.
    let state = format!("{root}/var/lib/vgpu-firstboot");
    let out = Command::new("minisign")
        .args([
            "-V",
            "-p",
            &public,
            "-m",
            "manifest.toml",
            "-x",
            "manifest.toml.minisig",
        ])
        .current_dir(&state)
        .output()
        .expect("this test runs the real minisign: apt-get install minisign");
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("vgpu-bake bundle demo"),
        "{out:?}"
    );
    let unsigned_root = r.path("root2");
    fs::create_dir(&unsigned_root).unwrap();
    let text = r.expect(0, &["install", &unsigned, "--root", &unsigned_root]);
    assert!(text.contains("unsigned-unverified"), "{text}");
}

#[test]
fn a_key_from_minisign_signs_and_no_other_key_verifies_it() {
    let r = Run::new();
    r.expect(0, &["keygen", &r.path("k")]);
    let mk = r.path("mk");
    let out = Command::new("minisign")
        .args([
            "-G",
            "-W",
            "-p",
            &format!("{mk}.pub"),
            "-s",
            &format!("{mk}.key"),
        ])
        .output()
        .expect("this test runs the real minisign: apt-get install minisign");
    assert!(out.status.success(), "{out:?}");
    let bundle = r.bake("m", Some(&format!("{mk}.key")));
    r.expect(
        0,
        &["inspect", &bundle, "--trusted-key", &format!("{mk}.pub")],
    );
    let text = r.expect(1, &["inspect", &bundle, "--trusted-key", &r.path("k.pub")]);
    assert!(text.contains("does not verify"), "{text}");
    let text = r.expect(
        1,
        &[
            "bake",
            "profiles/demo.toml",
            "--out",
            &r.path("x"),
            "--sign-key",
            &r.path("k.pub"),
        ],
    );
    assert!(
        text.contains("k.pub is not a minisign secret key"),
        "{text}"
    );
}

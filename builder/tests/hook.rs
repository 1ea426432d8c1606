//! `vgpu-bake hook`: the real binary with a stand-in template (the trailer
//! does not care what it follows): the configuration read back, bundles
//! checked when the hook is made, the 1 MiB limit, nothing written on any
//! refusal.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use vgpu_bake::rollout::config::{HOOK_MAX, Source, read_trailer};
use vgpu_bake::rollout::index::{Index, IndexBundle};
use vgpu_plan::digest::Sha256;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

const TEMPLATE: &[u8] = b"\x7fELF stand-in template\n";

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        let d = Dir(tempfile::tempdir().unwrap());
        fs::write(d.p("template"), TEMPLATE).unwrap();
        d
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.0.path().join(rel)
    }

    fn s(&self, rel: &str) -> String {
        self.p(rel).display().to_string()
    }

    /// `vgpu-bake hook ARGS --hook-template T --out OUT`: (code, stdout, stderr).
    fn hook(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_vgpu-bake"))
            .arg("hook")
            .args(args)
            .args([
                "--hook-template",
                &self.s("template"),
                "--out",
                &self.s("out/hook"),
            ])
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[test]
fn makes_a_hook_from_one_signed_bundle() {
    let d = Dir::new();
    fs::create_dir(d.p("out")).unwrap();
    let bundle = fixture("signed-valid.cpio.zst").display().to_string();
    let key = fixture("keys/test.pub").display().to_string();
    let fp = "ab".repeat(32);
    let (code, stdout, stderr) = d.hook(&[
        "--bundle",
        &bundle,
        "--from-label",
        "VGPU",
        "--from-url",
        "https://10.0.2.2:8443/fleet",
        "--from-path",
        "/srv/vgpu",
        "--cert-fingerprint",
        &fp,
        "--trusted-key",
        &key,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let bytes = fs::read(d.p("out/hook")).unwrap();
    assert!(bytes.starts_with(TEMPLATE));
    assert_eq!(
        fs::metadata(d.p("out/hook")).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    let config = read_trailer(&bytes).unwrap();
    assert_eq!(
        config.sources,
        [
            Source::Path {
                path: "/srv/vgpu".into()
            },
            Source::Label {
                label: "VGPU".into()
            },
            Source::Url {
                url: "https://10.0.2.2:8443/fleet/".into(),
                cert_fingerprint: Some(
                    vgpu_bake::rollout::config::normalize_fingerprint(&fp).unwrap()
                ),
            },
        ]
    );
    assert_eq!(config.trusted_keys, [fs::read_to_string(&key).unwrap()]);
    let report = vgpu_bake::inspect::inspect(Path::new(&bundle)).unwrap();
    let sha = Sha256::parse(&report.bundle_sha256).unwrap();
    assert_eq!(
        config.index,
        Index {
            schema: 1,
            default: Some(sha.clone()),
            bundles: vec![IndexBundle {
                sha256: sha,
                size: fs::metadata(&bundle).unwrap().len(),
                file: "signed-valid.cpio.zst".into(),
                name: "signed-valid".into(),
            }],
            hosts: vec![],
        }
    );
    let size = bytes.len();
    assert_eq!(
        stdout,
        format!(
            "wrote {}: first-boot hook for the Proxmox automated installer (prepare-iso --on-first-boot), {} bytes of 1,048,576; 1 bundle, 0 hosts, 1 trusted key, sources: path /srv/vgpu, label VGPU, url https://10.0.2.2:8443/fleet/ (certificate {})\n",
            d.s("out/hook"),
            vgpu_bake::rollout::make::thousands(size as u64),
            vgpu_bake::rollout::config::normalize_fingerprint(&fp).unwrap()
        )
    );
}

/// Asserts a refusal: exit 1, `needle` in the message, no hook written.
fn refused(d: &Dir, args: &[&str], needle: &str) {
    refused_with(d, 1, args, needle);
}

/// [`refused`] for a bad flag: a usage error, exit code 2.
fn refused_usage(d: &Dir, args: &[&str], needle: &str) {
    refused_with(d, 2, args, needle);
}

fn refused_with(d: &Dir, want: i32, args: &[&str], needle: &str) {
    let (code, stdout, stderr) = d.hook(args);
    assert_eq!(code, want, "{args:?}: {stdout}{stderr}");
    assert!(stderr.contains(needle), "{args:?}: {stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let left: Vec<_> = fs::read_dir(d.p("out")).unwrap().flatten().collect();
    assert!(left.is_empty(), "{args:?} left {left:?}");
}

#[test]
fn refuses_and_writes_nothing() {
    let d = Dir::new();
    fs::create_dir(d.p("out")).unwrap();
    let unsigned = fixture("valid.cpio.zst").display().to_string();
    let signed = fixture("signed-valid.cpio.zst").display().to_string();
    let key = fixture("keys/test.pub").display().to_string();
    let other = fixture("keys/other.pub").display().to_string();
    refused(
        &d,
        &[
            "--bundle",
            &unsigned,
            "--from-path",
            "/srv",
            "--trusted-key",
            &key,
        ],
        "it is unsigned",
    );
    refused(
        &d,
        &[
            "--bundle",
            &signed,
            "--from-path",
            "/srv",
            "--trusted-key",
            &other,
        ],
        "does not verify with any trusted key",
    );
    refused(
        &d,
        &[
            "--bundle",
            &fixture("traversal.cpio.zst").display().to_string(),
            "--from-path",
            "/srv",
        ],
        "refusing to make a hook for it",
    );
    refused_usage(&d, &["--bundle", &unsigned], "no source: give --from-path");
    refused_usage(
        &d,
        &[
            "--bundle",
            &unsigned,
            "--from-url",
            "http://x/",
            "--cert-fingerprint",
            &"ab".repeat(32),
        ],
        "--cert-fingerprint needs an https:// --from-url",
    );
    refused_usage(
        &d,
        &["--bundle", &unsigned, "--from-label", "has space"],
        "--from-label \"has space\" must be 1 to 16 letters",
    );
    // A template that leaves no room for the configuration.
    fs::write(d.p("template"), vec![0u8; HOOK_MAX as usize - 100]).unwrap();
    refused(
        &d,
        &["--bundle", &unsigned, "--from-path", "/srv"],
        "over the installer's 1 MiB (1048576 bytes) by",
    );
    // A debug build as the template.
    fs::write(d.p("template"), vec![0u8; HOOK_MAX as usize + 1]).unwrap();
    refused(
        &d,
        &["--bundle", &unsigned, "--from-path", "/srv"],
        "the template alone is 1048577 bytes",
    );
    // No template.
    fs::remove_file(d.p("template")).unwrap();
    refused(
        &d,
        &["--bundle", &unsigned, "--from-path", "/srv"],
        "cannot read the hook template",
    );
}

#[test]
fn makes_a_hook_from_a_fleet_index_and_checks_its_bundles() {
    let d = Dir::new();
    fs::create_dir_all(d.p("out")).unwrap();
    fs::create_dir_all(d.p("fleet/bundles")).unwrap();
    let mut bundles = Vec::new();
    for name in ["valid", "signed-valid"] {
        let src = fixture(&format!("{name}.cpio.zst"));
        let report = vgpu_bake::inspect::inspect(&src).unwrap();
        let file = format!("bundles/{}.cpio.zst", report.bundle_sha256);
        fs::copy(&src, d.p(&format!("fleet/{file}"))).unwrap();
        bundles.push(IndexBundle {
            sha256: Sha256::parse(&report.bundle_sha256).unwrap(),
            size: fs::metadata(&src).unwrap().len(),
            file,
            name: name.into(),
        });
    }
    let index = Index {
        schema: 1,
        default: Some(bundles[0].sha256.clone()),
        hosts: vec![vgpu_bake::rollout::index::HostEntry {
            name: Some("pve-a1".into()),
            mac: vec!["52:54:00:12:34:56".into()],
            serial: None,
            uuid: None,
            bundle: bundles[1].sha256.clone(),
        }],
        bundles,
    };
    fs::write(d.p("fleet/index.toml"), index.to_toml()).unwrap();
    let idx = d.s("fleet/index.toml");
    let (code, stdout, stderr) = d.hook(&["--index", &idx, "--from-url", "http://10.0.2.2:8000/"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout
            .contains("; 2 bundles, 1 host, 0 trusted keys, sources: url http://10.0.2.2:8000/\n"),
        "{stdout}"
    );
    assert_eq!(
        read_trailer(&fs::read(d.p("out/hook")).unwrap())
            .unwrap()
            .index,
        index
    );
    fs::remove_file(d.p("out/hook")).unwrap();

    // One byte of a bundle changed: refused, naming it.
    let file = d.p(&format!("fleet/{}", index.bundles[1].file));
    let mut bytes = fs::read(&file).unwrap();
    let n = bytes.len() - 40;
    bytes[n] ^= 1;
    fs::write(&file, &bytes).unwrap();
    refused(
        &d,
        &["--index", &idx, "--from-url", "http://x/"],
        &format!("bundle signed-valid: {} has sha256 ", file.display()),
    );
    // A bundle missing.
    fs::remove_file(&file).unwrap();
    refused(
        &d,
        &["--index", &idx, "--from-url", "http://x/"],
        "bundle signed-valid: ",
    );
    // Not an index.
    fs::write(d.p("fleet/index.toml"), "schema = 7\n").unwrap();
    refused(
        &d,
        &["--index", &idx, "--from-url", "http://x/"],
        "index.toml: fleet index:",
    );
    // --bundle and --index together: a usage error.
    let (code, _, _) = d.hook(&["--index", &idx, "--bundle", &idx, "--from-url", "http://x/"]);
    assert_eq!(code, 2);
}

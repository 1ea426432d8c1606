//! `--json` on the commands that make things besides bundles: `check`,
//! `keygen`, `hook`, `fleet` and `usb` (docs/JSON.md). Each document is
//! checked against the files the command wrote, and a failure still prints
//! its document with `ok: false` and the error.

#[path = "support/made.rs"]
mod made;
#[path = "support/run.rs"]
mod run;

use std::fs;
use std::path::Path;

use made::{demo_bundle, fleet, s};
use run::vgpu_bake;
use serde_json::Value;

fn doc(stdout: &str) -> Value {
    serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{stdout}"))
}

#[test]
fn check_json_holds_every_pair_with_its_gate_report() {
    let (code, out, err) = vgpu_bake(&[
        "check",
        "--json",
        "profiles/demo.toml",
        "--facts",
        "tests/facts/pve8-grub.json",
        "tests/facts/debian-plain.json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v = doc(&out);
    assert_eq!(v["schema"], 1);
    assert_eq!(v["ok"], true);
    let pairs = v["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 2);
    assert_eq!(pairs[0]["profile"], "profiles/demo.toml");
    assert_eq!(pairs[0]["facts"], "tests/facts/pve8-grub.json");
    assert_eq!(pairs[1]["facts"], "tests/facts/debian-plain.json");
    assert_eq!(pairs[0]["passed"], true);
    // A demo plan: the "not a Proxmox VE host" reason is there, not binding.
    let reasons = pairs[1]["reasons"].as_array().unwrap();
    let pve = reasons
        .iter()
        .find(|r| {
            r["message"]
                .as_str()
                .unwrap()
                .contains("not a Proxmox VE host")
        })
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(pve["binding"], false);
    assert!(pairs[1]["notes"].is_array());

    // A native plan on a plain Debian host fails: exit 1, the document says
    // which pair and why, and the same error is on stderr.
    let (code, out, err) = vgpu_bake(&[
        "check",
        "--json",
        "profiles/native-intel-a100.toml",
        "--facts",
        "tests/facts/debian-plain.json",
    ]);
    assert_eq!(code, 1, "{err}");
    let v = doc(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(
        v["error"],
        "1 of 1 (profile, facts) pair(s) failed the host gate"
    );
    assert_eq!(v["pairs"][0]["passed"], false);
    assert!(
        v["pairs"][0]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["binding"] == true),
        "{v:#}"
    );
    assert!(err.contains("failed the host gate"), "{err}");
}

#[test]
fn keygen_json_names_the_files_and_the_key_id() {
    let t = tempfile::tempdir().unwrap();
    let prefix = t.path().join("fleet");
    let (code, out, err) = vgpu_bake(&["keygen", "--json", s(&prefix)]);
    assert_eq!(code, 0, "{err}");
    let v = doc(&out);
    assert_eq!(v["ok"], true);
    assert_eq!(v["secret"], format!("{}.key", s(&prefix)));
    assert_eq!(v["public"], format!("{}.pub", s(&prefix)));
    let id = v["key-id"].as_str().unwrap();
    assert_eq!(id.len(), 16, "{v}");
    // minisign's public key file names its key id on the comment line.
    let public = fs::read_to_string(t.path().join("fleet.pub")).unwrap();
    assert!(
        public.to_uppercase().contains(&id.to_uppercase()),
        "{public}\n{id}"
    );
    assert!(err.is_empty(), "--json says nothing else: {err}");

    // Refused (the files exist): exit 1, the document carries the error.
    let (code, out, _) = vgpu_bake(&["keygen", "--json", s(&prefix)]);
    assert_eq!(code, 1);
    let v = doc(&out);
    assert_eq!(v["ok"], false);
    assert!(v["error"].as_str().unwrap().contains("--force"), "{v}");
    assert!(v.get("secret").is_none(), "{v}");
}

#[test]
fn hook_and_usb_json_match_what_they_wrote() {
    let t = tempfile::tempdir().unwrap();
    let t = t.path();
    let bundle = demo_bundle(t);
    fs::write(t.join("vgpu-hook"), b"\x7fELF stand-in template\n").unwrap();
    let hook = t.join("hook");
    let (code, out, err) = vgpu_bake(&[
        "hook",
        "--json",
        "--bundle",
        s(&bundle),
        "--from-label",
        "VGPUSTICK",
        "--from-url",
        "http://10.0.2.100/",
        "--hook-template",
        s(&t.join("vgpu-hook")),
        "--out",
        s(&hook),
    ]);
    assert_eq!(code, 0, "{err}");
    let v = doc(&out);
    assert_eq!(v["ok"], true);
    assert_eq!(v["hook"], s(&hook));
    assert_eq!(v["size"], fs::metadata(&hook).unwrap().len());
    assert_eq!(v["max-size"], 1_048_576);
    assert_eq!(v["bundles"], 1);
    assert_eq!(v["hosts"], 0);
    assert_eq!(v["trusted-keys"], 0);
    let sources: Vec<&str> = v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(sources.len(), 2, "{v}");
    assert!(sources[0].contains("VGPUSTICK"), "{v}");
    assert!(sources[1].contains("http://10.0.2.100/"), "{v}");

    // A bad flag is a usage error (2), with its document.
    let (code, out, _) = vgpu_bake(&[
        "hook",
        "--json",
        "--bundle",
        s(&bundle),
        "--from-url",
        "ftp://x/",
        "--hook-template",
        s(&t.join("vgpu-hook")),
        "--out",
        s(&t.join("hook2")),
    ]);
    assert_eq!(code, 2);
    let v = doc(&out);
    assert_eq!(v["ok"], false);
    assert!(v["error"].as_str().unwrap().contains("ftp://x/"), "{v}");
    assert!(!t.join("hook2").exists());

    let img = t.join("usb.img");
    let (code, out, err) = vgpu_bake(&[
        "usb",
        "--json",
        s(&bundle),
        "--out",
        s(&img),
        "--label",
        "VGPU",
    ]);
    assert_eq!(code, 0, "{err}");
    let v = doc(&out);
    assert_eq!(v["ok"], true);
    assert_eq!(v["input"], s(&bundle));
    assert_eq!(v["image"], s(&img));
    assert_eq!(v["size"], fs::metadata(&img).unwrap().len());
    assert_eq!(v["label"], "VGPU");
    assert_eq!(v["holds"], "bundle demo.cpio.zst");
}

#[test]
fn fleet_json_lists_the_bundles_as_the_index_does() {
    let t = tempfile::tempdir().unwrap();
    let t = t.path();
    let (dir, out) = fleet(t, &["--json"]);
    let v = doc(&out);
    assert_eq!(v["ok"], true);
    assert_eq!(v["inventory"], "tests/fleet/three-hosts-two-profiles.toml");
    let index: toml::Table = fs::read_to_string(dir.join("index.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let want = index["bundle"].as_array().unwrap();
    let got = v["bundles"].as_array().unwrap();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g["sha256"], w["sha256"].as_str().unwrap());
        assert_eq!(g["size"], w["size"].as_integer().unwrap());
        assert_eq!(g["file"], w["file"].as_str().unwrap());
        assert_eq!(
            g["size"],
            fs::metadata(dir.join(g["file"].as_str().unwrap()))
                .unwrap()
                .len()
        );
        assert!(!g["profiles"].as_array().unwrap().is_empty());
    }
    assert_eq!(got.iter().filter(|g| g["default"] == true).count(), 1);
    let hook = v["hook"].as_str().unwrap();
    assert_eq!(v["hook-size"], fs::metadata(hook).unwrap().len());
    assert!(Path::new(v["index"].as_str().unwrap()).ends_with("index.toml"));

    // An inventory that does not exist: exit 1, a document with the error.
    let (code, out, _) = vgpu_bake(&[
        "fleet",
        "--json",
        "tests/fleet/no-such.toml",
        "--out",
        s(&t.join("f2")),
        "--agent",
        s(&t.join("agent")),
        "--hook-template",
        s(&t.join("vgpu-hook")),
        "--from-label",
        "X",
    ]);
    assert_eq!(code, 1);
    let v = doc(&out);
    assert_eq!(v["ok"], false);
    assert!(v["error"].as_str().unwrap().contains("no-such.toml"), "{v}");
    assert!(v["bundles"].as_array().unwrap().is_empty());
}

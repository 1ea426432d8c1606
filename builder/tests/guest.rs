//! Guest drivers: the embedded catalog against its source file, the
//! `guest-drivers` command's exact output, and `--fetch`'s download path
//! against a real HTTP server on 127.0.0.1.

#[path = "support/http.rs"]
mod http;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use http::{Reply, Server};
use vgpu_bake::csv;
use vgpu_bake::fetch::{FetchError, FetchOptions, Outcome, ProgressMode, fetch};
use vgpu_bake::guest::{
    CATALOG, Catalog, GUEST_DRIVERS_CSV, GuestError, fetch_document, fetch_request, fetch_summary,
};
use vgpu_bake::hash::digest_bytes;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(name)
}

/// Runs `vgpu-bake ARGS`: (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vgpu-bake"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn embedded_file_is_the_committed_file() {
    assert_eq!(
        GUEST_DRIVERS_CSV,
        fs::read_to_string(data("guest_drivers.csv")).unwrap()
    );
}

/// Every row of the effective catalog is in the builder, with the same
/// values; the others are not.
#[test]
fn catalog_keeps_every_effective_row() {
    let (_, rows) = csv::parse_with_header(GUEST_DRIVERS_CSV).unwrap();
    let catalog = Catalog::builtin().unwrap();
    let effective: Vec<_> = rows.iter().filter(|r| r.fields[1] == CATALOG).collect();
    assert_eq!(rows.len(), 350);
    assert_eq!(effective.len(), catalog.drivers().len());
    for (row, d) in effective.iter().zip(catalog.drivers()) {
        let f = &row.fields;
        let opt = |s: &String| (!s.is_empty()).then(|| s.clone());
        assert_eq!(f[2], d.release);
        assert_eq!(f[3], d.os.as_str());
        assert_eq!(opt(&f[4]), d.version);
        assert_eq!(opt(&f[5]), d.filename);
        assert_eq!(opt(&f[6]), d.url);
        assert_eq!(f[7], d.remarks);
    }
    assert_eq!(catalog.releases().len(), 35);
    assert_eq!(catalog.releases()[0], "20.1");
    assert_eq!(catalog.releases()[34], "16.0");
}

const NO_LINK_REMARK: &str =
    "empty entry in catalog: no link published (installer prints a \"no link\" warning)";

#[test]
fn lists_a_release_without_links() {
    let (code, out, err) = run(&["guest-drivers", "--release", "20.1"]);
    assert_eq!((code, err.as_str()), (0, ""));
    let expected = format!(
        "20.1   linux    -           -\n       no link published\n       remarks: {NO_LINK_REMARK}\n\
         20.1   windows  -           -\n       no link published\n       remarks: {NO_LINK_REMARK}\n\
         2 guest driver(s), 2 without a link; catalog: bash installer v1.84 (data/guest_drivers.csv)\n"
    );
    assert_eq!(out, expected);
}

#[test]
fn lists_one_driver() {
    let (code, out, _) = run(&["guest-drivers", "--release", "17.5", "--os", "windows"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "17.5   windows  553.62      553.62_grid_win10_win11_server2019_server2022_dch_64bit_international.exe\n       \
         https://alist.homelabproject.cc/d/foxipan/vGPU/17.5/NVIDIA-GRID-Linux-KVM-550.144.02-550.144.03-553.62/Guest_Drivers/553.62_grid_win10_win11_server2019_server2022_dch_64bit_international.exe\n\
         1 guest driver(s), 0 without a link; catalog: bash installer v1.84 (data/guest_drivers.csv)\n"
    );
}

#[test]
fn lists_by_os_and_all() {
    let (code, out, _) = run(&["guest-drivers", "--os", "linux"]);
    assert_eq!(code, 0);
    assert!(out.ends_with("\n35 guest driver(s), 10 without a link; catalog: bash installer v1.84 (data/guest_drivers.csv)\n"), "{out}");
    let (code, out, _) = run(&["guest-drivers"]);
    assert_eq!(code, 0);
    assert!(out.ends_with("\n70 guest driver(s), 19 without a link; catalog: bash installer v1.84 (data/guest_drivers.csv)\n"), "{out}");
}

#[test]
fn json_document() {
    let (code, out, _) = run(&[
        "guest-drivers",
        "--release",
        "20.1",
        "--os",
        "linux",
        "--json",
    ]);
    assert_eq!(code, 0);
    let expected = format!(
        r#"{{
  "schema": 1,
  "catalog": "bash installer v1.84 (data/guest_drivers.csv)",
  "drivers": [
    {{
      "release": "20.1",
      "os": "linux",
      "version": null,
      "filename": null,
      "url": null,
      "remarks": {}
    }}
  ]
}}
"#,
        serde_json::to_string(NO_LINK_REMARK).unwrap()
    );
    assert_eq!(out, expected);
    let (_, out, _) = run(&["guest-drivers", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["drivers"].as_array().unwrap().len(), 70);
    assert_eq!(
        doc["drivers"][2]["filename"],
        "NVIDIA-Linux-x86_64-595.58.03-grid.run"
    );
}

#[test]
fn unknown_release_os_and_no_link_are_errors() {
    let (code, out, err) = run(&["guest-drivers", "--release", "15.0"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(
        err,
        "vgpu-bake: error: no guest drivers for vGPU release \"15.0\"; the catalog has: 20.1 20.0 \
         19.5 19.4 19.3 19.2 19.1 19.0 18.4 18.3 18.2 18.1 18.0 17.6 17.5 17.4 17.3 17.2 17.1 17.0 \
         16.14 16.13 16.12 16.11 16.10 16.9 16.8 16.7 16.6 16.5 16.4 16.3 16.2 16.1 16.0\n"
    );
    let (code, _, err) = run(&["guest-drivers", "--os", "macos"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "vgpu-bake: error: unknown guest OS \"macos\": use linux or windows\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().to_str().unwrap();
    let (code, _, err) = run(&[
        "guest-drivers",
        "--fetch",
        "--release",
        "18.0",
        "--os",
        "linux",
        "--cache",
        cache,
    ]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "vgpu-bake: error: vGPU release 18.0: no linux guest driver link is published (catalog \
         v1.84); download it from NVIDIA's licensing portal yourself\n"
    );
    let (code, _, err) = run(&[
        "guest-drivers",
        "--fetch",
        "--os",
        "linux",
        "--cache",
        cache,
    ]);
    assert_eq!(code, 2, "a usage error");
    assert_eq!(
        err,
        "vgpu-bake: error: guest-drivers --fetch needs --release R and --os linux|windows (one driver)\n"
    );
    // --json: the same failures, each with its document.
    let (code, out, err) = run(&[
        "guest-drivers",
        "--fetch",
        "--json",
        "--release",
        "18.0",
        "--os",
        "linux",
        "--cache",
        cache,
    ]);
    assert_eq!(code, 1, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["schema"], 1);
    assert_eq!(v["ok"], false);
    assert!(v["driver"].is_null());
    assert_eq!(
        format!("vgpu-bake: error: {}\n", v["error"].as_str().unwrap()),
        err
    );
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

const NAME: &str = "NVIDIA-Linux-x86_64-595.58.03-grid.run";

fn payload() -> Vec<u8> {
    let mut out = b"#!/bin/sh\n# fake guest driver\n".to_vec();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    while out.len() < 200_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// A catalog whose 20.0 linux URL is `server`'s.
fn local_catalog(server: &Server) -> Catalog {
    let text = format!(
        "catalog_source,effective_in,vgpu_release,os,guest_driver_version,filename,url,remarks\n\
         t,v1.84,20.0,linux,595.58.03,{NAME},{},\n",
        server.url(&format!("d/{NAME}"))
    );
    Catalog::parse("test.csv", &text).unwrap()
}

fn opts(dir: &Path) -> FetchOptions {
    FetchOptions {
        retries: 3,
        backoff: Duration::from_millis(1),
        timeout: Duration::from_secs(5),
        progress: ProgressMode::Quiet,
        ..FetchOptions::new(dir.to_path_buf())
    }
}

/// No checksum is published: the download (resumed after a cut) is kept
/// and its sha256 reported; a second fetch is a cache hit; a pinned fetch
/// verifies it.
#[test]
fn fetch_records_the_sha256_and_resumes() {
    let data = payload();
    let sha = digest_bytes(&data).sha256;
    let server = Server::start(data.clone(), vec![Reply::CutAfter(50_000)]);
    let catalog = local_catalog(&server);
    let driver = catalog.find("20.0", "linux").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let req = fetch_request(driver, None).unwrap();
    let f = fetch(&req, &opts(dir.path())).unwrap();
    assert_eq!(
        f.outcome,
        Outcome::Downloaded {
            resumed_from: 50_000,
            attempts: 2
        }
    );
    assert_eq!(fs::read(dir.path().join(NAME)).unwrap(), data);
    let reqs = server.requests();
    assert_eq!(reqs[0].path, format!("/d/{NAME}"));
    assert_eq!(reqs[1].range(), Some("bytes=50000-"));
    assert_eq!(
        fetch_summary(driver, &f, false),
        format!(
            "{}/{NAME} (195.32 KiB): downloaded (2 attempt(s)); the catalog publishes no checksum, so it is recorded with the sha256 it has\n\
             sha256 {sha}\n\
             pin it: add this to the profile to bake it into the bundle\n\
             [[guest-driver]]\nrelease = \"20.0\"\nos = \"linux\"\nsha256 = \"{sha}\"\n",
            dir.path().display()
        )
    );
    // `--json`'s document says the same.
    let doc = serde_json::to_value(fetch_document(driver, &f, false)).unwrap();
    assert_eq!(
        doc,
        serde_json::json!({
            "release": "20.0",
            "os": "linux",
            "version": "595.58.03",
            "path": format!("{}/{NAME}", dir.path().display()),
            "size": data.len(),
            "sha256": sha.to_string(),
            "source": "downloaded",
            "pinned": false,
        })
    );
    let again = fetch(&req, &opts(dir.path())).unwrap();
    assert_eq!(again.outcome, Outcome::CacheHit);
    assert_eq!(
        serde_json::to_value(fetch_document(driver, &again, false)).unwrap()["source"],
        "cached"
    );
    let text = fetch_summary(driver, &again, false);
    assert!(
        text.starts_with(&format!(
            "{}/{NAME} (195.32 KiB): already in the cache; the catalog publishes no checksum",
            dir.path().display()
        )),
        "{text}"
    );
    assert_eq!(server.requests().len(), 2);
    let pinned = fetch(
        &fetch_request(driver, Some(&sha)).unwrap(),
        &opts(dir.path()),
    )
    .unwrap();
    assert_eq!(pinned.outcome, Outcome::CacheHit);
    let text = fetch_summary(driver, &pinned, true);
    assert!(text.starts_with("cache hit: "), "{text}");
    assert!(text.ends_with(&format!("\nsha256 {sha}\n")), "{text}");
}

/// A pinned sha256 that the server's file does not have: refused, nothing
/// kept under the file's name.
#[test]
fn fetch_with_a_wrong_pin_is_refused() {
    let server = Server::start(payload(), vec![]);
    let catalog = local_catalog(&server);
    let driver = catalog.find("20.0", "linux").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wrong = "0".repeat(64);
    let e = fetch(
        &fetch_request(driver, Some(&wrong)).unwrap(),
        &opts(dir.path()),
    )
    .unwrap_err();
    assert!(matches!(e, FetchError::DownloadMismatch { .. }), "{e}");
    assert!(!dir.path().join(NAME).exists());
}

/// An HTML page instead of the file is refused even without a checksum.
#[test]
fn fetch_refuses_an_html_page() {
    let server = Server::with_fallback(payload(), vec![], Reply::Html);
    let catalog = local_catalog(&server);
    let driver = catalog.find("20.0", "linux").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let e = fetch(&fetch_request(driver, None).unwrap(), &opts(dir.path())).unwrap_err();
    assert!(e.to_string().contains("HTML"), "{e}");
    assert!(!dir.path().join(NAME).exists());
}

#[test]
fn no_link_has_no_request() {
    let text = "catalog_source,effective_in,vgpu_release,os,guest_driver_version,filename,url,remarks\n\
                t,v1.84,20.1,windows,,,,none\n";
    let catalog = Catalog::parse("t.csv", text).unwrap();
    let driver = catalog.find("20.1", "windows").unwrap();
    assert_eq!(
        fetch_request(driver, None).unwrap_err(),
        GuestError::NoLink {
            release: "20.1".into(),
            os: "windows"
        }
    );
}

const WIN_NAME: &str = "553.62_grid_win10_win11_server2019_server2022_dch_64bit_international.exe";

/// A profile directory with two guest drivers: 17.5 windows from the
/// catalog's URL (already in the cache, so nothing is downloaded) and a
/// local file for 20.1 linux (no link published). Returns (dir, cache,
/// windows sha256, linux sha256).
fn guest_profile(linux_pin: Option<&str>) -> (tempfile::TempDir, String, String) {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    fs::create_dir_all(p.join("guest")).unwrap();
    fs::create_dir_all(p.join("cache")).unwrap();
    fs::write(p.join("guest/my-driver.run"), b"guest linux driver\n").unwrap();
    fs::write(p.join("cache").join(WIN_NAME), b"guest windows driver\n").unwrap();
    fs::write(p.join("agent"), b"#!/bin/sh\n").unwrap();
    let win = digest_bytes(b"guest windows driver\n").sha256;
    let lin = digest_bytes(b"guest linux driver\n").sha256;
    let pin = linux_pin.map_or(String::new(), |s| format!("sha256 = \"{s}\"\n"));
    fs::write(
        p.join("g.toml"),
        format!(
            "name = \"g\"\nproxmox = 8\n[vgpu]\nmode = \"native\"\n[driver]\nrelease = \"demo\"\n\
             [[guest-driver]]\nrelease = \"17.5\"\nos = \"windows\"\nsha256 = \"{win}\"\n\
             [[guest-driver]]\nrelease = \"20.1\"\nos = \"linux\"\nfile = \"guest/my-driver.run\"\n{pin}"
        ),
    )
    .unwrap();
    (t, win, lin)
}

fn bake_args(p: &Path) -> Vec<String> {
    [
        "bake",
        p.join("g.toml").to_str().unwrap(),
        "--out",
        p.join("out").to_str().unwrap(),
        "--cache",
        p.join("cache").to_str().unwrap(),
        "--agent",
        p.join("agent").to_str().unwrap(),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The bundle carries both files under the guest driver directory, listed
/// in the manifest with their sha256 and verified by `inspect`; `plan`
/// shows them.
#[test]
fn bake_carries_guest_drivers() {
    let (t, win, lin) = guest_profile(None);
    let p = t.path();
    let args = bake_args(p);
    let (code, _, err) = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!(
            "guest driver 17.5 windows: cache hit: {}",
            p.join("cache").join(WIN_NAME).display()
        )),
        "{err}"
    );
    let bundle = p.join("out/g.cpio.zst");
    let (code, out, err) = run(&["inspect", "--json", bundle.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let entry = |path: &str| {
        doc["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"] == path)
            .unwrap_or_else(|| panic!("{path} not in the bundle: {out}"))
            .clone()
    };
    let dir = "var/lib/vgpu-firstboot/guest-drivers";
    assert_eq!(entry(dir)["kind"], "dir");
    for (name, sha) in [(WIN_NAME, &win), ("my-driver.run", &lin)] {
        let e = entry(&format!("{dir}/{name}"));
        assert_eq!(e["sha256"], sha.as_str(), "{name}");
        assert_eq!(e["mode"], "0644");
        assert_eq!(e["verified"], true);
    }
    // Laid onto a root, the manifest lists both with their sha256 (what
    // the agent's bundle check verifies, like every file under its
    // state directory).
    let root = p.join("root");
    fs::create_dir(&root).unwrap();
    let (code, _, err) = run(&[
        "install",
        bundle.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let text = fs::read_to_string(root.join("var/lib/vgpu-firstboot/manifest.toml")).unwrap();
    let manifest = vgpu_plan::manifest::Manifest::from_toml(&text).unwrap();
    for (name, sha) in [(WIN_NAME, &win), ("my-driver.run", &lin)] {
        let path = format!("{dir}/{name}");
        let e = manifest.files().find(|f| f.path == path).unwrap();
        assert_eq!(e.sha256.as_deref(), Some(sha.as_str()), "{name}");
        assert_eq!(
            fs::read(root.join(&path)).unwrap().len() as u64,
            e.size.unwrap()
        );
    }
    let (code, plan, _) = run(&["plan", p.join("g.toml").to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        plan.contains(&format!(
            "[[guest-driver]]\nrelease = \"17.5\"\nos = \"windows\"\nversion = \"553.62\"\npath = \"{WIN_NAME}\"\nsha256 = \"{win}\"\n"
        )),
        "{plan}"
    );
    assert!(
        plan.contains(
            "[[guest-driver]]\nrelease = \"20.1\"\nos = \"linux\"\npath = \"my-driver.run\"\n"
        ),
        "{plan}"
    );
}

/// A file whose sha256 is not the profile's pin is refused, naming the
/// file and both checksums; no bundle is written.
#[test]
fn bake_refuses_a_guest_file_with_another_sha256() {
    let wrong = "ab".repeat(32);
    let (t, _, lin) = guest_profile(Some(&wrong));
    let p = t.path();
    let args = bake_args(p);
    let (code, _, err) = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "guest/my-driver.run: sha256 is {lin} but the profile's [[guest-driver]] (20.1 linux) pins {wrong}"
        )),
        "{err}"
    );
    assert!(!p.join("out/g.cpio.zst").exists());
}

//! The staged bake: profile -> resolved (the only stage that reads the
//! registry) -> prepared driver -> baked plan.

#[path = "support/http.rs"]
mod http;

use std::path::Path;

use http::Server;
use vgpu_bake::fetch::{FetchOptions, ProgressMode, cached_digests};
use vgpu_bake::gpudb::GpuDb;
use vgpu_bake::hash::md5_hex;
use vgpu_bake::prepare::{Origin, Prepare, PreparedDriver, fetch_request, prepare_driver};
use vgpu_bake::profile::Profile;
use vgpu_bake::registry::{DRIVERS_TOML, Registry};
use vgpu_bake::resolve::{self, DriverOverrides, DriverSource, Resolved};

const NATIVE: &str = "proxmox = 8\n[vgpu]\nmode = \"native\"\n[driver]\nrelease = \"17.5\"\n";
const DEMO: &str = "proxmox = 8\n[vgpu]\nmode = \"native\"\n[driver]\nrelease = \"demo\"\n";

/// Fetch options for a cache under `dir`, without progress output.
fn quiet_cache(dir: &Path) -> FetchOptions {
    FetchOptions {
        progress: ProgressMode::Quiet,
        ..FetchOptions::new(dir.join("cache"))
    }
}

/// Resolves against `registry_text`; the registry is dropped on return, so
/// whatever later stages use from it must have been captured here.
fn resolve_with(registry_text: &str, profile: &str) -> Resolved {
    let registry = Registry::parse(registry_text).unwrap();
    let path = Path::new("p.toml");
    let profile = Profile::parse(profile, path).unwrap();
    resolve::resolve(&profile, path, &registry, &GpuDb::builtin().unwrap()).unwrap()
}

#[test]
fn the_registry_is_read_once_when_resolving() {
    let text = DRIVERS_TOML.replacen(
        "url = \"https://mega.nz/file/sYQ10b4b",
        "url = \"https://example.invalid/only-in-this-registry",
        1,
    );
    assert_ne!(text, DRIVERS_TOML, "the 17.5 URL was replaced");
    let resolved = resolve_with(&text, NATIVE);
    let driver = resolved.driver.as_ref().unwrap();
    let DriverSource::Download { url: Some(url) } = &driver.source else {
        panic!("{:?}", driver.source);
    };
    assert!(url.starts_with("https://example.invalid/only-in-this-registry"));
    // The fetch request comes from the resolved driver alone.
    let req = fetch_request(driver, &DriverOverrides::default()).unwrap();
    assert_eq!(req.url.as_deref(), Some(url.as_str()));
    assert_eq!(req.md5.as_deref(), Some("37016ba868a0b4390c38aebbacfba09e"));
    assert_eq!(req.filename, "NVIDIA-Linux-x86_64-550.144.02-vgpu-kvm.run");
    assert_eq!(req.driver_file, None);
    // Command-line overrides replace the source, not the registry.
    let overrides = DriverOverrides {
        url: Some("https://example.invalid/other".into()),
        sha256: Some("AB".repeat(32)),
        ..DriverOverrides::default()
    };
    let req = fetch_request(driver, &overrides).unwrap();
    assert_eq!(req.url.as_deref(), Some("https://example.invalid/other"));
    assert_eq!(req.sha256, Some("ab".repeat(32)));
    let overrides = DriverOverrides {
        driver_file: Some("/tmp/x.run".into()),
        ..DriverOverrides::default()
    };
    assert_eq!(
        driver.source_with(&overrides),
        DriverSource::UserFile {
            path: "/tmp/x.run".into()
        }
    );
}

#[test]
fn the_demo_driver_is_prepared_without_the_registry() {
    let resolved = resolve_with(DRIVERS_TOML, DEMO);
    let driver = resolved.driver.as_ref().unwrap();
    assert!(matches!(driver.source, DriverSource::Demo { .. }));
    let dir = tempfile::tempdir().unwrap();
    let opts = quiet_cache(dir.path());
    let none = DriverOverrides::default();
    let mut notes = Vec::new();
    // Nothing cached yet: `plan`'s mode finds nothing and fetches nothing.
    assert_eq!(
        prepare_driver(driver, &none, &opts, Prepare::CacheOnly, &mut notes).unwrap(),
        None
    );
    assert!(!dir.path().join("cache").join(&driver.filename).exists());
    // `fetch`'s mode imports the built-in bytes.
    let fetched = prepare_driver(driver, &none, &opts, Prepare::Rehash, &mut notes)
        .unwrap()
        .unwrap();
    assert_eq!(
        std::fs::read(&fetched.path).unwrap(),
        vgpu_bake::registry::DEMO_DRIVER
    );
    assert_eq!(
        driver.md5.as_deref(),
        fetched.digests.md5.as_deref(),
        "the registry's md5 was checked"
    );
    assert_eq!(fetched.origin, Origin::Imported, "the demo is imported");
    // `bake`'s and `plan`'s modes now find the same verified copy.
    for how in [Prepare::Trust, Prepare::CacheOnly] {
        let again = prepare_driver(driver, &none, &opts, how, &mut notes)
            .unwrap()
            .unwrap();
        // Found in the cache this time; otherwise the same.
        assert_eq!(again.origin, Origin::Cached, "{how:?}");
        let again = PreparedDriver {
            origin: fetched.origin,
            ..again
        };
        assert_eq!(again, fetched, "{how:?}");
    }
    assert!(
        notes
            .iter()
            .any(|n| n.contains("verified copy in the cache")),
        "{notes:?}"
    );
}

#[test]
fn a_cached_copy_that_contradicts_a_pin_is_not_used() {
    let resolved = resolve_with(DRIVERS_TOML, DEMO);
    let driver = resolved.driver.as_ref().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = quiet_cache(dir.path());
    std::fs::create_dir_all(&opts.cache_dir).unwrap();
    std::fs::write(
        opts.cache_dir.join(&driver.filename),
        b"not the demo driver",
    )
    .unwrap();
    let mut notes = Vec::new();
    let none = DriverOverrides::default();
    assert_eq!(
        prepare_driver(driver, &none, &opts, Prepare::CacheOnly, &mut notes).unwrap(),
        None,
        "its md5 is not the registry's"
    );
}

#[test]
fn a_checksum_flag_adds_a_pin_but_never_replaces_one() {
    let pinned_sha = "cd".repeat(32);
    let profile = format!("{NATIVE}sha256 = \"{pinned_sha}\"\n");
    let resolved = resolve_with(DRIVERS_TOML, &profile);
    let driver = resolved.driver.as_ref().unwrap();
    let with = |md5: Option<&str>, sha256: Option<&str>| {
        fetch_request(
            driver,
            &DriverOverrides {
                md5: md5.map(String::from),
                sha256: sha256.map(String::from),
                ..DriverOverrides::default()
            },
        )
    };
    // Repeating a pin (in any case) is fine.
    let req = with(
        Some("37016BA868A0B4390C38AEBBACFBA09E"),
        Some(&pinned_sha.to_uppercase()),
    )
    .unwrap();
    assert_eq!(req.md5.as_deref(), Some("37016ba868a0b4390c38aebbacfba09e"));
    assert_eq!(req.sha256.as_deref(), Some(pinned_sha.as_str()));
    // Contradicting the registry's md5 is refused.
    let dummy_md5 = "0123456789abcdef0123456789abcdef";
    let e = with(Some(dummy_md5), None).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("--md5 \"{dummy_md5}\" contradicts the registry's md5 (data/drivers.toml) 37016ba868a0b4390c38aebbacfba09e for driver release 17.5: a checksum on the command line cannot override it")),
        "{e}"
    );
    // Contradicting the profile's sha256 pin is refused.
    let e = with(None, Some(&"ef".repeat(32))).unwrap_err().to_string();
    assert!(
        e.contains("contradicts the profile's `driver.sha256` cdcd"),
        "{e}"
    );
}

#[test]
fn a_release_nothing_pins_is_refused_with_the_line_to_add() {
    // 20.1 has no md5 in the registry and this profile pins nothing.
    let resolved = resolve_with(
        DRIVERS_TOML,
        "proxmox = 9\n[vgpu]\nmode = \"native\"\n[driver]\nrelease = \"20.1\"\n",
    );
    let driver = resolved.driver.as_ref().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = quiet_cache(dir.path());
    let none = DriverOverrides::default();
    let e = prepare_driver(driver, &none, &opts, Prepare::Trust, &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("has no checksum in the registry and the profile pins none"),
        "{e}"
    );
    assert!(
        e.ends_with(
            "add the line it prints under `[driver]` in the profile:\n    sha256 = \"HEX\""
        ),
        "{e}"
    );
    // With a copy in the cache, the error gives the line for that copy.
    std::fs::create_dir_all(&opts.cache_dir).unwrap();
    std::fs::write(opts.cache_dir.join(&driver.filename), b"a driver").unwrap();
    let sha = vgpu_bake::hash::digest_bytes(b"a driver").sha256;
    let e = prepare_driver(driver, &none, &opts, Prepare::Trust, &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with(&format!(
            "under `[driver]` in the profile:\n    sha256 = \"{sha}\""
        )),
        "{e}"
    );
}

/// A bake with `--driver-file` reads the user's file (its bytes just read
/// into the page cache by the import; the copy went around it), proven
/// unchanged by the stamp the import took, and names the payload after the
/// release's file.
#[test]
fn an_imported_driver_is_read_from_the_users_file_with_its_stamp() {
    let resolved = resolve_with(DRIVERS_TOML, DEMO);
    let driver = resolved.driver.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let user = dir.path().join("my-download.run");
    std::fs::write(&user, vgpu_bake::registry::DEMO_DRIVER).unwrap();
    let stamp = vgpu_bake::stamp::FileStamp::of(&std::fs::metadata(&user).unwrap());
    let mut opts = FetchOptions::new(dir.path().join("cache"));
    opts.progress = ProgressMode::Quiet;
    let overrides = DriverOverrides {
        driver_file: Some(user.clone()),
        ..DriverOverrides::default()
    };
    let mut notes = Vec::new();
    let prepared = prepare_driver(&driver, &overrides, &opts, Prepare::Trust, &mut notes)
        .unwrap()
        .unwrap();
    assert_eq!(
        prepared.path,
        dir.path().join("cache").join(&driver.filename)
    );
    assert_eq!(prepared.read_from, Some((user.clone(), stamp)));
    let cache = dir.path().join("cache");
    let (plan, entry) =
        vgpu_bake::bake::bake_driver(driver.clone(), prepared, &cache, &mut notes).unwrap();
    assert_eq!(entry.path, format!("driver/{}", driver.filename));
    assert_eq!(plan.installer.path, entry.path);
    let vgpu_bake::bundle::Source::File {
        path,
        stamp: read_stamp,
        ..
    } = &entry.source
    else {
        panic!("{:?}", entry.source);
    };
    assert_eq!(path, &user);
    assert_eq!(read_stamp, &Some(stamp));
    // A file changed after the import no longer has that stamp, so the
    // writer hashes it again (tests/bundle/frame_cache.rs).
    std::thread::sleep(std::time::Duration::from_millis(10));
    std::fs::write(&user, b"something else").unwrap();
    let now = vgpu_bake::stamp::FileStamp::of(&std::fs::metadata(&user).unwrap());
    assert_ne!(Some(now), *read_stamp);

    // Without `--driver-file` (the copy in the cache), the cache copy is read.
    let again = prepare_driver(
        &driver,
        &DriverOverrides::default(),
        &opts,
        Prepare::Trust,
        &mut notes,
    )
    .unwrap()
    .unwrap();
    assert_eq!(again.read_from, None);
}

/// The cache of `opts` with `bytes` under `driver`'s file name and a
/// sidecar without md5, as a fetch that expected none writes it; returns
/// the sidecar's path.
fn cached_without_md5(opts: &FetchOptions, filename: &str, bytes: &[u8]) -> std::path::PathBuf {
    std::fs::create_dir_all(&opts.cache_dir).unwrap();
    std::fs::write(opts.cache_dir.join(filename), bytes).unwrap();
    let d = cached_digests(&opts.cache_dir, filename).unwrap().unwrap();
    assert_eq!(d.md5, None, "nothing asked for the md5");
    let sidecar = opts.cache_dir.join(format!("{filename}.digests.toml"));
    let text = std::fs::read_to_string(&sidecar).unwrap();
    assert!(!text.contains("md5"), "{text}");
    sidecar
}

/// A cached copy whose sidecar has no md5, for a release that declares one
/// (the demo's, in the registry): not trusted on its sha256, hashed again;
/// the right file is then used, and its md5 verified and recorded.
#[test]
fn a_cached_copy_without_md5_is_hashed_again_when_one_is_declared() {
    let resolved = resolve_with(DRIVERS_TOML, DEMO);
    let driver = resolved.driver.as_ref().unwrap();
    let want = driver
        .md5
        .as_deref()
        .expect("the registry declares the demo's md5");
    let dir = tempfile::tempdir().unwrap();
    let opts = quiet_cache(dir.path());
    let sidecar = cached_without_md5(&opts, &driver.filename, vgpu_bake::registry::DEMO_DRIVER);
    let mut notes = Vec::new();
    let none = DriverOverrides::default();
    let p = prepare_driver(driver, &none, &opts, Prepare::Trust, &mut notes)
        .unwrap()
        .unwrap();
    assert_eq!(p.digests.md5.as_deref(), Some(want));
    assert!(
        notes
            .iter()
            .any(|n| n.contains("verified copy in the cache")),
        "{notes:?}"
    );
    let text = std::fs::read_to_string(&sidecar).unwrap();
    assert!(text.contains(&format!("md5 = \"{want}\"")), "{text}");
}

/// The same with the wrong bytes under the release's name: the md5
/// computed is not the registry's, so `plan` does not report the copy,
/// and `bake` moves it aside and refuses a download of the same wrong
/// file with the md5 error it always gave.
#[test]
fn a_cached_copy_without_md5_and_the_wrong_one_is_refused() {
    let resolved = resolve_with(DRIVERS_TOML, NATIVE);
    let driver = resolved.driver.as_ref().unwrap();
    let want = driver
        .md5
        .as_deref()
        .expect("the registry declares 17.5's md5");
    let wrong = b"not the 17.5 driver".to_vec();
    let got = md5_hex(&wrong);
    let dir = tempfile::tempdir().unwrap();
    let opts = FetchOptions {
        retries: 0,
        ..quiet_cache(dir.path())
    };
    let sidecar = cached_without_md5(&opts, &driver.filename, &wrong);
    let server = Server::start(wrong.clone(), vec![]);
    let from_server = DriverOverrides {
        url: Some(server.url(&driver.filename)),
        ..DriverOverrides::default()
    };
    let mut notes = Vec::new();
    assert_eq!(
        prepare_driver(driver, &from_server, &opts, Prepare::CacheOnly, &mut notes).unwrap(),
        None,
        "its md5 is not the registry's"
    );
    // The md5 was computed this time, and recorded for what it is.
    let text = std::fs::read_to_string(&sidecar).unwrap();
    assert!(text.contains(&format!("md5 = \"{got}\"")), "{text}");
    let e = prepare_driver(driver, &from_server, &opts, Prepare::Trust, &mut notes)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!(
            "has the wrong checksum (md5 expected {want}, got {got})"
        )),
        "{e}"
    );
    let cached = opts.cache_dir.join(&driver.filename);
    assert!(
        !cached.exists(),
        "the wrong file is not left under its name"
    );
    let mut bak = cached.into_os_string();
    bak.push(".bak");
    assert_eq!(std::fs::read(bak).unwrap(), wrong);
}

//! The staged bake: profile -> resolved (the only stage that reads the
//! registry) -> prepared driver -> baked plan.

use std::path::Path;

use vgpu_bake::fetch::{FetchOptions, ProgressMode};
use vgpu_bake::gpudb::GpuDb;
use vgpu_bake::prepare::{Prepare, fetch_request, prepare_driver};
use vgpu_bake::profile::Profile;
use vgpu_bake::registry::{DRIVERS_TOML, Registry};
use vgpu_bake::resolve::{self, DriverOverrides, DriverSource, Resolved};

const NATIVE: &str = "proxmox = 8\n[vgpu]\nmode = \"native\"\n[driver]\nrelease = \"17.5\"\n";
const DEMO: &str = "proxmox = 8\n[vgpu]\nmode = \"native\"\n[driver]\nrelease = \"demo\"\n";

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
    let req = fetch_request(driver, &DriverOverrides::default());
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
    let req = fetch_request(driver, &overrides);
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
    let mut opts = FetchOptions::new(dir.path().join("cache"));
    opts.progress = ProgressMode::Quiet;
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
        Some(fetched.digests.md5.as_str()),
        "the registry's md5 was checked"
    );
    // `bake`'s and `plan`'s modes now find the same verified copy.
    for how in [Prepare::Trust, Prepare::CacheOnly] {
        let again = prepare_driver(driver, &none, &opts, how, &mut notes)
            .unwrap()
            .unwrap();
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
    let mut opts = FetchOptions::new(dir.path().join("cache"));
    opts.progress = ProgressMode::Quiet;
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

//! The host driver registry (`data/drivers.toml`), embedded at build time.

use serde::Deserialize;

/// The registry file, as committed.
pub const DRIVERS_TOML: &str = include_str!("../../data/drivers.toml");

/// The demo installer's bytes (`data/demo/`), so the demo profile bakes
/// offline from any directory.
pub const DEMO_DRIVER: &[u8] =
    include_bytes!("../../data/demo/vgpu-bake-demo-driver-1.0-vgpu-kvm.run");

/// The demo 1.1 installer (`data/demo/make-demo-1.1.sh` writes it from the
/// 1.0 one), the newer driver of the upgrade demo (`profiles/demo-1.1.toml`).
pub const DEMO_DRIVER_1_1: &[u8] =
    include_bytes!("../../data/demo/vgpu-bake-demo-driver-1.1-vgpu-kvm.run");

/// The demo installers embedded, by file name.
pub const DEMO_DRIVERS: [(&str, &[u8]); 2] = [
    ("vgpu-bake-demo-driver-1.0-vgpu-kvm.run", DEMO_DRIVER),
    ("vgpu-bake-demo-driver-1.1-vgpu-kvm.run", DEMO_DRIVER_1_1),
];

/// Error reading a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Not valid TOML or not the registry format.
    #[error("data/drivers.toml is not valid: {0}")]
    Parse(#[from] toml::de::Error),
    /// A release listed twice.
    #[error("data/drivers.toml lists release {0} twice")]
    Duplicate(String),
}

/// All known releases, newest first.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// Format version.
    pub schema: u32,
    /// Releases in menu order.
    #[serde(rename = "release")]
    pub releases: Vec<Release>,
}

/// One vGPU software release and its host driver.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Release {
    /// vGPU release, e.g. `17.5`.
    pub release: String,
    /// Host driver version, e.g. `550.144.02`.
    pub version: String,
    /// The `.run` file name.
    pub filename: String,
    /// MD5 from the installer's v1.75 registry, if known.
    pub md5: Option<String>,
    /// Download URL, if known.
    pub url: Option<String>,
    /// Menu note.
    pub note: String,
    /// vgpu_unlock patch file name; none = no unlock support.
    pub patch: Option<String>,
    /// Installer arguments for native cards.
    pub args_native: Vec<String>,
    /// Installer arguments for unlock cards (patched installer).
    pub args_unlock: Option<Vec<String>>,
    /// Installer arguments for cards of unknown type.
    pub args_unknown: Vec<String>,
    /// Proxmox VE majors this release is offered for.
    pub proxmox: Vec<u8>,
    /// Unlock builds need a running kernel older than this.
    pub unlock_kernel_below: Option<String>,
    /// Our notes on upstream anomalies.
    #[serde(default)]
    pub remarks: Option<String>,
    /// Corrections of upstream data defects.
    #[serde(default)]
    pub fixed: Vec<String>,
    /// The demo stand-in driver.
    #[serde(default)]
    pub demo: bool,
}

impl Registry {
    /// The embedded `data/drivers.toml`.
    pub fn builtin() -> Registry {
        Self::parse(DRIVERS_TOML).expect("data/drivers.toml is checked by tests")
    }

    /// Parses a registry file.
    pub fn parse(text: &str) -> Result<Registry, RegistryError> {
        let reg: Registry = toml::from_str(text)?;
        let mut seen = std::collections::BTreeSet::new();
        for r in &reg.releases {
            if !seen.insert(r.release.as_str()) {
                return Err(RegistryError::Duplicate(r.release.clone()));
            }
        }
        Ok(reg)
    }

    /// The release with this name.
    pub fn get(&self, release: &str) -> Option<&Release> {
        self.releases.iter().find(|r| r.release == release)
    }

    /// Release names in menu order, for error messages.
    pub fn names(&self) -> Vec<&str> {
        self.releases.iter().map(|r| r.release.as_str()).collect()
    }
}

impl Release {
    /// The vGPU major (`17` for `17.5`); `None` for the demo.
    pub fn major(&self) -> Option<u32> {
        self.release.split('.').next()?.parse().ok()
    }

    /// `(major, minor)` for ordering; `None` for the demo.
    pub fn number(&self) -> Option<(u32, u32)> {
        let (a, b) = self.release.split_once('.')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    }

    /// Whether the URL needs the Mega client (no plain HTTP download).
    pub fn url_is_mega(&self) -> bool {
        self.url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://mega.nz/"))
    }

    /// The demo installer bytes, for a demo release (by its file name).
    pub fn bundled_bytes(&self) -> Option<&'static [u8]> {
        let embedded = DEMO_DRIVERS.iter().find(|(name, _)| *name == self.filename);
        self.demo.then_some(embedded?.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash;

    #[test]
    fn builtin_parses_and_demo_md5_matches_the_shipped_file() {
        let reg = Registry::builtin();
        assert_eq!(reg.schema, 1);
        let demo = reg.get("demo").unwrap();
        assert!(demo.demo);
        assert_eq!(
            demo.md5.as_deref(),
            Some(hash::md5_hex(DEMO_DRIVER).as_str())
        );
        assert!(DEMO_DRIVER.starts_with(b"#!/bin/sh"));
        let demo11 = reg.get("demo-1.1").unwrap();
        assert!(demo11.demo);
        assert_eq!(demo11.bundled_bytes(), Some(DEMO_DRIVER_1_1));
        assert_eq!(demo.bundled_bytes(), Some(DEMO_DRIVER));
        assert_eq!(
            demo11.md5.as_deref(),
            Some(hash::md5_hex(DEMO_DRIVER_1_1).as_str())
        );
        // Every demo release has its installer embedded.
        for r in reg.releases.iter().filter(|r| r.demo) {
            assert!(r.bundled_bytes().is_some(), "{}", r.release);
        }
    }

    /// The 1.1 demo installer is the 1.0 one with only its version line
    /// changed (data/demo/make-demo-1.1.sh): one source of truth.
    #[test]
    fn demo_1_1_differs_from_1_0_only_in_its_version() {
        let old = std::str::from_utf8(DEMO_DRIVER).unwrap();
        let new = std::str::from_utf8(DEMO_DRIVER_1_1).unwrap();
        assert_eq!(old.lines().count(), new.lines().count());
        let diff: Vec<(&str, &str)> = old
            .lines()
            .zip(new.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(
            diff,
            [(r#"DEMO_VERSION="1.0-demo""#, r#"DEMO_VERSION="1.1-demo""#)]
        );
        assert_eq!(old.ends_with('\n'), new.ends_with('\n'));
    }

    #[test]
    fn documented_fixes_are_applied() {
        let reg = Registry::builtin();
        let r193 = reg.get("19.3").unwrap();
        assert_eq!(r193.filename, "NVIDIA-Linux-x86_64-580.105.06-vgpu-kvm.run");
        assert_eq!(r193.fixed.len(), 1);
        let r176 = reg.get("17.6").unwrap();
        assert_eq!(r176.patch.as_deref(), Some("550.163.02.patch"));
        assert_eq!(r176.unlock_kernel_below.as_deref(), Some("6.17"));
        assert!(r176.url_is_mega());
        assert_eq!(
            reg.get("17.5").unwrap().unlock_kernel_below.as_deref(),
            Some("6.8")
        );
    }

    #[test]
    fn every_release_is_consistent() {
        for r in Registry::builtin().releases {
            assert!(r.filename.ends_with(".run"), "{}", r.release);
            assert_eq!(r.patch.is_some(), r.args_unlock.is_some(), "{}", r.release);
            assert_eq!(
                r.patch.is_some(),
                r.unlock_kernel_below.is_some() || r.demo,
                "{}",
                r.release
            );
            if let Some(md5) = &r.md5 {
                assert!(hash::is_hex(md5, 32), "{}", r.release);
            }
            if !r.demo {
                assert!(r.filename.contains(&r.version), "{}", r.release);
                assert!(r.number().is_some(), "{}", r.release);
            }
            assert!(!r.proxmox.is_empty(), "{}", r.release);
        }
    }

    #[test]
    fn duplicate_release_is_an_error() {
        let text = format!(
            "{DRIVERS_TOML}\n[[release]]\nrelease = \"17.5\"\nversion = \"x\"\nfilename = \"x.run\"\nnote = \"\"\nargs-native = []\nargs-unknown = []\nproxmox = [8]\n"
        );
        let err = Registry::parse(&text).unwrap_err().to_string();
        assert_eq!(err, "data/drivers.toml lists release 17.5 twice");
    }
}

//! The resolved stage's payload: where each file will come from and what
//! it must hash to, before any of it is read.
//!
//! These types carry everything the later stages need from the registry
//! and the profile (URL, demo bytes, pins, paths), so fetching and baking
//! never look anything up again.

use std::path::PathBuf;

use serde::Serialize;
use vgpu_plan::plan::{Md5, Sha256};

/// The driver as resolved: release data and pins, no verified digests yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ResolvedDriver {
    /// vGPU software release, e.g. `17.5`.
    pub release: String,
    /// Host driver version, e.g. `550.144.02`.
    pub version: String,
    /// NVIDIA's `.run` file name; the cache stores it under this name.
    pub filename: String,
    /// Expected MD5: the registry's, or the profile's when the registry has
    /// none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub md5: Option<Md5>,
    /// Whether `md5` is the registry's (else the profile's `driver.md5`).
    #[serde(skip)]
    pub md5_from_registry: bool,
    /// Expected SHA-256, when the profile pins one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256>,
    /// Where the `.run` comes from.
    pub source: DriverSource,
    /// The vgpu_unlock patch applied at bake time (unlock mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<PatchSource>,
    /// Arguments passed to the installer.
    pub install_args: Vec<String>,
    /// Services the driver ships that the agent enables.
    pub services: Vec<String>,
    /// SR-IOV unit enabled after the driver (native mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sriov_unit: Option<String>,
}

/// Where the driver's `.run` comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DriverSource {
    /// Downloaded into the cache (unless a verified copy is there).
    Download {
        /// The registry's URL, or `--url`; none known: the user must supply
        /// the file with `--driver-file`.
        #[serde(skip_serializing_if = "Option::is_none")]
        url: Option<String>,
    },
    /// The stand-in installer built into vgpu-bake (`data/demo/`).
    Demo {
        /// Its bytes.
        #[serde(skip)]
        bytes: &'static [u8],
    },
    /// A file the user downloaded (`--driver-file`), verified and imported.
    UserFile {
        /// The file.
        path: PathBuf,
    },
}

/// Command-line choices that replace the resolved driver source or add pins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverOverrides {
    /// `--driver-file`.
    pub driver_file: Option<PathBuf>,
    /// `--url`.
    pub url: Option<String>,
    /// `--md5`.
    pub md5: Option<String>,
    /// `--sha256`.
    pub sha256: Option<String>,
}

impl ResolvedDriver {
    /// The source after the command line's `--driver-file` and `--url`: a
    /// user file wins, the demo stays built in, `--url` replaces the
    /// registry's URL.
    pub fn source_with(&self, overrides: &DriverOverrides) -> DriverSource {
        if let Some(path) = &overrides.driver_file {
            return DriverSource::UserFile { path: path.clone() };
        }
        match (&self.source, &overrides.url) {
            (DriverSource::Download { .. }, Some(url)) => DriverSource::Download {
                url: Some(url.clone()),
            },
            (source, _) => source.clone(),
        }
    }
}

/// The unlock patch: applied by the installer's `--apply-patch` at bake time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PatchSource {
    /// Patch file name, e.g. `550.144.02.patch` (recorded in the plan).
    pub file: String,
    /// The file to read (the profile's `unlock.patch`, relative to the
    /// current directory).
    pub source: PathBuf,
}

/// vgpu_unlock settings as resolved: the library is still on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ResolvedUnlock {
    /// The prebuilt library and its pinned digest.
    pub library: LibrarySource,
    /// Where the agent installs it (absolute path on the host).
    pub library_path: String,
    /// Content of `/etc/vgpu_unlock/profile_override.toml`.
    pub profile_override: String,
}

/// The prebuilt `libvgpu_unlock_rs.so`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LibrarySource {
    /// Path in the payload directory.
    pub path: String,
    /// The file to read (the profile's `unlock.library`).
    pub source: PathBuf,
    /// The profile's `unlock.library-sha256`: the bake refuses other bytes.
    pub sha256: Sha256,
}

/// An offline `.deb` from `host.offline-debs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DebSource {
    /// Path in the payload directory.
    pub path: String,
    /// The file to read.
    pub source: PathBuf,
}

/// A licensing file from the profile (`licensing.token`, `licensing.image`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LicensingSource {
    /// Path in the payload directory.
    pub path: String,
    /// The file to read.
    pub source: PathBuf,
    /// The profile's pin (`licensing.image-sha256`): the bake refuses other
    /// bytes. None for the token, whose digest is never shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256>,
}

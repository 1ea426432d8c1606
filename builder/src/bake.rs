//! `vgpu-bake bake`: the staged bake.
//!
//! [`Resolved`] (from `resolve`) plus the prepared driver
//! ([`crate::prepare`]) -> each payload source read, checked and hashed
//! ([`bake_driver`], [`bake_unlock`], [`bake_deb`]) -> a baked
//! `vgpu_plan::plan::Plan` ([`baked_plan`]), whose digests and payload
//! paths are always filled -> the writer ([`writer::bundle_spec`], then
//! [`crate::bundle::write_bundle`]).
//!
//! Reads each large payload byte at most once per bake: the driver's digests
//! come from the fetch cache's sidecar (written when the file was verified)
//! with the stamp that proves the file unchanged since, so the bundle writer
//! compresses it without hashing it again (and hashes any file whose stamp
//! does not match, failing the bake if its content changed). With the frame
//! cache (`<cache>/frames/`) holding the driver's frames, it is not read.
//!
//! A user's driver file (`--driver-file`, a profile `file`) whose sha256 is
//! pinned is not imported first ([`crate::prepare::reads_once`]): the writer
//! reads it once, hashing it while it compresses it and copying it into the
//! driver cache, committed only when it matched (`bundle/import.rs`); with
//! the frame cache warm it is still read and hashed, not compressed. An
//! unpinned file (or one to patch) is imported first, then the writer reads
//! the user's file again, proven unchanged by the import's stamp.

mod guest;
pub mod licensing;
mod patch;
pub(crate) use patch::PATCH_FIX;
pub use patch::gnu_patch_version;
pub mod writer;

use std::path::{Path, PathBuf};

use vgpu_plan::plan::{
    DriverPlan, HostPlan, LicensingPlan, PatchRecord, PayloadFile, Plan, UnlockPlan,
};

use crate::bundle::{BakeOptions, BakeOutput, Source};
use crate::fetch::{FetchOptions, ImportTarget};
use crate::gpudb::GpuDb;
use crate::hash;
use crate::input::{AGENT_LIMIT, DEB_LIMIT, LIBRARY_LIMIT, read_limited};
use crate::prepare::{Prepare, PreparedDriver, prepare_driver};
use crate::resolve::{
    DebSource, DriverOverrides, LicensingSource, Resolved, ResolvedDriver, ResolvedUnlock,
};

/// Everything `bake` needs besides the resolved profile.
#[derive(Debug, Clone)]
pub struct BakeInputs {
    /// Driver cache and download settings.
    pub fetch: FetchOptions,
    /// `--driver-file`, `--url`, `--md5`, `--sha256`.
    pub overrides: DriverOverrides,
    /// The agent binary to bake.
    pub agent: PathBuf,
    /// Output directory.
    pub out_dir: PathBuf,
    /// Archive settings (mtime from `SOURCE_DATE_EPOCH`).
    pub options: BakeOptions,
}

/// What a bake produced.
#[derive(Debug)]
pub struct Baked {
    /// The final plan, hashes pinned.
    pub plan: Plan,
    /// The bundle files.
    pub output: BakeOutput,
    /// One line per payload decision (cache hit, download, patch).
    pub notes: Vec<String>,
}

/// A payload file read or verified for the bundle.
#[derive(Debug)]
pub struct PayloadEntry {
    /// Path relative to the payload directory (as in the plan).
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// Its bytes or its verified file.
    pub source: Source,
}

/// Error from preparing the driver or baking the payload.
#[derive(Debug, thiserror::Error)]
pub enum BakeError {
    /// Download or verification problems.
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    /// Writing the bundle.
    #[error(transparent)]
    Bundle(#[from] crate::bundle::BundleError),
    /// A file the profile names.
    #[error("{path}: {message}")]
    Input {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// A `--md5`/`--sha256` that contradicts the registry or the profile.
    #[error(
        "--{flag} {given} contradicts {origin} {pinned} for driver release {release}: a checksum on the command line cannot override it. A file with another checksum is not that release (or is damaged): download it again from NVIDIA; if the profile's pin is wrong, fix it in the profile"
    )]
    PinConflict {
        /// `md5` or `sha256`.
        flag: &'static str,
        /// The flag's value, as shown.
        given: String,
        /// The pinned value.
        pinned: String,
        /// Who pinned it.
        origin: &'static str,
        /// The release.
        release: String,
    },
    /// The release has no checksum anywhere, so no file can be verified.
    #[error(
        "driver release {release} ({filename}) has no checksum in the registry and the profile pins none, so nothing can verify the file.{}",
        unpinned_advice(filename, cached.as_ref())
    )]
    Unpinned {
        /// The release.
        release: String,
        /// Its `.run` file name.
        filename: String,
        /// A copy in the cache and its sha256, if there is one.
        cached: Option<(PathBuf, String)>,
    },
    /// The patch step failed.
    #[error(
        "applying {patch} with `{command}` failed ({status}): {stderr}\nCheck that the patch matches driver release {release}; the cached driver is unchanged."
    )]
    Patch {
        /// Patch file.
        patch: PathBuf,
        /// The command run.
        command: String,
        /// Exit status.
        status: String,
        /// Tail of its output.
        stderr: String,
        /// Release.
        release: String,
    },
}

/// What to do about a release nothing pins: the exact line for the profile.
fn unpinned_advice(filename: &str, cached: Option<&(PathBuf, String)>) -> String {
    match cached {
        Some((path, sha256)) => format!(
            " The cache holds {} with sha256 {sha256}. If that is the file you verified (`vgpu-bake fetch --driver-file FILE --sha256 HEX` printed this line), pin it: add this line under `[driver]` in the profile:\n    sha256 = \"{sha256}\"",
            path.display()
        ),
        None => format!(
            " Download {filename} yourself, run `vgpu-bake fetch PROFILE --driver-file FILE --sha256 HEX` with the sha256 published with it, and add the line it prints under `[driver]` in the profile:\n    sha256 = \"HEX\""
        ),
    }
}

/// A [`BakeError::Input`] about `path`.
pub(crate) fn input_err(path: &Path, message: impl Into<String>) -> BakeError {
    BakeError::Input {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Turns each resolved payload source into its baked plan section. The
/// bake reads the files ([`bake`]); a test can supply stand-in digests.
pub trait PayloadBaker {
    /// Why a source could not be baked.
    type Error;
    /// The driver section, its installer in the payload.
    fn driver(&mut self, driver: ResolvedDriver) -> Result<DriverPlan, Self::Error>;
    /// The unlock section, its library in the payload.
    fn unlock(&mut self, unlock: ResolvedUnlock) -> Result<UnlockPlan, Self::Error>;
    /// One offline package in the payload.
    fn deb(&mut self, deb: DebSource) -> Result<PayloadFile, Self::Error>;
    /// The licensing client token (a secret) in the payload.
    fn token(&mut self, token: LicensingSource) -> Result<PayloadFile, Self::Error>;
    /// The FastAPI-DLS image archive in the payload.
    fn image(&mut self, image: LicensingSource) -> Result<PayloadFile, Self::Error>;
}

/// The resolved stage into a baked plan: the only way a [`Plan`] is made
/// from a profile. Payload order: driver, unlock library, offline debs,
/// licensing token, licensing image.
pub fn baked_plan<B: PayloadBaker>(resolved: Resolved, baker: &mut B) -> Result<Plan, B::Error> {
    let driver = resolved.driver.map(|d| baker.driver(d)).transpose()?;
    let unlock = resolved.unlock.map(|u| baker.unlock(u)).transpose()?;
    let h = resolved.host;
    let offline_debs = h
        .offline_debs
        .into_iter()
        .map(|deb| baker.deb(deb))
        .collect::<Result<Vec<_>, _>>()?;
    let l = resolved.licensing;
    let licensing = LicensingPlan {
        mode: l.mode,
        server: l.server,
        port: l.port,
        lease_days: l.lease_days,
        timezone: l.timezone,
        token: l.token.map(|t| baker.token(t)).transpose()?,
        image: l.image.map(|i| baker.image(i)).transpose()?,
        applied: l.applied,
    };
    let host = HostPlan {
        iommu: h.iommu,
        bootloader: h.bootloader,
        kernel_args_extra: h.kernel_args_extra,
        packages: h.packages,
        offline_debs,
        vfio_modules: h.vfio_modules,
        blacklist: h.blacklist,
        kernel_pin: h.kernel_pin,
    };
    Ok(Plan {
        schema: resolved.schema,
        name: resolved.name,
        description: resolved.description,
        demo: resolved.demo,
        proxmox: resolved.proxmox,
        codename: resolved.codename,
        mode: resolved.mode,
        host,
        driver,
        unlock,
        licensing,
        agent: resolved.agent,
        report: resolved.report,
        gpus: resolved.gpus,
        warnings: resolved.warnings,
        steps: resolved.steps,
    })
}

/// The bake's [`PayloadBaker`]: prepares the driver, reads and checks each
/// file, and keeps them for the writer.
struct FileBaker<'a> {
    inputs: &'a BakeInputs,
    notes: Vec<String>,
    payload: Vec<PayloadEntry>,
    /// The driver's payload path and its import into the cache, when the
    /// writer makes it ([`crate::prepare::reads_once`]).
    import: Option<(String, ImportTarget)>,
}

impl PayloadBaker for FileBaker<'_> {
    type Error = BakeError;

    fn driver(&mut self, driver: ResolvedDriver) -> Result<DriverPlan, BakeError> {
        let inputs = self.inputs;
        let prepared = prepare_driver(
            &driver,
            &inputs.overrides,
            &inputs.fetch,
            Prepare::Trust,
            &mut self.notes,
        )?
        .expect("Prepare::Trust fetches what is not cached");
        let import = prepared.import.clone();
        let (plan, entry) =
            bake_driver(driver, prepared, &inputs.fetch.cache_dir, &mut self.notes)?;
        self.import = import.map(|t| (entry.path.clone(), t));
        self.payload.push(entry);
        Ok(plan)
    }

    fn unlock(&mut self, unlock: ResolvedUnlock) -> Result<UnlockPlan, BakeError> {
        let (plan, entry) = bake_unlock(unlock)?;
        self.payload.push(entry);
        Ok(plan)
    }

    fn deb(&mut self, deb: DebSource) -> Result<PayloadFile, BakeError> {
        let (file, entry) = bake_deb(deb)?;
        self.payload.push(entry);
        Ok(file)
    }

    fn token(&mut self, token: LicensingSource) -> Result<PayloadFile, BakeError> {
        let (file, entry) = licensing::bake_token(token)?;
        self.payload.push(entry);
        Ok(file)
    }

    fn image(&mut self, image: LicensingSource) -> Result<PayloadFile, BakeError> {
        let (file, entry) = licensing::bake_image(image)?;
        self.payload.push(entry);
        Ok(file)
    }
}

/// Bakes a resolved profile into `inputs.out_dir`.
pub fn bake(mut resolved: Resolved, db: &GpuDb, inputs: &BakeInputs) -> Result<Baked, BakeError> {
    let mut baker = FileBaker {
        inputs,
        notes: Vec::new(),
        payload: Vec::new(),
        import: None,
    };
    let guest_drivers = std::mem::take(&mut resolved.guest_drivers);
    let plan = baked_plan(resolved, &mut baker)?;
    let guest = guest_drivers
        .into_iter()
        .map(|g| guest::bake_guest(g, &inputs.fetch, &mut baker.notes))
        .collect::<Result<Vec<_>, _>>()?;
    let agent = read_limited(&inputs.agent, AGENT_LIMIT)
        .map_err(|e| input_err(&inputs.agent, format!("cannot read the agent binary: {e}; build it with `cargo build --release -p vgpu-firstboot` or pass --agent FILE")))?;
    let mut spec = writer::bundle_spec(&plan, baker.payload, guest, agent, db)?;
    if let Some((path, target)) = baker.import {
        spec.import_into(
            &format!("{}/{path}", vgpu_plan::layout::PAYLOAD_DIR),
            target,
        )?;
    }
    let mut options = inputs.options.clone();
    if options.frame_cache.is_none() {
        options.frame_cache = Some(inputs.fetch.cache_dir.join(crate::bundle::FRAMES_DIR));
    }
    let output = crate::bundle::write_bundle(&spec, &inputs.out_dir, &options)?;
    let mut notes = baker.notes;
    notes.extend(
        output
            .imported
            .iter()
            .map(|f| format!("driver {}", f.describe())),
    );
    notes.extend(output.notes.iter().cloned());
    Ok(Baked {
        plan,
        output,
        notes,
    })
}

/// The driver stage: the prepared `.run` (patched in unlock mode) becomes
/// the installer the plan names.
pub fn bake_driver(
    driver: ResolvedDriver,
    prepared: PreparedDriver,
    cache_dir: &Path,
    notes: &mut Vec<String>,
) -> Result<(DriverPlan, PayloadEntry), BakeError> {
    let PreparedDriver {
        path,
        digests,
        stamp,
        read_from,
        origin: _,
        import,
    } = prepared;
    let (installer_path, installer_digests, read, patch) = match &driver.patch {
        Some(p) => {
            let (custom, custom_digests, sha256) = patch::apply_patch(
                &path,
                &digests,
                &p.source,
                &driver.release,
                cache_dir,
                notes,
            )?;
            let record = PatchRecord {
                file: p.file.clone(),
                sha256,
            };
            (custom.clone(), custom_digests, (custom, None), Some(record))
        }
        None => {
            // An import the writer makes: every byte is hashed (no stamp).
            let read = match (&import, read_from) {
                (Some(t), _) => (t.from.clone(), None),
                (None, Some((from, s))) => (from, Some(s)),
                (None, None) => (path.clone(), stamp),
            };
            (path, digests.clone(), read, None)
        }
    };
    let name = installer_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let installer = PayloadFile {
        path: format!("driver/{name}"),
        sha256: installer_digests.sha256(),
        size: installer_digests.size,
    };
    let entry = PayloadEntry {
        path: installer.path.clone(),
        mode: 0o755,
        // No md5 for the writer unless it imports the file: otherwise
        // `prepare_driver` checked a declared one, the plan records it.
        source: Source::File {
            path: read.0,
            sha256: installer_digests.sha256.clone(),
            md5: import.and_then(|t| t.md5),
            size: installer_digests.size,
            stamp: read.1,
        },
    };
    let plan = DriverPlan {
        release: driver.release,
        version: driver.version,
        filename: driver.filename,
        md5: digests.md5(),
        sha256: digests.sha256(),
        size: digests.size,
        installer,
        patch,
        install_args: driver.install_args,
        services: driver.services,
        sriov_unit: driver.sriov_unit,
    };
    Ok((plan, entry))
}

/// The unlock stage: the library is read and must match its pinned sha256.
pub fn bake_unlock(unlock: ResolvedUnlock) -> Result<(UnlockPlan, PayloadEntry), BakeError> {
    let lib = &unlock.library;
    let bytes = read_limited(&lib.source, LIBRARY_LIMIT).map_err(|e| {
        input_err(
            &lib.source,
            format!("cannot read `unlock.library`: {e}; give the path of the prebuilt libvgpu_unlock_rs.so"),
        )
    })?;
    let d = hash::digest_bytes(&bytes);
    if d.sha256 != lib.sha256.as_str() {
        return Err(input_err(
            &lib.source,
            format!(
                "sha256 is {} but `unlock.library-sha256` says {}: rebuild or re-copy the library, or fix the hash in the profile",
                d.sha256, lib.sha256
            ),
        ));
    }
    let plan = UnlockPlan {
        library: PayloadFile {
            path: lib.path.clone(),
            sha256: d.sha256(),
            size: d.size,
        },
        library_path: unlock.library_path,
        profile_override: unlock.profile_override,
    };
    let entry = PayloadEntry {
        path: lib.path.clone(),
        mode: 0o644,
        source: Source::Bytes(bytes),
    };
    Ok((plan, entry))
}

/// One offline `.deb`: read, checked to be a Debian package, hashed.
pub fn bake_deb(deb: DebSource) -> Result<(PayloadFile, PayloadEntry), BakeError> {
    let bytes = read_limited(&deb.source, DEB_LIMIT).map_err(|e| {
        input_err(
            &deb.source,
            format!("cannot read `host.offline-debs`: {e}; give the path of a .deb file"),
        )
    })?;
    if !bytes.starts_with(b"!<arch>\ndebian-binary") {
        return Err(input_err(
            &deb.source,
            "is not a Debian package (no `!<arch>` header with debian-binary first): check `host.offline-debs`",
        ));
    }
    let d = hash::digest_bytes(&bytes);
    let file = PayloadFile {
        path: deb.path.clone(),
        sha256: d.sha256(),
        size: d.size,
    };
    let entry = PayloadEntry {
        path: deb.path,
        mode: 0o644,
        source: Source::Bytes(bytes),
    };
    Ok((file, entry))
}

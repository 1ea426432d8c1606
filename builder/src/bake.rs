//! `vgpu-bake bake`: plan, verified payload and agent into one bundle.
//!
//! Reads each large payload byte once per bake: the driver's digests come
//! from the fetch cache's sidecar (written when the file was verified), and
//! the bundle writer re-hashes every byte while compressing it, failing the
//! bake if anything changed since.

use std::path::{Path, PathBuf};
use std::process::Command;

use vgpu_plan::plan::{Mode, PatchRecord, PayloadFile, Plan};
use vgpu_plan::{layout, unit};

use crate::bundle::{BakeOptions, BakeOutput, BundleSpec, Source};
use crate::fetch::{self, FetchOptions, FetchRequest};
use crate::gpudb::GpuDb;
use crate::hash::{self, Digests};
use crate::profile::Profile;
use crate::registry::Registry;
use crate::resolve;

/// Everything `bake` needs besides the profile.
#[derive(Debug, Clone)]
pub struct BakeInputs {
    /// Driver cache and download settings.
    pub fetch: FetchOptions,
    /// A driver file the user downloaded.
    pub driver_file: Option<PathBuf>,
    /// Overrides the registry's download URL.
    pub url: Option<String>,
    /// Extra expected checksums from the command line.
    pub md5: Option<String>,
    /// Extra expected SHA-256 from the command line.
    pub sha256: Option<String>,
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

/// Error from a bake step other than the library modules' own errors.
#[derive(Debug, thiserror::Error)]
pub enum BakeError {
    /// Profile problems.
    #[error(transparent)]
    Profile(#[from] crate::profile::ProfileError),
    /// Resolution problems.
    #[error(transparent)]
    Resolve(#[from] resolve::ResolveError),
    /// Download or verification problems.
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
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

fn input_err(path: &Path, message: impl Into<String>) -> BakeError {
    BakeError::Input {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The fetch request for a plan's driver, with command-line overrides.
pub fn fetch_request(
    plan: &Plan,
    registry: &Registry,
    inputs_md5: Option<&str>,
    inputs_sha256: Option<&str>,
    url: Option<&str>,
    driver_file: Option<&Path>,
) -> Option<FetchRequest> {
    let d = plan.driver.as_ref()?;
    let release = registry.get(&d.release)?;
    let md5 = inputs_md5
        .map(str::to_ascii_lowercase)
        .or_else(|| (!d.md5.is_empty()).then(|| d.md5.clone()));
    let sha256 = inputs_sha256
        .map(str::to_ascii_lowercase)
        .or_else(|| (!d.sha256.is_empty()).then(|| d.sha256.clone()));
    Some(FetchRequest {
        filename: d.filename.clone(),
        url: url.map(String::from).or_else(|| release.url.clone()),
        md5,
        sha256,
        driver_file: driver_file.map(Path::to_path_buf),
    })
}

/// Makes sure the driver is in the cache and verified; returns its path and
/// digests. A bundled demo driver is imported from the binary. With
/// `rehash` false a cached file whose sidecar digests (same size and mtime)
/// match is trusted without reading it: the bake re-hashes every byte while
/// compressing anyway. `vgpu-bake fetch` passes true and reads it.
pub fn ensure_driver(
    req: &FetchRequest,
    registry: &Registry,
    release: &str,
    opts: &FetchOptions,
    rehash: bool,
    notes: &mut Vec<String>,
) -> Result<(PathBuf, Digests), BakeError> {
    let mut req = req.clone();
    let cached = opts.cache_dir.join(&req.filename);
    if req.driver_file.is_none()
        && !rehash
        && let Some(d) = fetch::cached_digests(&opts.cache_dir, &req.filename)?
    {
        let md5_ok = req.md5.as_ref().is_none_or(|m| *m == d.md5);
        let sha_ok = req.sha256.as_ref().is_none_or(|s| *s == d.sha256);
        if md5_ok && sha_ok && (req.md5.is_some() || req.sha256.is_some()) {
            notes.push(format!(
                "driver {}: verified copy in the cache ({}), no download",
                req.filename,
                cached.display()
            ));
            return Ok((cached, d));
        }
    }
    if req.driver_file.is_none()
        && let Some(bytes) = registry.get(release).and_then(|r| r.bundled_bytes())
    {
        let tmp = tempfile::Builder::new()
            .prefix(".demo-driver.")
            .tempfile()
            .map_err(|e| {
                input_err(
                    Path::new("(temp dir)"),
                    format!("cannot stage the demo driver: {e}"),
                )
            })?;
        std::fs::write(tmp.path(), bytes)
            .map_err(|e| input_err(tmp.path(), format!("cannot stage the demo driver: {e}")))?;
        req.driver_file = Some(tmp.path().to_path_buf());
        let got = fetch::fetch(&req, opts)?;
        notes.push(format!(
            "driver {}: demo installer from data/demo imported into the cache",
            req.filename
        ));
        return Ok((got.path, got.digests));
    }
    let got = fetch::fetch(&req, opts)?;
    notes.push(format!("driver {}", got.describe()));
    Ok((got.path, got.digests))
}

/// Bakes a profile.
pub fn bake(
    profile_path: &Path,
    registry: &Registry,
    db: &GpuDb,
    inputs: &BakeInputs,
) -> Result<Baked, BakeError> {
    let profile = Profile::load(profile_path)?;
    let mut plan = resolve::resolve(&profile, profile_path, registry, db)?;
    let mut notes = Vec::new();
    let mut spec = BundleSpec::new(&plan.name);
    let base = profile_path.parent().unwrap_or(Path::new("."));

    if let Some(req) = fetch_request(
        &plan,
        registry,
        inputs.md5.as_deref(),
        inputs.sha256.as_deref(),
        inputs.url.as_deref(),
        inputs.driver_file.as_deref(),
    ) {
        let release = plan
            .driver
            .as_ref()
            .map(|d| d.release.clone())
            .unwrap_or_default();
        let (path, digests) =
            ensure_driver(&req, registry, &release, &inputs.fetch, false, &mut notes)?;
        resolve::pin_driver(&mut plan, &digests);
        let (installer_path, installer_digests) = if plan.mode == Mode::Unlock {
            let patch_rel = profile
                .unlock
                .as_ref()
                .map(|u| u.patch.clone())
                .unwrap_or_default();
            let patch = base.join(&patch_rel);
            let (custom, custom_digests, patch_sha) = apply_patch(
                &path,
                &digests,
                &patch,
                &release,
                &inputs.fetch.cache_dir,
                &mut notes,
            )?;
            if let Some(d) = plan.driver.as_mut() {
                d.patch = Some(PatchRecord {
                    file: patch_file_name(&patch),
                    sha256: patch_sha,
                });
            }
            (custom, custom_digests)
        } else {
            (path, digests)
        };
        let name = installer_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let rel = format!("driver/{name}");
        if let Some(d) = plan.driver.as_mut() {
            d.installer = PayloadFile {
                path: rel.clone(),
                sha256: installer_digests.sha256.clone(),
                size: installer_digests.size,
            };
        }
        spec.add_file(
            &format!("{}/{rel}", layout::PAYLOAD_DIR),
            0o755,
            Source::File {
                path: installer_path,
                sha256: installer_digests.sha256,
                md5: Some(installer_digests.md5),
                size: installer_digests.size,
            },
        )?;
    }

    if let (Some(u), Some(section)) = (plan.unlock.as_mut(), profile.unlock.as_ref()) {
        let lib = base.join(&section.library);
        let bytes = std::fs::read(&lib)
            .map_err(|e| input_err(&lib, format!("cannot read `unlock.library`: {e}")))?;
        let d = hash::digest_bytes(&bytes);
        if d.sha256 != u.library.sha256 {
            return Err(input_err(
                &lib,
                format!(
                    "sha256 is {} but `unlock.library-sha256` says {}: rebuild or re-copy the library, or fix the hash in the profile",
                    d.sha256, u.library.sha256
                ),
            ));
        }
        u.library.size = d.size;
        spec.add_file(
            &format!("{}/{}", layout::PAYLOAD_DIR, u.library.path),
            0o644,
            Source::Bytes(bytes),
        )?;
    }

    for (deb, rel) in profile
        .host
        .offline_debs
        .iter()
        .zip(plan.host.offline_debs.iter_mut())
    {
        let path = base.join(deb);
        let bytes = std::fs::read(&path)
            .map_err(|e| input_err(&path, format!("cannot read `host.offline-debs`: {e}")))?;
        if !bytes.starts_with(b"!<arch>\ndebian-binary") {
            return Err(input_err(
                &path,
                "is not a Debian package (no `!<arch>` header with debian-binary first): check `host.offline-debs`",
            ));
        }
        let d = hash::digest_bytes(&bytes);
        rel.sha256 = d.sha256;
        rel.size = d.size;
        spec.add_file(
            &format!("{}/{}", layout::PAYLOAD_DIR, rel.path),
            0o644,
            Source::Bytes(bytes),
        )?;
    }

    let agent = std::fs::read(&inputs.agent)
        .map_err(|e| input_err(&inputs.agent, format!("cannot read the agent binary: {e}; build it with `cargo build --release -p vgpu-firstboot` or pass --agent FILE")))?;
    spec.add_file(layout::AGENT_BIN, 0o755, Source::Bytes(agent))?;
    spec.add_file(
        layout::UNIT_FILE,
        0o644,
        Source::Bytes(unit::render().into_bytes()),
    )?;
    spec.add_symlink(layout::UNIT_WANTS_LINK, layout::UNIT_WANTS_TARGET)?;
    spec.add_file(
        layout::COMPAT_FILE,
        0o644,
        Source::Bytes(
            toml::to_string(&db.compat_table())
                .expect("compat table serialises")
                .into_bytes(),
        ),
    )?;
    spec.add_file(
        layout::PLAN_FILE,
        0o600,
        Source::Bytes(plan.to_toml().into_bytes()),
    )?;

    let output = crate::bundle::write_bundle(&spec, &inputs.out_dir, &inputs.options)?;
    Ok(Baked {
        plan,
        output,
        notes,
    })
}

fn patch_file_name(patch: &Path) -> String {
    patch
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Runs the installer's own `--apply-patch` on the cached driver and caches
/// the resulting `-custom.run` keyed by both inputs' hashes.
fn apply_patch(
    driver: &Path,
    driver_digests: &Digests,
    patch: &Path,
    release: &str,
    cache_dir: &Path,
    notes: &mut Vec<String>,
) -> Result<(PathBuf, Digests, String), BakeError> {
    let patch_bytes = std::fs::read(patch).map_err(|e| input_err(patch, format!("cannot read `unlock.patch`: {e}; point it at the patch in your copy of the vgpu-proxmox repository")))?;
    let patch_sha = hash::digest_bytes(&patch_bytes).sha256;
    let stem = driver
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let custom_name = format!("{}-custom.run", stem.trim_end_matches(".run"));
    let dir = cache_dir.join("patched").join(format!(
        "{}-{}",
        &driver_digests.sha256[..16],
        &patch_sha[..16]
    ));
    if let Some(d) = fetch::cached_digests(&dir, &custom_name)? {
        notes.push(format!(
            "patched installer {custom_name}: cached ({}), no re-patch",
            dir.display()
        ));
        return Ok((dir.join(&custom_name), d, patch_sha));
    }
    let work = tempfile::Builder::new()
        .prefix(".patch.")
        .tempdir_in(cache_dir)
        .map_err(|e| input_err(cache_dir, format!("cannot make a work directory: {e}")))?;
    let staged = work.path().join(&stem);
    std::os::unix::fs::symlink(driver, &staged)
        .map_err(|e| input_err(&staged, format!("cannot stage the driver: {e}")))?;
    let patch_abs = std::path::absolute(patch).map_err(|e| input_err(patch, e.to_string()))?;
    let command = format!("sh {stem} --apply-patch {}", patch_abs.display());
    let out = Command::new("sh")
        .arg(&stem)
        .arg("--apply-patch")
        .arg(&patch_abs)
        .current_dir(work.path())
        .output()
        .map_err(|e| input_err(Path::new("sh"), format!("cannot run `{command}`: {e}")))?;
    let produced = work.path().join(&custom_name);
    if !out.status.success() || !produced.is_file() {
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        let status = if out.status.success() {
            format!("exit 0 but no {custom_name} was written")
        } else {
            out.status.to_string()
        };
        return Err(BakeError::Patch {
            patch: patch.to_path_buf(),
            command,
            status,
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            release: release.to_string(),
        });
    }
    std::fs::create_dir_all(&dir).map_err(|e| input_err(&dir, format!("cannot create: {e}")))?;
    let dest = dir.join(&custom_name);
    std::fs::rename(&produced, &dest)
        .map_err(|e| input_err(&dest, format!("cannot move the patched installer: {e}")))?;
    crate::atomic::sync_dir(&dir).map_err(|e| input_err(&dir, e.to_string()))?;
    let d = fetch::cached_digests(&dir, &custom_name)?
        .ok_or_else(|| input_err(&dest, "the patched installer vanished from the cache"))?;
    notes.push(format!("patched installer {custom_name}: {} applied with the installer's --apply-patch (sha256 {})", patch_file_name(patch), d.sha256));
    Ok((dest, d, patch_sha))
}

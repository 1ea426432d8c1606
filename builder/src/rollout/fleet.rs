//! `vgpu-bake fleet`: an inventory ([`super::inventory`]) into a directory
//! any static web server (or a USB stick) can serve:
//!
//! ```text
//! DIR/bundles/<sha256>.cpio.zst          each distinct profile, baked once
//! DIR/bundles/<sha256>.cpio.zst.sha256   `sha256sum -c` checks it (run in bundles/)
//! DIR/index.toml                         the fleet index (`index.rs`)
//! DIR/first-boot-hook                    the hook, carrying the index
//! ```
//!
//! Every profile is loaded and resolved before anything is baked, and
//! everything is made in a staging directory beside DIR, then moved into
//! place in one rename (an earlier fleet directory is swapped out
//! atomically): a failure leaves no partial DIR. With `SOURCE_DATE_EPOCH`
//! fixed, the same inventory gives the same bytes.

use std::path::{Path, PathBuf};

use vgpu_plan::digest::Sha256;

use super::config::{ConfigError, HookConfig, SCHEMA as HOOK_SCHEMA, Source};
use super::hook::{HookError, write_hook};
use super::index::{HostEntry, Index, IndexBundle, IndexError, SCHEMA as INDEX_SCHEMA};
use super::inventory::{self, FleetPlan, InventoryError};
use crate::bake::{self, BakeError, BakeInputs};
use crate::bundle::BakeOptions;
use crate::fetch::FetchOptions;
use crate::gpudb::GpuDb;
use crate::profile::{Profile, ProfileError};
use crate::registry::Registry;
use crate::resolve::{self, DriverOverrides, ResolveError, Resolved};
use crate::sign::TrustedKey;

/// The largest inventory read.
pub const INVENTORY_LIMIT: u64 = 1024 * 1024;

/// Everything `fleet` needs.
#[derive(Debug, Clone)]
pub struct FleetInputs {
    /// The inventory file.
    pub inventory: PathBuf,
    /// The fleet directory to make.
    pub out: PathBuf,
    /// Driver cache and download settings.
    pub fetch: FetchOptions,
    /// The agent binary to bake.
    pub agent: PathBuf,
    /// Archive settings (mtime, signing key).
    pub options: BakeOptions,
    /// The `vgpu-hook` template.
    pub template: PathBuf,
    /// Where the hook looks for the bundles, in order.
    pub sources: Vec<Source>,
    /// The trusted keys: each bundle must verify with one, and the hook
    /// carries their text.
    pub trusted: Vec<(TrustedKey, String)>,
}

/// What `fleet` made.
#[derive(Debug, Clone)]
pub struct FleetReport {
    /// One per distinct bundle, in index order.
    pub bundles: Vec<BundleSummary>,
    /// The hook (under the final DIR).
    pub hook: PathBuf,
    /// Its size in bytes.
    pub hook_size: u64,
    /// The index (under the final DIR).
    pub index: PathBuf,
    /// Warnings from the profiles, with the profile they come from.
    pub warnings: Vec<(PathBuf, String)>,
    /// The bakes' notes (cache hits, downloads).
    pub notes: Vec<String>,
}

/// One bundle of the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleSummary {
    /// The plan's name.
    pub name: String,
    /// Its sha256.
    pub sha256: Sha256,
    /// Its size in bytes.
    pub size: u64,
    /// `bundles/<sha256>.cpio.zst`.
    pub file: String,
    /// How many `[[host]]` entries take it.
    pub hosts: usize,
    /// Whether it is the default.
    pub default: bool,
    /// The profiles baked into it (usually one).
    pub profiles: Vec<PathBuf>,
}

/// Why `fleet` made nothing.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The inventory file could not be read.
    #[error("cannot read the inventory {}: {cause}; give the path of an inventory .toml file", path.display())]
    Read {
        /// The inventory.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The inventory is not usable.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// A profile could not be read.
    #[error("{cause} (named in the inventory {}; fix the profile, or the entry)", inventory.display())]
    Profile {
        /// The inventory.
        inventory: PathBuf,
        /// The cause.
        cause: Box<ProfileError>,
    },
    /// A profile does not resolve.
    #[error("{cause} (named in the inventory {}; fix the profile, or the entry)", inventory.display())]
    Resolve {
        /// The inventory.
        inventory: PathBuf,
        /// The cause.
        cause: Box<ResolveError>,
    },
    /// A bake failed.
    #[error("baking {}: {cause}", profile.display())]
    Bake {
        /// The profile.
        profile: PathBuf,
        /// The cause.
        cause: Box<BakeError>,
    },
    /// A baked bundle does not verify with the trusted keys.
    #[error("the bundle of {} does not verify with the --trusted-key keys: {cause}; sign it with the matching --sign-key", profile.display())]
    Untrusted {
        /// The profile.
        profile: PathBuf,
        /// The cause.
        cause: Box<crate::inspect::InspectError>,
    },
    /// The hook's sources are not usable.
    #[error("{0}")]
    Sources(ConfigError),
    /// The index came out invalid (two hosts, one identifier).
    #[error("{}: {cause}", inventory.display())]
    Index {
        /// The inventory.
        inventory: PathBuf,
        /// The cause.
        cause: IndexError,
    },
    /// The hook could not be made.
    #[error(transparent)]
    Hook(#[from] HookError),
    /// DIR exists and is not a fleet directory.
    #[error("{} exists and is not a fleet directory (no index.toml; not empty): choose another --out or remove it", path.display())]
    Exists {
        /// DIR.
        path: PathBuf,
    },
    /// A file system step failed.
    #[error("{what} {}: {cause}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FleetError {
    let path = path.to_owned();
    move |cause| FleetError::Io { what, path, cause }
}

fn atomic_io(what: &'static str, path: &Path) -> impl FnOnce(vgpu_rootfs::Error) -> FleetError {
    let path = path.to_owned();
    move |e| FleetError::Io {
        what,
        path,
        cause: std::io::Error::other(e.to_string()),
    }
}

/// Reads and resolves the inventory (parse -> resolve).
pub fn plan(inventory: &Path) -> Result<FleetPlan, FleetError> {
    let text = read_limited_text(inventory)?;
    let inv = inventory::parse(&text, inventory)?;
    Ok(inventory::resolve(&inv, inventory, &|p| {
        std::fs::canonicalize(p)
    })?)
}

fn read_limited_text(path: &Path) -> Result<String, FleetError> {
    let bytes =
        crate::input::read_limited(path, INVENTORY_LIMIT).map_err(|cause| FleetError::Read {
            path: path.to_owned(),
            cause,
        })?;
    String::from_utf8(bytes).map_err(|_| FleetError::Read {
        path: path.to_owned(),
        cause: std::io::Error::other("not UTF-8 text"),
    })
}

/// What DIR is now.
enum Target {
    /// Absent: rename into it.
    Absent,
    /// An empty directory or an earlier fleet directory: exchange with it.
    Replace,
}

fn target(out: &Path) -> Result<Target, FleetError> {
    match std::fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Target::Absent),
        Err(e) => Err(io("cannot look at the output directory", out)(e)),
        Ok(m) if m.is_dir() => {
            let empty = std::fs::read_dir(out)
                .map_err(io("cannot read the output directory", out))?
                .next()
                .is_none();
            if empty || out.join("index.toml").is_file() {
                Ok(Target::Replace)
            } else {
                Err(FleetError::Exists {
                    path: out.to_owned(),
                })
            }
        }
        Ok(_) => Err(FleetError::Exists {
            path: out.to_owned(),
        }),
    }
}

/// Makes the fleet directory: see the module doc.
pub fn fleet(inputs: &FleetInputs, db: &GpuDb) -> Result<FleetReport, FleetError> {
    let plan = plan(&inputs.inventory)?;
    // Flags before profiles, profiles before any bake: nothing is written
    // when any input is bad.
    check_sources(inputs)?;
    std::fs::metadata(&inputs.template).map_err(|cause| HookError::Template {
        path: inputs.template.clone(),
        source: cause,
    })?;
    let target = target(&inputs.out)?;
    let (resolved, warnings) = load_profiles(&plan, &inputs.inventory, db)?;

    let parent = match inputs.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let staging = tempfile::Builder::new()
        .prefix(".vgpu-fleet-")
        .tempdir_in(&parent)
        .map_err(io("cannot make a staging directory in", &parent))?;
    let made = staging.path().join("fleet");
    let bundles_dir = made.join("bundles");
    std::fs::create_dir_all(&bundles_dir).map_err(io("cannot create", &bundles_dir))?;

    let mut notes = Vec::new();
    let mut summaries: Vec<BundleSummary> = Vec::new();
    // profile index -> its bundle's sha256
    let mut shas: Vec<Sha256> = Vec::new();
    for (i, (p, r)) in plan.profiles.iter().zip(resolved).enumerate() {
        let out_dir = staging.path().join(format!("bake-{i}"));
        std::fs::create_dir(&out_dir).map_err(io("cannot create", &out_dir))?;
        let bake_inputs = BakeInputs {
            fetch: inputs.fetch.clone(),
            overrides: DriverOverrides::default(),
            agent: inputs.agent.clone(),
            out_dir,
            options: inputs.options.clone(),
        };
        let baked = bake::bake(r, db, &bake_inputs).map_err(|cause| FleetError::Bake {
            profile: p.path.clone(),
            cause: Box::new(cause),
        })?;
        notes.extend(baked.notes);
        if !inputs.trusted.is_empty() {
            let keys: Vec<TrustedKey> = inputs.trusted.iter().map(|(k, _)| k.clone()).collect();
            crate::inspect::inspect_trusted(&baked.output.bundle, &keys).map_err(|cause| {
                FleetError::Untrusted {
                    profile: p.path.clone(),
                    cause: Box::new(cause),
                }
            })?;
        }
        let sha =
            Sha256::parse(&baked.output.sha256).expect("the writer reports a well-formed sha256");
        shas.push(sha.clone());
        if let Some(s) = summaries.iter_mut().find(|s| s.sha256 == sha) {
            // Two profiles, the same bytes: one bundle.
            s.profiles.push(p.path.clone());
            continue;
        }
        let name = format!("{sha}.cpio.zst");
        let dest = bundles_dir.join(&name);
        std::fs::rename(&baked.output.bundle, &dest)
            .map_err(io("cannot move the bundle into", &dest))?;
        let sum = bundles_dir.join(format!("{name}.sha256"));
        vgpu_rootfs::atomic::write(&sum, format!("{sha}  {name}\n").as_bytes(), 0o644)
            .map_err(atomic_io("cannot write", &sum))?;
        summaries.push(BundleSummary {
            name: baked.plan.name.clone(),
            sha256: sha,
            size: baked.output.size,
            file: format!("bundles/{name}"),
            hosts: 0,
            default: false,
            profiles: vec![p.path.clone()],
        });
    }
    for h in &plan.hosts {
        let sha = &shas[h.profile];
        if let Some(s) = summaries.iter_mut().find(|s| &s.sha256 == sha) {
            s.hosts += 1;
        }
    }
    if let Some(d) = plan.default {
        let sha = &shas[d];
        if let Some(s) = summaries.iter_mut().find(|s| &s.sha256 == sha) {
            s.default = true;
        }
    }

    let index = index_of(&plan, &shas, &summaries);
    index.validate().map_err(|cause| FleetError::Index {
        inventory: inputs.inventory.clone(),
        cause,
    })?;
    let index_file = made.join("index.toml");
    vgpu_rootfs::atomic::write(&index_file, index.to_toml().as_bytes(), 0o644)
        .map_err(atomic_io("cannot write", &index_file))?;
    let config = hook_config(inputs, index);
    let hook_size = write_hook(&inputs.template, &config, &made.join("first-boot-hook"))?;
    for d in [&made, &bundles_dir] {
        set_dir_mode(d)?;
        vgpu_rootfs::atomic::sync_dir(d).map_err(atomic_io("cannot sync", d))?;
    }

    move_into_place(&made, &inputs.out, &target, &parent)?;
    // `staging` (with the previous fleet, if any) is removed on drop.
    Ok(FleetReport {
        bundles: summaries,
        hook: inputs.out.join("first-boot-hook"),
        hook_size,
        index: inputs.out.join("index.toml"),
        warnings,
        notes,
    })
}

/// A profile's warning, with the profile.
type Warning = (PathBuf, String);

/// Every profile loaded, resolved and its files checked, before any bake;
/// with each one's warnings.
fn load_profiles(
    plan: &FleetPlan,
    inventory: &Path,
    db: &GpuDb,
) -> Result<(Vec<Resolved>, Vec<Warning>), FleetError> {
    let mut resolved: Vec<Resolved> = Vec::new();
    let mut warnings = Vec::new();
    for p in &plan.profiles {
        let named_in = || inventory.to_owned();
        let profile = Profile::load(&p.path).map_err(|cause| FleetError::Profile {
            inventory: named_in(),
            cause: Box::new(cause),
        })?;
        let in_inventory = |cause| FleetError::Resolve {
            inventory: named_in(),
            cause: Box::new(cause),
        };
        let r =
            resolve::resolve(&profile, &p.path, &Registry::builtin(), db).map_err(in_inventory)?;
        resolve::check_files(&r, &p.path).map_err(in_inventory)?;
        warnings.extend(r.warnings.iter().map(|w| (p.path.clone(), w.clone())));
        resolved.push(r);
    }

    Ok((resolved, warnings))
}

/// `made` becomes `out` in one rename; an earlier fleet directory (or an
/// empty one) at `out` is exchanged atomically and ends up at `made`.
fn move_into_place(
    made: &Path,
    out: &Path,
    target: &Target,
    parent: &Path,
) -> Result<(), FleetError> {
    match target {
        Target::Absent => {
            std::fs::rename(made, out).map_err(io("cannot move the fleet into", out))?
        }
        Target::Replace => rustix::fs::renameat_with(
            rustix::fs::CWD,
            made,
            rustix::fs::CWD,
            out,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(|e| io("cannot swap the fleet into", out)(e.into()))?,
    }
    vgpu_rootfs::atomic::sync_dir(parent).map_err(atomic_io("cannot sync", parent))?;
    Ok(())
}

fn set_dir_mode(dir: &Path) -> Result<(), FleetError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(io("cannot set the mode of", dir))
}

/// The hook's sources are checked before any bake, with a stand-in index.
fn check_sources(inputs: &FleetInputs) -> Result<(), FleetError> {
    let sha = Sha256::parse(&"0".repeat(64)).expect("64 hex digits");
    let probe = Index {
        schema: INDEX_SCHEMA,
        default: Some(sha.clone()),
        bundles: vec![IndexBundle {
            sha256: sha,
            size: 0,
            file: "probe.cpio.zst".into(),
            name: "probe".into(),
        }],
        hosts: vec![],
    };
    hook_config(inputs, probe)
        .validate()
        .map_err(FleetError::Sources)
}

fn hook_config(inputs: &FleetInputs, index: Index) -> HookConfig {
    HookConfig {
        schema: HOOK_SCHEMA,
        made_by: format!("vgpu-bake {}", env!("CARGO_PKG_VERSION")),
        trusted_keys: inputs.trusted.iter().map(|(_, t)| t.clone()).collect(),
        sources: inputs.sources.clone(),
        index,
    }
}

/// The index of a baked fleet: `shas[i]` is profile `i`'s bundle.
pub fn index_of(plan: &FleetPlan, shas: &[Sha256], bundles: &[BundleSummary]) -> Index {
    Index {
        schema: INDEX_SCHEMA,
        default: plan.default.map(|d| shas[d].clone()),
        bundles: bundles
            .iter()
            .map(|b| IndexBundle {
                sha256: b.sha256.clone(),
                size: b.size,
                file: b.file.clone(),
                name: b.name.clone(),
            })
            .collect(),
        hosts: plan
            .hosts
            .iter()
            .map(|h| HostEntry {
                name: h.name.clone(),
                mac: h.mac.clone(),
                serial: h.serial.clone(),
                uuid: h.uuid.clone(),
                bundle: shas[h.profile].clone(),
            })
            .collect(),
    }
}

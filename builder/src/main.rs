//! `vgpu-bake`: bake a vGPU provisioning profile into an overlay bundle.
//!
//! Exit codes: 0 success, 1 a user error (bad profile, failed verification,
//! ...), 2 a usage error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use vgpu_bake::bake::{self, BakeInputs};
use vgpu_bake::bundle::BakeOptions;
use vgpu_bake::fetch::{self, FetchOptions};
use vgpu_bake::gpudb::{self, GpuDb};
use vgpu_bake::profile::Profile;
use vgpu_bake::registry::Registry;
use vgpu_bake::{inspect, install, resolve};

/// Bakes a vGPU provisioning profile and verified NVIDIA driver files into a
/// reproducible overlay bundle for Proxmox VE hosts.
///
/// Exit codes: 0 success, 1 a user error (bad profile, failed
/// verification, ...), 2 a usage error.
#[derive(Debug, Parser)]
#[command(version, help_expected = true, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// Options shared by the commands that read a profile.
#[derive(Debug, clap::Args)]
struct DbArgs {
    /// Use this gpu_info.db (upstream format) instead of the built-in one.
    #[arg(long, value_name = "FILE")]
    gpu_db: Option<PathBuf>,
}

/// Where drivers come from.
#[derive(Debug, clap::Args)]
struct SourceArgs {
    /// Driver cache directory [default: ~/.cache/vgpu-bake/drivers].
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Use this driver file (downloaded by you) instead of downloading.
    #[arg(long, value_name = "FILE")]
    driver_file: Option<PathBuf>,
    /// Expected SHA-256 of the driver (needed when the registry has no md5).
    #[arg(long, value_name = "HEX")]
    sha256: Option<String>,
    /// Expected MD5 of the driver (for releases the registry has none for).
    #[arg(long, value_name = "HEX")]
    md5: Option<String>,
    /// Download from this URL instead of the registry's.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Check profiles: schema, releases, GPUs, licensing.
    Validate {
        /// Profile files.
        #[arg(required = true)]
        profiles: Vec<PathBuf>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Print the resolved plan: every choice concrete, steps in order.
    Plan {
        /// Profile file.
        profile: PathBuf,
        /// Print JSON instead of TOML.
        #[arg(long)]
        json: bool,
        /// Driver cache to read the verified driver's sha256 from.
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Download (or import) the profile's driver into the cache and verify it.
    Fetch {
        /// Profile file.
        profile: PathBuf,
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Bake the profile into OUT/<name>.cpio.zst (+ .sha256).
    Bake {
        /// Profile file.
        profile: PathBuf,
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Agent binary to bake [default: the release vgpu-firstboot built
        /// next to this vgpu-bake].
        #[arg(long, value_name = "FILE")]
        agent: Option<PathBuf>,
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List a bundle's entries and verify every file against its manifest.
    Inspect {
        /// Bundle file (.cpio.zst).
        bundle: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lay a bundle onto a root directory (e.g. a mounted new host).
    Install {
        /// Bundle file (.cpio.zst).
        bundle: PathBuf,
        /// Target root directory.
        #[arg(long, value_name = "DIR")]
        root: PathBuf,
    },
    /// Query the GPU compatibility database (with NVIDIA-sourced corrections).
    Gpus {
        /// PCI ids such as 10de:1eb8; none: a summary of the database.
        ids: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vgpu-bake: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn open_db(args: &DbArgs) -> Result<GpuDb> {
    Ok(match &args.gpu_db {
        Some(path) => GpuDb::open(path)?,
        None => GpuDb::builtin()?,
    })
}

fn load_plan(path: &Path, db: &GpuDb) -> Result<vgpu_plan::plan::Plan> {
    let profile = Profile::load(path)?;
    Ok(resolve::resolve(&profile, path, &Registry::builtin(), db)?)
}

fn warn(plan: &vgpu_plan::plan::Plan, source: &Path) {
    for w in &plan.warnings {
        eprintln!("vgpu-bake: warning: {}: {w}", source.display());
    }
}

fn fetch_options(cache: Option<PathBuf>) -> FetchOptions {
    FetchOptions::new(cache.unwrap_or_else(fetch::default_cache_dir))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Validate { profiles, db } => {
            let db = open_db(&db)?;
            let mut failed = 0;
            for path in &profiles {
                match load_plan(path, &db) {
                    Ok(plan) => {
                        warn(&plan, path);
                        println!(
                            "ok: {} ({} mode, Proxmox VE {}, {} steps)",
                            path.display(),
                            plan.mode,
                            plan.proxmox,
                            plan.steps.len()
                        );
                    }
                    Err(e) => {
                        eprintln!("vgpu-bake: error: {e:#}");
                        failed += 1;
                    }
                }
            }
            if failed > 0 {
                bail!(
                    "{failed} of {} profile(s) failed validation",
                    profiles.len()
                );
            }
        }
        Cmd::Plan {
            profile,
            json,
            cache,
            db,
        } => {
            let db = open_db(&db)?;
            let mut plan = load_plan(&profile, &db)?;
            warn(&plan, &profile);
            if let Some(d) = plan.driver.as_ref() {
                let cache = cache.unwrap_or_else(fetch::default_cache_dir);
                if let Some(digests) = fetch::cached_digests(&cache, &d.filename)?
                    && (d.md5.is_empty() || d.md5 == digests.md5)
                {
                    resolve::pin_driver(&mut plan, &digests);
                }
                if plan.driver.as_ref().is_some_and(|d| d.sha256.is_empty()) {
                    eprintln!(
                        "vgpu-bake: note: the driver's sha256 is pinned once it is fetched (`vgpu-bake fetch {}`)",
                        profile.display()
                    );
                }
            }
            if !plan.licensing.applied
                && plan.licensing.mode != vgpu_plan::plan::LicensingMode::None
            {
                eprintln!(
                    "vgpu-bake: note: licensing settings are carried in the plan but not applied by this version of the agent"
                );
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                print!("{}", plan.to_toml());
            }
        }
        Cmd::Fetch {
            profile,
            source,
            db,
        } => {
            let db = open_db(&db)?;
            let plan = load_plan(&profile, &db)?;
            warn(&plan, &profile);
            let registry = Registry::builtin();
            let Some(req) = bake::fetch_request(
                &plan,
                &registry,
                source.md5.as_deref(),
                source.sha256.as_deref(),
                source.url.as_deref(),
                source.driver_file.as_deref(),
            ) else {
                println!("{}: {} mode needs no driver", profile.display(), plan.mode);
                return Ok(());
            };
            let opts = fetch_options(source.cache);
            let release = plan
                .driver
                .as_ref()
                .map(|d| d.release.clone())
                .unwrap_or_default();
            let mut notes = Vec::new();
            let (path, digests) =
                bake::ensure_driver(&req, &registry, &release, &opts, true, &mut notes)?;
            for n in notes {
                eprintln!("{n}");
            }
            println!(
                "md5 {}  sha256 {}  {} bytes",
                digests.md5, digests.sha256, digests.size
            );
            println!("{}", path.display());
        }
        Cmd::Bake {
            profile,
            out,
            agent,
            source,
            db,
        } => {
            let db = open_db(&db)?;
            let agent = match agent {
                Some(a) => a,
                None => default_agent()?,
            };
            std::fs::create_dir_all(&out)
                .with_context(|| format!("creating the output directory {}", out.display()))?;
            let inputs = BakeInputs {
                fetch: fetch_options(source.cache),
                driver_file: source.driver_file,
                url: source.url,
                md5: source.md5,
                sha256: source.sha256,
                agent,
                out_dir: out,
                options: BakeOptions {
                    mtime: source_date_epoch()?,
                    ..BakeOptions::default()
                },
            };
            let baked = bake::bake(&profile, &Registry::builtin(), &db, &inputs)?;
            warn(&baked.plan, &profile);
            for n in &baked.notes {
                eprintln!("{n}");
            }
            if baked.plan.demo {
                eprintln!(
                    "DEMO bundle: its driver is the stand-in installer from data/demo, not an NVIDIA driver"
                );
            }
            eprintln!(
                "baked {}: {} entries, {} bytes, sha256 {}",
                baked.plan.name, baked.output.entries, baked.output.size, baked.output.sha256
            );
            println!("{}", baked.output.bundle.display());
        }
        Cmd::Inspect { bundle, json } => {
            let report = inspect::inspect(&bundle)?;
            print!("{}", inspect::render_report(&report, json));
        }
        Cmd::Install { bundle, root } => {
            let written = install::install(&bundle, &root)?;
            for w in &written {
                println!(
                    "{:<7} {:04o} {:>10} {}",
                    w.kind,
                    w.mode & 0o7777,
                    w.size,
                    root.join(&w.path).display()
                );
            }
            eprintln!(
                "installed {} entries under {}",
                written.len(),
                root.display()
            );
        }
        Cmd::Gpus { ids, json, db } => {
            let db = open_db(&db)?;
            print!("{}", gpudb::gpus_report(&db, &ids, json)?);
        }
    }
    Ok(())
}

/// `SOURCE_DATE_EPOCH` (reproducible builds), default 0.
fn source_date_epoch() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => v.trim().parse().with_context(|| {
            format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970")
        }),
        _ => Ok(0),
    }
}

/// The release agent built from this workspace: next to this binary when
/// it is a release build, or in `../release/` when it is not.
fn default_agent() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the vgpu-bake binary")?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let candidates = [
        dir.join("vgpu-firstboot"),
        dir.join("../release/vgpu-firstboot"),
    ];
    let in_release = dir.file_name().is_some_and(|n| n == "release");
    for c in candidates.iter().skip(usize::from(!in_release)) {
        if c.is_file() {
            return Ok(c.clone());
        }
    }
    bail!(
        "no release vgpu-firstboot agent found (looked in {}): build it with `cargo build --release -p vgpu-firstboot`, or pass --agent FILE",
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(" and ")
    )
}

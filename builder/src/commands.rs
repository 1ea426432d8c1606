//! One function per `vgpu-bake` command: `main` parses and routes, these
//! do the work and print. Library errors are wrapped with `anyhow` here.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use vgpu_bake::bake::{self, BakeError, BakeInputs};
use vgpu_bake::bundle::BakeOptions;
use vgpu_bake::companion::Companion;
use vgpu_bake::fetch::{self, FetchOptions};
use vgpu_bake::gpudb::{self, GpuDb};
use vgpu_bake::guest;
use vgpu_bake::prepare::{Prepare, prepare_driver};
use vgpu_bake::profile::Profile;
use vgpu_bake::registry::Registry;
use vgpu_bake::resolve::{self, DriverOverrides, Resolved};
use vgpu_bake::sign::{self, SignatureInfo, SigningKey, TrustedKey};
use vgpu_bake::text::escape_controls;
use vgpu_bake::{detail, note, say, term};
use vgpu_bake::{inspect, install};
use vgpu_plan::plan::LicensingMode;
use vgpu_rootfs::{errln, out, outln};

use crate::report::{self, BakeDoc, BakedBundle, FetchDoc, FetchedDriver, InstallDoc, ValidateDoc};
use crate::usage::UsageError;

/// The GPU database: `--gpu-db FILE` or the built-in one.
pub fn open_db(gpu_db: Option<&Path>) -> Result<GpuDb> {
    Ok(match gpu_db {
        Some(path) => GpuDb::open(path)?,
        None => GpuDb::builtin()?,
    })
}

/// The driver cache: `--cache DIR` or the default; no download progress
/// with `-q`.
pub fn fetch_options(cache: Option<PathBuf>) -> FetchOptions {
    let mut opts = FetchOptions::new(cache.unwrap_or_else(fetch::default_cache_dir));
    if term::quiet() {
        opts.progress = fetch::ProgressMode::Quiet;
    }
    opts
}

/// Reads and resolves a profile against the built-in registry: the only
/// place the commands consult it.
pub(crate) fn load(path: &Path, db: &GpuDb) -> Result<Resolved> {
    let resolved = load_target(path, db)?;
    resolve::check_files(&resolved, path)?;
    Ok(resolved)
}

/// [`load`] without checking the payload inputs (the files the profile
/// names): enough for `check`, which judges the plan's target only.
fn load_target(path: &Path, db: &GpuDb) -> Result<Resolved> {
    let profile = Profile::load(path)?;
    Ok(resolve::resolve(&profile, path, &Registry::builtin(), db)?)
}

fn warn(warnings: &[String], source: &Path) {
    for w in warnings {
        errln!(
            "vgpu-bake: warning: {}: {}",
            shown_path(source),
            escape_controls(w)
        );
    }
}

/// A path for the terminal: control characters escaped.
pub(crate) fn shown_path(path: &Path) -> String {
    escape_controls(&path.display().to_string())
}

/// Errors about the profile's pins name the profile, whose `[driver]`
/// section the fix goes into.
pub(crate) fn in_profile(profile: &Path, e: BakeError) -> anyhow::Error {
    match e {
        BakeError::PinConflict { .. } | BakeError::Unpinned { .. } => {
            anyhow::anyhow!("{}: {e}", shown_path(profile))
        }
        e => e.into(),
    }
}

/// `validate`: every profile resolved, one line each (or one JSON
/// document); fails if any fails.
pub fn validate(profiles: &[PathBuf], json: bool, gpu_db: Option<&Path>) -> Result<()> {
    let mut doc = ValidateDoc {
        schema: report::SCHEMA,
        ..ValidateDoc::default()
    };
    let result = open_db(gpu_db).and_then(|db| validate_each(profiles, json, &db, &mut doc));
    report::emit(json, doc, result)
}

fn validate_each(
    profiles: &[PathBuf],
    json: bool,
    db: &GpuDb,
    doc: &mut ValidateDoc,
) -> Result<()> {
    let mut failed = 0;
    for path in profiles {
        let mut entry = report::ValidatedProfile {
            profile: report::path_text(path),
            ..Default::default()
        };
        match load(path, db) {
            Ok(plan) => {
                warn(&plan.warnings, path);
                if !json {
                    say!(
                        "ok: {} ({} mode, Proxmox VE {}, {} steps)",
                        shown_path(path),
                        plan.mode,
                        plan.proxmox,
                        plan.steps.len()
                    );
                }
                entry.ok = true;
                entry.name = Some(plan.name.clone());
                entry.mode = Some(plan.mode.to_string());
                entry.proxmox = Some(plan.proxmox);
                entry.steps = Some(plan.steps.len());
                entry.warnings.clone_from(&plan.warnings);
            }
            Err(e) => {
                let text = report::error_text(&e);
                errln!("vgpu-bake: error: {text}");
                entry.error = Some(text);
                failed += 1;
            }
        }
        doc.profiles.push(entry);
    }
    if failed > 0 {
        bail!(
            "{failed} of {} profile(s) failed validation",
            profiles.len()
        );
    }
    Ok(())
}

/// What `plan` prints: the resolved stage and, when the driver is already
/// verified in the cache, its digests.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
struct PlanPreview<'a> {
    #[serde(flatten)]
    resolved: &'a Resolved,
    #[serde(skip_serializing_if = "Option::is_none")]
    cached_driver: Option<CachedDriver>,
    /// What the `licensing` step touches on the host: files, units, ports.
    #[serde(skip_serializing_if = "Option::is_none")]
    licensing_host: Option<resolve::Footprint>,
}

/// A verified driver in the cache.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
struct CachedDriver {
    /// Only when one is declared (and so computed and verified).
    #[serde(skip_serializing_if = "Option::is_none")]
    md5: Option<String>,
    sha256: String,
    size: u64,
}

/// `plan`: the resolved plan, nothing fetched.
pub fn plan(profile: &Path, json: bool, cache: Option<PathBuf>, db: &GpuDb) -> Result<()> {
    let resolved = load(profile, db)?;
    warn(&resolved.warnings, profile);
    let mut cached_driver = None;
    if let Some(d) = &resolved.driver {
        let prepared = prepare_driver(
            d,
            &DriverOverrides::default(),
            &fetch_options(cache),
            Prepare::CacheOnly,
            &mut Vec::new(),
        )?;
        cached_driver = prepared.map(|p| CachedDriver {
            md5: p.digests.md5,
            sha256: p.digests.sha256,
            size: p.digests.size,
        });
        if cached_driver.is_none() && d.sha256.is_none() {
            note!(
                "vgpu-bake: note: the driver's sha256 is pinned once it is fetched (`vgpu-bake fetch {}`)",
                shown_path(profile)
            );
        }
    }
    let licensing_host = (resolved.licensing.mode != LicensingMode::None)
        .then(|| resolve::footprint(&resolved.licensing));
    let preview = PlanPreview {
        resolved: &resolved,
        cached_driver,
        licensing_host,
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&preview)?);
    } else {
        out!("{}", toml::to_string(&preview)?);
    }
    Ok(())
}

/// `fetch`: the driver into the cache, read and verified again.
pub fn fetch(
    profile: &Path,
    overrides: &DriverOverrides,
    cache: Option<PathBuf>,
    json: bool,
    gpu_db: Option<&Path>,
) -> Result<()> {
    let mut doc = FetchDoc {
        schema: report::SCHEMA,
        profile: report::path_text(profile),
        ..FetchDoc::default()
    };
    let result =
        open_db(gpu_db).and_then(|db| fetch_driver(profile, overrides, cache, json, &db, &mut doc));
    report::emit(json, doc, result)
}

fn fetch_driver(
    profile: &Path,
    overrides: &DriverOverrides,
    cache: Option<PathBuf>,
    json: bool,
    db: &GpuDb,
    doc: &mut FetchDoc,
) -> Result<()> {
    let resolved = load(profile, db)?;
    warn(&resolved.warnings, profile);
    doc.mode = Some(resolved.mode.to_string());
    let Some(driver) = &resolved.driver else {
        if !json {
            say!(
                "{}: {} mode needs no driver",
                shown_path(profile),
                resolved.mode
            );
        }
        return Ok(());
    };
    let mut notes = Vec::new();
    let prepared = prepare_driver(
        driver,
        overrides,
        &fetch_options(cache),
        Prepare::Rehash,
        &mut notes,
    )
    .map_err(|e| in_profile(profile, e))?
    .expect("Prepare::Rehash fetches what is not cached");
    for n in notes {
        note!("{n}");
    }
    let d = &prepared.digests;
    if !json {
        say!("{}  sha256 {}  {} bytes", d.md5_text(), d.sha256, d.size);
        say!("{}", prepared.path.display());
    }
    let pinned = driver.sha256.is_some() || driver.md5.is_some();
    doc.driver = Some(FetchedDriver {
        release: driver.release.clone(),
        filename: driver.filename.clone(),
        path: report::path_text(&prepared.path),
        size: d.size,
        sha256: d.sha256.clone(),
        md5: d.md5.clone(),
        source: prepared.origin.name(),
        pinned,
    });
    if !pinned {
        // Nothing but this command's --sha256/--md5 vouched for the file:
        // `bake` needs the pin in the profile.
        errln!(
            "vgpu-bake: release {} has no checksum in the registry: to bake with this file, pin it: add this line under `[driver]` in {}:",
            driver.release,
            shown_path(profile)
        );
        errln!("sha256 = \"{}\"", d.sha256);
    }
    Ok(())
}

/// `bake`'s flags besides the profiles, `--out` and `--json`.
pub struct BakeArgs {
    pub agent: Option<PathBuf>,
    pub sign_key: Option<PathBuf>,
    pub overrides: DriverOverrides,
    pub cache: Option<PathBuf>,
    pub gpu_db: Option<PathBuf>,
}

/// `bake`: each profile's bundle into `out`, signed with `sign_key` when
/// given; more than one profile goes to [`crate::bake_many`].
pub fn bake(profiles: &[PathBuf], out: PathBuf, json: bool, args: BakeArgs) -> Result<()> {
    let mut doc = BakeDoc {
        schema: report::SCHEMA,
        out: report::path_text(&out),
        ..BakeDoc::default()
    };
    let result = bake_all(profiles, out, json, args, &mut doc.bundles);
    report::emit(json, doc, result)
}

fn bake_all(
    profiles: &[PathBuf],
    out: PathBuf,
    json: bool,
    args: BakeArgs,
    done: &mut Vec<BakedBundle>,
) -> Result<()> {
    let BakeArgs {
        agent,
        sign_key,
        overrides,
        cache,
        gpu_db,
    } = args;
    if profiles.len() > 1 && overrides != DriverOverrides::default() {
        return Err(UsageError(
            "--driver-file, --url, --md5 and --sha256 apply to one profile's driver: bake that profile on its own, or `vgpu-bake fetch` each driver into the cache first and bake the profiles together without them".into(),
        ).into());
    }
    let db = &open_db(gpu_db.as_deref())?;
    // The key first: a wrong key fails before any download or bake.
    let sign = sign_key.as_deref().map(SigningKey::load).transpose()?;
    let agent = agent_path(agent)?;
    std::fs::create_dir_all(&out).map_err(|e| {
        anyhow::anyhow!(
            "cannot create the output directory {} (--out): {e}; give a directory you can write to",
            out.display()
        )
    })?;
    let inputs = BakeInputs {
        fetch: fetch_options(cache),
        overrides,
        agent,
        out_dir: out,
        options: BakeOptions {
            mtime: source_date_epoch()?,
            sign,
            ..BakeOptions::default()
        },
    };
    let [profile] = profiles else {
        return crate::bake_many::bake_many(profiles, &inputs, db, json, done);
    };
    let baked = load(profile, db)
        .and_then(|resolved| bake::bake(resolved, db, &inputs).map_err(|e| in_profile(profile, e)));
    let baked = match baked {
        Ok(b) => b,
        Err(e) => {
            done.push(BakedBundle::failed(profile, report::error_text(&e)));
            return Err(e);
        }
    };
    report_baked(profile, &baked, &inputs);
    if !json {
        say!("{}", baked.output.bundle.display());
    }
    done.push(BakedBundle::baked(profile, &baked, key_id(&inputs)));
    Ok(())
}

/// The signing key's id, when the bake signs.
pub(crate) fn key_id(inputs: &BakeInputs) -> Option<String> {
    inputs.options.sign.as_ref().map(|k| k.key_id().to_string())
}

/// What `bake` says on stderr about one baked bundle: warnings, notes,
/// the demo mark, its size and sha256, its signature.
pub(crate) fn report_baked(profile: &Path, baked: &bake::Baked, inputs: &BakeInputs) {
    warn(&baked.plan.warnings, profile);
    for n in &baked.notes {
        note!("{n}");
    }
    if baked.plan.demo {
        note!(
            "DEMO bundle: its driver is the stand-in installer from data/demo, not an NVIDIA driver"
        );
    }
    for (path, d) in &baked.output.payload_digests {
        detail!(
            "  payload {path}: {} bytes, sha256 {}, {}",
            d.size,
            d.sha256,
            proof_text(d.proof)
        );
    }
    note!(
        "baked {}: {} entries, {} bytes, sha256 {}",
        baked.plan.name,
        baked.output.entries,
        baked.output.size,
        baked.output.sha256
    );
    if let Some(key) = &inputs.options.sign {
        note!(
            "signed {} with key id {} ({})",
            vgpu_plan::layout::SIGNATURE_FILE,
            key.key_id(),
            key.path().display()
        );
    }
}

/// How the bundle writer vouched for a payload file (`-v`).
fn proof_text(proof: vgpu_bake::bundle::Proof) -> &'static str {
    use vgpu_bake::bundle::Proof;
    match proof {
        Proof::Memory => "held in memory and hashed",
        Proof::Hashed => "read and hashed",
        Proof::Stamp => "read, not hashed: its stamp is the one its digests were taken with",
        Proof::Cached => "frame cache hit: its frames copied, CRC-checked",
    }
}

/// The `--trusted-key` files, read.
fn trusted_keys(paths: &[PathBuf]) -> Result<Vec<TrustedKey>> {
    Ok(paths
        .iter()
        .map(|p| TrustedKey::load(p))
        .collect::<Result<_, _>>()?)
}

/// One line on a bundle's signature.
fn signature_line(bundle: &Path, signature: Option<&SignatureInfo>) -> String {
    match signature {
        None => format!(
            "{}: unsigned-unverified (no signature; pass --trusted-key to require one)",
            bundle.display()
        ),
        Some(s) => match &s.verified_by {
            Some(key) => format!(
                "{}: signature verified: key id {} ({}), {:?}",
                bundle.display(),
                s.key_id,
                key.display(),
                s.trusted_comment
            ),
            None => format!(
                "{}: signed by key id {} ({:?}), not verified: pass --trusted-key KEY.pub to check it",
                bundle.display(),
                s.key_id,
                s.trusted_comment
            ),
        },
    }
}

/// `inspect`: list and verify a bundle.
pub fn inspect(bundle: &Path, json: bool, trusted: &[PathBuf]) -> Result<()> {
    let keys = trusted_keys(trusted)?;
    let report = inspect::inspect_trusted(bundle, &keys)?;
    out!("{}", inspect::render_report(&report, json));
    if !json {
        outln!("{}", signature_line(bundle, report.signature.as_ref()));
    }
    Ok(())
}

/// `hook`: the first-boot hook for the Proxmox automated installer.
pub fn hook(
    input: &vgpu_bake::rollout::make::HookInput,
    flags: &vgpu_bake::rollout::make::SourceFlags,
    trusted: &[PathBuf],
    template: Option<&Path>,
    out: &Path,
    json: bool,
) -> Result<()> {
    use vgpu_bake::rollout::{hook, make};
    let mut doc = report::HookDoc {
        schema: report::SCHEMA,
        hook: report::path_text(out),
        ..report::HookDoc::default()
    };
    let result = (|| {
        // The flags first: a usage error before any file is looked for.
        flags.sources()?;
        let exe = std::env::current_exe().context("cannot find this vgpu-bake's own path")?;
        let template = hook::find_template(template, &exe)?;
        let made = make::make_hook(input, flags, trusted, &template, out)?;
        if !json {
            say!("{}", make::summary(&made.out, made.size, &made.config));
        }
        doc.made(&made);
        Ok(())
    })();
    report::emit(json, doc, result)
}

/// `keygen`: a minisign key pair for signing bundles.
pub fn keygen(prefix: &Path, force: bool, json: bool) -> Result<()> {
    let mut doc = report::KeygenDoc {
        schema: report::SCHEMA,
        ..report::KeygenDoc::default()
    };
    let result = sign::keygen(prefix, force).map_err(anyhow::Error::from).map(|made| {
        if !json {
            say!("{}", made.secret.display());
            say!("{}", made.public.display());
            note!(
                "key id {}: sign with `vgpu-bake bake --sign-key {}`; copy {} into /etc/vgpu-firstboot/trusted-keys/ on the hosts (and pass it to `inspect`/`install --trusted-key`); keep the .key secret",
                made.key_id,
                made.secret.display(),
                made.public.display()
            );
        }
        doc.secret = Some(report::path_text(&made.secret));
        doc.public = Some(report::path_text(&made.public));
        doc.key_id = Some(made.key_id);
    });
    report::emit(json, doc, result)
}

/// `install`: lay a bundle onto a root directory.
pub fn install(bundle: &Path, root: &Path, json: bool, trusted: &[PathBuf]) -> Result<()> {
    let name = bundle.file_name().unwrap_or_default().to_string_lossy();
    let size = std::fs::metadata(bundle).map_or(0, |m| m.len());
    let laid = trusted_keys(trusted).and_then(|keys| {
        let bar = vgpu_bake::progress::Progress::bytes(&format!("installing {name}"), size);
        Ok(install::install_watched(
            bundle,
            root,
            &keys,
            bar.watcher(),
        )?)
    });
    let mut doc = InstallDoc {
        schema: report::SCHEMA,
        bundle: report::path_text(bundle),
        root: report::path_text(root),
        ..InstallDoc::default()
    };
    let (written, signature) = match laid {
        Ok(laid) => laid,
        Err(e) => return report::emit(json, doc, Err(e)),
    };
    doc.laid(&written, signature.as_ref());
    if !json {
        for w in &written {
            say!(
                "{:<7} {:04o} {:>10} {}",
                w.kind,
                w.mode & 0o7777,
                w.size,
                root.join(&w.path).display()
            );
        }
        say!("{}", signature_line(bundle, signature.as_ref()));
    }
    note!(
        "installed {} entries under {}",
        written.len(),
        root.display()
    );
    report::emit(json, doc, Ok(()))
}

/// `gpus`: query the compatibility database.
/// `guest-drivers --release`/`--os`.
#[derive(Debug, Clone, Copy)]
pub struct GuestFilter<'a> {
    pub release: Option<&'a str>,
    pub os: Option<&'a str>,
}

/// `guest-drivers`: the catalog, filtered.
pub fn guest_drivers(filter: GuestFilter<'_>, json: bool) -> Result<()> {
    let catalog = guest::Catalog::builtin()?;
    let drivers = catalog.select(filter.release, filter.os)?;
    out!("{}", guest::report(&drivers, json)?);
    Ok(())
}

/// `guest-drivers --fetch`: one guest driver into the cache, verified
/// against `sha256` when given, else recorded with the sha256 it had.
pub fn guest_fetch(
    filter: GuestFilter<'_>,
    sha256: Option<&str>,
    cache: Option<PathBuf>,
    json: bool,
) -> Result<()> {
    let mut doc = report::GuestFetchDoc {
        schema: report::SCHEMA,
        ..report::GuestFetchDoc::default()
    };
    let result = (|| {
        let catalog = guest::Catalog::builtin()?;
        let (Some(release), Some(os)) = (filter.release, filter.os) else {
            return Err(guest::GuestError::NotOne {
                what: "guest-drivers --fetch".into(),
            }
            .into());
        };
        let driver = catalog.find(release, os)?;
        let req = guest::fetch_request(driver, sha256)?;
        let fetched = fetch::fetch(&req, &fetch_options(cache))?;
        doc.driver = Some(guest::fetch_document(driver, &fetched, sha256.is_some()));
        if !json && !term::quiet() {
            out!(
                "{}",
                guest::fetch_summary(driver, &fetched, sha256.is_some())
            );
        }
        Ok(())
    })();
    report::emit(json, doc, result)
}

pub fn gpus(ids: &[String], json: bool, db: &GpuDb) -> Result<()> {
    out!("{}", gpudb::gpus_report(db, ids, json)?);
    Ok(())
}

/// `SOURCE_DATE_EPOCH` (reproducible builds), default 0.
fn source_date_epoch() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => v.trim().parse().map_err(|e| {
            anyhow::anyhow!(
                "SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970 ({e}): set it to one (e.g. `git log -1 --format=%ct`), or unset it"
            )
        }),
        _ => Ok(0),
    }
}

/// The agent to bake in: `--agent`, else the first of the places
/// [`vgpu_bake::companion`] documents.
fn agent_path(explicit: Option<PathBuf>) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the vgpu-bake binary")?;
    Ok(Companion::Agent.find(explicit.as_deref(), &exe)?)
}

/// `check`: every profile against every facts file, through the host gate
/// with the builder's GPU database. Prints one block per (profile, facts)
/// pair with every reason; fails if any pair fails.
pub fn check(
    profiles: &[PathBuf],
    facts: &[PathBuf],
    json: bool,
    gpu_db: Option<&Path>,
) -> Result<()> {
    let mut doc = report::CheckDoc {
        schema: report::SCHEMA,
        ..report::CheckDoc::default()
    };
    let result = open_db(gpu_db).and_then(|db| check_pairs(profiles, facts, json, &db, &mut doc));
    report::emit(json, doc, result)
}

fn check_pairs(
    profiles: &[PathBuf],
    facts: &[PathBuf],
    json: bool,
    db: &GpuDb,
    doc: &mut report::CheckDoc,
) -> Result<()> {
    let table = db.compat_table();
    let hosts = facts
        .iter()
        .map(|f| Ok((f, vgpu_bake::check::read_facts_file(f)?)))
        .collect::<Result<Vec<_>>>()?;
    let plans = profiles
        .iter()
        .map(|p| Ok((p, load_target(p, db)?)))
        .collect::<Result<Vec<_>>>()?;
    let mut failed = 0;
    for (path, plan) in &plans {
        for (facts_path, host) in &hosts {
            let report = vgpu_bake::check::check(plan, host, &table);
            if !json {
                outln!("{} on {}:", path.display(), facts_path.display());
                for line in report.lines() {
                    outln!("    {line}");
                }
            }
            if !report.passed() {
                failed += 1;
            }
            doc.pairs.push(report::CheckedPair {
                profile: report::path_text(path),
                facts: report::path_text(facts_path),
                passed: report.passed(),
                report,
            });
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} (profile, facts) pair(s) failed the host gate",
            plans.len() * hosts.len()
        );
    }
    Ok(())
}

// --- rollout: fleet, answer, usb ---

/// The hook's parts from the command line (`HookSourceArgs`).
pub struct HookParts {
    /// Where the hook looks, in order.
    pub sources: Vec<vgpu_bake::rollout::config::Source>,
    /// The trusted keys, with their text.
    pub trusted: Vec<(TrustedKey, String)>,
    /// The vgpu-hook template.
    pub template: PathBuf,
}

/// `fleet`: an inventory into a fleet directory.
#[allow(clippy::too_many_arguments)]
pub fn fleet(
    inventory: &Path,
    out: PathBuf,
    hook: Result<HookParts>,
    sign_key: Option<&Path>,
    cache: Option<PathBuf>,
    agent: Option<PathBuf>,
    gpu_db: Option<&Path>,
    json: bool,
) -> Result<()> {
    use vgpu_bake::rollout::fleet::{FleetInputs, fleet};
    let mut doc = report::FleetDoc {
        schema: report::SCHEMA,
        inventory: report::path_text(inventory),
        out: report::path_text(&out),
        ..report::FleetDoc::default()
    };
    let started = std::time::Instant::now();
    let result = (|| {
        let hook = hook?;
        let db = open_db(gpu_db)?;
        let sign = sign_key.map(SigningKey::load).transpose()?;
        let agent = agent_path(agent)?;
        let inputs = FleetInputs {
            inventory: inventory.to_owned(),
            out,
            fetch: fetch_options(cache),
            agent,
            options: BakeOptions {
                mtime: source_date_epoch()?,
                sign,
                ..BakeOptions::default()
            },
            template: hook.template.clone(),
            sources: hook.sources.clone(),
            trusted: hook.trusted.clone(),
        };
        let report = fleet(&inputs, &db)?;
        for (profile, w) in &report.warnings {
            warn(std::slice::from_ref(w), profile);
        }
        for n in &report.notes {
            note!("{n}");
        }
        if !json {
            for b in &report.bundles {
                let sha = b.sha256.to_string();
                say!(
                    "bundle {:<20} sha256 {}  {:>10} bytes  {} host(s){}  {}",
                    b.name,
                    &sha[..12],
                    b.size,
                    b.hosts,
                    if b.default { " + default" } else { "" },
                    b.file
                );
            }
            say!(
                "hook   {} ({} bytes; index {}, {} bundle(s)); made in {:.1} s",
                report.hook.display(),
                report.hook_size,
                report.index.display(),
                report.bundles.len(),
                started.elapsed().as_secs_f64()
            );
        }
        doc.made(&report);
        Ok(())
    })();
    report::emit(json, doc, result)
}

/// `answer`: the answer file's `[first-boot]` and the boot line.
pub fn answer(
    profile: &Path,
    hook_url: Option<&str>,
    cert_fingerprint: Option<&str>,
    json: bool,
    db: &GpuDb,
) -> Result<()> {
    use vgpu_bake::rollout::answer;
    let resolved = load_target(profile, db)?;
    let a = answer::answer(&resolved, hook_url, cert_fingerprint)?;
    if json {
        out!("{}", answer::render_json(&a));
    } else {
        out!("{}", answer::render_text(&a, &shown_path(profile)));
    }
    Ok(())
}

/// `usb`: an ext4 image holding a bundle or a fleet directory.
pub fn usb(input: &Path, out: &Path, label: &str, force: bool, json: bool) -> Result<()> {
    let mut doc = report::UsbDoc {
        schema: report::SCHEMA,
        input: report::path_text(input),
        image: report::path_text(out),
        ..report::UsbDoc::default()
    };
    let result = source_date_epoch().and_then(|mtime| {
        let r = vgpu_bake::rollout::usb::usb(input, out, label, force, mtime)?;
        if !json {
            say!(
                "wrote {} ({} bytes, {} MiB, ext4 label {}) holding {}; write it to a stick with: dd if={} of=/dev/sdX bs=4M conv=fsync status=progress",
                r.out.display(),
                r.size,
                r.size / (1024 * 1024),
                r.label,
                r.holds,
                r.out.display()
            );
        }
        doc.size = Some(r.size);
        doc.label = Some(r.label);
        doc.holds = Some(r.holds);
        Ok(())
    });
    report::emit(json, doc, result)
}
// --- end rollout ---

/// `doctor`: the build machine's findings; exit code 1 if any failed.
pub fn doctor(
    profiles: &[PathBuf],
    cache: Option<PathBuf>,
    out_dir: PathBuf,
    deep: bool,
    json: bool,
    db: &GpuDb,
) -> Result<()> {
    use vgpu_bake::doctor::{self, ProfileNeeds};
    let mut req = doctor::Request {
        cache: fetch_options(cache).cache_dir,
        out: out_dir,
        deep,
        profiles: Vec::new(),
        broken: Vec::new(),
    };
    for path in profiles {
        let shown = shown_path(path);
        match load(path, db) {
            Ok(resolved) => req.profiles.push(ProfileNeeds::of(&shown, &resolved)),
            Err(e) => req.broken.push((shown, format!("{e:#}"))),
        }
    }
    let findings = doctor::run(&req, &doctor::System);
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&doctor::Document::new(&findings))?
        );
    } else {
        for f in &findings {
            outln!("{}", escape_controls(&f.line()));
        }
    }
    let fails = findings
        .iter()
        .filter(|f| f.status == doctor::Status::Fail)
        .count();
    if fails > 0 {
        bail!("doctor: {fails} check(s) failed; the `fail` lines say what to do");
    }
    Ok(())
}

//! `vgpu-bake bake PROFILE... --out DIR` with more than one profile.
//!
//! Every profile is loaded and resolved first: any error reports every
//! failing profile and bakes nothing, and two profiles that make the same
//! bundle name are refused. Each distinct driver (by its resolved source
//! and pins) is prepared once, then the bundles are baked: the first
//! profile of each driver first, then the rest, each round on up to as
//! many threads as there are cores. A driver's compressed frame, which the
//! bundle writer caches under the cache directory, is so made once and
//! reused by every other bundle that carries it. Each bundle is written
//! atomically on its own: one that fails does not stop the others, and
//! those written stay; the exit code is then 1 and the failed ones are
//! named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Result, bail};
use vgpu_bake::bake::{self, BakeInputs, Baked};
use vgpu_bake::gpudb::GpuDb;
use vgpu_bake::prepare::{Prepare, fetch_request, prepare_driver};
use vgpu_bake::resolve::{DriverOverrides, Resolved};
use vgpu_bake::{note, say};
use vgpu_rootfs::errln;

use crate::commands::{in_profile, key_id, load, report_baked, shown_path};
use crate::report::{BakedBundle, error_text};

/// One profile to bake, and what became of it.
struct Job {
    profile: PathBuf,
    resolved: Option<Resolved>,
    outcome: Option<Result<Baked, String>>,
}

/// Bakes every profile in `profiles` into `inputs.out_dir` (see the module
/// doc); `inputs` as for one profile. Each profile's outcome goes into
/// `done` (`bake --json`); with `json`, stdout gets no lines.
pub fn bake_many(
    profiles: &[PathBuf],
    inputs: &BakeInputs,
    db: &GpuDb,
    json: bool,
    done: &mut Vec<BakedBundle>,
) -> Result<()> {
    let mut jobs = load_all(profiles, db, done)?;
    let overrides = DriverOverrides::default();
    // Each distinct driver prepared once, in profile order.
    let mut drivers: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut first_of: Vec<usize> = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        let resolved = job.resolved.as_ref().expect("loaded");
        let Some(d) = &resolved.driver else { continue };
        let key = fetch_request(d, &overrides)
            .map(|r| format!("{}\n{:?}\n{:?}\n{:?}", r.filename, r.url, r.md5, r.sha256))
            .unwrap_or_else(|e| format!("unpreparable\n{i}\n{e}"));
        let users = drivers.entry(key).or_default();
        if users.is_empty() {
            first_of.push(i);
        }
        users.push(i);
    }
    for &i in &first_of {
        let d = jobs[i].resolved.as_ref().and_then(|r| r.driver.clone());
        let Some(d) = d else { continue };
        let mut notes = Vec::new();
        let prepared = prepare_driver(&d, &overrides, &inputs.fetch, Prepare::Trust, &mut notes);
        for n in notes {
            note!("{n}");
        }
        if let Err(e) = prepared {
            let message = error_text(&in_profile(&jobs[i].profile, e));
            let users = drivers.values().find(|u| u[0] == i).cloned();
            for j in users.unwrap_or_default() {
                jobs[j].outcome = Some(Err(message.clone()));
                jobs[j].resolved = None;
            }
        }
    }
    // The first bundle of each driver, then the rest.
    let rest: Vec<usize> = (0..jobs.len()).filter(|i| !first_of.contains(i)).collect();
    for round in [first_of, rest] {
        bake_round(&mut jobs, &round, inputs, db);
    }
    report(&jobs, &inputs.out_dir, json, key_id(inputs), done)
}

/// Loads and resolves every profile; refuses on any error (all of them
/// reported) and on two profiles with one bundle name.
fn load_all(profiles: &[PathBuf], db: &GpuDb, done: &mut Vec<BakedBundle>) -> Result<Vec<Job>> {
    let mut jobs = Vec::new();
    let mut failed = 0;
    for profile in profiles {
        match load(profile, db) {
            Ok(r) => jobs.push(Job {
                profile: profile.clone(),
                resolved: Some(r),
                outcome: None,
            }),
            Err(e) => {
                let shown = shown_path(profile);
                let mut message = error_text(&e);
                if !message.contains(&shown) {
                    message = format!("{shown}: {message}");
                }
                errln!("vgpu-bake: error: {message}");
                done.push(BakedBundle::failed(profile, message));
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} profiles failed to load; nothing was baked: fix the profiles named above and bake again",
            profiles.len()
        );
    }
    let mut names: BTreeMap<&str, &Path> = BTreeMap::new();
    for job in &jobs {
        let name = job.resolved.as_ref().map(|r| r.name.as_str()).unwrap_or("");
        if let Some(other) = names.insert(name, &job.profile) {
            bail!(
                "{} and {} both make the bundle {name}.cpio.zst; nothing was baked: give one of them another `name` (or file name) and bake again",
                shown_path(other),
                shown_path(&job.profile)
            );
        }
    }
    Ok(jobs)
}

/// Bakes `round`'s jobs on up to as many threads as there are cores, the
/// zstd workers shared out between them (the bundle's bytes do not depend
/// on the number of workers).
fn bake_round(jobs: &mut [Job], round: &[usize], inputs: &BakeInputs, db: &GpuDb) {
    let todo: Vec<(usize, PathBuf, Resolved)> = round
        .iter()
        .filter_map(|&i| {
            let job = &mut jobs[i];
            job.resolved.take().map(|r| (i, job.profile.clone(), r))
        })
        .collect();
    if todo.is_empty() {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.min(todo.len());
    let mut inputs = inputs.clone();
    inputs.options.workers = u32::try_from((cores / threads).max(1)).unwrap_or(1);
    let todo: Vec<Mutex<Option<(usize, PathBuf, Resolved)>>> =
        todo.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, Result<Baked, String>)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while let Some(slot) = todo.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let Some((i, profile, resolved)) =
                        slot.lock().map(|mut t| t.take()).ok().flatten()
                    else {
                        continue;
                    };
                    let profile = &profile;
                    let outcome = bake::bake(resolved, db, &inputs)
                        .map_err(|e| error_text(&in_profile(profile, e)));
                    if let Ok(baked) = &outcome {
                        report_baked(profile, baked, &inputs);
                    }
                    if let Ok(mut d) = done.lock() {
                        d.push((i, outcome));
                    }
                }
            });
        }
    });
    for (i, outcome) in done.into_inner().unwrap_or_default() {
        jobs[i].outcome = Some(outcome);
    }
}

/// One line per bundle written, then the summary; an error naming every
/// bundle that failed.
fn report(
    jobs: &[Job],
    out: &Path,
    json: bool,
    key_id: Option<String>,
    done: &mut Vec<BakedBundle>,
) -> Result<()> {
    let mut failed = Vec::new();
    for job in jobs {
        match &job.outcome {
            Some(Ok(b)) => {
                if !json {
                    say!(
                        "{}  {} bytes  sha256 {}  {}",
                        b.plan.name,
                        b.output.size,
                        b.output.sha256,
                        b.output.bundle.display()
                    );
                }
                done.push(BakedBundle::baked(&job.profile, b, key_id.clone()));
            }
            Some(Err(e)) => {
                errln!("vgpu-bake: error: {e}");
                failed.push(shown_path(&job.profile));
                done.push(BakedBundle::failed(&job.profile, e.clone()));
            }
            None => {
                failed.push(shown_path(&job.profile));
                done.push(BakedBundle::failed(
                    &job.profile,
                    "not baked: its driver could not be prepared".into(),
                ));
            }
        }
    }
    let written = jobs.len() - failed.len();
    note!(
        "{written} of {} bundles written to {}",
        jobs.len(),
        shown_path(out)
    );
    if !failed.is_empty() {
        bail!(
            "{} of {} profiles failed to bake: {}; the bundles listed above were written and stay, fix these profiles and bake them again",
            failed.len(),
            jobs.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

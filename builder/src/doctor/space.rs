//! Free space against what the given profiles' bakes will write: in the
//! cache, each driver not cached yet (the download or import) and its
//! frame cache entry unless one is there (about the driver's size: a `.run`
//! is compressed already), plus the patched installer for unlock bakes;
//! in `--out`, each bundle (about its driver's size). The registry has no
//! sizes, so a driver neither cached nor given is reported as unknown.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use indicatif::HumanBytes;

use super::cache::Cached;
use super::{Finding, Probes, Request, Status};
use crate::bundle::{DEFAULT_LEVEL, has_frame_entry};

/// A filesystem as [`Probes::space`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Its id (the device of the directory).
    pub fs: u64,
    /// Bytes free to an unprivileged user.
    pub free: u64,
}

/// `statvfs` of `dir` or its nearest existing ancestor.
pub(super) fn probe(dir: &Path) -> Result<Space, String> {
    let abs = std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let existing = abs
        .ancestors()
        .find(|p| p.exists())
        .ok_or_else(|| format!("{}: no part of it exists", dir.display()))?;
    let meta = std::fs::metadata(existing).map_err(|e| format!("{}: {e}", existing.display()))?;
    let st = rustix::fs::statvfs(existing).map_err(|e| format!("{}: {e}", existing.display()))?;
    Ok(Space {
        fs: meta.dev(),
        free: st.f_bavail.saturating_mul(st.f_frsize),
    })
}

/// What one bake run needs, in bytes, where.
#[derive(Debug, Default)]
struct Needs {
    cache: u64,
    out: u64,
    /// Drivers whose size nothing tells.
    unknown: Vec<String>,
}

fn needs(req: &Request, cached: &[Cached]) -> Needs {
    let mut n = Needs::default();
    // Each distinct driver once in the cache; each profile's bundle in out.
    let mut seen = BTreeMap::new();
    for p in &req.profiles {
        let Some(name) = &p.driver else {
            continue;
        };
        let hit = cached.iter().find(|c| &c.name == name);
        let Some(size) = hit.map(|c| c.size).or(p.driver_size) else {
            if !n.unknown.contains(name) {
                n.unknown.push(name.clone());
            }
            continue;
        };
        n.out += size;
        if seen.insert(name.clone(), ()).is_some() {
            continue;
        }
        if hit.is_none() {
            n.cache += size;
        }
        let framed = hit
            .and_then(|c| c.sha256.as_deref())
            .is_some_and(|sha| has_frame_entry(&req.cache, DEFAULT_LEVEL, sha, size));
        if !framed {
            n.cache += size;
        }
        if p.unlock {
            n.cache += size;
        }
    }
    n
}

/// The space findings (none without profiles).
pub(super) fn check(req: &Request, cached: &[Cached], probes: &dyn Probes) -> Vec<Finding> {
    if req.profiles.is_empty() {
        return Vec::new();
    }
    let n = needs(req, cached);
    let mut out: Vec<Finding> = n
        .unknown
        .iter()
        .map(|name| {
            Finding::bad(
                Status::Warn,
                "space",
                name.clone(),
                "size unknown (not in the cache, and the registry has no sizes): not counted below",
                "fetch it first (`vgpu-bake fetch PROFILE`) and run doctor again",
            )
        })
        .collect();
    let cache_dir = req.cache.display().to_string();
    let out_dir = req.out.display().to_string();
    let probed = |dir: &Path, shown: &str| {
        probes.space(dir).map_err(|e| {
            Finding::bad(
                Status::Warn,
                "space",
                shown.to_owned(),
                format!("free space unknown: {e}"),
                "check it by hand (df)",
            )
        })
    };
    match (probed(&req.cache, &cache_dir), probed(&req.out, &out_dir)) {
        (Ok(c), Ok(o)) if c.fs == o.fs => out.push(verdict(
            format!("{cache_dir} and {out_dir}"),
            n.cache + n.out,
            c.free,
        )),
        (c, o) => {
            for (probe, shown, need) in [(c, &cache_dir, n.cache), (o, &out_dir, n.out)] {
                out.push(match probe {
                    Ok(s) => verdict(shown.clone(), need, s.free),
                    Err(f) => f,
                });
            }
        }
    }
    out
}

fn verdict(subject: String, need: u64, free: u64) -> Finding {
    let message = format!(
        "{} free, these bakes need about {}",
        HumanBytes(free),
        HumanBytes(need)
    );
    if need <= free {
        Finding::ok("space", subject, message)
    } else {
        Finding::bad(
            Status::Fail,
            "space",
            subject,
            message,
            "free some space there, or use --cache DIR / --out DIR on another filesystem",
        )
    }
}

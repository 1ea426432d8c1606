//! `vgpu-bake gpus`: what the database says about given ids, or a summary.

use std::fmt::Write as _;

use serde::Serialize;
use vgpu_plan::compat::Support;

use super::{Classification, GpuDb, GpuDbError, join, parse_device_id};

/// `vgpu-bake gpus [--gpu-db FILE] [--json] [10de:XXXX ...]`: with ids, one
/// block per id (unknown ids reported as "not in the database", not an
/// error); without ids, a summary (rows, counts per support after
/// corrections, number of corrections, db source).
pub fn gpus_report(db: &GpuDb, ids: &[String], json: bool) -> Result<String, GpuDbError> {
    if ids.is_empty() {
        let summary = summary(db);
        return if json {
            Ok(serde_json::to_string_pretty(&summary)? + "\n")
        } else {
            Ok(summary_text(&summary))
        };
    }
    let mut gpus = Vec::with_capacity(ids.len());
    for query in ids {
        let device = parse_device_id(query)?;
        gpus.push(IdReport {
            query: query.clone(),
            id: format!("10de:{device}"),
            in_database: false,
            classification: None,
        });
        let last = gpus.len() - 1;
        if let Some(c) = db.classify(&device)? {
            gpus[last].in_database = true;
            gpus[last].classification = Some(c);
        }
    }
    if json {
        let report = IdsReport {
            schema: JSON_SCHEMA,
            source: db.source(),
            gpus,
        };
        return Ok(serde_json::to_string_pretty(&report)? + "\n");
    }
    let mut out = String::new();
    for (i, g) in gpus.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match &g.classification {
            Some(c) => out.push_str(&id_text(c)),
            None => {
                let _ = writeln!(out, "{}  not in the database", g.id);
            }
        }
    }
    let _ = writeln!(out, "\nsource: {}", db.source());
    Ok(out)
}

/// Version of both `gpus --json` documents.
pub const JSON_SCHEMA: u32 = 1;

/// The `vgpu-bake gpus --json ID...` document, schema [`JSON_SCHEMA`]:
/// `schema`, `source` (the database) and `gpus`, one [`IdReport`] per id
/// in command-line order.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
struct IdsReport {
    schema: u32,
    source: String,
    gpus: Vec<IdReport>,
}

/// One id in [`IdsReport`]: `query`, `id`, `in-database` and
/// `classification` (`null` when not in the database; else `device`,
/// `name`, `chip`, `db-support`, `db-word`, `db-majors`, `support`,
/// `majors` and `correction`, `null` or `reason` and `sources`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
struct IdReport {
    /// As given on the command line.
    query: String,
    /// Normalised, `10de:xxxx`.
    id: String,
    in_database: bool,
    classification: Option<Classification>,
}

/// The `vgpu-bake gpus --json` document (no ids), schema [`JSON_SCHEMA`]:
/// `schema`, `source`, `rows`, `support` (`native`, `unlock`, `no`),
/// `corrections` and `unknown-db-words`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
struct Summary {
    schema: u32,
    source: String,
    rows: usize,
    /// Counts per support, after corrections.
    support: Counts,
    /// Rows a correction changed.
    corrections: usize,
    /// Rows whose `vgpu` word is not Native/Yes/No (counted as no).
    unknown_db_words: usize,
}

#[derive(Debug, Default, Serialize)]
struct Counts {
    native: usize,
    unlock: usize,
    no: usize,
}

fn summary(db: &GpuDb) -> Summary {
    let mut s = Summary {
        schema: JSON_SCHEMA,
        source: db.source(),
        rows: db.len(),
        support: Counts::default(),
        corrections: 0,
        unknown_db_words: 0,
    };
    for c in db.classifications() {
        match c.support {
            Support::Native => s.support.native += 1,
            Support::Unlock => s.support.unlock += 1,
            Support::No => s.support.no += 1,
        }
        s.corrections += usize::from(c.correction.is_some());
        s.unknown_db_words += usize::from(c.db_support.is_none());
    }
    s
}

fn summary_text(s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "GPU database: {}", s.source);
    let _ = writeln!(out, "rows:         {}", s.rows);
    let _ = writeln!(out, "native vGPU:  {}", s.support.native);
    let _ = writeln!(out, "vgpu_unlock:  {}", s.support.unlock);
    let _ = writeln!(out, "not usable:   {} (passthrough only)", s.support.no);
    let _ = writeln!(
        out,
        "corrections:  {} rows changed by NVIDIA-sourced corrections",
        s.corrections
    );
    if s.unknown_db_words > 0 {
        let _ = writeln!(
            out,
            "unknown:      {} rows with a vgpu word other than Native/Yes/No (treated as not usable)",
            s.unknown_db_words
        );
    }
    out
}

/// What a support level means for the user.
fn support_words(s: Support) -> &'static str {
    match s {
        Support::Native => "native vGPU (official NVIDIA vGPU card)",
        Support::Unlock => "vgpu_unlock consumer card (needs the patched driver)",
        Support::No => "not usable for vGPU, passthrough only",
    }
}

fn majors_text(majors: &[u32]) -> String {
    if majors.is_empty() {
        "none listed".into()
    } else {
        join(majors, ", ")
    }
}

fn id_text(c: &Classification) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "10de:{}  {}", c.device, c.name);
    let _ = writeln!(out, "  chip:      {}", c.chip);
    let _ = writeln!(out, "  support:   {}", support_words(c.support));
    let _ = writeln!(out, "  majors:    {}", majors_text(&c.majors));
    let db_verdict = match c.db_support {
        Some(s) => format!("{}: {}", c.db_word, support_words(s)),
        None => format!(
            "{:?}, which is not Native, Yes or No (treated as not usable)",
            c.db_word
        ),
    };
    match &c.correction {
        Some(fix) => {
            let _ = writeln!(
                out,
                "  database:  said {db_verdict}; majors {}",
                majors_text(&c.db_majors)
            );
            let _ = writeln!(
                out,
                "  corrected: now {}; majors {}",
                support_words(c.support),
                majors_text(&c.majors)
            );
            let _ = writeln!(out, "  why:       {}", fix.reason);
            for url in &fix.sources {
                let _ = writeln!(out, "  source:    {url}");
            }
        }
        None if c.db_support.is_none() => {
            let _ = writeln!(out, "  database:  says {db_verdict}");
        }
        None => {}
    }
    out
}

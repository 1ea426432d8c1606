//! Text and JSON renderings of an [`InspectReport`].

use serde_json::json;
use vgpu_plan::manifest::mode_string;

use super::{EntryKind, InspectReport};

/// Renders a report: human (one line per entry, then a summary) or JSON
/// (stable, sorted keys).
pub fn render_report(report: &InspectReport, json: bool) -> String {
    let files = report.entries.iter().filter(|e| e.kind == EntryKind::File);
    let bytes: u64 = files.clone().map(|e| e.size).sum();
    let count = |k: &str| report.entries.iter().filter(|e| e.kind.name() == k).count();
    if json {
        let entries: Vec<_> = report
            .entries
            .iter()
            .map(|e| {
                json!({
                    "path": e.path,
                    "kind": e.kind.name(),
                    "mode": mode_string(e.mode),
                    "size": e.size,
                    "sha256": e.sha256,
                    "target": match &e.kind { EntryKind::Symlink { target } => Some(target), _ => None },
                    "verified": e.verified,
                })
            })
            .collect();
        let value = json!({
            "name": report.manifest.name,
            "bundle_sha256": report.bundle_sha256,
            "entries": entries,
            "files": count("file"),
            "dirs": count("dir"),
            "symlinks": count("symlink"),
            "file_bytes": bytes,
            "has_plan": report.plan_toml.is_some(),
            "ok": true,
        });
        return serde_json::to_string_pretty(&value).expect("JSON values serialise") + "\n";
    }
    let mut out = String::new();
    for e in &report.entries {
        let path = match &e.kind {
            EntryKind::Symlink { target } => format!("{} -> {target}", e.path),
            _ => e.path.clone(),
        };
        let ok = if e.verified { "ok (sha256)" } else { "ok" };
        out.push_str(&format!(
            "{} {:<7} {:>12}  {path}  {ok}\n",
            mode_string(e.mode),
            e.kind.name(),
            e.size,
        ));
    }
    out.push_str(&format!(
        "bundle {} ok: {} entries ({} files, {} dirs, {} symlinks), {bytes} bytes of files match the manifest; bundle sha256 {}\n",
        report.manifest.name,
        report.entries.len(),
        count("file"),
        count("dir"),
        count("symlink"),
        report.bundle_sha256,
    ));
    out
}

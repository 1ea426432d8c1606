//! Text and JSON renderings of an [`InspectReport`].

use serde::Serialize;
use vgpu_plan::manifest::mode_string;

use crate::sign::SignatureInfo;

use super::{Checksum, EntryInfo, EntryKind, InspectReport};

/// Version of the `inspect --json` document.
pub const JSON_SCHEMA: u32 = 1;

/// The `vgpu-bake inspect --json` document, schema [`JSON_SCHEMA`]: a
/// bundle that passed every check (a bad bundle is an error, not a
/// document).
///
/// Keys: `schema`, `name`, `bundle-sha256`, `checksum-file` (the
/// `.sha256` beside the bundle that matched it, or `null` when there was
/// none), `ok` (always `true`), `files`, `dirs`, `symlinks`, `file-bytes`,
/// `has-plan`, `signature` and `entries`
/// ([`EntryJson`], in archive order).
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct InspectJson<'a> {
    /// [`JSON_SCHEMA`].
    pub schema: u32,
    /// The bundle's name, from its manifest.
    pub name: &'a str,
    /// sha256 of the bundle file.
    pub bundle_sha256: &'a str,
    /// The checksum file that matched, if there was one.
    pub checksum_file: Option<String>,
    /// Every check passed.
    pub ok: bool,
    /// Regular files.
    pub files: usize,
    /// Directories.
    pub dirs: usize,
    /// Symbolic links.
    pub symlinks: usize,
    /// Bytes in regular files.
    pub file_bytes: u64,
    /// The bundle carries a plan.
    pub has_plan: bool,
    /// The manifest's signature (`key-id`, `trusted-comment`,
    /// `verified-by`: the `--trusted-key` file that verified it, `null`
    /// when none was given); `null` for an unsigned bundle.
    pub signature: Option<SignatureJson<'a>>,
    /// Every entry.
    pub entries: Vec<EntryJson<'a>>,
}

/// [`InspectJson`]'s `signature`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SignatureJson<'a> {
    /// The signing key's id, as minisign prints it.
    pub key_id: &'a str,
    /// The signed comment (`vgpu-bake bundle NAME`).
    pub trusted_comment: &'a str,
    /// The trusted key file that verified it, if one was given.
    pub verified_by: Option<String>,
}

impl<'a> From<&'a SignatureInfo> for SignatureJson<'a> {
    fn from(s: &'a SignatureInfo) -> Self {
        SignatureJson {
            key_id: &s.key_id,
            trusted_comment: &s.trusted_comment,
            verified_by: s.verified_by.as_ref().map(|p| p.display().to_string()),
        }
    }
}

/// One entry in [`InspectJson`]: `path`, `kind` (`file`, `dir`,
/// `symlink`), `mode` (4 octal digits), `size`, `sha256` (files, else
/// `null`), `target` (symlinks, else `null`) and `verified` (checked
/// against the manifest).
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct EntryJson<'a> {
    /// Path relative to the target root.
    pub path: &'a str,
    /// `file`, `dir` or `symlink`.
    pub kind: &'static str,
    /// Permission bits, e.g. `0755`.
    pub mode: String,
    /// Body size.
    pub size: u64,
    /// sha256 of a regular file's content; `null` for a secret.
    pub sha256: Option<&'a str>,
    /// The manifest flags it secret (the licensing client token): its
    /// digest is not shown.
    pub secret: bool,
    /// A symlink's target.
    pub target: Option<&'a str>,
    /// The content was checked against the manifest.
    pub verified: bool,
}

impl<'a> InspectJson<'a> {
    /// The document for `report`.
    pub fn new(report: &'a InspectReport) -> Self {
        let count = |k: &str| report.entries.iter().filter(|e| e.kind.name() == k).count();
        InspectJson {
            schema: JSON_SCHEMA,
            name: &report.manifest.name,
            bundle_sha256: &report.bundle_sha256,
            checksum_file: match &report.checksum {
                Checksum::Matched(p) => Some(p.display().to_string()),
                Checksum::Absent(_) => None,
            },
            ok: true,
            files: count("file"),
            dirs: count("dir"),
            symlinks: count("symlink"),
            file_bytes: file_bytes(report),
            has_plan: report.plan_toml.is_some(),
            signature: report.signature.as_ref().map(SignatureJson::from),
            entries: report
                .entries
                .iter()
                .map(|e| EntryJson::new(e, is_secret(report, e)))
                .collect(),
        }
    }
}

impl<'a> EntryJson<'a> {
    fn new(e: &'a EntryInfo, secret: bool) -> Self {
        EntryJson {
            path: &e.path,
            kind: e.kind.name(),
            mode: mode_string(e.mode),
            size: e.size,
            sha256: if secret { None } else { e.sha256.as_deref() },
            secret,
            target: match &e.kind {
                EntryKind::Symlink { target } => Some(target),
                _ => None,
            },
            verified: e.verified,
        }
    }
}

/// Whether the manifest flags `e` secret.
fn is_secret(report: &InspectReport, e: &EntryInfo) -> bool {
    report.manifest.get(&e.path).is_some_and(|m| m.secret)
}

/// Bytes in the report's regular files.
fn file_bytes(report: &InspectReport) -> u64 {
    report
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .map(|e| e.size)
        .sum()
}

/// Renders a report: human (one line per entry, then a summary) or JSON
/// ([`InspectJson`], pretty-printed).
pub fn render_report(report: &InspectReport, json: bool) -> String {
    if json {
        return serde_json::to_string_pretty(&InspectJson::new(report))
            .expect("strings, numbers and booleans serialise")
            + "\n";
    }
    let bytes = file_bytes(report);
    let count = |k: &str| report.entries.iter().filter(|e| e.kind.name() == k).count();
    let mut out = String::new();
    for e in &report.entries {
        let path = match &e.kind {
            EntryKind::Symlink { target } => format!("{} -> {target}", e.path),
            _ => e.path.clone(),
        };
        let ok = match (e.verified, is_secret(report, e)) {
            (true, true) => "ok (sha256), secret, redacted",
            (true, false) => "ok (sha256)",
            (false, _) => "ok",
        };
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
    out.push_str(&match &report.checksum {
        Checksum::Matched(p) => format!("checksum file {} matches the bundle\n", p.display()),
        Checksum::Absent(p) => format!(
            "checksum file {} is absent: the bundle's sha256 was not checked against one\n",
            p.display()
        ),
    });
    out
}

//! The JSON documents of `validate`, `check`, `fetch`, `bake`, `install`,
//! `hook`, `keygen`, `fleet` and `usb`
//! (`--json`), and the error text every command prints.
//!
//! Each document is one serde_json object on stdout with kebab-case keys,
//! `schema` ([`SCHEMA`]: raised on any incompatible change), `ok`, and on
//! failure `error` (the message also printed on stderr); the exit code is
//! the one without `--json`. docs/JSON.md describes every key.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;
use vgpu_bake::inspect::SignatureJson;
use vgpu_bake::install::Installed;
use vgpu_bake::sign::SignatureInfo;
use vgpu_rootfs::outln;

/// Version of the documents in this module.
pub const SCHEMA: u32 = 1;

/// An error as the user sees it: the message and its causes, each cause
/// once (a message that already quotes its cause, as several library
/// errors do, is not followed by it again).
pub fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if text.is_empty() {
            text = c;
        } else if !c.is_empty() && !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
}

/// A path as the documents show it: as given, lossily UTF-8.
pub fn path_text(p: &Path) -> String {
    p.display().to_string()
}

/// A document with `ok` and `error`.
pub trait Document: Serialize {
    /// Records the outcome.
    fn finish(&mut self, error: Option<String>);
}

/// With `json`, prints `doc` with the outcome of `result`; returns
/// `result` (so the exit code and the stderr message are as without
/// `--json`).
pub fn emit<D: Document>(json: bool, mut doc: D, result: Result<()>) -> Result<()> {
    if json {
        doc.finish(result.as_ref().err().map(error_text));
        match serde_json::to_string_pretty(&doc) {
            Ok(text) => outln!("{text}"),
            Err(e) => return Err(e.into()),
        }
    }
    result
}

macro_rules! document {
    ($t:ty) => {
        impl Document for $t {
            fn finish(&mut self, error: Option<String>) {
                self.ok = error.is_none();
                self.error = error;
            }
        }
    };
}

/// `validate --json`.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ValidateDoc {
    pub schema: u32,
    pub ok: bool,
    /// One per profile, in the order given.
    pub profiles: Vec<ValidatedProfile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
document!(ValidateDoc);

/// One profile of [`ValidateDoc`]: what it resolves to, or its error.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ValidatedProfile {
    pub profile: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxmox: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `check --json`.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CheckDoc {
    pub schema: u32,
    pub ok: bool,
    /// One per (profile, facts) pair, profiles outer, in the order given.
    pub pairs: Vec<CheckedPair>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
document!(CheckDoc);

/// One pair of [`CheckDoc`]: the host gate's report for it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CheckedPair {
    pub profile: String,
    pub facts: String,
    /// No binding reason.
    pub passed: bool,
    /// `reasons` (each `kind`, `check`, `binding`, `message`) and `notes`.
    #[serde(flatten)]
    pub report: vgpu_plan::gate::GateReport,
}

/// `hook --json`.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct HookDoc {
    pub schema: u32,
    pub ok: bool,
    /// The hook (`--out`).
    pub hook: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The installer's limit for the hook, 1,048,576 bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
    /// Bundles in its index (1 for `--bundle`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundles: Option<usize>,
    /// `[[host]]` entries in its index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_keys: Option<usize>,
    /// Where it looks, in order, as the text shows them (`path /x`,
    /// `label VGPUSTICK`, `url http://...`).
    pub sources: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
document!(HookDoc);

impl HookDoc {
    /// The hook made.
    pub fn made(&mut self, made: &vgpu_bake::rollout::make::MadeHook) {
        self.size = Some(made.size);
        self.max_size = Some(vgpu_bake::rollout::config::HOOK_MAX);
        self.bundles = Some(made.config.index.bundles.len());
        self.hosts = Some(made.config.index.hosts.len());
        self.trusted_keys = Some(made.config.trusted_keys.len());
        self.sources = made
            .config
            .sources
            .iter()
            .map(ToString::to_string)
            .collect();
    }
}

/// `keygen --json`.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct KeygenDoc {
    pub schema: u32,
    pub ok: bool,
    /// `PREFIX.key` (mode 0600).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// `PREFIX.pub`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public: Option<String>,
    /// The key id, 16 hex digits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
document!(KeygenDoc);

/// `fleet --json`.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct FleetDoc {
    pub schema: u32,
    pub ok: bool,
    pub inventory: String,
    /// The fleet directory.
    pub out: String,
    /// One per distinct bundle, in index order.
    pub bundles: Vec<FleetBundle>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// The profiles' warnings, each `PROFILE: WARNING`.
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
document!(FleetDoc);

/// One bundle of [`FleetDoc`].
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct FleetBundle {
    pub name: String,
    pub sha256: String,
    pub size: u64,
    /// `bundles/<sha256>.cpio.zst`, relative to `out`.
    pub file: String,
    /// How many `[[host]]` entries take it.
    pub hosts: usize,
    /// The inventory's default.
    pub default: bool,
    /// The profiles baked into it.
    pub profiles: Vec<String>,
}

impl FleetDoc {
    /// The fleet made.
    pub fn made(&mut self, r: &vgpu_bake::rollout::fleet::FleetReport) {
        self.bundles = r
            .bundles
            .iter()
            .map(|b| FleetBundle {
                name: b.name.clone(),
                sha256: b.sha256.to_string(),
                size: b.size,
                file: b.file.clone(),
                hosts: b.hosts,
                default: b.default,
                profiles: b.profiles.iter().map(|p| path_text(p)).collect(),
            })
            .collect();
        self.hook = Some(path_text(&r.hook));
        self.hook_size = Some(r.hook_size);
        self.index = Some(path_text(&r.index));
        self.warnings = r
            .warnings
            .iter()
            .map(|(p, w)| format!("{}: {w}", path_text(p)))
            .collect();
    }
}

/// `usb --json`.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct UsbDoc {
    pub schema: u32,
    pub ok: bool,
    /// The bundle or fleet directory given.
    pub input: String,
    /// The image (`--out`).
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `bundle NAME` or `fleet directory (N bundles)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holds: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
document!(UsbDoc);

/// `guest-drivers --fetch --json`.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct GuestFetchDoc {
    pub schema: u32,
    pub ok: bool,
    /// The file in the cache; `null` on failure.
    pub driver: Option<vgpu_bake::guest::FetchedGuest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
document!(GuestFetchDoc);

/// `fetch --json`.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct FetchDoc {
    pub schema: u32,
    pub ok: bool,
    pub profile: String,
    /// The profile's mode, once it is loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The driver in the cache; `null` when the mode needs none or on
    /// failure.
    pub driver: Option<FetchedDriver>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
document!(FetchDoc);

/// [`FetchDoc`]'s `driver`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct FetchedDriver {
    pub release: String,
    /// The file name (as in the registry).
    pub filename: String,
    /// The verified file in the cache.
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// Only when one is declared (registry, profile, `--md5`), and so
    /// verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// `cached`, `downloaded` or `imported`.
    pub source: &'static str,
    /// The registry or the profile pins a checksum; `false`: `bake` needs
    /// `sha256` under `[driver]` in the profile.
    pub pinned: bool,
}

/// `bake --json`.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct BakeDoc {
    pub schema: u32,
    pub ok: bool,
    /// The output directory.
    pub out: String,
    /// One per profile, in the order given (empty when the bake stopped
    /// before any profile was baked; `error` says why).
    pub bundles: Vec<BakedBundle>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
document!(BakeDoc);

/// One profile of [`BakeDoc`]: its bundle, or its error.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct BakedBundle {
    pub profile: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `OUT/NAME.cpio.zst`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    /// `OUT/NAME.cpio.zst.sha256`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Archive entries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<usize>,
    /// The driver is the demo stand-in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub demo: Option<bool>,
    /// The manifest is signed (`--sign-key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed: Option<bool>,
    /// The signing key's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl BakedBundle {
    /// A bundle written.
    pub fn baked(profile: &Path, b: &vgpu_bake::bake::Baked, key_id: Option<String>) -> Self {
        Self {
            profile: path_text(profile),
            ok: true,
            name: Some(b.plan.name.clone()),
            bundle: Some(path_text(&b.output.bundle)),
            sha256_file: Some(path_text(&b.output.sha256_file)),
            size: Some(b.output.size),
            sha256: Some(b.output.sha256.clone()),
            entries: Some(b.output.entries),
            demo: Some(b.plan.demo),
            signed: Some(key_id.is_some()),
            key_id,
            error: None,
        }
    }

    /// A profile that failed.
    pub fn failed(profile: &Path, error: String) -> Self {
        Self {
            profile: path_text(profile),
            error: Some(error),
            ..Self::default()
        }
    }
}

/// `install --json`.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct InstallDoc<'a> {
    pub schema: u32,
    pub ok: bool,
    pub bundle: String,
    pub root: String,
    /// Entries laid (directories that already existed included).
    pub entries: usize,
    /// Bytes written: file bodies and symlink targets.
    pub bytes: u64,
    /// The manifest's signature as in `inspect --json`; `null` unsigned.
    pub signature: Option<SignatureJson<'a>>,
    /// Every entry laid, in archive order.
    pub laid: Vec<LaidEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

document!(InstallDoc<'_>);

/// One entry of [`InstallDoc`].
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LaidEntry {
    /// Relative to the root.
    pub path: String,
    /// `file`, `dir` or `symlink`.
    pub kind: &'static str,
    /// Permission bits, 4 octal digits.
    pub mode: String,
    pub size: u64,
}

impl<'a> InstallDoc<'a> {
    /// What was laid.
    pub fn laid(&mut self, written: &[Installed], signature: Option<&'a SignatureInfo>) {
        self.entries = written.len();
        self.bytes = written.iter().map(|w| w.size).sum();
        self.signature = signature.map(SignatureJson::from);
        self.laid = written
            .iter()
            .map(|w| LaidEntry {
                path: w.path.clone(),
                kind: w.kind,
                mode: vgpu_plan::manifest::mode_string(w.mode),
                size: w.size,
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot install into /x: {source}; give an existing directory as --root")]
    struct Quoting {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_quoted_is_not_repeated() {
        let e = anyhow::Error::from(Quoting {
            source: std::io::Error::other("No such file"),
        });
        assert_eq!(
            error_text(&e),
            "cannot install into /x: No such file; give an existing directory as --root"
        );
        let e = anyhow::Error::from(std::io::Error::other("gone")).context("reading /y");
        assert_eq!(error_text(&e), "reading /y: gone");
    }
}

//! `vgpu-bake inspect`: verify a bundle in one streaming pass, refusing a
//! hostile one at the first header that gives it away.
//!
//! `open` refuses a path that is not a regular file and checks the
//! `NAME.cpio.zst.sha256` beside it; `check` checks every header as it is
//! read (name, type, owner, mode, layout, size caps, and the manifest once
//! read: it sits after `etc/` and `usr/`), then every body against the
//! manifest; after the trailer only block padding may follow. Nothing is
//! decompressed past the first entry that fails.

use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};
use vgpu_plan::layout;
use vgpu_plan::manifest::Manifest;

use crate::hash::hex;

mod check;
mod error;
mod open;
mod render;
pub(crate) use check::{Checker, keeps_text};
pub use check::{MAX_AGENT, MAX_RATIO, MAX_SMALL, MAX_TEXT, MIN_BUDGET};
pub use error::{InspectError, Problem, REMEDY};
pub(crate) use open::Opened;
pub use open::ReadWatch;
pub use open::{Checksum, checksum_path};
pub use render::{EntryJson, InspectJson, JSON_SCHEMA, SignatureJson, render_report};

/// Kind of an archive entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink {
        /// Its target, verbatim.
        target: String,
    },
}

impl EntryKind {
    /// `file`, `dir` or `symlink`.
    pub fn name(&self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink { .. } => "symlink",
        }
    }
}

/// One entry of a verified bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// Path relative to the target root.
    pub path: String,
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits.
    pub mode: u32,
    /// Body size (a symlink's is its target's length).
    pub size: u64,
    /// sha256 of a regular file's content.
    pub sha256: Option<String>,
    /// Whether the entry was checked against the manifest (every entry
    /// except the manifest and its signature).
    pub verified: bool,
}

/// A bundle that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectReport {
    /// Entries in archive order.
    pub entries: Vec<EntryInfo>,
    /// The bundle's manifest.
    pub manifest: Manifest,
    /// The plan, if the bundle has one at the layout's path.
    pub plan_toml: Option<String>,
    /// The manifest's signature: `None` unsigned; checked when trusted keys
    /// were given (`verified_by`).
    pub signature: Option<crate::sign::SignatureInfo>,
    /// sha256 of the compressed bundle file.
    pub bundle_sha256: String,
    /// Whether the `.sha256` beside the bundle was there and matched.
    pub checksum: Checksum,
}

/// A read error of `entry`'s body.
pub(crate) fn read_error(bundle: &Path, entry: &str, source: io::Error) -> InspectError {
    InspectError::Read {
        bundle: bundle.to_path_buf(),
        entry: Some(entry.into()),
        source,
    }
}

/// Reads a symlink target from its body (its size was checked on the
/// header).
pub(crate) fn read_target(body: &mut impl Read) -> io::Result<Result<String, Problem>> {
    let mut buf = Vec::new();
    body.read_to_end(&mut buf)?;
    Ok(match String::from_utf8(buf) {
        Ok(t) if !t.contains('\0') => Ok(t),
        _ => Err(Problem::Malformed(
            "a symlink target must be UTF-8 without NUL",
        )),
    })
}

/// Why copying a body failed: reading the bundle, or the sink.
pub(crate) enum CopyError<E> {
    /// Reading (decompressing) the bundle.
    Read(io::Error),
    /// The sink.
    Sink(E),
}

/// Streams a body through `sink` chunk by chunk and returns its sha256,
/// and its bytes when `keep` (the header capped its size).
pub(crate) fn copy_body<E>(
    body: &mut impl Read,
    keep: bool,
    mut sink: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(String, Option<Vec<u8>>), CopyError<E>> {
    let mut hasher = Sha256::new();
    let mut text = keep.then(Vec::new);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        hasher.update(&buf[..n]);
        if let Some(t) = &mut text {
            t.extend_from_slice(&buf[..n]);
        }
        sink(&buf[..n]).map_err(CopyError::Sink)?;
    }
    Ok((hex(&hasher.finalize()), text))
}

/// Streams the bundle once, every check as the entry is read (see the
/// module doc); returns the verified entries.
pub fn inspect(bundle: &Path) -> Result<InspectReport, InspectError> {
    inspect_trusted(bundle, &[])
}

/// [`inspect`], with the manifest's signature checked against `keys` as
/// soon as the signature entry (right after the manifest) is read: with
/// keys, an unsigned or wrongly signed bundle is refused before any payload
/// is decompressed.
pub fn inspect_trusted(
    bundle: &Path,
    keys: &[crate::sign::TrustedKey],
) -> Result<InspectReport, InspectError> {
    let mut opened = Opened::open(bundle)?;
    let bundle = opened.bundle.clone();
    let mut checker = Checker::new(bundle.clone(), opened.len, keys);
    let mut entries = Vec::new();
    let mut plan_toml = None;
    while let Some(mut entry) = opened.next_entry()? {
        let h = entry.header.clone();
        let mut kind = checker.header(&h)?;
        let path = h.name;
        let mut sha256 = None;
        let mut text = None;
        match &mut kind {
            EntryKind::Dir => {}
            EntryKind::Symlink { target } => {
                *target = read_target(&mut entry)
                    .map_err(|e| read_error(&bundle, &path, e))?
                    .map_err(|problem| InspectError::Entry {
                        bundle: bundle.clone(),
                        entry: path.clone(),
                        problem,
                    })?;
            }
            EntryKind::File => {
                let copied = copy_body(&mut entry, keeps_text(&path), |_| {
                    Ok::<(), std::convert::Infallible>(())
                });
                let (sha, t) = match copied {
                    Ok(done) => done,
                    Err(CopyError::Read(e)) => return Err(read_error(&bundle, &path, e)),
                    Err(CopyError::Sink(never)) => match never {},
                };
                sha256 = Some(sha);
                text = t;
            }
        }
        drop(entry);
        let info = EntryInfo {
            verified: path != layout::MANIFEST_FILE && path != layout::SIGNATURE_FILE,
            path,
            kind,
            mode: h.mode & 0o7777,
            size: u64::from(h.filesize),
            sha256,
        };
        checker.body(&info, text.as_deref())?;
        if info.path == layout::PLAN_FILE {
            plan_toml = Some(String::from_utf8(text.unwrap_or_default()).map_err(|_| {
                InspectError::Entry {
                    bundle: bundle.clone(),
                    entry: info.path.clone(),
                    problem: Problem::BadText("the plan is not UTF-8".into()),
                }
            })?);
        }
        entries.push(info);
    }
    let (manifest, signature) = checker.end()?;
    let checksum = opened.checksum.clone();
    let bundle_sha256 = opened.finish()?;
    Ok(InspectReport {
        entries,
        manifest,
        plan_toml,
        signature,
        bundle_sha256,
        checksum,
    })
}

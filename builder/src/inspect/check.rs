//! The checks every entry passes as the stream is read, shared by
//! `inspect` and `install`'s second pass: at its HEADER (name, type, owner,
//! link count, mode, layout, size cap, order, and once the manifest is
//! read: listed with the same type, mode and size), so a hostile entry is
//! refused before its body is decompressed; then its body (sha256 or
//! target) against the manifest.
//!
//! Before the manifest only entries that sort before it can appear: the
//! layout's directories, the agent binary, its unit and wants link, and the
//! compatibility table, each capped in size. They are compared with the
//! manifest as soon as it is read ([`Checker::body`] of the manifest, the
//! one place its text is parsed).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use vgpu_plan::layout;
use vgpu_plan::manifest::{EntryType, Manifest, ManifestEntry, check_mode, mode_string};

use super::{EntryInfo, EntryKind, InspectError, Problem};
use crate::newc::{self, Header};
use crate::sign::{self, SignatureInfo, TrustedKey};

/// Largest agent binary (the release build is about 1 MiB).
pub const MAX_AGENT: u64 = 16 << 20;
/// Largest unit file, signature.
pub const MAX_SMALL: u64 = 64 << 10;
/// Largest manifest, plan or compatibility table.
pub const MAX_TEXT: u64 = 4 << 20;
/// The manifest may declare at most this many times the compressed
/// bundle's size in files (driver installers and packages are compressed
/// already: a real bundle is close to 1:1)...
pub const MAX_RATIO: u64 = 64;
/// ... or this many bytes, whichever is more.
pub const MIN_BUDGET: u64 = 256 << 20;

/// Size cap of a fixed-layout file, by path.
fn cap(path: &str) -> Option<u64> {
    match path {
        layout::AGENT_BIN => Some(MAX_AGENT),
        layout::UNIT_FILE | layout::SIGNATURE_FILE => Some(MAX_SMALL),
        layout::COMPAT_FILE | layout::MANIFEST_FILE | layout::PLAN_FILE => Some(MAX_TEXT),
        _ => None,
    }
}

/// Whether a file's text is kept (the manifest and the plan).
pub(crate) fn keeps_text(path: &str) -> bool {
    path == layout::MANIFEST_FILE || path == layout::SIGNATURE_FILE || path == layout::PLAN_FILE
}

/// Kind of a header's file type, or the problem with it.
pub(crate) fn kind_of(header: &Header) -> Result<EntryKind, Problem> {
    match header.file_type() {
        newc::S_IFREG => Ok(EntryKind::File),
        newc::S_IFDIR if header.filesize == 0 => Ok(EntryKind::Dir),
        newc::S_IFDIR => Err(Problem::Malformed("a directory with a body")),
        newc::S_IFLNK => Ok(EntryKind::Symlink {
            target: String::new(),
        }),
        _ => Err(Problem::Unsupported(header.mode)),
    }
}

fn entry_type(kind: &EntryKind) -> EntryType {
    match kind {
        EntryKind::File => EntryType::File,
        EntryKind::Dir => EntryType::Dir,
        EntryKind::Symlink { .. } => EntryType::Symlink,
    }
}

/// Paths seen so far and what they are (names were checked by the reader,
/// `manifest::check_name`): detects duplicates, and children
/// whose parent is not a directory written before them (which also catches
/// a file written "through" a symlink of the same archive).
#[derive(Debug, Default)]
pub(crate) struct Seen(BTreeMap<String, &'static str>);

impl Seen {
    pub(crate) fn check(&mut self, path: &str, kind: &EntryKind) -> Result<(), Problem> {
        if self.0.contains_key(path) {
            return Err(Problem::Duplicate);
        }
        if let Some(parent) = newc::parent(path) {
            let what = match self.0.get(parent) {
                Some(&"dir") => None,
                Some(&"file") => Some("a file"),
                Some(_) => Some("a symlink"),
                None => Some("missing"),
            };
            if let Some(what) = what {
                return Err(Problem::ParentNotDir {
                    parent: parent.into(),
                    what,
                });
            }
        }
        self.0.insert(path.to_owned(), kind.name());
        Ok(())
    }
}

/// Type, mode and (file) size of an entry against its manifest line.
fn compare_header(
    listed: &ManifestEntry,
    kind: &EntryKind,
    mode: u32,
    size: u64,
) -> Option<Problem> {
    let actual = entry_type(kind);
    if listed.kind != actual {
        return Some(Problem::Type {
            expected: listed.kind.name(),
            actual: actual.name(),
        });
    }
    if listed.mode != mode_string(mode) {
        return Some(Problem::Mode {
            expected: listed.mode.clone(),
            actual: mode_string(mode),
        });
    }
    match listed.size {
        Some(expected) if actual == EntryType::File && expected != size => Some(Problem::Size {
            expected,
            actual: size,
        }),
        _ => None,
    }
}

/// sha256 (file) or target (symlink) against the manifest line.
fn compare_body(listed: &ManifestEntry, info: &EntryInfo) -> Option<Problem> {
    match &info.kind {
        EntryKind::File => {
            let expected = listed
                .sha256
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default();
            let actual = info.sha256.clone().unwrap_or_default();
            (expected != actual).then_some(Problem::Sha256 { expected, actual })
        }
        EntryKind::Symlink { target } => {
            (listed.target.as_deref() != Some(target.as_str())).then(|| Problem::Target {
                expected: listed.target.clone().unwrap_or_default(),
                actual: target.clone(),
            })
        }
        EntryKind::Dir => None,
    }
}

/// The state of one pass over a bundle's entries.
pub(crate) struct Checker {
    bundle: PathBuf,
    /// Size of the compressed bundle.
    compressed: u64,
    seen: Seen,
    previous: Option<String>,
    /// Entries read before the manifest, compared once it is read.
    before: Vec<EntryInfo>,
    manifest: Option<Manifest>,
    /// Listed entries not yet in the archive.
    pending: BTreeSet<String>,
    /// Keys the signature must verify with (none: reported, not required).
    keys: Vec<TrustedKey>,
    /// The manifest's bytes, for the signature check.
    manifest_bytes: Vec<u8>,
    /// `None` until the signature was checked (on its entry, or at the
    /// first entry after where it would be: unsigned).
    signature: Option<Option<SignatureInfo>>,
}

impl Checker {
    pub(crate) fn new(bundle: PathBuf, compressed: u64, keys: &[TrustedKey]) -> Self {
        Self {
            bundle,
            compressed,
            seen: Seen::default(),
            previous: None,
            before: Vec::new(),
            manifest: None,
            pending: BTreeSet::new(),
            keys: keys.to_vec(),
            manifest_bytes: Vec::new(),
            signature: None,
        }
    }

    /// Checks the signature (`text`: its entry's body, `None`: the bundle
    /// has none) against the manifest's bytes and the keys, once.
    fn check_signature(&mut self, text: Option<&[u8]>) -> Result<(), InspectError> {
        if self.signature.is_some() {
            return Ok(());
        }
        let name = self
            .manifest
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let text = match text.map(std::str::from_utf8) {
            None => None,
            Some(Ok(t)) => Some(t),
            Some(Err(_)) => {
                return Err(self.error(
                    layout::SIGNATURE_FILE,
                    Problem::BadText("the signature is not UTF-8".into()),
                ));
            }
        };
        let info = sign::check_bundle(&self.bundle, &self.manifest_bytes, text, &name, &self.keys)
            .map_err(Box::new)?;
        self.signature = Some(info);
        Ok(())
    }

    fn error(&self, entry: &str, problem: Problem) -> InspectError {
        InspectError::Entry {
            bundle: self.bundle.clone(),
            entry: entry.into(),
            problem,
        }
    }

    /// Every check on a header, before its body is read.
    pub(crate) fn header(&mut self, h: &Header) -> Result<EntryKind, InspectError> {
        // Past the signature's place without it: an unsigned bundle, refused
        // here (before any payload) when keys are required.
        if self.manifest.is_some() && h.name.as_str() > layout::SIGNATURE_FILE {
            self.check_signature(None)?;
        }
        // A listed entry that sorts before this one never came.
        if let Some(missing) = self
            .pending
            .first()
            .filter(|p| p.as_str() < h.name.as_str())
        {
            return Err(self.error(missing, Problem::Missing("no such entry")));
        }
        self.header_problem(h).map_err(|p| self.error(&h.name, p))
    }

    fn header_problem(&mut self, h: &Header) -> Result<EntryKind, Problem> {
        let path = h.name.as_str();
        let kind = kind_of(h)?;
        self.seen.check(path, &kind)?;
        if let Some(previous) = self.previous.replace(path.to_owned())
            && previous.as_bytes() > path.as_bytes()
        {
            return Err(Problem::Order { previous });
        }
        if h.uid != 0 || h.gid != 0 {
            return Err(Problem::Owner {
                uid: h.uid,
                gid: h.gid,
            });
        }
        let nlink_ok = match kind {
            EntryKind::Dir => (1..=2).contains(&h.nlink),
            _ => h.nlink == 1,
        };
        if !nlink_ok {
            return Err(Problem::Hardlink(h.nlink));
        }
        let mode = h.mode & 0o7777;
        let bad_mode = |reason| Problem::BadMode {
            mode: mode_string(mode),
            reason,
        };
        match kind {
            EntryKind::Symlink { .. } if mode != 0o777 => {
                return Err(bad_mode("a symlink's mode is 0777"));
            }
            EntryKind::Symlink { .. } => {}
            _ => check_mode(mode).map_err(bad_mode)?,
        }
        let size = u64::from(h.filesize);
        let unlisted = path == layout::MANIFEST_FILE || path == layout::SIGNATURE_FILE;
        if unlisted {
            if kind != EntryKind::File {
                return Err(Problem::Layout("the manifest and its signature are files"));
            }
        } else {
            layout::check_entry(path, entry_type(&kind), None).map_err(Problem::Layout)?;
        }
        if let EntryKind::Symlink { .. } = kind
            && (size == 0 || size >= u64::from(newc::MAX_NAME))
        {
            return Err(Problem::Malformed(
                "a symlink target must be 1 to 4095 bytes",
            ));
        }
        if let Some(cap) = cap(path)
            && size > cap
        {
            return Err(Problem::TooLarge { size, cap });
        }
        match &self.manifest {
            None if path > layout::MANIFEST_FILE => Err(Problem::BeforeManifest),
            None => Ok(kind),
            Some(_) if unlisted => Ok(kind),
            Some(m) => {
                let listed = m.get(path).ok_or(Problem::NotInManifest)?;
                if let Some(p) = compare_header(listed, &kind, mode, size) {
                    return Err(p);
                }
                self.pending.remove(path);
                Ok(kind)
            }
        }
    }

    /// Checks a read body: a symlink's target against the layout, and the
    /// entry against the manifest (or keeps it until the manifest comes).
    /// `text` is the manifest's bytes for the manifest entry.
    pub(crate) fn body(
        &mut self,
        info: &EntryInfo,
        text: Option<&[u8]>,
    ) -> Result<(), InspectError> {
        let path = info.path.as_str();
        if let EntryKind::Symlink { target } = &info.kind {
            layout::check_entry(path, EntryType::Symlink, Some(target))
                .map_err(|r| self.error(path, Problem::Layout(r)))?;
        }
        if path == layout::SIGNATURE_FILE {
            if self.manifest.is_none() {
                return Err(self.error(path, Problem::BeforeManifest));
            }
            return self.check_signature(Some(text.unwrap_or_default()));
        }
        if path == layout::MANIFEST_FILE {
            self.manifest_bytes = text.unwrap_or_default().to_vec();
            return self.read_manifest(text.unwrap_or_default());
        }
        match &self.manifest {
            None => self.before.push(info.clone()),
            Some(m) => {
                let listed = m
                    .get(path)
                    .ok_or_else(|| self.error(path, Problem::NotInManifest))?;
                if let Some(p) = compare_body(listed, info) {
                    return Err(self.error(path, p));
                }
            }
        }
        Ok(())
    }

    /// The one place the manifest's text is parsed and trusted: validated,
    /// its declared size bounded by the bundle's, and the entries read
    /// before it compared with it.
    fn read_manifest(&mut self, bytes: &[u8]) -> Result<(), InspectError> {
        let at = layout::MANIFEST_FILE;
        let text = std::str::from_utf8(bytes)
            .map_err(|_| self.error(at, Problem::BadText("the manifest is not UTF-8".into())))?;
        let manifest = Manifest::from_toml(text)
            .map_err(|e| self.error(at, Problem::BadText(e.to_string())))?;
        let declared: u64 = manifest.files().filter_map(|e| e.size).sum();
        let budget = MIN_BUDGET.max(self.compressed.saturating_mul(MAX_RATIO));
        if declared > budget {
            return Err(self.error(
                at,
                Problem::Bomb {
                    declared,
                    compressed: self.compressed,
                    ratio: MAX_RATIO,
                },
            ));
        }
        let mut pending: BTreeSet<String> =
            manifest.entries.iter().map(|e| e.path.clone()).collect();
        for info in &self.before {
            let Some(listed) = manifest.get(&info.path) else {
                return Err(self.error(&info.path, Problem::NotInManifest));
            };
            if let Some(p) = compare_header(listed, &info.kind, info.mode, info.size)
                .or_else(|| compare_body(listed, info))
            {
                return Err(self.error(&info.path, p));
            }
            pending.remove(&info.path);
        }
        if let Some(missing) = pending.first().filter(|p| p.as_str() < at) {
            return Err(self.error(missing, Problem::Missing("no such entry")));
        }
        self.pending = pending;
        self.manifest = Some(manifest);
        Ok(())
    }

    /// The manifest, once its entry was read and checked.
    pub(crate) fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// At the trailer: the manifest was read, every listed entry came, and
    /// the signature (if the bundle ends right after the manifest) checked.
    pub(crate) fn end(mut self) -> Result<(Manifest, Option<SignatureInfo>), InspectError> {
        if self.manifest.is_none() {
            return Err(self.error(layout::MANIFEST_FILE, Problem::Missing("no such file")));
        }
        if let Some(missing) = self.pending.iter().next() {
            return Err(self.error(missing, Problem::Missing("no such entry")));
        }
        self.check_signature(None)?;
        let signature = self.signature.take().flatten();
        Ok((self.manifest.take().expect("checked above"), signature))
    }
}

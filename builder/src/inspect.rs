//! `vgpu-bake inspect`: verify a bundle in one streaming pass.
//!
//! Decompresses, parses the newc archive, hashes every file and checks it
//! against `manifest.toml`. The manifest sits in the middle of the archive
//! (after `etc/` and `usr/`), so per-file digests are kept (never contents)
//! and compared once the stream has ended.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use vgpu_plan::layout;
use vgpu_plan::manifest::{EntryType, Manifest, mode_string};

use crate::hash::hex;
use crate::newc::{self, NewcEntry, NewcError, NewcReader};

mod render;
pub use render::{EntryJson, InspectJson, JSON_SCHEMA, render_report};

/// What to do about a bad bundle; ends every bundle error message.
pub const REMEDY: &str = "the bundle is damaged or was altered: copy it again, or re-bake it";
/// Largest manifest or plan read into memory.
const MAX_TEXT: u64 = 16 << 20;

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
}

/// What is wrong with one entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Absolute, `..`, `.` or empty component.
    #[error("unsafe path: {0}")]
    UnsafePath(&'static str),
    /// The path appears twice.
    #[error("the path appears more than once in the archive")]
    Duplicate,
    /// Its parent is not a directory entry written before it.
    #[error("its parent {parent} is {what}, not a directory earlier in the archive")]
    ParentNotDir {
        /// The parent path.
        parent: String,
        /// `missing`, `a file` or `a symlink`.
        what: &'static str,
    },
    /// Not a file, directory or symlink.
    #[error("unsupported entry type (mode {0:o})")]
    Unsupported(u32),
    /// A directory with a body, or a symlink with a bad target.
    #[error("malformed entry: {0}")]
    Malformed(&'static str),
    /// An entry the manifest does not list.
    #[error("the entry is not listed in the manifest")]
    NotInManifest,
    /// The archive has another type of entry than the manifest lists.
    #[error("it is a {actual} in the archive, the manifest lists a {expected}")]
    Type {
        /// From the manifest.
        expected: &'static str,
        /// Found.
        actual: &'static str,
    },
    /// A symlink's target differs from the manifest.
    #[error("the symlink points to {actual:?}, the manifest says {expected:?}")]
    Target {
        /// From the manifest.
        expected: String,
        /// Found.
        actual: String,
    },
    /// Listed in the manifest but absent (or not a regular file).
    #[error("the manifest lists this file, but the archive has {0}")]
    Missing(&'static str),
    /// Content differs from the manifest.
    #[error("sha256 is {actual}, the manifest says {expected}")]
    Sha256 {
        /// From the manifest.
        expected: String,
        /// Computed.
        actual: String,
    },
    /// Size differs from the manifest.
    #[error("size is {actual}, the manifest says {expected}")]
    Size {
        /// From the manifest.
        expected: u64,
        /// Found.
        actual: u64,
    },
    /// Mode differs from the manifest.
    #[error("mode is {actual}, the manifest says {expected}")]
    Mode {
        /// From the manifest.
        expected: String,
        /// Found.
        actual: String,
    },
    /// The manifest or plan cannot be read.
    #[error("{0}")]
    BadText(String),
}

/// Error inspecting a bundle; names the bundle and entry and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The signature is missing or does not verify with a trusted key.
    #[error(transparent)]
    Signature(#[from] Box<crate::sign::SignError>),
    /// The bundle file cannot be opened.
    #[error("cannot open bundle {}: {source}", bundle.display())]
    Open {
        /// The bundle.
        bundle: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading or decompressing failed (truncated or corrupt zstd).
    #[error("bundle {}: reading {} failed, the zstd stream is truncated or corrupt ({source}); {REMEDY}", bundle.display(), entry.as_deref().unwrap_or("the archive"))]
    Read {
        /// The bundle.
        bundle: PathBuf,
        /// The entry being read, if any.
        entry: Option<String>,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The decompressed data is not a valid newc archive.
    #[error("bundle {}: not a valid newc cpio archive: {source}; {REMEDY}", bundle.display())]
    Archive {
        /// The bundle.
        bundle: PathBuf,
        /// The cause.
        #[source]
        source: NewcError,
    },
    /// One entry fails a check.
    #[error("bundle {}: entry {entry}: {problem}; {REMEDY}", bundle.display())]
    Entry {
        /// The bundle.
        bundle: PathBuf,
        /// The entry's path.
        entry: String,
        /// What is wrong.
        problem: Problem,
    },
}

/// Why an archive path is unsafe to lay onto a root, if it is.
pub(crate) fn unsafe_path(path: &str) -> Option<&'static str> {
    if path.starts_with('/') {
        Some("it is absolute")
    } else if path.split('/').any(|c| c == "..") {
        Some("it has a `..` component")
    } else if path.is_empty() || path.split('/').any(|c| c.is_empty() || c == ".") {
        Some("it has an empty or `.` component")
    } else {
        None
    }
}

/// Reader over the compressed file that hashes what zstd consumes.
pub(crate) struct HashingReader<R> {
    inner: R,
    sha256: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha256.update(&buf[..n]);
        Ok(n)
    }
}

/// The decompressed archive stream of a bundle.
pub(crate) type BundleStream = zstd::Decoder<'static, BufReader<HashingReader<File>>>;

/// A bundle opened for streaming, with the helpers both passes need.
pub(crate) struct Opened {
    pub(crate) bundle: PathBuf,
    pub(crate) reader: NewcReader<BundleStream>,
}

impl Opened {
    pub(crate) fn open(bundle: &Path) -> Result<Self, InspectError> {
        let file = File::open(bundle).map_err(|source| InspectError::Open {
            bundle: bundle.to_path_buf(),
            source,
        })?;
        let hashing = HashingReader {
            inner: file,
            sha256: Sha256::new(),
        };
        let decoder = zstd::Decoder::new(hashing).map_err(|source| InspectError::Read {
            bundle: bundle.to_path_buf(),
            entry: None,
            source,
        })?;
        Ok(Self {
            bundle: bundle.to_path_buf(),
            reader: NewcReader::new(decoder),
        })
    }

    pub(crate) fn next_entry(
        &mut self,
    ) -> Result<Option<NewcEntry<'_, BundleStream>>, InspectError> {
        let bundle = &self.bundle;
        self.reader.next_entry().map_err(|e| match e {
            NewcError::Io(source) => InspectError::Read {
                bundle: bundle.clone(),
                entry: None,
                source,
            },
            source => InspectError::Archive {
                bundle: bundle.clone(),
                source,
            },
        })
    }

    pub(crate) fn entry_error(&self, entry: &str, problem: Problem) -> InspectError {
        entry_error(&self.bundle, entry, problem)
    }

    pub(crate) fn read_error(&self, entry: &str, source: io::Error) -> InspectError {
        InspectError::Read {
            bundle: self.bundle.clone(),
            entry: Some(entry.into()),
            source,
        }
    }

    /// After the trailer: the rest of the stream may only be NUL padding,
    /// and must decompress to its end (which checks the zstd checksum).
    /// Returns the sha256 of the whole compressed file.
    pub(crate) fn finish(self) -> Result<String, InspectError> {
        let bundle = self.bundle;
        let err = |source| InspectError::Read {
            bundle: bundle.clone(),
            entry: None,
            source,
        };
        let mut decoder = self.reader.into_inner();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match decoder.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(err(e)),
            };
            if buf[..n].iter().any(|&b| b != 0) {
                return Err(InspectError::Archive {
                    bundle,
                    source: NewcError::BadHeader {
                        offset: 0,
                        reason: "data after the TRAILER!!! entry".into(),
                    },
                });
            }
        }
        let mut rest = decoder.finish();
        io::copy(&mut rest, &mut io::sink()).map_err(err)?;
        Ok(hex(&rest.into_inner().sha256.finalize()))
    }
}

/// Kind of a header's file type, or the problem with it.
pub(crate) fn kind_of(header: &newc::Header) -> Result<EntryKind, Problem> {
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

/// Paths seen so far and what they are: detects duplicates, and children
/// whose parent is not a directory written before them (which also catches
/// a file written "through" a symlink of the same archive).
#[derive(Debug, Default)]
pub(crate) struct Seen(BTreeMap<String, &'static str>);

impl Seen {
    pub(crate) fn check(&mut self, path: &str, kind: &EntryKind) -> Result<(), Problem> {
        if let Some(reason) = unsafe_path(path) {
            return Err(Problem::UnsafePath(reason));
        }
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

/// Reads a symlink target from its body.
pub(crate) fn read_target(
    body: &mut impl Read,
    size: u32,
) -> Result<Result<String, Problem>, io::Error> {
    if size == 0 || size >= newc::MAX_NAME {
        return Ok(Err(Problem::Malformed(
            "a symlink target must be 1 to 4095 bytes",
        )));
    }
    let mut buf = Vec::with_capacity(size as usize);
    body.read_to_end(&mut buf)?;
    Ok(match String::from_utf8(buf) {
        Ok(t) if !t.contains('\0') => Ok(t),
        _ => Err(Problem::Malformed(
            "a symlink target must be UTF-8 without NUL",
        )),
    })
}

/// sha256 of a body, and the body itself when `keep` is set and it is at
/// most [`MAX_TEXT`] bytes.
fn hash_body(body: &mut impl Read, keep: bool) -> io::Result<(String, Option<Vec<u8>>)> {
    let mut hasher = Sha256::new();
    let mut text = keep.then(Vec::new);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = body.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        if let Some(t) = &mut text {
            if (t.len() + n) as u64 > MAX_TEXT {
                text = None;
            } else {
                t.extend_from_slice(&buf[..n]);
            }
        }
    }
    Ok((hex(&hasher.finalize()), text))
}

/// Streams the bundle once: decompress, parse newc, hash every file, check
/// each against the manifest (sha256, size, mode); every manifest file must
/// be present, with no extra regular file, duplicate or unsafe path.
pub fn inspect(bundle: &Path) -> Result<InspectReport, InspectError> {
    inspect_trusted(bundle, &[])
}

/// [`inspect`], and the manifest's signature checked with
/// [`crate::sign::check_bundle`]: with `keys`, an unsigned or wrongly
/// signed bundle is refused.
pub fn inspect_trusted(
    bundle: &Path,
    keys: &[crate::sign::TrustedKey],
) -> Result<InspectReport, InspectError> {
    let mut signature_text = None;
    let mut opened = Opened::open(bundle)?;
    let mut seen = Seen::default();
    let mut entries = Vec::new();
    let mut manifest_text = None;
    let mut plan_toml = None;
    while let Some(mut entry) = opened.next_entry()? {
        let h = entry.header.clone();
        let path = h.name.clone();
        let checked = kind_of(&h).and_then(|kind| seen.check(&path, &kind).map(|()| kind));
        let mut kind = match checked {
            Ok(kind) => kind,
            Err(problem) => {
                drop(entry);
                return Err(opened.entry_error(&path, problem));
            }
        };
        let mut sha256 = None;
        let checked: io::Result<Result<(), Problem>> = match &mut kind {
            EntryKind::Dir => Ok(Ok(())),
            EntryKind::Symlink { target } => {
                read_target(&mut entry, h.filesize).map(|t| t.map(|t| *target = t))
            }
            EntryKind::File => {
                let is_manifest = path == layout::MANIFEST_FILE;
                let is_signature = path == layout::SIGNATURE_FILE;
                let wanted = is_manifest || is_signature || path == layout::PLAN_FILE;
                hash_body(&mut entry, wanted).map(|(sha, text)| {
                    sha256 = Some(sha);
                    match text.map(String::from_utf8) {
                        _ if !wanted => Ok(()),
                        Some(Ok(t)) => {
                            let slot = if is_manifest {
                                &mut manifest_text
                            } else if is_signature {
                                &mut signature_text
                            } else {
                                &mut plan_toml
                            };
                            *slot = Some(t);
                            Ok(())
                        }
                        _ => Err(Problem::BadText("larger than 16 MiB or not UTF-8".into())),
                    }
                })
            }
        };
        drop(entry);
        match checked {
            Err(e) => return Err(opened.read_error(&path, e)),
            Ok(Err(problem)) => return Err(opened.entry_error(&path, problem)),
            Ok(Ok(())) => {}
        }
        entries.push(EntryInfo {
            path,
            kind,
            mode: h.mode & 0o7777,
            size: u64::from(h.filesize),
            sha256,
            verified: false,
        });
    }
    // Finish the zstd stream first (its checksum), so damage in transit is
    // reported as such rather than as a manifest mismatch.
    let bundle = opened.bundle.clone();
    let bundle_sha256 = opened.finish()?;
    let manifest = match &manifest_text {
        None => {
            return Err(entry_error(
                &bundle,
                layout::MANIFEST_FILE,
                Problem::Missing("no such file"),
            ));
        }
        Some(text) => Manifest::from_toml(text).map_err(|e| {
            entry_error(
                &bundle,
                layout::MANIFEST_FILE,
                Problem::BadText(e.to_string()),
            )
        })?,
    };
    let signature = crate::sign::check_bundle(
        &bundle,
        manifest_text.as_deref().unwrap_or_default().as_bytes(),
        signature_text.as_deref(),
        &manifest.name,
        keys,
    )
    .map_err(Box::new)?;
    check_against_manifest(&bundle, &manifest, &mut entries)?;
    Ok(InspectReport {
        entries,
        manifest,
        plan_toml,
        signature,
        bundle_sha256,
    })
}

fn entry_error(bundle: &Path, entry: &str, problem: Problem) -> InspectError {
    InspectError::Entry {
        bundle: bundle.to_path_buf(),
        entry: entry.into(),
        problem,
    }
}

/// Every archive entry except the manifest and its signature must be listed
/// with the same type, mode, and (file) size and sha256 or (symlink) target;
/// every listed entry must be in the archive.
fn check_against_manifest(
    bundle: &Path,
    manifest: &Manifest,
    entries: &mut [EntryInfo],
) -> Result<(), InspectError> {
    for e in entries.iter_mut() {
        if e.path == layout::MANIFEST_FILE || e.path == layout::SIGNATURE_FILE {
            continue;
        }
        let Some(m) = manifest.get(&e.path) else {
            return Err(entry_error(bundle, &e.path, Problem::NotInManifest));
        };
        let problem = match (&e.kind, m.kind) {
            (EntryKind::File, EntryType::File) => {
                let expected = m.sha256.as_ref().map(|s| s.to_string()).unwrap_or_default();
                let actual = e.sha256.clone().unwrap_or_default();
                if expected != actual {
                    Some(Problem::Sha256 { expected, actual })
                } else if m.size != Some(e.size) {
                    Some(Problem::Size {
                        expected: m.size.unwrap_or_default(),
                        actual: e.size,
                    })
                } else {
                    None
                }
            }
            (EntryKind::Dir, EntryType::Dir) => None,
            (EntryKind::Symlink { target }, EntryType::Symlink) => {
                (m.target.as_deref() != Some(target.as_str())).then(|| Problem::Target {
                    expected: m.target.clone().unwrap_or_default(),
                    actual: target.clone(),
                })
            }
            (kind, listed) => Some(Problem::Type {
                expected: listed.name(),
                actual: kind.name(),
            }),
        };
        let problem = problem.or_else(|| {
            (m.mode != mode_string(e.mode)).then(|| Problem::Mode {
                expected: m.mode.clone(),
                actual: mode_string(e.mode),
            })
        });
        if let Some(p) = problem {
            return Err(entry_error(bundle, &e.path, p));
        }
        e.verified = true;
    }
    for m in &manifest.entries {
        if !entries.iter().any(|e| e.path == m.path) {
            return Err(entry_error(
                bundle,
                &m.path,
                Problem::Missing("no such entry"),
            ));
        }
    }
    Ok(())
}

//! [`BundleSpec`]: what a bundle will contain, as a sorted map of relative
//! paths, checked as entries are added (safe paths, no clashes between a
//! file and entries under it). No I/O here.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use sha2::Digest;
use vgpu_plan::digest::Sha256;
use vgpu_plan::layout;
use vgpu_plan::manifest::{Manifest, ManifestEntry, SCHEMA};

use super::BundleError;
use crate::fetch::ImportTarget;
use crate::hash::{hex, is_hex};
use crate::newc::MAX_NAME;
use crate::stamp::FileStamp;

/// Where a regular file's bytes come from.
#[derive(Clone, PartialEq, Eq)]
pub enum Source {
    /// Small content held in memory (plan, unit, agent binary).
    Bytes(Vec<u8>),
    /// A file on disk, streamed; its digests are declared up front (the
    /// manifest is written before it) and checked while it is streamed,
    /// unless `stamp` proves it unchanged since they were taken. A large
    /// file whose sha256 has an entry in the frame cache is not read: the
    /// entry holds that content's frames.
    File {
        /// The file to read.
        path: PathBuf,
        /// Expected lower-case hex sha256.
        sha256: String,
        /// Expected hex md5, computed and checked too when given (only
        /// when it matters: `fetch` checks a driver's md5 once).
        md5: Option<String>,
        /// Expected size in bytes.
        size: u64,
        /// The file's stamp when `sha256` was computed (the driver cache's
        /// sidecar): if the opened file still has it, it is not hashed again.
        stamp: Option<FileStamp>,
    },
}

impl fmt::Debug for Source {
    // Not derived: a `Bytes` source can be a megabyte-sized binary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            Source::File {
                path,
                sha256,
                md5,
                size,
                stamp,
            } => f
                .debug_struct("File")
                .field("path", path)
                .field("sha256", sha256)
                .field("md5", md5)
                .field("size", size)
                .field("stamp", stamp)
                .finish(),
        }
    }
}

impl Source {
    /// Size of the content.
    pub fn size(&self) -> u64 {
        match self {
            Source::Bytes(b) => b.len() as u64,
            Source::File { size, .. } => *size,
        }
    }

    /// sha256 of the content: computed for bytes, declared for files.
    pub fn sha256(&self) -> String {
        match self {
            Source::Bytes(b) => hex(&sha2::Sha256::digest(b)),
            Source::File { sha256, .. } => sha256.clone(),
        }
    }
}

/// One entry of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A directory with permission bits `mode`.
    Dir {
        /// Permission bits (masked to 0o7777).
        mode: u32,
    },
    /// A regular file.
    File {
        /// Permission bits (masked to 0o7777).
        mode: u32,
        /// The content.
        source: Source,
    },
    /// A symbolic link (stored with mode 0777, body = target).
    Symlink {
        /// Link target, stored verbatim.
        target: String,
    },
}

impl Entry {
    fn kind(&self) -> &'static str {
        match self {
            Entry::Dir { .. } => "directory",
            Entry::File { .. } => "file",
            Entry::Symlink { .. } => "symlink",
        }
    }
}

/// What a bundle will contain, as a sorted map of relative paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BundleSpec {
    /// Bundle name; the output is `<name>.cpio.zst`.
    pub name: String,
    entries: BTreeMap<String, Entry>,
    /// Files added with [`Self::add_secret_file`].
    secrets: std::collections::BTreeSet<String>,
    /// Files whose bytes the writer also copies into the driver cache
    /// ([`Self::import_into`]).
    imports: BTreeMap<String, ImportTarget>,
}

impl BundleSpec {
    /// An empty spec.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            entries: BTreeMap::new(),
            secrets: Default::default(),
            imports: BTreeMap::new(),
        }
    }

    /// The entries added so far, sorted by path (parents not synthesised).
    pub fn entries(&self) -> &BTreeMap<String, Entry> {
        &self.entries
    }

    /// Adds a regular file with permission bits `mode`. Declared digests are
    /// checked for form here and for content when the bundle is written.
    pub fn add_file(&mut self, path: &str, mode: u32, source: Source) -> Result<(), BundleError> {
        let source = match source {
            Source::Bytes(b) => Source::Bytes(b),
            Source::File {
                path: file,
                sha256,
                md5,
                size,
                stamp,
            } => Source::File {
                path: file,
                sha256: checked_digest(path, "sha256", &sha256, 64)?,
                md5: md5
                    .map(|m| checked_digest(path, "md5", &m, 32))
                    .transpose()?,
                size,
                stamp,
            },
        };
        if source.size() > u64::from(u32::MAX) {
            return Err(BundleError::TooLarge {
                path: path.into(),
                size: source.size(),
            });
        }
        self.insert(
            path,
            Entry::File {
                mode: mode & 0o7777,
                source,
            },
        )
    }

    /// Has the writer copy the file source at `path` into the driver cache
    /// as it reads it: committed only when every byte matched `target`'s
    /// digests and the archive was written ([`crate::fetch::CacheImport`]).
    /// The source must be that user's file and its stamp `None`, so that
    /// each byte is hashed.
    pub fn import_into(&mut self, path: &str, target: ImportTarget) -> Result<(), BundleError> {
        let ok = matches!(
            self.entries.get(path),
            Some(Entry::File { source: Source::File { path: file, sha256, stamp: None, .. }, .. })
                if *file == target.from && *sha256 == target.sha256
        );
        if !ok {
            return Err(BundleError::BadImport {
                path: path.to_owned(),
            });
        }
        self.imports.insert(path.to_owned(), target);
        Ok(())
    }

    /// The files to copy into the driver cache, by bundle path.
    pub fn imports(&self) -> &BTreeMap<String, ImportTarget> {
        &self.imports
    }

    /// Adds a secret regular file (the licensing client token): mode 0600,
    /// flagged `secret` in the manifest so `inspect` redacts it.
    pub fn add_secret_file(&mut self, path: &str, source: Source) -> Result<(), BundleError> {
        self.add_file(path, 0o600, source)?;
        self.secrets.insert(path.to_owned());
        Ok(())
    }

    /// Adds a directory with permission bits `mode` (overrides the 0755 a
    /// synthesised parent would get).
    pub fn add_dir(&mut self, path: &str, mode: u32) -> Result<(), BundleError> {
        self.insert(
            path,
            Entry::Dir {
                mode: mode & 0o7777,
            },
        )
    }

    /// Adds a symbolic link to `target` (stored verbatim, never followed).
    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<(), BundleError> {
        if target.is_empty() || target.contains('\0') || target.len() >= MAX_NAME as usize {
            return Err(BundleError::BadPath {
                path: target.into(),
                reason: "a symlink target must be 1 to 4095 bytes without NUL",
            });
        }
        self.insert(
            path,
            Entry::Symlink {
                target: target.into(),
            },
        )
    }

    /// The manifest: every entry except the manifest and its signature,
    /// synthesised parent directories (mode [`super::SYNTH_DIR_MODE`])
    /// included, in archive order.
    pub fn manifest(&self) -> Manifest {
        let mut all: BTreeMap<&str, ManifestEntry> = BTreeMap::new();
        for (path, e) in &self.entries {
            for a in ancestors(path) {
                all.entry(a)
                    .or_insert_with(|| ManifestEntry::dir(a, super::SYNTH_DIR_MODE));
            }
            if path == layout::SIGNATURE_FILE {
                continue;
            }
            let entry = match e {
                Entry::Dir { mode } => ManifestEntry::dir(path, *mode),
                Entry::Symlink { target } => ManifestEntry::symlink(path, target),
                Entry::File { mode, source } => {
                    let sha256 =
                        Sha256::parse(&source.sha256()).expect("declared digests are checked hex");
                    if self.secrets.contains(path) {
                        ManifestEntry::secret_file(path, source.size(), sha256)
                    } else {
                        ManifestEntry::file(path, *mode, source.size(), sha256)
                    }
                }
            };
            all.insert(path, entry);
        }
        Manifest {
            schema: SCHEMA,
            name: self.name.clone(),
            entries: all.into_values().collect(),
        }
    }

    fn insert(&mut self, path: &str, entry: Entry) -> Result<(), BundleError> {
        if path == layout::MANIFEST_FILE || path == layout::SIGNATURE_FILE {
            return Err(BundleError::Reserved { path: path.into() });
        }
        self.check_new(path, &entry)?;
        self.entries.insert(path.to_owned(), entry);
        Ok(())
    }

    /// Checks that `path` is safe and does not clash with the entries.
    pub(super) fn check_new(&self, path: &str, entry: &Entry) -> Result<(), BundleError> {
        check_path(path)?;
        if self.entries.contains_key(path) {
            return Err(BundleError::Duplicate { path: path.into() });
        }
        for ancestor in ancestors(path) {
            if let Some(e @ (Entry::File { .. } | Entry::Symlink { .. })) =
                self.entries.get(ancestor)
            {
                return Err(BundleError::UnderNonDir {
                    path: path.into(),
                    ancestor: ancestor.into(),
                    kind: e.kind(),
                });
            }
        }
        if !matches!(entry, Entry::Dir { .. }) {
            let prefix = format!("{path}/");
            if let Some((child, _)) = self.entries.range(prefix.clone()..).next()
                && child.starts_with(&prefix)
            {
                return Err(BundleError::HasChildren {
                    path: path.into(),
                    kind: entry.kind(),
                    child: child.clone(),
                });
            }
        }
        Ok(())
    }
}

fn checked_digest(
    path: &str,
    what: &'static str,
    value: &str,
    len: usize,
) -> Result<String, BundleError> {
    if !is_hex(value, len) {
        return Err(BundleError::BadDigest {
            path: path.into(),
            what,
            value: value.into(),
            len,
        });
    }
    Ok(value.to_ascii_lowercase())
}

/// Bundle paths: the rule every reader holds them to
/// ([`vgpu_plan::manifest::check_name`]: relative, no empty, `.` or `..`
/// component, no control character, shorter than `PATH_MAX`).
fn check_path(path: &str) -> Result<(), BundleError> {
    vgpu_plan::manifest::check_name(path).map_err(|reason| BundleError::BadPath {
        path: path.into(),
        reason,
    })
}

/// Proper ancestors of a path, outermost first: `a/b/c` gives `a`, `a/b`.
pub(super) fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

//! Driver files into a verified cache: reuse a cached file whose checksum
//! matches, otherwise download it (resume, bounded retries, no HTML pages,
//! checksum verified before it gets its final name) or import the user's
//! `--driver-file` (or, for a bake, have the bundle writer copy it as it
//! reads it: [`ImportTarget`], `tee.rs`). Each verified file gets a `<name>.digests.toml` sidecar
//! so later bakes learn its sha256 without re-reading it ([`cached_digests`]).
//! md5 is computed only when one is expected (it costs twice sha256's CPU).
//!
//! Cache layout, for a registry filename `NAME`:
//! `NAME` (verified), `NAME.digests.toml`, `NAME.part` (partial download,
//! locked while in use), `NAME.bak` (the last cached copy found corrupt).

mod download;
mod error;
mod progress;
mod sidecar;
mod tee;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::HumanBytes;

pub use self::error::FetchError;
use self::error::io_err;
pub use self::progress::ProgressMode;
use self::progress::Reporter;
pub use self::sidecar::{SidecarState, path_for as sidecar_path, state as sidecar_state};
pub use self::tee::{CacheImport, ImportTarget, StagedImport, import_target};
use crate::blocks::digests_of;
use crate::hash::{Digests, is_hex};
use crate::input::open_regular;
use crate::progress::Progress;
use crate::stamp::FileStamp;

/// One driver file to make available in the cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchRequest {
    /// Registry filename; the cache stores the file under this name.
    pub filename: String,
    /// Download URL from the registry, if any.
    pub url: Option<String>,
    /// Expected md5 (hex), usually from the registry.
    pub md5: Option<String>,
    /// Expected sha256 (hex), pinned by the profile or given with `--sha256`.
    pub sha256: Option<String>,
    /// A file the user downloaded (`--driver-file`): verified and imported.
    pub driver_file: Option<PathBuf>,
    /// No checksum is published for this file (guest drivers): without
    /// `md5`/`sha256` it is downloaded anyway (same resume, retries and HTML
    /// refusal) and the caller reports the sha256 it had, for the user to
    /// pin. A cached copy is then taken as it is.
    pub record_unpinned: bool,
}

/// How to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// The cache directory (created if missing).
    pub cache_dir: PathBuf,
    /// Extra attempts after a transient failure (the first try is not counted).
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// Connect and per-read timeout.
    pub timeout: Duration,
    /// Progress output on stderr.
    pub progress: ProgressMode,
}

impl FetchOptions {
    /// Defaults: 4 retries, 2 s backoff (doubling), 30 s timeout, auto progress.
    pub fn new(cache_dir: PathBuf) -> Self {
        Self {
            cache_dir,
            retries: 4,
            backoff: Duration::from_secs(2),
            timeout: Duration::from_secs(30),
            progress: ProgressMode::Auto,
        }
    }
}

/// How the file got into the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Already cached with a matching checksum; nothing downloaded.
    CacheHit,
    /// Downloaded; the last response started at `resumed_from` (0 = whole file).
    Downloaded {
        /// Bytes already on disk when the successful response began.
        resumed_from: u64,
        /// Requests made in this call.
        attempts: u32,
    },
    /// Copied from the user's `--driver-file`.
    Imported {
        /// The user's file.
        from: PathBuf,
        /// Its stamp, the same before and after it was read: while the
        /// file keeps it, its bytes are the ones hashed (and still in the
        /// page cache, so a bake reads them rather than the fresh copy).
        /// `None` from the bake's single pass ([`ImportTarget`]): nothing
        /// reads the file again.
        stamp: Option<FileStamp>,
    },
}

/// A verified file in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The file in the cache.
    pub path: PathBuf,
    /// Its digests: sha256, and md5 when one was expected.
    pub digests: Digests,
    /// How it got there.
    pub outcome: Outcome,
}

impl Fetched {
    /// One line for the user.
    pub fn describe(&self) -> String {
        let path = self.path.display();
        let size = HumanBytes(self.digests.size);
        match &self.outcome {
            Outcome::CacheHit => format!(
                "cache hit: {path} ({size}), checksum ok, no download ({})",
                self.digests.md5_text()
            ),
            Outcome::Downloaded {
                resumed_from,
                attempts,
            } => {
                let tries = if *attempts == 1 {
                    "1 attempt".to_owned()
                } else {
                    format!("{attempts} attempts")
                };
                let resumed = if *resumed_from > 0 {
                    format!("resumed at {resumed_from} bytes, ")
                } else {
                    String::new()
                };
                format!("downloaded {path} ({size}), checksum ok ({resumed}{tries})")
            }
            Outcome::Imported { from, .. } => format!(
                "imported {} into {path} ({size}), checksum ok",
                from.display()
            ),
        }
    }

    /// The stamp the file's sidecar recorded for these digests, if it is
    /// still the file's: the proof the bundle writer needs to skip hashing
    /// it again. Reads no byte of the file.
    pub fn stamp(&self) -> Option<FileStamp> {
        let meta = fs::metadata(&self.path).ok()?;
        let (d, stamp) = sidecar::read_trusted(&self.path, &meta)?;
        (d.sha256 == self.digests.sha256 && d.size == self.digests.size).then_some(stamp)
    }
}

/// `dirs::cache_dir()/vgpu-bake/drivers`, else `$HOME/.cache/vgpu-bake/drivers`.
pub fn default_cache_dir() -> PathBuf {
    dirs::cache_dir()
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("vgpu-bake")
        .join("drivers")
}

/// Makes `req`'s file available, verified, in `opts.cache_dir`.
///
/// Order: `--driver-file` is imported; otherwise a checksum is required, a
/// cached copy that matches is used as is (a mismatching one is kept as
/// `NAME.bak`), and only then is the URL needed and downloaded.
pub fn fetch(req: &FetchRequest, opts: &FetchOptions) -> Result<Fetched, FetchError> {
    let filename = check_filename(&req.filename)?;
    let expect = Expected::new(filename, req.md5.as_deref(), req.sha256.as_deref())?;
    let dir = &opts.cache_dir;
    fs::create_dir_all(dir).map_err(io_err("creating the cache directory", dir))?;
    let dest = dir.join(filename);
    if opts.progress == ProgressMode::Quiet {
        crate::progress::silence();
    }
    if let Some(src) = &req.driver_file {
        return import(src, &dest, filename, expect);
    }
    if expect.is_empty() && !req.record_unpinned {
        return Err(FetchError::NoChecksum {
            filename: filename.to_owned(),
        });
    }
    let mut report = Reporter::new(opts.progress, filename);
    if let Some(digests) = check_cached(&dest, &expect, &report)? {
        return Ok(Fetched {
            path: dest,
            digests,
            outcome: Outcome::CacheHit,
        });
    }
    let url = check_url(filename, req.url.as_deref())?;
    let done = download::download(url, &dest, filename, &expect, opts, &mut report)?;
    let meta = fs::metadata(&dest).map_err(io_err("reading the metadata of", &dest))?;
    sidecar::write(&dest, &meta, &done.digests)?;
    Ok(Fetched {
        path: dest,
        digests: done.digests,
        outcome: Outcome::Downloaded {
            resumed_from: done.resumed_from,
            attempts: done.attempts,
        },
    })
}

/// The digests of the cached `filename` (its sha256; md5 only as a sidecar
/// recorded it), or `None` if it is not cached.
///
/// Trusts the sidecar while the file's stamp (device, inode, size, mtime)
/// matches it; otherwise hashes the file once and rewrites the sidecar. This
/// reports what the file *is*; comparing it with an expected checksum is the
/// caller's job.
pub fn cached_digests(cache_dir: &Path, filename: &str) -> Result<Option<Digests>, FetchError> {
    Ok(cached_file(cache_dir, filename, false)?.map(|c| c.digests))
}

/// A file in the cache with its digests and the stamp they belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedFile {
    /// Its digests.
    pub digests: Digests,
    /// Its stamp when they were taken (so still now, when it was read).
    pub stamp: FileStamp,
}

/// [`cached_digests`], with the stamp that proves the file unchanged since;
/// with `md5` (one is expected), the digests always hold the md5: a sidecar
/// without one is not enough, the file is hashed again.
pub fn cached_file(
    cache_dir: &Path,
    filename: &str,
    md5: bool,
) -> Result<Option<CachedFile>, FetchError> {
    let file = cache_dir.join(check_filename(filename)?);
    let meta = match fs::metadata(&file) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("reading the metadata of", &file)(e)),
    };
    if let Some((digests, stamp)) = sidecar::read_trusted(&file, &meta)
        && (digests.md5.is_some() || !md5)
    {
        return Ok(Some(CachedFile { digests, stamp }));
    }
    let (f, meta) = open_regular(&file).map_err(io_err("opening the cached", &file))?;
    let digests =
        digests_of(f, md5, hashing_bar(&file, meta.len())).map_err(io_err("reading", &file))?;
    sidecar::write(&file, &meta, &digests)?;
    Ok(Some(CachedFile {
        digests,
        stamp: FileStamp::of(&meta),
    }))
}

/// A `digests_of` callback that shows hashing `file` (`len` bytes) on a
/// bar when it is large and stderr a terminal; once per 4 MiB block.
fn hashing_bar(file: &Path, len: u64) -> impl FnMut(&[u8]) -> io::Result<()> {
    let name = file
        .file_name()
        .unwrap_or(file.as_os_str())
        .to_string_lossy();
    let bar = Progress::bytes(&format!("hashing {name}"), len);
    move |b| {
        bar.add(b.len() as u64);
        Ok(())
    }
}

/// The checksums a file must have (lower-case hex; at least one for downloads).
#[derive(Debug, Clone)]
struct Expected {
    md5: Option<String>,
    sha256: Option<String>,
}

impl Expected {
    fn new(filename: &str, md5: Option<&str>, sha256: Option<&str>) -> Result<Self, FetchError> {
        let norm = |kind: &'static str, len: usize, v: Option<&str>| match v
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            None => Ok(None),
            Some(v) if is_hex(v, len) => Ok(Some(v.to_ascii_lowercase())),
            Some(v) => Err(FetchError::BadChecksum {
                filename: filename.to_owned(),
                kind,
                value: v.to_owned(),
                len,
            }),
        };
        Ok(Self {
            md5: norm("md5", 32, md5)?,
            sha256: norm("sha256", 64, sha256)?,
        })
    }

    fn is_empty(&self) -> bool {
        self.md5.is_none() && self.sha256.is_none()
    }

    /// Whether the file's md5 must be computed: only when one is expected.
    fn wants_md5(&self) -> bool {
        self.md5.is_some()
    }

    /// `None` if `d` matches; else "md5 expected X, got Y; ..." per mismatch
    /// (an expected md5 that was not computed is one).
    fn mismatch(&self, d: &Digests) -> Option<String> {
        let pairs = [
            ("md5", &self.md5, d.md5.as_deref()),
            ("sha256", &self.sha256, Some(d.sha256.as_str())),
        ];
        let wrong: Vec<String> = pairs
            .iter()
            .filter_map(|(kind, want, got)| match (want, got) {
                (Some(w), Some(g)) if w != g => Some(format!("{kind} expected {w}, got {g}")),
                (Some(w), None) => Some(format!("{kind} expected {w}, not computed")),
                _ => None,
            })
            .collect();
        (!wrong.is_empty()).then(|| wrong.join("; "))
    }
}

/// A registry filename must name a file inside the cache directory.
fn check_filename(name: &str) -> Result<&str, FetchError> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !name.starts_with('.');
    if ok {
        Ok(name)
    } else {
        Err(FetchError::BadFilename {
            filename: name.to_owned(),
        })
    }
}

/// The URL if plain HTTP(S) can fetch it.
fn check_url<'a>(filename: &str, url: Option<&'a str>) -> Result<&'a str, FetchError> {
    let Some(url) = url.map(str::trim).filter(|u| !u.is_empty()) else {
        return Err(FetchError::NoUrl {
            filename: filename.to_owned(),
        });
    };
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return Err(FetchError::UnsupportedUrl {
            filename: filename.to_owned(),
            url: url.to_owned(),
        });
    }
    let host = url_host(&lower);
    let mega = ["mega.nz", "mega.co.nz", "mega.io"]
        .iter()
        .any(|m| host == *m || host.ends_with(&format!(".{m}")));
    if mega {
        return Err(FetchError::MegaUrl {
            filename: filename.to_owned(),
            url: url.to_owned(),
        });
    }
    Ok(url)
}

/// The host of an http(s) URL: no scheme, user, port or path.
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    host.split(':').next().unwrap_or("")
}

/// Verifies a cached file by hashing it (md5 only when one is expected). A
/// match is a cache hit (and its sidecar is refreshed); a mismatch is moved
/// to `NAME.bak`.
fn check_cached(
    dest: &Path,
    expect: &Expected,
    report: &Reporter,
) -> Result<Option<Digests>, FetchError> {
    let (f, meta) = match open_regular(dest) {
        Ok(opened) => opened,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("opening the cached", dest)(e)),
    };
    let digests = digests_of(f, expect.wants_md5(), hashing_bar(dest, meta.len()))
        .map_err(io_err("reading the cached", dest))?;
    let Some(mismatch) = expect.mismatch(&digests) else {
        sidecar::write(dest, &meta, &digests)?;
        return Ok(Some(digests));
    };
    let mut bak = dest.as_os_str().to_owned();
    bak.push(".bak");
    let bak = PathBuf::from(bak);
    fs::rename(dest, &bak).map_err(io_err("moving the corrupt cached file to", &bak))?;
    let _ = fs::remove_file(sidecar::path_for(dest));
    report.note(&format!(
        "{}: cached file has the wrong checksum ({mismatch}); kept it as {} and downloading again",
        dest.display(),
        bak.display()
    ));
    Ok(None)
}

/// Copies the user's file into the cache (atomically), hashing it on the way.
fn import(
    src: &Path,
    dest: &Path,
    filename: &str,
    expect: Expected,
) -> Result<Fetched, FetchError> {
    if expect.is_empty() {
        return Err(FetchError::NoChecksumForFile {
            path: src.to_path_buf(),
        });
    }
    let (mut input, before) = tee::open_source(src)?;
    let mut copy = CacheImport::create(src, dest, filename, expect)?;
    // Read once: each block is written and hashed (sha256, and md5 when
    // one is expected, on their own threads) in the same pass.
    let bar = Progress::bytes(&format!("importing {filename}"), before.len());
    let digests = digests_of(&mut input, copy.wants_md5(), |b| {
        bar.add(b.len() as u64);
        copy.write(b)
    });
    let digests = match digests {
        Ok(d) => d,
        Err(e) => {
            return Err(copy
                .write_error()
                .unwrap_or_else(|| io_err("reading the driver file", src)(e)));
        }
    };
    let staged = copy.verify(&digests)?;
    // The user's file, unchanged while it was read: its bytes are the
    // ones hashed (and still in the page cache).
    let stamp = input
        .metadata()
        .ok()
        .map(|m| FileStamp::of(&m))
        .filter(|after| *after == FileStamp::of(&before));
    staged.commit(stamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames() {
        assert!(check_filename("NVIDIA-Linux-x86_64-550.144.02-vgpu-kvm.run").is_ok());
        for bad in ["", ".", "..", "../x.run", "a/b.run", ".hidden"] {
            assert!(check_filename(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls() {
        let f = "x.run";
        assert_eq!(
            check_url(f, Some(" https://h/x.run ")).ok(),
            Some("https://h/x.run")
        );
        assert!(matches!(check_url(f, None), Err(FetchError::NoUrl { .. })));
        assert!(matches!(
            check_url(f, Some("  ")),
            Err(FetchError::NoUrl { .. })
        ));
        for mega in [
            "https://mega.nz/file/abc#key",
            "https://MEGA.NZ/#!x",
            "http://u@www.mega.nz:443/f",
        ] {
            assert!(
                matches!(check_url(f, Some(mega)), Err(FetchError::MegaUrl { .. })),
                "{mega}"
            );
        }
        assert!(check_url(f, Some("https://notmega.nz/x")).is_ok());
        assert_eq!(url_host("http://u@Host.example:8080/a/b?c"), "Host.example");
        assert_eq!(
            url_host("https://nonexistent.invalid/x.run"),
            "nonexistent.invalid"
        );
        assert!(matches!(
            check_url(f, Some("auto")),
            Err(FetchError::UnsupportedUrl { .. })
        ));
    }

    #[test]
    fn expected_checksums() {
        let e = Expected::new("f", Some("900150983CD24FB0D6963F7D28E17F72"), None).unwrap();
        let mut d = crate::hash::digest_bytes(b"abc");
        // An expected md5 that was not computed is never a match.
        assert_eq!(
            e.mismatch(&d).as_deref(),
            Some("md5 expected 900150983cd24fb0d6963f7d28e17f72, not computed")
        );
        d.md5 = Some(crate::hash::md5_hex(b"abc"));
        assert_eq!(e.mismatch(&d), None);
        let e = Expected::new("f", None, Some(&"0".repeat(64))).unwrap();
        let m = e.mismatch(&d).unwrap();
        assert!(m.starts_with("sha256 expected 000"), "{m}");
        assert!(m.contains(&d.sha256), "{m}");
        assert!(Expected::new("f", Some("xyz"), None).is_err());
        assert!(Expected::new("f", Some(""), None).unwrap().is_empty());
    }
}

//! Opening a bundle: a regular file only (a FIFO or `/dev/zero` is refused
//! before a byte is read), checked against the `NAME.cpio.zst.sha256`
//! beside it when there is one, then streamed through zstd and the newc
//! reader. [`Opened::finish`] ends the stream without reading past the
//! trailer's block padding.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::InspectError;
use crate::hash::hex;
use crate::newc::{NewcEntry, NewcError, NewcReader};

/// Largest checksum file read (one `HEX  NAME` line).
const MAX_SUMS: u64 = 4096;
/// After the trailer, NUL padding up to this boundary may follow (GNU cpio
/// pads its archives to 512-byte blocks).
const BLOCK: u64 = 512;

/// Whether the `.sha256` beside the bundle was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    /// It was there and matched.
    Matched(PathBuf),
    /// There was none at this path; nothing was checked.
    Absent(PathBuf),
}

/// Told how many more compressed bytes of the bundle were read, in steps
/// of [`WATCH_STEP`] (`vgpu-bake install`'s progress bar). Only the CLI
/// passes one: the hook, which lays bundles with the same code, links no
/// bar.
pub type ReadWatch = Arc<dyn Fn(u64) + Send + Sync>;

/// A [`ReadWatch`] hears once per this many bytes, not per read.
const WATCH_STEP: u64 = 4 << 20;

/// Reader over the compressed file that hashes what zstd consumes.
pub(crate) struct HashingReader<R> {
    inner: R,
    sha256: Sha256,
    watch: Option<ReadWatch>,
    /// Bytes read and not yet told to `watch`.
    untold: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha256.update(&buf[..n]);
        if let Some(watch) = &self.watch {
            self.untold += n as u64;
            if self.untold >= WATCH_STEP {
                watch(std::mem::take(&mut self.untold));
            }
        }
        Ok(n)
    }
}

/// The decompressed archive stream of a bundle.
pub(crate) type BundleStream = zstd::Decoder<'static, BufReader<HashingReader<File>>>;

/// A bundle opened for streaming.
pub(crate) struct Opened {
    pub(crate) bundle: PathBuf,
    pub(crate) reader: NewcReader<BundleStream>,
    /// Size of the compressed file.
    pub(crate) len: u64,
    pub(crate) checksum: Checksum,
    expected_sha256: Option<String>,
    /// The checksum file is compared only in [`Opened::finish`].
    deferred: bool,
}

/// Opens `path` without blocking (a FIFO would wait for a writer) and
/// refuses anything but a regular file.
fn open_regular(path: &Path, bundle: &Path) -> Result<Option<(File, u64)>, InspectError> {
    let open_err = |source| InspectError::Open {
        bundle: bundle.to_path_buf(),
        source,
    };
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound && path != bundle => return Ok(None),
        Err(e) => return Err(open_err(e)),
    };
    let meta = file.metadata().map_err(open_err)?;
    if meta.is_file() {
        return Ok(Some((file, meta.len())));
    }
    let what = crate::input::kind_of(&meta);
    if path == bundle {
        Err(InspectError::NotRegular {
            bundle: bundle.to_path_buf(),
            what,
        })
    } else {
        Err(InspectError::Checksum {
            bundle: bundle.to_path_buf(),
            sums: path.to_path_buf(),
            reason: format!("the checksum file is {what}, not a regular file"),
        })
    }
}

/// `NAME.cpio.zst.sha256` for `NAME.cpio.zst`.
pub fn checksum_path(bundle: &Path) -> PathBuf {
    let mut p = bundle.as_os_str().to_os_string();
    p.push(".sha256");
    PathBuf::from(p)
}

/// Reads the checksum file (sha256sum format, `HEX  NAME`), hashes the
/// bundle and compares; the bundle is rewound for the stream. With `defer`
/// nothing is hashed here: [`Opened::finish`] compares the sha256 of what
/// the stream read.
fn check_sums(
    bundle: &Path,
    file: &mut File,
    defer: bool,
) -> Result<(Checksum, Option<String>), InspectError> {
    let sums = checksum_path(bundle);
    let Some((sums_file, len)) = open_regular(&sums, bundle)? else {
        return Ok((Checksum::Absent(sums), None));
    };
    let refuse = |reason: String| InspectError::Checksum {
        bundle: bundle.to_path_buf(),
        sums: sums.clone(),
        reason,
    };
    if len > MAX_SUMS {
        return Err(refuse(format!(
            "it is {len} bytes, not one `HEX  NAME` line"
        )));
    }
    let mut text = String::new();
    sums_file
        .take(MAX_SUMS)
        .read_to_string(&mut text)
        .map_err(|e| refuse(format!("cannot read it: {e}")))?;
    let line = text.strip_suffix('\n').unwrap_or(&text);
    let name = bundle
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (hex_sum, listed) = Some(line)
        .filter(|l| !l.contains('\n'))
        .and_then(|l| l.split_once("  "))
        .or_else(|| line.split_once(" *").filter(|_| !line.contains('\n')))
        .filter(|(h, _)| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            refuse(format!(
                "it is not one line `SHA256  {name}` as sha256sum writes it"
            ))
        })?;
    if listed != name {
        return Err(refuse(format!(
            "it is the checksum of {listed:?}, not of {name:?}"
        )));
    }
    let expected = hex_sum.to_ascii_lowercase();
    if defer {
        return Ok((Checksum::Matched(sums), Some(expected)));
    }
    let mut hasher = Sha256::new();
    io::copy(file, &mut HashWriter(&mut hasher))
        .and_then(|_| file.rewind())
        .map_err(|source| InspectError::Read {
            bundle: bundle.to_path_buf(),
            entry: None,
            source,
        })?;
    let actual = hex(&hasher.finalize());
    if actual != expected {
        return Err(refuse(mismatch(&actual, &expected)));
    }
    Ok((Checksum::Matched(sums), Some(expected)))
}

fn mismatch(actual: &str, expected: &str) -> String {
    format!("the bundle's sha256 is {actual}, the checksum file says {expected}")
}

struct HashWriter<'a>(&'a mut Sha256);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Opened {
    pub(crate) fn open(bundle: &Path) -> Result<Self, InspectError> {
        Self::open_with(bundle, false, None)
    }

    /// [`Opened::open`] that hashes the bundle only as it streams it and
    /// compares with its checksum file in [`Opened::finish`]: one read of
    /// the file instead of two, for a caller (`install`) that makes
    /// nothing final before `finish`.
    pub(crate) fn open_deferred(
        bundle: &Path,
        watch: Option<ReadWatch>,
    ) -> Result<Self, InspectError> {
        Self::open_with(bundle, true, watch)
    }

    fn open_with(
        bundle: &Path,
        deferred: bool,
        watch: Option<ReadWatch>,
    ) -> Result<Self, InspectError> {
        let (mut file, len) =
            open_regular(bundle, bundle)?.expect("the bundle itself is never None");
        let (checksum, expected_sha256) = check_sums(bundle, &mut file, deferred)?;
        let hashing = HashingReader {
            inner: file,
            sha256: Sha256::new(),
            watch,
            untold: 0,
        };
        let decoder = zstd::Decoder::new(hashing).map_err(|source| InspectError::Read {
            bundle: bundle.to_path_buf(),
            entry: None,
            source,
        })?;
        Ok(Self {
            bundle: bundle.to_path_buf(),
            reader: NewcReader::new(decoder),
            len,
            checksum,
            expected_sha256,
            deferred,
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

    /// After the trailer: at most NUL padding to the next 512-byte
    /// boundary, then the end of the zstd stream (which checks its
    /// checksum). Anything more is refused without decompressing it.
    /// Returns the sha256 of the whole compressed file.
    pub(crate) fn finish(self) -> Result<String, InspectError> {
        let bundle = self.bundle;
        let err = |source| InspectError::Read {
            bundle: bundle.clone(),
            entry: None,
            source,
        };
        let offset = self.reader.offset();
        let pad = (BLOCK - offset % BLOCK) % BLOCK;
        let mut decoder = self.reader.into_inner();
        let mut rest = Vec::with_capacity(pad as usize + 1);
        (&mut decoder)
            .take(pad + 1)
            .read_to_end(&mut rest)
            .map_err(err)?;
        let trailing = |what| InspectError::Trailing {
            bundle: bundle.clone(),
            offset,
            what,
        };
        if rest.iter().any(|&b| b != 0) {
            return Err(trailing("data"));
        }
        if rest.len() as u64 > pad {
            return Err(trailing("more NUL bytes than the block padding"));
        }
        let mut inner = decoder.finish();
        let mut probe = [0u8; 1];
        if !inner.buffer().is_empty() || inner.read(&mut probe).map_err(err)? != 0 {
            return Err(trailing("compressed data after the end of the zstd stream"));
        }
        let sha256 = hex(&inner.into_inner().sha256.finalize());
        if let Some(expected) = self.expected_sha256
            && expected != sha256
        {
            if self.deferred {
                return Err(InspectError::Checksum {
                    sums: checksum_path(&bundle),
                    reason: mismatch(&sha256, &expected),
                    bundle: bundle.clone(),
                });
            }
            return Err(err(io::Error::other(format!(
                "the file changed while it was read: its sha256 is now {sha256}, the checksum file says {expected}"
            ))));
        }
        Ok(sha256)
    }
}

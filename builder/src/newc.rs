//! Our own streaming `newc` (magic `070701`) cpio writer and reader.
//!
//! The format (see `man 5 cpio`): each entry is a 110-byte ASCII header of
//! 8-digit hex fields, the NUL-terminated name, padding to a multiple of 4
//! bytes (counted from the start of the archive), the body, padding to 4
//! again. A `TRAILER!!!` entry ends the archive.
//!
//! The writer owns every byte of the bundle so the output is reproducible:
//! it assigns inode numbers in order from 1, writes uid/gid/dev/rdev 0 and a
//! fixed mtime, and refuses entries that are out of byte order or whose
//! parent directory was not written first (so an extractor never has to
//! invent a directory with a mode of its own choosing). Bodies are streamed
//! in both directions; nothing is held in memory.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};

/// The newc magic.
pub const MAGIC: &[u8; 6] = b"070701";
/// Name of the entry that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";
/// Length of the fixed part of a header.
pub const HEADER_LEN: usize = 110;
/// File-type bits of `mode`.
pub const S_IFMT: u32 = 0o170000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;
/// Directory.
pub const S_IFDIR: u32 = 0o040000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120000;
/// Longest name the reader accepts (Linux `PATH_MAX`).
pub const MAX_NAME: u32 = 4096;

const COPY_BUF: usize = 1 << 20;

/// Error writing or reading a newc archive.
#[derive(Debug, thiserror::Error)]
pub enum NewcError {
    /// The underlying writer or reader failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// newc stores sizes, mtimes and inode numbers as 32-bit numbers.
    #[error(
        "{what} of {path} is {value}, but newc stores it in 32 bits (at most 4294967295; for a size, 4 GiB - 1)"
    )]
    TooLarge {
        /// The entry.
        path: String,
        /// Which field.
        what: &'static str,
        /// The value that does not fit.
        value: u64,
    },
    /// Entries must come in strictly increasing byte order of path.
    #[error(
        "entry {path} comes after {previous}: entries must be sorted by path, without duplicates"
    )]
    OutOfOrder {
        /// The entry.
        path: String,
        /// The entry written before it.
        previous: String,
    },
    /// A child was appended before its parent directory.
    #[error("entry {path} needs its parent directory {parent} to be written first")]
    MissingParent {
        /// The entry.
        path: String,
        /// Its parent.
        parent: String,
    },
    /// A name the archive cannot hold.
    #[error("entry name {path:?} is not valid: {reason}")]
    BadName {
        /// The entry.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// A file source gave a different number of bytes than announced.
    #[error(
        "file for entry {path} has {actual} bytes, but {expected} were announced (it changed while being read?)"
    )]
    SizeChanged {
        /// The entry.
        path: String,
        /// Announced size.
        expected: u64,
        /// Bytes actually read (at least this many).
        actual: u64,
    },
    /// Reading: the header at `offset` does not start with `070701`.
    #[error(
        "no newc header at byte {offset} of the archive (found {found:?}, expected \"070701\")"
    )]
    BadMagic {
        /// Offset in the uncompressed archive.
        offset: u64,
        /// The six bytes found.
        found: String,
    },
    /// Reading: a header field is not hex, or the name is malformed.
    #[error("corrupt newc header at byte {offset} of the archive: {reason}")]
    BadHeader {
        /// Offset in the uncompressed archive.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Reading: the archive ended before `TRAILER!!!`.
    #[error("the archive ends at byte {offset}, before its TRAILER!!! entry (truncated)")]
    Truncated {
        /// Offset in the uncompressed archive.
        offset: u64,
    },
}

/// One header, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Inode number.
    pub ino: u32,
    /// File type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Link count.
    pub nlink: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: u32,
    /// Body length.
    pub filesize: u32,
    /// Device of the file (major).
    pub devmajor: u32,
    /// Device of the file (minor).
    pub devminor: u32,
    /// Device it represents (major).
    pub rdevmajor: u32,
    /// Device it represents (minor).
    pub rdevminor: u32,
    /// newc: always 0 (only the `070702` variant uses it).
    pub check: u32,
    /// Path, without the trailing NUL.
    pub name: String,
}

impl Header {
    /// The file-type bits of `mode`.
    pub fn file_type(&self) -> u32 {
        self.mode & S_IFMT
    }

    /// Encodes header and name, including the padding after the name, for
    /// an entry that starts at a 4-byte-aligned offset.
    pub fn encode(&self) -> Vec<u8> {
        let namesize = self.name.len() + 1;
        let mut out = Vec::with_capacity(HEADER_LEN + namesize + 3);
        out.extend_from_slice(MAGIC);
        for v in [
            self.ino,
            self.mode,
            self.uid,
            self.gid,
            self.nlink,
            self.mtime,
            self.filesize,
            self.devmajor,
            self.devminor,
            self.rdevmajor,
            self.rdevminor,
            namesize as u32,
            self.check,
        ] {
            out.extend_from_slice(format!("{v:08X}").as_bytes());
        }
        out.extend_from_slice(self.name.as_bytes());
        out.push(0);
        out.resize(out.len() + pad_len(out.len() as u64), 0);
        out
    }
}

/// Zero bytes needed after `offset` to reach a multiple of 4.
pub fn pad_len(offset: u64) -> usize {
    ((4 - offset % 4) % 4) as usize
}

/// The parent directory of an archive path (`None` at top level).
pub fn parent(path: &str) -> Option<&str> {
    path.rsplit_once('/').map(|(p, _)| p)
}

/// Streaming newc writer with deterministic metadata.
#[derive(Debug)]
pub struct NewcWriter<W: Write> {
    inner: W,
    offset: u64,
    next_ino: u32,
    mtime: u32,
    previous: Option<String>,
    dirs: BTreeSet<String>,
    buf: Vec<u8>,
}

impl<W: Write> NewcWriter<W> {
    /// Starts an archive whose entries all carry `mtime`.
    pub fn new(inner: W, mtime: u64) -> Result<Self, NewcError> {
        let mtime = u32::try_from(mtime).map_err(|_| NewcError::TooLarge {
            path: "(every entry)".into(),
            what: "mtime",
            value: mtime,
        })?;
        Ok(Self {
            inner,
            offset: 0,
            next_ino: 1,
            mtime,
            previous: None,
            dirs: BTreeSet::new(),
            buf: Vec::new(),
        })
    }

    /// Number of entries written so far (the trailer not counted).
    pub fn entries(&self) -> usize {
        (self.next_ino - 1) as usize
    }

    /// Appends a directory with permission bits `mode`.
    pub fn append_dir(&mut self, path: &str, mode: u32) -> Result<(), NewcError> {
        self.header(path, S_IFDIR | (mode & 0o7777), 2, 0)?;
        self.dirs.insert(path.to_owned());
        Ok(())
    }

    /// Appends a symbolic link; its body is the target.
    pub fn append_symlink(&mut self, path: &str, target: &str) -> Result<(), NewcError> {
        if target.is_empty() || target.contains('\0') {
            return Err(NewcError::BadName {
                path: path.into(),
                reason: "a symlink target must be non-empty and contain no NUL",
            });
        }
        self.header(path, S_IFLNK | 0o777, 1, target.len() as u64)?;
        self.body(target.as_bytes())?;
        self.pad()
    }

    /// Appends a regular file held in memory.
    pub fn append_file(&mut self, path: &str, mode: u32, bytes: &[u8]) -> Result<(), NewcError> {
        self.append_file_from_reader(path, mode, bytes.len() as u64, bytes, |_| {})?;
        Ok(())
    }

    /// Appends a regular file of exactly `size` bytes read from `reader`,
    /// calling `on_chunk` with every byte copied (to hash while copying, so
    /// each byte is read once). A reader that ends early or has more bytes
    /// than `size` is an error. Returns the number of bytes copied.
    pub fn append_file_from_reader<R: Read>(
        &mut self,
        path: &str,
        mode: u32,
        size: u64,
        mut reader: R,
        mut on_chunk: impl FnMut(&[u8]),
    ) -> Result<u64, NewcError> {
        self.header(path, S_IFREG | (mode & 0o7777), 1, size)?;
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(COPY_BUF, 0);
        let result = self.copy_body(path, size, &mut reader, &mut on_chunk, &mut buf);
        self.buf = buf;
        result?;
        self.pad()?;
        Ok(size)
    }

    /// Appends a regular file of `size` bytes whose body `body` writes to
    /// the inner writer itself: exactly `size` bytes, which is the caller's
    /// promise (the padding after the body is counted from it). The bundle
    /// writer uses it to start a large file's body on a frame of its own.
    /// `wrap` turns this writer's own errors into the caller's.
    pub fn append_file_with<E>(
        &mut self,
        path: &str,
        mode: u32,
        size: u64,
        wrap: impl Fn(NewcError) -> E,
        body: impl FnOnce(&mut W) -> Result<(), E>,
    ) -> Result<(), E> {
        self.header(path, S_IFREG | (mode & 0o7777), 1, size)
            .map_err(&wrap)?;
        body(&mut self.inner)?;
        self.offset += size;
        self.pad().map_err(wrap)
    }

    /// Writes the trailer and returns the inner writer. It is not flushed:
    /// finishing it (a zstd frame, a file) is the caller's business, and a
    /// zstd flush here would add a block to the output.
    pub fn finish(mut self) -> Result<W, NewcError> {
        let header = self.make_header(TRAILER, 0, 1, 0);
        self.raw(&header.encode())?;
        Ok(self.inner)
    }

    fn copy_body<R: Read>(
        &mut self,
        path: &str,
        size: u64,
        reader: &mut R,
        on_chunk: &mut impl FnMut(&[u8]),
        buf: &mut [u8],
    ) -> Result<(), NewcError> {
        let changed = |actual| NewcError::SizeChanged {
            path: path.into(),
            expected: size,
            actual,
        };
        let mut done = 0u64;
        while done < size {
            let want = buf.len().min((size - done) as usize);
            let n = match reader.read(&mut buf[..want]) {
                Ok(0) => return Err(changed(done)),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            on_chunk(&buf[..n]);
            self.body(&buf[..n])?;
            done += n as u64;
        }
        let mut probe = [0u8; 1];
        loop {
            match reader.read(&mut probe) {
                Ok(0) => return Ok(()),
                Ok(_) => return Err(changed(size + 1)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn make_header(&self, name: &str, mode: u32, nlink: u32, size: u32) -> Header {
        Header {
            ino: if name == TRAILER { 0 } else { self.next_ino },
            mode,
            uid: 0,
            gid: 0,
            nlink,
            mtime: if name == TRAILER { 0 } else { self.mtime },
            filesize: size,
            devmajor: 0,
            devminor: 0,
            rdevmajor: 0,
            rdevminor: 0,
            check: 0,
            name: name.into(),
        }
    }

    /// Checks the name and order, then writes the header of a new entry.
    fn header(&mut self, path: &str, mode: u32, nlink: u32, size: u64) -> Result<(), NewcError> {
        check_name(path)?;
        let size = u32::try_from(size).map_err(|_| NewcError::TooLarge {
            path: path.into(),
            what: "size",
            value: size,
        })?;
        if let Some(prev) = &self.previous
            && prev.as_bytes() >= path.as_bytes()
        {
            return Err(NewcError::OutOfOrder {
                path: path.into(),
                previous: prev.clone(),
            });
        }
        if let Some(p) = parent(path)
            && !self.dirs.contains(p)
        {
            return Err(NewcError::MissingParent {
                path: path.into(),
                parent: p.into(),
            });
        }
        let header = self.make_header(path, mode, nlink, size);
        self.raw(&header.encode())?;
        self.next_ino += 1;
        self.previous = Some(path.to_owned());
        Ok(())
    }

    fn body(&mut self, bytes: &[u8]) -> Result<(), NewcError> {
        self.raw(bytes)
    }

    fn pad(&mut self) -> Result<(), NewcError> {
        let n = pad_len(self.offset);
        self.raw(&[0u8; 3][..n])
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<(), NewcError> {
        self.inner.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }
}

/// Names follow [`vgpu_plan::manifest::check_name`] (the reader holds
/// them to it too), and `TRAILER!!!` is reserved.
fn check_name(path: &str) -> Result<(), NewcError> {
    let reason = if path == TRAILER {
        "reserved for the archive's end"
    } else if let Err(reason) = vgpu_plan::manifest::check_name(path) {
        reason
    } else {
        return Ok(());
    };
    Err(NewcError::BadName {
        path: path.into(),
        reason,
    })
}

/// Streaming newc reader: [`NewcReader::next_entry`] yields each header with
/// a reader over its body; an unread body is skipped on the next call.
#[derive(Debug)]
pub struct NewcReader<R: Read> {
    inner: R,
    offset: u64,
    remaining: u64,
    done: bool,
}

/// One entry being read: its header, and `Read` over its body.
#[derive(Debug)]
pub struct NewcEntry<'a, R: Read> {
    /// The header.
    pub header: Header,
    reader: &'a mut NewcReader<R>,
}

impl<R: Read> Read for NewcEntry<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = &mut *self.reader;
        let want = buf
            .len()
            .min(usize::try_from(r.remaining).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = r.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the archive ends at byte {} inside the body of {} (truncated)",
                    r.offset, self.header.name
                ),
            ));
        }
        r.remaining -= n as u64;
        r.offset += n as u64;
        Ok(n)
    }
}

impl<R: Read> NewcReader<R> {
    /// Reads an archive from `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            offset: 0,
            remaining: 0,
            done: false,
        }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The inner reader, positioned after the trailer once
    /// [`NewcReader::next_entry`] has returned `None`.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The next entry, or `None` after the trailer.
    pub fn next_entry(&mut self) -> Result<Option<NewcEntry<'_, R>>, NewcError> {
        if self.done {
            return Ok(None);
        }
        // Skip what is left of the previous body, then its padding.
        let rest = self.remaining;
        self.skip(rest)?;
        self.remaining = 0;
        self.skip(pad_len(self.offset) as u64)?;

        let start = self.offset;
        let mut fixed = [0u8; HEADER_LEN];
        self.fill(&mut fixed)?;
        if &fixed[..6] != MAGIC {
            return Err(NewcError::BadMagic {
                offset: start,
                found: String::from_utf8_lossy(&fixed[..6]).into_owned(),
            });
        }
        let bad = |reason: String| NewcError::BadHeader {
            offset: start,
            reason,
        };
        let mut f = [0u32; 13];
        for (i, v) in f.iter_mut().enumerate() {
            let field = &fixed[6 + 8 * i..14 + 8 * i];
            *v = std::str::from_utf8(field)
                .ok()
                .and_then(|s| u32::from_str_radix(s, 16).ok())
                .filter(|_| field.iter().all(u8::is_ascii_hexdigit))
                .ok_or_else(|| bad(format!("field {i} is not 8 hex digits")))?;
        }
        let namesize = f[11];
        if namesize == 0 || namesize > MAX_NAME {
            return Err(bad(format!("name size {namesize} is out of range")));
        }
        let mut name = vec![0u8; namesize as usize];
        self.fill(&mut name)?;
        if name.pop() != Some(0) || name.contains(&0) {
            return Err(bad("the name is not NUL-terminated".into()));
        }
        let name = String::from_utf8(name).map_err(|e| {
            bad(format!(
                "the name {:?} is not UTF-8 (a bundle's names are)",
                String::from_utf8_lossy(e.as_bytes())
            ))
        })?;
        if name != TRAILER
            && let Err(reason) = vgpu_plan::manifest::check_name(&name)
        {
            return Err(bad(format!("entry {name:?}: {reason}")));
        }
        self.skip(pad_len(self.offset) as u64)?;
        let header = Header {
            ino: f[0],
            mode: f[1],
            uid: f[2],
            gid: f[3],
            nlink: f[4],
            mtime: f[5],
            filesize: f[6],
            devmajor: f[7],
            devminor: f[8],
            rdevmajor: f[9],
            rdevminor: f[10],
            check: f[12],
            name,
        };
        if header.name == TRAILER {
            self.done = true;
            return Ok(None);
        }
        self.remaining = u64::from(header.filesize);
        Ok(Some(NewcEntry {
            header,
            reader: self,
        }))
    }

    /// Like `read_exact`, but tells a clean end of input (a truncated
    /// archive) from an error of the inner reader (e.g. zstd's own
    /// "incomplete frame", which is also `UnexpectedEof`).
    fn fill(&mut self, mut buf: &mut [u8]) -> Result<(), NewcError> {
        while !buf.is_empty() {
            match self.inner.read(buf) {
                Ok(0) => {
                    return Err(NewcError::Truncated {
                        offset: self.offset,
                    });
                }
                Ok(n) => {
                    self.offset += n as u64;
                    buf = &mut buf[n..];
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn skip(&mut self, n: u64) -> Result<(), NewcError> {
        let copied = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())?;
        self.offset += copied;
        if copied < n {
            return Err(NewcError::Truncated {
                offset: self.offset,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

//! The feeding side of a bake: the archive's entries in order, cut into
//! frames ([`super::frames`]), each file's content checked against what was
//! declared for it, with only the digests that are needed, each on its own
//! thread.
//!
//! A large file ([`CACHE_MIN`]) is copied from the frame cache when its
//! entry is there and never read (unless it is also copied into the driver
//! cache: then it is read and hashed, not compressed: [`super::import`]).
//! Otherwise it is read in [`CHUNK`]
//! blocks straight into reused buffers, and each block goes, without a
//! copy, to a compressor and to the hashers: sha256 unless the file still
//! has the stamp its digests were taken with (the driver cache's proof
//! that it is unchanged), md5 only when one was declared; and to the
//! driver cache's copy when the bake imports the file as it reads it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::thread::Scope;

use md5::Md5;
use sha2::{Digest, Sha256};

use super::frame_cache::{CACHE_MIN, FrameCache};
use super::frames::{CHUNK, Frames};
use super::import::CacheCopy;
use super::{BundleError, FileDigests, Proof, Source, mismatch};
use crate::blocks::{Chunk, DigestThread, Pool};
use crate::fetch::{ImportTarget, StagedImport};
use crate::hash::hex;
use crate::newc::{NewcError, NewcWriter};
use crate::progress::Progress;
use crate::stamp::FileStamp;

/// The archive stream into frames: headers and small files are gathered
/// into a block until it is full or a large file's body begins.
pub(super) struct Segmenter<'f, 'a> {
    frames: &'f Frames<'a>,
    pool: Pool,
    block: Vec<u8>,
}

impl<'f, 'a> Segmenter<'f, 'a> {
    pub(super) fn new(frames: &'f Frames<'a>) -> Self {
        let pool = Pool::new(CHUNK);
        let block = pool.take();
        Self {
            frames,
            pool,
            block,
        }
    }

    /// Sends the gathered bytes as a frame (none if nothing is gathered).
    pub(super) fn end_frame(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.block, self.pool.take());
        self.frames.frame(self.pool.share(full), false)
    }
}

impl Write for Segmenter<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = (CHUNK - self.block.len()).min(buf.len());
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == CHUNK {
            self.end_frame()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What one bake shares with every file it streams.
pub(super) struct Ctx<'scope, 'env> {
    pub scope: &'scope Scope<'scope, 'env>,
    pub cache: Option<&'env FrameCache>,
    pub bundle: &'env Path,
    /// Cache entries used.
    pub hits: usize,
    /// Entries whose source is also copied into the driver cache.
    pub imports: &'env BTreeMap<String, ImportTarget>,
    /// Those copies, verified, waiting for the bake to succeed.
    pub staged: Vec<StagedImport>,
}

impl Ctx<'_, '_> {
    fn wrap(&self) -> impl Fn(NewcError) -> BundleError + '_ {
        |source| BundleError::Write {
            bundle: self.bundle.to_path_buf(),
            source,
        }
    }
}

/// Streams one regular file into the archive and checks it.
pub(super) fn stream_file<'scope, 'a>(
    ctx: &mut Ctx<'scope, 'a>,
    w: &mut NewcWriter<Segmenter<'_, 'a>>,
    path: &str,
    mode: u32,
    source: &'a Source,
    sha256: &str,
) -> Result<FileDigests, BundleError> {
    let size = source.size();
    let mut copy = match ctx.imports.get(path) {
        Some(target) => Some(CacheCopy::begin(target)?),
        None => None,
    };
    if size < CACHE_MIN {
        let (got, staged) = small_file(ctx, w, path, mode, source, copy)?;
        ctx.staged.extend(staged);
        return Ok(got);
    }
    let mut staged = None;
    let mut digests = FileDigests {
        sha256: sha256.to_owned(),
        md5: None,
        size,
        proof: Proof::Memory,
    };
    let wrap = ctx.wrap();
    let body = |seg: &mut Segmenter<'_, 'a>| -> Result<(), BundleError> {
        seg.end_frame().map_err(|e| wrap(e.into()))?;
        if let Some(entry) = ctx.cache.and_then(|c| c.lookup(sha256, size)) {
            seg.frames.cached(entry).map_err(|e| wrap(e.into()))?;
            digests.proof = Proof::Cached;
            if let Some(c) = copy.take() {
                // Still read, hashed and copied: see `super::import`.
                let bar = Progress::bytes(&format!("importing {}", c.filename()), size);
                let how = Body::HashOnly(&bar);
                staged = read_body(ctx.scope, seg, path, source, how, ctx.bundle, Some(c))?.1;
            }
            return Ok(());
        }
        let pending = ctx.cache.and_then(|c| c.begin(sha256, size).ok());
        let tee = pending.is_some();
        if let Some(p) = pending {
            seg.frames.begin_entry(p).map_err(|e| wrap(e.into()))?;
        }
        match source {
            Source::Bytes(b) => {
                for piece in b.chunks(CHUNK) {
                    seg.frames
                        .frame(Chunk::Slice(piece), tee)
                        .map_err(|e| wrap(e.into()))?;
                }
            }
            Source::File { .. } => {
                let bar = Progress::bytes(&format!("compressing {path}"), size);
                let how = Body::Compress { tee, bar: &bar };
                let c = copy.take();
                (digests, staged) = read_body(ctx.scope, seg, path, source, how, ctx.bundle, c)?;
            }
        }
        if tee {
            seg.frames.end_entry().map_err(|e| wrap(e.into()))?;
        }
        Ok(())
    };
    w.append_file_with(path, mode, size, ctx.wrap(), body)?;
    drop(wrap);
    if digests.proof == Proof::Cached {
        ctx.hits += 1;
    }
    ctx.staged.extend(staged);
    Ok(digests)
}

/// A file below [`CACHE_MIN`]: read whole, hashed here, written with the
/// headers.
fn small_file(
    ctx: &Ctx<'_, '_>,
    w: &mut NewcWriter<Segmenter<'_, '_>>,
    path: &str,
    mode: u32,
    source: &Source,
    copy: Option<CacheCopy>,
) -> Result<(FileDigests, Option<StagedImport>), BundleError> {
    let wrap = ctx.wrap();
    let (bytes, proof): (std::borrow::Cow<'_, [u8]>, _) = match source {
        Source::Bytes(b) => (b.as_slice().into(), Proof::Memory),
        Source::File { path: file, .. } => {
            let mut f = open(path, file)?;
            let mut v = Vec::new();
            Read::by_ref(&mut f)
                .take(source.size() + 1)
                .read_to_end(&mut v)
                .map_err(|e| source_err(path, file, e))?;
            (v.into(), Proof::Hashed)
        }
    };
    let sha256 = hex(&Sha256::digest(&bytes));
    let md5 = match source {
        Source::File { md5: Some(_), .. } => Some(hex(&Md5::digest(&bytes))),
        _ if copy.as_ref().is_some_and(CacheCopy::wants_md5) => Some(hex(&Md5::digest(&bytes))),
        _ => None,
    };
    let got = FileDigests {
        sha256,
        md5,
        size: bytes.len() as u64,
        proof,
    };
    let staged = match copy {
        Some(mut c) => {
            c.write(&bytes, |e| source_err(path, Path::new(""), e))?;
            Some(c.verify(&got)?)
        }
        None => None,
    };
    check(path, source, &got)?;
    w.append_file(path, mode, &bytes).map_err(wrap)?;
    Ok((got, staged))
}

/// What [`read_body`] does with the blocks besides hashing them.
enum Body<'b> {
    /// Compress them (and with `tee`, store the frames in the frame cache).
    Compress { tee: bool, bar: &'b Progress },
    /// Nothing else: the frames came from the frame cache.
    HashOnly(&'b Progress),
}

/// A large file's body from disk: blocks to the compressors, to the
/// hashers it needs and to `copy` (the driver cache's import).
fn read_body<'scope, 'a>(
    scope: &'scope Scope<'scope, '_>,
    seg: &mut Segmenter<'_, 'a>,
    path: &str,
    source: &Source,
    how: Body<'_>,
    bundle: &Path,
    mut copy: Option<CacheCopy>,
) -> Result<(FileDigests, Option<StagedImport>), BundleError> {
    let Source::File {
        path: file,
        sha256,
        md5,
        size,
        stamp,
    } = source
    else {
        unreachable!("read_body takes file sources")
    };
    let mut f = open(path, file)?;
    let meta = f.metadata().map_err(|e| source_err(path, file, e))?;
    let proven = stamp.is_some_and(|s| s == FileStamp::of(&meta));
    let sha = (!proven).then(|| DigestThread::spawn::<Sha256>(scope));
    let want_md5 = md5.is_some() || copy.as_ref().is_some_and(CacheCopy::wants_md5);
    let md5_thread = want_md5.then(|| DigestThread::spawn::<Md5>(scope));
    let wrap = |source: NewcError| BundleError::Write {
        bundle: bundle.to_path_buf(),
        source,
    };
    let mut done = 0u64;
    while done < *size {
        let want = (*size - done).min(CHUNK as u64) as usize;
        let mut buf = seg.pool.take_len(want);
        let n = fill(&mut f, &mut buf).map_err(|e| source_err(path, file, e))?;
        if n < want {
            return Err(mismatch(path, file, "size", size, &(done + n as u64)));
        }
        done += n as u64;
        if let Some(c) = &mut copy {
            c.write(&buf, |e| source_err(path, file, e))?;
        }
        let chunk = seg.pool.share(buf);
        for t in [&sha, &md5_thread].into_iter().flatten() {
            t.feed(chunk.clone());
        }
        match &how {
            Body::Compress { tee, bar } => seg
                .frames
                .frame_counted(chunk, *tee, (*bar).clone())
                .map_err(|e| wrap(e.into()))?,
            Body::HashOnly(bar) => bar.add(n as u64),
        }
    }
    let mut probe = [0u8; 1];
    if f.read(&mut probe).map_err(|e| source_err(path, file, e))? > 0 {
        return Err(mismatch(path, file, "size", size, &(size + 1)));
    }
    let got = FileDigests {
        sha256: sha.map_or_else(|| sha256.clone(), |t| t.finish().0),
        md5: md5_thread.map(|t| t.finish().0),
        size: *size,
        proof: if proven { Proof::Stamp } else { Proof::Hashed },
    };
    // The copy's verdict first: its message names the user's file and what
    // to do, as `fetch --driver-file` does.
    let staged = copy.map(|c| c.verify(&got)).transpose()?;
    check(path, source, &got)?;
    Ok((got, staged))
}

/// Reads until `buf` is full or the file ends; keeps what was read.
fn fill(f: &mut File, buf: &mut Vec<u8>) -> io::Result<usize> {
    let want = buf.len();
    let mut n = 0;
    while n < want {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(n);
    Ok(n)
}

fn open(entry: &str, file: &Path) -> Result<File, BundleError> {
    File::open(file).map_err(|e| source_err(entry, file, e))
}

fn source_err(entry: &str, file: &Path, source: io::Error) -> BundleError {
    BundleError::Source {
        entry: entry.into(),
        file: file.to_path_buf(),
        source,
    }
}

/// The content against what the source declared.
fn check(path: &str, source: &Source, got: &FileDigests) -> Result<(), BundleError> {
    let Source::File {
        path: file,
        sha256,
        md5,
        size,
        ..
    } = source
    else {
        return Ok(());
    };
    if got.size != *size {
        return Err(mismatch(path, file, "size", size, &got.size));
    }
    if got.sha256 != *sha256 {
        return Err(mismatch(path, file, "sha256", sha256, &got.sha256));
    }
    if let (Some(want), Some(have)) = (md5, &got.md5)
        && want != have
    {
        return Err(mismatch(path, file, "md5", want, have));
    }
    Ok(())
}

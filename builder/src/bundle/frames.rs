//! The bundle's bytes: a sequence of independent zstd frames, compressed in
//! parallel and written in order.
//!
//! The `newc` stream is cut into frames of at most [`CHUNK`] bytes: the
//! headers and small files in frames of their own, and the body of each
//! large file ([`super::frame_cache::CACHE_MIN`]) starting a frame at its
//! first byte, so its frames depend on its content alone and can be cached
//! and copied into another bundle ([`super::frame_cache`]). Each frame is
//! compressed by one worker in zstd's single-threaded mode with the level,
//! the checksum flag and the content size: its bytes do not depend on how
//! many workers there are. Any zstd decoder reads concatenated frames as
//! one stream (`zstd -dc`, the `zstd` crate's `Decoder`).
//!
//! Threads: the caller cuts the stream and feeds [`Frames`]; workers
//! compress; one writer thread writes the frames in order to the bundle
//! (and to a new cache entry), copies cached entries, and feeds the
//! bundle's sha256 thread. Tokens bound
//! the frames in flight, so memory stays at a few blocks per worker.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::Scope;

use sha2::Sha256;

use super::frame_cache::{Entry, Pending};
use crate::blocks::{Chunk, DigestThread, Pool};
use crate::direct::{BLOCK, DirectWriter};
use crate::progress::Progress;

/// Largest uncompressed frame, and the size of the blocks a large file is
/// read in. Part of the bytes: changing it changes every bundle and needs
/// a new [`FRAME_FORMAT`].
pub const CHUNK: usize = 4 << 20;

/// The version of the frame layout; part of every frame cache key.
pub const FRAME_FORMAT: u32 = 1;

type FrameResult = io::Result<Chunk<'static>>;

struct Job<'a> {
    data: Chunk<'a>,
    done: SyncSender<FrameResult>,
    /// Counts the input bytes once compressed.
    progress: Progress,
}

enum Unit {
    /// A frame being compressed, and whether it also goes to the open entry.
    Frame(Receiver<FrameResult>, bool),
    /// A cached entry to copy.
    Cached(Entry),
    /// The next tee'd frames go to this new entry.
    BeginEntry(Box<Pending>),
    /// The open entry is complete.
    EndEntry,
}

/// Why the writer stopped.
#[derive(Debug)]
pub(super) enum WriteFail {
    /// Writing the bundle failed.
    Output(io::Error),
    /// zstd failed on a frame.
    Compress(io::Error),
    /// A cached entry's bytes are not what its sidecar says.
    Corrupt(PathBuf),
}

/// What the writer produced.
#[derive(Debug)]
pub(super) struct Written {
    /// sha256 of the bundle.
    pub sha256: String,
    /// Its size.
    pub size: u64,
    /// New cache entries, complete, not yet renamed into place.
    pub entries: Vec<Pending>,
    /// Cache entries that could not be written (the bundle is fine).
    pub notes: Vec<String>,
}

/// The feeding end: frames to compress and entries to copy, in order.
pub(super) struct Frames<'a> {
    jobs: Sender<Job<'a>>,
    units: Sender<Unit>,
    tokens: Receiver<()>,
}

fn stopped() -> io::Error {
    io::Error::other("the bundle writer stopped")
}

impl<'a> Frames<'a> {
    /// Starts `workers` compressors and the writer on `scope`, writing to
    /// `out`; the handle's result is the writer's.
    pub(super) fn start<'scope, 'env>(
        scope: &'scope Scope<'scope, 'env>,
        out: &'scope mut File,
        level: i32,
        workers: u32,
    ) -> (
        Self,
        std::thread::ScopedJoinHandle<'scope, Result<Written, WriteFail>>,
    )
    where
        'a: 'scope,
    {
        let workers = workers.max(1) as usize;
        let (jobs, job_rx) = mpsc::channel::<Job<'a>>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        for _ in 0..workers {
            let job_rx = Arc::clone(&job_rx);
            scope.spawn(move || compress_jobs(&job_rx, level));
        }
        // Frames in flight, from the block read to the frame written.
        let in_flight = 2 * workers + 2;
        let (token_tx, tokens) = mpsc::sync_channel(in_flight);
        for _ in 0..in_flight {
            let _ = token_tx.send(());
        }
        let (units, unit_rx) = mpsc::channel();
        let writer = scope.spawn(move || write_units(scope, unit_rx, token_tx, out));
        (
            Self {
                jobs,
                units,
                tokens,
            },
            writer,
        )
    }

    /// Compresses `data` (at most [`CHUNK`] bytes) as the next frame; with
    /// `tee` it also goes to the entry begun with [`Self::begin_entry`].
    pub(super) fn frame(&self, data: Chunk<'a>, tee: bool) -> io::Result<()> {
        self.frame_counted(data, tee, Progress::hidden())
    }

    /// [`Self::frame`], adding the frame's input bytes to `progress` once
    /// a worker has compressed them.
    pub(super) fn frame_counted(
        &self,
        data: Chunk<'a>,
        tee: bool,
        progress: Progress,
    ) -> io::Result<()> {
        self.tokens.recv().map_err(|_| stopped())?;
        let (done, frame) = mpsc::sync_channel(1);
        self.jobs
            .send(Job {
                data,
                done,
                progress,
            })
            .map_err(|_| stopped())?;
        self.units
            .send(Unit::Frame(frame, tee))
            .map_err(|_| stopped())
    }

    /// Copies a cached entry as the next frames.
    pub(super) fn cached(&self, entry: Entry) -> io::Result<()> {
        self.units.send(Unit::Cached(entry)).map_err(|_| stopped())
    }

    /// The tee'd frames from here on make a new cache entry.
    pub(super) fn begin_entry(&self, entry: Pending) -> io::Result<()> {
        self.units
            .send(Unit::BeginEntry(Box::new(entry)))
            .map_err(|_| stopped())
    }

    /// The new cache entry is complete.
    pub(super) fn end_entry(&self) -> io::Result<()> {
        self.units.send(Unit::EndEntry).map_err(|_| stopped())
    }
}

/// One compression worker: jobs in, frames out, until the feeder is done.
fn compress_jobs(jobs: &Mutex<Receiver<Job<'_>>>, level: i32) {
    let pool = Pool::new(zstd::zstd_safe::compress_bound(CHUNK));
    let mut zstd = zstd::bulk::Compressor::new(level).and_then(|mut c| {
        c.include_checksum(true)?;
        c.include_contentsize(true)?;
        Ok(c)
    });
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(Job {
            data,
            done,
            progress,
        }) = job
        else {
            return;
        };
        let result = match &mut zstd {
            Ok(c) => {
                let mut out = pool.take();
                out.reserve(zstd::zstd_safe::compress_bound(data.len()));
                c.compress_to_buffer(&data, &mut out)
                    .map(|_| pool.share(out))
            }
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        progress.add(data.len() as u64);
        // The input block goes back to its pool before the frame is sent.
        drop(data);
        // The writer may have stopped; the frame is then dropped.
        let _ = done.send(result);
    }
}

/// The writer: units in order to `out` (whole blocks around the page
/// cache, [`DirectWriter`]), its sha256 on another thread.
fn write_units<'scope>(
    scope: &'scope Scope<'scope, '_>,
    units: Receiver<Unit>,
    tokens: SyncSender<()>,
    out: &mut File,
) -> Result<Written, WriteFail> {
    let sha = DigestThread::spawn::<Sha256>(scope);
    let mut out = DirectWriter::new(out.try_clone().map_err(WriteFail::Output)?);
    let mut size = 0u64;
    let mut entries = Vec::new();
    let mut notes = Vec::new();
    let mut open: Option<Pending> = None;
    for unit in units {
        match unit {
            Unit::Frame(frame, tee) => {
                let frame = frame
                    .recv()
                    .map_err(|_| WriteFail::Compress(io::Error::other("a worker stopped")))?
                    .map_err(WriteFail::Compress)?;
                out.write_all(&frame).map_err(WriteFail::Output)?;
                size += frame.len() as u64;
                if tee
                    && let Some(entry) = &mut open
                    && let Err(e) = entry.write(&frame)
                {
                    notes.push(format!("frame cache: {e}; the entry is left out"));
                    open = None;
                }
                sha.feed(frame);
                let _ = tokens.send(());
            }
            Unit::Cached(entry) => {
                copy_entry(&entry, &mut out, &sha)?;
                size += entry.len;
            }
            Unit::BeginEntry(entry) => open = Some(*entry),
            Unit::EndEntry => entries.extend(open.take()),
        }
    }
    out.finish().map_err(WriteFail::Output)?;
    let (sha256, hashed) = sha.finish();
    debug_assert_eq!(hashed, size);
    Ok(Written {
        sha256,
        size,
        entries,
        notes,
    })
}

/// Copies a cached entry into `out` in [`BLOCK`]s, each also sent to the
/// bundle's sha256 thread and added to the entry's CRC. A CRC or length
/// that differs from the sidecar's is [`WriteFail::Corrupt`]; the bundle
/// is then written again, so its damaged copy never gets its final name.
fn copy_entry(
    entry: &Entry,
    out: &mut DirectWriter,
    sha: &DigestThread<'_, '_>,
) -> Result<(), WriteFail> {
    let corrupt = || WriteFail::Corrupt(entry.path.clone());
    let pool = Pool::new(BLOCK);
    let mut crc = crc32fast::Hasher::new();
    let mut at = 0u64;
    while at < entry.len {
        let want = (entry.len - at).min(BLOCK as u64) as usize;
        let mut buf = pool.take_len(want);
        let n = entry.file.read_at(&mut buf, at).map_err(|_| corrupt())?;
        if n == 0 {
            break;
        }
        buf.truncate(n);
        crc.update(&buf);
        out.write_all(&buf).map_err(WriteFail::Output)?;
        at += n as u64;
        sha.feed(pool.share(buf));
    }
    if at != entry.len || crc.finalize() != entry.crc32 {
        return Err(corrupt());
    }
    Ok(())
}

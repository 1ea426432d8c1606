//! File bodies hashed and written on a second thread, so decompression (on
//! the caller's thread) overlaps sha256 and the write, as `zstd -dc | cpio
//! -idm`'s two processes overlap. Chunks travel in a few reused buffers:
//! the caller decompresses straight into one, the worker hashes and writes
//! it and hands it back; at most `POOL` chunks are in flight.

use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use crate::atomic::AtomicFile;
use crate::hash::hex;
use crate::inspect::CopyError;

/// Bytes per chunk.
const CHUNK: usize = 1 << 20;
/// Chunks in flight.
const POOL: usize = 4;
/// Written bytes after which the worker starts their writeback.
const WRITEBACK: u64 = 8 << 20;

enum Job {
    /// The next body goes into this file.
    Start(AtomicFile),
    /// A chunk of it: the buffer and how many of its bytes count.
    Chunk(Vec<u8>, usize),
    /// The body is complete: send back the file and its sha256.
    Finish,
}

/// The file back, with its body's sha256 or the first write error.
type Finished = (AtomicFile, io::Result<String>);

/// A copied body: its file, its sha256 and, when kept, its bytes.
pub(super) type Copied = (AtomicFile, String, Option<Vec<u8>>);

/// The second thread and its channels.
pub(super) struct BodyWriter {
    jobs: Option<SyncSender<Job>>,
    free: Receiver<Vec<u8>>,
    finished: Receiver<Finished>,
    /// Buffers made so far (at most `POOL`).
    made: usize,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for BodyWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyWriter")
            .field("made", &self.made)
            .finish()
    }
}

/// The body being written: its file, digest, the first write error, and
/// how far it was written and handed to writeback.
struct Current {
    file: AtomicFile,
    sha: Sha256,
    written: io::Result<()>,
    at: u64,
    flushed: u64,
}

impl Current {
    fn write(&mut self, chunk: &[u8]) {
        if self.written.is_err() {
            return;
        }
        self.sha.update(chunk);
        self.written = self.file.write_all(chunk);
        self.at += chunk.len() as u64;
        if self.at - self.flushed >= WRITEBACK {
            // Starts the writeback of what was just written without waiting
            // for it (`POSIX_FADV_DONTNEED` on dirty pages), so the fsync at
            // the commit finds most of a large file on disk already rather
            // than writing all of it then. Only a hint: errors are the
            // fsync's to report.
            let len = std::num::NonZeroU64::new(self.at - self.flushed);
            let file = self.file.file();
            let _ = rustix::fs::fadvise(file, self.flushed, len, rustix::fs::Advice::DontNeed);
            self.flushed = self.at;
        }
    }
}

/// The worker: hashes and writes each chunk, returns each buffer.
fn work(jobs: Receiver<Job>, free: SyncSender<Vec<u8>>, finished: SyncSender<Finished>) {
    let mut current: Option<Current> = None;
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Start(file) => {
                current = Some(Current {
                    file,
                    sha: Sha256::new(),
                    written: Ok(()),
                    at: 0,
                    flushed: 0,
                })
            }
            Job::Chunk(buf, n) => {
                if let Some(c) = &mut current {
                    c.write(&buf[..n]);
                }
                let _ = free.send(buf);
            }
            Job::Finish => {
                if let Some(c) = current.take() {
                    let sha = c.written.map(|()| hex(&c.sha.finalize()));
                    let _ = finished.send((c.file, sha));
                }
            }
        }
    }
}

/// The worker went away (it never does but by a panic).
fn gone() -> CopyError<io::Error> {
    CopyError::Sink(io::Error::other("the writer thread stopped"))
}

/// Reads until `buf` is full or the body ends; returns the bytes read.
fn fill(body: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match body.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl BodyWriter {
    pub(super) fn new() -> Self {
        let (jobs, job_rx) = sync_channel(POOL + 1);
        let (free_tx, free) = sync_channel(POOL);
        let (done_tx, finished) = sync_channel(1);
        let worker = std::thread::spawn(move || work(job_rx, free_tx, done_tx));
        Self {
            jobs: Some(jobs),
            free,
            finished,
            made: 0,
            worker: Some(worker),
        }
    }

    fn send(&self, job: Job) -> Result<(), CopyError<io::Error>> {
        let jobs = self.jobs.as_ref().ok_or_else(gone)?;
        jobs.send(job).map_err(|_| gone())
    }

    /// A free buffer: a new one while fewer than `POOL` exist, else the
    /// next the worker hands back.
    fn buffer(&mut self) -> Result<Vec<u8>, CopyError<io::Error>> {
        if let Ok(buf) = self.free.try_recv() {
            return Ok(buf);
        }
        if self.made < POOL {
            self.made += 1;
            return Ok(vec![0; CHUNK]);
        }
        self.free.recv().map_err(|_| gone())
    }

    /// Streams `body` into `file` on the worker and returns the file, the
    /// body's sha256 and, with `keep`, its bytes (only for files whose
    /// header capped their size). On an error the file is dropped, which
    /// removes it.
    pub(super) fn copy(
        &mut self,
        body: &mut impl Read,
        file: AtomicFile,
        keep: bool,
    ) -> Result<Copied, CopyError<io::Error>> {
        self.send(Job::Start(file))?;
        let mut text = keep.then(Vec::new);
        let mut read = Ok(());
        loop {
            let mut buf = self.buffer()?;
            let n = fill(body, &mut buf).unwrap_or_else(|e| {
                read = Err(e);
                0
            });
            if let Some(t) = &mut text {
                t.extend_from_slice(&buf[..n]);
            }
            self.send(Job::Chunk(buf, n))?;
            if n < CHUNK {
                break;
            }
        }
        self.send(Job::Finish)?;
        let (file, written) = self.finished.recv().map_err(|_| gone())?;
        read.map_err(CopyError::Read)?;
        let sha = written.map_err(CopyError::Sink)?;
        Ok((file, sha, text))
    }
}

impl Drop for BodyWriter {
    /// Stops the worker and waits for it, so a temp file it still holds
    /// is removed before the install removes the directories it made.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

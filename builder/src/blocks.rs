//! Byte blocks shared between threads without copying, and digests computed
//! on threads of their own.
//!
//! A bake reads each large file once, in big blocks; the same block goes to
//! the compressor and to every hasher that needs it (an `Arc`, never a
//! copy). A [`Pool`] hands blocks out and takes them back when the last
//! holder drops them, so a 500 MB file is read through a few reused
//! buffers instead of fresh allocations (each a round of page faults).

use std::ops::Deref;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};

use sha2::Digest;

use crate::hash::{Digests, hex};

/// A buffer that goes back to its [`Pool`] when dropped.
#[derive(Debug)]
pub struct Buf {
    data: Vec<u8>,
    home: Sender<Vec<u8>>,
}

impl Deref for Buf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        // The pool may be gone (its owner finished): the buffer is freed.
        let _ = self.home.send(std::mem::take(&mut self.data));
    }
}

/// Reusable buffers of one capacity, handed out by one thread.
#[derive(Debug)]
pub struct Pool {
    home: Sender<Vec<u8>>,
    back: Receiver<Vec<u8>>,
    capacity: usize,
}

impl Pool {
    /// Buffers of `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        let (home, back) = mpsc::channel();
        Self {
            home,
            back,
            capacity,
        }
    }

    /// An empty buffer with room for the pool's capacity: a returned one,
    /// else a new one. (How many are out at once is bounded by the caller.)
    pub fn take(&self) -> Vec<u8> {
        let mut v = self
            .back
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(self.capacity));
        v.clear();
        v.reserve(self.capacity);
        v
    }

    /// A buffer of exactly `len` bytes to read into: a returned buffer's
    /// old bytes are kept rather than zeroed again (the reader overwrites
    /// them), so only a new buffer pays for zeroing.
    pub fn take_len(&self, len: usize) -> Vec<u8> {
        let mut v = self
            .back
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(self.capacity.max(len)));
        v.truncate(len);
        v.resize(len, 0);
        v
    }

    /// Shares a filled buffer; it comes back to this pool when the last
    /// holder drops it.
    pub fn share(&self, data: Vec<u8>) -> Chunk<'static> {
        Chunk::Shared(Arc::new(Buf {
            data,
            home: self.home.clone(),
        }))
    }
}

/// Bytes handed to other threads: a pooled buffer, or a slice of data that
/// outlives the threads (a scoped thread's borrowed input).
#[derive(Debug, Clone)]
pub enum Chunk<'a> {
    /// A buffer from a [`Pool`].
    Shared(Arc<Buf>),
    /// Borrowed bytes.
    Slice(&'a [u8]),
}

impl Deref for Chunk<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Chunk::Shared(b) => b,
            Chunk::Slice(s) => s,
        }
    }
}

/// One digest (`sha2::Sha256`, `md5::Md5`) computed on its own scoped
/// thread from the chunks sent to it, in order.
#[derive(Debug)]
pub struct DigestThread<'scope, 'a> {
    tx: SyncSender<Chunk<'a>>,
    handle: ScopedJoinHandle<'scope, (String, u64)>,
}

impl<'scope, 'a: 'scope> DigestThread<'scope, 'a> {
    /// Starts hashing with a `D` on a thread of `scope`.
    pub fn spawn<D: Digest + Send + 'static>(scope: &'scope Scope<'scope, '_>) -> Self {
        // A few blocks of slack: the feeder rarely waits for the hasher.
        let (tx, rx) = mpsc::sync_channel::<Chunk<'a>>(4);
        let handle = scope.spawn(move || {
            let mut d = D::new();
            let mut size = 0u64;
            for chunk in rx {
                d.update(&chunk[..]);
                size += chunk.len() as u64;
            }
            (hex(&d.finalize()), size)
        });
        Self { tx, handle }
    }

    /// A sender for another thread that feeds this one (in turn with the
    /// owner: the digest is of the chunks in the order they arrive).
    pub fn sender(&self) -> SyncSender<Chunk<'a>> {
        self.tx.clone()
    }

    /// Queues a chunk (waits while the hasher is a few chunks behind).
    pub fn feed(&self, chunk: Chunk<'a>) {
        // Fails only if the thread died, which `finish` reports.
        let _ = self.tx.send(chunk);
    }

    /// Lower-case hex digest and the number of bytes hashed.
    pub fn finish(self) -> (String, u64) {
        drop(self.tx);
        match self.handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// sha256 of everything `reader` yields, and md5 when `md5` (only when one
/// is expected: it costs twice sha256's CPU), each on its own thread, read
/// in 4 MiB blocks that `each` also sees, in order (an import's copy), on
/// the calling thread.
pub fn digests_of(
    mut reader: impl std::io::Read,
    md5: bool,
    mut each: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<Digests> {
    const BLOCK: usize = 4 << 20;
    let pool = Pool::new(BLOCK);
    std::thread::scope(|s| {
        let md5 = md5.then(|| DigestThread::spawn::<md5::Md5>(s));
        let sha = DigestThread::spawn::<sha2::Sha256>(s);
        loop {
            let mut buf = pool.take_len(BLOCK);
            let n = loop {
                match reader.read(&mut buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    r => break r?,
                }
            };
            if n == 0 {
                break;
            }
            buf.truncate(n);
            each(&buf)?;
            let chunk = pool.share(buf);
            if let Some(m) = &md5 {
                m.feed(chunk.clone());
            }
            sha.feed(chunk);
        }
        let md5 = md5.map(|m| m.finish().0);
        let (sha256, size) = sha.finish();
        Ok(Digests { md5, sha256, size })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{digest_bytes, md5_hex};

    #[test]
    fn digest_threads_match_and_buffers_come_back() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let pool = Pool::new(65_536);
        let (sha, md5) = std::thread::scope(|s| {
            let sha = DigestThread::spawn::<sha2::Sha256>(s);
            let md5 = DigestThread::spawn::<md5::Md5>(s);
            for (i, piece) in data.chunks(65_536).enumerate() {
                let chunk = if i % 2 == 0 {
                    let mut v = pool.take();
                    v.extend_from_slice(piece);
                    pool.share(v)
                } else {
                    Chunk::Slice(piece)
                };
                md5.feed(chunk.clone());
                sha.feed(chunk);
            }
            (sha.finish(), md5.finish())
        });
        let want = digest_bytes(&data);
        assert_eq!(sha, (want.sha256.clone(), data.len() as u64));
        assert_eq!(md5, (md5_hex(&data), data.len() as u64));
        for with_md5 in [false, true] {
            let mut copy = Vec::new();
            let d = digests_of(&data[..], with_md5, |b| {
                copy.extend_from_slice(b);
                Ok(())
            })
            .unwrap();
            let md5 = with_md5.then(|| md5_hex(&data));
            assert_eq!(
                d,
                Digests {
                    md5,
                    ..want.clone()
                }
            );
            assert!(copy == data);
        }
        // Every shared buffer was returned: the next take reuses one.
        let v = pool.take();
        assert!(v.capacity() >= 65_536 && v.is_empty());
        assert!(pool.back.try_recv().is_ok(), "more than one came back");
    }
}

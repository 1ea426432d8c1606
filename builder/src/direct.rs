//! Large outputs written around the page cache (`O_DIRECT`).
//!
//! A bake writes hundreds of megabytes it fsyncs at once (the bundle, an
//! imported driver) or will read back at most once (a frame cache entry).
//! Written through the page cache, every byte is first copied into freshly
//! allocated cache pages and written back later; on the 2-core VM the
//! benchmarks run on, that cost more system time than the device took:
//! `dd bs=4M conv=fsync` of a 453 MB bundle took 0.31 to 2.13 s (0.14 to
//! 1.16 s system), `dd bs=4M oflag=direct` 0.20 to 0.26 s (0.06 to 0.07 s
//! system). [`DirectWriter`] gathers the bytes into one aligned block and
//! writes whole blocks with `O_DIRECT`; the tail that is not a whole block
//! is written through the cache once the flag is cleared.
//!
//! Where the file system refuses `O_DIRECT` (tmpfs before Linux 6.6, some
//! FUSE file systems), at `fcntl` or at the first write, the writer goes
//! on buffered: the bytes are the same either way, only the path differs.
//! The caller still fsyncs (the device's cache, the file's size).

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};

/// The alignment `O_DIRECT` needs of the buffer, the length and the file
/// offset: the largest logical block size in use (4 KiB disks).
const ALIGN: usize = 4096;

/// Bytes gathered before one write: a few zstd frames, a whole read block.
pub const BLOCK: usize = 4 << 20;

/// Blocks per writer: one filling, the others queued for or being written
/// (a deeper queue rides out the device's uneven latency).
const BLOCKS: usize = 2;

/// An aligned block of [`BLOCK`] bytes inside a slightly larger vector.
struct Block {
    buf: Vec<u8>,
    start: usize,
}

impl Block {
    fn new() -> Self {
        let buf = vec![0u8; BLOCK + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN);
        Self { buf, start }
    }

    fn bytes(&self, from: usize, to: usize) -> &[u8] {
        &self.buf[self.start + from..self.start + to]
    }
}

/// The thread that writes full blocks while the next one fills.
struct Io {
    full: SyncSender<Block>,
    empty: Receiver<Block>,
    handle: JoinHandle<io::Result<bool>>,
}

/// Writes a file from its start, whole aligned blocks with `O_DIRECT` on a
/// thread of its own (two blocks: one written while the other fills).
///
/// The file must be empty and opened for writing only (no `O_APPEND`);
/// [`DirectWriter::finish`] must be called, or the last bytes are lost.
pub struct DirectWriter {
    file: File,
    /// The block being filled (empty without `O_DIRECT`).
    cur: Option<Block>,
    filled: usize,
    io: Option<Io>,
    /// Blocks made so far (at most [`BLOCKS`]).
    made: usize,
    /// The I/O thread failed (and its error was returned): nothing more
    /// is written.
    failed: bool,
}

impl std::fmt::Debug for DirectWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectWriter")
            .field("file", &self.file)
            .field("filled", &self.filled)
            .field("direct", &self.io.is_some())
            .finish_non_exhaustive()
    }
}

impl DirectWriter {
    /// Starts writing `file` with `O_DIRECT` where the file system takes it.
    /// `file` may be a clone (`try_clone`) of the caller's handle: the flag
    /// and the offset belong to the open file both handles share.
    pub fn new(file: File) -> Self {
        let io = set_direct(&file, true)
            .ok()
            .and_then(|()| file.try_clone().ok())
            .and_then(|clone| {
                let (full, full_rx) = mpsc::sync_channel::<Block>(BLOCKS - 1);
                let (empty_tx, empty) = mpsc::sync_channel::<Block>(BLOCKS);
                let handle = std::thread::Builder::new()
                    .name("direct-io".into())
                    .spawn(move || {
                        let mut direct = true;
                        for block in full_rx {
                            write_block(&clone, &block, BLOCK, &mut direct)?;
                            let _ = empty_tx.send(block);
                        }
                        Ok(direct)
                    })
                    .ok()?;
                Some(Io {
                    full,
                    empty,
                    handle,
                })
            });
        if io.is_none() {
            let _ = set_direct(&file, false);
        }
        let cur = io.as_ref().map(|_| Block::new());
        Self {
            file,
            cur,
            filled: 0,
            io,
            made: 1,
            failed: false,
        }
    }

    /// Whether whole blocks go around the page cache (as far as known: a
    /// file system may still refuse at the first write).
    pub fn is_direct(&self) -> bool {
        self.io.is_some()
    }

    /// Hands the full block to the I/O thread and takes the other one
    /// (the others made at the first hand-overs, so a small file never
    /// allocates them).
    fn submit(&mut self) -> io::Result<()> {
        let io = self.io.as_ref().expect("only while direct");
        let full = self.cur.take().expect("a block is filling");
        let next = if io.full.send(full).is_err() {
            None
        } else if self.made == BLOCKS {
            io.empty.recv().ok()
        } else {
            self.made += 1;
            Some(Block::new())
        };
        let Some(next) = next else {
            self.failed = true;
            return Err(self.stop().err().unwrap_or_else(stopped));
        };
        self.cur = Some(next);
        self.filled = 0;
        Ok(())
    }

    /// Ends the I/O thread: whether `O_DIRECT` still holds, or its error.
    fn stop(&mut self) -> io::Result<bool> {
        let Some(io) = self.io.take() else {
            return Ok(false);
        };
        drop(io.full);
        match io.handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Writes the last bytes and leaves the file buffered (for the fsync
    /// and anything after). Returns the file.
    pub fn finish(mut self) -> io::Result<File> {
        if self.failed {
            return Err(stopped());
        }
        let mut direct = self.stop()?;
        if let Some(block) = self.cur.take() {
            let whole = self.filled / ALIGN * ALIGN;
            let mut done = 0;
            if direct && whole > 0 {
                write_block(&self.file, &block, whole, &mut direct)?;
                done = whole;
            }
            set_direct(&self.file, false)?;
            (&self.file).write_all(block.bytes(done, self.filled))?;
        }
        Ok(self.file)
    }
}

fn stopped() -> io::Error {
    io::Error::other("the direct I/O thread stopped")
}

/// Writes `block[..len]` at the file's offset; with `*direct`, around the
/// page cache. A refusal of `O_DIRECT` (EINVAL, before any byte of that
/// write moves) clears the flag and writes the rest buffered.
fn write_block(file: &File, block: &Block, len: usize, direct: &mut bool) -> io::Result<()> {
    let mut out = file;
    let mut done = 0;
    while done < len {
        let bytes = block.bytes(done, len);
        if !*direct {
            return out.write_all(bytes);
        }
        match out.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                *direct = false;
                set_direct(file, false)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Write for DirectWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(stopped());
        }
        let Some(block) = &mut self.cur else {
            return (&self.file).write(bytes);
        };
        let n = bytes.len().min(BLOCK - self.filled);
        let at = block.start + self.filled;
        block.buf[at..at + n].copy_from_slice(&bytes[..n]);
        self.filled += n;
        if self.filled == BLOCK {
            self.submit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sets or clears `O_DIRECT` on an open file.
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let flags = fcntl_getfl(file.as_fd())?;
    let flags = if on {
        flags | OFlags::DIRECT
    } else {
        flags - OFlags::DIRECT
    };
    fcntl_setfl(file.as_fd(), flags)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::path::Path;

    /// A directory on a disk (`/var/tmp`, not a tmpfs `/tmp`).
    fn disk_dir() -> tempfile::TempDir {
        tempfile::tempdir_in("/var/tmp").unwrap()
    }

    /// Whether the file system under `dir` opens files with `O_DIRECT`.
    fn takes_direct(dir: &Path) -> bool {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::DIRECT | OFlags::CLOEXEC;
        rustix::fs::open(
            dir.join("probe"),
            flags,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .is_ok()
    }

    /// Writes `sizes` pieces of a known pattern and reads the file back.
    fn round_trip(dir: &Path, sizes: &[usize]) -> (Vec<u8>, Vec<u8>, bool) {
        let path = dir.join("out");
        let file = File::create(&path).unwrap();
        let mut w = DirectWriter::new(file);
        let direct = w.is_direct();
        let mut want = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let piece: Vec<u8> = (0..n).map(|j| (i * 31 + j * 7) as u8).collect();
            w.write_all(&piece).unwrap();
            want.extend_from_slice(&piece);
        }
        w.finish().unwrap().sync_all().unwrap();
        let mut got = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut got).unwrap();
        (want, got, direct)
    }

    #[test]
    fn bytes_survive_every_split() {
        let dir = disk_dir();
        let direct = takes_direct(dir.path());
        let cases: &[&[usize]] = &[
            &[],
            &[1],
            &[ALIGN],
            &[BLOCK],
            &[BLOCK + 1],
            &[3, BLOCK - 3, ALIGN + 5],
            &[BLOCK - 1, 1, 2 * BLOCK + 4095, 10],
            &[1 << 20; 9],
        ];
        for sizes in cases {
            let (want, got, was_direct) = round_trip(dir.path(), sizes);
            assert_eq!(
                was_direct, direct,
                "O_DIRECT taken where the file system takes it"
            );
            assert_eq!(got.len(), want.len(), "{sizes:?}");
            assert!(got == want, "bytes differ for pieces {sizes:?}");
        }
    }

    #[test]
    fn the_flag_is_cleared_when_done() {
        let dir = disk_dir();
        let file = File::create(dir.path().join("f")).unwrap();
        let mut w = DirectWriter::new(file);
        w.write_all(&[7u8; ALIGN + 3]).unwrap();
        let file = w.finish().unwrap();
        let flags = fcntl_getfl(file.as_fd()).unwrap();
        assert!(!flags.contains(OFlags::DIRECT));
        // Unaligned writes work again afterwards.
        let mut f = &file;
        f.write_all(b"xyz").unwrap();
        assert_eq!(f.metadata().unwrap().len(), (ALIGN + 6) as u64);
    }

    #[test]
    fn a_file_system_without_direct_io_gets_the_same_bytes() {
        // tmpfs refused O_DIRECT before Linux 6.6; either way the bytes match.
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        let (want, got, _) = round_trip(dir.path(), &[5, BLOCK, ALIGN + 1]);
        assert!(got == want);
    }
}

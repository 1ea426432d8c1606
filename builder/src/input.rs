//! Bounded input: the files a profile names (and the profile itself) are
//! opened without blocking and must be regular files; what is read into
//! memory is read with a size limit.
//!
//! A FIFO given as a profile, an offline `.deb` or a `--driver-file` would
//! otherwise block `open(2)` forever, and `/dev/zero` would be read until
//! memory runs out: both are refused here, before a byte is read.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// A profile is at most this large (the shipped ones are about 2 KiB).
pub const PROFILE_LIMIT: u64 = 1 << 20;
/// An offline `.deb` is read into memory: at most this large.
pub const DEB_LIMIT: u64 = 512 << 20;
/// `unlock.library` (libvgpu_unlock_rs.so is a few MiB).
pub const LIBRARY_LIMIT: u64 = 64 << 20;
/// `unlock.patch` (the vgpu-proxmox patches are a few KiB).
pub const PATCH_LIMIT: u64 = 16 << 20;
/// The agent binary baked into the bundle (the release build is under
/// 1 MiB): the cap `inspect` and `install` hold it to, so a bake never makes
/// a bundle they refuse.
pub const AGENT_LIMIT: u64 = crate::inspect::MAX_AGENT;

/// What kind of file `meta` describes, for an error message.
pub fn kind_of(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "a regular file"
    }
}

/// The error for a file that is not a regular file.
fn not_regular(meta: &Metadata) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("it is {}, not a regular file", kind_of(meta)),
    )
}

/// Opens `path` for reading without blocking (`O_NONBLOCK`, so a FIFO with
/// no writer does not hang) and refuses anything but a regular file.
pub fn open_regular(path: &Path) -> io::Result<(File, Metadata)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    Ok((file, meta))
}

/// Reads a regular file of at most `limit` bytes.
pub fn read_limited(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let (file, meta) = open_regular(path)?;
    let too_large = |size: u64| {
        io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("it is {size} bytes, more than the {limit} bytes allowed here"),
        )
    };
    if meta.len() > limit {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // The file may grow after the check: never read past the limit.
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"12345").unwrap();
        assert_eq!(read_limited(&f, 5).unwrap(), b"12345");
        let e = read_limited(&f, 4).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert!(e.to_string().contains("5 bytes, more than the 4"), "{e}");
    }

    #[test]
    fn devices_directories_and_fifos_are_refused_without_blocking() {
        let e = read_limited(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(
            e.to_string(),
            "it is a character device, not a regular file"
        );
        let dir = tempfile::tempdir().unwrap();
        let e = read_limited(dir.path(), 1 << 20).unwrap_err();
        assert_eq!(e.to_string(), "it is a directory, not a regular file");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // No writer: a blocking open would never return.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(read_limited(&fifo, 1 << 20).map_err(|e| e.to_string()));
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("reading a FIFO must not block");
        assert_eq!(
            got.unwrap_err(),
            "it is a FIFO (named pipe), not a regular file"
        );
    }
}

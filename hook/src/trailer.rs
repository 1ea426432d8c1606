//! The configuration at the end of our own executable.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use vgpu_bake::rollout::config::{ConfigError, HOOK_MAX, HookConfig, MAGIC, read_trailer};

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TrailerError {
    /// The executable could not be read.
    #[error("cannot read this hook's own executable {}: {source}", path.display())]
    Read {
        /// The executable.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// No configuration, or a damaged one.
    #[error("{}: {source}", path.display())]
    Config {
        /// The executable.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: ConfigError,
    },
}

/// The running executable (`/proc/self/exe`).
pub fn own_exe() -> PathBuf {
    PathBuf::from("/proc/self/exe")
}

/// Reads only the trailer from the end of `exe` (the template before it
/// can be any size).
pub fn read(exe: &Path) -> Result<HookConfig, TrailerError> {
    let read_err = |source| TrailerError::Read {
        path: exe.to_owned(),
        source,
    };
    let mut f = File::open(exe).map_err(read_err)?;
    let len = f.metadata().map_err(read_err)?.len();
    let tail_len = 16.min(len);
    let tail = read_tail(&mut f, len, tail_len).map_err(read_err)?;
    let config_len = match tail.strip_suffix(MAGIC.as_slice()) {
        Some(l) if l.len() == 8 => u64::from_le_bytes(l.try_into().expect("8 bytes")),
        _ => 0,
    };
    // A length beyond the file or the limit: read_trailer says what is wrong
    // with the last 16 bytes alone.
    let want = if config_len < HOOK_MAX && config_len + 16 <= len {
        config_len + 16
    } else {
        tail_len
    };
    let bytes = read_tail(&mut f, len, want).map_err(read_err)?;
    read_trailer(&bytes).map_err(|source| TrailerError::Config {
        path: exe.to_owned(),
        source,
    })
}

fn read_tail(f: &mut File, len: u64, n: u64) -> io::Result<Vec<u8>> {
    f.seek(SeekFrom::Start(len - n))?;
    let mut buf = Vec::with_capacity(n as usize);
    f.take(n).read_to_end(&mut buf)?;
    Ok(buf)
}

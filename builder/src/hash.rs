//! One-pass hashing: md5 and sha256 of the same bytes, fed once.

use std::io::{self, Read, Write};

use md5::Md5;
use sha2::{Digest, Sha256};

/// Lower-case hex of a byte slice.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Whether `s` is `len` lower- or upper-case hex digits.
pub fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The digests of one stream of bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    /// Lower-case hex MD5.
    pub md5: String,
    /// Lower-case hex SHA-256.
    pub sha256: String,
    /// Number of bytes hashed.
    pub size: u64,
}

impl Digests {
    /// The SHA-256 as the plan's checked type.
    pub fn sha256(&self) -> vgpu_plan::plan::Sha256 {
        vgpu_plan::plan::Sha256::parse_any_case(&self.sha256)
            .expect("digests hold hex computed here or checked when read")
    }

    /// The MD5 as the plan's checked type.
    pub fn md5(&self) -> vgpu_plan::plan::Md5 {
        vgpu_plan::plan::Md5::parse_any_case(&self.md5)
            .expect("digests hold hex computed here or checked when read")
    }
}

/// Computes md5 and sha256 together.
#[derive(Debug, Clone, Default)]
pub struct DualHasher {
    md5: Md5,
    sha256: Sha256,
    size: u64,
}

impl DualHasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.md5.update(bytes);
        self.sha256.update(bytes);
        self.size += bytes.len() as u64;
    }

    /// Bytes fed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The digests.
    pub fn finish(self) -> Digests {
        Digests {
            md5: hex(&self.md5.finalize()),
            sha256: hex(&self.sha256.finalize()),
            size: self.size,
        }
    }
}

/// Calls `each` with every block `reader` yields (1 MiB reads).
fn each_block(mut reader: impl Read, mut each: impl FnMut(&[u8])) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => each(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Hashes everything `reader` yields.
pub fn digest_reader(reader: impl Read) -> io::Result<Digests> {
    let mut h = DualHasher::new();
    each_block(reader, |b| h.update(b))?;
    Ok(h.finish())
}

/// sha256 and size of everything `reader` yields (no md5: for files whose
/// md5 nobody asks for).
pub fn sha256_reader(reader: impl Read) -> io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut size = 0u64;
    each_block(reader, |b| {
        h.update(b);
        size += b.len() as u64;
    })?;
    Ok((hex(&h.finalize()), size))
}

/// Hashes a byte slice.
pub fn digest_bytes(bytes: &[u8]) -> Digests {
    let mut h = DualHasher::new();
    h.update(bytes);
    h.finish()
}

/// A writer that hashes what passes through it.
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: DualHasher,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: DualHasher::new(),
        }
    }

    /// The inner writer and the digests of what was written.
    pub fn finish(self) -> (W, Digests) {
        (self.inner, self.hasher.finish())
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let d = digest_bytes(b"abc");
        assert_eq!(d.md5, "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            d.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.size, 3);
        assert_eq!(digest_reader(&b"abc"[..]).unwrap(), d);
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"a").unwrap();
        w.write_all(b"bc").unwrap();
        let (out, d2) = w.finish();
        assert_eq!(out, b"abc");
        assert_eq!(d2, d);
    }

    #[test]
    fn hex_checks() {
        assert!(is_hex("00ff", 4));
        assert!(!is_hex("00fg", 4));
        assert!(!is_hex("00f", 4));
    }
}

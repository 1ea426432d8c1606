//! One-pass hashing: sha256 of a stream of bytes, and its md5 too only
//! where one is expected (md5 costs twice sha256's CPU here: 0.73 s
//! against 0.34 s per 512 MiB, issue 14).

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
    /// Lower-case hex MD5, computed only when one was expected (declared).
    pub md5: Option<String>,
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

    /// `md5 HEX`, or `md5 not declared` when none was computed because
    /// nothing (registry, profile, `--md5`) declares one.
    pub fn md5_text(&self) -> String {
        match &self.md5 {
            Some(m) => format!("md5 {m}"),
            None => "md5 not declared".to_owned(),
        }
    }

    /// The MD5 as the plan's checked type, when it was computed.
    pub fn md5(&self) -> Option<vgpu_plan::plan::Md5> {
        self.md5.as_ref().map(|m| {
            vgpu_plan::plan::Md5::parse_any_case(m)
                .expect("digests hold hex computed here or checked when read")
        })
    }
}

/// Computes sha256, and md5 beside it when asked to.
#[derive(Debug, Clone, Default)]
pub struct Hasher {
    md5: Option<Md5>,
    sha256: Sha256,
    size: u64,
}

impl Hasher {
    /// A fresh hasher; `md5`: compute md5 too.
    pub fn new(md5: bool) -> Self {
        Self {
            md5: md5.then(Md5::new),
            ..Self::default()
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        if let Some(m) = &mut self.md5 {
            m.update(bytes);
        }
        self.sha256.update(bytes);
        self.size += bytes.len() as u64;
    }

    /// Bytes fed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The same hasher, started again from no bytes.
    pub fn restart(&self) -> Self {
        Self::new(self.md5.is_some())
    }

    /// The digests.
    pub fn finish(self) -> Digests {
        Digests {
            md5: self.md5.map(|m| hex(&m.finalize())),
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

/// sha256 and size of everything `reader` yields (no md5).
pub fn digest_reader(reader: impl Read) -> io::Result<Digests> {
    let mut h = Hasher::new(false);
    each_block(reader, |b| h.update(b))?;
    Ok(h.finish())
}

/// sha256 and size of a byte slice (no md5).
pub fn digest_bytes(bytes: &[u8]) -> Digests {
    let mut h = Hasher::new(false);
    h.update(bytes);
    h.finish()
}

/// Lower-case hex md5 of a byte slice.
pub fn md5_hex(bytes: &[u8]) -> String {
    hex(&Md5::digest(bytes))
}

/// A writer that hashes what passes through it.
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Hasher::new(false),
        }
    }

    /// The inner writer and the digests (sha256) of what was written.
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
        assert_eq!(d.md5, None, "md5 only when asked for");
        assert_eq!(
            d.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.size, 3);
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
        let mut with_md5 = Hasher::new(true);
        with_md5.update(b"ab");
        with_md5.update(b"c");
        let both = with_md5.finish();
        assert_eq!(both.md5.as_deref(), Some(md5_hex(b"abc").as_str()));
        assert_eq!((both.sha256.as_str(), both.size), (d.sha256.as_str(), 3));
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

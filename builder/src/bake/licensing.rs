//! The licensing files: the DLS client token (a secret, read whole and
//! checked to be token text) and the FastAPI-DLS image (an OCI archive,
//! streamed, pinned by its sha256).

use std::io::Read;

use vgpu_plan::plan::PayloadFile;

use super::{BakeError, PayloadEntry, input_err};
use crate::bundle::Source;
use crate::hash;
use crate::input::{open_regular, read_limited};
use crate::resolve::LicensingSource;

/// A client configuration token is a few KiB of text.
pub const TOKEN_LIMIT: u64 = 64 << 10;
/// The image archive (FastAPI-DLS's is about 100 MiB).
pub const IMAGE_LIMIT: u64 = 2 << 30;

/// The first bytes of the example profile's placeholder token file.
const PLACEHOLDER: &[u8] = b"REPLACE-THIS-FILE";

/// Whether `bytes` is token text: base64url/JWT characters on one line,
/// trailing white space allowed. The agent embeds it in the guest scripts
/// between single quotes, so nothing else may pass.
pub fn is_token_text(bytes: &[u8]) -> bool {
    let body = bytes.trim_ascii_end();
    !body.is_empty()
        && body
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=._-".contains(b))
}

/// `licensing.token`: read, checked, hashed; mode 0600 in the bundle.
pub fn bake_token(token: LicensingSource) -> Result<(PayloadFile, PayloadEntry), BakeError> {
    let bytes = read_limited(&token.source, TOKEN_LIMIT).map_err(|e| {
        input_err(
            &token.source,
            format!("cannot read `licensing.token`: {e}; give the client configuration token file (.tok) your DLS issued"),
        )
    })?;
    if bytes.starts_with(PLACEHOLDER) {
        return Err(input_err(
            &token.source,
            "is the example's placeholder, not a token: replace the file with the client configuration token (.tok) your DLS issued (DLS web UI: Service Instance > Generate client config token)",
        ));
    }
    if !is_token_text(&bytes) {
        return Err(input_err(
            &token.source,
            "is not a client configuration token (one line of base64 text): check `licensing.token`; download the .tok file from the DLS again",
        ));
    }
    let d = hash::digest_bytes(&bytes);
    let file = PayloadFile {
        path: token.path.clone(),
        sha256: d.sha256(),
        size: d.size,
    };
    let entry = PayloadEntry {
        path: token.path,
        mode: 0o600,
        source: Source::Bytes(bytes),
    };
    Ok((file, entry))
}

/// `licensing.image`: an OCI archive (a tar holding `oci-layout` and
/// `index.json`) whose sha256 is the profile's pin; streamed, not held.
pub fn bake_image(image: LicensingSource) -> Result<(PayloadFile, PayloadEntry), BakeError> {
    let err = |e: String| input_err(&image.source, e);
    let (file, meta) = open_regular(&image.source)
        .map_err(|e| err(format!("cannot read `licensing.image`: {e}")))?;
    if meta.len() > IMAGE_LIMIT {
        return Err(err(format!(
            "is {} bytes, more than the {IMAGE_LIMIT} an image archive may be: check `licensing.image`",
            meta.len()
        )));
    }
    let mut names = Vec::new();
    let d = hash::digest_reader(TarNames::new(file.take(IMAGE_LIMIT + 1), &mut names))
        .map_err(|e| err(format!("cannot read `licensing.image`: {e}")))?;
    let pin = image.sha256.as_ref().expect("resolve pins the image");
    if d.sha256 != pin.as_str() {
        return Err(err(format!(
            "sha256 is {} but `licensing.image-sha256` says {pin}: re-copy the archive you pinned, or fix the hash in the profile",
            d.sha256
        )));
    }
    for needed in ["oci-layout", "index.json"] {
        if !names.iter().any(|n| n.trim_start_matches("./") == needed) {
            return Err(err(format!(
                "is not an OCI image archive (no `{needed}` in the tar): make it with `podman save --format oci-archive -o FILE IMAGE`"
            )));
        }
    }
    let plan = PayloadFile {
        path: image.path.clone(),
        sha256: d.sha256(),
        size: d.size,
    };
    let entry = PayloadEntry {
        path: image.path,
        mode: 0o644,
        source: Source::File {
            path: image.source,
            sha256: d.sha256.clone(),
            md5: None,
            size: d.size,
            stamp: None,
        },
    };
    Ok((plan, entry))
}

/// A reader that passes bytes through and notes the names of a tar's
/// top-level members (ustar headers; 512-byte blocks) as they go by.
struct TarNames<'a, R> {
    inner: R,
    names: &'a mut Vec<String>,
    /// Bytes seen.
    pos: u64,
    /// Offset of the next header.
    next: u64,
    header: Vec<u8>,
    done: bool,
}

impl<'a, R: Read> TarNames<'a, R> {
    fn new(inner: R, names: &'a mut Vec<String>) -> Self {
        Self {
            inner,
            names,
            pos: 0,
            next: 0,
            header: Vec::with_capacity(512),
            done: false,
        }
    }

    fn header_done(&mut self) {
        let h = &self.header;
        if h.iter().all(|&b| b == 0) {
            self.done = true;
            return;
        }
        let name = String::from_utf8_lossy(&h[..100])
            .trim_end_matches('\0')
            .to_string();
        let size = std::str::from_utf8(&h[124..136])
            .ok()
            .map(|s| s.trim_matches(['\0', ' ']))
            .and_then(|s| u64::from_str_radix(s, 8).ok());
        match size {
            Some(size) => {
                if self.names.len() < 100_000 {
                    self.names.push(name);
                }
                // `next` is already just past this header.
                self.next += size.div_ceil(512) * 512;
            }
            None => self.done = true,
        }
    }
}

impl<R: Read> Read for TarNames<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut i = 0;
        while i < n && !self.done {
            let at = self.pos + i as u64;
            if at < self.next {
                i += usize::try_from((self.next - at).min((n - i) as u64)).unwrap_or(n - i);
                continue;
            }
            let take = (512 - self.header.len()).min(n - i);
            self.header.extend_from_slice(&buf[i..i + take]);
            i += take;
            if self.header.len() == 512 {
                self.next = self.pos + i as u64;
                self.header_done();
                self.header.clear();
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_text_is_base64_on_one_line() {
        assert!(is_token_text(b"eyJhbGciOi.J9-_x+/=\n"));
        for bad in [&b""[..], b"\n", b"a'b", b"a b", b"a\nb", b"$(reboot)"] {
            assert!(!is_token_text(bad), "{bad:?}");
        }
    }

    fn tar_with(names: &[(&str, usize)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, size) in names {
            let mut h = vec![0u8; 512];
            h[..name.len()].copy_from_slice(name.as_bytes());
            let s = format!("{size:011o}\0");
            h[124..136].copy_from_slice(s.as_bytes());
            out.extend_from_slice(&h);
            out.extend(std::iter::repeat_n(b'x', size.div_ceil(512) * 512));
        }
        out.extend(vec![0u8; 1024]);
        out
    }

    #[test]
    fn tar_names_are_seen_through_any_read_size() {
        let tar = tar_with(&[("oci-layout", 30), ("blobs/", 0), ("index.json", 700)]);
        for chunk in [1, 7, 512, 4096] {
            let mut names = Vec::new();
            let mut r = TarNames::new(std::io::Cursor::new(&tar), &mut names);
            let mut buf = vec![0u8; chunk];
            while r.read(&mut buf).unwrap() > 0 {}
            assert_eq!(names, ["oci-layout", "blobs/", "index.json"], "{chunk}");
        }
    }

    fn image(path: &str, sha256: &str) -> LicensingSource {
        LicensingSource {
            path: crate::resolve::IMAGE_PAYLOAD.into(),
            source: std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(path),
            sha256: Some(vgpu_plan::plan::Sha256::parse(sha256).unwrap()),
        }
    }

    #[test]
    fn an_oci_archive_bakes_with_its_pin_and_nothing_else_does() {
        let pin = "38c5f749025ec6f4560ba6086d86738d48e1e03467d5c616baab9b60cb84ab6b";
        let (file, entry) =
            bake_image(image("tests/profiles/licensing/fastapi-dls.oci.tar", pin)).unwrap();
        assert_eq!(file.sha256.as_str(), pin);
        assert_eq!(file.size, 10240);
        assert_eq!(entry.mode, 0o644);
        let wrong = bake_image(image(
            "tests/profiles/licensing/fastapi-dls.oci.tar",
            &"1".repeat(64),
        ))
        .unwrap_err()
        .to_string();
        assert!(
            wrong.contains(&format!(
                "sha256 is {pin} but `licensing.image-sha256` says 1111"
            )),
            "{wrong}"
        );
        let deb = "tests/profiles/debs/hello_2.10-3_amd64.deb";
        let sha = hash::digest_reader(std::fs::File::open(image(deb, pin).source).unwrap())
            .unwrap()
            .sha256;
        let not_oci = bake_image(image(deb, &sha)).unwrap_err().to_string();
        assert!(
            not_oci.contains("is not an OCI image archive (no `oci-layout` in the tar)"),
            "{not_oci}"
        );
    }
}

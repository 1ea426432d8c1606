//! The staged copy against the index: size, then sha256.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};
use vgpu_bake::hash::hex;
use vgpu_bake::rollout::index::IndexBundle;

/// `Ok` when `path` has the index's size and sha256; else why not.
pub fn verify(path: &Path, bundle: &IndexBundle) -> Result<(), String> {
    let mut f = File::open(path).map_err(|e| format!("cannot read the copy: {e}"))?;
    let len = f
        .metadata()
        .map_err(|e| format!("cannot read the copy: {e}"))?
        .len();
    if len != bundle.size {
        return Err(format!(
            "it is {len} bytes, the index says {}: not the bundle this hook was made for",
            bundle.size
        ));
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("cannot read the copy: {e}"))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let actual = hex(&h.finalize());
    if actual != bundle.sha256.as_str() {
        return Err(format!(
            "its sha256 is {actual}, the index says {}: changed or damaged, refused",
            bundle.sha256.as_str()
        ));
    }
    Ok(())
}

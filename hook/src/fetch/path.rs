//! A directory on the host (`--from-path`): `<root><path>/<file>`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use vgpu_bake::rollout::index::IndexBundle;

/// Copies `<root><dir>/<file>` to `dest`.
pub fn get(root: &Path, dir: &str, bundle: &IndexBundle, dest: &Path) -> Result<(), String> {
    copy_from(&root.join(dir.trim_start_matches('/')), bundle, dest)
}

/// Copies `<dir>/<file>` to `dest`: a regular file only (a FIFO would
/// block), at most one byte more than the index's size (so a wrong size
/// shows without copying a huge file).
pub fn copy_from(dir: &Path, bundle: &IndexBundle, dest: &Path) -> Result<(), String> {
    let src = dir.join(&bundle.file);
    let shown = src.display();
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(&src)
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => format!("{shown} does not exist"),
            _ => format!("cannot open {shown}: {e}"),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    copy_bounded(file, bundle.size + 1, dest).map_err(|e| format!("copying {shown}: {e}"))
}

fn copy_bounded(src: File, limit: u64, dest: &Path) -> io::Result<()> {
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)?;
    io::copy(&mut src.take(limit), &mut out)?;
    out.sync_all()
}

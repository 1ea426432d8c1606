//! A filesystem by label (`--from-label`, a USB stick left plugged in):
//! wait for udev's `/dev/disk/by-label/LABEL`, mount it read-only on a
//! private directory under `/run/vgpu-hook/`, copy, unmount.

use std::fs::{self, DirBuilder};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use vgpu_bake::rollout::index::IndexBundle;

use super::Place;
use crate::command::Tool;
use crate::report;

/// How long to wait for the device to appear (udev may still be probing
/// the stick when the hook starts).
pub const WAIT: Duration = Duration::from_secs(30);

/// Mount and unmount deadline.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(60);

/// Mount options: nothing on the stick can run or act as a device.
pub const OPTIONS: &str = "ro,nosuid,nodev,noexec";

/// Copies `<stick>/<file>` to `dest`.
pub fn get(
    place: &Place<'_>,
    label: &str,
    bundle: &IndexBundle,
    dest: &Path,
) -> Result<(), String> {
    let dev = place.root.join("dev/disk/by-label").join(label);
    if !appears(&dev, WAIT) {
        return Err(format!(
            "no {} after {} s: is the stick with this label plugged in?",
            dev.display(),
            WAIT.as_secs()
        ));
    }
    let mnt = mount_point(place.root).map_err(|e| format!("cannot make a mount point: {e}"))?;
    let (dev_s, mnt_s) = (dev.display().to_string(), mnt.display().to_string());
    let result = Tool::new("mount", &["-o", OPTIONS, &dev_s, &mnt_s])
        .run(MOUNT_TIMEOUT, place.staging)
        .map_err(|e| e.to_string())
        .and_then(|_| {
            let copied = super::path::copy_from(&mnt, bundle, dest);
            if let Err(e) = Tool::new("umount", &[&mnt_s]).run(MOUNT_TIMEOUT, place.staging) {
                report::warn(&format!("{e}; {mnt_s} stays mounted read-only"));
                return copied;
            }
            copied
        });
    // Only an empty directory goes: never anything on a stick left mounted.
    let _ = fs::remove_dir(&mnt);
    result
}

/// Polls for `dev` (a udev symlink) until `wait` has passed.
fn appears(dev: &Path, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        if dev.symlink_metadata().is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// A new private (0700) directory under `<root>/run/vgpu-hook/`.
fn mount_point(root: &Path) -> std::io::Result<PathBuf> {
    let base = root.join("run/vgpu-hook");
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&base)?;
    let tmp = tempfile::Builder::new()
        .prefix("stick-")
        .tempdir_in(&base)?;
    // Kept: removed by `get` with remove_dir, which cannot take a mounted
    // stick's files with it.
    Ok(tmp.keep())
}

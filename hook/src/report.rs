//! What the hook says: progress on stdout and failures on stderr (both go
//! to the journal under the installer's oneshot unit), failures also on
//! `/dev/console` on a real host, where the admin watching the boot sees
//! them.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A progress line.
pub fn note(text: &str) {
    outln!("vgpu-hook: {text}");
}

/// A warning that does not stop the hook.
pub fn warn(text: &str) {
    errln!("vgpu-hook: warning: {text}");
}

/// A failure: stderr, and the console when `root` is `/`.
pub fn failure(text: &str, root: &Path) {
    errln!("vgpu-hook: {text}");
    if root == Path::new("/") {
        to_console(&format!("vgpu-hook: {text}\n"));
    }
}

/// Best effort: no console (a container, a test) is not an error.
fn to_console(text: &str) {
    let flags = rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::NONBLOCK;
    if let Ok(mut c) = OpenOptions::new()
        .write(true)
        .custom_flags(flags.bits() as i32)
        .open("/dev/console")
    {
        let _ = c.write_all(text.as_bytes());
    }
}

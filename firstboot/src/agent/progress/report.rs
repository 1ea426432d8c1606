//! The POST of the `status --json` document to `[report] url`, with
//! `wget` (pve-manager depends on it) through the agent's runner: inside
//! the root, recorded in tests, stopped with its process group after
//! [`POST_LIMIT`]. A collector that is down or hangs costs at most that
//! and a warning in the journal; it never fails or holds up provisioning.

use std::time::Duration;

use crate::agent::host::Host;
use crate::runner::{CommandSpec, format_failure};

/// The whole POST, retries included: wget's `--timeout=5 --tries=2` take
/// at most about 11 s; the runner stops it after this.
pub const POST_LIMIT: Duration = Duration::from_secs(20);

/// Where the document is written for `--post-file` (a tmpfs on a host).
const DOCUMENT: &str = "run/vgpu-firstboot/status.json";

/// POSTs `document` to `url`; a failure is a warning in the journal.
pub fn post(host: &mut Host, url: &str, document: &str) {
    let warn = |why: String| format!("warning: progress not reported to {url}: {why}");
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return host.note(warn("not an http:// or https:// URL".into()));
    }
    let written = host.fs().map_err(|e| e.reason).and_then(|fs| {
        fs.write_atomic(DOCUMENT, document.as_bytes(), 0o600)
            .map_err(|e| e.to_string())
    });
    if let Err(e) = written {
        return host.note(warn(e));
    }
    let spec = CommandSpec::new(
        "wget",
        [
            format!("--post-file=/{DOCUMENT}"),
            "--header=Content-Type: application/json".into(),
            "--timeout=5".into(),
            "--tries=2".into(),
            "-O".into(),
            "/dev/null".into(),
            url.into(),
        ],
    )
    .timeout(POST_LIMIT)
    .why("report progress to [report] url");
    match host.runner.run(&spec) {
        Ok(out) if out.success() => host.note(format!("progress reported to {url}")),
        Ok(out) => host.note(warn(format_failure(&spec, &out))),
        Err(e) => host.note(warn(format!("cannot run `wget`: {e}"))),
    }
}

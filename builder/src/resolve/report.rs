//! `[report]`: where the agent reports its progress (the node_exporter
//! textfile directory, the URL it POSTs its status to).

use super::{Ctx, ResolveError};
use crate::profile::Profile;
use crate::text::{has_controls, shown};
use vgpu_plan::plan::{DEFAULT_TEXTFILE_DIR, ReportPlan};

/// A URL or a directory is at most this long.
const MAX_CHARS: usize = 1024;

/// Checks `[report]`: `url` an `http://` or `https://` URL with a host,
/// `textfile-dir` an absolute directory without `.` or `..` (default
/// [`DEFAULT_TEXTFILE_DIR`]).
pub(super) fn report_plan(profile: &Profile, cx: &Ctx) -> Result<ReportPlan, ResolveError> {
    let r = &profile.report;
    if let Some(url) = &r.url {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        let host_ok = rest.is_some_and(|r| !r.is_empty() && !r.starts_with(['/', '?', '#']));
        let clean = !has_controls(url) && !url.contains(char::is_whitespace);
        if !host_ok || !clean || url.chars().count() > MAX_CHARS {
            return Err(cx.err(format!(
                "`report.url` = {} is not an http:// or https:// URL: give the address the agent POSTs its status to, e.g. \"https://collector.example.net/vgpu\" (at most {MAX_CHARS} characters, no spaces), or leave the key out",
                shown(url)
            )));
        }
    }
    let textfile_dir = match &r.textfile_dir {
        None => DEFAULT_TEXTFILE_DIR.to_owned(),
        Some(dir) => {
            let ok = dir.starts_with('/')
                && !dir.trim_matches('/').is_empty()
                && !has_controls(dir)
                && dir.chars().count() <= MAX_CHARS
                && dir.split('/').all(|c| c != "." && c != "..");
            if !ok {
                return Err(cx.err(format!(
                    "`report.textfile-dir` = {} is not usable: give an absolute directory other than / without `.` or `..` (at most {MAX_CHARS} characters), the one node_exporter's --collector.textfile.directory names, or leave the key out for Debian's {DEFAULT_TEXTFILE_DIR}",
                    shown(dir)
                )));
            }
            dir.trim_end_matches('/').to_owned()
        }
    };
    Ok(ReportPlan {
        url: r.url.clone(),
        textfile_dir,
    })
}

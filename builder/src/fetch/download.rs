//! HTTP download into `<name>.part` with resume, bounded retries, an HTML
//! guard and hashing while writing; the verified `.part` is renamed to the
//! final name, so the final name never holds partial or unverified data.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ureq::http::Response;

use super::error::{FetchError, io_err};
use super::progress::Reporter;
use super::{Expected, FetchOptions};
use crate::atomic;
use crate::hash::{Digests, Hasher};

/// Bytes read before anything is written, to spot an HTML page.
const SNIFF_LEN: usize = 1024;
const CHUNK: usize = 256 * 1024;

/// A verified download, now under its final name.
#[derive(Debug)]
pub(super) struct Done {
    pub digests: Digests,
    pub resumed_from: u64,
    pub attempts: u32,
}

/// What one request achieved, short of a fatal error.
enum Step {
    /// The `.part` holds the whole body; the last response began at this offset.
    Complete(u64),
    /// A transient failure, worth another attempt.
    Retry(String),
}

/// The locked partial file and the running hash of its contents.
struct Part {
    file: File,
    path: PathBuf,
    hasher: Hasher,
}

impl Part {
    /// Opens (or creates) and locks `path`; hashes data left by an earlier
    /// run once, so resumed bytes are covered by the final checksum (md5
    /// too when `md5`: only when one is expected).
    fn open(path: PathBuf, md5: bool) -> Result<Self, FetchError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err("opening the partial download", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(FetchError::Busy { path }),
            Err(TryLockError::Error(e)) => return Err(io_err("locking", &path)(e)),
        }
        let mut hasher = Hasher::new(md5);
        let mut buf = vec![0u8; CHUNK];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => hasher.update(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err("reading the partial download", &path)(e)),
            }
        }
        Ok(Self { file, path, hasher })
    }

    fn len(&self) -> u64 {
        self.hasher.size()
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), FetchError> {
        self.file
            .write_all(bytes)
            .map_err(io_err("writing", &self.path))?;
        self.hasher.update(bytes);
        Ok(())
    }

    /// Drops all partial data, to start again from byte 0.
    fn reset(&mut self) -> Result<(), FetchError> {
        self.file
            .set_len(0)
            .and_then(|()| io::Seek::rewind(&mut self.file))
            .map_err(io_err("truncating", &self.path))?;
        self.hasher = self.hasher.restart();
        Ok(())
    }

    fn remove(self) {
        let _ = fs::remove_file(&self.path);
    }

    /// On a failure: keep partial data for the next run, but no empty file.
    fn keep_if_useful(self) {
        if self.len() == 0 {
            self.remove();
        }
    }
}

/// Downloads `url` to `dest`, verifying it against `expect`.
pub(super) fn download(
    url: &str,
    dest: &Path,
    filename: &str,
    expect: &Expected,
    opts: &FetchOptions,
    report: &mut Reporter,
) -> Result<Done, FetchError> {
    let mut part_name = OsString::from(filename);
    part_name.push(".part");
    let mut part = Part::open(dest.with_file_name(part_name), expect.wants_md5())?;
    let agent = agent(opts.timeout);
    let ctx = Ctx { url, filename };
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let failure = match attempt(&agent, &ctx, &mut part, report) {
            Ok(Step::Complete(resumed_from)) => {
                report.finish(part.len());
                let digests = part.hasher.clone().finish();
                match expect.mismatch(&digests) {
                    None => {
                        install(part, dest)?;
                        return Ok(Done {
                            digests,
                            resumed_from,
                            attempts,
                        });
                    }
                    // Stale data from an earlier response may be to blame:
                    // try once more from scratch (within the retry budget).
                    Some(m) if resumed_from > 0 => {
                        part.reset()?;
                        format!("checksum mismatch after resuming ({m}); starting over")
                    }
                    Some(mismatch) => {
                        part.remove();
                        return Err(FetchError::DownloadMismatch {
                            url: url.to_owned(),
                            filename: filename.to_owned(),
                            mismatch,
                        });
                    }
                }
            }
            Ok(Step::Retry(reason)) => reason,
            Err(e) => {
                part.keep_if_useful();
                return Err(e);
            }
        };
        if attempts > opts.retries {
            let part_path = (part.len() > 0).then(|| part.path.clone());
            part.keep_if_useful();
            return Err(FetchError::GaveUp {
                url: url.to_owned(),
                filename: filename.to_owned(),
                attempts,
                last: failure,
                part: part_path,
            });
        }
        let wait = backoff(opts.backoff, attempts);
        report.note(&format!(
            "{url}: {failure}; retrying in {:.1} s (attempt {} of {})",
            wait.as_secs_f64(),
            attempts + 1,
            opts.retries.saturating_add(1)
        ));
        std::thread::sleep(wait);
    }
}

/// The `n`th wait: `base` doubled each time, at most a minute (or `base`).
fn backoff(base: Duration, n: u32) -> Duration {
    base.saturating_mul(1u32 << n.saturating_sub(1).min(16))
        .min(Duration::from_secs(60).max(base))
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_resolve(Some(timeout))
        .timeout_connect(Some(timeout))
        .timeout_per_read(Some(timeout))
        // Byte ranges refer to the stored file: no transparent gzip.
        .accept_encoding("identity")
        .user_agent(concat!("vgpu-bake/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

struct Ctx<'a> {
    url: &'a str,
    filename: &'a str,
}

impl Ctx<'_> {
    fn status(&self, status: u16) -> FetchError {
        FetchError::HttpStatus {
            url: self.url.to_owned(),
            filename: self.filename.to_owned(),
            status,
        }
    }

    fn html(&self) -> FetchError {
        FetchError::HtmlPage {
            url: self.url.to_owned(),
            filename: self.filename.to_owned(),
        }
    }

    /// Sorts a ureq error into "try again" or a fatal error.
    fn classify(&self, e: ureq::Error) -> Result<Step, FetchError> {
        match decide(&e) {
            Decision::Retry => Ok(Step::Retry(e.to_string())),
            Decision::Unresolved => Err(FetchError::HostNotFound {
                url: self.url.to_owned(),
                host: super::url_host(self.url).to_owned(),
                filename: self.filename.to_owned(),
                detail: e.to_string(),
            }),
            Decision::Fatal => Err(self.network(e.to_string())),
        }
    }

    fn network(&self, message: String) -> FetchError {
        FetchError::Network {
            url: self.url.to_owned(),
            filename: self.filename.to_owned(),
            message,
        }
    }
}

/// What a failed request calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// A transient failure (connection refused or cut, timeout): try again.
    Retry,
    /// The host name did not resolve: no retry, the user must act.
    Unresolved,
    /// Anything else retrying will not fix (TLS, a bad URL, ...).
    Fatal,
}

/// Whether a ureq error is worth another attempt.
fn decide(e: &ureq::Error) -> Decision {
    use ureq::Error as E;
    match e {
        E::HostNotFound => Decision::Unresolved,
        E::Io(io) if is_lookup_failure(io) => Decision::Unresolved,
        E::Io(_) | E::Timeout(_) | E::ConnectionFailed | E::Protocol(_) | E::BodyStalled => {
            Decision::Retry
        }
        _ => Decision::Fatal,
    }
}

/// ureq's resolver hands on the error of `ToSocketAddrs` as is: std's
/// `getaddrinfo` failure, which has no `ErrorKind` of its own, only this
/// message ("failed to lookup address information: Name or service not
/// known", or "... Temporary failure in name resolution" without DNS).
fn is_lookup_failure(e: &io::Error) -> bool {
    e.to_string()
        .starts_with("failed to lookup address information")
}

/// One request: resume from the `.part`'s length, stream the body into it.
fn attempt(
    agent: &ureq::Agent,
    ctx: &Ctx,
    part: &mut Part,
    report: &mut Reporter,
) -> Result<Step, FetchError> {
    let offset = part.len();
    let mut request = agent.get(ctx.url);
    if offset > 0 {
        request = request.header("Range", format!("bytes={offset}-"));
    }
    let mut resp = match request.call() {
        Ok(r) => r,
        Err(e) => return ctx.classify(e),
    };
    let status = resp.status().as_u16();
    let range = header(&resp, "content-range").and_then(ContentRange::parse);
    let (start, total) = match status {
        // A 200 to a resume means the server ignored Range: the body starts
        // at byte 0 (the `.part` is reset once the body proves to be no HTML).
        200 => (
            0,
            header(&resp, "content-length").and_then(|v| v.parse().ok()),
        ),
        206 => match range {
            Some(ContentRange {
                start: Some(start),
                total,
            }) if start == offset => (offset, total),
            _ => {
                part.reset()?;
                return Ok(Step::Retry(format!(
                    "the server answered a resume at byte {offset} with Content-Range {:?}; \
                     starting over",
                    header(&resp, "content-range").unwrap_or("(none)")
                )));
            }
        },
        // Range not satisfiable: the `.part` may already be complete.
        416 if offset > 0 => {
            if range.is_some_and(|r| r.start.is_none() && r.total == Some(offset)) {
                return Ok(Step::Complete(offset));
            }
            part.reset()?;
            return Ok(Step::Retry(format!(
                "HTTP 416 for a resume at byte {offset}; starting over"
            )));
        }
        408 | 429 | 500..=599 => return Ok(Step::Retry(format!("HTTP {status}"))),
        _ => return Err(ctx.status(status)),
    };
    if header(&resp, "content-type").is_some_and(is_html_type) {
        return Err(ctx.html());
    }
    report.begin(ctx.url, start, total);
    let mut reader = resp.body_mut().as_reader();
    let mut buf = vec![0u8; CHUNK];
    if start == 0 {
        // Look at the first bytes before writing any of them.
        let mut filled = 0;
        let mut failed = None;
        while filled < SNIFF_LEN && failed.is_none() {
            match reader.read(&mut buf[filled..SNIFF_LEN]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => failed = Some(e),
            }
        }
        let head = &buf[..filled];
        if looks_like_html(head) {
            return Err(ctx.html());
        }
        // Keep bytes from a cut response too (so repeated early cuts still
        // make progress), unless they are blank and so prove nothing yet.
        if failed.is_none() || !head.iter().all(u8::is_ascii_whitespace) {
            if offset > 0 {
                report.note(&format!(
                    "{}: the server ignored the resume request; starting over",
                    ctx.url
                ));
                part.reset()?;
            }
            part.append(head)?;
            report.advance(part.len());
        }
        if let Some(e) = failed {
            return ctx.classify(e.into());
        }
    }
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                part.append(&buf[..n])?;
                report.advance(part.len());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return ctx.classify(e.into()),
        }
    }
    match total {
        Some(t) if part.len() < t => Ok(Step::Retry(format!(
            "connection closed after {} of {t} bytes",
            part.len()
        ))),
        _ => Ok(Step::Complete(start)),
    }
}

/// fsync, then rename the verified `.part` to its final name.
fn install(part: Part, dest: &Path) -> Result<(), FetchError> {
    let path = part.path.clone();
    part.file.sync_all().map_err(io_err("syncing", &path))?;
    part.file
        .set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(io_err("setting the mode of", &path))?;
    fs::rename(&path, dest).map_err(io_err("renaming the finished download to", dest))?;
    drop(part);
    if let Some(dir) = dest.parent() {
        atomic::sync_dir(dir)?;
    }
    Ok(())
}

fn header<'a, B>(resp: &'a Response<B>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

fn is_html_type(content_type: &str) -> bool {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("text/html") || mime.eq_ignore_ascii_case("application/xhtml+xml")
}

/// Whether a body starts (after whitespace or a BOM) like an HTML page.
fn looks_like_html(head: &[u8]) -> bool {
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let start = head.iter().position(|b| !b.is_ascii_whitespace());
    let Some(rest) = start.map(|i| &head[i..]) else {
        return false;
    };
    [&b"<!doctype"[..], b"<html"]
        .iter()
        .any(|tag| rest.len() >= tag.len() && rest[..tag.len()].eq_ignore_ascii_case(tag))
}

/// `Content-Range: bytes START-END/TOTAL`, or `bytes */TOTAL` on a 416.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ContentRange {
    start: Option<u64>,
    total: Option<u64>,
}

impl ContentRange {
    fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let rest = value
            .get(..6)
            .filter(|p| p.eq_ignore_ascii_case("bytes "))
            .and_then(|_| value.get(6..))?;
        let (span, total) = rest.trim().split_once('/')?;
        let total = match total.trim() {
            "*" => None,
            t => Some(t.parse().ok()?),
        };
        let start = match span.trim() {
            "*" => None,
            s => {
                let (a, b) = s.split_once('-')?;
                let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if b < a {
                    return None;
                }
                Some(a)
            }
        };
        Some(Self { start, total })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        let p = ContentRange::parse;
        assert_eq!(
            p("bytes 100-199/200"),
            Some(ContentRange {
                start: Some(100),
                total: Some(200)
            })
        );
        assert_eq!(
            p("bytes 0-9/*"),
            Some(ContentRange {
                start: Some(0),
                total: None
            })
        );
        assert_eq!(
            p("bytes */500"),
            Some(ContentRange {
                start: None,
                total: Some(500)
            })
        );
        assert_eq!(p("bytes 9-1/20"), None);
        assert_eq!(p("items 0-1/2"), None);
        assert_eq!(p("bytes"), None);
        assert_eq!(p(""), None);
    }

    #[test]
    fn html_sniffing() {
        assert!(looks_like_html(b"<!DOCTYPE html><html>"));
        assert!(looks_like_html(b" \r\n\t<HTML lang=en>"));
        assert!(looks_like_html(b"\xEF\xBB\xBF<!doctype html>"));
        assert!(!looks_like_html(b"#!/bin/sh\n# makeself"));
        assert!(!looks_like_html(b"   "));
        assert!(!looks_like_html(b"<ht"));
        assert!(is_html_type("text/html; charset=UTF-8"));
        assert!(is_html_type(" TEXT/HTML"));
        assert!(!is_html_type("application/octet-stream"));
    }

    #[test]
    fn unresolved_hosts_are_not_retried() {
        let lookup =
            io::Error::other("failed to lookup address information: Name or service not known");
        assert_eq!(decide(&ureq::Error::Io(lookup)), Decision::Unresolved);
        assert_eq!(decide(&ureq::Error::HostNotFound), Decision::Unresolved);
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(decide(&ureq::Error::Io(refused)), Decision::Retry);
        assert_eq!(decide(&ureq::Error::ConnectionFailed), Decision::Retry);
        assert_eq!(decide(&ureq::Error::BodyStalled), Decision::Retry);
        assert_eq!(decide(&ureq::Error::TooManyRedirects), Decision::Fatal);
    }

    /// The real resolver's error for a name that never resolves (RFC 6761)
    /// is recognised as one, whatever the resolver's exact wording.
    #[test]
    fn std_lookup_failure_is_recognised() {
        use std::net::ToSocketAddrs;
        let err = ("nonexistent.invalid", 80).to_socket_addrs().unwrap_err();
        assert!(is_lookup_failure(&err), "{err}");
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(2), 1), s(2));
        assert_eq!(backoff(s(2), 2), s(4));
        assert_eq!(backoff(s(2), 4), s(16));
        assert_eq!(backoff(s(2), 30), s(60));
        assert_eq!(backoff(Duration::ZERO, 3), Duration::ZERO);
    }
}

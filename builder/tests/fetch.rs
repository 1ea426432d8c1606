//! `vgpu_bake::fetch` against a real HTTP server on 127.0.0.1.

#[path = "support/http.rs"]
mod http;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use http::{Reply, Server};
use vgpu_bake::fetch::{
    FetchError, FetchOptions, FetchRequest, Fetched, Outcome, ProgressMode, cached_digests,
    cached_file, fetch,
};
use vgpu_bake::hash::{Digests, digest_bytes, md5_hex};

const NAME: &str = "NVIDIA-Linux-x86_64-550.144.02-vgpu-kvm.run";
const LEN: usize = 300_000;
const CUT: usize = 100_000;

/// A few hundred KB that start like a makeself `.run`.
fn payload() -> Vec<u8> {
    let mut out = b"#!/bin/sh\n# fake NVIDIA installer\n".to_vec();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while out.len() < LEN {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(LEN);
    out
}

fn opts(dir: &Path) -> FetchOptions {
    FetchOptions {
        retries: 3,
        backoff: Duration::from_millis(1),
        timeout: Duration::from_secs(5),
        progress: ProgressMode::Quiet,
        ..FetchOptions::new(dir.to_path_buf())
    }
}

fn request(url: Option<String>, md5: Option<&str>) -> FetchRequest {
    FetchRequest {
        filename: NAME.to_owned(),
        url,
        md5: md5.map(str::to_owned),
        ..FetchRequest::default()
    }
}

/// `fetch` of `server`'s file with the default test options.
fn get(server: &Server, md5: &str, dir: &Path) -> Result<Fetched, FetchError> {
    fetch(&request(Some(server.url(NAME)), Some(md5)), &opts(dir))
}

fn downloaded(resumed_from: u64, attempts: u32) -> Outcome {
    Outcome::Downloaded {
        resumed_from,
        attempts,
    }
}

/// Names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn sidecar_name() -> String {
    format!("{NAME}.digests.toml")
}

/// `data`'s digests, with its md5 only when `md5` (one was expected).
fn digests(data: &[u8], md5: bool) -> Digests {
    Digests {
        md5: md5.then(|| md5_hex(data)),
        ..digest_bytes(data)
    }
}

/// A download that succeeded: file, digests (md5 only when one was
/// expected) and sidecar are right, nothing else is left.
fn assert_downloaded(f: &Fetched, dir: &Path, data: &[u8], md5: bool) {
    assert_eq!(f.path, dir.join(NAME));
    assert_eq!(fs::read(&f.path).unwrap(), data);
    assert_eq!(f.digests, digests(data, md5));
    let sidecar = fs::read_to_string(dir.join(sidecar_name())).unwrap();
    assert_eq!(sidecar.contains("md5 = "), md5, "{sidecar}");
    assert_eq!(listing(dir), [NAME.to_owned(), sidecar_name()]);
}

#[test]
fn downloads_good_file() {
    let data = payload();
    let md5 = md5_hex(&data);
    let server = Server::start(data.clone(), vec![]);
    let dir = tempfile::tempdir().unwrap();
    let f = get(&server, &md5, dir.path()).unwrap();
    assert_eq!(f.outcome, downloaded(0, 1));
    assert_downloaded(&f, dir.path(), &data, true);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].path, format!("/{NAME}"));
    assert_eq!(reqs[0].range(), None);
    let line = f.describe();
    assert!(line.starts_with("downloaded "), "{line}");
    assert!(line.contains("1 attempt"), "{line}");
}

#[test]
fn sha256_alone_is_enough_to_download() {
    let data = payload();
    let server = Server::start(data.clone(), vec![]);
    let dir = tempfile::tempdir().unwrap();
    let req = FetchRequest {
        sha256: Some(digest_bytes(&data).sha256.to_uppercase()),
        ..request(Some(server.url(NAME)), None)
    };
    let f = fetch(&req, &opts(dir.path())).unwrap();
    // No md5 declared: none computed, none in the sidecar.
    assert_downloaded(&f, dir.path(), &data, false);
    // The cached copy checked again: still sha256 alone.
    let again = fetch(&req, &opts(dir.path())).unwrap();
    assert_eq!(again.outcome, Outcome::CacheHit);
    assert!(
        again.describe().ends_with("(md5 not declared)"),
        "{}",
        again.describe()
    );
    assert_downloaded(&again, dir.path(), &data, false);
}

#[test]
fn resumes_after_a_cut() {
    let data = payload();
    let md5 = md5_hex(&data);
    let server = Server::start(data.clone(), vec![Reply::CutAfter(CUT)]);
    let dir = tempfile::tempdir().unwrap();
    // Plain progress lines (captured by the test harness) exercise that path.
    let o = FetchOptions {
        progress: ProgressMode::Plain,
        ..opts(dir.path())
    };
    let f = fetch(&request(Some(server.url(NAME)), Some(&md5)), &o).unwrap();
    assert_eq!(f.outcome, downloaded(CUT as u64, 2));
    assert_downloaded(&f, dir.path(), &data, true);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].range(), None);
    assert_eq!(reqs[1].range(), Some(format!("bytes={CUT}-").as_str()));
    let line = f.describe();
    assert!(
        line.contains(&format!("resumed at {CUT} bytes, 2 attempts")),
        "{line}"
    );
}

#[test]
fn resumes_a_part_left_by_an_earlier_run() {
    let data = payload();
    let md5 = md5_hex(&data);
    let server = Server::start(data.clone(), vec![]);
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(format!("{NAME}.part")), &data[..CUT]).unwrap();
    let f = get(&server, &md5, dir.path()).unwrap();
    assert_eq!(f.outcome, downloaded(CUT as u64, 1));
    assert_downloaded(&f, dir.path(), &data, true);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].range(), Some(format!("bytes={CUT}-").as_str()));
}

#[test]
fn complete_part_is_verified_after_416() {
    let data = payload();
    let md5 = md5_hex(&data);
    let server = Server::start(data.clone(), vec![]);
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(format!("{NAME}.part")), &data).unwrap();
    let f = get(&server, &md5, dir.path()).unwrap();
    assert_eq!(f.outcome, downloaded(LEN as u64, 1));
    assert_downloaded(&f, dir.path(), &data, true);
}

#[test]
fn server_ignoring_range_restarts_from_zero() {
    let data = payload();
    let md5 = md5_hex(&data);
    let script = vec![Reply::CutAfter(CUT), Reply::IgnoreRange];
    let server = Server::start(data.clone(), script);
    let dir = tempfile::tempdir().unwrap();
    let f = get(&server, &md5, dir.path()).unwrap();
    assert_eq!(f.outcome, downloaded(0, 2));
    assert_downloaded(&f, dir.path(), &data, true);
    assert_eq!(
        server.requests()[1].range(),
        Some(format!("bytes={CUT}-").as_str())
    );
}

#[test]
fn wrong_md5_download_is_deleted() {
    let data = payload();
    let md5 = md5_hex(&data);
    let mut wrong = data.clone();
    wrong[LEN / 2] ^= 0xff;
    let actual = md5_hex(&wrong);
    let server = Server::start(data, vec![Reply::Bytes(wrong)]);
    let dir = tempfile::tempdir().unwrap();
    let url = server.url(NAME);
    let err = fetch(&request(Some(url.clone()), Some(&md5)), &opts(dir.path())).unwrap_err();
    assert!(
        matches!(err, FetchError::DownloadMismatch { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    for needle in [url.as_str(), &md5, &actual, "deleted", "--driver-file"] {
        assert!(msg.contains(needle), "{needle:?} not in: {msg}");
    }
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
    assert_eq!(server.requests().len(), 1, "a wrong body is not retried");
}

#[test]
fn wrong_pinned_sha256_is_reported() {
    let data = payload();
    let d = digest_bytes(&data);
    let md5 = md5_hex(&data);
    let server = Server::start(data, vec![]);
    let dir = tempfile::tempdir().unwrap();
    let pinned = "ab".repeat(32);
    let req = FetchRequest {
        sha256: Some(pinned.clone()),
        ..request(Some(server.url(NAME)), Some(&md5))
    };
    let msg = fetch(&req, &opts(dir.path())).unwrap_err().to_string();
    assert!(
        msg.contains(&format!("sha256 expected {pinned}, got {}", d.sha256)),
        "{msg}"
    );
    assert!(!msg.contains("md5 expected"), "md5 matched: {msg}");
    assert!(listing(dir.path()).is_empty());
}

fn assert_html_refused(reply: Reply) {
    let data = payload();
    let md5 = md5_hex(&data);
    let server = Server::start(data, vec![reply]);
    let dir = tempfile::tempdir().unwrap();
    let err = get(&server, &md5, dir.path()).unwrap_err();
    assert!(matches!(err, FetchError::HtmlPage { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("HTML page") && msg.contains(&server.url(NAME)),
        "{msg}"
    );
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
    assert_eq!(server.requests().len(), 1, "an HTML page is not retried");
}

#[test]
fn html_page_is_refused() {
    assert_html_refused(Reply::Html);
}

#[test]
fn html_body_with_binary_content_type_is_refused() {
    assert_html_refused(Reply::HtmlBody);
}

#[test]
fn html_page_on_resume_keeps_the_partial_download() {
    let data = payload();
    let md5 = md5_hex(&data);
    let server = Server::start(data.clone(), vec![Reply::Html]);
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join(format!("{NAME}.part"));
    fs::write(&part, &data[..CUT]).unwrap();
    let err = get(&server, &md5, dir.path()).unwrap_err();
    assert!(matches!(err, FetchError::HtmlPage { .. }), "{err:?}");
    assert_eq!(fs::read(&part).unwrap(), &data[..CUT]);
    assert!(!dir.path().join(NAME).exists());
}

#[test]
fn not_found_is_not_retried() {
    let data = payload();
    let md5 = md5_hex(&data);
    let server = Server::with_fallback(data, vec![], Reply::Status(404));
    let dir = tempfile::tempdir().unwrap();
    let url = server.url(NAME);
    let err = fetch(&request(Some(url.clone()), Some(&md5)), &opts(dir.path())).unwrap_err();
    assert!(
        matches!(err, FetchError::HttpStatus { status: 404, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    for needle in [url.as_str(), "404", "--driver-file"] {
        assert!(msg.contains(needle), "{needle:?} not in: {msg}");
    }
    assert_eq!(server.requests().len(), 1);
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn server_error_is_retried() {
    let data = payload();
    let md5 = md5_hex(&data);
    let server = Server::start(data.clone(), vec![Reply::Status(503), Reply::Status(500)]);
    let dir = tempfile::tempdir().unwrap();
    let f = get(&server, &md5, dir.path()).unwrap();
    assert_eq!(f.outcome, downloaded(0, 3));
    assert_downloaded(&f, dir.path(), &data, true);
}

#[test]
fn repeated_cuts_give_up_after_the_retry_cap() {
    let data = payload();
    let md5 = md5_hex(&data);
    let server = Server::with_fallback(data.clone(), vec![], Reply::CutAfter(1000));
    let dir = tempfile::tempdir().unwrap();
    let o = FetchOptions {
        retries: 2,
        ..opts(dir.path())
    };
    let url = server.url(NAME);
    let err = fetch(&request(Some(url.clone()), Some(&md5)), &o).unwrap_err();
    assert!(
        matches!(err, FetchError::GaveUp { attempts: 3, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    let part = format!("{NAME}.part");
    for needle in [url.as_str(), "3 attempts", part.as_str(), "--driver-file"] {
        assert!(msg.contains(needle), "{needle:?} not in: {msg}");
    }
    assert_eq!(server.requests().len(), 3);
    // Only the partial file is left, for the next run to resume.
    assert_eq!(listing(dir.path()), [part.as_str()]);
    assert_eq!(fs::read(dir.path().join(&part)).unwrap(), &data[..3000]);
}

#[test]
fn stalled_server_times_out_and_is_retried() {
    let data = payload();
    let md5 = md5_hex(&data);
    let server = Server::start(data.clone(), vec![Reply::Stall(Duration::from_secs(3))]);
    let dir = tempfile::tempdir().unwrap();
    let o = FetchOptions {
        timeout: Duration::from_millis(300),
        ..opts(dir.path())
    };
    let f = fetch(&request(Some(server.url(NAME)), Some(&md5)), &o).unwrap();
    assert_eq!(f.outcome, downloaded(0, 2));
}

#[test]
fn connection_refused_is_retried_then_reported() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/{NAME}");
    let dir = tempfile::tempdir().unwrap();
    let o = FetchOptions {
        retries: 1,
        ..opts(dir.path())
    };
    let err = fetch(&request(Some(url.clone()), Some(&"0".repeat(32))), &o).unwrap_err();
    assert!(
        matches!(err, FetchError::GaveUp { attempts: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&url), "{err}");
    // No byte arrived: no partial file, and the message promises none.
    assert!(!err.to_string().contains(".part"), "{err}");
    assert!(listing(dir.path()).is_empty());
}

/// A host name that never resolves (RFC 6761's `.invalid`) is reported at
/// once, by name, with what to do; no retry, no partial file.
#[test]
fn unresolvable_host_fails_without_retrying() {
    let url = "http://nonexistent.invalid/x.run".to_owned();
    let dir = tempfile::tempdir().unwrap();
    let err = fetch(
        &request(Some(url.clone()), Some(&"0".repeat(32))),
        &opts(dir.path()),
    )
    .unwrap_err();
    assert!(
        matches!(&err, FetchError::HostNotFound { host, .. } if host == "nonexistent.invalid"),
        "{err:?}"
    );
    let msg = err.to_string();
    for needle in [
        url.as_str(),
        "\"nonexistent.invalid\"",
        "does not resolve",
        "--driver-file FILE",
    ] {
        assert!(msg.contains(needle), "{needle:?} not in: {msg}");
    }
    assert!(!msg.contains(".part"), "{msg}");
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn cache_hit_makes_no_request() {
    let data = payload();
    let md5 = md5_hex(&data);
    let server = Server::start(data.clone(), vec![]);
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(NAME), &data).unwrap();
    let f = get(&server, &md5, dir.path()).unwrap();
    assert_eq!(f.outcome, Outcome::CacheHit);
    assert_downloaded(&f, dir.path(), &data, true);
    assert!(server.requests().is_empty());
    let line = f.describe();
    assert!(
        line.starts_with("cache hit: ") && line.contains("no download"),
        "{line}"
    );
    // A cache hit needs no URL at all.
    let f = fetch(&request(None, Some(&md5)), &opts(dir.path())).unwrap();
    assert_eq!(f.outcome, Outcome::CacheHit);
}

#[test]
fn corrupt_cached_file_is_kept_as_bak_and_downloaded_again() {
    let data = payload();
    let md5 = md5_hex(&data);
    let server = Server::start(data.clone(), vec![]);
    let dir = tempfile::tempdir().unwrap();
    let bak = format!("{NAME}.bak");
    fs::write(dir.path().join(NAME), b"truncated download").unwrap();
    fs::write(dir.path().join(&bak), b"an older backup").unwrap();
    let f = get(&server, &md5, dir.path()).unwrap();
    assert!(matches!(f.outcome, Outcome::Downloaded { .. }), "{f:?}");
    assert_eq!(fs::read(&f.path).unwrap(), data);
    assert_eq!(
        fs::read(dir.path().join(&bak)).unwrap(),
        b"truncated download"
    );
    assert_eq!(listing(dir.path()), [NAME.to_owned(), bak, sidecar_name()]);
    assert_eq!(server.requests().len(), 1);
}

fn user_file(data: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dl = tempfile::tempdir().unwrap();
    let path = dl.path().join("downloaded-by-hand.run");
    fs::write(&path, data).unwrap();
    (dl, path)
}

#[test]
fn driver_file_is_verified_and_imported() {
    let data = payload();
    let (_dl, path) = user_file(&data);
    let dir = tempfile::tempdir().unwrap();
    // A stale partial download is dropped once the file is imported.
    fs::write(dir.path().join(format!("{NAME}.part")), &data[..10]).unwrap();
    let req = FetchRequest {
        filename: NAME.to_owned(),
        url: Some("https://mega.nz/file/whatever".to_owned()),
        sha256: Some(digest_bytes(&data).sha256),
        driver_file: Some(path.clone()),
        ..FetchRequest::default()
    };
    let f = fetch(&req, &opts(dir.path())).unwrap();
    let stamp = vgpu_bake::stamp::FileStamp::of(&std::fs::metadata(&path).unwrap());
    assert_eq!(
        f.outcome,
        Outcome::Imported {
            from: path.clone(),
            stamp: Some(stamp)
        }
    );
    assert_downloaded(&f, dir.path(), &data, false);
    assert!(
        f.describe()
            .starts_with(&format!("imported {}", path.display()))
    );
    assert_eq!(
        fs::read(&path).unwrap(),
        data,
        "the user's file is untouched"
    );
}

#[test]
fn driver_file_with_wrong_checksum_is_refused() {
    let data = payload();
    let (_dl, path) = user_file(&data[..LEN - 1]);
    let actual = md5_hex(&data[..LEN - 1]);
    let expected = md5_hex(&data);
    let dir = tempfile::tempdir().unwrap();
    let req = FetchRequest {
        driver_file: Some(path.clone()),
        ..request(None, Some(&expected))
    };
    let err = fetch(&req, &opts(dir.path())).unwrap_err();
    assert!(matches!(err, FetchError::FileMismatch { .. }), "{err:?}");
    let msg = err.to_string();
    for needle in [path.to_str().unwrap(), &expected, &actual] {
        assert!(msg.contains(needle), "{needle:?} not in: {msg}");
    }
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
}

#[test]
fn driver_file_without_checksum_is_refused() {
    let (_dl, path) = user_file(b"anything");
    let dir = tempfile::tempdir().unwrap();
    let req = FetchRequest {
        driver_file: Some(path.clone()),
        ..request(None, None)
    };
    let msg = fetch(&req, &opts(dir.path())).unwrap_err().to_string();
    assert!(
        msg.contains(path.to_str().unwrap()) && msg.contains("--sha256"),
        "{msg}"
    );
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn no_known_checksum_is_refused() {
    let server = Server::start(payload(), vec![]);
    let dir = tempfile::tempdir().unwrap();
    let err = fetch(&request(Some(server.url(NAME)), None), &opts(dir.path())).unwrap_err();
    assert!(matches!(err, FetchError::NoChecksum { .. }), "{err:?}");
    let msg = err.to_string();
    for needle in [
        NAME,
        "no known checksum",
        "download the file yourself",
        "--driver-file FILE --sha256 <hex>",
        "--md5",
    ] {
        assert!(msg.contains(needle), "{needle:?} not in: {msg}");
    }
    assert!(server.requests().is_empty());
}

#[test]
fn mega_url_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = "https://mega.nz/file/AbCdEf#key".to_owned();
    let req = request(Some(url.clone()), Some(&"0".repeat(32)));
    let err = fetch(&req, &opts(dir.path())).unwrap_err();
    assert!(matches!(err, FetchError::MegaUrl { .. }), "{err:?}");
    let msg = err.to_string();
    for needle in [url.as_str(), "browser", "--driver-file"] {
        assert!(msg.contains(needle), "{needle:?} not in: {msg}");
    }
}

#[test]
fn missing_url_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = fetch(&request(None, Some(&"0".repeat(32))), &opts(dir.path())).unwrap_err();
    assert!(matches!(err, FetchError::NoUrl { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(NAME) && msg.contains("--driver-file"), "{msg}");
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(None, Some("not-hex"));
    let msg = fetch(&req, &opts(dir.path())).unwrap_err().to_string();
    assert!(
        msg.contains("not-hex") && msg.contains("32 hex digits"),
        "{msg}"
    );
    req.md5 = Some("0".repeat(32));
    req.filename = "../escape.run".to_owned();
    assert!(matches!(
        fetch(&req, &opts(dir.path())),
        Err(FetchError::BadFilename { .. })
    ));
    assert!(cached_digests(dir.path(), "a/b").is_err());
}

#[test]
fn partial_download_in_use_is_not_shared() {
    let data = payload();
    let md5 = md5_hex(&data);
    let server = Server::start(data, vec![]);
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join(format!("{NAME}.part"));
    let held = fs::File::create(&part).unwrap();
    held.lock().unwrap();
    let err = get(&server, &md5, dir.path()).unwrap_err();
    assert!(matches!(err, FetchError::Busy { .. }), "{err:?}");
    assert!(server.requests().is_empty());
}

#[test]
fn cached_digests_trusts_the_sidecar_until_the_file_changes() {
    let data = payload();
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(cached_digests(dir.path(), NAME).unwrap(), None);

    // First call hashes the file and writes the sidecar.
    let file = dir.path().join(NAME);
    fs::write(&file, &data).unwrap();
    let d = cached_digests(dir.path(), NAME).unwrap().unwrap();
    assert_eq!(d, digest_bytes(&data));
    assert_eq!(d.md5, None, "nothing asked for the md5");
    let sidecar = dir.path().join(sidecar_name());
    let text = fs::read_to_string(&sidecar).unwrap();
    assert!(text.contains(&d.sha256) && !text.contains("md5"), "{text}");

    // Trusted while size and mtime match: a doctored sha256 is believed,
    // which proves the file was not read again.
    let fake = "f".repeat(64);
    fs::write(&sidecar, text.replace(&d.sha256, &fake)).unwrap();
    let trusted = cached_digests(dir.path(), NAME).unwrap().unwrap();
    assert_eq!(trusted.sha256, fake);

    // Same size, new contents and mtime: hashed again, sidecar rewritten.
    let mut changed = data.clone();
    changed[0] = b'X';
    fs::write(&file, &changed).unwrap();
    let later = SystemTime::now() + Duration::from_secs(5);
    fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let d2: Digests = cached_digests(dir.path(), NAME).unwrap().unwrap();
    assert_eq!(d2, digest_bytes(&changed));
    assert!(fs::read_to_string(&sidecar).unwrap().contains(&d2.sha256));

    // Another size: hashed again too.
    fs::write(&file, &data[..1000]).unwrap();
    let d3 = cached_digests(dir.path(), NAME).unwrap().unwrap();
    assert_eq!(d3, digest_bytes(&data[..1000]));

    // Replaced by another file (a new inode) with the same size and mtime:
    // the stamp differs, so it is hashed again despite a doctored sidecar.
    let text = fs::read_to_string(&sidecar).unwrap();
    fs::write(&sidecar, text.replace(&d3.sha256, &fake)).unwrap();
    assert_eq!(
        cached_digests(dir.path(), NAME).unwrap().unwrap().sha256,
        fake
    );
    let mtime = fs::metadata(&file).unwrap().modified().unwrap();
    let mut other = data[..1000].to_vec();
    other[1] = b'Y';
    let replacement = dir.path().join("replacement");
    fs::write(&replacement, &other).unwrap();
    fs::File::options()
        .write(true)
        .open(&replacement)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    fs::rename(&replacement, &file).unwrap();
    let d4 = cached_digests(dir.path(), NAME).unwrap().unwrap();
    assert_eq!(d4, digest_bytes(&other));
    let text = fs::read_to_string(&sidecar).unwrap();
    assert!(text.contains("ino = ") && text.contains("dev = "), "{text}");
}

/// A sidecar without md5 (nothing expected one when it was written) is
/// trusted for the sha256 alone: once an md5 is expected the file is
/// hashed again, md5 included, and the sidecar gains it. A sidecar with an
/// md5 (as every older one has) is still trusted for both.
#[test]
fn a_sidecar_without_md5_is_not_enough_when_one_is_expected() {
    let data = payload();
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(NAME), &data).unwrap();
    assert_eq!(
        cached_digests(dir.path(), NAME).unwrap(),
        Some(digests(&data, false))
    );
    let sidecar = dir.path().join(sidecar_name());
    let text = fs::read_to_string(&sidecar).unwrap();
    assert!(!text.contains("md5"), "{text}");
    // A doctored sha256 shows whether the file was read again.
    let fake = "f".repeat(64);
    let sha = digest_bytes(&data).sha256;
    fs::write(&sidecar, text.replace(&sha, &fake)).unwrap();
    let trusted = cached_file(dir.path(), NAME, false).unwrap().unwrap();
    assert_eq!(
        (trusted.digests.sha256.as_str(), trusted.digests.md5),
        (fake.as_str(), None)
    );
    // md5 expected: hashed again (the real sha256), md5 computed, recorded.
    let rehashed = cached_file(dir.path(), NAME, true).unwrap().unwrap();
    assert_eq!(rehashed.digests, digests(&data, true));
    let text = fs::read_to_string(&sidecar).unwrap();
    assert!(
        text.contains(&format!("md5 = \"{}\"", md5_hex(&data))),
        "{text}"
    );
    // A sidecar with an md5 (the older format too) is trusted for both.
    fs::write(&sidecar, text.replace(&sha, &fake)).unwrap();
    let old = cached_file(dir.path(), NAME, true).unwrap().unwrap();
    assert_eq!(old.digests.sha256, fake);
    assert_eq!(old.digests.md5, Some(md5_hex(&data)));
}

#[test]
fn fetch_writes_a_sidecar_cached_digests_can_use() {
    let data = payload();
    let md5 = md5_hex(&data);
    let server = Server::start(data.clone(), vec![]);
    let dir = tempfile::tempdir().unwrap();
    let f = get(&server, &md5, dir.path()).unwrap();
    let text = fs::read_to_string(dir.path().join(sidecar_name())).unwrap();
    assert!(text.contains(&f.digests.sha256), "{text}");
    assert_eq!(cached_digests(dir.path(), NAME).unwrap(), Some(f.digests));
}

/// `fetch` in a thread, failing the test if it has not returned after 20 s.
fn fetch_guarded(req: FetchRequest, dir: &Path) -> Result<Fetched, FetchError> {
    let o = opts(dir);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(fetch(&req, &o));
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("fetch blocked on a file that is not a regular file")
}

#[test]
fn a_driver_file_that_is_a_fifo_or_a_device_is_refused_without_blocking() {
    let dl = tempfile::tempdir().unwrap();
    let fifo = dl.path().join("driver.run");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let dir = tempfile::tempdir().unwrap();
    for (path, kind) in [
        (fifo, "a FIFO (named pipe)"),
        (PathBuf::from("/dev/zero"), "a character device"),
    ] {
        let req = FetchRequest {
            driver_file: Some(path.clone()),
            sha256: Some("ab".repeat(32)),
            ..request(None, None)
        };
        let msg = fetch_guarded(req, dir.path()).unwrap_err().to_string();
        assert_eq!(
            msg,
            format!(
                "{}: it is {kind}, not a regular file; pass the downloaded .run file itself with --driver-file FILE",
                path.display()
            )
        );
        assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
    }
}

//! Errors of [`crate::fetch`]. Each message names the URL or file involved
//! and says what the user can do next; they are printed on stderr as is.

use std::io;
use std::path::{Path, PathBuf};

use crate::atomic::AtomicError;

/// Why a driver file could not be fetched, verified or imported.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The registry filename would escape the cache directory.
    #[error(
        "{filename:?} is not a plain file name (it must not be empty or contain '/'); \
         fix the driver registry entry"
    )]
    BadFilename {
        /// The rejected name.
        filename: String,
    },

    /// A checksum that is not hex of the right length.
    #[error(
        "{filename}: the expected {kind} {value:?} is not {len} hex digits; \
         check the registry entry, the profile's pin or the --{kind} value"
    )]
    BadChecksum {
        /// Registry filename.
        filename: String,
        /// `md5` or `sha256`.
        kind: &'static str,
        /// The rejected value.
        value: String,
        /// Hex digits expected.
        len: usize,
    },

    /// Neither md5 nor sha256 is known, so a download could not be verified.
    #[error(
        "{filename}: this release has no known checksum, so a download cannot be verified; \
         download the file yourself and run with --driver-file FILE --sha256 <hex> (or --md5 <hex>)"
    )]
    NoChecksum {
        /// Registry filename.
        filename: String,
    },

    /// `--driver-file` was given without any checksum to check it against.
    #[error(
        "{path}: no checksum to verify this file against; run with --driver-file {path} \
         --sha256 <hex> (or --md5 <hex>) using the checksum published with the download"
    )]
    NoChecksumForFile {
        /// The user's file.
        path: PathBuf,
    },

    /// `--driver-file` names a FIFO, a device or a directory.
    #[error("{path}: {reason}; pass the downloaded .run file itself with --driver-file FILE")]
    NotAFile {
        /// The user's path.
        path: PathBuf,
        /// What it is instead.
        reason: String,
    },

    /// The registry has no URL for this release.
    #[error(
        "{filename}: no download URL is known for this release; download it yourself \
         and run with --driver-file FILE"
    )]
    NoUrl {
        /// Registry filename.
        filename: String,
    },

    /// A Mega link, which needs the Mega client rather than plain HTTP.
    #[error(
        "{url}: this is a Mega link and needs the Mega client; open it in a browser, \
         download {filename}, and run with --driver-file FILE"
    )]
    MegaUrl {
        /// Registry filename.
        filename: String,
        /// The link.
        url: String,
    },

    /// Not an http:// or https:// URL.
    #[error(
        "{url}: only http:// and https:// URLs can be downloaded; download {filename} \
         yourself and run with --driver-file FILE"
    )]
    UnsupportedUrl {
        /// Registry filename.
        filename: String,
        /// The URL.
        url: String,
    },

    /// A status that retrying will not fix (404, 403, 410, other 4xx).
    #[error(
        "{url}: HTTP {status}: the server does not provide {filename} there (moved, removed \
         or access denied); download it yourself and run with --driver-file FILE"
    )]
    HttpStatus {
        /// The URL requested.
        url: String,
        /// Registry filename.
        filename: String,
        /// The HTTP status.
        status: u16,
    },

    /// The server answered with a web page (error, login or bot check).
    #[error(
        "{url}: the server sent an HTML page instead of {filename} (an error, login or \
         bot-check page); nothing was saved. Open the URL in a browser, download the file, \
         and run with --driver-file FILE"
    )]
    HtmlPage {
        /// The URL requested.
        url: String,
        /// Registry filename.
        filename: String,
    },

    /// A complete download whose checksum is wrong; it was deleted.
    #[error(
        "{url}: the downloaded {filename} has the wrong checksum ({mismatch}); it was deleted. \
         The server may serve a different or corrupt file: download it yourself, check it, \
         and run with --driver-file FILE"
    )]
    DownloadMismatch {
        /// The URL requested.
        url: String,
        /// Registry filename.
        filename: String,
        /// Expected vs actual, per checksum.
        mismatch: String,
    },

    /// A `--driver-file` whose checksum is wrong.
    #[error(
        "{path}: checksum mismatch ({mismatch}); this is not the expected {filename}. \
         Download it again, or check the --md5/--sha256 value"
    )]
    FileMismatch {
        /// The user's file.
        path: PathBuf,
        /// Registry filename.
        filename: String,
        /// Expected vs actual, per checksum.
        mismatch: String,
    },

    /// Transient failures until the retry budget ran out.
    #[error(
        "{url}: giving up after {attempts} attempts, last: {last}. Check the network and run \
         again{}, or download {filename} yourself and run with --driver-file FILE",
        resume_note(.part.as_deref())
    )]
    GaveUp {
        /// The URL requested.
        url: String,
        /// Registry filename.
        filename: String,
        /// Requests made.
        attempts: u32,
        /// The last failure.
        last: String,
        /// Where partial data is kept: only when the `.part` holds bytes.
        part: Option<PathBuf>,
    },

    /// The URL's host name does not resolve: retrying will not fix it.
    #[error(
        "{url}: the host name {host:?} does not resolve ({detail}); check the host name in the URL \
         and this machine's DNS, or download {filename} elsewhere and run with \
         --driver-file FILE"
    )]
    HostNotFound {
        /// The URL requested.
        url: String,
        /// Its host.
        host: String,
        /// Registry filename.
        filename: String,
        /// The resolver's message.
        detail: String,
    },

    /// A network failure that retrying will not fix (bad host, TLS, protocol).
    #[error(
        "{url}: {message}; check the URL and the network (DNS, proxy, TLS), or download \
         {filename} yourself and run with --driver-file FILE"
    )]
    Network {
        /// The URL requested.
        url: String,
        /// Registry filename.
        filename: String,
        /// What went wrong.
        message: String,
    },

    /// Another process holds the lock on the partial download.
    #[error(
        "{path} is locked by another vgpu-bake downloading the same file; \
         wait for it to finish and run again"
    )]
    Busy {
        /// The locked `.part` file.
        path: PathBuf,
    },

    /// A local file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// An atomic write into the cache failed.
    #[error(transparent)]
    Atomic(#[from] AtomicError),
}

/// The clause of [`FetchError::GaveUp`] about partial data, only when some is kept.
fn resume_note(part: Option<&Path>) -> String {
    part.map(|p| format!(" (partial data kept in {} is resumed)", p.display()))
        .unwrap_or_default()
}

/// `map_err` helper for local I/O errors.
pub(super) fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> FetchError + 'a {
    move |source| FetchError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

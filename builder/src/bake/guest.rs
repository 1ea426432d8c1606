//! The guest driver stage: each `[[guest-driver]]` verified and handed to
//! the writer as a streamed file under `layout::GUEST_DRIVERS_DIR`.

use crate::bundle::Source;
use crate::fetch::{self, FetchOptions, FetchRequest};
use crate::hash::digest_reader;
use crate::input::open_regular;
use crate::resolve::{GuestDriverSource, GuestSource};
use crate::stamp::FileStamp;

use super::{BakeError, PayloadEntry, input_err};

/// One guest driver: a URL source is fetched into the driver cache (or
/// found there) and must have its pinned sha256; a file source is hashed
/// and, when pinned, must match. `path` of the result is the file name in
/// the guest driver directory.
pub fn bake_guest(
    g: GuestDriverSource,
    opts: &FetchOptions,
    notes: &mut Vec<String>,
) -> Result<PayloadEntry, BakeError> {
    let label = format!("guest driver {} {}", g.release, g.os.as_str());
    let (file, sha256, size, stamp) = match &g.source {
        GuestSource::Url(url) => {
            let req = FetchRequest {
                filename: g.path.clone(),
                url: Some(url.clone()),
                sha256: g.sha256.as_ref().map(|s| s.as_str().to_owned()),
                ..FetchRequest::default()
            };
            let fetched = fetch::fetch(&req, opts)?;
            notes.push(format!("{label}: {}", fetched.describe()));
            let stamp = fetched.stamp();
            let d = fetched.digests;
            (fetched.path, d.sha256, d.size, stamp)
        }
        GuestSource::File(path) => {
            // Its stamp before it is hashed: the writer, finding it
            // unchanged, does not hash it again.
            let (f, meta) = open_regular(path).map_err(|e| {
                input_err(
                    path,
                    format!("cannot read `[[guest-driver]] file`: {e}; give the path of the downloaded driver"),
                )
            })?;
            let d = digest_reader(f).map_err(|e| {
                input_err(path, format!("cannot read `[[guest-driver]] file`: {e}"))
            })?;
            let (sha256, size) = (d.sha256, d.size);
            if let Some(pin) = &g.sha256
                && sha256 != pin.as_str()
            {
                return Err(input_err(
                    path,
                    format!(
                        "sha256 is {} but the profile's [[guest-driver]] ({} {}) pins {pin}: use the file you pinned, or fix the pin",
                        sha256,
                        g.release,
                        g.os.as_str()
                    ),
                ));
            }
            notes.push(format!("{label}: {} (sha256 {})", path.display(), sha256));
            (path.clone(), sha256, size, Some(FileStamp::of(&meta)))
        }
    };
    Ok(PayloadEntry {
        path: g.path,
        mode: 0o644,
        source: Source::File {
            path: file,
            sha256,
            md5: None,
            size,
            stamp,
        },
    })
}

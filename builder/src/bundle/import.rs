//! The bake's single pass over a user's driver file
//! ([`super::BundleSpec::import_into`]): the blocks the writer reads to
//! compress and hash are also copied into the driver cache
//! ([`CacheImport`]), so the file is read once where `fetch --driver-file`
//! followed by a bake read it twice.
//!
//! When the frame cache already holds that sha256's frames, they are
//! copied as usual and the user's file is still read, hashed and copied
//! (not compressed): a cached frame never stands for a file nobody hashed.
//! The copy is committed only after the whole archive was written and
//! every byte matched; on any error it is dropped and the cache is as it was.

use std::io;

use super::{BundleError, FileDigests};
use crate::fetch::{CacheImport, Fetched, ImportTarget, StagedImport};
use crate::hash::Digests;

/// A copy into the driver cache while one entry's body is read.
pub(super) struct CacheCopy(CacheImport);

impl CacheCopy {
    /// Starts copying for `target`.
    pub(super) fn begin(target: &ImportTarget) -> Result<Self, BundleError> {
        Ok(Self(CacheImport::begin(target)?))
    }

    /// The registry filename it is copied to (for the progress bar).
    pub(super) fn filename(&self) -> &str {
        self.0.filename()
    }

    /// Whether the md5 must be computed (one is declared).
    pub(super) fn wants_md5(&self) -> bool {
        self.0.wants_md5()
    }

    /// Appends a block just read; `read_err` makes the error if the copy
    /// failed without saying why (it always says).
    pub(super) fn write(
        &mut self,
        block: &[u8],
        read_err: impl FnOnce(io::Error) -> BundleError,
    ) -> Result<(), BundleError> {
        match self.0.write(block) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.0.write_error().map_or_else(|| read_err(e), Into::into)),
        }
    }

    /// The digests of every byte copied against the pins: the staged copy,
    /// or the user-facing mismatch naming the user's file.
    pub(super) fn verify(self, got: &FileDigests) -> Result<StagedImport, BundleError> {
        let digests = Digests {
            sha256: got.sha256.clone(),
            md5: got.md5.clone(),
            size: got.size,
        };
        Ok(self.0.verify(&digests)?)
    }
}

/// Renames the verified copies into the driver cache (with their sidecars).
pub(super) fn commit(staged: Vec<StagedImport>) -> Result<Vec<Fetched>, BundleError> {
    staged
        .into_iter()
        .map(|s| s.commit(None).map_err(BundleError::from))
        .collect()
}

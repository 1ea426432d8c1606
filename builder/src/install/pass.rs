//! The pass that lays a bundle out (see the module doc of `install`):
//! every header checked by the same [`Checker`] as `inspect`, the entries
//! before the manifest held until it and its signature are checked, then
//! the conflict pass, then each entry staged in the [`Transaction`].

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};
use vgpu_plan::layout;
use vgpu_plan::manifest::{EntryType, Manifest};
use vgpu_rootfs::Root;

use super::body::BodyWriter;
use super::{InstallError, Installed, Staged, Target, Transaction};
use super::{check_conflicts, conflict, entry_error};
use crate::atomic::AtomicError;
use crate::hash::hex;
use crate::inspect::{
    Checker, CopyError, EntryInfo, EntryKind, Opened, Problem, keeps_text, read_error, read_target,
};
use crate::sign::TrustedKey;

/// Bytes of bodies held in memory before the manifest. A baked bundle
/// holds about 1 MiB there (the agent, its unit, the compatibility
/// table); guest drivers, which also sort before it, may not fit.
pub(super) const HOLD: u64 = 64 << 20;

/// What [`lay_out`] did.
pub(super) enum Laid {
    /// Every entry staged (in archive order), and the signature.
    Staged(Vec<Installed>, Option<crate::sign::SignatureInfo>),
    /// The entries before the manifest outgrew [`HOLD`]; nothing was
    /// staged.
    TooEarly,
}

/// An entry read before the manifest, with its body.
struct Held {
    info: EntryInfo,
    body: Vec<u8>,
}

/// How [`lay_out`] reads: one pass, or the second of two.
pub(super) enum Pass<'a> {
    /// Entries before the manifest held up to `hold` bytes; the signature
    /// checked against `keys`.
    One { keys: &'a [TrustedKey], hold: u64 },
    /// After a whole check and conflict pass: what that check saw of each
    /// file, which each file must still match.
    Second(&'a BTreeMap<String, String>),
}

/// Lays `opened` out into `tx`.
pub(super) fn lay_out(
    mut opened: Opened,
    root: &Root,
    pass: Pass,
    tx: &mut Transaction,
) -> Result<Laid, InstallError> {
    let (keys, hold, digests) = match pass {
        Pass::One { keys, hold } => (keys, hold, None),
        Pass::Second(digests) => (&[][..], 0, Some(digests)),
    };
    let bundle = opened.bundle.clone();
    let mut checker = Checker::new(bundle.clone(), opened.len, keys);
    let mut writer = BodyWriter::new();
    // `Some` until the manifest and its signature are checked.
    let mut held: Option<Vec<Held>> = digests.is_none().then(Vec::new);
    let mut held_bytes = 0u64;
    let mut done = Vec::new();
    while let Some(mut entry) = opened.next_entry()? {
        let h = entry.header.clone();
        let mut kind = checker.header(&h)?;
        // Past the signature's place with the manifest read, `header`
        // checked the signature: every path and size is known now.
        if h.name.as_str() > layout::SIGNATURE_FILE
            && let Some(manifest) = checker.manifest()
            && let Some(early) = held.take()
        {
            release(&bundle, root, early, manifest, &mut writer, tx, &mut done)?;
        }
        let path = h.name.clone();
        let mode = if matches!(kind, EntryKind::Symlink { .. }) {
            0o777
        } else {
            h.mode & 0o7777
        };
        let size = u64::from(h.filesize);
        // A held entry keeps its body; a staged one may keep its text.
        let (sha256, kept) = if held.is_some() {
            held_bytes += size;
            if held_bytes > hold {
                return Ok(Laid::TooEarly);
            }
            let mut body = Vec::with_capacity(size as usize);
            entry
                .read_to_end(&mut body)
                .map_err(|e| read_error(&bundle, &path, e))?;
            drop(entry);
            let sha256 = match &mut kind {
                EntryKind::File => Some(hex(&Sha256::digest(&body))),
                EntryKind::Symlink { target } => {
                    *target = symlink_target(&bundle, &path, &mut &body[..])?;
                    None
                }
                EntryKind::Dir => None,
            };
            (sha256, Some(body))
        } else {
            let at = Target::new(&bundle, root, &path);
            let (sha256, text) = lay(&at, &mut kind, mode, &mut entry, &mut writer, tx)?;
            drop(entry);
            if let (Some(digests), Some(sha)) = (digests, &sha256)
                && digests.get(&path) != Some(sha)
            {
                let problem = Problem::Sha256 {
                    expected: digests.get(&path).cloned().unwrap_or_default(),
                    actual: sha.clone(),
                };
                // Staged in `tx`: it goes when `tx` is dropped.
                return Err(entry_error(&bundle, &path, problem).into());
            }
            (sha256, text)
        };
        let info = EntryInfo {
            path,
            kind,
            mode,
            size,
            sha256,
            verified: true,
        };
        let text = kept.as_deref().filter(|_| keeps_text(&info.path));
        checker.body(&info, text)?;
        match (&mut held, kept) {
            (Some(list), Some(body)) => list.push(Held { info, body }),
            _ => done.push(installed(&info)),
        }
    }
    let (manifest, signature) = checker.end()?;
    opened.finish()?;
    if let Some(early) = held {
        release(&bundle, root, early, &manifest, &mut writer, tx, &mut done)?;
    }
    Ok(Laid::Staged(done, signature))
}

/// A symlink's target from its body, or the problem with it.
fn symlink_target(bundle: &Path, path: &str, body: &mut impl Read) -> Result<String, InstallError> {
    Ok(read_target(body)
        .map_err(|e| read_error(bundle, path, e))?
        .map_err(|problem| entry_error(bundle, path, problem))?)
}

/// What was laid for `info`.
fn installed(info: &EntryInfo) -> Installed {
    Installed {
        path: info.path.clone(),
        kind: info.kind.name(),
        mode: info.mode,
        size: if info.kind == EntryKind::Dir {
            0
        } else {
            info.size
        },
    }
}

/// The manifest is checked: the conflict pass over every entry (the held
/// ones, and the manifest's list for the rest), then the held entries
/// staged.
fn release(
    bundle: &Path,
    root: &Root,
    held: Vec<Held>,
    manifest: &Manifest,
    writer: &mut BodyWriter,
    tx: &mut Transaction,
    done: &mut Vec<Installed>,
) -> Result<(), InstallError> {
    let mut all: BTreeMap<&str, EntryKind> = manifest
        .entries
        .iter()
        .map(|e| {
            let kind = match e.kind {
                EntryType::File => EntryKind::File,
                EntryType::Dir => EntryKind::Dir,
                EntryType::Symlink => EntryKind::Symlink {
                    target: String::new(),
                },
            };
            (e.path.as_str(), kind)
        })
        .collect();
    for h in &held {
        all.insert(&h.info.path, h.info.kind.clone());
    }
    check_conflicts(bundle, root, all.iter().map(|(p, k)| (*p, k)))?;
    for Held { mut info, body } in held {
        let at = Target::new(bundle, root, &info.path);
        lay(&at, &mut info.kind, info.mode, &mut &body[..], writer, tx)?;
        done.push(installed(&info));
    }
    Ok(())
}

/// Stages one entry after checking its destination again (the target may
/// have changed since the conflict pass): a directory created, a symlink
/// or a file under a temporary name. Returns a file's sha256 and, for the
/// manifest and the plan, its bytes.
fn lay(
    at: &Target,
    kind: &mut EntryKind,
    mode: u32,
    body: &mut impl Read,
    writer: &mut BodyWriter,
    tx: &mut Transaction,
) -> Result<(Option<String>, Option<Vec<u8>>), InstallError> {
    at.check_ancestors()?;
    if let Some(what) = conflict(kind, at.existing(at.entry)?) {
        return Err(at.refuse(format!("{} is {what}", at.host_path().display())));
    }
    match kind {
        EntryKind::Dir => {
            at.dir(mode, tx)?;
            Ok((None, None))
        }
        EntryKind::Symlink { target } => {
            *target = symlink_target(at.bundle, at.entry, body)?;
            tx.stage(at.symlink(target)?);
            Ok((None, None))
        }
        EntryKind::File => {
            let file = at
                .root
                .atomic_file(at.entry, None)
                .map_err(|e| at.write_error(e))?;
            let (file, sha, text) = match writer.copy(body, file, keeps_text(at.entry)) {
                Ok(c) => c,
                Err(CopyError::Read(e)) => return Err(read_error(at.bundle, at.entry, e).into()),
                Err(CopyError::Sink(source)) => {
                    return Err(at.write_error(AtomicError {
                        action: "writing",
                        path: at.host_path(),
                        source,
                    }));
                }
            };
            file.set_mode(mode).map_err(|e| at.write_error(e))?;
            tx.stage(Staged::File {
                file,
                rel: at.entry.into(),
            });
            Ok((Some(sha), text))
        }
    }
}

//! Pure edits of host files: current contents in, file operations out.
//!
//! Every function here takes the current contents of the files it cares
//! about (`None` = the file is absent) and the plan's settings, and returns
//! new contents or a list of [`FileOp`]s. Nothing here reads or writes the
//! disk, so the agent can show a dry run (`plan`) that is exactly what `run`
//! does, and every edit is tested on copies of real Proxmox files.
//!
//! Two rules, both from defects of the bash installer this replaces
//! (`reference/seed-installer.md` §15 and §17):
//!
//! * Files we own (`vgpu-bake` in the name) are written in full, never
//!   appended to, so a re-run cannot duplicate lines.
//! * Files we don't own are edited minimally, line by line, only when needed,
//!   and never deleted or renamed.
//!
//! Every function is idempotent: applied to its own output it changes
//! nothing (the tests check this for each function over all fixtures).

use std::collections::BTreeMap;
use std::fmt::Write as _;

pub mod apt;
pub mod kernel_cmdline;
pub mod modules;
pub mod passthrough;
pub mod unlock;

/// Mode of every file these edits write: world-readable configuration.
pub const FILE_MODE: u32 = 0o644;

/// One change to one file, with the reason shown in the dry run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOp {
    /// Path relative to the target root, without a leading `/`
    /// (e.g. `etc/apt/sources.list.d/pve-no-subscription.list`).
    pub path: String,
    /// What to do with it.
    pub action: FileAction,
    /// Why, in a few words, for `vgpu-firstboot plan`.
    pub why: String,
}

/// What a [`FileOp`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileAction {
    /// Replace the whole file (created if absent) with `content` and `mode`.
    Write {
        /// The complete new contents.
        content: String,
        /// Permission bits, e.g. [`FILE_MODE`].
        mode: u32,
    },
    /// Rename the file to `to` (relative to the root, like `path`).
    Rename {
        /// New path.
        to: String,
    },
    /// Remove the file.
    Delete,
}

impl FileOp {
    /// Writes `content` to `path` with [`FILE_MODE`].
    pub fn write(
        path: impl Into<String>,
        content: impl Into<String>,
        why: impl Into<String>,
    ) -> Self {
        FileOp {
            path: path.into(),
            action: FileAction::Write {
                content: content.into(),
                mode: FILE_MODE,
            },
            why: why.into(),
        }
    }

    /// Deletes `path`.
    pub fn delete(path: impl Into<String>, why: impl Into<String>) -> Self {
        FileOp {
            path: path.into(),
            action: FileAction::Delete,
            why: why.into(),
        }
    }
}

/// A [`FileOp::write`] of `content` to `path`, or nothing when the file
/// already has exactly that content (so a re-run writes nothing and
/// triggers no `update-grub`, `udevadm` or `daemon-reload`).
pub fn write_if_changed(
    path: &str,
    current: Option<&str>,
    content: String,
    why: &str,
) -> Option<FileOp> {
    (current != Some(content.as_str())).then(|| FileOp::write(path, content, why))
}

/// A [`FileOp::delete`] of `path` when it exists, for files we own that are
/// no longer wanted.
pub fn delete_if_present(path: &str, current: Option<&str>, why: &str) -> Option<FileOp> {
    current.map(|_| FileOp::delete(path, why))
}

/// The dry run: one line per operation, e.g.
/// `would write /etc/modprobe.d/vgpu-bake-blacklist.conf (mode 0644): keep off the GPU: nouveau`.
pub fn apply_ops_preview(ops: &[FileOp]) -> String {
    if ops.is_empty() {
        return "nothing to change\n".to_owned();
    }
    let mut out = String::new();
    for op in ops {
        let path = op.path.trim_start_matches('/');
        // Writing to a String cannot fail.
        let _ = match &op.action {
            FileAction::Write { mode, .. } => {
                writeln!(out, "would write /{path} (mode {mode:04o}): {}", op.why)
            }
            FileAction::Rename { to } => writeln!(
                out,
                "would rename /{path} to /{}: {}",
                to.trim_start_matches('/'),
                op.why
            ),
            FileAction::Delete => writeln!(out, "would delete /{path}: {}", op.why),
        };
    }
    out
}

/// Applies `ops` to an in-memory file tree keyed by the same relative paths
/// (modes are not kept). The agent's tests and the idempotence checks use it
/// to run an edit twice without a disk.
pub fn apply_ops_in_memory(files: &mut BTreeMap<String, String>, ops: &[FileOp]) {
    for op in ops {
        match &op.action {
            FileAction::Write { content, .. } => {
                files.insert(op.path.clone(), content.clone());
            }
            FileAction::Rename { to } => {
                if let Some(content) = files.remove(&op.path) {
                    files.insert(to.clone(), content);
                }
            }
            FileAction::Delete => {
                files.remove(&op.path);
            }
        }
    }
}

/// A setting these edits refuse because writing it would produce a broken
/// or unsafe file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// Not a PCI address like `0000:02:00.1` (or `02:00.1`).
    #[error(
        "{0:?} is not a PCI address (expected e.g. 0000:02:00.1): the plan was changed after baking; fix `gpu.address` in the profile and bake again"
    )]
    PciAddress(String),
    /// A path that cannot go into a systemd `Environment=` line as is.
    #[error(
        "{0:?} is not usable as the unlock library path (absolute, no whitespace, quotes or backslashes): the plan was changed after baking; bake the profile again"
    )]
    LibraryPath(String),
    /// A kernel argument that cannot be written into a command line.
    #[error(
        "{0:?} is not a usable kernel argument (empty, or contains whitespace or quotes): the plan was changed after baking; fix `host.kernel-args` in the profile and bake again"
    )]
    KernelArg(String),
}

/// The first line of every file we own: who wrote it, so an admin who finds
/// it knows where it came from and that it is rewritten in full.
pub(crate) fn owned_header(what: &str) -> String {
    format!(
        "# Written by vgpu-firstboot (vgpu-bake): {what}.\n\
         # This file is rewritten in full when the agent runs; do not edit it.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_names_every_kind_of_operation() {
        let ops = vec![
            FileOp::write("etc/a.conf", "x\n", "reason a"),
            FileOp {
                path: "etc/b".into(),
                action: FileAction::Rename {
                    to: "etc/b.old".into(),
                },
                why: "reason b".into(),
            },
            FileOp::delete("etc/c", "reason c"),
        ];
        assert_eq!(
            apply_ops_preview(&ops),
            "would write /etc/a.conf (mode 0644): reason a\n\
             would rename /etc/b to /etc/b.old: reason b\n\
             would delete /etc/c: reason c\n"
        );
        assert_eq!(apply_ops_preview(&[]), "nothing to change\n");
    }

    #[test]
    fn in_memory_application_follows_the_ops() {
        let mut files = BTreeMap::from([
            ("etc/b".to_owned(), "b".to_owned()),
            ("etc/c".to_owned(), "c".to_owned()),
        ]);
        apply_ops_in_memory(
            &mut files,
            &[
                FileOp::write("etc/a", "a", ""),
                FileOp {
                    path: "etc/b".into(),
                    action: FileAction::Rename {
                        to: "etc/b2".into(),
                    },
                    why: String::new(),
                },
                FileOp::delete("etc/c", ""),
            ],
        );
        assert_eq!(
            files,
            BTreeMap::from([
                ("etc/a".to_owned(), "a".to_owned()),
                ("etc/b2".to_owned(), "b".to_owned()),
            ])
        );
    }

    #[test]
    fn unchanged_files_are_not_written() {
        assert_eq!(
            write_if_changed("etc/x", Some("same\n"), "same\n".into(), "w"),
            None
        );
        assert!(write_if_changed("etc/x", Some("old\n"), "new\n".into(), "w").is_some());
        assert!(write_if_changed("etc/x", None, "new\n".into(), "w").is_some());
        assert_eq!(delete_if_present("etc/x", None, "d"), None);
        assert!(delete_if_present("etc/x", Some(""), "d").is_some());
    }
}

//! The change journal: every change the agent makes to a host, recorded
//! *before* the change (write-ahead), so `vgpu-firstboot undo` can revert
//! all of them and `upgrade` can tell what an earlier plan applied.
//!
//! Two kinds of record, one line each in [`JOURNAL_FILE`]:
//! - **A path's state before the agent first touched it**: absent (so undo
//!   removes it; parent directories the write will create are recorded
//!   too, so undo removes them when empty), a regular file (its bytes
//!   copied to `backup/<n>` first, so undo restores them and the mode) or
//!   a symlink (its target). Only the first touch of a path is recorded:
//!   undo goes back to the host as it was before the agent, however many
//!   times a step rewrote the file since.
//! - **A [`Change`] made by a command** (a package installed, the driver,
//!   a unit enabled, the kernel pin, a container image): recorded before
//!   the command runs; undo reverts it with the matching command and
//!   tolerates one that never happened.
//!
//! Paths under the agent's own state directory are not journaled (they are
//! the agent's, not the host's), and neither is the unit's `.wants` link
//! (undo leaves the agent disabled). The trial boot's systemd-boot entry
//! on the ESPs is not journaled either: the ESPs are mounted only while the
//! agent writes it, and the entry never outlives the trial (the trial
//! record, `agent/trial`, names the ESPs; the commit, a failure and undo
//! remove it). The GRUB trial script in `/etc/grub.d` is journaled like
//! any file. [`Host::write_atomic`],
//! [`Host::apply`], [`Host::remove_file`] and [`Host::create_dir_all`]
//! journal by themselves; a step that lets a *command* create or change a
//! file calls [`Host::touch`] for it first.
//!
//! The file is rewritten atomically on every record (it holds dozens of
//! lines), so a power cut leaves either the old or the new journal.

use std::fmt::Write as _;

use crate::agent::host::{Host, StepError};
use vgpu_plan::layout::{STATE_DIR, UNIT_WANTS_LINK};
use vgpu_rootfs::Root;

/// The journal's directory (inside the agent's state directory).
pub const JOURNAL_DIR: &str = "var/lib/vgpu-firstboot/journal";
/// The records, one per line, oldest first.
pub const JOURNAL_FILE: &str = "var/lib/vgpu-firstboot/journal/changes";
/// Copies of files as they were before the agent first changed them.
pub const BACKUP_DIR: &str = "var/lib/vgpu-firstboot/journal/backup";
/// The most a journal or one backup may hold when read back.
const READ_LIMIT: u64 = 64 << 20;

/// A change made by a command rather than by a file write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A Debian package the agent installed (it was not installed before):
    /// one it asked for (recorded before the install) or a dependency apt
    /// pulled in (from dpkg's log, after). Undo: `apt-get purge`.
    Package(String),
    /// The vGPU host driver `version`, installed by the installer whose
    /// installed tool is `tool` (root-relative; `tool --uninstall -s`
    /// removes it). Undo and upgrade: that uninstaller.
    Driver {
        /// The driver version the plan installed.
        version: String,
        /// The installed driver's own tool, root-relative.
        tool: String,
    },
    /// A systemd unit the agent enabled (it was not enabled before).
    /// Undo: `systemctl disable --now`.
    UnitEnabled(String),
    /// The kernel pin the agent set; `previous` is the pin before, if any.
    /// Undo: pin `previous` again, or `proxmox-boot-tool kernel unpin`.
    KernelPin {
        /// The version the agent pinned.
        version: String,
        /// The pinned version before the agent's, if one was.
        previous: Option<String>,
    },
    /// A container image the agent loaded (FastAPI-DLS). Undo: `podman rmi`.
    ContainerImage(String),
}

/// What a path was before the agent first touched it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Before {
    /// Not there.
    Absent,
    /// A directory that was not there (created for a write below it).
    AbsentDir,
    /// A regular file, copied to `backup/<n>`, with its permission bits.
    File {
        /// Number of its copy under [`BACKUP_DIR`].
        backup: u32,
        /// Permission bits (`0o644`, ...).
        mode: u32,
    },
    /// A symlink to `target`.
    Symlink(String),
}

/// One journal record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// `path` (root-relative) was `before` when the agent first touched it.
    Path {
        /// Root-relative path.
        path: String,
        /// Its state before.
        before: Before,
    },
    /// A change made by a command.
    Change(Change),
}

/// The journal as read from the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Journal {
    /// Records, oldest first.
    pub records: Vec<Record>,
}

/// Whether changes to `rel` are journaled: not the agent's own files, not
/// the unit's enablement link.
pub fn journaled(rel: &str) -> bool {
    let rel = rel.trim_start_matches('/').trim_end_matches('/');
    let own = rel == STATE_DIR || rel.starts_with(&format!("{STATE_DIR}/"));
    !own && rel != UNIT_WANTS_LINK
}

/// A field that fits a line: no tab, newline or other control character.
fn field(s: &str) -> Result<&str, StepError> {
    if s.is_empty() || s.chars().any(char::is_control) {
        return Err(StepError::new(format!(
            "cannot journal {s:?}: empty or holds a control character"
        )));
    }
    Ok(s)
}

impl Record {
    /// The record's line (without the newline).
    pub fn to_line(&self) -> Result<String, StepError> {
        let mut s = String::new();
        match self {
            Record::Path { path, before } => {
                let path = field(path)?;
                match before {
                    Before::Absent => write!(s, "absent\t{path}"),
                    Before::AbsentDir => write!(s, "absent-dir\t{path}"),
                    Before::File { backup, mode } => {
                        write!(s, "file\t{path}\t{backup}\t{mode:o}")
                    }
                    Before::Symlink(t) => write!(s, "symlink\t{path}\t{}", field(t)?),
                }
            }
            Record::Change(c) => match c {
                Change::Package(p) => write!(s, "package\t{}", field(p)?),
                Change::Driver { version, tool } => {
                    write!(s, "driver\t{}\t{}", field(version)?, field(tool)?)
                }
                Change::UnitEnabled(u) => write!(s, "unit-enabled\t{}", field(u)?),
                Change::KernelPin { version, previous } => write!(
                    s,
                    "kernel-pin\t{}\t{}",
                    field(version)?,
                    match previous {
                        Some(p) => field(p)?,
                        None => "-",
                    }
                ),
                Change::ContainerImage(i) => write!(s, "container-image\t{}", field(i)?),
            },
        }
        .map_err(|_| StepError::new("formatting a journal record"))?;
        Ok(s)
    }

    /// Parses one line; `None` if it is not a record this agent writes.
    pub fn parse(line: &str) -> Option<Record> {
        let f: Vec<&str> = line.split('\t').collect();
        let path = |before| {
            Some(Record::Path {
                path: f.get(1)?.to_string(),
                before,
            })
        };
        let change = |c| Some(Record::Change(c));
        match (f[0], f.len()) {
            ("absent", 2) => path(Before::Absent),
            ("absent-dir", 2) => path(Before::AbsentDir),
            ("file", 4) => path(Before::File {
                backup: f[2].parse().ok()?,
                mode: u32::from_str_radix(f[3], 8).ok()?,
            }),
            ("symlink", 3) => path(Before::Symlink(f[2].to_string())),
            ("package", 2) => change(Change::Package(f[1].to_string())),
            ("driver", 3) => change(Change::Driver {
                version: f[1].to_string(),
                tool: f[2].to_string(),
            }),
            ("unit-enabled", 2) => change(Change::UnitEnabled(f[1].to_string())),
            ("kernel-pin", 3) => change(Change::KernelPin {
                version: f[1].to_string(),
                previous: (f[2] != "-").then(|| f[2].to_string()),
            }),
            ("container-image", 2) => change(Change::ContainerImage(f[1].to_string())),
            _ => None,
        }
    }
}

impl Journal {
    /// Reads the journal under `root`; an absent one is empty. A line this
    /// agent cannot read is an error naming the file and the line.
    pub fn read(root: &Root) -> Result<Journal, StepError> {
        let Some(bytes) = root.read_bounded(JOURNAL_FILE, READ_LIMIT)? else {
            return Ok(Journal::default());
        };
        let text = String::from_utf8(bytes).map_err(|_| {
            StepError::new(format!(
                "/{JOURNAL_FILE} is not UTF-8: the journal is damaged; undo cannot trust it"
            ))
        })?;
        let mut records = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let r = Record::parse(line).ok_or_else(|| {
                StepError::new(format!(
                    "/{JOURNAL_FILE} line {}: not a journal record ({:?}): the journal is damaged; undo cannot trust it",
                    n + 1,
                    line.chars().take(80).collect::<String>()
                ))
            })?;
            records.push(r);
        }
        Ok(Journal { records })
    }

    /// Whether `rel`'s state before the agent is already recorded.
    pub fn has_path(&self, rel: &str) -> bool {
        self.records
            .iter()
            .any(|r| matches!(r, Record::Path { path, .. } if path == rel))
    }

    /// Whether `change` is already recorded.
    pub fn has(&self, change: &Change) -> bool {
        self.records
            .iter()
            .any(|r| matches!(r, Record::Change(c) if c == change))
    }

    /// The next free backup number.
    fn next_backup(&self) -> u32 {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::Path {
                    before: Before::File { backup, .. },
                    ..
                } => Some(backup + 1),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// Appends `records` and writes the journal atomically.
    fn append(&mut self, root: &Root, records: Vec<Record>) -> Result<(), StepError> {
        if records.is_empty() {
            return Ok(());
        }
        self.records.extend(records);
        let mut text = String::new();
        for r in &self.records {
            text.push_str(&r.to_line()?);
            text.push('\n');
        }
        root.create_dir_all(JOURNAL_DIR, 0o700)?;
        root.write_atomic(JOURNAL_FILE, text.as_bytes(), 0o600)?;
        Ok(())
    }

    /// The backup of a recorded file, as the bytes it held.
    pub fn backup(root: &Root, n: u32) -> Result<Vec<u8>, StepError> {
        let rel = format!("{BACKUP_DIR}/{n}");
        root.read_bounded(&rel, READ_LIMIT)?.ok_or_else(|| {
            StepError::new(format!(
                "/{rel} is missing: the journal's backup is gone; the file cannot be restored"
            ))
        })
    }

    /// Records `rel`'s state before a change, unless it is recorded already
    /// or not journaled: missing parent directories first (outermost
    /// first), then the path itself; a file's bytes are copied to the
    /// backup directory before the record names them. An existing
    /// directory is not recorded (the agent never removes one).
    pub fn touch(&mut self, root: &Root, rel: &str) -> Result<(), StepError> {
        let rel = rel.trim_start_matches('/').trim_end_matches('/');
        if !journaled(rel) || self.has_path(rel) {
            return Ok(());
        }
        let mut new = match rel.rsplit_once('/') {
            Some((parent, _)) => self.missing_dirs(root, parent)?,
            None => Vec::new(),
        };
        let before = match root.symlink_metadata(rel)? {
            None => Before::Absent,
            Some(m) if m.file_type().is_symlink() => {
                let t = root.read_link(rel)?.unwrap_or_default();
                Before::Symlink(t.to_string_lossy().into_owned())
            }
            Some(m) if m.is_dir() => return Ok(()),
            Some(m) => {
                use std::os::unix::fs::PermissionsExt;
                let bytes = root.read_bounded(rel, READ_LIMIT)?.unwrap_or_default();
                let backup = self.next_backup();
                root.create_dir_all(BACKUP_DIR, 0o700)?;
                root.write_atomic(&format!("{BACKUP_DIR}/{backup}"), &bytes, 0o600)?;
                Before::File {
                    backup,
                    mode: m.permissions().mode() & 0o7777,
                }
            }
        };
        new.push(Record::Path {
            path: rel.to_string(),
            before,
        });
        self.append(root, new)
    }

    /// Records the directories of `rel` (itself included) that are not
    /// there, before `create_dir_all` makes them.
    pub fn touch_dir(&mut self, root: &Root, rel: &str) -> Result<(), StepError> {
        let rel = rel.trim_start_matches('/').trim_end_matches('/');
        if rel.is_empty() || !journaled(rel) {
            return Ok(());
        }
        let new = self.missing_dirs(root, rel)?;
        self.append(root, new)
    }

    /// `AbsentDir` records for `dir` and its ancestors that do not exist
    /// and are not recorded, outermost first.
    fn missing_dirs(&self, root: &Root, dir: &str) -> Result<Vec<Record>, StepError> {
        let mut new = Vec::new();
        let mut at = String::new();
        for part in dir.split('/') {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            if root.symlink_metadata(&at)?.is_none() && !self.has_path(&at) {
                new.push(Record::Path {
                    path: at.clone(),
                    before: Before::AbsentDir,
                });
            }
        }
        Ok(new)
    }

    /// Records a command's change before the command runs, unless recorded.
    pub fn record(&mut self, root: &Root, change: Change) -> Result<(), StepError> {
        if self.has(&change) {
            return Ok(());
        }
        self.append(root, vec![Record::Change(change)])
    }
}

impl Host<'_> {
    /// The journal, read from the host on first use.
    fn journal_mut(&mut self) -> Result<&mut Journal, StepError> {
        if self.journal.is_none() {
            let j = Journal::read(&self.fs()?)?;
            self.journal = Some(j);
        }
        Ok(self.journal.as_mut().expect("just set"))
    }

    /// Records `rel`'s state before a change the agent or one of its
    /// commands is about to make (see the module doc).
    pub fn touch(&mut self, rel: &str) -> Result<(), StepError> {
        self.path(rel)?;
        let root = self.fs()?;
        self.journal_mut()?.touch(&root, rel)
    }

    /// Records the missing directories of `rel` (itself included).
    pub fn touch_dir(&mut self, rel: &str) -> Result<(), StepError> {
        self.path(rel)?;
        let root = self.fs()?;
        self.journal_mut()?.touch_dir(&root, rel)
    }

    /// Records a command's change before the command runs.
    pub fn record(&mut self, change: Change) -> Result<(), StepError> {
        let root = self.fs()?;
        self.journal_mut()?.record(&root, change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_their_lines() {
        let records = [
            Record::Path {
                path: "etc/default/grub".into(),
                before: Before::File {
                    backup: 3,
                    mode: 0o644,
                },
            },
            Record::Path {
                path: "etc/modprobe.d".into(),
                before: Before::AbsentDir,
            },
            Record::Path {
                path: "etc/x.conf".into(),
                before: Before::Absent,
            },
            Record::Path {
                path: "etc/l".into(),
                before: Before::Symlink("../y".into()),
            },
            Record::Change(Change::Package("podman".into())),
            Record::Change(Change::Driver {
                version: "1.0-demo".into(),
                tool: "usr/lib/vgpu-demo/nvidia-installer".into(),
            }),
            Record::Change(Change::UnitEnabled("nvidia-vgpud.service".into())),
            Record::Change(Change::KernelPin {
                version: "6.8.12-4-pve".into(),
                previous: None,
            }),
            Record::Change(Change::KernelPin {
                version: "6.8.12-4-pve".into(),
                previous: Some("6.5.13-6-pve".into()),
            }),
            Record::Change(Change::ContainerImage("localhost/fastapi-dls:1.0".into())),
        ];
        for r in records {
            let line = r.to_line().unwrap();
            assert_eq!(Record::parse(&line), Some(r), "{line}");
        }
        assert_eq!(Record::parse("file\tx\tnot-a-number\t644"), None);
        assert_eq!(Record::parse("bogus\tx"), None);
        assert!(
            Record::Change(Change::Package("a\tb".into()))
                .to_line()
                .is_err()
        );
    }

    #[test]
    fn the_agents_own_files_are_not_journaled() {
        assert!(!journaled("var/lib/vgpu-firstboot/state.toml"));
        assert!(!journaled("/var/lib/vgpu-firstboot"));
        assert!(!journaled(UNIT_WANTS_LINK));
        assert!(journaled("etc/default/grub"));
        assert!(journaled("var/lib/vgpu-firstbootx"));
    }

    #[test]
    fn touch_records_the_first_state_only_with_missing_parents() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/grub"), "old\n").unwrap();
        let root = Root::at(dir.path()).unwrap();
        let mut j = Journal::default();
        j.touch(&root, "etc/grub").unwrap();
        std::fs::write(dir.path().join("etc/grub"), "new\n").unwrap();
        j.touch(&root, "etc/grub").unwrap();
        j.touch(&root, "/etc/modprobe.d/a/b.conf").unwrap();
        j.touch(&root, "var/lib/vgpu-firstboot/state.toml").unwrap();
        j.record(&root, Change::Package("p".into())).unwrap();
        j.record(&root, Change::Package("p".into())).unwrap();
        let read = Journal::read(&root).unwrap();
        assert_eq!(read, j);
        let lines: Vec<String> = read.records.iter().map(|r| r.to_line().unwrap()).collect();
        assert_eq!(
            lines,
            [
                "file\tetc/grub\t0\t644",
                "absent-dir\tetc/modprobe.d",
                "absent-dir\tetc/modprobe.d/a",
                "absent\tetc/modprobe.d/a/b.conf",
                "package\tp",
            ]
        );
        assert_eq!(Journal::backup(&root, 0).unwrap(), b"old\n");
    }
}

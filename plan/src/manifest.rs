//! `manifest.toml`: every entry of a bundle (directories, symlinks, files,
//! the plan included) with its type, mode, owner, and for a file its size and
//! sha256, for a symlink its target.
//!
//! The builder writes it and may sign it ([`crate::layout::SIGNATURE_FILE`],
//! a minisign signature of the manifest's bytes); `vgpu-bake inspect` and
//! `install` check the archive against it, and the agent checks the installed
//! files against it before phase 1. The manifest does not list itself or its
//! signature: those are the only two entries a bundle may hold unlisted.

use serde::{Deserialize, Serialize};

use crate::digest::Sha256;
use crate::layout;

/// Current manifest format version. Schema 1 listed regular files only.
pub const SCHEMA: u32 = 2;

/// Every entry of a bundle except the manifest and its signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Manifest {
    /// Format version, [`SCHEMA`].
    pub schema: u32,
    /// Bundle name (the profile's name).
    pub name: String,
    /// Entries in archive order: strictly increasing byte order of path.
    #[serde(default, rename = "entry")]
    pub entries: Vec<ManifestEntry>,
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
}

impl EntryType {
    /// `file`, `dir` or `symlink`.
    pub fn name(self) -> &'static str {
        match self {
            EntryType::File => "file",
            EntryType::Dir => "dir",
            EntryType::Symlink => "symlink",
        }
    }
}

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ManifestEntry {
    /// Path relative to the target root, no leading `/`.
    pub path: String,
    /// What it is.
    #[serde(rename = "type")]
    pub kind: EntryType,
    /// Permission bits as an octal string, e.g. `"0755"` (a symlink's is
    /// `"0777"`).
    pub mode: String,
    /// Owner (always 0: a bundle installs root-owned files).
    pub uid: u32,
    /// Group (always 0).
    pub gid: u32,
    /// A file's size in bytes; absent for directories and symlinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// A file's sha256; absent for directories and symlinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256>,
    /// A symlink's target, verbatim; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// A secret (the licensing client token): a file of mode 0600 that
    /// `inspect` shows without its digest. Absent (false) in older
    /// manifests and for every other entry.
    #[serde(default, skip_serializing_if = "is_false")]
    pub secret: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl ManifestEntry {
    /// A regular file entry.
    pub fn file(path: impl Into<String>, mode: u32, size: u64, sha256: Sha256) -> Self {
        Self {
            path: path.into(),
            kind: EntryType::File,
            mode: mode_string(mode),
            uid: 0,
            gid: 0,
            size: Some(size),
            sha256: Some(sha256),
            target: None,
            secret: false,
        }
    }

    /// A secret regular file entry: mode 0600, flagged [`Self::secret`].
    pub fn secret_file(path: impl Into<String>, size: u64, sha256: Sha256) -> Self {
        Self {
            secret: true,
            ..Self::file(path, 0o600, size, sha256)
        }
    }

    /// A directory entry.
    pub fn dir(path: impl Into<String>, mode: u32) -> Self {
        Self {
            path: path.into(),
            kind: EntryType::Dir,
            mode: mode_string(mode),
            uid: 0,
            gid: 0,
            size: None,
            sha256: None,
            target: None,
            secret: false,
        }
    }

    /// A symlink entry.
    pub fn symlink(path: impl Into<String>, target: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            kind: EntryType::Symlink,
            mode: mode_string(0o777),
            uid: 0,
            gid: 0,
            size: None,
            sha256: None,
            target: Some(target.into()),
            secret: false,
        }
    }

    /// Permission bits, parsed from [`Self::mode`] (validated on load).
    pub fn mode_bits(&self) -> u32 {
        u32::from_str_radix(&self.mode, 8).unwrap_or(0)
    }
}

/// Error reading a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not valid TOML or not the manifest format.
    #[error("manifest is not valid: {0}")]
    Parse(#[from] toml::de::Error),
    /// A schema this program does not know.
    #[error(
        "manifest schema {found} is not supported (this build reads schema {SCHEMA}); re-bake the bundle with this version of vgpu-bake"
    )]
    Schema {
        /// The schema found in the file.
        found: u32,
    },
    /// One entry breaks a rule.
    #[error("manifest entry {path:?}: {reason}")]
    Entry {
        /// The entry's path, as written.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl Manifest {
    /// Parses, checks the schema version and every entry ([`Self::validate`]).
    pub fn from_toml(text: &str) -> Result<Self, ManifestError> {
        // The schema first, so an older manifest gets the schema error
        // rather than "unknown field `file`".
        let table: toml::Table = toml::from_str(text)?;
        if let Some(found) = table.get("schema").and_then(toml::Value::as_integer)
            && found != i64::from(SCHEMA)
        {
            let found = u32::try_from(found).unwrap_or(u32::MAX);
            return Err(ManifestError::Schema { found });
        }
        let m: Manifest =
            crate::de::from_table(table).map_err(<toml::de::Error as serde::de::Error>::custom)?;
        if m.schema != SCHEMA {
            return Err(ManifestError::Schema { found: m.schema });
        }
        m.validate()?;
        Ok(m)
    }

    /// Serialises to TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("manifest serialises")
    }

    /// The entry for `path`, if listed.
    pub fn get(&self, path: &str) -> Option<&ManifestEntry> {
        self.entries
            .binary_search_by(|e| e.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// The regular files.
    pub fn files(&self) -> impl Iterator<Item = &ManifestEntry> {
        self.entries.iter().filter(|e| e.kind == EntryType::File)
    }

    /// Checks every rule a bundle's entries obey: paths in strictly
    /// increasing byte order, each inside the documented layout
    /// ([`layout::check_entry`]) with a safe name ([`check_name`]) and mode
    /// ([`check_mode`]), owner 0:0, and exactly the fields its type has.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let mut previous: Option<&str> = None;
        for e in &self.entries {
            let bad = |reason: String| ManifestError::Entry {
                path: e.path.clone(),
                reason,
            };
            if let Some(p) = previous
                && p >= e.path.as_str()
            {
                return Err(bad(format!(
                    "comes after {p:?}: entries must be sorted by path, each listed once"
                )));
            }
            previous = Some(&e.path);
            check_name(&e.path).map_err(|r| bad(r.into()))?;
            if e.path == layout::MANIFEST_FILE || e.path == layout::SIGNATURE_FILE {
                return Err(bad(
                    "the manifest cannot list itself or its signature".into()
                ));
            }
            layout::check_entry(&e.path, e.kind, e.target.as_deref()).map_err(|r| bad(r.into()))?;
            let mode = parse_mode(&e.mode).ok_or_else(|| {
                bad(format!(
                    "mode {:?} is not four octal digits like \"0644\"",
                    e.mode
                ))
            })?;
            if e.kind != EntryType::Symlink {
                check_mode(mode).map_err(|r| bad(r.into()))?;
            }
            if e.uid != 0 || e.gid != 0 {
                return Err(bad(format!("owner {}:{} is not 0:0 (root)", e.uid, e.gid)));
            }
            let fields_ok = match e.kind {
                EntryType::File => e.size.is_some() && e.sha256.is_some() && e.target.is_none(),
                EntryType::Dir => e.size.is_none() && e.sha256.is_none() && e.target.is_none(),
                EntryType::Symlink => {
                    e.size.is_none() && e.sha256.is_none() && e.target.is_some() && mode == 0o777
                }
            };
            if e.secret && (e.kind != EntryType::File || mode != 0o600) {
                return Err(bad(format!(
                    "is marked secret but is a {} of mode {}: a secret is a regular file of mode 0600",
                    e.kind.name(),
                    e.mode
                )));
            }
            if !fields_ok {
                return Err(bad(format!(
                    "a {} has {}",
                    e.kind.name(),
                    match e.kind {
                        EntryType::File => "a size and a sha256, and no target",
                        EntryType::Dir => "no size, sha256 or target",
                        EntryType::Symlink => "a target and mode \"0777\", and no size or sha256",
                    }
                )));
            }
        }
        Ok(())
    }
}

/// Formats permission bits the way the manifest stores them.
pub fn mode_string(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

/// Parses a manifest mode: exactly four octal digits.
pub fn parse_mode(text: &str) -> Option<u32> {
    (text.len() == 4 && text.bytes().all(|b| (b'0'..=b'7').contains(&b)))
        .then(|| u32::from_str_radix(text, 8).ok())
        .flatten()
}

/// Why permission bits are not allowed in a bundle: setuid, setgid, sticky
/// or world-writable. (A symlink's mode is not checked here: it is always
/// 0777, and [`Manifest::validate`] checks that by its type.)
pub fn check_mode(mode: u32) -> Result<(), &'static str> {
    if mode & 0o4000 != 0 {
        Err("setuid mode: a bundle installs no setuid files")
    } else if mode & 0o2000 != 0 {
        Err("setgid mode: a bundle installs no setgid files")
    } else if mode & 0o1000 != 0 {
        Err("sticky mode: a bundle installs no sticky directories")
    } else if mode & 0o002 != 0 {
        Err("world-writable mode: a bundle installs nothing others may write")
    } else {
        Ok(())
    }
}

/// Why an entry name is not allowed: empty, absolute, `.`/`..`/empty
/// components, control characters (newlines included), or longer than
/// Linux's `PATH_MAX`. (Invalid UTF-8 cannot reach a `&str`; archive
/// readers refuse it before.)
pub fn check_name(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        Err("the name is empty")
    } else if path.len() >= 4096 {
        Err("the name is 4096 bytes or longer")
    } else if path.chars().any(char::is_control) {
        Err("the name has a control character (a newline, tab, escape, ...)")
    } else if path.starts_with('/') {
        Err("the name is absolute")
    } else if path.split('/').any(|c| c == "..") {
        Err("the name has a `..` component")
    } else if path.split('/').any(|c| c.is_empty() || c == ".") {
        Err("the name has an empty or `.` component")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(c: char) -> Sha256 {
        Sha256::parse(&c.to_string().repeat(64)).unwrap()
    }

    fn demo() -> Manifest {
        Manifest {
            schema: SCHEMA,
            name: "demo".into(),
            entries: vec![
                ManifestEntry::dir("etc", 0o755),
                ManifestEntry::dir("etc/systemd", 0o755),
                ManifestEntry::dir("etc/systemd/system", 0o755),
                ManifestEntry::dir("etc/systemd/system/multi-user.target.wants", 0o755),
                ManifestEntry::symlink(layout::UNIT_WANTS_LINK, layout::UNIT_WANTS_TARGET),
                ManifestEntry::file(layout::UNIT_FILE, 0o644, 10, sha('a')),
                ManifestEntry::dir("usr", 0o755),
                ManifestEntry::dir("usr/local", 0o755),
                ManifestEntry::dir("usr/local/sbin", 0o755),
                ManifestEntry::file(layout::AGENT_BIN, 0o755, 12, sha('b')),
                ManifestEntry::dir("var", 0o755),
                ManifestEntry::dir("var/lib", 0o755),
                ManifestEntry::dir(layout::STATE_DIR, 0o755),
                ManifestEntry::file(layout::PLAN_FILE, 0o600, 3, sha('c')),
            ],
        }
    }

    #[test]
    fn round_trip_and_schema_check() {
        let m = demo();
        m.validate().unwrap();
        let text = m.to_toml();
        assert!(text.contains("[[entry]]"), "{text}");
        assert!(text.contains("type = \"symlink\""), "{text}");
        assert!(text.contains("mode = \"0755\""), "{text}");
        assert_eq!(Manifest::from_toml(&text).unwrap(), m);
        let bad = text.replace("schema = 2", "schema = 9");
        let err = Manifest::from_toml(&bad).unwrap_err().to_string();
        assert!(err.contains("schema 9 is not supported"), "{err}");
        let old = "schema = 1\nname = \"x\"\n[[file]]\npath = \"a\"\n";
        let err = Manifest::from_toml(old).unwrap_err().to_string();
        assert!(err.contains("schema 1 is not supported"), "{err}");
    }

    #[test]
    fn every_rule_is_enforced() {
        type Mutation = Box<dyn Fn(&mut Manifest)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|m| m.entries.swap(0, 1)), "sorted"),
            (Box::new(|m| m.entries[9].mode = "4755".into()), "setuid"),
            (Box::new(|m| m.entries[9].mode = "2755".into()), "setgid"),
            (Box::new(|m| m.entries[0].mode = "1777".into()), "sticky"),
            (
                Box::new(|m| m.entries[5].mode = "0666".into()),
                "world-writable",
            ),
            (Box::new(|m| m.entries[5].mode = "755".into()), "four octal"),
            (Box::new(|m| m.entries[5].uid = 1000), "owner"),
            (
                Box::new(|m| m.entries[5].target = Some("x".into())),
                "a file has",
            ),
            (Box::new(|m| m.entries[0].size = Some(1)), "a dir has"),
            (
                Box::new(|m| m.entries[4].target = Some("/etc/shadow".into())),
                "target",
            ),
            (
                Box::new(|m| {
                    m.entries.push(ManifestEntry::file(
                        "var/lib/vgpu-firstboot/state.toml",
                        0o600,
                        1,
                        sha('d'),
                    ))
                }),
                "layout",
            ),
            (
                Box::new(|m| {
                    m.entries.push(ManifestEntry::file(
                        "var/lib/vgpu-firstboot/payload/a\nb",
                        0o644,
                        1,
                        sha('d'),
                    ))
                }),
                "control character",
            ),
            (
                Box::new(|m| {
                    m.entries.push(ManifestEntry::file(
                        layout::SIGNATURE_FILE,
                        0o644,
                        1,
                        sha('d'),
                    ))
                }),
                "itself",
            ),
        ];
        for (mutate, want) in cases {
            let mut m = demo();
            mutate(&mut m);
            if want != "sorted" {
                m.entries.sort_by(|a, b| a.path.cmp(&b.path));
            }
            let err = m.validate().unwrap_err().to_string();
            assert!(err.contains(want), "want {want:?} in {err}");
        }
    }

    #[test]
    fn modes_and_names() {
        assert!(check_mode(0o755).is_ok());
        assert!(check_mode(0o600).is_ok());
        assert!(check_mode(0o4755).is_err());
        assert!(check_mode(0o2777).is_err());
        assert!(check_mode(0o666).is_err());
        assert!(check_mode(0o777).is_err());
        assert_eq!(parse_mode("0644"), Some(0o644));
        assert_eq!(parse_mode("0o644"), None);
        assert_eq!(parse_mode("0648"), None);
        assert!(check_name("etc/passwd").is_ok());
        for bad in ["", "/etc", "a/../b", "a//b", "./a", "a\u{1b}[2J", "a\tb"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}

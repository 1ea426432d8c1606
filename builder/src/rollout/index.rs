//! A fleet's index (`DIR/index.toml`, and inside every hook).
//!
//! ```toml
//! schema = 1
//! default = "<sha256>"             # optional: hosts no entry names
//!
//! [[bundle]]
//! sha256 = "<sha256>"
//! size = 123456
//! file = "bundles/<sha256>.cpio.zst" # relative to a source
//! name = "demo"                      # the plan's name
//!
//! [[host]]
//! name = "pve-a1"                    # optional, for messages
//! mac = ["52:54:00:12:34:56"]        # any of these, or
//! serial = "CZ1234ABCD"              # the DMI serial, or
//! uuid = "4c4c4544-..."              # the system UUID
//! bundle = "<sha256>"
//! ```
//!
//! A host entry matches when any identifier it gives is the host's. Every
//! identifier names one entry only (checked by [`Index::validate`]), so at
//! most one entry can match a host through each identifier; a host matched
//! by two entries (its MAC in one, its serial in another) is refused, never
//! guessed.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use vgpu_plan::digest::Sha256;

/// The schema this version writes and reads.
pub const SCHEMA: u32 = 1;

/// The most `index.toml` may hold (read as a regular file, bounded).
pub const INDEX_LIMIT: u64 = 1024 * 1024;

/// A fleet's bundles and which host takes which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Index {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The bundle for hosts no `[[host]]` entry matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Sha256>,
    /// Every bundle, by content.
    #[serde(default, rename = "bundle")]
    pub bundles: Vec<IndexBundle>,
    /// Hosts and their bundles.
    #[serde(default, rename = "host", skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostEntry>,
}

/// One content-addressed bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct IndexBundle {
    /// SHA-256 of the bundle file (`NAME.cpio.zst`).
    pub sha256: Sha256,
    /// Its size in bytes.
    pub size: u64,
    /// Where it is, relative to a source (a directory, a stick's root or a
    /// base URL): `bundles/<sha256>.cpio.zst` in a fleet directory, the
    /// bundle's file name for a single bundle.
    pub file: String,
    /// The plan's name (`vgpu-bake bundle NAME`).
    pub name: String,
}

/// One host (or several, if they share an identifier list) and its bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HostEntry {
    /// A name for messages (the inventory's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// MAC addresses, lower case with colons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mac: Vec<String>,
    /// DMI serial (`/sys/class/dmi/id/product_serial`), as the firmware says it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// System UUID (`/sys/class/dmi/id/product_uuid`), lower case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// The bundle's sha256 (one of the index's `[[bundle]]`s).
    pub bundle: Sha256,
}

impl HostEntry {
    /// The entry's name for messages: its `name`, else its first identifier.
    pub fn label(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        self.mac
            .first()
            .map(|m| format!("mac {m}"))
            .or_else(|| self.serial.as_ref().map(|s| format!("serial {s}")))
            .or_else(|| self.uuid.as_ref().map(|u| format!("uuid {u}")))
            .unwrap_or_else(|| "(no identifier)".to_owned())
    }
}

/// What a host says it is, read at first boot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostIds {
    /// Every NIC's MAC address, normalised with [`normalize_mac`].
    pub macs: Vec<String>,
    /// DMI serial, trimmed; `None` when absent, empty or a placeholder
    /// ([`is_placeholder_serial`]).
    pub serial: Option<String>,
    /// System UUID, lower case; `None` when absent or all zeros/ones.
    pub uuid: Option<String>,
}

impl fmt::Display for HostIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let macs = if self.macs.is_empty() {
            "none".to_owned()
        } else {
            self.macs.join(", ")
        };
        write!(
            f,
            "mac {macs}; serial {}; uuid {}",
            self.serial.as_deref().unwrap_or("none"),
            self.uuid.as_deref().unwrap_or("none")
        )
    }
}

/// Why an index is not usable, or a host has no bundle in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// The index breaks a rule; names the entry and the key.
    #[error("fleet index: {0}")]
    Invalid(String),
    /// No entry names this host and there is no default.
    #[error(
        "no bundle for this host: no [[host]] entry matches it ({ids}) and the index has no default; add one of these identifiers to the inventory, or a default, and make the hook again"
    )]
    NoMatch {
        /// What the host said it is.
        ids: HostIds,
    },
    /// Two entries match this host.
    #[error(
        "this host ({ids}) matches more than one [[host]] entry: {entries}; give each host one entry in the inventory and make the hook again"
    )]
    Ambiguous {
        /// What the host said it is.
        ids: HostIds,
        /// The entries' labels, with what matched.
        entries: String,
    },
}

/// `aa:bb:cc:dd:ee:ff` in lower case, from `AA-BB-CC-DD-EE-FF`,
/// `aabb.ccdd.eeff` or `aabbccddeeff`; `None` if it is not 6 octets.
pub fn normalize_mac(text: &str) -> Option<String> {
    let hex: String = text
        .trim()
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let hex = hex.to_ascii_lowercase();
    let octets: Vec<&str> = (0..6).map(|i| &hex[2 * i..2 * i + 2]).collect();
    Some(octets.join(":"))
}

/// A system UUID in lower case with hyphens (8-4-4-4-12); `None` if not one.
pub fn normalize_uuid(text: &str) -> Option<String> {
    let t = text.trim().to_ascii_lowercase();
    let groups: Vec<&str> = t.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    (groups.len() == 5
        && groups
            .iter()
            .zip(lens)
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit())))
    .then_some(t)
}

/// Serials firmware ships unfilled: shared by every board of a make, so
/// never an identity.
pub fn is_placeholder_serial(serial: &str) -> bool {
    let s = serial.trim().to_ascii_lowercase();
    s.is_empty()
        || s.bytes().all(|b| b == b'0' || b == b' ')
        || [
            "to be filled by o.e.m.",
            "to be filled by oem",
            "default string",
            "system serial number",
            "not specified",
            "not applicable",
            "none",
            "n/a",
            "0123456789",
            "123456789",
            "chassis serial number",
        ]
        .contains(&s.as_str())
}

/// A UUID that firmware leaves unset (all zeros or all `f`).
pub fn is_placeholder_uuid(uuid: &str) -> bool {
    let hex: String = uuid.chars().filter(|c| *c != '-').collect();
    hex.chars().all(|c| c == '0') || hex.chars().all(|c| c.eq_ignore_ascii_case(&'f'))
}

impl Index {
    /// Parses `index.toml` text and validates it.
    pub fn parse(text: &str) -> Result<Self, IndexError> {
        let index: Index =
            toml::from_str(text).map_err(|e| IndexError::Invalid(e.message().to_owned()))?;
        index.validate()?;
        Ok(index)
    }

    /// The TOML text (what [`Index::parse`] reads back).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("an index always serialises")
    }

    /// The rules: schema, unique bundles with safe relative file names,
    /// host entries with at least one well-formed identifier and a known
    /// bundle, no identifier in two entries, a known default.
    pub fn validate(&self) -> Result<(), IndexError> {
        let bad = |m: String| Err(IndexError::Invalid(m));
        if self.schema != SCHEMA {
            return bad(format!(
                "`schema` = {} is not {SCHEMA}: made by another version of vgpu-bake; make it again with this one",
                self.schema
            ));
        }
        if self.bundles.is_empty() {
            return bad("no [[bundle]]: an index needs at least one bundle".to_owned());
        }
        let mut seen = BTreeMap::new();
        for (i, b) in self.bundles.iter().enumerate() {
            if seen.insert(b.sha256.clone(), i).is_some() {
                return bad(format!("bundle[{i}].sha256 {} is listed twice", b.sha256));
            }
            if !is_safe_relative(&b.file) {
                return bad(format!(
                    "bundle[{i}].file = {:?} must be a relative path of plain names (no `..`, no leading `/`)",
                    b.file
                ));
            }
            if vgpu_plan::manifest::check_name(&b.name).is_err() || b.name.is_empty() {
                return bad(format!(
                    "bundle[{i}].name = {:?} is not a plan name",
                    b.name
                ));
            }
        }
        let known = |s: &Sha256| seen.contains_key(s);
        if let Some(d) = &self.default
            && !known(d)
        {
            return bad(format!("`default` = {d} is not one of the [[bundle]]s"));
        }
        let mut ids: BTreeMap<String, usize> = BTreeMap::new();
        for (i, h) in self.hosts.iter().enumerate() {
            if !known(&h.bundle) {
                return bad(format!(
                    "host[{i}] ({}): bundle = {} is not one of the [[bundle]]s",
                    h.label(),
                    h.bundle
                ));
            }
            if h.mac.is_empty() && h.serial.is_none() && h.uuid.is_none() {
                return bad(format!(
                    "host[{i}] ({}) gives no identifier: give `mac`, `serial` or `uuid`",
                    h.label()
                ));
            }
            let mut keys = Vec::new();
            for m in &h.mac {
                if normalize_mac(m).as_deref() != Some(m.as_str()) {
                    return bad(format!(
                        "host[{i}].mac {m:?} is not a MAC address as aa:bb:cc:dd:ee:ff"
                    ));
                }
                keys.push(format!("mac {m}"));
            }
            if let Some(s) = &h.serial {
                if is_placeholder_serial(s) || s.trim() != s {
                    return bad(format!(
                        "host[{i}].serial {s:?} is a firmware placeholder or has surrounding blanks: it does not identify one machine; use its MAC address or UUID"
                    ));
                }
                keys.push(format!("serial {s}"));
            }
            if let Some(u) = &h.uuid {
                if normalize_uuid(u).as_deref() != Some(u.as_str()) || is_placeholder_uuid(u) {
                    return bad(format!(
                        "host[{i}].uuid {u:?} is not a system UUID in lower case (or is all zeros/ones)"
                    ));
                }
                keys.push(format!("uuid {u}"));
            }
            for k in keys {
                if let Some(j) = ids.insert(k.clone(), i) {
                    return bad(format!(
                        "{k} is in host[{j}] ({}) and host[{i}] ({}): one identifier, one entry",
                        self.hosts[j].label(),
                        h.label()
                    ));
                }
            }
        }
        Ok(())
    }

    /// The bundle with this sha256.
    pub fn bundle(&self, sha256: &Sha256) -> Option<&IndexBundle> {
        self.bundles.iter().find(|b| &b.sha256 == sha256)
    }

    /// The bundle this host takes: the one entry that matches it, else the
    /// default; refuses when two entries match or none does and there is
    /// no default. `self` must be valid ([`Index::validate`]).
    pub fn select(&self, ids: &HostIds) -> Result<&IndexBundle, IndexError> {
        let mut matched: Vec<(usize, String)> = Vec::new();
        for (i, h) in self.hosts.iter().enumerate() {
            let why = h
                .mac
                .iter()
                .find(|m| ids.macs.contains(m))
                .map(|m| format!("mac {m}"))
                .or_else(|| {
                    h.serial
                        .as_ref()
                        .filter(|s| ids.serial.as_ref() == Some(s))
                        .map(|s| format!("serial {s}"))
                })
                .or_else(|| {
                    h.uuid
                        .as_ref()
                        .filter(|u| ids.uuid.as_ref() == Some(u))
                        .map(|u| format!("uuid {u}"))
                });
            if let Some(why) = why {
                matched.push((i, why));
            }
        }
        let sha = match matched.as_slice() {
            [] => self
                .default
                .as_ref()
                .ok_or_else(|| IndexError::NoMatch { ids: ids.clone() })?,
            [(i, _)] => &self.hosts[*i].bundle,
            many => {
                return Err(IndexError::Ambiguous {
                    ids: ids.clone(),
                    entries: many
                        .iter()
                        .map(|(i, why)| format!("host[{i}] ({}) by {why}", self.hosts[*i].label()))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        };
        Ok(self
            .bundle(sha)
            .expect("a valid index names only its own bundles"))
    }
}

/// A relative path of plain names: no empty, `.` or `..` component, no
/// leading `/`, no backslash or control character.
pub fn is_safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && !path.chars().any(char::is_control)
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(c: char) -> Sha256 {
        Sha256::parse(&c.to_string().repeat(64)).unwrap()
    }

    fn index() -> Index {
        Index {
            schema: SCHEMA,
            default: Some(sha('d')),
            bundles: vec![
                IndexBundle {
                    sha256: sha('a'),
                    size: 10,
                    file: format!("bundles/{}.cpio.zst", sha('a')),
                    name: "gpu-a".into(),
                },
                IndexBundle {
                    sha256: sha('d'),
                    size: 20,
                    file: format!("bundles/{}.cpio.zst", sha('d')),
                    name: "demo".into(),
                },
            ],
            hosts: vec![
                HostEntry {
                    name: Some("a1".into()),
                    mac: vec!["52:54:00:12:34:56".into()],
                    serial: None,
                    uuid: None,
                    bundle: sha('a'),
                },
                HostEntry {
                    name: None,
                    mac: vec![],
                    serial: Some("CZ123".into()),
                    uuid: None,
                    bundle: sha('a'),
                },
            ],
        }
    }

    #[test]
    fn round_trips_and_selects() {
        let i = index();
        let back = Index::parse(&i.to_toml()).unwrap();
        assert_eq!(back, i);
        let by_mac = HostIds {
            macs: vec!["00:11:22:33:44:55".into(), "52:54:00:12:34:56".into()],
            ..HostIds::default()
        };
        assert_eq!(i.select(&by_mac).unwrap().name, "gpu-a");
        let other = HostIds::default();
        assert_eq!(i.select(&other).unwrap().name, "demo");
        let both = HostIds {
            macs: vec!["52:54:00:12:34:56".into()],
            serial: Some("CZ123".into()),
            uuid: None,
        };
        let e = i.select(&both).unwrap_err().to_string();
        assert!(e.contains("host[0] (a1) by mac 52:54:00:12:34:56"), "{e}");
        assert!(e.contains("host[1] (serial CZ123) by serial CZ123"), "{e}");
        let mut no_default = i.clone();
        no_default.default = None;
        let e = no_default.select(&other).unwrap_err().to_string();
        assert!(e.starts_with("no bundle for this host"), "{e}");
        assert!(e.contains("mac none; serial none; uuid none"), "{e}");
    }

    #[test]
    fn refuses_what_cannot_identify_a_host() {
        let mut i = index();
        i.hosts[1].serial = Some("To Be Filled By O.E.M.".into());
        assert!(
            i.validate()
                .unwrap_err()
                .to_string()
                .contains("placeholder")
        );
        let mut i = index();
        i.hosts[1].mac = vec!["52:54:00:12:34:56".into()];
        assert!(
            i.validate()
                .unwrap_err()
                .to_string()
                .contains("one identifier, one entry")
        );
        let mut i = index();
        i.bundles[0].file = "../x".into();
        assert!(i.validate().is_err());
        let mut i = index();
        i.hosts[0].mac = vec!["52-54-00-12-34-56".into()];
        assert!(i.validate().is_err());
    }

    #[test]
    fn normalises_identifiers() {
        assert_eq!(
            normalize_mac("52-54-00-AB-cd-EF").as_deref(),
            Some("52:54:00:ab:cd:ef")
        );
        assert_eq!(
            normalize_mac("5254.00ab.cdef").as_deref(),
            Some("52:54:00:ab:cd:ef")
        );
        assert_eq!(normalize_mac("52:54:00:ab:cd"), None);
        assert_eq!(
            normalize_uuid("4C4C4544-0042-3510-8052-B4C04F384E32").as_deref(),
            Some("4c4c4544-0042-3510-8052-b4c04f384e32")
        );
        assert!(is_placeholder_uuid("00000000-0000-0000-0000-000000000000"));
        assert!(is_placeholder_serial("Default string"));
        assert!(!is_placeholder_serial("CZ1234ABCD"));
    }
}

//! A fleet's inventory: which host takes which profile (`vgpu-bake fleet
//! INVENTORY.toml`).
//!
//! ```toml
//! default = "profiles/demo.toml"          # optional: hosts no entry names
//!
//! [[host]]
//! name = "pve-a1"                          # optional, for messages
//! mac = "52:54:00:12:34:56"                # a string or a list; and/or
//! serial = "CZ1234ABCD"                    # the DMI serial; and/or
//! uuid = "4c4c4544-0042-3510-8052-b4c04f384e32"   # the system UUID
//! profile = "profiles/two-gpu.toml"        # relative to the inventory file
//! ```
//!
//! Every `[[host]]` gives at least one identifier and a profile; profile
//! paths are relative to the inventory's directory. MACs are accepted as
//! `aa:bb:..`, `AA-BB-..`, `aabb.ccdd.eeff` or bare hex and UUIDs in any
//! case; both are written normalised into the index. Firmware placeholder
//! serials and UUIDs are refused (they name every board of a make), and so
//! is an identifier given twice.
//!
//! Three stages: [`parse`] (text -> [`Inventory`], strict schema),
//! [`resolve`] (-> [`FleetPlan`]: identifiers normalised and checked,
//! profiles found and deduplicated by their canonical path; the only I/O is
//! the canonicalisation, passed in) and the action in `fleet.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::index::{is_placeholder_serial, is_placeholder_uuid, normalize_mac, normalize_uuid};

/// An inventory as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// The profile for hosts no entry names.
    pub default: Option<String>,
    /// The `[[host]]` entries, in file order.
    pub hosts: Vec<InventoryHost>,
}

/// One `[[host]]` entry as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryHost {
    /// `name`.
    pub name: Option<String>,
    /// `mac`, one or several, as written.
    pub mac: Vec<String>,
    /// `serial`.
    pub serial: Option<String>,
    /// `uuid`.
    pub uuid: Option<String>,
    /// `profile`, relative to the inventory's directory.
    pub profile: String,
}

/// An inventory that cannot be used: the file, and what is wrong and what
/// to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct InventoryError {
    /// The inventory file, as given.
    pub file: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// The inventory resolved: every distinct profile once, every host with
/// normalised identifiers and the index of its profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetPlan {
    /// Distinct profiles (by canonical path), in order of first mention:
    /// the default first, then the hosts'.
    pub profiles: Vec<FleetProfile>,
    /// The default's index in `profiles`.
    pub default: Option<usize>,
    /// The hosts, in inventory order.
    pub hosts: Vec<FleetHost>,
}

/// A profile the fleet bakes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetProfile {
    /// The inventory's directory joined with the path as written: for
    /// messages and for loading.
    pub path: PathBuf,
    /// Its canonical path: the identity two entries share.
    pub canonical: PathBuf,
}

/// A host, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetHost {
    /// `name`.
    pub name: Option<String>,
    /// MACs, normalised (`aa:bb:cc:dd:ee:ff`).
    pub mac: Vec<String>,
    /// DMI serial, as written.
    pub serial: Option<String>,
    /// System UUID, normalised (lower case).
    pub uuid: Option<String>,
    /// Index in [`FleetPlan::profiles`].
    pub profile: usize,
}

const HOST_KEYS: &str = "`name`, `mac`, `serial`, `uuid`, `profile`";

/// Reads inventory text; `file` names it in errors.
pub fn parse(text: &str, file: &Path) -> Result<Inventory, InventoryError> {
    let err = |message: String| InventoryError {
        file: file.display().to_string(),
        message,
    };
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let at = e
            .span()
            .map(|s| {
                let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                format!("line {line}: ")
            })
            .unwrap_or_default();
        err(format!("{at}not valid TOML: {}", e.message().trim_end()))
    })?;
    let mut default = None;
    let mut hosts = Vec::new();
    for (key, value) in &table {
        match key.as_str() {
            "default" => {
                default = Some(string(value).ok_or_else(|| {
                    err(
                        "`default` must be a string: the path of a profile, relative to this file"
                            .to_owned(),
                    )
                })?);
            }
            "host" => {
                let array = value.as_array().filter(|a| a.iter().all(toml::Value::is_table)).ok_or_else(|| {
                    err("`host` must be an array of tables: write each host as a `[[host]]` section".to_owned())
                })?;
                for (i, h) in array.iter().enumerate() {
                    let h = h.as_table().expect("checked: every element is a table");
                    hosts.push(parse_host(i, h).map_err(err)?);
                }
            }
            other => {
                return Err(err(format!(
                    "unknown key `{other}`: an inventory has `default` and `[[host]]` sections only"
                )));
            }
        }
    }
    Ok(Inventory { default, hosts })
}

fn string(value: &toml::Value) -> Option<String> {
    value.as_str().map(str::to_owned)
}

fn parse_host(i: usize, h: &toml::Table) -> Result<InventoryHost, String> {
    let mut host = InventoryHost {
        name: None,
        mac: Vec::new(),
        serial: None,
        uuid: None,
        profile: String::new(),
    };
    let mut profile = None;
    for (key, value) in h {
        let need_string = || format!("host[{i}].{key} must be a string");
        match key.as_str() {
            "name" => host.name = Some(string(value).ok_or_else(need_string)?),
            "serial" => host.serial = Some(string(value).ok_or_else(need_string)?),
            "uuid" => host.uuid = Some(string(value).ok_or_else(need_string)?),
            "profile" => profile = Some(string(value).ok_or_else(need_string)?),
            "mac" => {
                host.mac = match value {
                    toml::Value::String(s) => vec![s.clone()],
                    toml::Value::Array(a) => a
                        .iter()
                        .map(string)
                        .collect::<Option<Vec<_>>>()
                        .filter(|v| !v.is_empty())
                        .ok_or_else(|| {
                            format!("host[{i}].mac must be a string or a non-empty list of strings, e.g. mac = [\"52:54:00:12:34:56\"]")
                        })?,
                    _ => {
                        return Err(format!(
                            "host[{i}].mac must be a string or a non-empty list of strings, e.g. mac = [\"52:54:00:12:34:56\"]"
                        ));
                    }
                }
            }
            other => {
                return Err(format!(
                    "host[{i}].{other} is not an inventory key: a [[host]] has {HOST_KEYS}"
                ));
            }
        }
    }
    host.profile = profile.ok_or_else(|| {
        format!("host[{i}] has no `profile`: give the profile this host takes, relative to the inventory file")
    })?;
    Ok(host)
}

/// Resolves an inventory read from `file`: identifiers normalised and
/// checked, each profile path joined with the inventory's directory and
/// canonicalised with `canonical` (`std::fs::canonicalize`; a test may
/// pass another), entries sharing a profile sharing its index.
pub fn resolve(
    inventory: &Inventory,
    file: &Path,
    canonical: &dyn Fn(&Path) -> std::io::Result<PathBuf>,
) -> Result<FleetPlan, InventoryError> {
    let err = |message: String| InventoryError {
        file: file.display().to_string(),
        message,
    };
    if inventory.hosts.is_empty() && inventory.default.is_none() {
        return Err(err(
            "no `default` and no [[host]]: nothing to bake; add `default = \"PROFILE.toml\"` or [[host]] entries".to_owned(),
        ));
    }
    let base = file.parent().unwrap_or(Path::new(""));
    let mut profiles: Vec<FleetProfile> = Vec::new();
    let mut profile_index = |written: &str, key: &str| -> Result<usize, InventoryError> {
        if written.is_empty() {
            return Err(err(format!(
                "{key} is empty: give the path of a profile .toml file, relative to this file"
            )));
        }
        let path = base.join(written);
        let canon = canonical(&path).map_err(|e| {
            err(format!(
                "{key} = {written:?}: cannot find the profile {}: {e}; paths are relative to the inventory file",
                path.display()
            ))
        })?;
        if let Some(i) = profiles.iter().position(|p| p.canonical == canon) {
            return Ok(i);
        }
        profiles.push(FleetProfile {
            path,
            canonical: canon,
        });
        Ok(profiles.len() - 1)
    };
    let default = inventory
        .default
        .as_deref()
        .map(|d| profile_index(d, "`default`"))
        .transpose()?;
    let mut hosts = Vec::new();
    // identifier -> the entry that gave it
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, h) in inventory.hosts.iter().enumerate() {
        let label = |i: usize| match &inventory.hosts[i].name {
            Some(n) => format!("host[{i}] ({n})"),
            None => format!("host[{i}]"),
        };
        if let Some(n) = &h.name
            && (n.is_empty() || n.chars().any(char::is_control))
        {
            return Err(err(format!(
                "host[{i}].name {n:?} must be a non-empty name without control characters"
            )));
        }
        if h.mac.is_empty() && h.serial.is_none() && h.uuid.is_none() {
            return Err(err(format!(
                "{} gives no identifier: give `mac`, `serial` or `uuid` so the hook can tell the host (or drop the entry and use `default`)",
                label(i)
            )));
        }
        let mut keys = Vec::new();
        let mut mac = Vec::new();
        for m in &h.mac {
            let n = normalize_mac(m).ok_or_else(|| {
                err(format!(
                    "host[{i}].mac {m:?} is not a MAC address: write 6 octets as aa:bb:cc:dd:ee:ff"
                ))
            })?;
            keys.push(format!("mac {n}"));
            mac.push(n);
        }
        let serial = match &h.serial {
            Some(s) if is_placeholder_serial(s) || s.trim() != s => {
                return Err(err(format!(
                    "host[{i}].serial {s:?} is a firmware placeholder (or has surrounding blanks): it names every board of a make, not this host; use its `mac` or `uuid`"
                )));
            }
            Some(s) if s.chars().any(char::is_control) => {
                return Err(err(format!(
                    "host[{i}].serial {s:?} holds control characters: copy it from `cat /sys/class/dmi/id/product_serial`"
                )));
            }
            Some(s) => {
                keys.push(format!("serial {s}"));
                Some(s.clone())
            }
            None => None,
        };
        let uuid = match &h.uuid {
            Some(u) => {
                let n = normalize_uuid(u).ok_or_else(|| {
                    err(format!(
                        "host[{i}].uuid {u:?} is not a system UUID: write it as 8-4-4-4-12 hex digits (`cat /sys/class/dmi/id/product_uuid`)"
                    ))
                })?;
                if is_placeholder_uuid(&n) {
                    return Err(err(format!(
                        "host[{i}].uuid {u:?} is a firmware placeholder (all zeros or all f): it names no host; use its `mac` or `serial`"
                    )));
                }
                keys.push(format!("uuid {n}"));
                Some(n)
            }
            None => None,
        };
        for k in keys {
            if let Some(j) = seen.insert(k.clone(), i) {
                let msg = if j == i {
                    format!("{k} is given twice in {}: list it once", label(i))
                } else {
                    format!(
                        "{k} is in {} and {}: one identifier names one host; remove it from one of them",
                        label(j),
                        label(i)
                    )
                };
                return Err(err(msg));
            }
        }
        let profile = profile_index(&h.profile, &format!("host[{i}].profile"))?;
        hosts.push(FleetHost {
            name: h.name.clone(),
            mac,
            serial,
            uuid,
            profile,
        });
    }
    Ok(FleetPlan {
        profiles,
        default,
        hosts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Canonicalisation without a file system: the path as given, made
    /// lexically clean; `missing` does not exist.
    fn canon(p: &Path) -> std::io::Result<PathBuf> {
        if p.to_string_lossy().contains("missing") {
            return Err(std::io::Error::from(std::io::ErrorKind::NotFound));
        }
        let mut out = PathBuf::from("/");
        for c in p.components() {
            match c {
                std::path::Component::ParentDir => {
                    out.pop();
                }
                std::path::Component::Normal(n) => out.push(n),
                _ => {}
            }
        }
        Ok(out)
    }

    fn run(text: &str) -> Result<FleetPlan, String> {
        let file = Path::new("fleet/inv.toml");
        let inv = parse(text, file).map_err(|e| e.to_string())?;
        resolve(&inv, file, &canon).map_err(|e| e.to_string())
    }

    #[test]
    fn dedups_profiles_and_normalises_ids() {
        let plan = run(r#"
default = "p/demo.toml"
[[host]]
mac = ["52-54-00-AB-CD-EF", "5254.0012.3456"]
profile = "p/../p/demo.toml"
[[host]]
name = "b"
uuid = "4C4C4544-0042-3510-8052-B4C04F384E32"
profile = "q.toml"
"#)
        .unwrap();
        assert_eq!(plan.profiles.len(), 2);
        assert_eq!(plan.default, Some(0));
        assert_eq!(plan.profiles[0].path, Path::new("fleet/p/demo.toml"));
        assert_eq!(plan.hosts[0].profile, 0);
        assert_eq!(
            plan.hosts[0].mac,
            ["52:54:00:ab:cd:ef", "52:54:00:12:34:56"]
        );
        assert_eq!(plan.hosts[1].profile, 1);
        assert_eq!(
            plan.hosts[1].uuid.as_deref(),
            Some("4c4c4544-0042-3510-8052-b4c04f384e32")
        );
    }

    #[test]
    fn refuses_with_the_entry_and_key() {
        let cases = [
            ("x = 1", "fleet/inv.toml: unknown key `x`"),
            (
                "[[host]]\nmac = \"52:54:00:12:34:56\"\nprofile = \"a.toml\"\nrack = 3",
                "fleet/inv.toml: host[0].rack is not an inventory key",
            ),
            (
                "[[host]]\nprofile = \"a.toml\"",
                "fleet/inv.toml: host[0] gives no identifier",
            ),
            (
                "[[host]]\nserial = \"Default string\"\nprofile = \"a.toml\"",
                "placeholder",
            ),
            (
                "[[host]]\nuuid = \"00000000-0000-0000-0000-000000000000\"\nprofile = \"a.toml\"",
                "placeholder",
            ),
            (
                "[[host]]\nmac = \"52:54:00:12:34\"\nprofile = \"a.toml\"",
                "host[0].mac \"52:54:00:12:34\" is not a MAC address",
            ),
            (
                "[[host]]\nname = \"a\"\nmac = \"52:54:00:12:34:56\"\nprofile = \"a.toml\"\n[[host]]\nmac = \"52-54-00-12-34-56\"\nprofile = \"b.toml\"",
                "mac 52:54:00:12:34:56 is in host[0] (a) and host[1]",
            ),
            (
                "[[host]]\nmac = \"52:54:00:12:34:56\"\nprofile = \"missing.toml\"",
                "host[0].profile = \"missing.toml\": cannot find the profile fleet/missing.toml",
            ),
            ("", "nothing to bake"),
            (
                "[[host]]\nmac = 5\nprofile = \"a.toml\"",
                "host[0].mac must be a string",
            ),
            (
                "[[host]]\nmac = \"52:54:00:12:34:56\"",
                "host[0] has no `profile`",
            ),
        ];
        for (text, want) in cases {
            let e = run(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}

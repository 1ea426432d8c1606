//! The systemd-boot trial entry: the entry systemd-boot boots by default
//! (`loader/loader.conf`'s `default`, else the running kernel's
//! `proxmox-<version>.conf`), copied with the new command line as
//! `loader/entries/vgpu-bake-trial.conf` on every ESP proxmox-boot-tool
//! manages; `bootctl set-oneshot vgpu-bake-trial.conf` boots it once.

use std::cmp::Ordering;

/// The trial entry's file name, the one-shot target.
pub const ENTRY_FILE: &str = "vgpu-bake-trial.conf";
/// The entries' directory on an ESP.
pub const ENTRIES_DIR: &str = "loader/entries";
/// systemd-boot's settings on an ESP.
pub const LOADER_CONF: &str = "loader/loader.conf";
/// The ESPs proxmox-boot-tool manages, one UUID a line.
pub const BOOT_UUIDS: &str = "etc/kernel/proxmox-boot-uuids";
/// Where the agent mounts an ESP (on `/run`, a tmpfs), `<uuid>` appended.
pub const MOUNT_DIR: &str = "run/vgpu-firstboot/esp";

/// The ESP UUIDs of `proxmox-boot-uuids` (comments and blanks skipped);
/// anything but a plain UUID is refused.
pub fn esp_uuids(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for l in text.lines().map(str::trim) {
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            out.clear();
            break;
        }
        out.push(l.to_owned());
    }
    if out.is_empty() {
        return Err(format!(
            "/{BOOT_UUIDS} must name the ESPs, one file system UUID a line; fix it (`proxmox-boot-tool status`, `proxmox-boot-tool init`), then retry"
        ));
    }
    Ok(out)
}

/// The value of `key` in a loader file (`key value`, the last one wins).
pub fn value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let (k, v) = l.split_once(char::is_whitespace)?;
            (k == key).then(|| v.trim())
        })
        .next_back()
        .filter(|v| !v.is_empty())
}

/// `*` and `?` glob match, as systemd-boot's `default` uses.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pattern[1..], name) || (!name.is_empty() && glob(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => glob(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => glob(&pattern[1..], &name[1..]),
        _ => false,
    }
}

/// Version order: digit runs compared as numbers, the rest as text.
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let b = s.as_bytes();
        for i in 1..=b.len() {
            if i == b.len() || b[i].is_ascii_digit() != b[start].is_ascii_digit() {
                out.push((b[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(&cb) {
        let o = match (x.0, y.0) {
            (true, true) => {
                let (p, q) = (x.1.trim_start_matches('0'), y.1.trim_start_matches('0'));
                p.len().cmp(&q.len()).then(p.cmp(q))
            }
            _ => x.1.cmp(y.1),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    ca.len().cmp(&cb.len())
}

/// The entry file systemd-boot boots by default among `entries` (file
/// names in `loader/entries`): `default` names it exactly (with or without
/// `.conf`) or as a glob, the newest version among the matches, as
/// systemd-boot sorts them; without a `default`, `proxmox-<running>.conf`
/// (`running`: the running kernel, or for a pin's trial the pinned one,
/// whose entry `proxmox-boot-tool refresh` wrote). The trial entry itself
/// never counts.
pub fn default_entry(
    default: Option<&str>,
    entries: &[String],
    running: &str,
) -> Result<String, String> {
    let entries: Vec<&String> = entries
        .iter()
        .filter(|e| e.ends_with(".conf") && e.as_str() != ENTRY_FILE)
        .collect();
    let found = match default {
        Some(d) if d.starts_with('@') => None,
        Some(d) => {
            let want = if d.ends_with(".conf") {
                d.to_owned()
            } else {
                format!("{d}.conf")
            };
            entries
                .iter()
                .filter(|e| glob(want.as_bytes(), e.as_bytes()))
                .max_by(|a, b| version_cmp(a, b))
        }
        None => {
            let want = format!("proxmox-{running}.conf");
            entries.iter().find(|e| **e == &want)
        }
    };
    found.map(|e| e.to_string()).ok_or_else(|| {
        let v: Vec<&str> = entries.iter().map(|e| e.as_str()).collect();
        format!(
            "no loader entry to copy: /{LOADER_CONF}'s default is {default:?} (none: proxmox-{running}.conf, of the running or pinned kernel; `@saved` and such depend on EFI variables), /{ENTRIES_DIR} holds {}; set `default` to an entry (`bootctl set-default`), then retry",
            v.join(", ")
        )
    })
}

/// The trial entry from the default entry's text: its lines without
/// `title` and `options`, under our `title`, with `options` the new command
/// line. Returns the text and the kernel version (`version`, else the
/// `linux` image's name).
pub fn trial_entry(default: &str, title: &str, options: &str) -> Result<(String, String), String> {
    let Some(linux) = value(default, "linux") else {
        return Err("the default loader entry has no `linux` line: it boots no Linux kernel; make a Proxmox kernel's entry the default, then retry".into());
    };
    let kernel = value(default, "version")
        .unwrap_or_else(|| super::image_kernel(linux))
        .to_owned();
    let mut text = format!("title   {title}\n");
    for l in default.lines() {
        let key = l.split_whitespace().next().unwrap_or("");
        if !matches!(key, "title" | "options" | "sort-key") && !l.trim().is_empty() {
            text.push_str(l.trim());
            text.push('\n');
        }
    }
    text.push_str(&format!("options {}\n", options.trim()));
    Ok((text, kernel))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_default_entry_follows_loader_conf() {
        let e = names(&[
            "proxmox-6.5.13-6-pve.conf",
            "proxmox-6.8.12-10-pve.conf",
            "proxmox-6.8.12-9-pve.conf",
            ENTRY_FILE,
        ]);
        let r = "6.8.12-9-pve";
        assert_eq!(
            default_entry(Some("proxmox-*"), &e, r).unwrap(),
            "proxmox-6.8.12-10-pve.conf"
        );
        assert_eq!(
            default_entry(Some("proxmox-6.5.13-6-pve.conf"), &e, r).unwrap(),
            "proxmox-6.5.13-6-pve.conf"
        );
        assert_eq!(
            default_entry(Some("proxmox-6.5.13-6-pve"), &e, r).unwrap(),
            "proxmox-6.5.13-6-pve.conf"
        );
        assert_eq!(
            default_entry(None, &e, r).unwrap(),
            "proxmox-6.8.12-9-pve.conf"
        );
        assert!(
            default_entry(None, &e, "6.2.16-3-pve")
                .unwrap_err()
                .contains("default is None (none: proxmox-6.2.16-3-pve.conf, of the running or pinned kernel")
        );
        assert!(
            default_entry(Some("debian-*"), &e, r)
                .unwrap_err()
                .contains("default is Some(\"debian-*\")")
        );
        assert!(
            default_entry(Some("@saved"), &e, r)
                .unwrap_err()
                .contains("EFI variables")
        );
        assert!(
            default_entry(Some("vgpu-bake-*"), &e, r).is_err(),
            "the trial entry never counts"
        );
    }

    #[test]
    fn loader_values_and_uuids() {
        assert_eq!(
            value("timeout 3\ndefault proxmox-*\n", "default"),
            Some("proxmox-*")
        );
        assert_eq!(value("timeout 3\n", "default"), None);
        assert_eq!(
            esp_uuids("# c\n1234-ABCD\n\n5678-EF01\n").unwrap(),
            ["1234-ABCD", "5678-EF01"]
        );
        assert!(esp_uuids("../x\n").is_err());
        assert!(esp_uuids("\n").is_err());
        assert_eq!(version_cmp("6.8.12-10", "6.8.12-9"), Ordering::Greater);
        assert_eq!(version_cmp("6.5", "6.14"), Ordering::Less);
    }

    #[test]
    fn the_trial_entry_keeps_the_kernel_and_takes_the_new_options() {
        let default = "title    Proxmox Virtual Environment\nversion  6.8.12-9-pve\noptions  root=ZFS=rpool/ROOT/pve-1 boot=zfs\nlinux    /EFI/proxmox/6.8.12-9-pve/vmlinuz-6.8.12-9-pve\ninitrd   /EFI/proxmox/6.8.12-9-pve/initrd.img-6.8.12-9-pve\n";
        let (text, kernel) = trial_entry(
            default,
            "vgpu-bake trial",
            "root=ZFS=rpool/ROOT/pve-1 boot=zfs intel_iommu=on\n",
        )
        .unwrap();
        assert_eq!(kernel, "6.8.12-9-pve");
        assert_eq!(
            text,
            "title   vgpu-bake trial\nversion  6.8.12-9-pve\nlinux    /EFI/proxmox/6.8.12-9-pve/vmlinuz-6.8.12-9-pve\ninitrd   /EFI/proxmox/6.8.12-9-pve/initrd.img-6.8.12-9-pve\noptions root=ZFS=rpool/ROOT/pve-1 boot=zfs intel_iommu=on\n"
        );
        assert!(trial_entry("title x\n", "t", "o").is_err());
    }
}

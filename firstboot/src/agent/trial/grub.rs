//! The GRUB trial entry: the entry GRUB boots by default, found in
//! `/boot/grub/grub.cfg` as `update-grub` wrote it, copied with the new
//! arguments on its `linux` line, as a script in `/etc/grub.d` that
//! `update-grub` runs after `10_linux` and `40_custom` (so the trial entry
//! never becomes entry 0). `grub-reboot vgpu-bake-trial` boots it once:
//! GRUB's `00_header` uses `next_entry` whatever `GRUB_DEFAULT` is, and sets
//! `boot_once`, so a `savedefault` in the copied body saves nothing.

use super::{ENTRY_ID, image_kernel};
use crate::edits::kernel_cmdline::{kernel_cmdline, shell_assignments};

/// The script `update-grub` runs for the trial entry.
pub const SCRIPT: &str = "etc/grub.d/42_vgpu-bake-trial";
/// The configuration `update-grub` writes (read, never written).
pub const GRUB_CFG: &str = "boot/grub/grub.cfg";
/// GRUB's environment block (`saved_entry`, `next_entry`).
pub const GRUBENV: &str = "boot/grub/grubenv";

/// One item of a GRUB menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuItem {
    /// Its title (the first argument of `menuentry`/`submenu`).
    pub title: String,
    /// Its `--id` (or `$menuentry_id_option`) value.
    pub id: Option<String>,
    /// An entry's body lines, or a submenu's items.
    pub kind: Item,
}

/// An entry or a submenu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A boot entry: the lines between its braces.
    Entry(Vec<String>),
    /// A submenu.
    Submenu(Vec<MenuItem>),
}

/// Splits a GRUB script line into words: single quotes literal, double
/// quotes and backslashes as GRUB reads them.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => cur.extend(chars.next()),
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.extend(chars.next());
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// The menu of a `grub.cfg`: every `menuentry` and `submenu`, nested, in
/// order (entries inside `if` blocks count, as GRUB defines them when the
/// condition holds).
pub fn parse_menu(cfg: &str) -> Result<Vec<MenuItem>, String> {
    let lines: Vec<&str> = cfg.lines().collect();
    let mut i = 0;
    let items = parse_items(&lines, &mut i, false)?;
    Ok(items)
}

const UNCLOSED: &str = "a menuentry or submenu has no closing `}`";

fn parse_items(lines: &[&str], i: &mut usize, nested: bool) -> Result<Vec<MenuItem>, String> {
    let mut items = Vec::new();
    while *i < lines.len() {
        let line = lines[*i].trim();
        *i += 1;
        if nested && line == "}" {
            return Ok(items);
        }
        let w = words(line);
        let Some(first) = w.first().map(String::as_str) else {
            continue;
        };
        if !matches!(first, "menuentry" | "submenu") {
            continue;
        }
        if w.last().map(String::as_str) != Some("{") || w.len() < 3 {
            return Err(format!("`{line}` is not a `menuentry 'title' ... {{` line"));
        }
        let title = w[1].clone();
        let id = w
            .iter()
            .position(|x| x == "--id" || x == "$menuentry_id_option")
            .and_then(|p| w.get(p + 1))
            .cloned();
        let kind = if first == "submenu" {
            Item::Submenu(parse_items(lines, i, true)?)
        } else {
            Item::Entry(entry_body(lines, i)?)
        };
        items.push(MenuItem { title, id, kind });
    }
    if nested {
        return Err(UNCLOSED.into());
    }
    Ok(items)
}

/// An entry's body up to its closing brace (inner `{ ... }` blocks kept).
fn entry_body(lines: &[&str], i: &mut usize) -> Result<Vec<String>, String> {
    let mut depth = 0;
    let mut body = Vec::new();
    while *i < lines.len() {
        let raw = lines[*i];
        let line = raw.trim();
        *i += 1;
        if line == "}" && depth == 0 {
            return Ok(body);
        }
        if line.ends_with('{') {
            depth += 1;
        } else if line == "}" {
            depth -= 1;
        }
        body.push(raw.to_owned());
    }
    Err(UNCLOSED.into())
}

/// `GRUB_DEFAULT` as `update-grub` sees it: `/etc/default/grub`, then the
/// `/etc/default/grub.d/*.cfg` files in order; `0` when unset.
pub fn grub_default(settings: &[&str]) -> String {
    let all = settings.join("\n");
    match shell_assignments(&all).get("GRUB_DEFAULT") {
        Some(v) if !v.is_empty() => v.clone(),
        _ => "0".to_owned(),
    }
}

/// A value of GRUB's environment block (`grubenv`).
pub fn env_value(grubenv: &str, key: &str) -> Option<String> {
    grubenv
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('=').map(str::to_owned))
        .filter(|v| !v.is_empty())
}

/// The entry GRUB boots by default: `default` is `GRUB_DEFAULT` (a number,
/// a title, an id, a `>` path through submenus, or `saved`, which reads
/// `saved_entry` from `grubenv`, the first entry when it is unset). Returns
/// the entry's titles from the top and its body; an entry that cannot be
/// found is an error, never a guess.
pub fn resolve_default<'a>(
    menu: &'a [MenuItem],
    default: &str,
    grubenv: Option<&str>,
) -> Result<(Vec<&'a str>, &'a [String]), String> {
    let target = if default == "saved" {
        grubenv
            .and_then(|e| env_value(e, "saved_entry"))
            .unwrap_or_else(|| "0".to_owned())
    } else {
        default.to_owned()
    };
    let shown = if default == "saved" {
        format!("GRUB_DEFAULT=saved (saved_entry {target:?} in /{GRUBENV})")
    } else {
        format!("GRUB_DEFAULT={default:?}")
    };
    let mut level = menu;
    let mut titles = Vec::new();
    let parts: Vec<&str> = target.split('>').collect();
    for (n, part) in parts.iter().enumerate() {
        let found = match part.parse::<usize>() {
            Ok(k) => level.get(k),
            Err(_) => level
                .iter()
                .find(|m| m.id.as_deref() == Some(part) || m.title == *part),
        };
        let last = n + 1 == parts.len();
        let why = match found.map(|i| (&i.kind, last)) {
            Some((Item::Entry(body), true)) => {
                titles.push(found.map_or("", |i| i.title.as_str()));
                return Ok((titles, body));
            }
            Some((Item::Submenu(items), false)) => {
                titles.push(found.map_or("", |i| i.title.as_str()));
                level = items;
                continue;
            }
            Some((Item::Submenu(_), true)) => "is a submenu, not an entry",
            Some((Item::Entry(_), false)) => "is an entry, not a submenu",
            None => "is not there",
        };
        return Err(format!(
            "{shown}: {part:?} {why} in /{GRUB_CFG} (menu level {}); set GRUB_DEFAULT in /etc/default/grub to an entry (`N`, a title, an id or `submenu>entry`), run update-grub, then retry",
            n + 1
        ));
    }
    Err(format!(
        "{shown} is empty; set it in /etc/default/grub, then retry"
    ))
}

/// The entry that boots kernel `version` (a pin's trial): the first, in
/// menu order and into submenus ("Advanced options"), whose first `linux`
/// line boots `vmlinuz-<version>`: its title and body.
pub fn kernel_entry<'a>(menu: &'a [MenuItem], version: &str) -> Option<(&'a str, &'a [String])> {
    menu.iter().find_map(|m| match &m.kind {
        Item::Entry(body) => (body
            .iter()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                matches!(w.next(), Some("linux" | "linuxefi")).then(|| w.next())?
            })
            .map(image_kernel)
            == Some(version))
        .then_some((m.title.as_str(), body.as_slice())),
        Item::Submenu(items) => kernel_entry(items, version),
    })
}

/// The trial entry made from the default entry's body: the same lines with
/// `args` on its `linux` line ([`kernel_cmdline`]: a contradicting token
/// replaced, the rest kept). Returns the `menuentry` text and the kernel
/// version of the `linux` line.
pub fn trial_entry(
    title: &str,
    body: &[String],
    args: &[String],
) -> Result<(String, String), String> {
    let mut kernel = None;
    let mut lines = Vec::new();
    for line in body {
        let t = line.trim_start();
        let indent = &line[..line.len() - t.len()];
        let w: Vec<&str> = t.split_whitespace().collect();
        if kernel.is_none() && matches!(w.first(), Some(&"linux") | Some(&"linuxefi")) {
            let Some(image) = w.get(1) else {
                break;
            };
            let rest = t
                .split_once(image)
                .map(|(_, r)| r)
                .unwrap_or_default()
                .trim();
            let cmdline = kernel_cmdline(rest, args);
            lines.push(format!("{indent}{} {image} {}", w[0], cmdline.trim_end()));
            kernel = Some(image_kernel(image).to_owned());
        } else {
            lines.push(line.clone());
        }
    }
    let Some(kernel) = kernel else {
        return Err(format!(
            "the default entry {title:?} of /{GRUB_CFG} has no `linux` line (no kernel to add arguments to); make a Linux entry the default, run update-grub, then retry"
        ));
    };
    let mut text = format!("menuentry {} --id {ENTRY_ID} {{\n", quote(title));
    for l in lines {
        text.push_str(&l);
        text.push('\n');
    }
    text.push_str("}\n");
    Ok((text, kernel))
}

/// A GRUB single-quoted word.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The `/etc/grub.d` script: prints the entry, as `40_custom` does.
pub fn script(entry: &str) -> String {
    format!(
        "#!/bin/sh\n\
         # vgpu-firstboot's one-time trial boot (`grub-reboot {ENTRY_ID}`),\n\
         # removed once it is over.\n\
         exec tail -n +5 \"$0\"\n\
         {entry}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "\
### BEGIN /etc/grub.d/00_header ###
function load_video {
  if [ x$feature_all_video_module = xy ]; then
    insmod all_video
  fi
}
### BEGIN /etc/grub.d/10_linux ###
menuentry 'Proxmox VE GNU/Linux' --class proxmox $menuentry_id_option 'gnulinux-simple-abc' {
\tload_video
\tsearch --no-floppy --fs-uuid --set=root abc
\techo\t'Loading Linux 6.8.12-9-pve ...'
\tlinux\t/boot/vmlinuz-6.8.12-9-pve root=/dev/mapper/pve-root ro  quiet
\tinitrd\t/boot/initrd.img-6.8.12-9-pve
}
submenu 'Advanced options for Proxmox VE GNU/Linux' $menuentry_id_option 'gnulinux-advanced-abc' {
\tmenuentry 'Proxmox VE GNU/Linux, with Linux 6.8.12-9-pve' --class proxmox $menuentry_id_option 'gnulinux-6.8.12-9-pve-advanced-abc' {
\t\tif [ x$grub_platform = xefi ]; then
\t\t  echo efi
\t\tfi
\t\tlinux\t/boot/vmlinuz-6.8.12-9-pve root=/dev/mapper/pve-root ro  quiet
\t}
\tmenuentry 'Proxmox VE GNU/Linux, with Linux 6.5.13-6-pve' --class proxmox $menuentry_id_option 'gnulinux-6.5.13-6-pve-advanced-abc' {
\t\tlinux\t/boot/vmlinuz-6.5.13-6-pve root=/dev/mapper/pve-root ro intel_iommu=off quiet
\t}
}
menuentry 'Memory test (memtest86+x64.efi)' --class memtest $menuentry_id_option 'memtest86+' {
\tchainloader /boot/memtest86+x64.efi
}
";

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn resolve(default: &str, env: Option<&str>) -> Result<Vec<String>, String> {
        let menu = parse_menu(CFG).unwrap();
        resolve_default(&menu, default, env)
            .map(|(t, _)| t.into_iter().map(str::to_owned).collect())
    }

    #[test]
    fn the_menu_nests_submenus() {
        let menu = parse_menu(CFG).unwrap();
        assert_eq!(menu.len(), 3);
        assert_eq!(menu[0].id.as_deref(), Some("gnulinux-simple-abc"));
        let Item::Submenu(sub) = &menu[1].kind else {
            panic!("{menu:?}")
        };
        assert_eq!(sub.len(), 2);
        let Item::Entry(body) = &sub[0].kind else {
            panic!()
        };
        assert_eq!(body.len(), 4, "{body:?}");
        assert!(parse_menu("menuentry 'x' {\n linux /v\n").is_err());
    }

    #[test]
    fn grub_default_forms_resolve() {
        let first = vec!["Proxmox VE GNU/Linux".to_owned()];
        assert_eq!(resolve("0", None).unwrap(), first);
        assert_eq!(resolve("Proxmox VE GNU/Linux", None).unwrap(), first);
        assert_eq!(resolve("gnulinux-simple-abc", None).unwrap(), first);
        assert_eq!(resolve("saved", None).unwrap(), first);
        let env = "# GRUB Environment Block\nsaved_entry=gnulinux-advanced-abc>gnulinux-6.5.13-6-pve-advanced-abc\n####\n";
        let old = resolve("saved", Some(env)).unwrap();
        assert_eq!(old[1], "Proxmox VE GNU/Linux, with Linux 6.5.13-6-pve");
        assert_eq!(resolve("1>0", None).unwrap().len(), 2);
        assert_eq!(
            resolve("Advanced options for Proxmox VE GNU/Linux>1", None).unwrap()[1],
            "Proxmox VE GNU/Linux, with Linux 6.5.13-6-pve"
        );
    }

    #[test]
    fn unresolvable_defaults_are_errors() {
        for (default, says) in [
            ("7", "\"7\" is not there"),
            ("Debian", "\"Debian\" is not there"),
            ("1", "\"1\" is a submenu, not an entry"),
            ("0>1", "\"0\" is an entry, not a submenu"),
            (
                "1>5",
                "\"5\" is not there in /boot/grub/grub.cfg (menu level 2)",
            ),
        ] {
            let e = resolve(default, None).unwrap_err();
            assert!(e.contains(says), "{default}: {e}");
            assert!(e.contains("then retry"), "{e}");
        }
        let e = resolve("saved", Some("saved_entry=gone\n")).unwrap_err();
        assert!(e.contains("saved_entry \"gone\""), "{e}");
    }

    #[test]
    fn a_pinned_kernel_is_found_in_the_advanced_submenu() {
        let menu = parse_menu(CFG).unwrap();
        let (title, body) = kernel_entry(&menu, "6.5.13-6-pve").unwrap();
        assert_eq!(title, "Proxmox VE GNU/Linux, with Linux 6.5.13-6-pve");
        let (_, kernel) = trial_entry("t", body, &args("intel_iommu=on")).unwrap();
        assert_eq!(kernel, "6.5.13-6-pve");
        // The newest kernel: the top-level entry, found first.
        let (title, _) = kernel_entry(&menu, "6.8.12-9-pve").unwrap();
        assert_eq!(title, "Proxmox VE GNU/Linux");
        // Whole versions only; a kernel with no entry is none.
        assert_eq!(kernel_entry(&menu, "6.5.13"), None);
        assert_eq!(kernel_entry(&menu, "6.1.10-1-pve"), None);
    }

    #[test]
    fn grub_default_follows_the_settings_files() {
        assert_eq!(grub_default(&["GRUB_TIMEOUT=5\n"]), "0");
        assert_eq!(
            grub_default(&["GRUB_DEFAULT=0\n", "GRUB_DEFAULT=\"1>2\"\n"]),
            "1>2"
        );
        assert_eq!(
            grub_default(&["#GRUB_DEFAULT=2\nGRUB_DEFAULT=saved\n"]),
            "saved"
        );
    }

    #[test]
    fn the_trial_entry_adds_the_arguments_to_the_linux_line() {
        let menu = parse_menu(CFG).unwrap();
        let (titles, body) = resolve_default(&menu, "0", None).unwrap();
        let (text, kernel) = trial_entry(
            "vgpu-bake trial: it's",
            body,
            &args("intel_iommu=on iommu=pt"),
        )
        .unwrap();
        assert_eq!(kernel, "6.8.12-9-pve");
        assert_eq!(titles, ["Proxmox VE GNU/Linux"]);
        assert!(
            text.starts_with("menuentry 'vgpu-bake trial: it'\\''s' --id vgpu-bake-trial {\n"),
            "{text}"
        );
        assert!(
            text.contains("\tlinux /boot/vmlinuz-6.8.12-9-pve root=/dev/mapper/pve-root ro quiet intel_iommu=on iommu=pt\n"),
            "{text}"
        );
        assert!(text.contains("\tinitrd\t/boot/initrd.img-6.8.12-9-pve\n"));
        assert!(text.ends_with("}\n"));
        // A contradicting argument is replaced where it was.
        let (_, body) = resolve_default(&menu, "1>1", None).unwrap();
        let (text, kernel) = trial_entry("t", body, &args("intel_iommu=on")).unwrap();
        assert_eq!(kernel, "6.5.13-6-pve");
        assert!(text.contains("ro intel_iommu=on quiet\n"), "{text}");
        // The script prints exactly the entry.
        let s = script(&text);
        let printed: Vec<&str> = s.lines().skip(4).collect();
        assert_eq!(printed.join("\n") + "\n", text);
        // No linux line: an error, not a guess.
        let (_, body) = resolve_default(&menu, "memtest86+", None).unwrap();
        assert!(
            trial_entry("t", body, &args("a=b"))
                .unwrap_err()
                .contains("no `linux` line")
        );
    }
}

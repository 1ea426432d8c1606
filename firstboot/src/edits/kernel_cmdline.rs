//! Kernel command line: IOMMU arguments for GRUB and systemd-boot hosts.
//!
//! Proxmox VE boots either through GRUB (`/etc/default/grub`, then
//! `update-grub`) or, on ZFS/btrfs roots installed in UEFI mode, through
//! systemd-boot managed by `proxmox-boot-tool` (`/etc/kernel/cmdline`, then
//! `proxmox-boot-tool refresh`). The bash installer handled GRUB only and
//! edited `/etc/default/grub` with `sed`, commented lines included, and
//! duplicated `intel_iommu=on` when only part of the arguments was present
//! (seed §4.8, §15.11). Here:
//!
//! * GRUB: `/etc/default/grub` is not edited at all. We own a drop-in,
//!   [`GRUB_DROPIN`], that `update-grub` sources after it, adding only the
//!   arguments the *uncommented*, shell-evaluated values lack.
//! * systemd-boot: `/etc/kernel/cmdline` is one line; missing arguments are
//!   appended, an argument that switches ours off (`intel_iommu=off`) is
//!   replaced, everything else (`root=ZFS=... boot=zfs`) is kept as is.
//! * After the reboot, [`missing_args`] checks `/proc/cmdline`.
//!
//! Arguments are compared as exact tokens. When the kernel sees one key
//! twice the later value wins, so an argument counts as present only if no
//! later token contradicts it (same key, one value off-like and the other
//! not: `intel_iommu=on` vs `intel_iommu=off`). Keys that may repeat with
//! different values (`video=efifb:off video=vesafb:off`) never contradict.

use std::collections::BTreeMap;

use super::{EditError, FileOp, owned_header, write_if_changed};

/// The drop-in we own, sourced by `update-grub` after `/etc/default/grub`.
pub const GRUB_DROPIN: &str = "etc/default/grub.d/vgpu-bake.cfg";
/// GRUB's main settings file (read, never written).
pub const DEFAULT_GRUB: &str = "etc/default/grub";
/// systemd-boot's command line, read by `proxmox-boot-tool refresh`.
pub const KERNEL_CMDLINE: &str = "etc/kernel/cmdline";

const LINUX: &str = "GRUB_CMDLINE_LINUX";
const LINUX_DEFAULT: &str = "GRUB_CMDLINE_LINUX_DEFAULT";

/// Content of [`GRUB_DROPIN`]: appends to `GRUB_CMDLINE_LINUX_DEFAULT` the
/// `args` that the uncommented `GRUB_CMDLINE_LINUX` and
/// `GRUB_CMDLINE_LINUX_DEFAULT` of `/etc/default/grub` don't already give
/// (commented lines are ignored; quotes and `$VAR` are evaluated like the
/// shell that `update-grub` runs does). With nothing to add, the drop-in
/// holds only comments.
pub fn grub_dropin(args: &[String], current_default_grub: Option<&str>) -> String {
    let active = grub_cmdline(current_default_grub.unwrap_or(""));
    let missing = missing_args(&active, args);
    let present: Vec<&String> = unique(args)
        .into_iter()
        .filter(|a| !missing.contains(a))
        .collect();

    let mut out = owned_header("IOMMU kernel arguments for vGPU and PCI passthrough");
    out.push_str(
        "# update-grub reads it after /etc/default/grub; it adds only what that file lacks.\n",
    );
    if !present.is_empty() {
        let present: Vec<&str> = present.iter().map(|a| a.as_str()).collect();
        out.push_str(&format!(
            "# Already set in /etc/default/grub: {}\n",
            present.join(" ")
        ));
    }
    if missing.is_empty() {
        out.push_str("# Nothing to add.\n");
    } else {
        let escaped: Vec<String> = missing.iter().map(|a| shell_escape(a)).collect();
        out.push_str(&format!(
            "{LINUX_DEFAULT}=\"${{{LINUX_DEFAULT}}} {}\"\n",
            escaped.join(" ")
        ));
    }
    out
}

/// New content of `/etc/kernel/cmdline`: `current` with each missing
/// argument appended, or put in place of the token that contradicts it
/// (`intel_iommu=off` when we want `intel_iommu=on`), as a single line with
/// a single trailing newline. Tokens are kept verbatim, quotes included; an
/// argument already in effect is left alone, even with an overridden
/// contradiction before it, so the file changes only when
/// [`missing_args`] finds something.
pub fn kernel_cmdline(current: &str, args: &[String]) -> String {
    let mut tokens: Vec<String> = split_cmdline(current)
        .into_iter()
        .map(str::to_owned)
        .collect();
    for arg in unique(args) {
        let last = tokens.iter().rposition(|t| t == arg);
        let mut first_removed = None;
        let mut i = last.map_or(0, |at| at + 1);
        while i < tokens.len() {
            if contradicts(&tokens[i], arg) {
                first_removed.get_or_insert(i);
                tokens.remove(i);
            } else {
                i += 1;
            }
        }
        if last.is_none() {
            tokens.insert(first_removed.unwrap_or(tokens.len()), arg.clone());
        }
    }
    let mut line = tokens.join(" ");
    line.push('\n');
    line
}

/// The `args` that `proc_cmdline` (or any command line) lacks: not there as an
/// exact token, or contradicted by a later token. `initrd=` and
/// `BOOT_IMAGE=` (added by the boot loader) are ignored. In `args` order,
/// without duplicates.
pub fn missing_args(proc_cmdline: &str, args: &[String]) -> Vec<String> {
    let tokens: Vec<&str> = split_cmdline(proc_cmdline)
        .into_iter()
        .filter(|t| !t.starts_with("initrd=") && !t.starts_with("BOOT_IMAGE="))
        .collect();
    unique(args)
        .into_iter()
        .filter(|arg| match tokens.iter().rposition(|t| t == arg) {
            None => true,
            Some(at) => tokens[at + 1..].iter().any(|t| contradicts(t, arg)),
        })
        .cloned()
        .collect()
}

/// The base for a missing `/etc/kernel/cmdline`: `proxmox-boot-tool` uses
/// the running command line then, so start from `/proc/cmdline` without
/// what the boot loader adds. Writing only our arguments would drop
/// `root=` and leave the host unbootable.
pub fn cmdline_from_proc(proc_cmdline: &str) -> String {
    let tokens: Vec<&str> = split_cmdline(proc_cmdline)
        .into_iter()
        .filter(|t| !t.starts_with("initrd=") && !t.starts_with("BOOT_IMAGE="))
        .collect();
    format!("{}\n", tokens.join(" "))
}

/// Checks that every argument can go into both files as a single token.
pub fn check_args(args: &[String]) -> Result<(), EditError> {
    match args
        .iter()
        .find(|a| a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '"' || c == '\''))
    {
        Some(bad) => Err(EditError::KernelArg(bad.clone())),
        None => Ok(()),
    }
}

/// Operations for a GRUB host: the drop-in, when it changes. No drop-in is
/// created when `/etc/default/grub` already has every argument. A non-empty
/// result means `update-grub` must run.
pub fn plan_grub(
    args: &[String],
    current_default_grub: Option<&str>,
    current_dropin: Option<&str>,
) -> Result<Vec<FileOp>, EditError> {
    check_args(args)?;
    let active = grub_cmdline(current_default_grub.unwrap_or(""));
    let missing = missing_args(&active, args);
    if missing.is_empty() && current_dropin.is_none() {
        return Ok(Vec::new());
    }
    let why = if missing.is_empty() {
        "/etc/default/grub now has every kernel argument; the drop-in adds none".to_owned()
    } else {
        format!("add kernel arguments for GRUB: {}", missing.join(" "))
    };
    let content = grub_dropin(args, current_default_grub);
    Ok(write_if_changed(GRUB_DROPIN, current_dropin, content, &why)
        .into_iter()
        .collect())
}

/// Operations for a systemd-boot host: `/etc/kernel/cmdline` rewritten when
/// an argument is missing or contradicted (not for spacing alone). Pass
/// [`cmdline_from_proc`] as `current` when the file is absent. A non-empty
/// result means `proxmox-boot-tool refresh` must run.
pub fn plan_systemd_boot(args: &[String], current: &str) -> Result<Vec<FileOp>, EditError> {
    check_args(args)?;
    let new = kernel_cmdline(current, args);
    if split_cmdline(&new) == split_cmdline(current) {
        return Ok(Vec::new());
    }
    let missing = missing_args(current, args);
    Ok(vec![FileOp::write(
        KERNEL_CMDLINE,
        new,
        format!(
            "add kernel arguments for systemd-boot: {}",
            missing.join(" ")
        ),
    )])
}

/// `args` without repeats, first occurrence kept.
fn unique(args: &[String]) -> Vec<&String> {
    let mut seen = Vec::new();
    for a in args {
        if !seen.contains(&a) {
            seen.push(a);
        }
    }
    seen
}

/// Splits a kernel command line at whitespace outside double quotes, as the
/// kernel does (`param="a b"` is one token).
fn split_cmdline(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        if c == '"' {
            quoted = !quoted;
        }
        if c.is_whitespace() && !quoted {
            if let Some(s) = start.take() {
                out.push(&line[s..i]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push(&line[s..]);
    }
    out
}

/// `key` and `value` of `key=value`; the kernel treats `-` and `_` in
/// parameter names alike.
fn key_value(token: &str) -> Option<(String, &str)> {
    let (k, v) = token.split_once('=')?;
    Some((k.replace('-', "_"), v))
}

/// Values that switch a feature off (first item of a comma list).
fn is_off(value: &str) -> bool {
    let first = value.split(',').next().unwrap_or("").trim_matches('"');
    matches!(
        first.to_ascii_lowercase().as_str(),
        "off" | "0" | "n" | "no" | "false" | "disable" | "disabled"
    )
}

/// Whether `token` undoes `arg`: same key, different value, and exactly one
/// of the two values is off-like.
fn contradicts(token: &str, arg: &str) -> bool {
    match (key_value(token), key_value(arg)) {
        (Some((tk, tv)), Some((ak, av))) => tk == ak && tv != av && is_off(tv) != is_off(av),
        _ => false,
    }
}

/// Escapes for a double-quoted shell string.
fn shell_escape(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len());
    for c in arg.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The kernel arguments GRUB's normal entries get from a settings file:
/// `GRUB_CMDLINE_LINUX` then `GRUB_CMDLINE_LINUX_DEFAULT`, after evaluating
/// the file's assignments.
fn grub_cmdline(text: &str) -> String {
    let vars = shell_assignments(text);
    let get = |k: &str| vars.get(k).map(String::as_str).unwrap_or("");
    format!("{} {}", get(LINUX), get(LINUX_DEFAULT))
}

/// Evaluates the variable assignments of a POSIX shell fragment such as
/// `/etc/default/grub`: comments (`#` at the start of a word) are skipped,
/// single and double quotes, backslashes and `$VAR` / `${VAR}` expansions
/// are handled, `export` is allowed, command substitutions expand to
/// nothing. Words after a command name are not assignments.
pub(crate) fn shell_assignments(text: &str) -> BTreeMap<String, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut vars = BTreeMap::new();
    let mut i = 0;
    let mut command_start = true;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' || c == ';' {
            command_start = true;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if let Some(name) = command_start
            .then(|| assignment_name(&chars[i..]))
            .flatten()
        {
            i += name.chars().count() + 1;
            let value = read_word(&chars, &mut i, &vars);
            vars.insert(name, value);
        } else {
            let word = read_word(&chars, &mut i, &vars);
            command_start = command_start && word == "export";
        }
    }
    vars
}

/// `NAME` when `chars` starts with `NAME=`.
fn assignment_name(chars: &[char]) -> Option<String> {
    let first = chars.first()?;
    if !(first.is_ascii_alphabetic() || *first == '_') {
        return None;
    }
    let len = chars
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
        .count();
    (chars.get(len) == Some(&'=')).then(|| chars[..len].iter().collect())
}

/// Reads and evaluates one shell word starting at `*i`.
fn read_word(chars: &[char], i: &mut usize, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut quoted = false;
    while *i < chars.len() {
        let c = chars[*i];
        if !quoted && (c.is_whitespace() || c == ';') {
            break;
        }
        *i += 1;
        match c {
            '"' => quoted = !quoted,
            '\'' if !quoted => {
                while *i < chars.len() && chars[*i] != '\'' {
                    out.push(chars[*i]);
                    *i += 1;
                }
                *i += 1;
            }
            '\\' if *i < chars.len() => {
                let next = chars[*i];
                *i += 1;
                if next == '\n' {
                    continue;
                }
                if quoted && !matches!(next, '$' | '`' | '"' | '\\') {
                    out.push('\\');
                }
                out.push(next);
            }
            '`' => skip_until(chars, i, '`'),
            '$' => expand(chars, i, vars, &mut out),
            _ => out.push(c),
        }
    }
    out
}

/// Expands the `$...` whose `$` was just consumed.
fn expand(chars: &[char], i: &mut usize, vars: &BTreeMap<String, String>, out: &mut String) {
    let name_char = |c: &char| c.is_ascii_alphanumeric() || *c == '_';
    match chars.get(*i) {
        Some('{') => {
            *i += 1;
            let name: String = chars[*i..].iter().take_while(|c| name_char(c)).collect();
            skip_until(chars, i, '}');
            out.push_str(vars.get(&name).map(String::as_str).unwrap_or(""));
        }
        Some('(') => {
            *i += 1;
            skip_until(chars, i, ')');
        }
        Some(c) if name_char(c) => {
            let name: String = chars[*i..].iter().take_while(|c| name_char(c)).collect();
            *i += name.chars().count();
            out.push_str(vars.get(&name).map(String::as_str).unwrap_or(""));
        }
        _ => out.push('$'),
    }
}

/// Moves `*i` past the next `end` (or to the end of the text).
fn skip_until(chars: &[char], i: &mut usize, end: char) {
    while *i < chars.len() && chars[*i] != end {
        *i += 1;
    }
    *i = (*i + 1).min(chars.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn shell_values_follow_quotes_comments_and_expansions() {
        let vars = shell_assignments(
            "#GRUB_CMDLINE_LINUX_DEFAULT=\"commented\"\n\
             GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\n\
             export GRUB_CMDLINE_LINUX='root=ZFS=rpool/ROOT/pve-1 boot=zfs'\n\
             GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\" # trailing comment\n\
             GRUB_CMDLINE_LINUX_DEFAULT=\"${GRUB_CMDLINE_LINUX_DEFAULT} a=\\\"b\\\"\"\n\
             GRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX x\"; GRUB_TIMEOUT=5\n\
             echo GRUB_TIMEOUT=9\n",
        );
        assert_eq!(vars[LINUX], "root=ZFS=rpool/ROOT/pve-1 boot=zfs x");
        assert_eq!(vars[LINUX_DEFAULT], "quiet a=\"b\"");
        assert_eq!(vars["GRUB_TIMEOUT"], "5");
    }

    #[test]
    fn multi_line_quoted_values_are_one_value() {
        let vars = shell_assignments("GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\n  intel_iommu=on\"\n");
        assert_eq!(
            split_cmdline(&vars[LINUX_DEFAULT]),
            ["quiet", "intel_iommu=on"]
        );
    }

    #[test]
    fn cmdline_tokens_keep_quoted_spaces() {
        assert_eq!(split_cmdline(" a  b=\"c d\" e\n"), ["a", "b=\"c d\"", "e"]);
    }

    #[test]
    fn contradiction_needs_one_off_like_value() {
        assert!(contradicts("intel_iommu=off", "intel_iommu=on"));
        assert!(contradicts("intel-iommu=off", "intel_iommu=on"));
        assert!(contradicts("nouveau.modeset=1", "nouveau.modeset=0"));
        assert!(!contradicts("intel_iommu=on,igfx_off", "intel_iommu=on"));
        assert!(!contradicts("video=vesafb:off", "video=efifb:off"));
        assert!(!contradicts("quiet", "quiet"));
    }

    #[test]
    fn missing_args_ignores_boot_loader_tokens_and_sees_overrides() {
        let proc = "BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=/dev/mapper/pve-root ro quiet \
                    intel_iommu=on initrd=\\EFI\\proxmox\\initrd.img iommu=pt\n";
        assert_eq!(
            missing_args(proc, &args("intel_iommu=on iommu=pt")),
            Vec::<String>::new()
        );
        assert_eq!(
            missing_args(
                "intel_iommu=on intel_iommu=off",
                &args("intel_iommu=on iommu=pt")
            ),
            args("intel_iommu=on iommu=pt")
        );
        assert_eq!(
            missing_args("initrd=iommu=pt", &args("iommu=pt")),
            args("iommu=pt")
        );
    }

    #[test]
    fn systemd_boot_edits_only_what_is_not_in_effect() {
        let want = args("intel_iommu=on");
        let overridden = "intel_iommu=off intel_iommu=on\n";
        assert_eq!(kernel_cmdline(overridden, &want), overridden);
        assert_eq!(
            kernel_cmdline("intel_iommu=on intel_iommu=off", &want),
            "intel_iommu=on\n"
        );
        assert_eq!(
            kernel_cmdline("a intel_iommu=off b intel-iommu=0 c", &want),
            "a intel_iommu=on b c\n"
        );
        assert_eq!(kernel_cmdline("", &args("iommu=pt iommu=pt")), "iommu=pt\n");
    }

    #[test]
    fn check_args_rejects_what_cannot_be_one_token() {
        assert!(check_args(&args("intel_iommu=on iommu=pt")).is_ok());
        assert!(check_args(&["a b".to_owned()]).is_err());
        assert!(check_args(&["a\"b".to_owned()]).is_err());
        assert!(check_args(&[String::new()]).is_err());
    }

    #[test]
    fn dropin_escapes_shell_specials() {
        let out = grub_dropin(&["a=$b`c`\\".to_owned()], None);
        assert!(out.ends_with(
            "GRUB_CMDLINE_LINUX_DEFAULT=\"${GRUB_CMDLINE_LINUX_DEFAULT} a=\\$b\\`c\\`\\\\\"\n"
        ));
        let vars = shell_assignments(&out);
        assert_eq!(vars[LINUX_DEFAULT], " a=$b`c`\\");
    }
}

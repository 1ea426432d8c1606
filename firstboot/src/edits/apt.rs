//! APT repositories: enterprise off, no-subscription on, exactly once.
//!
//! A fresh Proxmox VE host points at `enterprise.proxmox.com`, which answers
//! `401 Unauthorized` without a subscription key, so `apt-get update` fails
//! before phase 1 can install anything. The fix is the one the Proxmox
//! documentation gives: disable the enterprise entries and add the
//! `pve-no-subscription` repository (and Ceph's no-subscription one, which
//! also carries the Ceph client libraries every PVE host has installed).
//!
//! What differs from the bash installer (seed §4.2):
//!
//! * Enterprise entries are disabled in place (`# ` before a one-line entry,
//!   `Enabled: no` in a deb822 stanza), wherever apt reads them; files are
//!   never renamed or deleted (the seed deleted `pve-enterprise.sources`
//!   and renamed `.list` files).
//! * Only the enterprise stanza is disabled, not "the first stanza after the
//!   first `Signed-By:`", and other stanzas of the same file are untouched.
//! * A no-subscription repository is added only when no enabled equivalent
//!   exists in any file (the admin's own line in `sources.list`, a mirror,
//!   `proxmox.sources`, ...), so it is configured exactly once.
//! * Ceph on bullseye uses the `main` component: the bullseye Ceph
//!   repositories have no `no-subscription` component (that name came with
//!   bookworm).

use std::collections::BTreeMap;

use super::{FileOp, owned_header};

/// Where the repository files live, relative to the root.
pub const SOURCES_DIR: &str = "etc/apt/sources.list.d";
/// Key of `/etc/apt/sources.list` in the map [`plan_apt_repos`] takes.
pub const SOURCES_LIST_KEY: &str = "../sources.list";
/// Keyring every Proxmox repository is signed with (deb822 `Signed-By`).
pub const PROXMOX_KEYRING: &str = "/usr/share/keyrings/proxmox-archive-keyring.gpg";
/// Base URI of the no-subscription repositories.
pub const DOWNLOAD_BASE: &str = "http://download.proxmox.com/debian";
/// Host of the subscription-only repositories.
const ENTERPRISE_HOST: &str = "enterprise.proxmox.com";
/// Component of the Proxmox VE no-subscription repository.
const PVE_COMPONENT: &str = "pve-no-subscription";

/// The operations that leave the host with enterprise repositories disabled
/// and the no-subscription ones enabled exactly once.
///
/// `files` maps file names in `/etc/apt/sources.list.d/` to their contents,
/// plus [`SOURCES_LIST_KEY`] for `/etc/apt/sources.list`. Files apt does not
/// read (`*.disabled`, `*.dpkg-dist`, ...) are ignored. Operation paths are
/// relative to the root (`etc/apt/sources.list.d/<name>`).
///
/// Our own files (`pve-no-subscription.list` and `ceph-no-subscription.list`,
/// or `.sources` from trixie on) are written only when no enabled equivalent
/// entry exists: same suite and component from any URI, so a mirror counts.
pub fn plan_apt_repos(codename: &str, files: &BTreeMap<String, String>) -> Vec<FileOp> {
    let mut ops = Vec::new();
    let mut entries = Vec::new();
    let mut ceph_release = None;

    for (name, content) in files {
        let Some(format) = Format::of(name) else {
            continue;
        };
        let edit = match format {
            Format::OneLine => disable_one_line(content),
            Format::Deb822 => disable_deb822(content),
        };
        for entry in &edit.disabled {
            ceph_release = ceph_release.or_else(|| entry.ceph_release());
        }
        if !edit.disabled.is_empty() {
            let what: Vec<String> = edit.disabled.iter().map(Entry::describe).collect();
            ops.push(FileOp::write(
                path_of(name),
                edit.content.clone(),
                format!(
                    "disable the enterprise repository (it needs a subscription): {}",
                    what.join("; ")
                ),
            ));
        }
        entries.extend(match format {
            Format::OneLine => parse_one_line(&edit.content),
            Format::Deb822 => parse_deb822(&edit.content)
                .into_iter()
                .map(|s| s.entry)
                .collect(),
        });
    }

    let deb822 = !matches!(codename, "buster" | "bullseye" | "bookworm");
    let ext = if deb822 { "sources" } else { "list" };

    let pve = Repo {
        uri: format!("{DOWNLOAD_BASE}/pve"),
        suite: codename.to_owned(),
        component: PVE_COMPONENT.to_owned(),
    };
    if !entries.iter().any(|e| pve.satisfied_by(e, false)) {
        let name = format!("pve-no-subscription.{ext}");
        let content = pve.render(deb822, "Proxmox VE no-subscription repository");
        let why = format!("add the {PVE_COMPONENT} repository for {codename}");
        push_owned(&mut ops, files, &name, content, why);
    }

    let ceph_release = ceph_release.or_else(|| default_ceph_release(codename).map(str::to_owned));
    if let Some(release) = ceph_release {
        let component = if matches!(codename, "buster" | "bullseye") {
            "main"
        } else {
            "no-subscription"
        };
        let ceph = Repo {
            uri: format!("{DOWNLOAD_BASE}/{release}"),
            suite: codename.to_owned(),
            component: component.to_owned(),
        };
        if !entries.iter().any(|e| ceph.satisfied_by(e, true)) {
            let name = format!("ceph-no-subscription.{ext}");
            let content = ceph.render(deb822, "Ceph no-subscription repository");
            let why = format!("add the {release} {component} repository for {codename}");
            push_owned(&mut ops, files, &name, content, why);
        }
    }
    ops
}

/// Ceph release of the Proxmox VE release based on `codename`.
pub fn default_ceph_release(codename: &str) -> Option<&'static str> {
    match codename {
        "bullseye" => Some("ceph-pacific"),
        "bookworm" => Some("ceph-quincy"),
        "trixie" => Some("ceph-squid"),
        _ => None,
    }
}

/// Adds the write of one of our files, replacing any earlier edit of it.
fn push_owned(
    ops: &mut Vec<FileOp>,
    files: &BTreeMap<String, String>,
    name: &str,
    content: String,
    mut why: String,
) {
    let path = path_of(name);
    ops.retain(|op| op.path != path);
    if files.contains_key(name) {
        why.push_str(" (replacing the file's old content)");
    }
    ops.push(FileOp::write(path, content, why));
}

fn path_of(name: &str) -> String {
    if name == SOURCES_LIST_KEY {
        "etc/apt/sources.list".to_owned()
    } else {
        format!("{SOURCES_DIR}/{name}")
    }
}

/// The two formats apt reads.
#[derive(Debug, Clone, Copy)]
enum Format {
    /// `deb [options] uri suite component...`, one per line (`*.list`).
    OneLine,
    /// deb822 stanzas (`*.sources`).
    Deb822,
}

impl Format {
    /// The format apt reads `name` in, or `None` when apt ignores the file.
    fn of(name: &str) -> Option<Format> {
        if name == SOURCES_LIST_KEY || (name.ends_with(".list") && !name.contains('/')) {
            Some(Format::OneLine)
        } else if name.ends_with(".sources") && !name.contains('/') {
            Some(Format::Deb822)
        } else {
            None
        }
    }
}

/// One repository entry as apt sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Entry {
    types: Vec<String>,
    uris: Vec<String>,
    suites: Vec<String>,
    components: Vec<String>,
    enabled: bool,
}

impl Entry {
    fn is_enterprise(&self) -> bool {
        self.uris
            .iter()
            .any(|u| uri_host(u).eq_ignore_ascii_case(ENTERPRISE_HOST))
    }

    /// `ceph-quincy` for an entry of `.../debian/ceph-quincy`.
    fn ceph_release(&self) -> Option<String> {
        self.uris.iter().find_map(|u| {
            let last = u.trim_end_matches('/').rsplit('/').next()?;
            last.starts_with("ceph-").then(|| last.to_owned())
        })
    }

    fn describe(&self) -> String {
        format!(
            "{} {} {}",
            self.uris.join(" "),
            self.suites.join(" "),
            self.components.join(" ")
        )
    }
}

/// A repository we want: one URI, suite and component.
struct Repo {
    uri: String,
    suite: String,
    component: String,
}

impl Repo {
    /// An enabled binary entry with the same suite and component. The URI
    /// may differ (a mirror serves the same packages), but for Ceph it must
    /// be a `ceph-<release>` repository, as `main` alone says nothing.
    fn satisfied_by(&self, e: &Entry, ceph: bool) -> bool {
        e.enabled
            && e.types.iter().any(|t| t == "deb")
            && e.suites.contains(&self.suite)
            && e.components.contains(&self.component)
            && (!ceph || e.ceph_release().is_some())
    }

    fn render(&self, deb822: bool, what: &str) -> String {
        let mut out = owned_header(what);
        if deb822 {
            out.push_str(&format!(
                "Types: deb\nURIs: {}\nSuites: {}\nComponents: {}\nSigned-By: {PROXMOX_KEYRING}\n",
                self.uri, self.suite, self.component
            ));
        } else {
            out.push_str(&format!(
                "deb {} {} {}\n",
                self.uri, self.suite, self.component
            ));
        }
        out
    }
}

/// Host part of a URI (`https://user@host:443/path` gives `host`).
fn uri_host(uri: &str) -> &str {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    host_port.split(':').next().unwrap_or("")
}

/// Result of disabling the enterprise entries of one file.
struct Disabled {
    content: String,
    disabled: Vec<Entry>,
}

/// Parses one line of a one-line-style file; `None` for comments, blank and
/// malformed lines (which apt either ignores or rejects on its own).
fn parse_line(line: &str) -> Option<Entry> {
    // "A # character anywhere on a line marks the remainder of that line as
    // a comment" (Proxmox admin guide, sources.list(5)).
    let line = line.split('#').next().unwrap_or("").trim();
    let (kind, rest) = line.split_once(char::is_whitespace)?;
    if kind != "deb" && kind != "deb-src" {
        return None;
    }
    let mut rest = rest.trim_start();
    if let Some(options) = rest.strip_prefix('[') {
        rest = options.split_once(']')?.1;
    }
    let mut words = rest.split_whitespace().map(str::to_owned);
    let uri = words.next()?;
    let suite = words.next()?;
    Some(Entry {
        types: vec![kind.to_owned()],
        uris: vec![uri],
        suites: vec![suite],
        components: words.collect(),
        enabled: true,
    })
}

fn parse_one_line(content: &str) -> Vec<Entry> {
    content.lines().filter_map(parse_line).collect()
}

/// Comments out (`# ` prefix) every enterprise line; everything else,
/// including the file's other comments and spacing, stays as it was.
fn disable_one_line(content: &str) -> Disabled {
    let mut disabled = Vec::new();
    let lines: Vec<String> = content
        .lines()
        .map(|line| match parse_line(line) {
            Some(entry) if entry.is_enterprise() => {
                disabled.push(entry);
                format!("# {line}")
            }
            _ => line.to_owned(),
        })
        .collect();
    Disabled {
        content: join_lines(content, &lines),
        disabled,
    }
}

/// Rejoins edited lines, keeping whether the file ended with a newline.
fn join_lines(original: &str, lines: &[String]) -> String {
    let mut out = lines.join("\n");
    if original.ends_with('\n') || (original.is_empty() && !lines.is_empty()) {
        out.push('\n');
    }
    out
}

/// One deb822 stanza: the entry and where its lines are.
#[derive(Debug)]
struct Stanza {
    entry: Entry,
    /// Line index of the `Enabled:` field, with the field name as written.
    enabled_field: Option<(usize, String)>,
    /// Index of the stanza's last field or continuation line.
    last_line: usize,
}

/// apt's `StringToBool`: unknown values keep the default (enabled).
fn apt_bool(value: &str, default: bool) -> bool {
    match value.trim().to_ascii_lowercase().as_str() {
        "no" | "false" | "without" | "off" | "disable" | "0" => false,
        "yes" | "true" | "with" | "on" | "enable" | "1" => true,
        _ => default,
    }
}

/// Parses deb822 stanzas: blank lines separate them, `#` lines are comments
/// (also inside a stanza), lines starting with a space or tab continue the
/// previous field. Field names are case-insensitive. Stanzas without
/// `URIs` (e.g. a comment-only header) are skipped.
fn parse_deb822(content: &str) -> Vec<Stanza> {
    struct Open {
        fields: Vec<(String, String, usize)>,
        last_line: usize,
    }
    fn close(open: Option<Open>, out: &mut Vec<Stanza>) {
        let Some(open) = open else { return };
        let mut entry = Entry {
            enabled: true,
            ..Entry::default()
        };
        let mut enabled_field = None;
        let words = |v: &str| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        for (name, value, line) in &open.fields {
            match name.to_ascii_lowercase().as_str() {
                "types" => entry.types = words(value),
                "uris" => entry.uris = words(value),
                "suites" => entry.suites = words(value),
                "components" => entry.components = words(value),
                "enabled" => {
                    entry.enabled = apt_bool(value, true);
                    enabled_field = Some((*line, name.clone()));
                }
                _ => {}
            }
        }
        if !entry.uris.is_empty() {
            out.push(Stanza {
                entry,
                enabled_field,
                last_line: open.last_line,
            });
        }
    }

    let mut stanzas = Vec::new();
    let mut open: Option<Open> = None;
    for (i, line) in content.lines().enumerate() {
        if line.trim().is_empty() {
            close(open.take(), &mut stanzas);
        } else if line.starts_with('#') {
            continue;
        } else if line.starts_with([' ', '\t']) {
            if let Some(o) = open.as_mut().filter(|o| !o.fields.is_empty()) {
                let last = o.fields.len() - 1;
                o.fields[last].1.push(' ');
                o.fields[last].1.push_str(line.trim());
                o.last_line = i;
            }
        } else if let Some((name, value)) = line.split_once(':') {
            let o = open.get_or_insert(Open {
                fields: Vec::new(),
                last_line: i,
            });
            o.fields
                .push((name.trim().to_owned(), value.trim().to_owned(), i));
            o.last_line = i;
        }
    }
    close(open, &mut stanzas);
    stanzas
}

/// Sets `Enabled: no` in every enabled enterprise stanza: an existing
/// `Enabled:` line gets the new value, otherwise the field is added after
/// the stanza's last field. Other lines and stanzas are untouched. A stanza
/// listing an enterprise URI next to others is disabled as a whole: that is
/// the only switch deb822 has.
fn disable_deb822(content: &str) -> Disabled {
    let mut replace = BTreeMap::new();
    let mut insert_after = BTreeMap::new();
    let mut disabled = Vec::new();
    for stanza in parse_deb822(content) {
        if !(stanza.entry.enabled && stanza.entry.is_enterprise()) {
            continue;
        }
        match &stanza.enabled_field {
            Some((line, name)) => replace.insert(*line, format!("{name}: no")),
            None => insert_after.insert(stanza.last_line, "Enabled: no".to_owned()),
        };
        disabled.push(stanza.entry);
    }
    let mut lines = Vec::new();
    for (i, line) in content.lines().enumerate() {
        lines.push(replace.remove(&i).unwrap_or_else(|| line.to_owned()));
        if let Some(extra) = insert_after.remove(&i) {
            lines.push(extra);
        }
    }
    Disabled {
        content: join_lines(content, &lines),
        disabled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_parsing_handles_options_and_comments() {
        let e =
            parse_line("deb [arch=amd64 signed-by=/k.gpg] https://h/x bookworm main # c").unwrap();
        assert_eq!(e.uris, ["https://h/x"]);
        assert_eq!(e.suites, ["bookworm"]);
        assert_eq!(e.components, ["main"]);
        assert_eq!(parse_line("# deb https://h/x bookworm main"), None);
        assert_eq!(parse_line("   "), None);
        assert_eq!(parse_line("debx http://h/x s c"), None);
        assert!(parse_line("\tdeb-src  http://h/x   s   c").is_some());
    }

    #[test]
    fn uri_host_strips_scheme_user_and_port() {
        assert_eq!(
            uri_host("https://enterprise.proxmox.com/debian/pve"),
            ENTERPRISE_HOST
        );
        assert_eq!(
            uri_host("https://u:p@Enterprise.Proxmox.com:443/x"),
            "Enterprise.Proxmox.com"
        );
        assert_eq!(
            uri_host("http://download.proxmox.com"),
            "download.proxmox.com"
        );
    }

    #[test]
    fn deb822_stanzas_with_comments_continuations_and_case() {
        let text = "# header\n\nTypes: deb\n# inside\nuris:  https://enterprise.proxmox.com/debian/pve\n\
                    Suites: trixie\nComponents: pve-enterprise\nSigned-By:\n -----BEGIN PGP\n .\n -----END\n\n\n\
                    Types: deb\nURIs: http://x/y\nSuites: trixie\nComponents: main\nENABLED: No\n";
        let stanzas = parse_deb822(text);
        assert_eq!(stanzas.len(), 2);
        assert!(stanzas[0].entry.is_enterprise());
        assert_eq!(stanzas[0].last_line, 10);
        assert!(!stanzas[1].entry.enabled);
        assert_eq!(stanzas[1].enabled_field, Some((17, "ENABLED".to_owned())));
    }

    #[test]
    fn enabled_yes_is_flipped_in_place_keeping_the_field_name() {
        let text = "Types: deb\nEnabled:   yes\nURIs: https://enterprise.proxmox.com/debian/pve\nSuites: trixie\nComponents: pve-enterprise\n";
        let out = disable_deb822(text);
        assert_eq!(
            out.content,
            "Types: deb\nEnabled: no\nURIs: https://enterprise.proxmox.com/debian/pve\nSuites: trixie\nComponents: pve-enterprise\n"
        );
        assert_eq!(disable_deb822(&out.content).disabled, vec![]);
    }

    #[test]
    fn missing_final_newline_is_kept_missing() {
        let text = "Types: deb\nURIs: https://enterprise.proxmox.com/debian/pve\nSuites: trixie\nComponents: pve-enterprise";
        assert!(
            disable_deb822(text)
                .content
                .ends_with("pve-enterprise\nEnabled: no")
        );
        let line = "deb https://enterprise.proxmox.com/debian/pve bookworm pve-enterprise";
        assert_eq!(disable_one_line(line).content, format!("# {line}"));
    }

    #[test]
    fn a_stale_own_file_is_replaced_and_a_current_one_kept() {
        let stale = "deb http://download.proxmox.com/debian/pve bullseye pve-no-subscription\n";
        let files = BTreeMap::from([("pve-no-subscription.list".to_owned(), stale.to_owned())]);
        let ops = plan_apt_repos("bookworm", &files);
        assert_eq!(
            ops[0].path,
            "etc/apt/sources.list.d/pve-no-subscription.list"
        );
        assert_eq!(
            ops[0].why,
            "add the pve-no-subscription repository for bookworm (replacing the file's old content)"
        );
        let current = stale.replace("bullseye", "bookworm");
        let files = BTreeMap::from([("pve-no-subscription.list".to_owned(), current)]);
        assert!(
            plan_apt_repos("bookworm", &files)
                .iter()
                .all(|o| !o.path.contains("pve-no"))
        );
    }

    #[test]
    fn unknown_codename_gets_deb822_and_no_guessed_ceph_release() {
        let ops = plan_apt_repos("forky", &BTreeMap::new());
        let paths: Vec<_> = ops.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(
            paths,
            ["etc/apt/sources.list.d/pve-no-subscription.sources"]
        );
    }

    #[test]
    fn the_ceph_release_follows_the_disabled_enterprise_entry() {
        let files = BTreeMap::from([(
            "ceph.list".to_owned(),
            "deb https://enterprise.proxmox.com/debian/ceph-reef bookworm enterprise\n".to_owned(),
        )]);
        let ops = plan_apt_repos("bookworm", &files);
        let ceph = ops
            .iter()
            .find(|o| o.path.ends_with("ceph-no-subscription.list"))
            .unwrap();
        match &ceph.action {
            super::super::FileAction::Write { content, .. } => assert!(content.ends_with(
                "deb http://download.proxmox.com/debian/ceph-reef bookworm no-subscription\n"
            )),
            other => panic!("unexpected {other:?}"),
        }
    }
}

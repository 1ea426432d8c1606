//! Man pages with every subcommand: clap_mangen renders the top level;
//! each subcommand's synopsis, description and options follow as a
//! subsection of COMMANDS, so `man vgpu-bake` shows them all.

use clap::Command;
use clap_mangen::Man;
use roff::{Roff, bold, roman};
use vgpu_plan::layout;

use crate::firstboot::unwrap;

/// The page of `cmd` in `section`, with `extra` (more sections) before
/// VERSION.
pub fn page(cmd: &Command, section: &str, extra: &dyn Fn(&mut Roff)) -> Vec<u8> {
    let mut cmd = cmd.clone().disable_help_subcommand(true);
    cmd.build();
    let man = Man::new(cmd.clone()).section(section);
    let mut out = String::new();
    // The title carries roff's apostrophe preamble; the sections' copies are
    // dropped by `body`.
    out.push_str(&render(|w| man.render_title(w)));
    out.push_str(&section_of(|w| man.render_name_section(w)));
    out.push_str(&section_of(|w| man.render_synopsis_section(w)));
    out.push_str(&section_of(|w| man.render_description_section(w)));
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        out.push_str(&section_of(|w| man.render_options_section(w)));
    }
    let subs: Vec<&Command> = cmd.get_subcommands().filter(|s| !s.is_hide_set()).collect();
    if !subs.is_empty() {
        out.push_str(".SH COMMANDS\n");
        for sub in subs {
            // The options every command takes are under OPTIONS above.
            let sub = sub.clone().mut_args(|a| {
                if a.is_global_set() || a.get_id() == "help" {
                    a.hide(true)
                } else {
                    a
                }
            });
            let name = sub.get_bin_name().unwrap_or(sub.get_name()).to_string();
            let m = Man::new(sub.clone());
            out.push_str(&Roff::new().control("SS", [name.as_str()]).to_roff());
            out.push_str(&body(&section_of(|w| m.render_synopsis_section(w))));
            out.push_str(".PP\n");
            out.push_str(&body(&section_of(|w| m.render_description_section(w))));
            if sub.get_arguments().any(|a| !a.is_hide_set()) {
                out.push_str(&body(&section_of(|w| m.render_options_section(w))));
            }
        }
    }
    let mut more = Roff::new();
    extra(&mut more);
    out.push_str(&more.to_roff());
    out.push_str(&section_of(|w| man.render_version_section(w)));
    out.into_bytes()
}

type RenderFn<'a> = dyn Fn(&mut dyn std::io::Write) -> std::io::Result<()> + 'a;

fn render(f: impl Fn(&mut dyn std::io::Write) -> std::io::Result<()>) -> String {
    let mut buf = Vec::new();
    let f: &RenderFn = &f;
    f(&mut buf).expect("rendering into memory cannot fail");
    String::from_utf8(buf).expect("clap_mangen writes UTF-8")
}

/// One rendered section without roff's apostrophe preamble (already at
/// the top of the page).
fn section_of(f: impl Fn(&mut dyn std::io::Write) -> std::io::Result<()>) -> String {
    render(f)
        .lines()
        .filter(|l| !l.starts_with(".ie \\n(.g .ds Aq") && !l.starts_with(".el .ds Aq"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A section's text without its `.SH` heading, for a subsection.
fn body(section: &str) -> String {
    let (heading, rest) = section.split_once('\n').unwrap_or((section, ""));
    assert!(heading.starts_with(".SH "), "not a section: {heading}");
    assert!(
        !rest.lines().any(|l| l.starts_with(".SH ")),
        "a subcommand's part has headings of its own (help_heading?): {section}"
    );
    rest.to_string()
}

/// `vgpu-bake`'s page after COMMANDS (its exit codes are in its
/// description, from its clap definitions).
pub fn bake_extra(roff: &mut Roff) {
    see_also(roff, "vgpu-firstboot(8)");
}

/// `vgpu-firstboot`'s page after COMMANDS: exit codes and files.
pub fn firstboot_extra(roff: &mut Roff) {
    roff.control("SH", ["EXIT STATUS"]);
    roff.text([roman(unwrap(vgpu_firstboot::cli::EXIT_CODES))]);
    roff.control("SH", ["FILES"]);
    let abs = |p: &str| format!("/{p}");
    let files: [(String, &str); 12] = [
        (
            abs(layout::STATE_FILE),
            "the crash-safe state file: each step's state, the phase, the reboots; `status` reads it",
        ),
        (
            abs(layout::PLAN_FILE),
            "the resolved plan the bundle carries",
        ),
        (
            abs(layout::MANIFEST_FILE),
            "sha256, size and mode of every other file of the bundle",
        ),
        (
            abs(layout::SIGNATURE_FILE),
            "the manifest's minisign signature (a signed bundle)",
        ),
        (
            abs(layout::COMPAT_FILE),
            "the GPU compatibility table the plan was resolved with",
        ),
        (
            abs(layout::PAYLOAD_DIR),
            "driver installers, the unlock library, offline packages",
        ),
        (
            abs(layout::GUEST_DRIVERS_DIR),
            "the guest (VM) drivers the bundle carries",
        ),
        (
            abs(vgpu_firstboot::agent::journal::JOURNAL_DIR),
            "the journal of the agent's changes, and backups of the files it changed, that `undo` reverts",
        ),
        (
            abs(vgpu_firstboot::agent::upgrade::HISTORY_DIR),
            "the states of earlier plans, archived by `upgrade`",
        ),
        (
            abs(layout::DONE_MARKER),
            "written when the plan is complete; the unit does not start again",
        ),
        (
            abs(layout::TRUSTED_KEYS_DIR),
            "minisign public keys (*.pub) the host trusts; with any key here, an unsigned or wrongly signed bundle is refused",
        ),
        (
            abs(layout::UNIT_FILE),
            "the unit that starts `vgpu-firstboot run` at boot",
        ),
    ];
    for (path, what) in files {
        roff.control("TP", []);
        roff.text([bold(path)]);
        roff.text([roman(what)]);
    }
    see_also(roff, "vgpu-bake(1), systemctl(1), journalctl(1)");
}

fn see_also(roff: &mut Roff, pages: &str) {
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(pages)]);
}

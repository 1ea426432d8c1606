//! `vgpu-firstboot`'s command line as a `clap::Command`, built from the
//! agent's table (`vgpu_firstboot::cli::{SPEC, GLOBAL}`), for the man page
//! and the completions only: the agent parses with its own parser, from
//! the same table.

use clap::{Arg, ArgAction, Command, ValueHint};
use vgpu_firstboot::cli::{self, CommandSpec, Flag};

/// Pre-wrapped text (the agent's `--help`) as one paragraph.
pub fn unwrap(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The agent's command line.
pub fn command() -> Command {
    let mut cmd = Command::new("vgpu-firstboot")
        .version(cli::PKG_VERSION)
        .about(cli::DESCRIPTION)
        .long_about(format!(
            "{}\n\n{}",
            unwrap(cli::ABOUT),
            unwrap(cli::ROOT_NOTE)
        ))
        .disable_help_flag(true)
        .disable_version_flag(true)
        .disable_help_subcommand(true)
        .subcommand_required(true)
        .subcommand_value_name("COMMAND");
    for flag in cli::GLOBAL {
        cmd = cmd.arg(arg(flag).global(true));
    }
    for spec in cli::SPEC {
        cmd = cmd.subcommand(subcommand(spec));
    }
    cmd
}

fn subcommand(spec: &CommandSpec) -> Command {
    let mut about = spec.summary.to_string();
    if !spec.help.is_empty() {
        about = format!("{about}: {}", unwrap(spec.help));
    }
    let mut cmd = Command::new(spec.name)
        .version(cli::PKG_VERSION)
        .about(spec.summary)
        .long_about(about)
        .disable_help_flag(true)
        .disable_version_flag(true);
    for flag in spec.flags {
        cmd = cmd.arg(arg(flag));
    }
    if let Some(p) = spec.arg {
        cmd = cmd.arg(Arg::new(p.name).value_name(p.name).help(p.help));
    }
    cmd
}

fn arg(flag: &Flag) -> Arg {
    let mut a = Arg::new(flag.long).long(flag.long).help(flag.help);
    if flag.short != 0 {
        a = a.short(flag.short as char);
    }
    a = match flag.long {
        "help" => a.action(ArgAction::Help),
        "version" => a.action(ArgAction::Version),
        "verbose" => a.action(ArgAction::Count),
        _ if flag.value.is_empty() => a.action(ArgAction::SetTrue),
        _ => a.action(ArgAction::Set).value_name(flag.value),
    };
    if flag.value == "DIR" {
        a = a.value_hint(ValueHint::DirPath);
    }
    if !flag.default.is_empty() {
        a = a.default_value(flag.default);
    }
    if !flag.requires.is_empty() {
        a = a.requires(flag.requires);
    }
    a
}

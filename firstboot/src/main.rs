//! vgpu-firstboot: the agent a vgpu-bake bundle installs. See `--help`.
//!
//! Only routing: parse the command line, call the command in
//! [`vgpu_firstboot::commands`], exit with its code.

use std::process::ExitCode;

use vgpu_firstboot::cli::{self, Command, USAGE};
use vgpu_firstboot::commands;
use vgpu_firstboot::verbosity::{self, Verbosity};
use vgpu_rootfs::{errln, out, outln};

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            errln!("vgpu-firstboot: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if cli.quiet && cli.verbose > 0 {
        errln!("vgpu-firstboot: -q and -v contradict each other: give one of them");
        return ExitCode::from(2);
    }
    verbosity::set(Verbosity::from_flags(cli.quiet, cli.verbose > 0));
    let root = cli.root.as_path();
    let code = match cli.command {
        Command::Help => {
            out!("{USAGE}");
            0
        }
        Command::Version => {
            outln!("vgpu-firstboot {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Command::Run => commands::run(root),
        Command::Status { json, wait } => commands::status(root, json, wait),
        Command::Plan { json: false } => commands::dry_run(root),
        Command::Plan { json: true } => commands::dry_run_json(root),
        Command::Facts { json } => commands::facts(root, json),
        Command::Retry { step } => commands::retry(root, step),
        Command::Undo { dry_run, json } => commands::undo(root, dry_run, json),
        Command::Licensing { json } => commands::licensing(root, json),
        Command::Upgrade => commands::upgrade(root),
    };
    ExitCode::from(code)
}

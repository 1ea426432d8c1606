//! vgpu-firstboot: the agent a vgpu-bake bundle installs. See `--help`.
//!
//! Only routing: parse the command line, call the command in
//! [`vgpu_firstboot::commands`], exit with its code.

use std::process::ExitCode;

use vgpu_firstboot::cli::{self, Command, USAGE};
use vgpu_firstboot::commands;
use vgpu_rootfs::{errln, out, outln};

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            errln!("vgpu-firstboot: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // integrator: wire cli.quiet and cli.verbose.
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
        // integrator: route json to commands::dry_run_json.
        Command::Plan { json: _ } => commands::dry_run(root),
        Command::Facts { json } => commands::facts(root, json),
        Command::Retry { step } => commands::retry(root, step),
        Command::Undo { dry_run } => commands::undo(root, dry_run),
        Command::Licensing => commands::licensing(root),
        Command::Upgrade => commands::upgrade(root),
    };
    ExitCode::from(code)
}

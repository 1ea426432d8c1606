//! `vgpu-hook`: parses the command line and calls the library; see
//! `vgpu_hook`'s crate doc for the flow.

use std::ffi::OsString;
use std::process::ExitCode;

use vgpu_hook::args::{self, Command};
use vgpu_hook::{help, report, trailer};
use vgpu_rootfs::{errln, out, outln};

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    match args::parse(&argv) {
        Ok(Command::Help) => {
            outln!("{}", help::USAGE);
            out!("\n{}", carried());
            ExitCode::SUCCESS
        }
        Err(e) => {
            errln!("vgpu-hook: {e}\n\n{}\n\n{}", help::USAGE, carried());
            ExitCode::from(2)
        }
        Ok(Command::Run { ordering, root }) => match run(ordering, &root) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                report::failure(&message(&e), &root);
                ExitCode::from(1)
            }
        },
    }
}

fn run(ordering: args::Ordering, root: &std::path::Path) -> anyhow::Result<()> {
    vgpu_hook::first_boot(ordering, root)?;
    Ok(())
}

/// The error and each cause its text does not already hold (most of
/// ours name their cause in their own message).
fn message(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if !text.contains(&c) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&c);
        }
    }
    text
}

/// What this executable carries, or why it carries nothing.
fn carried() -> String {
    match trailer::read(&trailer::own_exe()) {
        Ok(config) => help::carried(&config),
        Err(e) => format!("{e}\n"),
    }
}

//! vgpu-firstboot: the agent the bundle installs.
//!
//! Its behaviour (two boot phases, state file, self-disabling) is being
//! built; this binary currently only reads and checks a baked plan.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use vgpu_firstboot::{layout, plan::Plan};

/// First-boot agent that applies a baked vGPU plan on a Proxmox VE host.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Root of the host's filesystem; every read and write stays under it.
    #[arg(long, global = true, default_value = "/")]
    root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the baked plan's steps.
    Plan,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Plan => {
            let path = cli.root.join(layout::PLAN_FILE);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading the plan {}", path.display()))?;
            let plan = Plan::from_toml(&text)
                .with_context(|| format!("parsing the plan {}", path.display()))?;
            println!(
                "plan {} ({} mode, Proxmox VE {})",
                plan.name, plan.mode, plan.proxmox
            );
            for step in &plan.steps {
                println!("  {:?} {}: {}", step.phase, step.id, step.why);
            }
        }
    }
    Ok(())
}

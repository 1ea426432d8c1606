//! The man pages and shell completions of `vgpu-bake` and `vgpu-firstboot`
//! (and the Debian package's unit, from `vgpu_plan::unit`), generated from
//! their definitions so they cannot drift:
//! `vgpu_bake::cli::Cli` (clap) and `vgpu_firstboot::cli::SPEC` (the
//! agent's own table; the agent does not link clap, so [`firstboot`] turns
//! the table into a `clap::Command` here).
//!
//! The files are committed under `dist/` (see [`generate`] for the paths;
//! the Debian packages install them from there). `cargo run -p gen-docs`
//! rewrites them; a test fails naming each stale file ([`stale`]).

pub mod firstboot;
pub mod man;

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

/// One generated file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// Its path under `dist/`, e.g. `man/vgpu-bake.1`.
    pub path: String,
    /// Its content.
    pub bytes: Vec<u8>,
}

/// The repository's `dist/`, where the generated files are committed.
pub fn default_dist() -> PathBuf {
    let tools_gen_docs = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = tools_gen_docs.parent().and_then(Path::parent);
    root.expect("tools/gen-docs is two levels down")
        .join("dist")
}

/// `vgpu-bake`'s command line, as its binary parses it.
pub fn bake_command() -> clap::Command {
    vgpu_bake::cli::Cli::command()
}

/// Every generated file: `man/vgpu-bake.1`, `man/vgpu-firstboot.8`,
/// `systemd/vgpu-firstboot.service` (the package's unit), and for each
/// program `completions/bash/NAME`, `completions/zsh/_NAME`,
/// `completions/fish/NAME.fish`. Deterministic: no dates, nothing from the
/// machine.
pub fn generate() -> Vec<Generated> {
    let bake = bake_command();
    let agent = firstboot::command();
    let mut files = vec![
        Generated {
            path: "man/vgpu-bake.1".into(),
            bytes: man::page(&bake, "1", &man::bake_extra),
        },
        Generated {
            path: "man/vgpu-firstboot.8".into(),
            bytes: man::page(&agent, "8", &man::firstboot_extra),
        },
    ];
    // The Debian package's unit (the bundle's is made at bake time).
    files.push(Generated {
        path: "systemd/vgpu-firstboot.service".into(),
        bytes: vgpu_plan::unit::render_for(vgpu_plan::unit::PACKAGED_AGENT).into_bytes(),
    });
    for cmd in [bake, agent] {
        let name = cmd.get_name().to_string();
        for (shell, path) in [
            (Shell::Bash, format!("completions/bash/{name}")),
            (Shell::Zsh, format!("completions/zsh/_{name}")),
            (Shell::Fish, format!("completions/fish/{name}.fish")),
        ] {
            let mut bytes = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), &name, &mut bytes);
            files.push(Generated { path, bytes });
        }
    }
    files
}

/// The files of `files` that `dist` does not hold byte for byte, each as a
/// line saying what to do. Empty when everything is up to date.
pub fn stale(dist: &Path, files: &[Generated]) -> Vec<String> {
    let mut out = Vec::new();
    for file in files {
        let path = dist.join(&file.path);
        let why = match std::fs::read(&path) {
            Ok(bytes) if bytes == file.bytes => continue,
            Ok(_) => "differs from what the argument definitions make",
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "is missing",
            Err(_) => "cannot be read",
        };
        out.push(format!(
            "{} {why}: run `cargo run -p gen-docs` and commit dist/",
            path.display()
        ));
    }
    out
}

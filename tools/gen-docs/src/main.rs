//! `cargo run -p gen-docs -- [--out DIR]`: writes the man pages and shell
//! completions of both programs into DIR (default: the repository's
//! `dist/`). See the library for what is written where.

use std::path::PathBuf;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let mut out = gen_docs::default_dist();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => {
                out = PathBuf::from(args.next().context("--out needs a directory")?);
            }
            "-h" | "--help" => {
                println!(
                    "usage: gen-docs [--out DIR]  (default DIR: {})",
                    out.display()
                );
                return Ok(());
            }
            other => bail!("unknown argument {other:?}; usage: gen-docs [--out DIR]"),
        }
    }
    for file in gen_docs::generate() {
        let path = out.join(&file.path);
        let dir = path.parent().context("a generated file has no directory")?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::write(&path, &file.bytes)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

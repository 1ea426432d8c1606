//! `vgpu-firstboot facts [--json]`: what the agent sees on this host.

use std::path::Path;

use crate::facts::{self, Severity};

/// Prints the facts, the decisions and the GPU verdicts (human or JSON).
/// Without an installed compatibility table the GPUs are not classified
/// (said on stderr, human output only). 0, or 1 when the facts cannot be
/// read, 3 when a fatal obstacle rules vGPU out on this host as it is.
pub fn facts(root: &Path, json: bool) -> u8 {
    let f = match facts::read_facts(root) {
        Ok(f) => f,
        Err(e) => return super::fail(e),
    };
    let (table, missing) = crate::agent::gate::load_table(root);
    if let Some(note) = missing.filter(|_| !json) {
        errln!("vgpu-firstboot: {note}");
    }
    let verdicts = facts::classify_gpus(&f, &table);
    if json {
        match facts::render_json(&f, &verdicts) {
            Ok(text) => outln!("{text}"),
            Err(e) => return super::fail(format_args!("writing the facts as JSON: {e}")),
        }
    } else {
        out!("{}", facts::render_human(&f, &verdicts));
    }
    match facts::vgpu_possible(&f) {
        Err(obstacles) if obstacles.iter().any(|o| o.severity == Severity::Fatal) => 3,
        _ => 0,
    }
}

//! `vgpu-firstboot facts [--json]`: what the agent sees on this host.

use std::path::Path;

use crate::facts::{self, Severity};
use vgpu_plan::compat::CompatTable;
use vgpu_plan::layout;

/// Prints the facts, the decisions and the GPU verdicts (human or JSON).
/// Without an installed compatibility table the GPUs are not classified
/// (said on stderr, human output only). 0, or 1 when the facts cannot be
/// read, 3 when a fatal obstacle rules vGPU out on this host as it is.
pub fn facts(root: &Path, json: bool) -> u8 {
    let f = match facts::read_facts(root) {
        Ok(f) => f,
        Err(e) => return super::fail(e),
    };
    let table = vgpu_rootfs::Root::at(root)
        .and_then(|r| r.read_to_string(layout::COMPAT_FILE))
        .ok()
        .flatten()
        .and_then(|t| vgpu_plan::from_toml::<CompatTable>(&t).ok());
    if table.is_none() && !json {
        errln!(
            "vgpu-firstboot: no compatibility table at {} (no bundle installed): GPUs are not classified",
            layout::absolute(layout::COMPAT_FILE)
        );
    }
    let table = table.unwrap_or(CompatTable {
        schema: 1,
        source: String::new(),
        gpus: Vec::new(),
    });
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

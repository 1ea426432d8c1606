//! The host gate in the agent: [`vgpu_plan::gate::gate`] over this host's
//! facts, with the compatibility table baked into the bundle.

use std::path::Path;

use crate::facts::Facts;
use vgpu_plan::compat::CompatTable;
use vgpu_plan::gate::GateReport;
use vgpu_plan::layout;
use vgpu_plan::plan::Plan;

/// The baked compatibility table under `root`; an empty one and a note
/// naming the file when it is missing or unreadable (the cards are then
/// classified by the plan's `[[gpu]]` entries only).
pub fn load_table(root: &Path) -> (CompatTable, Option<String>) {
    let table = vgpu_rootfs::Root::at(root)
        .and_then(|r| r.read_to_string(layout::COMPAT_FILE))
        .ok()
        .flatten()
        .and_then(|t| vgpu_plan::from_toml::<CompatTable>(&t).ok());
    match table {
        Some(t) => (t, None),
        None => (
            CompatTable {
                schema: vgpu_plan::compat::SCHEMA,
                source: String::new(),
                gpus: Vec::new(),
            },
            Some(format!(
                "no readable compatibility table at {} (no bundle installed, or a damaged one): GPUs are not classified; re-install the bundle",
                layout::absolute(layout::COMPAT_FILE)
            )),
        ),
    }
}

/// The gate's report for `plan` on the host under `root` with `facts`.
pub fn check(root: &Path, plan: &Plan, facts: &Facts) -> GateReport {
    let (table, missing) = load_table(root);
    let mut report = vgpu_plan::gate::gate(plan.into(), facts, &table);
    report.notes.extend(missing);
    report
}

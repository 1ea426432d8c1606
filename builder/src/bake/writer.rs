//! The writer's input: a baked [`Plan`] and its payload, laid out as the
//! bundle's entries (agent, unit, compatibility table, plan, payload).

use vgpu_plan::plan::Plan;
use vgpu_plan::{layout, unit};

use super::PayloadEntry;
use crate::bundle::{BundleError, BundleSpec, Source};
use crate::gpudb::GpuDb;

/// The bundle's entries for a baked plan and its guest drivers (each
/// `path` a file name in [`layout::GUEST_DRIVERS_DIR`]). Only a [`Plan`] fits here, and a
/// `Plan` cannot hold an unbaked digest or payload path.
pub fn bundle_spec(
    plan: &Plan,
    payload: Vec<PayloadEntry>,
    guest: Vec<PayloadEntry>,
    agent: Vec<u8>,
    db: &GpuDb,
) -> Result<BundleSpec, BundleError> {
    let mut spec = BundleSpec::new(&plan.name);
    let token = plan.licensing.token.as_ref().map(|t| t.path.as_str());
    for file in payload {
        let path = format!("{}/{}", layout::PAYLOAD_DIR, file.path);
        if token == Some(file.path.as_str()) {
            spec.add_secret_file(&path, file.source)?;
        } else {
            spec.add_file(&path, file.mode, file.source)?;
        }
    }
    for file in guest {
        spec.add_file(
            &format!("{}/{}", layout::GUEST_DRIVERS_DIR, file.path),
            file.mode,
            file.source,
        )?;
    }
    spec.add_file(layout::AGENT_BIN, 0o755, Source::Bytes(agent))?;
    spec.add_file(
        layout::UNIT_FILE,
        0o644,
        Source::Bytes(unit::render().into_bytes()),
    )?;
    spec.add_symlink(layout::UNIT_WANTS_LINK, layout::UNIT_WANTS_TARGET)?;
    spec.add_file(
        layout::COMPAT_FILE,
        0o644,
        Source::Bytes(
            toml::to_string(&db.compat_table())
                .expect("compat table serialises")
                .into_bytes(),
        ),
    )?;
    spec.add_file(
        layout::PLAN_FILE,
        0o600,
        Source::Bytes(plan.to_toml().into_bytes()),
    )?;
    Ok(spec)
}

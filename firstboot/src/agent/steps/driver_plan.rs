//! The plan's `[driver]` section, which the driver steps need.

use crate::agent::host::{Host, StepError};
use vgpu_plan::plan::DriverPlan;

/// The plan's driver section; phase 2's driver steps are only planned
/// with one, so its absence means a hand-edited or mismatched plan.
pub(super) fn driver<'a>(host: &Host<'a>) -> Result<&'a DriverPlan, StepError> {
    host.plan.driver.as_ref().ok_or_else(|| {
        StepError::new(
            "the plan has no [driver] section but asks for a driver step: re-bake the bundle",
        )
    })
}

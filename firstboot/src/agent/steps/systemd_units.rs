//! systemd units: checking one exists, enabling and starting it once.
//! Used by the enable-services and sriov steps.

use crate::agent::host::{Host, StepError};
use crate::agent::journal::Change;

/// Fails with `missing` unless systemd knows `unit`.
pub(super) fn require_unit(host: &mut Host, unit: &str, missing: String) -> Result<(), StepError> {
    let spec = host.command("systemctl", &["cat", unit], "check the unit exists");
    if host.run_status(&spec)?.success() {
        Ok(())
    } else {
        Err(StepError::new(missing))
    }
}

/// `systemctl enable --now unit`, unless it is enabled and active already.
pub(super) fn enable_now(host: &mut Host, unit: &str, why: &str) -> Result<(), StepError> {
    let probe = |host: &mut Host, verb: &str| {
        let spec = host.command("systemctl", &[verb, unit], "see whether it is needed");
        host.run_status(&spec).map(|o| o.success())
    };
    let enabled = probe(host, "is-enabled")?;
    if enabled && probe(host, "is-active")? {
        host.note(format!("{unit} is enabled and running already"));
        return Ok(());
    }
    if !enabled {
        // Journaled first: undo disables only what the agent enabled.
        host.record(Change::UnitEnabled(unit.to_owned()))?;
    }
    let spec = host.command("systemctl", &["enable", "--now", unit], why);
    host.run(spec).map_err(|e| StepError {
        reason: format!("{}; check journalctl -u {unit}", e.reason),
        ..e
    })?;
    host.note(format!("{unit}: enabled and started ({why})"));
    Ok(())
}

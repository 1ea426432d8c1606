//! Step enable-services: the driver's services enabled and started.

use super::driver_plan::driver;
use super::sriov::FALLBACK_UNIT;
use super::systemd_units::{enable_now, require_unit};
use crate::agent::host::{Host, StepError, StepOutcome};
use crate::agent::journal::{Change, Journal, Record};
use vgpu_plan::plan::{LicensingMode, Plan, licensing_paths};

/// The units the plan keeps enabled: the driver's services, its SR-IOV
/// unit, the agent's SR-IOV fallback and, with FastAPI-DLS, its server's
/// unit (the licensing step, later in phase 2, enables it). A step that
/// enables another unit adds it here, or an upgrade disables it.
fn kept_units(plan: &Plan) -> Vec<String> {
    let mut units: Vec<String> = vec![FALLBACK_UNIT.to_owned()];
    if let Some(d) = &plan.driver {
        units.extend(d.services.iter().cloned());
        units.extend(d.sriov_unit.iter().cloned());
    }
    if plan.licensing.mode == LicensingMode::FastapiDls {
        units.push(licensing_paths::UNIT_NAME.to_owned());
    }
    units
}

/// Units the journal says the agent enabled that `plan` no longer keeps
/// (an upgrade dropped them), in journal order. Pure.
pub(crate) fn dropped_units(journal: &Journal, plan: &Plan) -> Vec<String> {
    let kept = kept_units(plan);
    let mut dropped: Vec<String> = Vec::new();
    for r in &journal.records {
        if let Record::Change(Change::UnitEnabled(u)) = r
            && !kept.contains(u)
            && !dropped.contains(u)
        {
            dropped.push(u.clone());
        }
    }
    dropped
}

/// After an upgrade: disables (and stops) each unit an earlier plan had
/// the agent enable that this plan does not keep, if it is still enabled.
fn disable_dropped(host: &mut Host) -> Result<(), StepError> {
    let journal = Journal::read(&host.fs()?)?;
    for unit in dropped_units(&journal, host.plan) {
        let spec = host.command(
            "systemctl",
            &["is-enabled", &unit],
            "see whether it is needed",
        );
        if !host.run_status(&spec)?.success() {
            continue;
        }
        let spec = host.command(
            "systemctl",
            &["disable", "--now", &unit],
            "an earlier plan enabled it; this plan does not use it",
        );
        host.run(spec).map_err(|e| StepError {
            reason: format!("{}; check journalctl -u {unit}", e.reason),
            ..e
        })?;
        host.note(format!(
            "{unit}: disabled and stopped (an earlier plan enabled it; this plan does not use it)"
        ));
    }
    Ok(())
}

/// Enables the driver's services. `daemon-reload` first, so systemd sees
/// the units the installer just added; then each unit must exist (a
/// non-vGPU driver ships none: seed §16 #4, "unit does not exist").
pub fn run(host: &mut Host) -> Result<StepOutcome, StepError> {
    let d = driver(host)?;
    let spec = host.command(
        "systemctl",
        &["daemon-reload"],
        "see the units the driver installer added",
    );
    host.run(spec)?;
    disable_dropped(host)?;
    for unit in &d.services {
        require_unit(
            host,
            unit,
            format!(
                "{unit} does not exist: the installer did not install the vGPU manager — is this the vGPU-KVM (host) driver?"
            ),
        )?;
        enable_now(host, unit, "vGPU host service of the driver")?;
    }
    Ok(StepOutcome::Done)
}

/// Dry run of [`run`]: one line per service.
pub fn preview(host: &Host) -> Result<Vec<String>, StepError> {
    Ok(driver(host)?
        .services
        .iter()
        .map(|u| format!("would run systemctl enable --now {u} unless it is enabled and running: vGPU host service of the driver"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_an_earlier_plan_enabled_and_this_one_drops() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/plans/demo.toml"
        ))
        .unwrap();
        let plan = Plan::from_toml(&text).unwrap();
        let services = plan.driver.as_ref().unwrap().services.clone();
        assert!(!services.is_empty());
        let unit = |u: &str| Record::Change(Change::UnitEnabled(u.into()));
        let journal = Journal {
            records: vec![
                unit(&services[0]),
                unit("old-helper.service"),
                unit(FALLBACK_UNIT),
                unit("old-helper.service"),
                Record::Change(Change::Package("x".into())),
            ],
        };
        assert_eq!(dropped_units(&journal, &plan), ["old-helper.service"]);
        assert!(dropped_units(&Journal::default(), &plan).is_empty());

        // FastAPI-DLS's unit is kept while the plan still runs the server,
        // and disabled by an upgrade to a plan without it.
        let dls = Journal {
            records: vec![unit(licensing_paths::UNIT_NAME)],
        };
        assert_eq!(dropped_units(&dls, &plan), [licensing_paths::UNIT_NAME]);
        let mut with_dls = plan.clone();
        with_dls.licensing.mode = LicensingMode::FastapiDls;
        assert!(dropped_units(&dls, &with_dls).is_empty());
    }
}

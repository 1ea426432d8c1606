//! Tests of the state machine, its store and its rendering.

use super::*;
use vgpu_plan::plan::Plan;

mod render;
mod store;
mod transitions;

pub(super) const SHA: &str = "5ab0f1c3aa5ab0f1c3aa5ab0f1c3aa5ab0f1c3aa5ab0f1c3aa5ab0f1c3aa0001";
pub(super) const MACHINE: &str = "0123456789abcdef0123456789abcdef";
pub(super) const NOW: u64 = 1_700_000_000;

/// A small passthrough plan with a reboot barrier and a cap of 2 reboots.
pub(super) fn plan() -> Plan {
    Plan::from_toml(
        r#"
schema = 1
name = "test"
description = "state tests"
demo = true
proxmox = 8
codename = "bookworm"
mode = "passthrough"

[host]
iommu = "intel"
bootloader = "grub"
packages = []
vfio-modules = ["vfio", "vfio_pci"]
blacklist = ["nouveau"]

[licensing]
mode = "none"
applied = false

[agent]
reboot-cap = 2
keep-payload = false
command-timeout = 600

[[step]]
phase = "one"
kind = "apt-repositories"
why = "no-subscription repository"

[[step]]
phase = "one"
kind = "kernel-args"
why = "IOMMU on"

[[step]]
phase = "reboot"
kind = "reboot"
why = "kernel arguments take effect"

[[step]]
phase = "two"
kind = "verify-reboot"
why = "the reboot took effect"

[[step]]
phase = "two"
kind = "finish"
why = "done marker"
"#,
    )
    .expect("test plan parses")
}

/// A state bound to [`plan`] as [`StateStore::bind`] makes it, no boot yet.
pub(super) fn bound() -> State {
    let plan = plan();
    State {
        plan_sha256: SHA.into(),
        machine_id: MACHINE.into(),
        reboot_cap: plan.agent.reboot_cap,
        steps: plan
            .steps
            .iter()
            .map(|s| StepRecord {
                id: s.kind.id().to_owned(),
                attempts: 0,
                status: StepState::Pending,
            })
            .collect(),
        ..State::default()
    }
}

/// `state` after `event`, which must be legal.
pub(super) fn after(state: &State, event: Event) -> State {
    state
        .next(&event, NOW)
        .unwrap_or_else(|e| panic!("{event:?} refused: {e}"))
}

/// Applies the events in order.
pub(super) fn run(state: &State, events: impl IntoIterator<Item = Event>) -> State {
    events
        .into_iter()
        .fold(state.clone(), |s, event| after(&s, event))
}

pub(super) fn begin(id: &str) -> Event {
    Event::Begin(id.into())
}

pub(super) fn complete(id: &str) -> Event {
    Event::Complete(id.into())
}

pub(super) fn booted(id: &str) -> Event {
    Event::Booted(id.into())
}

/// The message of the error `event` gets in `state`.
pub(super) fn refused(state: &State, event: Event) -> String {
    match state.next(&event, NOW) {
        Ok(_) => panic!("{event:?} was accepted in {:?}", state.status),
        Err(e) => e.to_string(),
    }
}

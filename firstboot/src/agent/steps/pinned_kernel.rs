//! The kernel the plan pins: kernel-pin chooses and installs it and records
//! its choice ([`CHOSEN_FILE`]); the trial boot boots it once; the trial's
//! commit runs `proxmox-boot-tool kernel pin` ([`pin`]). Read by apt-install
//! (to fill in `{kernel}`) and by the reboot checks.

use super::commands::run_or;
use crate::agent::host::{Host, StepError};
use crate::agent::journal::{Change, Journal, Record};

/// Written by `proxmox-boot-tool kernel pin`: the kernel the host boots
/// from the next boot on.
pub(super) const PIN_FILE: &str = "etc/kernel/proxmox-boot-pin";
/// kernel-pin's choice, pinned at the trial's commit (the agent's state
/// directory: written atomically, not journaled).
pub(super) const CHOSEN_FILE: &str = "var/lib/vgpu-firstboot/kernel-pin";

fn first_word(host: &Host, path: &str) -> Result<Option<String>, StepError> {
    Ok(host
        .read_opt(path)?
        .and_then(|t| t.split_whitespace().next().map(str::to_owned)))
}

/// kernel-pin's choice while it is not pinned yet (its record is removed
/// once it is): the trial boots it and the commit pins it.
pub(super) fn pin_pending(host: &Host) -> Result<Option<String>, StepError> {
    if host.plan.host.kernel_pin.is_none() {
        return Ok(None);
    }
    first_word(host, CHOSEN_FILE)
}

/// The kernel the host is to run: kernel-pin's choice, else the pinned one.
pub(super) fn read_pin(host: &Host) -> Result<Option<String>, StepError> {
    Ok(match pin_pending(host)? {
        Some(c) => Some(c),
        None => first_word(host, PIN_FILE)?,
    })
}

/// Runs `proxmox-boot-tool kernel pin version` unless it is pinned,
/// journaled first (the pin file the command writes, and the pin), then
/// removes kernel-pin's record. An upgrade re-pins: the record keeps the
/// pin from before the agent's first one (the journal's first kernel-pin
/// record), not the earlier plan's, so undo goes back to the host as it
/// was.
// One copy outside its caller (the commit): smaller agent binary.
#[inline(never)]
pub(super) fn pin(host: &mut Host, version: &str) -> Result<(), StepError> {
    let previous = first_word(host, PIN_FILE)?;
    if previous.as_deref() != Some(version) {
        host.touch(PIN_FILE)?;
        let journal = Journal::read(&host.fs()?)?;
        host.record(Change::KernelPin {
            version: version.to_owned(),
            previous: pin_before_agent(&journal).unwrap_or(previous),
        })?;
        let spec = host.command(
            "proxmox-boot-tool",
            &["kernel", "pin", version],
            "boot the kernel the trial boot proved from now on",
        );
        run_or(
            host,
            spec,
            "check that `proxmox-boot-tool kernel list` shows the kernel",
        )?;
    }
    host.fs()?.remove_file(CHOSEN_FILE)?;
    Ok(())
}

/// The pin before the agent's first one, when the journal records one:
/// `Some(previous)` of its first kernel-pin record. Pure.
pub(crate) fn pin_before_agent(journal: &Journal) -> Option<Option<String>> {
    journal.records.iter().find_map(|r| match r {
        Record::Change(Change::KernelPin { previous, .. }) => Some(previous.clone()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_second_pin_keeps_the_pin_from_before_the_agent() {
        use super::{Change, Journal, Record, pin_before_agent};
        let pin = |v: &str, p: Option<&str>| {
            Record::Change(Change::KernelPin {
                version: v.into(),
                previous: p.map(Into::into),
            })
        };
        assert_eq!(pin_before_agent(&Journal::default()), None);
        let j = Journal {
            records: vec![
                pin("6.8.12-4-pve", Some("6.5.13-6-pve")),
                pin("6.14.11-1-pve", Some("6.8.12-4-pve")),
            ],
        };
        assert_eq!(pin_before_agent(&j), Some(Some("6.5.13-6-pve".into())));
        let j = Journal {
            records: vec![pin("6.8.12-4-pve", None)],
        };
        assert_eq!(pin_before_agent(&j), Some(None));
    }
}

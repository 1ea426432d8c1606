//! The kernel `proxmox-boot-tool kernel pin` pinned: read by the kernel-pin
//! step, by apt-install (to fill in `{kernel}`) and by the reboot checks.

use crate::agent::host::{Host, StepError};

/// Written by `proxmox-boot-tool kernel pin`: the kernel the host boots
/// from the next boot on.
pub(super) const PIN_FILE: &str = "etc/kernel/proxmox-boot-pin";

/// The kernel version `proxmox-boot-tool kernel pin` recorded, if any.
pub(super) fn read_pin(host: &Host) -> Result<Option<String>, StepError> {
    Ok(host
        .read_opt(PIN_FILE)?
        .and_then(|t| t.split_whitespace().next().map(str::to_owned)))
}

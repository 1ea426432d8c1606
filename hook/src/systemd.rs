//! Starting the agent: `systemctl daemon-reload` (the bundle brought a new
//! unit) and `systemctl start --no-block vgpu-firstboot.service` (the agent
//! may reboot the host; the hook must not wait for it, and the installer's
//! oneshot unit must end). systemctl is systemd's, on every Proxmox VE host.

use std::path::Path;
use std::time::Duration;

use vgpu_plan::layout::DONE_MARKER;

use crate::command::{CommandError, Tool};

/// The agent's unit.
pub const UNIT: &str = "vgpu-firstboot.service";

const DEADLINE: Duration = Duration::from_secs(120);

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// The start was issued.
    Started,
    /// The agent had finished already (its done marker is there).
    AlreadyDone,
    /// A new bundle was laid over a finished one: `vgpu-firstboot upgrade`
    /// was started in a transient unit ([`UPGRADE_UNIT`]).
    Upgrading,
}

/// The transient unit `vgpu-firstboot upgrade` runs in.
pub const UPGRADE_UNIT: &str = "vgpu-firstboot-upgrade";

/// Reloads systemd and starts the agent without waiting, unless the agent
/// is done already.
/// `scratch` holds the commands' output.
/// With `laid` (this run laid a new bundle) over a finished agent, the
/// agent's `upgrade` is started instead, without waiting, in a transient
/// unit (`systemd-run`, systemd's): it archives the old state and applies
/// the new plan's difference.
pub fn start_agent(root: &Path, scratch: &Path, laid: bool) -> Result<Started, CommandError> {
    Tool::new("systemctl", &["daemon-reload"]).run(DEADLINE, scratch)?;
    if root.join(DONE_MARKER).symlink_metadata().is_ok() {
        if !laid {
            return Ok(Started::AlreadyDone);
        }
        let agent = vgpu_plan::layout::absolute(vgpu_plan::layout::AGENT_BIN);
        let unit = format!("--unit={UPGRADE_UNIT}");
        Tool::new(
            "systemd-run",
            &["--no-block", "--collect", &unit, &agent, "upgrade"],
        )
        .run(DEADLINE, scratch)?;
        return Ok(Started::Upgrading);
    }
    Tool::new("systemctl", &["start", "--no-block", UNIT]).run(DEADLINE, scratch)?;
    Ok(Started::Started)
}

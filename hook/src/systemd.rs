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
}

/// Reloads systemd and starts the agent without waiting, unless the agent
/// is done already.
/// `scratch` holds the commands' output.
pub fn start_agent(root: &Path, scratch: &Path) -> Result<Started, CommandError> {
    Tool::new("systemctl", &["daemon-reload"]).run(DEADLINE, scratch)?;
    if root.join(DONE_MARKER).symlink_metadata().is_ok() {
        return Ok(Started::AlreadyDone);
    }
    Tool::new("systemctl", &["start", "--no-block", UNIT]).run(DEADLINE, scratch)?;
    Ok(Started::Started)
}

//! The systemd unit that starts the agent at boot.

use crate::layout;

/// The unit file template. `@AGENT@`, `@DONE@` and `@WANTS@` are replaced with
/// absolute paths by [`render`].
pub const TEMPLATE: &str = include_str!("../systemd/vgpu-firstboot.service.in");

/// The unit file as it is installed on the target.
pub fn render() -> String {
    TEMPLATE
        .replace("@AGENT@", &layout::absolute(layout::AGENT_BIN))
        .replace("@DONE@", &layout::absolute(layout::DONE_MARKER))
        .replace("@WANTS@", &layout::absolute(layout::UNIT_WANTS_LINK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_unit_has_the_required_settings() {
        let unit = render();
        assert!(!unit.contains('@'), "unreplaced placeholder in:\n{unit}");
        for line in [
            "Type=oneshot",
            "RemainAfterExit=yes",
            "After=network-online.target",
            "Wants=network-online.target",
            "After=proxmox-first-boot-network-pre.service proxmox-first-boot-network-online.service proxmox-first-boot-multi-user.service",
            "ConditionPathExists=|!/var/lib/vgpu-firstboot/done",
            "ConditionPathExists=|/etc/systemd/system/multi-user.target.wants/vgpu-firstboot.service",
            "ExecStart=/usr/local/sbin/vgpu-firstboot run",
            "StandardOutput=journal+console",
            "WantedBy=multi-user.target",
        ] {
            assert!(
                unit.lines().any(|l| l == line),
                "missing {line:?} in:\n{unit}"
            );
        }
    }
}

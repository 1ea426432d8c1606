//! The systemd unit that starts the agent at boot.

use crate::layout;

/// The unit file template. `@AGENT@`, `@DONE@` and `@WANTS@` are replaced with
/// absolute paths by [`render`].
pub const TEMPLATE: &str = include_str!("../systemd/vgpu-firstboot.service.in");

/// Where the vgpu-firstboot Debian package installs the agent.
pub const PACKAGED_AGENT: &str = "/usr/sbin/vgpu-firstboot";

/// The unit file as a bundle installs it on the target.
pub fn render() -> String {
    render_for(&layout::absolute(layout::AGENT_BIN))
}

/// The unit file starting the agent at `agent`: the bundle's copy, or the
/// Debian package's ([`PACKAGED_AGENT`]; the same conditions, so a bundle's
/// unit in /etc and the package's in /usr/lib behave alike).
pub fn render_for(agent: &str) -> String {
    TEMPLATE
        .replace("@AGENT@", agent)
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

    #[test]
    fn the_packaged_unit_differs_only_in_the_agent_path() {
        let packaged = render_for(PACKAGED_AGENT);
        assert!(packaged.contains("ExecStart=/usr/sbin/vgpu-firstboot run\n"));
        assert_eq!(
            packaged.replace(PACKAGED_AGENT, "/usr/local/sbin/vgpu-firstboot"),
            render()
        );
    }
}

//! Where the bundle puts things on the target, relative to its root.
//!
//! Every path here is relative (no leading `/`) so it can be joined onto any
//! root: `/` on a real host, a temp dir in tests, a mounted disk for
//! `vgpu-bake install --root`.

/// The agent binary.
pub const AGENT_BIN: &str = "usr/local/sbin/vgpu-firstboot";
/// The systemd unit.
pub const UNIT_FILE: &str = "etc/systemd/system/vgpu-firstboot.service";
/// The `.wants` link that enables the unit; the agent removes it when done.
pub const UNIT_WANTS_LINK: &str =
    "etc/systemd/system/multi-user.target.wants/vgpu-firstboot.service";
/// Target of [`UNIT_WANTS_LINK`], relative to the link's directory.
pub const UNIT_WANTS_TARGET: &str = "../vgpu-firstboot.service";
/// The agent's state directory.
pub const STATE_DIR: &str = "var/lib/vgpu-firstboot";
/// The resolved plan.
pub const PLAN_FILE: &str = "var/lib/vgpu-firstboot/plan.toml";
/// sha256, size and mode of every other file in the bundle.
pub const MANIFEST_FILE: &str = "var/lib/vgpu-firstboot/manifest.toml";
/// The GPU compatibility table the plan was resolved with.
pub const COMPAT_FILE: &str = "var/lib/vgpu-firstboot/gpu-compat.toml";
/// Driver installers, the unlock library, offline packages.
pub const PAYLOAD_DIR: &str = "var/lib/vgpu-firstboot/payload";
/// The agent's crash-safe state file.
pub const STATE_FILE: &str = "var/lib/vgpu-firstboot/state.toml";
/// Written when the plan is complete; the unit's `ConditionPathExists=!` reads it.
pub const DONE_MARKER: &str = "var/lib/vgpu-firstboot/done";

/// Absolute form of a layout path, as the target host sees it.
pub fn absolute(rel: &str) -> String {
    format!("/{rel}")
}

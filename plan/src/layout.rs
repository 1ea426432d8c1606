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
/// minisign signature of [`MANIFEST_FILE`]'s bytes (the manifest lists the
/// plan's and every other entry's digest, so this covers the whole bundle).
/// Written by `vgpu-bake bake --sign-key`; absent from an unsigned bundle.
pub const SIGNATURE_FILE: &str = "var/lib/vgpu-firstboot/manifest.toml.minisig";

/// The trusted (signed) comment of bundle `name`'s [`SIGNATURE_FILE`]: the
/// agent and `vgpu-bake inspect --trusted-key` refuse a signature whose
/// comment names another bundle.
pub fn signature_comment(name: &str) -> String {
    format!("vgpu-bake bundle {name}")
}
/// Public keys (minisign format, `*.pub`) the host trusts. Provisioned on the
/// host by its operator, never by a bundle: when any key is here the agent
/// refuses an unsigned or wrongly signed bundle before phase 1.
pub const TRUSTED_KEYS_DIR: &str = "etc/vgpu-firstboot/trusted-keys";
/// The GPU compatibility table the plan was resolved with.
pub const COMPAT_FILE: &str = "var/lib/vgpu-firstboot/gpu-compat.toml";
/// Driver installers, the unlock library, offline packages.
pub const PAYLOAD_DIR: &str = "var/lib/vgpu-firstboot/payload";
/// Guest (VM) drivers the profile bakes (`[[guest-driver]]`): one file per
/// driver, directly in this directory. Not payload: `finish` keeps them.
pub const GUEST_DRIVERS_DIR: &str = "var/lib/vgpu-firstboot/guest-drivers";
/// The agent's crash-safe state file.
pub const STATE_FILE: &str = "var/lib/vgpu-firstboot/state.toml";
/// Written when the plan is complete; the unit's `ConditionPathExists=|!` reads it.
pub const DONE_MARKER: &str = "var/lib/vgpu-firstboot/done";

/// Directories a bundle may hold: the parents of the fixed files.
pub const DIRS: &[&str] = &[
    "etc",
    "etc/systemd",
    "etc/systemd/system",
    "etc/systemd/system/multi-user.target.wants",
    "usr",
    "usr/local",
    "usr/local/sbin",
    "var",
    "var/lib",
    STATE_DIR,
];
/// Regular files a bundle may hold outside [`PAYLOAD_DIR`].
pub const FILES: &[&str] = &[
    AGENT_BIN,
    UNIT_FILE,
    PLAN_FILE,
    MANIFEST_FILE,
    SIGNATURE_FILE,
    COMPAT_FILE,
];

/// Whether `path` is strictly below [`PAYLOAD_DIR`].
pub fn in_payload(path: &str) -> bool {
    path.strip_prefix(PAYLOAD_DIR)
        .is_some_and(|rest| rest.len() > 1 && rest.starts_with('/'))
}

/// Whether `path` is a file name directly in [`GUEST_DRIVERS_DIR`] (not
/// hidden, at most 255 bytes).
pub fn in_guest_drivers(path: &str) -> bool {
    path.strip_prefix(GUEST_DRIVERS_DIR)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|name| {
            !name.is_empty() && name.len() <= 255 && !name.starts_with('.') && !name.contains('/')
        })
}

/// Why an entry is outside the documented bundle layout, if it is: the
/// directories in [`DIRS`], [`PAYLOAD_DIR`] and directories below it; the
/// files in [`FILES`], regular files below [`PAYLOAD_DIR`] and directly in
/// [`GUEST_DRIVERS_DIR`] (which is also allowed as a directory); one symlink,
/// [`UNIT_WANTS_LINK`] to [`UNIT_WANTS_TARGET`]. Nothing else: no
/// `etc/passwd`, no state file, no trusted key, no extra unit.
pub fn check_entry(
    path: &str,
    kind: crate::manifest::EntryType,
    target: Option<&str>,
) -> Result<(), &'static str> {
    use crate::manifest::EntryType;
    let ok = match kind {
        EntryType::Dir => {
            DIRS.contains(&path)
                || path == PAYLOAD_DIR
                || in_payload(path)
                || path == GUEST_DRIVERS_DIR
        }
        EntryType::File => FILES.contains(&path) || in_payload(path) || in_guest_drivers(path),
        EntryType::Symlink => {
            if path != UNIT_WANTS_LINK {
                return Err(
                    "a bundle holds one symlink only, the unit's multi-user.target.wants link",
                );
            }
            if target.is_some_and(|t| t != UNIT_WANTS_TARGET) {
                return Err("the unit's wants link must point to ../vgpu-firstboot.service");
            }
            true
        }
    };
    if ok {
        Ok(())
    } else {
        Err(
            "the path is outside the bundle layout (the agent, its unit and wants link, and var/lib/vgpu-firstboot)",
        )
    }
}

/// Absolute form of a layout path, as the target host sees it.
pub fn absolute(rel: &str) -> String {
    format!("/{rel}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::EntryType;

    #[test]
    fn guest_drivers_are_files_directly_in_their_directory() {
        let f = |p: &str| check_entry(p, EntryType::File, None).is_ok();
        assert!(f(
            "var/lib/vgpu-firstboot/guest-drivers/NVIDIA-Linux-x86_64-595.58.03-grid.run"
        ));
        assert!(check_entry(GUEST_DRIVERS_DIR, EntryType::Dir, None).is_ok());
        for bad in [
            "var/lib/vgpu-firstboot/guest-drivers",
            "var/lib/vgpu-firstboot/guest-drivers/",
            "var/lib/vgpu-firstboot/guest-drivers/.hidden",
            "var/lib/vgpu-firstboot/guest-drivers/sub/x.run",
            "var/lib/vgpu-firstboot/guest-driversx/x.run",
        ] {
            assert!(!f(bad), "{bad}");
        }
        let long = format!("{GUEST_DRIVERS_DIR}/{}", "a".repeat(256));
        assert!(!f(&long));
        assert!(check_entry(&format!("{GUEST_DRIVERS_DIR}/sub"), EntryType::Dir, None).is_err());
    }
}

//! vgpu_unlock: systemd drop-ins that preload the unlock library into
//! NVIDIA's two vGPU daemons, and the profile override file.
//!
//! Same files as the bash installer (seed §4.7 step 5-6), with the library
//! at the path the plan chose instead of a build tree under `/opt`, and the
//! profile override written with the profile's content instead of `touch`.

use super::{EditError, FileOp, owned_header, write_if_changed};
use vgpu_plan::plan::UnlockPlan;

/// Drop-in for `nvidia-vgpud.service`.
pub const VGPUD_DROPIN: &str = "etc/systemd/system/nvidia-vgpud.service.d/vgpu_unlock.conf";
/// Drop-in for `nvidia-vgpu-mgr.service`.
pub const VGPU_MGR_DROPIN: &str = "etc/systemd/system/nvidia-vgpu-mgr.service.d/vgpu_unlock.conf";
/// vgpu_unlock-rs reads its per-profile overrides here.
pub const PROFILE_OVERRIDE: &str = "etc/vgpu_unlock/profile_override.toml";

/// Content of both drop-ins: `[Service]` and
/// `Environment=LD_PRELOAD=<library_path>`. The path must be absolute and
/// free of whitespace, quotes and backslashes (systemd would split or
/// unquote it); `%` is escaped as `%%` (a systemd specifier otherwise).
pub fn unlock_dropin(library_path: &str) -> Result<String, EditError> {
    let usable = library_path.starts_with('/')
        && !library_path.contains(|c: char| {
            c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\')
        });
    if !usable {
        return Err(EditError::LibraryPath(library_path.to_owned()));
    }
    let mut out = owned_header("preload vgpu_unlock into the NVIDIA vGPU daemon");
    out.push_str(&format!(
        "[Service]\nEnvironment=LD_PRELOAD={}\n",
        library_path.replace('%', "%%")
    ));
    Ok(out)
}

/// Content of [`PROFILE_OVERRIDE`]: the plan's text, unchanged (an empty
/// file is what vgpu_unlock-rs expects when nothing is overridden).
pub fn profile_override(content: &str) -> String {
    content.to_owned()
}

/// Operations for the unlock files, each written only when it differs.
/// `current` holds the current contents of [`VGPUD_DROPIN`],
/// [`VGPU_MGR_DROPIN`] and [`PROFILE_OVERRIDE`], in that order. A drop-in
/// in the result means `systemctl daemon-reload` must run.
pub fn plan_unlock(
    unlock: &UnlockPlan,
    current: [Option<&str>; 3],
) -> Result<Vec<FileOp>, EditError> {
    let dropin = unlock_dropin(&unlock.library_path)?;
    let why = format!("preload {} into the vGPU daemon", unlock.library_path);
    let ops = [
        write_if_changed(VGPUD_DROPIN, current[0], dropin.clone(), &why),
        write_if_changed(VGPU_MGR_DROPIN, current[1], dropin, &why),
        write_if_changed(
            PROFILE_OVERRIDE,
            current[2],
            profile_override(&unlock.profile_override),
            "vGPU profile overrides from the bake profile",
        ),
    ];
    Ok(ops.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropin_is_service_section_and_preload() {
        let out = unlock_dropin("/opt/vgpu_unlock-rs/libvgpu_unlock_rs.so").unwrap();
        let body: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            body,
            [
                "[Service]",
                "Environment=LD_PRELOAD=/opt/vgpu_unlock-rs/libvgpu_unlock_rs.so"
            ]
        );
        assert!(
            unlock_dropin("/usr/lib/100%/x.so")
                .unwrap()
                .contains("/usr/lib/100%%/x.so\n")
        );
        for bad in ["lib.so", "/a b.so", "/a\"b.so", "/a\\b.so", "", "/a\nb"] {
            assert_eq!(
                unlock_dropin(bad),
                Err(EditError::LibraryPath(bad.to_owned()))
            );
        }
    }
}

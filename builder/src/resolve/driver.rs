//! Driver release choice, installer arguments and unlock inputs.

use vgpu_plan::plan::{Md5, Mode, Sha256};

use super::files::profile_path;
use super::sources::{DriverSource, LibrarySource, PatchSource, ResolvedDriver, ResolvedUnlock};
use super::{Ctx, ResolveError};
use crate::profile::Profile;
use crate::registry::{Registry, Release};
use crate::text::shown;

/// Where the agent installs the unlock library on the host.
pub const UNLOCK_LIBRARY_PATH: &str = "/usr/local/lib/vgpu_unlock/libvgpu_unlock_rs.so";

/// Payload path of the unlock library.
pub const UNLOCK_LIBRARY_PAYLOAD: &str = "unlock/libvgpu_unlock_rs.so";

/// The release the profile names, checked against its mode; a Proxmox major
/// it is not offered for is a warning, a known failure (an unlock patch that
/// does not build on the major's kernels) an error.
pub(super) fn pick_release<'r>(
    profile: &Profile,
    mode: Mode,
    registry: &'r Registry,
    cx: &mut Ctx,
) -> Result<Option<&'r Release>, ResolveError> {
    let Some(section) = &profile.driver else {
        if mode == Mode::Passthrough {
            return Ok(None);
        }
        return Err(cx.err(format!(
            "missing `[driver]`: {mode} mode needs `driver.release`, one of {}",
            offered(registry, profile.proxmox, mode).join(", ")
        )));
    };
    if mode == Mode::Passthrough {
        return Err(cx.err(
            "`[driver]` is set but `vgpu.mode` = \"passthrough\" installs no vGPU driver: remove `[driver]` or choose another mode",
        ));
    }
    let Some(release) = registry.get(&section.release) else {
        return Err(cx.err(format!(
            "`driver.release` = {} is not a known vGPU release; known: {}",
            shown(&section.release),
            registry.names().join(", ")
        )));
    };
    if !release.proxmox.contains(&profile.proxmox) {
        // Not known to fail: the bash installer offers every release on
        // every major (its per-major list is a hint), so this is a warning.
        let majors: Vec<String> = release.proxmox.iter().map(u8::to_string).collect();
        cx.warnings.push(format!(
            "`driver.release` = {:?} is not known to work on Proxmox VE {}: it is offered for Proxmox VE {} only, so its driver may not build on Proxmox VE {}'s kernels; releases offered for Proxmox VE {} in {mode} mode: {}",
            release.release,
            profile.proxmox,
            majors.join(", "),
            profile.proxmox,
            profile.proxmox,
            offered(registry, profile.proxmox, mode).join(", ")
        ));
    }
    if mode == Mode::Unlock {
        if release.patch.is_none() {
            return Err(cx.err(format!(
                "`driver.release` = {:?} is for native cards only ({}); no vgpu_unlock patch exists for it. Unlock mode needs one of {}",
                release.release,
                release.note,
                offered(registry, profile.proxmox, mode).join(", ")
            )));
        }
        if unlock_impossible(release, profile.proxmox) {
            return Err(cx.err(format!(
                "`driver.release` = {:?} in unlock mode needs a kernel older than {} (its vgpu_unlock patch does not build on newer ones) and Proxmox VE {} ships none; use one of {}, or Proxmox VE 8",
                release.release,
                release.unlock_kernel_below.as_deref().unwrap_or("?"),
                profile.proxmox,
                offered(registry, profile.proxmox, mode).join(", ")
            )));
        }
    }
    Ok(Some(release))
}

/// Unlock on Proxmox VE 9 needs at least kernel 6.14, so releases whose
/// patches stop building at 6.8 cannot work there.
fn unlock_impossible(release: &Release, proxmox: u8) -> bool {
    proxmox >= 9 && release.unlock_kernel_below.as_deref() == Some("6.8")
}

/// Releases usable for this Proxmox major and mode, newest first.
fn offered(registry: &Registry, proxmox: u8, mode: Mode) -> Vec<String> {
    registry
        .releases
        .iter()
        .filter(|r| !r.demo && r.proxmox.contains(&proxmox))
        .filter(|r| mode != Mode::Unlock || (r.patch.is_some() && !unlock_impossible(r, proxmox)))
        .map(|r| r.release.clone())
        .collect()
}

/// The driver as resolved: the registry's data, the pins, the source.
pub(super) fn resolved_driver(
    profile: &Profile,
    mode: Mode,
    release: &Release,
    cx: &Ctx,
) -> Result<ResolvedDriver, ResolveError> {
    let section = profile.driver.as_ref().expect("checked in pick_release");
    let md5 = match (&release.md5, &section.md5) {
        (Some(known), Some(given)) if !known.eq_ignore_ascii_case(given) => {
            return Err(cx.err(format!(
                "`driver.md5` = {} contradicts the registry's md5 {known} for release {}: remove `driver.md5` or check your file",
                shown(given),
                release.release
            )));
        }
        (Some(known), _) => Some(known),
        (None, given) => given.as_ref(),
    };
    let md5_from_registry = release.md5.is_some();
    let md5 = md5
        .map(|m| {
            let md5 = Md5::parse_any_case(m).map_err(|_| {
                cx.err(format!(
                    "`driver.md5` = {} is not 32 hex digits: copy the md5 published with the driver file",
                    shown(&m.to_ascii_lowercase())
                ))
            })?;
            if is_zero(md5.as_str()) {
                return Err(cx.err(
                    "`driver.md5` is 32 zeros, a placeholder and not a checksum: copy the md5 published with the driver file, or remove `driver.md5` and pin `driver.sha256`",
                ));
            }
            Ok(md5)
        })
        .transpose()?;
    let sha256 = section
        .sha256
        .as_ref()
        .map(|sha| {
            let pin = Sha256::parse_any_case(sha).map_err(|_| {
                cx.err(format!(
                    "`driver.sha256` = {} is not 64 hex digits: use the line `vgpu-bake fetch` prints (`sha256 = \"...\"`)",
                    shown(sha)
                ))
            })?;
            if is_zero(pin.as_str()) {
                return Err(cx.err(
                    "`driver.sha256` is 64 zeros, a placeholder and not a checksum: use the line `vgpu-bake fetch` prints (`sha256 = \"...\"`), or remove `driver.sha256`",
                ));
            }
            Ok(pin)
        })
        .transpose()?;
    let (install_args, patch) = match mode {
        Mode::Unlock => {
            let unlock = profile
                .unlock
                .as_ref()
                .ok_or_else(|| cx.err(MISSING_UNLOCK))?;
            (
                release
                    .args_unlock
                    .clone()
                    .expect("checked in pick_release"),
                Some(PatchSource {
                    file: release.patch.clone().expect("checked in pick_release"),
                    source: profile_path(cx, "unlock.patch", &unlock.patch)?,
                }),
            )
        }
        _ => (release.args_native.clone(), None),
    };
    let source = match release.bundled_bytes() {
        Some(bytes) => DriverSource::Demo { bytes },
        None => DriverSource::Download {
            url: release.url.clone(),
        },
    };
    Ok(ResolvedDriver {
        release: release.release.clone(),
        version: release.version.clone(),
        filename: release.filename.clone(),
        md5,
        md5_from_registry,
        sha256,
        source,
        patch,
        install_args,
        services: vec![
            "nvidia-vgpud.service".into(),
            "nvidia-vgpu-mgr.service".into(),
        ],
        sriov_unit: (mode == Mode::Native).then(|| "pve-nvidia-sriov@ALL.service".to_string()),
    })
}

const MISSING_UNLOCK: &str = "missing `[unlock]`: unlock mode needs `unlock.patch` (the vgpu_unlock patch file), `unlock.library` (a prebuilt libvgpu_unlock_rs.so) and `unlock.library-sha256`";

/// The unlock section: present exactly in unlock mode.
pub(super) fn resolved_unlock(
    profile: &Profile,
    mode: Mode,
    release: Option<&Release>,
    cx: &Ctx,
) -> Result<Option<ResolvedUnlock>, ResolveError> {
    let section = match (&profile.unlock, mode) {
        (None, Mode::Unlock) => return Err(cx.err(MISSING_UNLOCK)),
        (Some(_), Mode::Native | Mode::Passthrough) => {
            return Err(cx.err(format!(
                "`[unlock]` is set but `vgpu.mode` = \"{mode}\": remove `[unlock]` or set `vgpu.mode = \"unlock\"`"
            )));
        }
        (None, _) => return Ok(None),
        (Some(s), Mode::Unlock) => s,
    };
    let release = release.expect("unlock mode has a release");
    let wanted = release.patch.as_deref().unwrap_or_default();
    let given = section
        .patch
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if given != wanted {
        return Err(cx.err(format!(
            "`unlock.patch` = {} is not the patch for release {} ({}): name the file {wanted} from your copy of the vgpu-proxmox patch repository",
            shown(&section.patch.to_string_lossy()),
            release.release,
            release.version
        )));
    }
    let library = profile_path(cx, "unlock.library", &section.library)?;
    let sha256 = Sha256::parse_any_case(&section.library_sha256).map_err(|_| {
        cx.err(format!(
            "`unlock.library-sha256` = {} is not 64 hex digits: run `sha256sum` on the library and paste the hash",
            shown(&section.library_sha256)
        ))
    })?;
    check_profile_override(&section.profile_override, cx)?;
    Ok(Some(ResolvedUnlock {
        library: LibrarySource {
            path: UNLOCK_LIBRARY_PAYLOAD.into(),
            source: library,
            sha256,
        },
        library_path: UNLOCK_LIBRARY_PATH.into(),
        profile_override: section.profile_override.clone(),
    }))
}

/// `unlock.profile-override` is at most this many bytes.
pub const PROFILE_OVERRIDE_BYTES: usize = 64 * 1024;

/// Whether a digest is all zeros: a placeholder, never a real checksum.
pub(super) fn is_zero(hex: &str) -> bool {
    hex.bytes().all(|b| b == b'0')
}

/// `unlock.profile-override` becomes `/etc/vgpu_unlock/profile_override.toml`,
/// which vgpu_unlock-rs parses as TOML on every VM start: it must be TOML.
fn check_profile_override(text: &str, cx: &Ctx) -> Result<(), ResolveError> {
    const KEY: &str = "unlock.profile-override";
    if text.len() > PROFILE_OVERRIDE_BYTES {
        return Err(cx.err(format!(
            "`{KEY}` is {} bytes: use at most {PROFILE_OVERRIDE_BYTES} bytes (it holds a few `[profile.nvidia-NNN]` tables)",
            text.len()
        )));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(cx.err(format!(
            "`{KEY}` holds control characters other than tabs and line breaks: write plain TOML text"
        )));
    }
    if let Err(e) = text.parse::<toml::Table>() {
        let offset = e.span().map_or(0, |s| s.start).min(text.len());
        let line = text[..offset].matches('\n').count() + 1;
        let message = e.message().trim();
        let message: String = message.chars().take(200).collect();
        return Err(cx.err(format!(
            "`{KEY}` is not valid TOML (line {line} of the value: {message}): it is written to /etc/vgpu_unlock/profile_override.toml, which vgpu_unlock-rs reads as TOML; fix it or remove the key"
        )));
    }
    Ok(())
}

//! The profile's `[[gpu]]` entries against the corrected GPU database.

use vgpu_plan::compat::Support;
use vgpu_plan::plan::{GpuRole, GpuRule, Mode};

use super::{Ctx, ResolveError};
use crate::gpudb::{Classification, GpuDb, parse_device_id};
use crate::profile::{CardModeWord, Profile};
use crate::registry::Release;
use crate::text::{has_controls, shown};

fn support_words(s: Support) -> &'static str {
    match s {
        Support::Native => "a native vGPU card",
        Support::Unlock => "a vgpu_unlock consumer card",
        Support::No => "not usable for vGPU",
    }
}

/// Checks each card against the mode and release.
pub(super) fn resolve_gpus(
    profile: &Profile,
    mode: Mode,
    release: Option<&Release>,
    db: &GpuDb,
    cx: &mut Ctx,
) -> Result<Vec<GpuRule>, ResolveError> {
    let mut rules: Vec<GpuRule> = Vec::new();
    for (i, gpu) in profile.gpus.iter().enumerate() {
        let key = format!("gpu[{i}]");
        if gpu.id.chars().count() > 16 || has_controls(&gpu.id) {
            return Err(cx.err(format!(
                "`{key}.id` = {} is not a PCI id: expected the form 10de:1eb8 (or just 1eb8)",
                shown(&gpu.id)
            )));
        }
        let device = parse_device_id(&gpu.id).map_err(|e| {
            cx.err(format!(
                "`{key}.id` = {} is not a PCI id: {e}",
                shown(&gpu.id)
            ))
        })?;
        let id = format!("10de:{device}");
        if rules.iter().any(|r| r.id == id) {
            return Err(cx.err(format!(
                "`{key}.id` = {id:?} is listed twice: give each card model one `[[gpu]]` entry"
            )));
        }
        let class = db
            .classify(&device)
            .map_err(|e| cx.err(format!("`{key}.id`: {e}")))?;
        let declared = gpu.mode.map(|m| match m {
            CardModeWord::Native => Support::Native,
            CardModeWord::Unlock => Support::Unlock,
            CardModeWord::None => Support::No,
        });
        let address = gpu
            .address
            .as_deref()
            .map(|a| {
                parse_address(a).ok_or_else(|| {
                    cx.err(format!(
                        "`{key}.address` = {} is not a PCI address: write domain:bus:device.function in hex, e.g. \"0000:01:00.0\" (`lspci -D` shows it)",
                        shown(a)
                    ))
                })
            })
            .transpose()?;
        let role = gpu.role;
        if role == GpuRole::Vgpu {
            check_vgpu_card(&key, &id, mode, release, class.as_ref(), declared, cx)?;
        }
        rules.push(GpuRule {
            id,
            role,
            name: class.as_ref().map(|c| c.name.clone()).unwrap_or_default(),
            database: class.as_ref().map(|c| c.support),
            declared,
            address,
        });
    }
    Ok(rules)
}

/// `0000:01:00.0` (any case) in lower case; `None` unless it is
/// domain:bus:device.function with 4, 2 and 2 hex digits, a device up to
/// 1f and a function up to 7.
fn parse_address(a: &str) -> Option<String> {
    let (domain, rest) = a.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (device, function) = rest.split_once('.')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let ok = hex(domain, 4)
        && hex(bus, 2)
        && hex(device, 2)
        && u8::from_str_radix(device, 16).is_ok_and(|d| d <= 0x1f)
        && function.len() == 1
        && matches!(function.as_bytes()[0], b'0'..=b'7');
    ok.then(|| a.to_ascii_lowercase())
}

fn check_vgpu_card(
    key: &str,
    id: &str,
    mode: Mode,
    release: Option<&Release>,
    class: Option<&Classification>,
    declared: Option<Support>,
    cx: &mut Ctx,
) -> Result<(), ResolveError> {
    let needed = match mode {
        Mode::Native => Support::Native,
        Mode::Unlock => Support::Unlock,
        Mode::Passthrough => {
            return Err(cx.err(format!(
                "`{key}.role` is \"vgpu\" (the default) but `vgpu.mode` = \"passthrough\": set `role = \"passthrough\"` for {id}"
            )));
        }
    };
    let label = match class {
        Some(c) => format!("{id} ({})", c.name),
        None => id.to_string(),
    };
    if let Some(d) = declared
        && d != needed
    {
        return Err(cx.err(format!(
                "`{key}.mode` declares {label} {} but `vgpu.mode` = \"{mode}\" needs {}: a host runs one kind of driver; fix `{key}.mode` or `vgpu.mode`",
                support_words(d),
                support_words(needed)
            )));
    }
    match (class, declared) {
        (None, None) => {
            return Err(cx.err(format!(
                "`{key}.id` = {id:?} is not in the GPU database; if you know the card works, declare it: `mode = \"{mode}\"` in its `[[gpu]]` entry"
            )));
        }
        (None, Some(_)) => cx.warnings.push(format!(
            "{label} is not in the GPU database; the profile declares it {} (`{key}.mode`), so it is trusted",
            support_words(needed)
        )),
        (Some(c), None) if c.support != needed => {
            let hint = match (c.support, mode) {
                (Support::Native, Mode::Unlock) => {
                    "use `vgpu.mode = \"native\"`: native cards need no unlock".to_string()
                }
                (Support::Unlock, Mode::Native) => {
                    "use `vgpu.mode = \"unlock\"` with a patchable release".to_string()
                }
                _ => format!(
                    "pass it through instead (`role = \"passthrough\"`), or if you know better declare `mode = \"{mode}\"` in its `[[gpu]]` entry"
                ),
            };
            return Err(cx.err(format!(
                "`{key}.id`: {label} is {} according to the GPU database{}, so it cannot be used in {mode} mode: {hint}",
                support_words(c.support),
                correction_note(c)
            )));
        }
        (Some(c), Some(d)) if c.support != d => cx.warnings.push(format!(
            "{label}: the GPU database says {}{} but the profile declares it {} (`{key}.mode`); trusting the profile",
            support_words(c.support),
            correction_note(c),
            support_words(d)
        )),
        _ => {}
    }
    if let (Some(c), Some(major)) = (class, release.and_then(Release::major))
        && !c.majors.is_empty()
        && !c.majors.contains(&major)
    {
        let list: Vec<String> = c.majors.iter().map(u32::to_string).collect();
        let release = release.map(|r| r.release.as_str()).unwrap_or_default();
        let msg = format!(
            "{label} is listed for vGPU {} in the GPU database, not {major}.x (driver.release = {release:?})",
            list.join(", ")
        );
        if mode == Mode::Unlock && declared.is_none() {
            return Err(cx.err(format!(
                    "`driver.release`: {msg}; the unlock patches are generation-specific: choose a {}.x release, or declare `mode = \"unlock\"` in its `[[gpu]]` entry to override",
                    list[0]
                )));
        }
        cx.warnings.push(format!(
                "{msg}; the database's release lists are often stale for native cards, so the release is kept"
            ));
    }
    Ok(())
}

/// Mentions a correction only where it changed the card's support.
fn correction_note(c: &Classification) -> String {
    match &c.correction {
        Some(corr) if c.db_support != Some(c.support) => format!(" (corrected: {})", corr.reason),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_address;

    #[test]
    fn addresses() {
        assert_eq!(
            parse_address("0000:01:00.0").as_deref(),
            Some("0000:01:00.0")
        );
        assert_eq!(
            parse_address("0000:3B:1F.7").as_deref(),
            Some("0000:3b:1f.7")
        );
        for bad in [
            "01:00.0",
            "0000:01:00",
            "0000:01:20.0",
            "0000:01:00.8",
            "000:01:00.0",
            "0000:1:00.0",
            "0000:0g:00.0",
            "0000:01:00.0 ",
            "",
        ] {
            assert_eq!(parse_address(bad), None, "{bad:?}");
        }
    }
}

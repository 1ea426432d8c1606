//! vfio modules loaded at boot, and the nouveau blacklist.
//!
//! The bash installer appended four lines to `/etc/modules` unless all four
//! were already there (so a partial match duplicated lines) and appended
//! `blacklist nouveau` to the shared `/etc/modprobe.d/blacklist.conf`
//! (seed §4.9). Here both settings live in files we own and write in full;
//! `/etc/modules` is only read, so modules the admin already loads there are
//! not listed twice.

use super::{FileOp, delete_if_present, owned_header, write_if_changed};

/// Modules systemd-modules-load loads at boot (we own it).
pub const MODULES_LOAD_CONF: &str = "etc/modules-load.d/vgpu-bake-vfio.conf";
/// Blacklist and options for modules that must not drive the GPU (we own it).
pub const BLACKLIST_CONF: &str = "etc/modprobe.d/vgpu-bake-blacklist.conf";
/// Debian's traditional module list (read, never written).
pub const ETC_MODULES: &str = "etc/modules";

/// Content of [`MODULES_LOAD_CONF`]: one module per line, in plan order,
/// without repeats.
pub fn modules_load_conf(modules: &[String]) -> String {
    let mut out = owned_header("vfio modules for vGPU and PCI passthrough");
    let mut seen: Vec<String> = Vec::new();
    for m in modules {
        if !seen.contains(&canonical(m)) {
            seen.push(canonical(m));
            out.push_str(m);
            out.push('\n');
        }
    }
    out
}

/// Content of [`BLACKLIST_CONF`]: `blacklist <module>` for each module, and
/// for nouveau also `options nouveau modeset=0`, so that even a nouveau
/// loaded by hand (or from an old initramfs) lets go of the display.
pub fn blacklist_conf(modules: &[String]) -> String {
    let mut out = owned_header("keep these modules off the NVIDIA GPUs");
    let mut seen: Vec<String> = Vec::new();
    for m in modules {
        let name = canonical(m);
        if seen.contains(&name) {
            continue;
        }
        out.push_str(&format!("blacklist {m}\n"));
        if name == "nouveau" {
            out.push_str(&format!("options {m} modeset=0\n"));
        }
        seen.push(name);
    }
    out
}

/// The `modules` that `/etc/modules` (`None` if absent) does not load.
/// A line loads the module named by its first word (the rest are module
/// parameters); `#` starts a comment; `-` and `_` in names are the same
/// module, as for modprobe.
pub fn not_in_etc_modules(etc_modules: Option<&str>, modules: &[String]) -> Vec<String> {
    let listed: Vec<String> = etc_modules
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.split('#').next()?.split_whitespace().next())
        .map(canonical)
        .collect();
    let mut out: Vec<String> = Vec::new();
    for m in modules {
        if !listed.contains(&canonical(m)) && !out.iter().any(|o| canonical(o) == canonical(m)) {
            out.push(m.clone());
        }
    }
    out
}

/// Whether `/etc/modules` already loads every one of `modules`.
pub fn listed_in_etc_modules(etc_modules: Option<&str>, modules: &[String]) -> bool {
    not_in_etc_modules(etc_modules, modules).is_empty()
}

/// Operations for the vfio modules: [`MODULES_LOAD_CONF`] lists the modules
/// `/etc/modules` doesn't; when it loads them all, our file is not needed
/// (and removed if an earlier run wrote it).
pub fn plan_vfio_modules(
    modules: &[String],
    etc_modules: Option<&str>,
    current_conf: Option<&str>,
) -> Vec<FileOp> {
    let wanted = not_in_etc_modules(etc_modules, modules);
    let op = if wanted.is_empty() {
        delete_if_present(
            MODULES_LOAD_CONF,
            current_conf,
            "/etc/modules already loads every vfio module",
        )
    } else {
        write_if_changed(
            MODULES_LOAD_CONF,
            current_conf,
            modules_load_conf(&wanted),
            &format!("load at boot: {}", wanted.join(" ")),
        )
    };
    op.into_iter().collect()
}

/// Operations for the blacklist: [`BLACKLIST_CONF`], written when it
/// differs; removed when the plan blacklists nothing.
pub fn plan_blacklist(modules: &[String], current_conf: Option<&str>) -> Vec<FileOp> {
    let op = if modules.is_empty() {
        delete_if_present(
            BLACKLIST_CONF,
            current_conf,
            "the plan blacklists no module",
        )
    } else {
        write_if_changed(
            BLACKLIST_CONF,
            current_conf,
            blacklist_conf(modules),
            &format!("keep off the GPU: {}", modules.join(" ")),
        )
    };
    op.into_iter().collect()
}

/// Module name as modprobe compares it.
fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn etc_modules_comments_parameters_and_dashes() {
        let etc = "# /etc/modules: kernel modules to load at boot time.\n\
                   #vfio\n\
                   vfio-pci ids=10de:1eb8 # our T4\n\
                   \n  vfio_iommu_type1\n";
        let want = list("vfio vfio_iommu_type1 vfio_pci");
        assert_eq!(not_in_etc_modules(Some(etc), &want), list("vfio"));
        assert!(!listed_in_etc_modules(Some(etc), &want));
        assert!(listed_in_etc_modules(Some(&format!("{etc}vfio\n")), &want));
        assert_eq!(not_in_etc_modules(None, &list("vfio vfio")), list("vfio"));
    }

    #[test]
    fn files_are_whole_and_deduplicated() {
        assert_eq!(
            modules_load_conf(&list("vfio vfio_pci vfio-pci vfio")),
            format!(
                "{}vfio\nvfio_pci\n",
                owned_header("vfio modules for vGPU and PCI passthrough")
            )
        );
        assert_eq!(
            blacklist_conf(&list("nouveau nouveau nvidiafb")),
            format!(
                "{}blacklist nouveau\noptions nouveau modeset=0\nblacklist nvidiafb\n",
                owned_header("keep these modules off the NVIDIA GPUs")
            )
        );
    }
}

//! udev rules that hand the passthrough GPUs to vfio-pci.
//!
//! Each device of a passthrough GPU's IOMMU group (the GPU, its audio, USB
//! and UCSI functions) gets `driver_override=vfio-pci` when the kernel adds
//! it, so no host driver claims it and vfio-pci (loaded through
//! `modules-load.d`) binds it instead. The bash installer appended these
//! lines on every run without de-duplication (seed §4.6, §15.5); here the
//! file is ours, written in full, sorted, one line per device.
//!
//! The caller decides which addresses belong here. It should leave out
//! PCI bridges that share the group (class `0x0604`): vfio-pci does not bind
//! bridges, and the override would only detach them from `pcieport`.

use super::{EditError, FileOp, delete_if_present, owned_header, write_if_changed};

/// The rules file we own.
pub const UDEV_RULES: &str = "etc/udev/rules.d/90-vgpu-bake-vfio.rules";

/// Content of [`UDEV_RULES`] for these PCI addresses (`0000:02:00.1`, or
/// `02:00.1` for domain 0; any case): one rule per device, sorted, without
/// repeats.
pub fn udev_rules(addresses: &[String]) -> Result<String, EditError> {
    let mut normal = addresses
        .iter()
        .map(|a| normalize_pci_address(a))
        .collect::<Result<Vec<_>, _>>()?;
    normal.sort_unstable();
    normal.dedup();
    let mut out = owned_header("PCI devices passed through to VMs, bound to vfio-pci");
    for addr in normal {
        out.push_str(&format!(
            "ACTION==\"add\", SUBSYSTEM==\"pci\", KERNELS==\"{addr}\", ATTR{{driver_override}}=\"vfio-pci\"\n"
        ));
    }
    Ok(out)
}

/// Operations for the rules file: written when it differs, removed when no
/// device is to be passed through. A non-empty result means the initramfs
/// must be rebuilt (udev rules are copied into it).
pub fn plan_passthrough(
    addresses: &[String],
    current: Option<&str>,
) -> Result<Vec<FileOp>, EditError> {
    let op = if addresses.is_empty() {
        delete_if_present(UDEV_RULES, current, "no device is passed through")
    } else {
        let content = udev_rules(addresses)?;
        let count = content.lines().filter(|l| !l.starts_with('#')).count();
        write_if_changed(
            UDEV_RULES,
            current,
            content,
            &format!(
                "bind {count} PCI device(s) of the passthrough GPUs' IOMMU groups to vfio-pci"
            ),
        )
    };
    Ok(op.into_iter().collect())
}

/// `0000:02:00.1` form of a PCI address: four hex digits of domain, two of
/// bus, two of device (at most `1f`), one function digit (`0`-`7`), lower
/// case. `02:00.1` means domain `0000`.
pub fn normalize_pci_address(address: &str) -> Result<String, EditError> {
    let bad = || EditError::PciAddress(address.to_owned());
    let lower = address.trim().to_ascii_lowercase();
    let full = if lower.len() == 7 {
        format!("0000:{lower}")
    } else {
        lower
    };
    let bytes = full.as_bytes();
    let hex = |range: std::ops::Range<usize>| bytes[range].iter().all(u8::is_ascii_hexdigit);
    let shape = bytes.len() == 12
        && bytes[4] == b':'
        && bytes[7] == b':'
        && bytes[10] == b'.'
        && hex(0..4)
        && hex(5..7)
        && hex(8..10)
        && (b'0'..=b'7').contains(&bytes[11]);
    if !shape || u8::from_str_radix(&full[8..10], 16).map_err(|_| bad())? > 0x1f {
        return Err(bad());
    }
    Ok(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalized_or_refused() {
        assert_eq!(normalize_pci_address("02:00.1").unwrap(), "0000:02:00.1");
        assert_eq!(
            normalize_pci_address("0000:AF:1F.7").unwrap(),
            "0000:af:1f.7"
        );
        for bad in [
            "",
            "2:00.1",
            "0000:02:20.0",
            "0000:02:00.8",
            "0000:02:00.1\"",
            "x000:02:00.1",
        ] {
            assert_eq!(
                normalize_pci_address(bad),
                Err(EditError::PciAddress(bad.to_owned()))
            );
        }
    }
}

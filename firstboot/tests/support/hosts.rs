//! The fixture hosts and the compatibility rows the tests classify with.

use std::path::{Path, PathBuf};

use vgpu_firstboot::facts::{Facts, read_facts};
use vgpu_plan::compat::{CompatEntry, CompatTable, Support};

/// Every tree `tests/hosts/generate.sh` writes.
pub const HOSTS: [&str; 5] = [
    "debian-plain",
    "pve8-grub",
    "pve9-zfs-sdboot",
    "pve8-two-gpus",
    "vm-no-iommu",
];

pub fn host(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/hosts")
        .join(name)
}

pub fn facts(name: &str) -> Facts {
    read_facts(&host(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The builder's rows for the cards in the fixtures (`gpu_info.db` with
/// the NVIDIA-sourced corrections).
pub fn table() -> CompatTable {
    let row = |device: &str, name: &str, chip: &str, support, majors: &[u32]| CompatEntry {
        device: device.into(),
        name: name.into(),
        chip: chip.into(),
        support,
        majors: majors.to_vec(),
        correction: None,
    };
    CompatTable {
        schema: 1,
        source: "test rows".into(),
        gpus: vec![
            row(
                "1e07",
                "NVIDIA GeForce RTX 2080 Ti",
                "TU102",
                Support::Unlock,
                &[17, 16],
            ),
            CompatEntry {
                correction: Some("NVIDIA lists the T4 for vGPU 18 to 20".into()),
                ..row(
                    "1eb8",
                    "NVIDIA Tesla T4",
                    "TU104",
                    Support::Native,
                    &[20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7],
                )
            },
            row("2204", "NVIDIA GeForce RTX 3090", "GA102", Support::No, &[]),
        ],
    }
}

//! The host's identifiers, as the index matches them: MAC addresses of the
//! network interfaces (`sys/class/net/*/address`, not `lo`, not all
//! zeros), the DMI serial and the system UUID (`sys/class/dmi/id/`),
//! normalised, firmware placeholders dropped.

use std::fs;
use std::path::Path;

use vgpu_bake::rollout::index::{
    HostIds, is_placeholder_serial, is_placeholder_uuid, normalize_mac, normalize_uuid,
};

/// Reads the identifiers under `root`; a missing file is no identifier.
pub fn host_ids(root: &Path) -> HostIds {
    let sys = root.join("sys/class");
    let mut macs = Vec::new();
    if let Ok(dir) = fs::read_dir(sys.join("net")) {
        for e in dir.flatten() {
            if e.file_name() == "lo" {
                continue;
            }
            if let Some(m) = small_text(&e.path().join("address")).and_then(|t| normalize_mac(&t))
                && m != "00:00:00:00:00:00"
            {
                macs.push(m);
            }
        }
    }
    macs.sort();
    macs.dedup();
    let serial = small_text(&sys.join("dmi/id/product_serial"))
        .map(|s| s.trim().to_owned())
        .filter(|s| !is_placeholder_serial(s));
    let uuid = small_text(&sys.join("dmi/id/product_uuid"))
        .and_then(|u| normalize_uuid(&u))
        .filter(|u| !is_placeholder_uuid(u));
    HostIds { macs, serial, uuid }
}

/// A sysfs attribute: short text, or `None`.
fn small_text(path: &Path) -> Option<String> {
    let bytes = fs::read(path).ok()?;
    (bytes.len() <= 4096)
        .then(|| String::from_utf8(bytes).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_normalises() {
        let root = tempfile::tempdir().unwrap();
        let put = |rel: &str, text: &str| {
            let p = root.path().join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        };
        put("sys/class/net/lo/address", "00:00:00:00:00:00\n");
        put("sys/class/net/eno1/address", "52:54:00:AB:CD:EF\n");
        put("sys/class/net/tun0/address", "00:00:00:00:00:00\n");
        put("sys/class/net/eno2/address", "52:54:00:ab:cd:01\n");
        put(
            "sys/class/dmi/id/product_serial",
            "To Be Filled By O.E.M.\n",
        );
        put(
            "sys/class/dmi/id/product_uuid",
            "4C4C4544-0042-3510-8052-B4C04F384E32\n",
        );
        let ids = host_ids(root.path());
        assert_eq!(ids.macs, ["52:54:00:ab:cd:01", "52:54:00:ab:cd:ef"]);
        assert_eq!(ids.serial, None);
        assert_eq!(
            ids.uuid.as_deref(),
            Some("4c4c4544-0042-3510-8052-b4c04f384e32")
        );
        put("sys/class/dmi/id/product_serial", " CZ1234 \n");
        put(
            "sys/class/dmi/id/product_uuid",
            "00000000-0000-0000-0000-000000000000",
        );
        let ids = host_ids(root.path());
        assert_eq!(ids.serial.as_deref(), Some("CZ1234"));
        assert_eq!(ids.uuid, None);
    }
}

//! `data/drivers.toml` against the installer's own data
//! (`data/upstream/drivers.csv`): no release, filename or checksum lost or
//! changed except the documented fixes.

use std::collections::BTreeMap;
use std::path::Path;

use vgpu_bake::registry::Registry;

/// RFC 4180 rows as header -> value maps.
fn read_csv(path: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut records = vgpu_bake::csv::parse(&text)
        .unwrap()
        .into_iter()
        .map(|r| r.fields);
    let header = records.next().unwrap();
    records
        .map(|r| {
            assert_eq!(r.len(), header.len(), "ragged row {r:?}");
            header.iter().cloned().zip(r).collect()
        })
        .collect()
}

fn upstream() -> Vec<BTreeMap<String, String>> {
    read_csv(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/upstream/drivers.csv"))
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

#[test]
fn registry_matches_upstream_csv() {
    let reg = Registry::builtin();
    let rows = upstream();
    assert_eq!(rows.len(), 33, "upstream lists 33 releases");
    for row in &rows {
        let name = &row["vgpu_release"];
        let r = reg
            .get(name)
            .unwrap_or_else(|| panic!("release {name} lost"));
        assert_eq!(&r.version, &row["host_driver_version"], "{name}");
        if r.filename != row["run_filename"] {
            // Only the documented 19.3 typo may differ, and the fix says so.
            assert_eq!(name, "19.3");
            assert!(
                r.fixed.iter().any(|f| f.contains(&row["run_filename"])),
                "{name}"
            );
        }
        assert_eq!(
            r.md5.clone().unwrap_or_default(),
            row["md5_v175"],
            "{name} md5"
        );
        assert_eq!(
            r.url.clone().unwrap_or_default(),
            row["url_v175"],
            "{name} url"
        );
        assert_eq!(&r.note, &row["note_v184"], "{name} note");
        assert_eq!(
            r.patch.clone().unwrap_or_default(),
            row["unlock_patch_file"],
            "{name} patch"
        );
        assert_eq!(
            r.args_native,
            words(&row["install_args_native_v184"]),
            "{name}"
        );
        assert_eq!(
            r.args_unlock.clone().unwrap_or_default(),
            words(&row["install_args_unlock_v184"])
        );
        assert_eq!(
            r.args_unknown,
            words(&row["install_args_unknown_v184"]),
            "{name}"
        );
        if !row["unlock_patch_file_v175"].is_empty()
            && row["unlock_patch_file_v175"] != row["unlock_patch_file"]
        {
            assert!(
                r.fixed
                    .iter()
                    .any(|f| f.contains(&row["unlock_patch_file_v175"])),
                "{name}"
            );
        }
    }
    // Nothing invented: every non-demo release is upstream's.
    let upstream_names: Vec<&str> = rows.iter().map(|r| r["vgpu_release"].as_str()).collect();
    for r in reg.releases.iter().filter(|r| !r.demo) {
        assert!(
            upstream_names.contains(&r.release.as_str()),
            "{} is not upstream",
            r.release
        );
    }
    // Same order as the installer's menu (newest first), demo last.
    let ours: Vec<&str> = reg
        .releases
        .iter()
        .filter(|r| !r.demo)
        .map(|r| r.release.as_str())
        .collect();
    assert_eq!(ours, upstream_names);
    assert_eq!(
        reg.releases
            .iter()
            .filter(|r| r.md5.is_some() && !r.demo)
            .count(),
        24
    );
}

#[test]
fn patch_map_matches_upstream() {
    let reg = Registry::builtin();
    let rows = read_csv(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/upstream/driver_patches.csv"),
    );
    assert_eq!(rows.len(), 15);
    for row in rows {
        let r = reg.get(&row["vgpu_release"]).unwrap();
        assert_eq!(r.patch.as_deref(), Some(row["patch_file"].as_str()));
        assert_eq!(r.filename, row["host_run_filename"]);
    }
    let with_patch = reg
        .releases
        .iter()
        .filter(|r| r.patch.is_some() && !r.demo)
        .count();
    assert_eq!(with_patch, 15);
}

//! A plan with the "not baked yet" values older resolved plans carried
//! (`sha256 = ""`, `path = ""`) cannot be read: the agent never sees one.

use std::path::Path;

use vgpu_plan::plan::Plan;

/// A baked plan fixture (`tests/plans/`, written by the builder's tests).
fn baked(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/plans")
        .join(format!("{name}.toml"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `text` with the first line starting with `key = ` under `[table]`
/// replaced by `key = value`.
fn set(text: &str, table: &str, key: &str, value: &str) -> String {
    let mut in_table = false;
    let mut done = false;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with('[') {
                in_table = l == format!("[{table}]") || l == format!("[[{table}]]");
            } else if in_table && !done && l.starts_with(&format!("{key} = ")) {
                done = true;
                return format!("{key} = {value}");
            }
            l.to_string()
        })
        .collect();
    assert!(done, "no {key} in [{table}]");
    lines.join("\n") + "\n"
}

fn refused(text: &str) -> String {
    Plan::from_toml(text).unwrap_err().to_string()
}

#[test]
fn baked_fixtures_read() {
    for name in ["demo", "unlock-demo", "native-pve8", "passthrough"] {
        Plan::from_toml(&baked(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn empty_driver_sha256_is_refused_naming_the_key() {
    let text = set(&baked("demo"), "driver", "sha256", "\"\"");
    let e = refused(&text);
    assert!(e.contains("`sha256` = \"\""), "{e}");
    assert!(e.contains("never baked"), "{e}");
    assert!(e.contains("vgpu-bake bake"), "{e}");
    assert!(e.contains("`driver.sha256`"), "the full key is named: {e}");
}

#[test]
fn empty_installer_digest_and_path_are_refused() {
    let e = refused(&set(&baked("demo"), "driver.installer", "sha256", "\"\""));
    assert!(
        e.contains("`sha256` = \"\"") && e.contains("never baked"),
        "{e}"
    );
    let e = refused(&set(&baked("demo"), "driver.installer", "path", "\"\""));
    assert!(
        e.contains("payload `path` = \"\"") && e.contains("never baked"),
        "{e}"
    );
}

#[test]
fn unbaked_patch_library_and_debs_are_refused() {
    let unlock = baked("unlock-demo");
    let e = refused(&set(&unlock, "driver.patch", "sha256", "\"\""));
    assert!(e.contains("`sha256` = \"\""), "{e}");
    let e = refused(&set(&unlock, "unlock.library", "sha256", "\"\""));
    assert!(e.contains("`sha256` = \"\""), "{e}");
    let e = refused(&set(&baked("demo"), "host.offline-debs", "sha256", "\"\""));
    assert!(e.contains("`sha256` = \"\""), "{e}");
}

#[test]
fn malformed_digests_are_refused() {
    let e = refused(&set(&baked("demo"), "driver", "md5", "\"\""));
    assert!(e.contains("`md5` = \"\""), "{e}");
    let upper = "\"".to_string() + &"AB".repeat(32) + "\"";
    let e = refused(&set(&baked("demo"), "driver", "sha256", &upper));
    assert!(e.contains("not 64 lower-case hex digits"), "{e}");
}

/// `driver.md5` is there only when one was declared and verified at bake
/// (issue 14): a plan without it reads and stays without it; one with it
/// (every older plan) still reads.
#[test]
fn the_driver_md5_is_optional() {
    let with = Plan::from_toml(&baked("demo")).unwrap();
    let md5 = with.driver.as_ref().unwrap().md5.clone();
    assert!(md5.is_some(), "the demo's registry md5 is recorded");
    let text: String = baked("demo")
        .lines()
        .filter(|l| !l.starts_with("md5 = "))
        .map(|l| format!("{l}\n"))
        .collect();
    let without = Plan::from_toml(&text).unwrap();
    let driver = without.driver.as_ref().unwrap();
    assert_eq!(driver.md5, None);
    assert_eq!(driver.sha256, with.driver.as_ref().unwrap().sha256);
    let written = without.to_toml();
    assert!(!written.contains("md5"), "{written}");
    assert_eq!(Plan::from_toml(&written).unwrap(), without);
}

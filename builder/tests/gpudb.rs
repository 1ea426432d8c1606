//! GPU database: builtin data, corrections, upstream files, reproducible
//! build and the `gpus` report.

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use vgpu_bake::gpudb::{
    GpuDb, GpuDbError, UPSTREAM_SCHEMA, build_db_from_csv, gpus_report, parse_device_id,
};
use vgpu_plan::compat::{CompatTable, Support};

const A100_SOURCE: &str =
    "https://docs.nvidia.com/ai-enterprise/release-6/latest/appendix/vgpu.html";

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(name)
}

fn builtin() -> GpuDb {
    GpuDb::builtin().expect("builtin database")
}

/// Writes an upstream-format database with `rows` (vendorid, deviceid,
/// description, vgpu, driver, chip).
fn upstream_db(path: &Path, rows: &[[&str; 6]]) {
    let conn = Connection::open(path).expect("create test db");
    conn.execute_batch(UPSTREAM_SCHEMA).expect("schema");
    for r in rows {
        conn.execute("INSERT INTO gpu_info VALUES (?1, ?2, ?3, ?4, ?5, ?6)", r)
            .expect("insert");
    }
}

#[test]
fn builtin_has_upstream_rows_and_counts() {
    let db = builtin();
    assert_eq!(db.len(), 1087);
    let table = db.compat_table();
    let (mut native, mut yes, mut no) = (0, 0, 0);
    for e in &table.gpus {
        let c = db.classify(&e.device).unwrap().expect("row exists");
        match c.db_word.as_str() {
            "Native" => native += 1,
            "Yes" => yes += 1,
            "No" => no += 1,
            other => panic!("unexpected db word {other:?}"),
        }
    }
    assert_eq!((native, yes, no), (69, 523, 495));
}

#[test]
fn a100_pcie_40gb_is_corrected_to_native() {
    let c = builtin()
        .classify("10de:20f1")
        .unwrap()
        .expect("20f1 known");
    assert_eq!(c.device, "20f1");
    assert_eq!(c.name, "NVIDIA A100-PCIE-40GB");
    assert_eq!(c.chip, "GA100");
    assert_eq!(c.db_word, "No");
    assert_eq!(c.db_support, Some(Support::No));
    assert!(c.db_majors.is_empty());
    assert_eq!(c.support, Support::Native);
    assert_eq!(c.majors, vec![20, 19, 18]);
    let fix = c.correction.expect("corrected");
    assert_eq!(
        fix.reason,
        "NVIDIA lists 10de:20f1 for vGPU 20, 19, 18; the database says No and its driver list lacks 20;19;18"
    );
    assert!(
        fix.sources.iter().any(|s| s == A100_SOURCE),
        "{:?}",
        fix.sources
    );
}

#[test]
fn stale_driver_list_gets_the_union_newest_first() {
    let c = builtin().classify("20B5").unwrap().expect("20b5 known");
    assert_eq!(c.db_support, Some(Support::Native));
    assert_eq!(c.db_majors, vec![15, 14, 13]);
    assert_eq!(c.majors, vec![20, 19, 18, 15, 14, 13]);
    let fix = c.correction.expect("corrected");
    assert!(
        fix.reason
            .ends_with("; the database driver list lacks 20;19;18"),
        "{}",
        fix.reason
    );
}

#[test]
fn plain_unlock_and_no_cards_are_uncorrected() {
    let db = builtin();
    let turing = db.classify("10DE:1E07").unwrap().expect("1e07 known");
    assert_eq!(turing.support, Support::Unlock);
    assert_eq!(turing.db_support, Some(Support::Unlock));
    assert_eq!(turing.majors, vec![17, 16]);
    assert_eq!(turing.correction, None);
    let pascal = db.classify(" 1b06 ").unwrap().expect("1b06 known");
    assert_eq!(pascal.name, "NVIDIA GeForce GTX 1080 Ti");
    assert_eq!(pascal.support, Support::Unlock);
    assert_eq!(pascal.correction, None);
    let kepler = db.classify("0fc0").unwrap().expect("0fc0 known");
    assert_eq!(kepler.support, Support::No);
    assert!(kepler.majors.is_empty());
    assert_eq!(kepler.correction, None);
}

#[test]
fn unknown_and_malformed_ids() {
    let db = builtin();
    assert_eq!(db.classify("10de:ffff").unwrap(), None);
    for bad in [
        "",
        "1e0",
        "1e0g",
        "10de1e07",
        "10de:1e07:00",
        "10de:",
        "nvidia:1e07",
    ] {
        let e = db.classify(bad).unwrap_err();
        assert!(matches!(e, GpuDbError::BadId { .. }), "{bad:?}: {e:?}");
        assert!(e.to_string().contains("10de:1eb8"), "{e}");
    }
    let e = db.classify("8086:1e07").unwrap_err();
    assert!(matches!(e, GpuDbError::NotNvidia { .. }), "{e:?}");
    assert!(
        e.to_string().contains("8086") && e.to_string().contains("10de:1eb8"),
        "{e}"
    );
    assert_eq!(parse_device_id("10DE:1EB8").unwrap(), "1eb8");
}

#[test]
fn corrections_apply_to_an_opened_upstream_db() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpu_info.db");
    upstream_db(
        &path,
        &[
            ["10de", "20f1", "NVIDIA A100-PCIE-40GB", "No", "", "GA100"],
            [
                "10de",
                "1E07",
                "NVIDIA GeForce RTX 2080 Ti",
                "Yes",
                "17;16",
                "TU102",
            ],
            [
                "10de",
                "20b5",
                "A100 80GB",
                "Native",
                "20;19;18;15",
                "GA100",
            ],
            ["10de", "2235", "A40", "Maybe", "", "GA102"],
            ["10de", "1b06", "GTX 1080 Ti", "", "16", "GP102"],
        ],
    );
    let db = GpuDb::open(&path).expect("opens");
    assert_eq!(db.len(), 5);
    let a100 = db.classify("20f1").unwrap().expect("known");
    assert_eq!(a100.support, Support::Native);
    assert!(
        a100.correction
            .expect("corrected")
            .sources
            .contains(&A100_SOURCE.to_string())
    );
    assert_eq!(
        db.classify("1e07").unwrap().expect("known").support,
        Support::Unlock
    );
    // Already agrees with NVIDIA: nothing to correct.
    let fixed = db.classify("20b5").unwrap().expect("known");
    assert_eq!(fixed.correction, None);
    assert_eq!(fixed.majors, vec![20, 19, 18, 15]);
    // Unknown word: reported, counted as No...
    let odd = db.classify("1b06").unwrap().expect("known");
    assert_eq!((odd.db_support, odd.support), (None, Support::No));
    assert_eq!((odd.db_word.as_str(), odd.correction), ("", None));
    // ...unless a correction says otherwise.
    let a40 = db.classify("2235").unwrap().expect("known");
    assert_eq!((a40.db_support, a40.support), (None, Support::Native));
    let reason = a40.correction.expect("corrected").reason;
    assert!(reason.contains("the database says \"Maybe\""), "{reason}");
    let table = db.compat_table();
    assert!(
        table.source.contains(&path.display().to_string()),
        "{}",
        table.source
    );
    assert_eq!(
        table.gpus.iter().filter(|e| e.correction.is_some()).count(),
        2
    );
}

#[test]
fn opening_the_committed_file_matches_builtin() {
    let from_file = GpuDb::open(&data("gpu_info.db")).expect("opens");
    let builtin = builtin();
    assert_eq!(from_file.compat_table().gpus, builtin.compat_table().gpus);
    assert!(builtin.source().contains("builtin"), "{}", builtin.source());
}

#[test]
fn open_reads_a_wal_mode_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.db");
    upstream_db(&path, &[["10de", "20f1", "A100", "No", "", "GA100"]]);
    let conn = Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(conn);
    let db = GpuDb::open(&path).expect("opens a WAL-mode file");
    assert_eq!(
        db.classify("20f1").unwrap().expect("known").support,
        Support::Native
    );

    // Changes still in the -wal file are not silently ignored.
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA wal_autocheckpoint = 0; INSERT INTO gpu_info VALUES ('10de', '1e07', 'x', 'Yes', '', 'TU102');")
        .unwrap();
    let e = GpuDb::open(&path).unwrap_err();
    assert!(matches!(e, GpuDbError::PendingWal { .. }), "{e:?}");
    assert!(e.to_string().contains("wal.db has pending changes"), "{e}");
    drop(conn);
}

#[test]
fn open_errors_name_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.db");
    let e = GpuDb::open(&missing).unwrap_err();
    assert!(matches!(e, GpuDbError::Missing { .. }), "{e:?}");
    assert!(
        e.to_string().contains("nope.db") && e.to_string().contains("--gpu-db"),
        "{e}"
    );

    let csv = dir.path().join("gpu_info.csv");
    std::fs::copy(data("gpu_info.csv"), &csv).unwrap();
    let e = GpuDb::open(&csv).unwrap_err();
    assert!(matches!(e, GpuDbError::NotSqlite { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("gpu_info.csv is not an SQLite database"),
        "{e}"
    );

    let empty = dir.path().join("other.db");
    Connection::open(&empty)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let e = GpuDb::open(&empty).unwrap_err();
    assert!(matches!(e, GpuDbError::NoTable { .. }), "{e:?}");
    assert!(
        e.to_string().contains("other.db has no gpu_info table"),
        "{e}"
    );

    let cols = dir.path().join("cols.db");
    Connection::open(&cols)
        .unwrap()
        .execute_batch("CREATE TABLE gpu_info (vendorid TEXT, deviceid TEXT, description TEXT)")
        .unwrap();
    let e = GpuDb::open(&cols).unwrap_err();
    assert!(
        e.to_string().contains("vgpu, driver, chip") && e.to_string().contains("cols.db"),
        "{e}"
    );

    let vendor = dir.path().join("vendor.db");
    upstream_db(&vendor, &[["8086", "1234", "Intel", "No", "", "x"]]);
    let e = GpuDb::open(&vendor).unwrap_err();
    assert!(matches!(e, GpuDbError::BadRow { .. }), "{e:?}");
    assert!(
        e.to_string().contains("vendor.db") && e.to_string().contains("8086"),
        "{e}"
    );

    let driver = dir.path().join("driver.db");
    upstream_db(&driver, &[["10de", "1234", "x", "Yes", "17;x", "x"]]);
    let e = GpuDb::open(&driver).unwrap_err();
    assert!(e.to_string().contains("driver column"), "{e}");
}

#[test]
fn build_reproduces_the_committed_db() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gpu_info.db");
    build_db_from_csv(&data("gpu_info.csv"), &out).expect("builds");
    let built = std::fs::read(&out).unwrap();
    let committed = std::fs::read(data("gpu_info.db")).unwrap();
    assert!(
        built == committed,
        "data/gpu_info.db differs from a rebuild of data/gpu_info.csv: run data/build-gpu-db.sh and commit"
    );
    // Rebuilding over an existing file gives the same bytes and leaves no
    // temporary file behind.
    build_db_from_csv(&data("gpu_info.csv"), &out).expect("rebuilds");
    assert_eq!(std::fs::read(&out).unwrap(), committed);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let conn = Connection::open(&out).unwrap();
    let sql: String = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'gpu_info'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(sql, UPSTREAM_SCHEMA);
    let page_size: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    assert_eq!(page_size, 4096);
}

#[test]
fn build_handles_quoting_and_reports_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("in.csv");
    std::fs::write(
        &csv,
        "vendorid,deviceid,description,vgpu,driver,chip\r\n10de,1e07,\"RTX, \"\"2080\"\" Ti\",Yes,\"17;16\",TU102\r\n",
    )
    .unwrap();
    let out = dir.path().join("out.db");
    build_db_from_csv(&csv, &out).expect("builds");
    let c = GpuDb::open(&out)
        .unwrap()
        .classify("1e07")
        .unwrap()
        .expect("known");
    assert_eq!(c.name, "RTX, \"2080\" Ti");
    assert_eq!(c.majors, vec![17, 16]);

    std::fs::write(
        &csv,
        "vendorid,deviceid,description,vgpu,driver,chip\n10de,1e07,x\n",
    )
    .unwrap();
    let e = build_db_from_csv(&csv, &out).unwrap_err();
    assert!(e.to_string().contains("in.csv line 2"), "{e}");
    std::fs::write(&csv, "a,b\n").unwrap();
    let e = build_db_from_csv(&csv, &out).unwrap_err();
    assert!(e.to_string().contains("expected vendorid,deviceid"), "{e}");
}

#[test]
fn compat_table_has_every_row_sorted_with_corrections_marked() {
    let table = builtin().compat_table();
    assert_eq!(table.gpus.len(), 1087);
    assert!(
        table.gpus.windows(2).all(|w| w[0].device < w[1].device),
        "not sorted"
    );
    let corrected: Vec<_> = table
        .gpus
        .iter()
        .filter(|e| e.correction.is_some())
        .collect();
    assert_eq!(corrected.len(), 46);
    assert!(corrected.iter().all(|e| e.support == Support::Native));
    assert!(
        corrected.iter().all(|e| e
            .correction
            .as_deref()
            .is_some_and(|c| c.contains("https://docs.nvidia.com/"))),
        "every correction names its source"
    );
    let count = |s| table.gpus.iter().filter(|e| e.support == s).count();
    assert_eq!(
        (
            count(Support::Native),
            count(Support::Unlock),
            count(Support::No)
        ),
        (84, 523, 480)
    );
    assert_eq!(
        table.lookup("20F1").map(|e| e.support),
        Some(Support::Native)
    );
    assert!(
        table.source.contains("corrections sha256:"),
        "{}",
        table.source
    );
    let text = toml::to_string(&table).expect("serialises");
    let back: CompatTable = toml::from_str(&text).expect("parses back");
    assert_eq!(back, table);
}

#[test]
fn gpus_report_explains_corrections() {
    let db = builtin();
    let ids = vec![
        "10de:20f1".to_string(),
        "10de:ffff".to_string(),
        "1E07".to_string(),
    ];
    let text = gpus_report(&db, &ids, false).expect("report");
    for needle in [
        "10de:20f1  NVIDIA A100-PCIE-40GB",
        "chip:      GA100",
        "support:   native vGPU",
        "said No: not usable for vGPU, passthrough only; majors none listed",
        "NVIDIA lists 10de:20f1 for vGPU 20, 19, 18; the database says No",
        A100_SOURCE,
        "10de:ffff  not in the database",
        "vgpu_unlock consumer card",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(gpus_report(&db, &["zz".to_string()], false).is_err());

    let json: serde_json::Value =
        serde_json::from_str(&gpus_report(&db, &ids, true).unwrap()).expect("valid JSON");
    assert_eq!(json["schema"], vgpu_bake::gpudb::JSON_SCHEMA);
    assert_eq!(json["gpus"][0]["id"], "10de:20f1");
    assert_eq!(json["gpus"][0]["classification"]["support"], "native");
    assert_eq!(json["gpus"][0]["classification"]["db-word"], "No");
    assert_eq!(json["gpus"][1]["in-database"], false);
    assert_eq!(json["gpus"][2]["classification"]["support"], "unlock");

    let summary = gpus_report(&db, &[], false).unwrap();
    assert!(summary.contains("rows:         1087"), "{summary}");
    assert!(summary.contains("corrections:  46"), "{summary}");
    let json: serde_json::Value =
        serde_json::from_str(&gpus_report(&db, &[], true).unwrap()).unwrap();
    assert_eq!(json["schema"], vgpu_bake::gpudb::JSON_SCHEMA);
    assert_eq!(json["rows"], 1087);
    assert_eq!(json["support"]["native"], 84);
    assert_eq!(json["corrections"], 46);
}

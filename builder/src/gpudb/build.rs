//! Builds `data/gpu_info.db` from `data/gpu_info.csv`, reproducibly.

use std::path::Path;

use rusqlite::{Connection, MAIN_DB};

use super::GpuDbError;
use crate::csv;

/// The upstream `CREATE TABLE` statement, verbatim (as stored in
/// `sqlite_master.sql` of proxmox-vgpu-installer's `gpu_info.db`).
pub const UPSTREAM_SCHEMA: &str = "CREATE TABLE gpu_info (
    vendorid TEXT,
    deviceid TEXT PRIMARY KEY,
    description TEXT,
    vgpu TEXT,
    driver TEXT,
    chip TEXT
)";

/// The CSV header `build_db_from_csv` expects: the table's columns, in order.
const HEADER: [&str; 6] = super::COLUMNS;

/// Builds an upstream-format SQLite database at `out` from the CSV export
/// `csv` (header `vendorid,deviceid,description,vgpu,driver,chip`).
///
/// Rows are inserted in file order into an in-memory database (page size
/// 4096, UTF-8); the header's change counters are then fixed to 1 so the
/// same CSV always gives the same bytes, which are written atomically
/// (temp file in the same directory, then rename).
pub fn build_db_from_csv(csv: &Path, out: &Path) -> Result<(), GpuDbError> {
    let text = std::fs::read_to_string(csv).map_err(|source| GpuDbError::Read {
        path: csv.to_path_buf(),
        source,
    })?;
    let bytes = build_bytes(&csv.display().to_string(), &text)?;
    crate::atomic::write(out, &bytes, 0o644).map_err(|source| GpuDbError::Write {
        path: out.to_path_buf(),
        source,
    })
}

/// The database bytes for CSV `text` (`label` names it in errors).
fn build_bytes(label: &str, text: &str) -> Result<Vec<u8>, GpuDbError> {
    let bad = |line: usize, reason: String| GpuDbError::Csv {
        file: label.to_string(),
        line,
        reason,
    };
    let (header, records) = csv::parse_with_header(text).map_err(|e| bad(e.line, e.reason))?;
    if header.fields != HEADER {
        return Err(bad(
            header.line,
            format!(
                "the header is {:?}, expected {}",
                header.fields.join(","),
                HEADER.join(",")
            ),
        ));
    }
    let sql = |source| GpuDbError::Build {
        file: label.to_string(),
        source,
    };
    let mut conn = Connection::open_in_memory().map_err(sql)?;
    conn.execute_batch(
        "PRAGMA page_size = 4096; PRAGMA encoding = 'UTF-8'; PRAGMA secure_delete = ON;",
    )
    .map_err(sql)?;
    conn.execute_batch(UPSTREAM_SCHEMA).map_err(sql)?;
    let tx = conn.transaction().map_err(sql)?;
    {
        let mut insert = tx
            .prepare("INSERT INTO gpu_info VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .map_err(sql)?;
        for rec in records {
            if rec.fields.len() != HEADER.len() {
                return Err(bad(
                    rec.line,
                    format!("{} fields, expected {}", rec.fields.len(), HEADER.len()),
                ));
            }
            insert
                .execute(rusqlite::params_from_iter(&rec.fields))
                .map_err(|e| bad(rec.line, format!("cannot insert the row: {e}")))?;
        }
    }
    tx.commit().map_err(sql)?;
    let mut bytes = conn.serialize(MAIN_DB).map_err(sql)?.to_vec();
    normalise_header(&mut bytes);
    Ok(bytes)
}

/// Fills in the header fields an in-memory database leaves at 0 as a
/// file-backed write of one transaction would: file change counter (24)
/// and version-valid-for (92) = 1, so the in-header page count is valid,
/// and the writing SQLite's version number (96), which Cargo.lock pins.
/// Every other header field depends only on the content.
fn normalise_header(bytes: &mut [u8]) {
    if bytes.len() >= 100 {
        bytes[24..28].copy_from_slice(&1u32.to_be_bytes());
        bytes[92..96].copy_from_slice(&1u32.to_be_bytes());
        let version = u32::try_from(rusqlite::version_number()).unwrap_or(0);
        bytes[96..100].copy_from_slice(&version.to_be_bytes());
    }
}

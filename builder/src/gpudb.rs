//! The GPU compatibility database: proxmox-vgpu-installer's `gpu_info.db`
//! (builtin copy or a file given with `--gpu-db`) plus the NVIDIA-sourced
//! corrections in `data/gpu_info_corrections.csv`.
//!
//! Classification = database row + correction: a corrected row's support
//! becomes the correction's `suggested_vgpu` and its majors the union of
//! the database's `driver` list and NVIDIA's majors, newest first.

mod build;
mod corrections;

mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, MAIN_DB};
use serde::Serialize;
use vgpu_plan::compat::{CompatEntry, CompatTable, SCHEMA, Support};

pub use build::{UPSTREAM_SCHEMA, build_db_from_csv};
pub use report::{JSON_SCHEMA, gpus_report};

use corrections::{CorrectionRow, Corrections};

/// The committed database, built by `data/build-gpu-db.sh`.
const BUILTIN_DB: &[u8] = include_bytes!("../../data/gpu_info.db");
/// The committed corrections.
const BUILTIN_CORRECTIONS: &str = include_str!("../../data/gpu_info_corrections.csv");
/// How the builtin database is named in messages and `source`.
const BUILTIN_DB_LABEL: &str = "builtin data/gpu_info.db";
const BUILTIN_CORRECTIONS_LABEL: &str = "builtin data/gpu_info_corrections.csv";

/// Columns every `gpu_info` table must have.
pub(crate) const COLUMNS: [&str; 6] = [
    "vendorid",
    "deviceid",
    "description",
    "vgpu",
    "driver",
    "chip",
];

/// Errors; each names the file or id involved and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum GpuDbError {
    /// `--gpu-db` names a file that does not exist.
    #[error(
        "GPU database {path} does not exist: pass an existing gpu_info.db (from proxmox-vgpu-installer) to --gpu-db, or leave --gpu-db out to use the builtin copy"
    )]
    Missing { path: PathBuf },
    /// A file could not be read.
    #[error("cannot read {path}: {source}; check the path and its permissions")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not an SQLite database.
    #[error(
        "{path} is not an SQLite database (no \"SQLite format 3\" header): --gpu-db needs proxmox-vgpu-installer's gpu_info.db itself, not a CSV export or a download error page"
    )]
    NotSqlite { path: PathBuf },
    /// A WAL-mode database with changes not yet in the main file.
    #[error(
        "GPU database {path} has pending changes in its -wal file: run sqlite3 on it with 'PRAGMA wal_checkpoint(TRUNCATE);' (or pass a copy made with sqlite3's .backup) and retry"
    )]
    PendingWal { path: PathBuf },
    /// SQLite failed while reading a database.
    #[error(
        "cannot read GPU database {db}: {source}; use a complete, uncorrupted copy of proxmox-vgpu-installer's gpu_info.db"
    )]
    Sqlite {
        db: String,
        #[source]
        source: rusqlite::Error,
    },
    /// The database has no `gpu_info` table.
    #[error(
        "GPU database {db} has no gpu_info table: use proxmox-vgpu-installer's gpu_info.db (for the builtin copy, rebuild it with data/build-gpu-db.sh)"
    )]
    NoTable { db: String },
    /// The `gpu_info` table lacks columns.
    #[error(
        "the gpu_info table in {db} lacks the column(s) {}: it needs vendorid, deviceid, description, vgpu, driver and chip; use proxmox-vgpu-installer's gpu_info.db", missing.join(", ")
    )]
    MissingColumns { db: String, missing: Vec<String> },
    /// A row of the database is unusable.
    #[error("GPU database {db}, row for deviceid {device:?}: {reason}; fix or remove that row")]
    BadRow {
        db: String,
        device: String,
        reason: String,
    },
    /// A malformed GPU id given by the user.
    #[error("{id:?} is not a GPU id: {reason}; expected the form 10de:1eb8 (or just 1eb8)")]
    BadId { id: String, reason: String },
    /// A GPU id with a vendor other than NVIDIA.
    #[error(
        "{id:?} has vendor {vendor}, not NVIDIA: only NVIDIA GPUs can be used for vGPU; expected the form 10de:1eb8"
    )]
    NotNvidia { id: String, vendor: String },
    /// The corrections file is malformed.
    #[error("corrections file {file} line {line}: {reason}; fix that line")]
    Corrections {
        file: String,
        line: usize,
        reason: String,
    },
    /// The CSV given to `build_db_from_csv` is malformed.
    #[error("{file} line {line}: {reason}; fix that line and rebuild")]
    Csv {
        file: String,
        line: usize,
        reason: String,
    },
    /// SQLite failed while building a database.
    #[error("building a GPU database from {file}: {source}")]
    Build {
        file: String,
        #[source]
        source: rusqlite::Error,
    },
    /// The built database could not be written.
    #[error(
        "writing GPU database {path}: {source}; check that its directory exists and is writable"
    )]
    Write {
        path: PathBuf,
        #[source]
        source: crate::atomic::AtomicError,
    },
    /// Rendering JSON failed (should not happen).
    #[error("rendering the GPU report as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// One database row, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DbRow {
    name: String,
    chip: String,
    word: String,
    majors: Vec<u32>,
}

/// The database (read fully into memory) and the corrections.
#[derive(Debug, Clone)]
pub struct GpuDb {
    db_label: String,
    db_sha256: String,
    rows: BTreeMap<String, DbRow>,
    corrections: Corrections,
}

/// What the database and the corrections say about one device id (its
/// JSON keys, in `gpus --json`, are kebab-case).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Classification {
    /// 4 lower-case hex digits.
    pub device: String,
    /// Marketing name (`description` column).
    pub name: String,
    /// GPU die (`chip` column).
    pub chip: String,
    /// The database's verdict; `None` if its word is not Native/Yes/No.
    pub db_support: Option<Support>,
    /// The `vgpu` column, verbatim.
    pub db_word: String,
    /// The `driver` column, parsed, in database order.
    pub db_majors: Vec<u32>,
    /// Support after corrections (an unknown database word counts as No).
    pub support: Support,
    /// Majors after corrections, newest first.
    pub majors: Vec<u32>,
    /// Set when a correction changed the support or the majors.
    pub correction: Option<Correction>,
}

/// Why a row differs from the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Correction {
    /// What NVIDIA says and what the database lacked.
    pub reason: String,
    /// NVIDIA pages behind it.
    pub sources: Vec<String>,
}

impl GpuDb {
    /// The committed `data/gpu_info.db` and corrections, embedded in the
    /// binary (no files needed at run time).
    pub fn builtin() -> Result<GpuDb, GpuDbError> {
        let sqlite = |source| GpuDbError::Sqlite {
            db: BUILTIN_DB_LABEL.into(),
            source,
        };
        let mut conn = Connection::open_in_memory().map_err(sqlite)?;
        conn.deserialize_bytes(MAIN_DB, BUILTIN_DB)
            .map_err(sqlite)?;
        Self::from_connection(
            &conn,
            BUILTIN_DB_LABEL,
            crate::hash::digest_bytes(BUILTIN_DB).sha256,
        )
    }

    /// Reads an upstream-format database file (e.g. proxmox-vgpu-installer's
    /// `gpu_info.db`) without modifying it; the builtin corrections apply.
    pub fn open(path: &Path) -> Result<GpuDb, GpuDbError> {
        let mut bytes = std::fs::read(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => GpuDbError::Missing {
                path: path.to_path_buf(),
            },
            _ => GpuDbError::Read {
                path: path.to_path_buf(),
                source,
            },
        })?;
        if !bytes.starts_with(b"SQLite format 3\0") {
            return Err(GpuDbError::NotSqlite {
                path: path.to_path_buf(),
            });
        }
        let sha256 = crate::hash::digest_bytes(&bytes).sha256;
        let label = path.display().to_string();
        // A WAL-mode file: the in-memory copy cannot use a WAL, so read it as
        // a rollback-journal file, which is exact once nothing is pending.
        if bytes.get(18..20).is_some_and(|v| v.contains(&2)) {
            let mut wal = path.as_os_str().to_owned();
            wal.push("-wal");
            if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
                return Err(GpuDbError::PendingWal {
                    path: path.to_path_buf(),
                });
            }
            bytes[18..20].copy_from_slice(&[1, 1]);
        }
        let sqlite = |source| GpuDbError::Sqlite {
            db: label.clone(),
            source,
        };
        // Read from our in-memory copy: the hash in `source` is then the
        // hash of exactly the bytes classified, and the file is never locked
        // or written.
        let mut conn = Connection::open_in_memory().map_err(sqlite)?;
        conn.deserialize_read_exact(MAIN_DB, bytes.as_slice(), bytes.len(), true)
            .map_err(sqlite)?;
        Self::from_connection(&conn, &label, sha256)
    }

    /// Reads every row of `gpu_info` and attaches the builtin corrections.
    fn from_connection(conn: &Connection, label: &str, sha256: String) -> Result<Self, GpuDbError> {
        let rows = read_rows(conn, label)?;
        let corrections = Corrections::parse(BUILTIN_CORRECTIONS_LABEL, BUILTIN_CORRECTIONS)?;
        Ok(GpuDb {
            db_label: label.to_string(),
            db_sha256: sha256,
            rows,
            corrections,
        })
    }

    /// Classifies `id` ("10de:XXXX" or "XXXX", any case); `None` if the
    /// database does not know it.
    pub fn classify(&self, id: &str) -> Result<Option<Classification>, GpuDbError> {
        let device = parse_device_id(id)?;
        Ok(self
            .rows
            .get(&device)
            .map(|row| self.classify_row(&device, row)))
    }

    /// Every row, corrections applied, sorted by device id.
    pub fn compat_table(&self) -> CompatTable {
        let gpus = self
            .classifications()
            .map(|c| CompatEntry {
                correction: c
                    .correction
                    .map(|k| format!("{} (sources: {})", k.reason, k.sources.join(" "))),
                device: c.device,
                name: c.name,
                chip: c.chip,
                support: c.support,
                majors: c.majors,
            })
            .collect();
        CompatTable {
            schema: SCHEMA,
            source: self.source(),
            gpus,
        }
    }

    /// Number of rows in the database.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the database has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Names the database (SHA-256 and "builtin" or its path) and the
    /// corrections file.
    pub fn source(&self) -> String {
        format!(
            "gpu_info.db sha256:{} ({}); corrections sha256:{} ({}, {} rows)",
            self.db_sha256,
            self.db_label,
            self.corrections.sha256,
            self.corrections.label,
            self.corrections.rows.len()
        )
    }

    /// Every row classified, sorted by device id.
    fn classifications(&self) -> impl Iterator<Item = Classification> + '_ {
        self.rows.iter().map(|(d, row)| self.classify_row(d, row))
    }

    fn classify_row(&self, device: &str, row: &DbRow) -> Classification {
        let db_support = Support::from_db_word(&row.word);
        let mut c = Classification {
            device: device.to_string(),
            name: row.name.clone(),
            chip: row.chip.clone(),
            db_support,
            db_word: row.word.clone(),
            db_majors: row.majors.clone(),
            support: db_support.unwrap_or(Support::No),
            majors: newest_first(row.majors.iter().copied()),
            correction: None,
        };
        if let Some(fix) = self.corrections.rows.get(device) {
            apply(&mut c, fix);
        }
        c
    }
}

/// Applies a correction row; records a [`Correction`] only if it changes
/// the support or adds majors.
fn apply(c: &mut Classification, fix: &CorrectionRow) {
    let missing: Vec<u32> = fix
        .nvidia_majors
        .iter()
        .copied()
        .filter(|m| !c.db_majors.contains(m))
        .collect();
    let support_changes = c.db_support != Some(fix.suggested);
    if !support_changes && missing.is_empty() {
        return;
    }
    let mut what = Vec::new();
    if support_changes {
        what.push(match c.db_support {
            Some(_) => format!("the database says {}", c.db_word),
            None => format!(
                "the database says {:?}, which is not Native, Yes or No",
                c.db_word
            ),
        });
    }
    if !missing.is_empty() {
        let lacks = join(&missing, ";");
        what.push(if support_changes {
            format!("its driver list lacks {lacks}")
        } else {
            format!("the database driver list lacks {lacks}")
        });
    }
    let reason = format!(
        "NVIDIA lists 10de:{} for vGPU {}; {}",
        c.device,
        join(&fix.nvidia_majors, ", "),
        what.join(" and ")
    );
    c.support = fix.suggested;
    c.majors = newest_first(c.db_majors.iter().chain(&fix.nvidia_majors).copied());
    c.correction = Some(Correction {
        reason,
        sources: fix.sources.clone(),
    });
}

/// Sorted newest first, without duplicates.
fn newest_first(majors: impl Iterator<Item = u32>) -> Vec<u32> {
    let mut v: Vec<u32> = majors.collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    v.dedup();
    v
}

fn join(majors: &[u32], sep: &str) -> String {
    majors
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(sep)
}

/// Normalises "10de:XXXX" or "XXXX" (any case) to 4 lower-case hex digits.
pub fn parse_device_id(id: &str) -> Result<String, GpuDbError> {
    let trimmed = id.trim();
    let bad = |reason: &str| GpuDbError::BadId {
        id: id.to_string(),
        reason: reason.to_string(),
    };
    let device = match trimmed.split_once(':') {
        Some((vendor, device)) => {
            if !crate::hash::is_hex(vendor, 4) {
                return Err(bad("the vendor part must be 4 hex digits"));
            }
            if !vendor.eq_ignore_ascii_case("10de") {
                return Err(GpuDbError::NotNvidia {
                    id: id.to_string(),
                    vendor: vendor.to_ascii_lowercase(),
                });
            }
            device
        }
        None => trimmed,
    };
    if !crate::hash::is_hex(device, 4) {
        return Err(bad("the device part must be 4 hex digits"));
    }
    Ok(device.to_ascii_lowercase())
}

/// Parses a `;`-separated list of majors ("17;16", may be empty).
fn parse_majors(text: &str) -> Result<Vec<u32>, String> {
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u32>()
                .map_err(|_| format!("{s:?} in {text:?} is not a vGPU major number"))
        })
        .collect()
}

/// Reads and checks the whole `gpu_info` table.
fn read_rows(conn: &Connection, db: &str) -> Result<BTreeMap<String, DbRow>, GpuDbError> {
    let sqlite = |source| GpuDbError::Sqlite {
        db: db.to_string(),
        source,
    };
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'gpu_info'",
            [],
            |r| r.get(0),
        )
        .map_err(sqlite)?;
    if tables == 0 {
        return Err(GpuDbError::NoTable { db: db.to_string() });
    }
    let mut stmt = conn
        .prepare("SELECT name FROM pragma_table_info('gpu_info')")
        .map_err(sqlite)?;
    let present = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(sqlite)?;
    let missing: Vec<String> = COLUMNS
        .iter()
        .filter(|c| !present.iter().any(|p| p.eq_ignore_ascii_case(c)))
        .map(|c| c.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(GpuDbError::MissingColumns {
            db: db.to_string(),
            missing,
        });
    }
    let mut stmt = conn
        .prepare("SELECT vendorid, deviceid, description, vgpu, driver, chip FROM gpu_info")
        .map_err(sqlite)?;
    let mut cursor = stmt.query([]).map_err(sqlite)?;
    let mut rows = BTreeMap::new();
    while let Some(r) = cursor.next().map_err(sqlite)? {
        let mut cols = Vec::with_capacity(COLUMNS.len());
        for i in 0..COLUMNS.len() {
            cols.push(text(r.get_ref(i).map_err(sqlite)?));
        }
        let raw_device = cols[1].clone().unwrap_or_default();
        let bad = |reason: String| GpuDbError::BadRow {
            db: db.to_string(),
            device: raw_device.clone(),
            reason,
        };
        let cols = cols
            .into_iter()
            .zip(COLUMNS)
            .map(|(v, name)| {
                v.ok_or_else(|| bad(format!("column {name} holds a blob or invalid UTF-8")))
            })
            .collect::<Result<Vec<String>, _>>()?;
        if !cols[0].eq_ignore_ascii_case("10de") {
            return Err(bad(format!("vendorid {:?} is not 10de (NVIDIA)", cols[0])));
        }
        let device =
            parse_device_id(&cols[1]).map_err(|_| bad("deviceid is not 4 hex digits".into()))?;
        let majors = parse_majors(&cols[4]).map_err(|e| bad(format!("driver column: {e}")))?;
        let row = DbRow {
            name: cols[2].clone(),
            chip: cols[5].clone(),
            word: cols[3].clone(),
            majors,
        };
        if rows.insert(device, row).is_some() {
            return Err(bad("the deviceid appears twice".into()));
        }
    }
    Ok(rows)
}

/// A column value as text (NULL is empty); `None` for blobs or bad UTF-8.
fn text(v: ValueRef<'_>) -> Option<String> {
    match v {
        ValueRef::Null => Some(String::new()),
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(t) => std::str::from_utf8(t).ok().map(String::from),
        ValueRef::Blob(_) => None,
    }
}

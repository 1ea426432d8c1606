//! The GPU compatibility table baked next to the plan.
//!
//! The builder writes the corrected database (upstream `gpu_info.db` plus
//! NVIDIA-sourced corrections) into the bundle so the agent classifies the
//! GPUs it finds with exactly the data the plan was resolved with.

use serde::{Deserialize, Serialize};

/// Current table format version.
pub const SCHEMA: u32 = 1;

/// What a card can do for vGPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Support {
    /// An official NVIDIA vGPU card (the database's `Native`).
    Native,
    /// A consumer or workstation card usable through vgpu_unlock (the
    /// database's `Yes`).
    Unlock,
    /// Not usable for vGPU (the database's `No`); passthrough still works.
    No,
}

impl Support {
    /// The word the upstream database uses.
    pub fn db_word(self) -> &'static str {
        match self {
            Support::Native => "Native",
            Support::Unlock => "Yes",
            Support::No => "No",
        }
    }

    /// Parses the upstream database's word.
    pub fn from_db_word(word: &str) -> Option<Self> {
        match word {
            "Native" => Some(Support::Native),
            "Yes" => Some(Support::Unlock),
            "No" => Some(Support::No),
            _ => None,
        }
    }
}

impl std::fmt::Display for Support {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Support::Native => "native",
            Support::Unlock => "unlock",
            Support::No => "no",
        })
    }
}

/// The whole table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CompatTable {
    /// Format version, [`SCHEMA`].
    pub schema: u32,
    /// Where the data came from (database file hash, corrections file).
    pub source: String,
    /// One row per NVIDIA device id, sorted by id.
    #[serde(default, rename = "gpu")]
    pub gpus: Vec<CompatEntry>,
}

/// One device id, corrections applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CompatEntry {
    /// 4 lower-case hex digits (vendor is always 10de).
    pub device: String,
    /// Marketing name.
    pub name: String,
    /// GPU die, e.g. `TU104`.
    pub chip: String,
    /// Support after corrections.
    pub support: Support,
    /// vGPU major releases believed to work, newest first.
    #[serde(default)]
    pub majors: Vec<u32>,
    /// Why the row differs from the upstream database, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correction: Option<String>,
}

impl CompatTable {
    /// Looks a device id up (4 hex digits, any case).
    pub fn lookup(&self, device: &str) -> Option<&CompatEntry> {
        let device = device.to_ascii_lowercase();
        self.gpus
            .binary_search_by(|e| e.device.as_str().cmp(device.as_str()))
            .ok()
            .map(|i| &self.gpus[i])
    }
}

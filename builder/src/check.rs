//! `vgpu-bake check`: the agent's host gate ([`vgpu_plan::gate`]) run on
//! facts captured on the targets (`vgpu-firstboot facts --json`), with the
//! builder's full GPU database, so a fleet's profiles can be tested before
//! baking.

use std::path::{Path, PathBuf};

use vgpu_plan::compat::CompatTable;
use vgpu_plan::facts::{Facts, FactsDocument, JSON_SCHEMA};
use vgpu_plan::gate::{self, GateReport, Target};

use crate::resolve::Resolved;

/// A facts file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FactsFileError {
    /// It cannot be read.
    #[error("cannot read the facts file {}: {cause}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// It is not a `facts --json` document.
    #[error(
        "{} is not a `vgpu-firstboot facts --json` document: {cause}; capture it on the target with `vgpu-firstboot facts --json > FILE`",
        path.display()
    )]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: serde_json::Error,
    },
    /// A schema this builder does not know.
    #[error(
        "{} is a facts document of schema {found}; this vgpu-bake reads schema {JSON_SCHEMA}: capture it with a matching vgpu-firstboot",
        path.display()
    )]
    Schema {
        /// The file.
        path: PathBuf,
        /// The document's `schema`.
        found: u32,
    },
}

/// Reads the facts a target's `vgpu-firstboot facts --json` wrote.
pub fn read_facts_file(path: &Path) -> Result<Facts, FactsFileError> {
    let text = std::fs::read_to_string(path).map_err(|cause| FactsFileError::Read {
        path: path.to_path_buf(),
        cause,
    })?;
    let doc: FactsDocument =
        serde_json::from_str(&text).map_err(|cause| FactsFileError::Parse {
            path: path.to_path_buf(),
            cause,
        })?;
    if doc.schema != JSON_SCHEMA {
        return Err(FactsFileError::Schema {
            path: path.to_path_buf(),
            found: doc.schema,
        });
    }
    Ok(doc.facts)
}

/// The gate for the resolved profile `plan` on `facts`, classifying the
/// cards with `table` (the builder's whole database).
pub fn check(plan: &Resolved, facts: &Facts, table: &CompatTable) -> GateReport {
    let target = Target {
        demo: plan.demo,
        proxmox: plan.proxmox,
        codename: &plan.codename,
        mode: plan.mode,
        gpus: &plan.gpus,
    };
    gate::gate(target, facts, table)
}

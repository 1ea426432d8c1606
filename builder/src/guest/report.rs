//! `vgpu-bake guest-drivers`: the catalog as text or JSON.

use std::fmt::Write as _;

use serde::Serialize;

use super::{CATALOG, GuestDriver, GuestError};

/// The JSON document's `schema`; bumped when a key changes meaning.
pub const JSON_SCHEMA: u32 = 1;

/// What a missing URL prints as.
pub const NO_LINK: &str = "no link published";

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Document<'a> {
    schema: u32,
    catalog: String,
    drivers: &'a [&'a GuestDriver],
}

/// The listing of `drivers`: per driver a line `RELEASE OS VERSION FILE`,
/// then its URL (or "no link published") and remarks indented; a count
/// line last. With `json`, one document: `schema`, `catalog`, `drivers`
/// (`url`, `version` and `filename` null without a link).
pub fn report(drivers: &[&GuestDriver], json: bool) -> Result<String, GuestError> {
    let catalog = format!("bash installer {CATALOG} (data/guest_drivers.csv)");
    if json {
        let doc = Document {
            schema: JSON_SCHEMA,
            catalog,
            drivers,
        };
        let text =
            serde_json::to_string_pretty(&doc).map_err(|e| GuestError::Json(e.to_string()))?;
        return Ok(text + "\n");
    }
    let mut out = String::new();
    for d in drivers {
        let _ = writeln!(
            out,
            "{:<6} {:<8} {:<11} {}",
            d.release,
            d.os.as_str(),
            d.version.as_deref().unwrap_or("-"),
            d.filename.as_deref().unwrap_or("-")
        );
        let _ = writeln!(out, "       {}", d.url.as_deref().unwrap_or(NO_LINK));
        if !d.remarks.is_empty() {
            let _ = writeln!(out, "       remarks: {}", d.remarks);
        }
    }
    let missing = drivers.iter().filter(|d| d.url.is_none()).count();
    let _ = writeln!(
        out,
        "{} guest driver(s), {missing} without a link; catalog: {catalog}",
        drivers.len()
    );
    Ok(out)
}

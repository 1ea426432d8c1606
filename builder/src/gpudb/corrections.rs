//! The corrections file (`data/gpu_info_corrections.csv`): NVIDIA-sourced
//! fixes to the upstream database's `vgpu` and `driver` columns.

use std::collections::BTreeMap;

use vgpu_plan::compat::Support;

use super::{GpuDbError, parse_majors};
use crate::csv;

/// Columns the file must have (any order, more are allowed).
const COLUMNS: [&str; 7] = [
    "deviceid",
    "description",
    "db_vgpu",
    "db_driver",
    "nvidia_majors",
    "suggested_vgpu",
    "source_url",
];

/// One correction row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CorrectionRow {
    /// Support NVIDIA's pages justify.
    pub suggested: Support,
    /// Majors in which NVIDIA lists the id, newest first.
    pub nvidia_majors: Vec<u32>,
    /// NVIDIA pages behind `nvidia_majors`.
    pub sources: Vec<String>,
}

/// The parsed file, keyed by 4 lower-case hex digits.
#[derive(Debug, Clone)]
pub(crate) struct Corrections {
    /// Where the file came from, for messages and `source`.
    pub label: String,
    /// SHA-256 of the file's bytes.
    pub sha256: String,
    pub rows: BTreeMap<String, CorrectionRow>,
}

impl Corrections {
    /// Parses the corrections file `text`; `label` names it in errors.
    pub fn parse(label: &str, text: &str) -> Result<Self, GpuDbError> {
        let bad = |line: usize, reason: String| GpuDbError::Corrections {
            file: label.to_string(),
            line,
            reason,
        };
        let (header, records) = csv::parse_with_header(text).map_err(|e| bad(e.line, e.reason))?;
        let mut index = [0usize; COLUMNS.len()];
        for (slot, name) in index.iter_mut().zip(COLUMNS) {
            *slot = header
                .fields
                .iter()
                .position(|f| f == name)
                .ok_or_else(|| bad(header.line, format!("the header lacks the column {name}")))?;
        }
        let [dev, _, _, _, majors, suggested, sources] = index;
        let mut rows = BTreeMap::new();
        for rec in records {
            if rec.fields.len() != header.fields.len() {
                return Err(bad(
                    rec.line,
                    format!(
                        "{} fields, the header has {}",
                        rec.fields.len(),
                        header.fields.len()
                    ),
                ));
            }
            let device = super::parse_device_id(&rec.fields[dev])
                .map_err(|e| bad(rec.line, e.to_string()))?;
            let word = &rec.fields[suggested];
            let suggested = Support::from_db_word(word).ok_or_else(|| {
                bad(
                    rec.line,
                    format!("suggested_vgpu {word:?} is not Native, Yes or No"),
                )
            })?;
            let nvidia_majors = parse_majors(&rec.fields[majors])
                .map_err(|reason| bad(rec.line, format!("nvidia_majors: {reason}")))?;
            let sources: Vec<String> = rec.fields[sources]
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            if sources.is_empty() {
                return Err(bad(
                    rec.line,
                    "source_url is empty: every correction must name the page it comes from".into(),
                ));
            }
            let row = CorrectionRow {
                suggested,
                nvidia_majors,
                sources,
            };
            if rows.insert(device.clone(), row).is_some() {
                return Err(bad(rec.line, format!("device {device} is corrected twice")));
            }
        }
        Ok(Self {
            label: label.to_string(),
            sha256: crate::hash::digest_bytes(text.as_bytes()).sha256,
            rows,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str =
        "deviceid,description,db_vgpu,db_driver,nvidia_majors,suggested_vgpu,source_url\n";

    #[test]
    fn parses_rows_and_sources() {
        let text = format!("{HEAD}20F1,\"A100, 40GB\",No,,20;19;18,Native,https://a;https://b\n");
        let c = Corrections::parse("t.csv", &text).expect("valid");
        let row = &c.rows["20f1"];
        assert_eq!(row.suggested, Support::Native);
        assert_eq!(row.nvidia_majors, vec![20, 19, 18]);
        assert_eq!(row.sources, vec!["https://a", "https://b"]);
    }

    #[test]
    fn rejects_rows_without_source_or_with_bad_words() {
        let e = Corrections::parse("t.csv", &format!("{HEAD}20f1,x,No,,20,Native,\n")).unwrap_err();
        assert!(e.to_string().contains("t.csv line 2"), "{e}");
        assert!(e.to_string().contains("source_url"), "{e}");
        let e = Corrections::parse("t.csv", &format!("{HEAD}20f1,x,No,,20,Maybe,u\n")).unwrap_err();
        assert!(e.to_string().contains("Maybe"), "{e}");
        let e = Corrections::parse("t.csv", "deviceid\n").unwrap_err();
        assert!(e.to_string().contains("description"), "{e}");
    }
}

//! The guest (VM) driver catalog: `data/guest_drivers.csv`, embedded.
//!
//! The file holds four catalogs of the bash installer (see data/README.md);
//! the builder uses the one the installer actually downloads from, the rows
//! whose `effective_in` is [`CATALOG`]. Rows without a URL are kept: they are
//! releases for which no link is published. The file has no checksums, so a
//! fetched guest driver is recorded with the sha256 it had
//! ([`crate::fetch::FetchRequest::record_unpinned`]).

mod fetch;
mod report;

use serde::Serialize;
use thiserror::Error;

pub use self::fetch::{
    FetchedGuest, document as fetch_document, request as fetch_request, summary as fetch_summary,
};
pub use self::report::{JSON_SCHEMA, NO_LINK, report};
use crate::csv;

/// The embedded catalog file.
pub const GUEST_DRIVERS_CSV: &str = include_str!("../../data/guest_drivers.csv");

/// How the embedded file is named in messages.
pub const BUILTIN_LABEL: &str = "data/guest_drivers.csv (builtin)";

/// The `effective_in` value of the rows the builder uses: the catalog the
/// bash installer v1.84 downloads from.
pub const CATALOG: &str = "v1.84";

/// The file's header, verbatim.
pub const HEADER: [&str; 8] = [
    "catalog_source",
    "effective_in",
    "vgpu_release",
    "os",
    "guest_driver_version",
    "filename",
    "url",
    "remarks",
];

/// A guest operating system the catalog has drivers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestOs {
    Linux,
    Windows,
}

impl GuestOs {
    /// Every value, in the catalog's order.
    pub const ALL: [GuestOs; 2] = [GuestOs::Linux, GuestOs::Windows];

    /// The name used in the file, on the command line and in profiles.
    pub fn as_str(self) -> &'static str {
        match self {
            GuestOs::Linux => "linux",
            GuestOs::Windows => "windows",
        }
    }

    /// Parses `linux` or `windows`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|os| os.as_str() == s)
    }
}

/// One catalog entry: a release's driver for one guest OS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct GuestDriver {
    /// vGPU release, e.g. `18.4`.
    pub release: String,
    pub os: GuestOs,
    /// Guest driver version, e.g. `570.172.08`; `None` without a link.
    pub version: Option<String>,
    /// File name (the URL's last component); `None` without a link.
    pub filename: Option<String>,
    /// Download URL; `None`: no link published.
    pub url: Option<String>,
    /// The fact set's notes, verbatim (may be empty).
    pub remarks: String,
}

/// What can go wrong reading the catalog or choosing from it.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum GuestError {
    /// The file is not valid CSV.
    #[error("{label} line {line}: {reason}")]
    Csv {
        label: String,
        line: usize,
        reason: String,
    },
    /// The header is not the expected one.
    #[error("{label}: the header is {found:?}, expected {expected:?}")]
    Header {
        label: String,
        found: String,
        expected: String,
    },
    /// A row breaks a rule of the file.
    #[error("{label} line {line}: {reason}")]
    Row {
        label: String,
        line: usize,
        reason: String,
    },
    /// `--release` names a release the catalog does not have.
    #[error("no guest drivers for vGPU release {release:?}; the catalog has: {known}")]
    UnknownRelease { release: String, known: String },
    /// `--os` is not `linux` or `windows`.
    #[error("unknown guest OS {os:?}: use linux or windows")]
    UnknownOs { os: String },
    /// A single driver was asked for without saying which.
    #[error("{what} needs --release R and --os linux|windows (one driver)")]
    NotOne { what: String },
    /// The release has no link for that OS.
    #[error(
        "vGPU release {release}: no {os} guest driver link is published (catalog {CATALOG}); \
         download it from NVIDIA's licensing portal yourself"
    )]
    NoLink { release: String, os: &'static str },
    /// JSON serialisation failed.
    #[error("writing JSON: {0}")]
    Json(String),
}

/// The usable catalog, in file order (newest release first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    drivers: Vec<GuestDriver>,
}

impl Catalog {
    /// The embedded catalog.
    pub fn builtin() -> Result<Self, GuestError> {
        Self::parse(BUILTIN_LABEL, GUEST_DRIVERS_CSV)
    }

    /// Parses a guest driver file; `label` names it in errors. Keeps the
    /// [`CATALOG`] rows; checks every row's OS, that a row with a URL has a
    /// file name equal to the URL's last component and a version, and that
    /// no (release, OS) appears twice.
    pub fn parse(label: &str, text: &str) -> Result<Self, GuestError> {
        let (header, rows) = csv::parse_with_header(text).map_err(|e| GuestError::Csv {
            label: label.to_owned(),
            line: e.line,
            reason: e.reason,
        })?;
        if header.fields != HEADER {
            return Err(GuestError::Header {
                label: label.to_owned(),
                found: header.fields.join(","),
                expected: HEADER.join(","),
            });
        }
        let mut drivers: Vec<GuestDriver> = Vec::new();
        for row in rows {
            let bad = |reason: String| GuestError::Row {
                label: label.to_owned(),
                line: row.line,
                reason,
            };
            let [_, effective, release, os, version, filename, url, remarks] =
                <[String; 8]>::try_from(row.fields.clone())
                    .map_err(|f| bad(format!("{} fields, expected {}", f.len(), HEADER.len())))?;
            let os = GuestOs::parse(&os)
                .ok_or_else(|| bad(format!("os is {os:?}, expected linux or windows")))?;
            if effective != CATALOG {
                continue;
            }
            if release.is_empty() {
                return Err(bad("vgpu_release is empty".into()));
            }
            let some = |s: String| (!s.is_empty()).then_some(s);
            let (version, filename, url) = (some(version), some(filename), some(url));
            if let Some(u) = &url {
                let last = u.rsplit('/').next().unwrap_or("");
                if filename.as_deref() != Some(last) || version.is_none() {
                    return Err(bad(format!(
                        "url {u:?} needs filename {last:?} and a guest_driver_version"
                    )));
                }
            }
            if drivers.iter().any(|d| d.release == release && d.os == os) {
                return Err(bad(format!(
                    "release {release} {} appears twice in catalog {CATALOG}",
                    os.as_str()
                )));
            }
            drivers.push(GuestDriver {
                release,
                os,
                version,
                filename,
                url,
                remarks,
            });
        }
        Ok(Self { drivers })
    }

    /// Every entry, in file order.
    pub fn drivers(&self) -> &[GuestDriver] {
        &self.drivers
    }

    /// The releases, in file order, each once.
    pub fn releases(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for d in &self.drivers {
            if !out.contains(&d.release.as_str()) {
                out.push(&d.release);
            }
        }
        out
    }

    /// The entries of `release` (any if `None`) for `os` (any if `None`);
    /// an unknown release or OS is an error naming what exists.
    pub fn select(
        &self,
        release: Option<&str>,
        os: Option<&str>,
    ) -> Result<Vec<&GuestDriver>, GuestError> {
        let os = os
            .map(|o| GuestOs::parse(o).ok_or_else(|| GuestError::UnknownOs { os: o.to_owned() }))
            .transpose()?;
        if let Some(r) = release
            && !self.releases().contains(&r)
        {
            return Err(GuestError::UnknownRelease {
                release: r.to_owned(),
                known: self.releases().join(" "),
            });
        }
        Ok(self
            .drivers
            .iter()
            .filter(|d| release.is_none_or(|r| d.release == r))
            .filter(|d| os.is_none_or(|o| d.os == o))
            .collect())
    }

    /// The one entry of `release` for `os`.
    pub fn find(&self, release: &str, os: &str) -> Result<&GuestDriver, GuestError> {
        let found = self.select(Some(release), Some(os))?;
        // Every release has both OSes in the catalog; a file without one is
        // reported as having no link.
        found.first().copied().ok_or_else(|| GuestError::NoLink {
            release: release.to_owned(),
            os: GuestOs::parse(os).map_or("", GuestOs::as_str),
        })
    }
}

impl GuestDriver {
    /// The file name and URL to download, or why there are none.
    pub fn download(&self) -> Result<(&str, &str), GuestError> {
        match (&self.filename, &self.url) {
            (Some(f), Some(u)) => Ok((f, u)),
            _ => Err(GuestError::NoLink {
                release: self.release.clone(),
                os: self.os.as_str(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str =
        "catalog_source,effective_in,vgpu_release,os,guest_driver_version,filename,url,remarks\n";

    #[test]
    fn keeps_the_effective_catalog_and_rows_without_links() {
        let text = format!(
            "{HEAD}a,v1.84,20.1,linux,,,,\"no link\"\n\
             a,v1.84,20.0,windows,1.2,x.exe,https://h/d/x.exe,\n\
             b,v1.75,19.3,linux,9,y.run,https://h/y.run,\n"
        );
        let c = Catalog::parse("t.csv", &text).unwrap();
        assert_eq!(c.releases(), ["20.1", "20.0"]);
        assert_eq!(c.drivers()[0].url, None);
        assert_eq!(c.drivers()[0].remarks, "no link");
        assert_eq!(c.drivers()[1].filename.as_deref(), Some("x.exe"));
        assert_eq!(
            c.find("20.1", "linux").unwrap().download(),
            Err(GuestError::NoLink {
                release: "20.1".into(),
                os: "linux"
            })
        );
        assert_eq!(
            c.find("20.0", "windows").unwrap().download(),
            Ok(("x.exe", "https://h/d/x.exe"))
        );
    }

    #[test]
    fn refuses_bad_rows() {
        let cases = [
            ("a,v1.84,20.0,bsd,1,x,https://h/x,\n", "os is \"bsd\""),
            (
                "a,v1.84,20.0,linux,1,y,https://h/x,\n",
                "needs filename \"x\"",
            ),
            (
                "a,v1.84,20.0,linux,1,x,https://h/x,\na,v1.84,20.0,linux,,,,\n",
                "twice",
            ),
            ("a,v1.84,20.0,linux\n", "4 fields"),
        ];
        for (rows, want) in cases {
            let e = Catalog::parse("t.csv", &format!("{HEAD}{rows}")).unwrap_err();
            assert!(e.to_string().starts_with("t.csv line "), "{e}");
            assert!(e.to_string().contains(want), "{e} / {want}");
        }
        let e = Catalog::parse("t.csv", "a,b\n").unwrap_err();
        assert!(matches!(e, GuestError::Header { .. }), "{e}");
    }

    #[test]
    fn builtin_parses() {
        let c = Catalog::builtin().unwrap();
        assert_eq!(c.drivers().len(), 70);
        assert_eq!(c.drivers().iter().filter(|d| d.url.is_none()).count(), 19);
    }
}

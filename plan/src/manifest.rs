//! `manifest.toml`: sha256, size and mode of every file in a bundle.
//!
//! The builder writes it; `vgpu-bake inspect` and the agent check files
//! against it before using them.

use serde::{Deserialize, Serialize};

/// Current manifest format version.
pub const SCHEMA: u32 = 1;

/// Every regular file of a bundle except the manifest itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Manifest {
    /// Format version, [`SCHEMA`].
    pub schema: u32,
    /// Bundle name (the profile's name).
    pub name: String,
    /// Files sorted by path.
    #[serde(default, rename = "file")]
    pub files: Vec<ManifestFile>,
}

/// One regular file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ManifestFile {
    /// Path relative to the target root, no leading `/`.
    pub path: String,
    /// Lower-case hex sha256 of the content.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits as an octal string, e.g. `"0755"`.
    pub mode: String,
}

/// Error reading a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not valid TOML or not the manifest format.
    #[error("manifest is not valid: {0}")]
    Parse(#[from] toml::de::Error),
    /// A schema this agent does not know.
    #[error("manifest schema {found} is not supported (this build reads schema {SCHEMA})")]
    Schema {
        /// The schema found in the file.
        found: u32,
    },
}

impl Manifest {
    /// Parses and checks the schema version.
    pub fn from_toml(text: &str) -> Result<Self, ManifestError> {
        let m: Manifest = crate::from_toml(text)?;
        if m.schema != SCHEMA {
            return Err(ManifestError::Schema { found: m.schema });
        }
        Ok(m)
    }

    /// Serialises to TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("manifest serialises")
    }

    /// The entry for `path`, if listed.
    pub fn get(&self, path: &str) -> Option<&ManifestFile> {
        self.files.iter().find(|f| f.path == path)
    }
}

/// Formats permission bits the way the manifest stores them.
pub fn mode_string(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_schema_check() {
        let m = Manifest {
            schema: SCHEMA,
            name: "demo".into(),
            files: vec![ManifestFile {
                path: "usr/local/sbin/vgpu-firstboot".into(),
                sha256: "00".repeat(32),
                size: 12,
                mode: mode_string(0o100755),
            }],
        };
        let text = m.to_toml();
        assert!(text.contains("[[file]]"), "{text}");
        assert!(text.contains("mode = \"0755\""), "{text}");
        assert_eq!(Manifest::from_toml(&text).unwrap(), m);
        let bad = text.replace("schema = 1", "schema = 9");
        let err = Manifest::from_toml(&bad).unwrap_err().to_string();
        assert!(err.contains("schema 9 is not supported"), "{err}");
    }
}

//! Writing a hook: the `vgpu-hook` template with a [`HookConfig`] appended.

use std::path::{Path, PathBuf};

use super::config::{ConfigError, HookConfig};

/// Why a hook could not be written; names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The template could not be read.
    #[error("cannot read the hook template {}: {source}; build it with `cargo build --profile hook -p vgpu-hook` or pass --hook-template FILE", path.display())]
    Template {
        /// The template.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No template was found where one is looked for.
    #[error(transparent)]
    NoTemplate(#[from] crate::companion::NotFound),
    /// The configuration is not usable, or the hook would be too big.
    #[error("cannot make the hook {}: {source}; check that its directory exists and is writable", out.display())]
    Config {
        /// The hook being written.
        out: PathBuf,
        /// The cause.
        #[source]
        source: ConfigError,
    },
    /// The hook could not be written.
    #[error("cannot write the hook {}: {source}; check the directory exists and is writable", out.display())]
    Write {
        /// The hook being written.
        out: PathBuf,
        /// The cause.
        #[source]
        source: vgpu_rootfs::atomic::AtomicError,
    },
}

/// The template: `explicit` if given, else the first of the places
/// [`crate::companion`] documents for `exe`.
pub fn find_template(explicit: Option<&Path>, exe: &Path) -> Result<PathBuf, HookError> {
    Ok(crate::companion::Companion::Hook.find(explicit, exe)?)
}

/// Writes `out` (mode 0755, atomically): `template` with `config` appended.
/// Returns the hook's size in bytes.
pub fn write_hook(template: &Path, config: &HookConfig, out: &Path) -> Result<u64, HookError> {
    let bytes = std::fs::read(template).map_err(|source| HookError::Template {
        path: template.to_owned(),
        source,
    })?;
    let hook = config
        .append_to(&bytes)
        .map_err(|source| HookError::Config {
            out: out.to_owned(),
            source,
        })?;
    vgpu_rootfs::atomic::write(out, &hook, 0o755).map_err(|source| HookError::Write {
        out: out.to_owned(),
        source,
    })?;
    Ok(hook.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The small `hook` profile build wins over the release one in a cargo
    /// tree; an installed vgpu-bake's neighbour comes before `../release`.
    #[test]
    fn template_search_order() {
        let tmp = tempfile::tempdir().unwrap();
        let release = tmp.path().join("release");
        let hook = tmp.path().join("hook");
        std::fs::create_dir_all(&release).unwrap();
        std::fs::create_dir_all(&hook).unwrap();
        let exe = release.join("vgpu-bake");
        let err = find_template(None, &exe).unwrap_err().to_string();
        assert!(err.contains("../hook/vgpu-hook"), "{err}");
        assert!(
            err.contains("cargo build --profile hook -p vgpu-hook"),
            "{err}"
        );
        std::fs::write(release.join("vgpu-hook"), b"big").unwrap();
        assert_eq!(
            find_template(None, &exe).unwrap(),
            release.join("vgpu-hook")
        );
        std::fs::write(hook.join("vgpu-hook"), b"small").unwrap();
        assert_eq!(
            find_template(None, &exe).unwrap(),
            release.join("../hook/vgpu-hook")
        );
        let explicit = tmp.path().join("mine");
        assert_eq!(find_template(Some(&explicit), &exe).unwrap(), explicit);
    }
}

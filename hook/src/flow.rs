//! The first-boot flow, in order; see the crate doc.

use std::path::Path;

use vgpu_bake::install::InstallError;
use vgpu_bake::rollout::config::HookConfig;
use vgpu_bake::rollout::index::IndexError;
use vgpu_bake::sign::SignError;
use vgpu_rootfs::Root;

use crate::args::Ordering;
use crate::command::CommandError;
use crate::fetch::{self, FetchError, Place};
use crate::lay::{self, WriteError};
use crate::report;
use crate::systemd::{self, Started};
use crate::{identity, trailer};

/// Why the hook failed; each names what to look at.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The hook's own configuration.
    #[error(transparent)]
    Trailer(#[from] trailer::TrailerError),
    /// The root cannot be used.
    #[error("cannot use the root {root}: {source}")]
    Root {
        /// The root.
        root: String,
        /// The cause.
        #[source]
        source: vgpu_rootfs::Error,
    },
    /// The index has nothing for this host.
    #[error(transparent)]
    Select(#[from] IndexError),
    /// A carried key is not a minisign public key.
    #[error(transparent)]
    Key(#[from] SignError),
    /// The staging directory.
    #[error("cannot make a staging directory in {dir}: {source}")]
    Staging {
        /// Where.
        dir: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No source gave the bundle.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The bundle was refused or could not be laid (nothing was written).
    #[error(transparent)]
    Install(#[from] InstallError),
    /// A key or the marker could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// systemctl failed.
    #[error(
        "{0}; the bundle is laid: start the agent with `systemctl start vgpu-firstboot.service`, or let the hook try again at the next boot"
    )]
    Start(#[from] CommandError),
}

/// Where the staging directory goes, relative to the root.
const STAGING_PARENT: &str = "var/lib/proxmox-first-boot";

/// The staging directory's name starts with this.
const STAGING_PREFIX: &str = ".vgpu-hook-staging-";

/// A run that was cut off (power loss) leaves its staging directory: it
/// holds only a copy of a bundle, so it goes.
fn remove_stale_staging(parent: &Path) {
    let Ok(dir) = std::fs::read_dir(parent) else {
        return;
    };
    for e in dir.flatten() {
        let is_ours = e.file_name().to_string_lossy().starts_with(STAGING_PREFIX);
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if is_ours && is_dir && std::fs::remove_dir_all(e.path()).is_ok() {
            report::note(&format!(
                "removed {}, left by a run that was cut off",
                e.path().display()
            ));
        }
    }
}

/// Reads our configuration and runs [`run`].
pub fn first_boot(ordering: Ordering, root: &Path) -> Result<(), HookError> {
    let config = trailer::read(&trailer::own_exe())?;
    run(&config, ordering, root)
}

/// The flow with a given configuration.
pub fn run(config: &HookConfig, ordering: Ordering, root_dir: &Path) -> Result<(), HookError> {
    let root = Root::at(root_dir).map_err(|source| HookError::Root {
        root: root_dir.display().to_string(),
        source,
    })?;
    let ids = identity::host_ids(root_dir);
    let bundle = config.index.select(&ids)?;
    report::note(&format!(
        "{ordering}: this host is {ids}; its bundle is {} (sha256 {})",
        bundle.name,
        bundle.sha256.as_str()
    ));
    let keys = lay::parse_keys(&config.trusted_keys)?;
    let laid = !lay::already_laid(&root, &bundle.sha256);
    if !laid {
        report::note(&format!(
            "{} says bundle {} is laid already: starting the agent only",
            root.host_path(lay::MARKER).display(),
            bundle.name
        ));
    } else {
        let parent = root_dir.join(STAGING_PARENT);
        let staging_err = |source| HookError::Staging {
            dir: parent.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&parent).map_err(staging_err)?;
        remove_stale_staging(&parent);
        // 0700, removed when dropped (on every path out of this block).
        let staging = tempfile::Builder::new()
            .prefix(STAGING_PREFIX)
            .tempdir_in(&parent)
            .map_err(staging_err)?;
        let place = Place {
            root: root_dir,
            staging: staging.path(),
        };
        let staged = fetch::fetch(&config.sources, bundle, &place)?;
        let written = lay::install(&staged, root_dir, &keys)?;
        let key_files = lay::write_keys(&root, &keys)?;
        lay::write_marker(&root, &bundle.sha256, &bundle.name)?;
        report::note(&format!(
            "laid bundle {}: {} entries under {}{}",
            bundle.name,
            written.len(),
            root_dir.display(),
            if key_files.is_empty() {
                String::new()
            } else {
                format!("; trusted keys {}", key_files.join(", "))
            }
        ));
    }
    let scratch = root_dir.join(STAGING_PARENT);
    match systemd::start_agent(root_dir, &scratch, laid)? {
        Started::Started => report::note(&format!(
            "started {} (not waiting for it: `vgpu-firstboot status` follows it)",
            systemd::UNIT
        )),
        Started::Upgrading => report::note(&format!(
            "the agent had finished an earlier bundle: started `vgpu-firstboot upgrade` in {}.service (not waiting: `vgpu-firstboot status` follows it)",
            systemd::UPGRADE_UNIT
        )),
        Started::AlreadyDone => report::note(&format!(
            "the agent is done already ({} exists): nothing to start",
            root.host_path(vgpu_plan::layout::DONE_MARKER).display()
        )),
    }
    Ok(())
}

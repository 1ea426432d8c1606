//! `run` and `retry` with a `--root` other than `/`: the agent enters the
//! root before it acts, as arch-chroot does, so every command a step runs is
//! the root's program, never one of the machine the agent was started on.
//!
//! [`enter`] moves the agent into a private mount namespace (nothing mounted
//! there is seen outside it, and every mount vanishes with it when its last
//! process exits, even on `kill -9`), mounts the running kernel's `/proc`,
//! `/sys` and `/dev` and an empty `/run` under the root, then chroots into
//! it. A mount point that already holds files is the root's own (a test
//! fixture that simulates the kernel's view) and is used as it is, never
//! mounted over. This machine's `/run` is never mounted: a command inside the
//! root cannot reach this machine's systemd or D-Bus through it.
//!
//! It must run while the process has one thread: the namespace and the
//! chroot belong to the calling thread and are inherited only by threads
//! and processes started after it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, MountPropagationFlags};

/// Why the agent did not enter the root; the message names `--root` and
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// The root cannot be used at all.
    #[error("--root {root}: {why}; give the directory the host's root filesystem is mounted at")]
    Root {
        /// The `--root` argument.
        root: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The agent lacks the privileges to enter the root.
    #[error(
        "--root {root}: `run`, `retry` and `undo` run every command inside the root (a private mount namespace, a chroot), and this process may not set them up ({what}: {err}). Run the agent as root (CAP_SYS_ADMIN, CAP_SYS_CHROOT) or in the installed system; it never runs this machine's commands"
    )]
    Privilege {
        /// The `--root` argument.
        root: PathBuf,
        /// The operation that failed.
        what: String,
        /// The system's answer.
        err: io::Error,
    },
    /// A mount point under the root cannot be used.
    #[error(
        "--root {root}: cannot mount {what} on {path}: {why}; make {path} an empty directory (or remove it), or fill it with the files the agent should read there"
    )]
    MountPoint {
        /// The `--root` argument.
        root: PathBuf,
        /// What was to be mounted.
        what: String,
        /// The mount point.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
}

/// How one of the kernel's directories is provided inside the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A new `proc` mount (of the agent's own PID namespace).
    Proc,
    /// A recursive bind of this machine's directory with its submounts
    /// (`/sys` with efivarfs and cgroups, `/dev` with pts and shm).
    Bind(&'static str),
    /// An empty tmpfs.
    Tmpfs,
}

/// What the root gets, as arch-chroot gives it (`/tmp` stays the root's own
/// directory).
pub const MOUNTS: [(&str, Source); 4] = [
    ("proc", Source::Proc),
    ("sys", Source::Bind("/sys")),
    ("dev", Source::Bind("/dev")),
    ("run", Source::Tmpfs),
];

/// What a mount point under the root is before the agent mounts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Nothing there.
    Missing,
    /// An empty directory.
    EmptyDir,
    /// A directory with files in it.
    FilledDir,
    /// A symlink, a file or anything else that is not a directory.
    NotADir,
}

/// What to do with a mount point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Create the directory, then mount.
    CreateAndMount,
    /// Mount on the empty directory.
    Mount,
    /// The root's own files stand for the kernel's: use them as they are.
    UseAsIs,
    /// Refuse: mounting would follow a symlink or hide a file.
    Refuse,
}

/// The decision for a mount point found as `found`.
pub fn decide(found: Found) -> Action {
    match found {
        Found::Missing => Action::CreateAndMount,
        Found::EmptyDir => Action::Mount,
        Found::FilledDir => Action::UseAsIs,
        Found::NotADir => Action::Refuse,
    }
}

fn canonical(root: &Path) -> Result<PathBuf, ConfineError> {
    let canon = fs::canonicalize(root).map_err(|e| ConfineError::Root {
        root: root.to_path_buf(),
        why: e.to_string(),
    })?;
    if !canon.is_dir() {
        return Err(ConfineError::Root {
            root: root.to_path_buf(),
            why: "not a directory".into(),
        });
    }
    Ok(canon)
}

/// Enters `root` for good (see the module doc) and returns the root to use
/// from then on: `/`. With `root` already `/` it does nothing. A mount point
/// that cannot be used is refused before anything changes. Call it before
/// the process starts a thread.
pub fn enter(root: &Path) -> Result<PathBuf, ConfineError> {
    let canon = canonical(root)?;
    if canon == Path::new("/") {
        return Ok(canon);
    }
    let mut todo = Vec::new();
    for (rel, source) in MOUNTS {
        let path = canon.join(rel);
        match decide(found(&path)) {
            Action::UseAsIs => {}
            Action::Refuse => {
                return Err(ConfineError::MountPoint {
                    root: root.to_path_buf(),
                    what: name(source),
                    path,
                    why: "it is a symlink or not a directory".into(),
                });
            }
            action => todo.push((rel, source, path, action)),
        }
    }
    let refused = |what: &str, err: io::Error| ConfineError::Privilege {
        root: root.to_path_buf(),
        what: what.to_string(),
        err,
    };
    // SAFETY: NEWNS unshares the mount namespace and the filesystem root
    // and cwd (CLONE_FS), not the file descriptor table, so no descriptor
    // becomes unusable; the caller runs this before any thread exists.
    #[allow(unsafe_code)]
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
        .map_err(|e| refused("unshare of the mount namespace", e.into()))?;
    // systemd makes `/` shared: without this, the mounts below would show
    // up on this machine too.
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .map_err(|e| refused("making its mounts private", e.into()))?;
    let mut mounted = Vec::new();
    for (rel, source, path, action) in todo {
        let bad = |e: io::Error| ConfineError::MountPoint {
            root: root.to_path_buf(),
            what: name(source),
            path: path.clone(),
            why: e.to_string(),
        };
        if action == Action::CreateAndMount {
            fs::create_dir(&path).map_err(bad)?;
        }
        mount(source, &path).map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => refused(&format!("mounting {}", name(source)), e),
            _ => bad(e),
        })?;
        mounted.push(format!("/{rel}"));
    }
    std::os::unix::fs::chroot(&canon)
        .and_then(|()| std::env::set_current_dir("/"))
        .map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => refused("chroot", e),
            _ => ConfineError::Root {
                root: root.to_path_buf(),
                why: format!("chroot: {e}"),
            },
        })?;
    let mounted = if mounted.is_empty() {
        "nothing mounted: the root has its own /proc, /sys, /dev and /run".to_string()
    } else {
        format!(
            "mounted {} in a private mount namespace",
            mounted.join(", ")
        )
    };
    errln!(
        "vgpu-firstboot: working inside --root {} (chroot; {mounted}): every command is the root's own",
        canon.display()
    );
    Ok(PathBuf::from("/"))
}

fn name(source: Source) -> String {
    match source {
        Source::Proc => "proc".into(),
        Source::Bind(dir) => format!("this machine's {dir}"),
        Source::Tmpfs => "an empty tmpfs".into(),
    }
}

fn found(path: &Path) -> Found {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Found::Missing,
        Ok(m) if m.is_dir() => match fs::read_dir(path).map(|mut d| d.next().is_none()) {
            Ok(true) => Found::EmptyDir,
            Ok(false) => Found::FilledDir,
            // Unreadable: mounting over it is the safe side of the doubt.
            Err(_) => Found::EmptyDir,
        },
        _ => Found::NotADir,
    }
}

fn mount(source: Source, target: &Path) -> io::Result<()> {
    let quiet = MountFlags::NOSUID | MountFlags::NODEV;
    match source {
        Source::Proc => {
            rustix::mount::mount("proc", target, "proc", quiet | MountFlags::NOEXEC, None)
        }
        Source::Bind(from) => rustix::mount::mount_bind_recursive(from, target),
        Source::Tmpfs => rustix::mount::mount("tmpfs", target, "tmpfs", quiet, c"mode=0755"),
    }
    .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_empty_or_missing_directories_are_mounted_on() {
        assert_eq!(decide(Found::Missing), Action::CreateAndMount);
        assert_eq!(decide(Found::EmptyDir), Action::Mount);
        assert_eq!(decide(Found::FilledDir), Action::UseAsIs);
        assert_eq!(decide(Found::NotADir), Action::Refuse);
    }

    #[test]
    fn what_is_found_under_a_root() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::create_dir(p.join("empty")).unwrap();
        fs::create_dir(p.join("full")).unwrap();
        fs::write(p.join("full/cmdline"), "quiet\n").unwrap();
        fs::write(p.join("file"), "").unwrap();
        std::os::unix::fs::symlink("/sys", p.join("link")).unwrap();
        assert_eq!(found(&p.join("none")), Found::Missing);
        assert_eq!(found(&p.join("empty")), Found::EmptyDir);
        assert_eq!(found(&p.join("full")), Found::FilledDir);
        assert_eq!(found(&p.join("file")), Found::NotADir);
        assert_eq!(found(&p.join("link")), Found::NotADir);
    }

    #[test]
    fn the_host_root_is_recognised_and_a_bad_root_named() {
        // This machine's root: nothing to enter (and nothing is done).
        assert_eq!(enter(Path::new("/.")).unwrap(), Path::new("/"));
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let msg = enter(&missing).unwrap_err().to_string();
        assert!(
            msg.starts_with(&format!("--root {}: ", missing.display())),
            "{msg}"
        );
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        let msg = enter(&file).unwrap_err().to_string();
        assert!(msg.contains("not a directory"), "{msg}");
    }
}

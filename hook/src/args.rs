//! The command line: `vgpu-hook ORDERING [--root DIR]`, or `--help`.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

/// When the installer's unit runs the hook (`argv[1]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ordering {
    /// `proxmox-first-boot-oneshot-before-network.service`.
    BeforeNetwork,
    /// `...-network-online.service`.
    NetworkOnline,
    /// `...-fully-up.service`.
    FullyUp,
}

impl Ordering {
    /// Every ordering, as the installer spells them.
    pub const ALL: [(&'static str, Ordering); 3] = [
        ("before-network", Ordering::BeforeNetwork),
        ("network-online", Ordering::NetworkOnline),
        ("fully-up", Ordering::FullyUp),
    ];
}

impl fmt::Display for Ordering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Self::ALL
            .iter()
            .find(|(_, o)| o == self)
            .map_or("?", |(n, _)| n);
        f.write_str(name)
    }
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Print the usage and what this hook carries.
    Help,
    /// The first-boot flow, every path under `root`.
    Run {
        /// The installer's ordering.
        ordering: Ordering,
        /// `/` on a host; a directory in tests.
        root: PathBuf,
    },
}

/// A command line that cannot be used (exit code 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Parses the arguments after the program name.
pub fn parse(args: &[OsString]) -> Result<Command, UsageError> {
    // `--help` wins wherever it is.
    if args.iter().any(|a| a == "--help" || a == "-h") {
        return Ok(Command::Help);
    }
    let mut ordering = None;
    let mut root = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let text = arg
            .to_str()
            .ok_or_else(|| UsageError(format!("argument {arg:?} is not UTF-8")))?;
        match text {
            "--root" => {
                let dir = it
                    .next()
                    .ok_or_else(|| UsageError("--root needs a directory".into()))?;
                if root.replace(PathBuf::from(dir)).is_some() {
                    return Err(UsageError("--root is given twice".into()));
                }
            }
            _ if text.starts_with('-') => {
                return Err(UsageError(format!("unknown option {text:?}")));
            }
            _ => {
                let Some((_, o)) = Ordering::ALL.iter().find(|(n, _)| *n == text) else {
                    return Err(UsageError(format!(
                        "unknown ordering {text:?}: the installer passes before-network, network-online or fully-up"
                    )));
                };
                if ordering.replace(*o).is_some() {
                    return Err(UsageError("give one ordering".into()));
                }
            }
        }
    }
    let ordering = ordering.ok_or_else(|| {
        UsageError(
            "no ordering: the installer runs the hook as `proxmox-first-boot ORDERING`".into(),
        )
    })?;
    Ok(Command::Run {
        ordering,
        root: root.unwrap_or_else(|| PathBuf::from("/")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, UsageError> {
        parse(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn parses_the_installer_line_and_tests_root() {
        assert_eq!(
            p(&["fully-up"]).unwrap(),
            Command::Run {
                ordering: Ordering::FullyUp,
                root: "/".into()
            }
        );
        assert_eq!(
            p(&["--root", "/tmp/r", "network-online"]).unwrap(),
            Command::Run {
                ordering: Ordering::NetworkOnline,
                root: "/tmp/r".into()
            }
        );
        assert_eq!(p(&["x", "--help"]).unwrap(), Command::Help);
        assert!(p(&[]).unwrap_err().0.contains("no ordering"));
        assert!(p(&["later"]).unwrap_err().0.contains("unknown ordering"));
        assert!(p(&["fully-up", "--root"]).is_err());
        assert!(p(&["fully-up", "--frob"]).is_err());
        assert!(p(&["fully-up", "fully-up"]).is_err());
    }
}

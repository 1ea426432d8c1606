//! Command-line parsing, by hand: clap costs more of the 1 MiB budget than
//! the agent's whole parser needs.

use std::path::PathBuf;
use std::time::Duration;

/// Usage text; also the `--help` output.
pub const USAGE: &str = "\
vgpu-firstboot: applies a baked vGPU plan on a Proxmox VE host in two boot
phases with a reboot between, each step recorded in a crash-safe state file
(/var/lib/vgpu-firstboot/state.toml). systemd starts `run` at boot.

Usage: vgpu-firstboot [--root DIR] <command> [options]

Commands (each followed by what it does):
  run
    run the plan's next phase. A fresh run first passes the host gate (Debian
    release of the plan's Proxmox VE major, a Proxmox VE host, every [[gpu]]
    present by id and address, its class fits the mode, vGPU possible; a demo
    plan: the release only), else it refuses with every reason, nothing
    changed (failed, or needs-operator for the firmware's VT-x/IOMMU)
  status [--json] [--wait [--timeout SECS]]
    progress; --wait polls until done, failed or needs an operator, at most
    --timeout (default 600 s)
  plan
    dry run: the host gate's verdict, the bundle check (signature, files,
    would `run` refuse it), then each file, kernel argument, module,
    repository, package and service the plan would change, and why
  facts [--json]
    what the agent sees on this host
  retry [STEP]
    a failed step (default: each) runs again at `run`
  undo [--dry-run]
    revert the agent's changes from its journal, newest first: files restored
    or removed, its packages purged, the driver's own uninstaller, its units
    disabled, the kernel pin put back; then initramfs and boot refreshed, and
    whether to reboot. Safe to repeat; `run` refuses an undone plan.
    --dry-run prints the actions and changes nothing
  licensing
    where the licensing step put the client token and guest scripts, the
    DLS's URL, how a guest uses them
  upgrade
    apply a newer installed bundle over a finished plan (done or failed): the
    old state archived in /var/lib/vgpu-firstboot/history/, the new plan run
    as `run` does (the old driver's uninstaller first; a reboot only if
    needed, phase 2 from the unit); `nothing to upgrade` when it is the
    state's plan

Options:
  --root DIR     the host's root (default /); the agent's reads and writes
                 stay under it
  -h, --help     this text
  -V, --version  the version

With --root DIR other than /, `run`, `retry`, `undo` and `upgrade` enter DIR
as arch-chroot does: in a private mount namespace, this machine's /proc,
/sys, /dev and an empty /run mounted on DIR's (a directory holding files is
used as it is), then chroot. Every command (apt-get, update-grub, the driver
installer, systemctl reboot, ...) is DIR's own, acting on this machine's
kernel; systemctl cannot reach this machine's systemd. Needs root
(CAP_SYS_ADMIN, CAP_SYS_CHROOT), else they refuse and run nothing. The
mounts vanish with the agent. `status`, `plan`, `facts` and `licensing` run
no command.

Exit codes of `status` (JSON `status` in brackets): 0 done, 1 failed, 2 needs
an operator (needs-operator), 3 in progress or not started (in-progress,
not-started), 4 no plan, no state (no-bundle), 5 the installed plan is not
the state's and has not run (new-plan), 6 the state file or plan cannot be
read, the reason says why (state-unreadable); --wait waits only while 3.
Others: 0 success, 1 failure (`run`: a failed step or a host the plan does
not fit; `plan`: no plan; `retry`: no such step; `undo`: a damaged journal,
the agent running or a failed action; `upgrade`: refused or a failed step;
nothing to upgrade is 0), 2 `run` or `upgrade` waits for an operator, 3
`facts` found a fatal obstacle to vGPU, 64 a usage error. A closed stdout or
stderr loses the text, never changes the code.
";

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cli {
    /// `--root`.
    pub root: PathBuf,
    /// The command.
    pub command: Command,
}

/// The commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `run`.
    Run,
    /// `status`.
    Status {
        /// `--json`.
        json: bool,
        /// `--wait` with its timeout.
        wait: Option<Duration>,
    },
    /// `plan`.
    Plan,
    /// `facts`.
    Facts {
        /// `--json`.
        json: bool,
    },
    /// `retry [STEP]`.
    Retry {
        /// The step, or every failed step.
        step: Option<String>,
    },
    /// `undo [--dry-run]`.
    Undo {
        /// `--dry-run`: print the actions, change nothing.
        dry_run: bool,
    },
    /// `licensing`.
    Licensing,
    /// `upgrade`.
    Upgrade,
    /// `--help`.
    Help,
    /// `--version`.
    Version,
}

/// Parses `args` (without the program name). The error is one line for the
/// user; print [`USAGE`] after it.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Cli, String> {
    let mut root = PathBuf::from("/");
    let mut words = Vec::new();
    let mut json = false;
    let mut wait = false;
    let mut dry_run = false;
    let mut timeout: Option<u64> = None;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                return Ok(Cli {
                    root,
                    command: Command::Help,
                });
            }
            "-V" | "--version" => {
                return Ok(Cli {
                    root,
                    command: Command::Version,
                });
            }
            "--json" => json = true,
            "--wait" => wait = true,
            "--dry-run" => dry_run = true,
            "--root" => root = PathBuf::from(it.next().ok_or("--root needs a directory")?),
            "--timeout" => {
                let v = it.next().ok_or("--timeout needs a number of seconds")?;
                timeout = Some(
                    v.parse()
                        .map_err(|_| format!("--timeout {v:?} is not a number of seconds"))?,
                );
            }
            s if s.starts_with("--root=") => root = PathBuf::from(&s[7..]),
            s if s.starts_with("--timeout=") => {
                let v = &s[10..];
                timeout = Some(
                    v.parse()
                        .map_err(|_| format!("--timeout {v:?} is not a number of seconds"))?,
                );
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => words.push(a),
        }
    }
    let mut words = words.into_iter();
    let name = words.next().ok_or("no command given")?;
    let rest: Vec<String> = words.collect();
    let no_args = |cmd: &str| match rest.first() {
        Some(extra) => Err(format!("`{cmd}` takes no argument (got {extra:?})")),
        None => Ok(()),
    };
    let only = |cmd: &str, allowed: &[&str]| {
        for (flag, set) in [
            ("--json", json),
            ("--wait", wait),
            ("--timeout", timeout.is_some()),
            ("--dry-run", dry_run),
        ] {
            if set && !allowed.contains(&flag) {
                return Err(format!("`{cmd}` does not take {flag}"));
            }
        }
        Ok(())
    };
    let command = match name.as_str() {
        "run" => {
            no_args("run")?;
            only("run", &[])?;
            Command::Run
        }
        "status" => {
            no_args("status")?;
            only("status", &["--json", "--wait", "--timeout"])?;
            if timeout.is_some() && !wait {
                return Err("--timeout goes with --wait".into());
            }
            Command::Status {
                json,
                wait: wait.then(|| Duration::from_secs(timeout.unwrap_or(600))),
            }
        }
        "plan" => {
            no_args("plan")?;
            only("plan", &[])?;
            Command::Plan
        }
        "facts" => {
            no_args("facts")?;
            only("facts", &["--json"])?;
            Command::Facts { json }
        }
        "upgrade" => {
            no_args("upgrade")?;
            only("upgrade", &[])?;
            Command::Upgrade
        }
        "retry" => {
            only("retry", &[])?;
            if rest.len() > 1 {
                return Err("`retry` takes at most one step id".into());
            }
            Command::Retry {
                step: rest.into_iter().next(),
            }
        }
        "undo" => {
            no_args("undo")?;
            only("undo", &["--dry-run"])?;
            Command::Undo { dry_run }
        }
        "licensing" => {
            no_args("licensing")?;
            only("licensing", &[])?;
            Command::Licensing
        }
        other => return Err(format!("unknown command {other:?}")),
    };
    Ok(Cli { root, command })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Cli, String> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn commands_and_options() {
        assert_eq!(p(&["run"]).unwrap().command, Command::Run);
        let c = p(&[
            "--root",
            "/mnt",
            "status",
            "--json",
            "--wait",
            "--timeout",
            "5",
        ])
        .unwrap();
        assert_eq!(c.root, PathBuf::from("/mnt"));
        assert_eq!(
            c.command,
            Command::Status {
                json: true,
                wait: Some(Duration::from_secs(5))
            }
        );
        assert_eq!(
            p(&["status", "--wait"]).unwrap().command,
            Command::Status {
                json: false,
                wait: Some(Duration::from_secs(600))
            }
        );
        assert_eq!(
            p(&["retry", "install-driver", "--root=/x"])
                .unwrap()
                .command,
            Command::Retry {
                step: Some("install-driver".into())
            }
        );
        assert_eq!(
            p(&["facts", "--json"]).unwrap().command,
            Command::Facts { json: true }
        );
        assert_eq!(p(&["--help"]).unwrap().command, Command::Help);
        assert_eq!(
            p(&["undo", "--dry-run"]).unwrap().command,
            Command::Undo { dry_run: true }
        );
        assert_eq!(
            p(&["undo"]).unwrap().command,
            Command::Undo { dry_run: false }
        );
        assert_eq!(
            p(&["run", "--dry-run"]).unwrap_err(),
            "`run` does not take --dry-run"
        );
        assert_eq!(
            p(&["--root", "/mnt", "upgrade"]).unwrap().command,
            Command::Upgrade
        );
        assert_eq!(
            p(&["upgrade", "x"]).unwrap_err(),
            "`upgrade` takes no argument (got \"x\")"
        );
    }

    #[test]
    fn usage_errors() {
        assert_eq!(p(&[]).unwrap_err(), "no command given");
        assert_eq!(p(&["frob"]).unwrap_err(), "unknown command \"frob\"");
        assert_eq!(
            p(&["run", "--json"]).unwrap_err(),
            "`run` does not take --json"
        );
        assert_eq!(
            p(&["status", "--timeout", "5"]).unwrap_err(),
            "--timeout goes with --wait"
        );
        assert_eq!(
            p(&["status", "--wait", "--timeout", "x"]).unwrap_err(),
            "--timeout \"x\" is not a number of seconds"
        );
        assert_eq!(p(&["--root"]).unwrap_err(), "--root needs a directory");
        assert_eq!(
            p(&["plan", "extra"]).unwrap_err(),
            "`plan` takes no argument (got \"extra\")"
        );
        assert_eq!(
            p(&["run", "--bogus"]).unwrap_err(),
            "unknown option --bogus"
        );
    }
}

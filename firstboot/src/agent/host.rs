//! The agent's handle on the host: files under a root, commands through a
//! [`Runner`]. Steps touch the host only through this, so the whole flow
//! runs on a temp root with stand-in commands in tests.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::edits::{FileAction, FileOp};
use crate::facts::Facts;
use crate::runner::{CommandOutcome, CommandSpec, Runner, format_failure};
use vgpu_plan::plan::Plan;
use vgpu_rootfs::Root;

/// Why a step failed: one line for `status`, plus the command's details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    /// One line: what failed and what to do.
    pub reason: String,
    /// Exit code of the command that failed, if one did.
    pub exit_code: Option<i32>,
    /// Tail of its stderr.
    pub stderr_tail: String,
}

impl StepError {
    /// A failure that is not a command's.
    pub fn new(reason: impl Into<String>) -> Self {
        StepError {
            reason: reason.into(),
            exit_code: None,
            stderr_tail: String::new(),
        }
    }
}

impl From<vgpu_rootfs::Error> for StepError {
    fn from(e: vgpu_rootfs::Error) -> Self {
        StepError::new(e.to_string())
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// How a step ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// Done; the agent moves on.
    Done,
    /// The reboot step decided a reboot is needed: the agent records it and
    /// reboots.
    Reboot(String),
    /// A person must act first (e.g. enrol a MOK key at the console); the
    /// step runs again at the next boot.
    NeedsOperator(String),
}

/// Files and commands of one host, and what the agent knows about it.
pub struct Host<'a> {
    /// The host's root (`/` on a real host).
    pub root: PathBuf,
    /// Runs host commands.
    pub runner: &'a mut dyn Runner,
    /// The plan being applied.
    pub plan: &'a Plan,
    /// Facts read at the start of this boot.
    pub facts: &'a Facts,
    /// Lines for the journal (the unit sends stderr there and to the console).
    pub log: Vec<String>,
    /// The change journal, read on first use ([`crate::agent::journal`]).
    pub(crate) journal: Option<crate::agent::journal::Journal>,
}

impl<'a> Host<'a> {
    /// A host under `root` with an empty journal.
    pub fn new(root: &Path, runner: &'a mut dyn Runner, plan: &'a Plan, facts: &'a Facts) -> Self {
        Host {
            root: root.to_path_buf(),
            runner,
            plan,
            facts,
            log: Vec::new(),
            journal: None,
        }
    }
}

impl std::fmt::Debug for Host<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// `rel` as a path under `root`; refuses `..` and anything that is not a
/// plain relative path once the leading `/` is dropped.
pub fn under_root(root: &Path, rel: &str) -> Result<PathBuf, StepError> {
    let rel = rel.trim_start_matches('/');
    let ok = !rel.is_empty()
        && Path::new(rel)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if !ok {
        return Err(StepError::new(format!(
            "refusing path {rel:?}: not a plain path under the root"
        )));
    }
    Ok(root.join(rel))
}

impl Host<'_> {
    /// Absolute path of `rel` under the root, for messages and command
    /// arguments. Files are read and written through [`Host::fs`].
    pub fn path(&self, rel: &str) -> Result<PathBuf, StepError> {
        under_root(&self.root, rel)
    }

    /// The root, opened for file access confined to it: no symlink in the
    /// tree leads a read or a write out of it.
    pub fn fs(&self) -> Result<Root, StepError> {
        Ok(Root::at(&self.root)?)
    }

    /// A journal line.
    pub fn note(&mut self, line: impl Into<String>) {
        let line = line.into();
        errln!("vgpu-firstboot: {line}");
        self.log.push(line);
    }

    /// Contents of `rel`, or `None` if it does not exist.
    pub fn read_opt(&self, rel: &str) -> Result<Option<String>, StepError> {
        self.path(rel)?;
        Ok(self.fs()?.read_to_string(rel)?)
    }

    /// Whether `rel` exists (without following a final symlink).
    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).is_ok() && self.fs().is_ok_and(|r| r.exists(rel))
    }

    /// Writes `bytes` to `rel` atomically (temp file in the same directory,
    /// fsync, rename, fsync the directory) with permission bits `mode`,
    /// creating the parent directories. Journaled first.
    pub fn write_atomic(&mut self, rel: &str, bytes: &[u8], mode: u32) -> Result<(), StepError> {
        self.touch(rel)?;
        Ok(self.fs()?.write_atomic(rel, bytes, mode)?)
    }

    /// Removes the file or symlink `rel`; `false` if it was not there.
    /// Journaled first.
    pub fn remove_file(&mut self, rel: &str) -> Result<bool, StepError> {
        self.touch(rel)?;
        Ok(self.fs()?.remove_file(rel)?)
    }

    /// Creates directory `rel` and its missing parents with `mode`.
    /// Journaled first (each directory that was not there).
    pub fn create_dir_all(&mut self, rel: &str, mode: u32) -> Result<(), StepError> {
        self.touch_dir(rel)?;
        Ok(self.fs()?.create_dir_all(rel, mode)?)
    }

    /// Applies file operations, each write atomic ([`Host::write_atomic`]).
    /// Returns whether anything was applied.
    pub fn apply(&mut self, ops: &[FileOp]) -> Result<bool, StepError> {
        for op in ops {
            let path = self.path(&op.path)?;
            match &op.action {
                FileAction::Write { content, mode } => {
                    self.write_atomic(&op.path, content.as_bytes(), *mode)?
                }
                FileAction::Rename { to } => {
                    let to_path = self.path(to)?;
                    self.touch(&op.path)?;
                    self.touch(to)?;
                    self.fs()?.rename(&op.path, to).map_err(|e| {
                        StepError::new(format!(
                            "renaming {} to {}: {}",
                            path.display(),
                            to_path.display(),
                            e.source
                        ))
                    })?;
                }
                FileAction::Delete => {
                    self.remove_file(&op.path)?;
                }
            }
            self.note(format!(
                "{}: {}",
                vgpu_plan::layout::absolute(op.path.trim_start_matches('/')),
                op.why
            ));
        }
        Ok(!ops.is_empty())
    }

    /// Runs a command; a non-zero exit, a timeout or a missing program is a
    /// [`StepError`] carrying the exit code and the stderr tail.
    pub fn run(&mut self, spec: CommandSpec) -> Result<CommandOutcome, StepError> {
        let out = self.run_status(&spec)?;
        if out.success() {
            Ok(out)
        } else {
            Err(StepError {
                reason: format_failure(&spec, &out),
                exit_code: out.exit_code,
                stderr_tail: out.stderr_tail.clone(),
            })
        }
    }

    /// Runs a command and returns its outcome whatever the exit code; only a
    /// command that could not be started is an error.
    pub fn run_status(&mut self, spec: &CommandSpec) -> Result<CommandOutcome, StepError> {
        self.runner.run(spec).map_err(|e| {
            StepError::new(format!(
                "cannot run `{}` ({}): {e}",
                spec.command_line(),
                spec.why
            ))
        })
    }

    /// A command spec with the plan's timeout.
    pub fn command(&self, program: &str, args: &[&str], why: &str) -> CommandSpec {
        CommandSpec::new(program, args.iter().copied())
            .why(why)
            .timeout(Duration::from_secs(self.plan.agent.command_timeout_secs))
            .env("DEBIAN_FRONTEND", "noninteractive")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_under_the_root() {
        let root = Path::new("/r");
        assert_eq!(under_root(root, "/etc/x").unwrap(), Path::new("/r/etc/x"));
        assert!(under_root(root, "../etc").is_err());
        assert!(under_root(root, "etc/../../x").is_err());
        assert!(under_root(root, "").is_err());
    }
}

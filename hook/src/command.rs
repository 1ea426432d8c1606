//! Running a tool from `PATH` with a deadline, its output captured.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A tool that did not do its job; names the command line.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// It could not be started.
    #[error("`{command}` could not be started: {source} (is it installed and on PATH?)")]
    Spawn {
        /// The command line.
        command: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// It exited with an error.
    #[error("`{command}` failed ({status}){}", stderr_part(stderr))]
    Failed {
        /// The command line.
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// What it said.
        stderr: String,
    },
    /// It ran past its deadline and was killed.
    #[error("`{command}` did not finish within {} s and was stopped", .timeout.as_secs())]
    TimedOut {
        /// The command line.
        command: String,
        /// The deadline.
        timeout: Duration,
    },
}

fn stderr_part(stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() {
        String::new()
    } else {
        format!(": {s}")
    }
}

/// What a tool printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// One command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    /// The program, looked up in `PATH`.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.program)?;
        for a in &self.args {
            write!(f, " {a}")?;
        }
        Ok(())
    }
}

impl Tool {
    /// `program args...`.
    pub fn new(program: &str, args: &[&str]) -> Self {
        Self {
            program: program.into(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    /// Runs it with stdin from `/dev/null`; success only on exit code 0
    /// within `timeout`. Its output goes to unnamed temporary files in
    /// `scratch`, a directory under the root (no pipe can fill up and stall
    /// it, and no reader threads are needed).
    pub fn run(&self, timeout: Duration, scratch: &Path) -> Result<Output, CommandError> {
        let spawn_err = |source| CommandError::Spawn {
            command: self.to_string(),
            source,
        };
        let mut out = tempfile::tempfile_in(scratch).map_err(spawn_err)?;
        let mut err = tempfile::tempfile_in(scratch).map_err(spawn_err)?;
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(spawn_err)?)
            .stderr(err.try_clone().map_err(spawn_err)?)
            .spawn()
            .map_err(spawn_err)?;
        let Some(status) = wait(&mut child, timeout) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(CommandError::TimedOut {
                command: self.to_string(),
                timeout,
            });
        };
        let output = Output {
            stdout: read_all(&mut out),
            stderr: read_all(&mut err),
        };
        if status.success() {
            Ok(output)
        } else {
            Err(CommandError::Failed {
                command: self.to_string(),
                status,
                stderr: output.stderr,
            })
        }
    }
}

/// What the tool wrote to `f` (lossy UTF-8).
fn read_all(f: &mut File) -> String {
    let mut bytes = Vec::new();
    let _ = f
        .seek(SeekFrom::Start(0))
        .and_then(|_| f.read_to_end(&mut bytes));
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The exit status, or `None` past the deadline.
fn wait(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

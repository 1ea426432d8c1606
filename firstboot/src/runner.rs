//! Every host command the agent runs goes through [`Runner`].
//!
//! On a host, [`SystemRunner`] runs commands for real: stdin is `/dev/null`
//! (a first-boot unit has no terminal, and a prompt must fail, not hang),
//! output is captured in full but only its tail is kept (installers print
//! megabytes; the cause of a failure is at the end), and every command has a
//! timeout (`Type=oneshot` units have none by default). A command that runs
//! too long is stopped with its whole process group, so a shell script's
//! background children cannot keep the agent waiting.
//!
//! In tests, [`RecordingRunner`] records each [`CommandSpec`] and answers
//! from a script, so the whole two-phase flow runs without touching the host.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, Signal, kill_process_group};

use crate::verbosity::Verbosity;

/// Bytes of stdout and of stderr kept in a [`CommandOutcome`].
pub const TAIL_BYTES: usize = 4096;

/// Used when a [`CommandSpec`] does not set one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// One command to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    /// Program name (looked up in `PATH`) or path.
    pub program: String,
    /// Arguments.
    pub args: Vec<String>,
    /// Variables added to the agent's environment for this command.
    pub env: Vec<(String, String)>,
    /// The command is stopped after this long.
    pub timeout: Duration,
    /// Why the agent runs it, for the journal and error messages.
    pub why: String,
}

impl CommandSpec {
    /// A command with no extra environment, [`DEFAULT_TIMEOUT`] and no reason.
    pub fn new<I, S>(program: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        CommandSpec {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            why: String::new(),
        }
    }

    /// Sets why the command runs.
    pub fn why(mut self, why: impl Into<String>) -> Self {
        self.why = why.into();
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The command line as a shell would need it typed, for messages.
    pub fn command_line(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Quotes `s` for a POSIX shell when it needs quoting.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%^".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// What happened when a command ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// Exit code; `None` when the command was killed (by us or a signal).
    pub exit_code: Option<i32>,
    /// The command was stopped because it ran past its timeout.
    pub timed_out: bool,
    /// The last [`TAIL_BYTES`] of stdout (lossy UTF-8).
    pub stdout_tail: String,
    /// The last [`TAIL_BYTES`] of stderr (lossy UTF-8).
    pub stderr_tail: String,
    /// Wall-clock time from start to exit.
    pub duration: Duration,
}

impl CommandOutcome {
    /// Exited with code 0 in time.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }
}

/// Runs host commands. `Err` means the command could not be run at all
/// (missing program, ...); a command that ran and failed is an `Ok` outcome.
pub trait Runner {
    /// Runs one command to completion or timeout.
    fn run(&mut self, spec: &CommandSpec) -> io::Result<CommandOutcome>;
}

/// One line for the state file and the journal: what ran, why, how it
/// ended, and the last lines of its stderr (or stdout when stderr is empty).
pub fn format_failure(spec: &CommandSpec, outcome: &CommandOutcome) -> String {
    let mut line = format!("`{}`", spec.command_line());
    if !spec.why.is_empty() {
        line.push_str(&format!(" ({})", spec.why));
    }
    let secs = outcome.duration.as_secs_f64();
    match (outcome.timed_out, outcome.exit_code) {
        (true, _) => line.push_str(&format!(
            " timed out after {secs:.1}s (limit {}s) and was killed",
            spec.timeout.as_secs_f64()
        )),
        (false, Some(0)) => line.push_str(&format!(" succeeded after {secs:.1}s")),
        (false, Some(code)) => {
            line.push_str(&format!(" failed with exit code {code} after {secs:.1}s"))
        }
        (false, None) => line.push_str(&format!(" was killed by a signal after {secs:.1}s")),
    }
    let source = if outcome.stderr_tail.trim().is_empty() {
        &outcome.stdout_tail
    } else {
        &outcome.stderr_tail
    };
    let last: Vec<&str> = source
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if !last.is_empty() {
        let shown = last[last.len().saturating_sub(3)..].join(" | ");
        // Keep the line short: the end of the message is what matters.
        let skip = shown.chars().count().saturating_sub(400);
        line.push_str(": ");
        if skip > 0 {
            line.push('…');
        }
        line.extend(shown.chars().skip(skip));
    }
    line
}

/// How often [`SystemRunner`] logs that a command still runs.
pub const HEARTBEAT: Duration = Duration::from_secs(30);

/// Runs commands on the live system.
pub struct SystemRunner {
    log: Box<dyn Write + Send>,
    /// Between SIGTERM and SIGKILL when a command times out.
    pub kill_grace: Duration,
    /// How long to wait for output to end after the command exited (a
    /// daemon it started may hold the pipe open forever).
    pub drain_wait: Duration,
    /// While a command runs, a line every this long says so (the journal
    /// would otherwise stay silent through a long `apt-get` or driver
    /// build): [`HEARTBEAT`] by default.
    pub heartbeat: Duration,
    /// [`Verbosity::Quiet`]: no start and success lines (failures and
    /// heartbeats are always logged); [`Verbosity::Verbose`]: a success
    /// line carries the end of the command's output, as a failure does.
    /// [`crate::verbosity::get`] when the runner is made.
    pub verbosity: Verbosity,
    /// Pipes still open after `drain_wait`, kept open (as the reader
    /// threads did) so the process holding the other end is not killed by
    /// SIGPIPE while the agent runs.
    lingering: Vec<File>,
}

impl std::fmt::Debug for SystemRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemRunner")
            .field("kill_grace", &self.kill_grace)
            .field("drain_wait", &self.drain_wait)
            .field("heartbeat", &self.heartbeat)
            .finish_non_exhaustive()
    }
}

impl Default for SystemRunner {
    /// Logs to stderr, which the unit sends to the journal and the console.
    fn default() -> Self {
        Self::with_log(Box::new(io::stderr()))
    }
}

impl SystemRunner {
    /// A runner that writes one line per command (start and end) to `log`.
    pub fn with_log(log: Box<dyn Write + Send>) -> Self {
        SystemRunner {
            log,
            kill_grace: Duration::from_secs(5),
            drain_wait: Duration::from_secs(2),
            heartbeat: HEARTBEAT,
            verbosity: crate::verbosity::get(),
            lingering: Vec::new(),
        }
    }

    /// A runner that logs nothing.
    pub fn quiet() -> Self {
        Self::with_log(Box::new(io::sink()))
    }

    fn log(&mut self, line: &str) {
        // The journal line is a courtesy; a broken log must not fail a step.
        let _ = writeln!(self.log, "{line}");
    }

    /// SIGTERM the command's process group, then SIGKILL after the grace
    /// period; its output is read meanwhile.
    fn stop(&mut self, child: &mut Child, pipes: &mut [Pipe; 2]) -> io::Result<ExitStatus> {
        let pgid = child.id();
        if !signal_group(Signal::TERM, pgid) {
            let _ = child.kill();
        }
        let deadline = Instant::now() + self.kill_grace;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                // The leader is gone; members may ignore TERM.
                signal_group(Signal::KILL, pgid);
                return Ok(status);
            }
            read_ready(pipes, Duration::from_millis(10));
        }
        signal_group(Signal::KILL, pgid);
        let _ = child.kill();
        child.wait()
    }
}

/// Sends `signal` to process group `pgid` (the child leads its own group);
/// false if the group could not be signalled (already gone, or `pgid` is
/// not a valid process id).
fn signal_group(signal: Signal, pgid: u32) -> bool {
    let Some(pgid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) else {
        return false;
    };
    kill_process_group(pgid, signal).is_ok()
}

/// The last `cap` bytes written to it.
#[derive(Debug, Default)]
struct Tail {
    buf: VecDeque<u8>,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        let bytes = &bytes[bytes.len().saturating_sub(TAIL_BYTES)..];
        let overflow = (self.buf.len() + bytes.len()).saturating_sub(TAIL_BYTES);
        self.buf.drain(..overflow);
        self.buf.extend(bytes);
    }

    fn text(&self) -> String {
        let bytes: Vec<u8> = self.buf.iter().copied().collect();
        // A cut in the middle of a UTF-8 sequence: start at the next char.
        let start = if self.buf.len() == TAIL_BYTES {
            bytes
                .iter()
                .take(3)
                .take_while(|b| (0x80..0xc0).contains(*b))
                .count()
        } else {
            0
        };
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }
}

/// A child's stdout or stderr pipe, read to its end (or until the agent
/// stops waiting for it) with the tail kept. Both pipes are read by the
/// thread that waits for the command, with poll(2): no reader threads
/// (about 10 KB of agent).
#[derive(Debug)]
struct Pipe {
    /// `None` once the pipe ended (or could not be read).
    from: Option<File>,
    tail: Tail,
}

impl Pipe {
    fn new(from: impl Into<OwnedFd>) -> Self {
        Pipe {
            from: Some(File::from(from.into())),
            tail: Tail::default(),
        }
    }
}

/// Waits up to `wait` for output on the pipes still open and reads what
/// came (one read per ready pipe: a pipe's read returns what is there).
fn read_ready(pipes: &mut [Pipe; 2], wait: Duration) {
    let mut ready = [false; 2];
    {
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(2);
        let mut which = Vec::with_capacity(2);
        for (i, pipe) in pipes.iter().enumerate() {
            if let Some(file) = &pipe.from {
                fds.push(PollFd::new(file, PollFlags::IN));
                which.push(i);
            }
        }
        let timeout = Timespec {
            tv_sec: wait.as_secs().try_into().unwrap_or(i64::MAX),
            tv_nsec: wait.subsec_nanos().into(),
        };
        if fds.is_empty() {
            std::thread::sleep(wait);
            return;
        }
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        for (fd, i) in fds.iter().zip(which) {
            ready[i] = !fd.revents().is_empty();
        }
    }
    let mut chunk = [0u8; 8192];
    for (pipe, ready) in pipes.iter_mut().zip(ready) {
        let Some(file) = pipe.from.as_mut().filter(|_| ready) else {
            continue;
        };
        match file.read(&mut chunk) {
            Ok(0) => pipe.from = None,
            Ok(n) => pipe.tail.push(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => pipe.from = None,
        }
    }
}

impl Runner for SystemRunner {
    fn run(&mut self, spec: &CommandSpec) -> io::Result<CommandOutcome> {
        let shown = spec.command_line();
        let normal = self.verbosity >= Verbosity::Normal;
        if normal {
            self.log(&format!("running `{shown}`: {}", spec.why));
        }
        let start = Instant::now();
        let mut child = Command::new(&spec.program)
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout can stop its children too.
            .process_group(0)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run `{shown}`: {e}")))?;
        let mut pipes = [
            Pipe::new(child.stdout.take().expect("stdout is piped")),
            Pipe::new(child.stderr.take().expect("stderr is piped")),
        ];

        let deadline = start + spec.timeout;
        let mut beat = start + self.heartbeat;
        let mut timed_out = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if Instant::now() >= deadline => {
                    timed_out = true;
                    break self.stop(&mut child, &mut pipes);
                }
                Ok(None) => {
                    // The wait loop polls every 10 ms anyway: the heartbeat
                    // is a clock check here, no thread.
                    if Instant::now() >= beat {
                        beat += self.heartbeat;
                        self.log(&format!(
                            "vgpu-firstboot: still running {}: {shown} ({} s so far)",
                            spec.why,
                            start.elapsed().as_secs()
                        ));
                    }
                    read_ready(&mut pipes, Duration::from_millis(10))
                }
                Err(e) => break Err(e),
            }
        }
        .map_err(|e| io::Error::new(e.kind(), format!("waiting for `{shown}`: {e}")))?;
        let duration = start.elapsed();

        // Pipes normally close when the command exits; give the readers a
        // moment, but do not hang on a background process that inherited them.
        let until = Instant::now() + self.drain_wait;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if pipes.iter().all(|p| p.from.is_none()) || left.is_zero() {
                break;
            }
            read_ready(&mut pipes, left);
        }
        let [out, err] = pipes;
        self.lingering.extend(out.from.into_iter().chain(err.from));
        let outcome = CommandOutcome {
            exit_code: if timed_out { None } else { status.code() },
            timed_out,
            stdout_tail: out.tail.text(),
            stderr_tail: err.tail.text(),
            duration,
        };
        if self.verbosity == Verbosity::Verbose || !outcome.success() {
            self.log(&format_failure(spec, &outcome));
        } else if normal {
            self.log(&format!(
                "`{shown}` succeeded in {:.1}s",
                duration.as_secs_f64()
            ));
        }
        Ok(outcome)
    }
}

/// A scripted answer of [`RecordingRunner`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Exit code; `None` as if killed.
    pub exit_code: Option<i32>,
    /// Report a timeout.
    pub timed_out: bool,
    /// Returned as the stdout tail.
    pub stdout: String,
    /// Returned as the stderr tail.
    pub stderr: String,
    /// Fail to run at all with this error kind (e.g. `NotFound`).
    pub spawn_error: Option<io::ErrorKind>,
}

impl Response {
    /// Exit code 0, no output.
    pub fn ok() -> Self {
        Self::exit(0)
    }

    /// Exits with `code`, no output.
    pub fn exit(code: i32) -> Self {
        Response {
            exit_code: Some(code),
            timed_out: false,
            stdout: String::new(),
            stderr: String::new(),
            spawn_error: None,
        }
    }

    /// Runs past its timeout and is killed.
    pub fn timeout() -> Self {
        Response {
            exit_code: None,
            timed_out: true,
            ..Self::ok()
        }
    }

    /// Cannot be started (`Runner::run` returns `Err` of this kind).
    pub fn spawn_error(kind: io::ErrorKind) -> Self {
        Response {
            spawn_error: Some(kind),
            ..Self::ok()
        }
    }

    /// Sets stdout.
    pub fn stdout(mut self, text: impl Into<String>) -> Self {
        self.stdout = text.into();
        self
    }

    /// Sets stderr.
    pub fn stderr(mut self, text: impl Into<String>) -> Self {
        self.stderr = text.into();
        self
    }
}

#[derive(Debug, Clone)]
struct Rule {
    program: String,
    args: Vec<String>,
    response: Response,
    once: bool,
}

impl Rule {
    /// `program` equals the spec's program or its last path component, and
    /// `args` occur in the spec's arguments in this order (not necessarily
    /// next to each other).
    fn matches(&self, spec: &CommandSpec) -> bool {
        let base = spec.program.rsplit('/').next().unwrap_or(&spec.program);
        if self.program != spec.program && self.program != base {
            return false;
        }
        let mut rest = spec.args.iter();
        self.args.iter().all(|want| rest.any(|a| a == want))
    }
}

/// Records every command instead of running it, and answers from a script.
/// Commands no rule matches exit 0 with no output.
#[derive(Debug, Default, Clone)]
pub struct RecordingRunner {
    calls: Vec<CommandSpec>,
    rules: Vec<Rule>,
}

impl RecordingRunner {
    /// No rules, nothing recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers `response` to every command of `program` whose arguments
    /// contain `args` in order. The first matching rule, in the order they
    /// were added, answers.
    pub fn respond(&mut self, program: &str, args: &[&str], response: Response) -> &mut Self {
        self.add(program, args, response, false)
    }

    /// Like [`respond`](Self::respond), but only for the first matching
    /// command (e.g. fail once, then succeed on the retry).
    pub fn respond_once(&mut self, program: &str, args: &[&str], response: Response) -> &mut Self {
        self.add(program, args, response, true)
    }

    fn add(&mut self, program: &str, args: &[&str], response: Response, once: bool) -> &mut Self {
        self.rules.push(Rule {
            program: program.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            response,
            once,
        });
        self
    }

    /// Every command run so far, in order.
    pub fn calls(&self) -> &[CommandSpec] {
        &self.calls
    }

    /// [`CommandSpec::command_line`] of every command run so far.
    pub fn command_lines(&self) -> Vec<String> {
        self.calls.iter().map(CommandSpec::command_line).collect()
    }
}

impl Runner for RecordingRunner {
    fn run(&mut self, spec: &CommandSpec) -> io::Result<CommandOutcome> {
        self.calls.push(spec.clone());
        let response = match self.rules.iter().position(|r| r.matches(spec)) {
            Some(i) if self.rules[i].once => self.rules.remove(i).response,
            Some(i) => self.rules[i].response.clone(),
            None => Response::ok(),
        };
        if let Some(kind) = response.spawn_error {
            return Err(io::Error::new(
                kind,
                format!("cannot run `{}`: scripted {kind:?}", spec.command_line()),
            ));
        }
        Ok(CommandOutcome {
            exit_code: response.exit_code,
            timed_out: response.timed_out,
            stdout_tail: response.stdout,
            stderr_tail: response.stderr,
            duration: Duration::ZERO,
        })
    }
}

#[cfg(test)]
mod tests;

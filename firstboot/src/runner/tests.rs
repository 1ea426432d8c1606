use super::*;
use std::sync::{Arc, Mutex};
use std::thread;

fn sh(script: &str) -> CommandSpec {
    CommandSpec::new("sh", ["-c", script])
        .why("test")
        .timeout(Duration::from_secs(20))
}

#[test]
fn system_runner_captures_exit_code_and_stderr_tail() {
    let spec = sh("echo to-stdout; echo 'E: broken package' >&2; exit 3");
    let out = SystemRunner::quiet().run(&spec).unwrap();
    assert_eq!(out.exit_code, Some(3));
    assert!(!out.timed_out);
    assert!(!out.success());
    assert_eq!(out.stdout_tail, "to-stdout\n");
    assert_eq!(out.stderr_tail, "E: broken package\n");
    let line = format_failure(&spec, &out);
    assert!(line.contains("failed with exit code 3"), "{line}");
    assert!(line.ends_with(": E: broken package"), "{line}");
}

#[test]
fn system_runner_passes_env_and_null_stdin() {
    // `cat` reads stdin: with /dev/null it ends at once instead of hanging.
    let spec = sh("cat; echo \"$VGPU_TEST_VAR\"").env("VGPU_TEST_VAR", "value with space");
    let out = SystemRunner::quiet().run(&spec).unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout_tail, "value with space\n");
}

#[test]
fn system_runner_kills_a_command_past_its_timeout() {
    let spec = CommandSpec::new("sleep", ["5"]).timeout(Duration::from_millis(200));
    let started = Instant::now();
    let out = SystemRunner::quiet().run(&spec).unwrap();
    assert!(out.timed_out);
    assert_eq!(out.exit_code, None);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(format_failure(&spec, &out).contains("timed out after"));
}

/// A process is gone or a zombie nobody reaped yet (in a container, PID 1
/// may not reap orphans); either way it no longer runs.
fn not_running(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
    }
}

#[test]
fn system_runner_timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    // The background `sleep` inherits stdout: had it survived, reading the
    // output would wait for `drain_wait` (set long here) or forever.
    let spec = sh(&format!(
        "sleep 30 & echo $! > '{}'; wait",
        pidfile.display()
    ))
    .timeout(Duration::from_millis(300));
    let mut runner = SystemRunner::quiet();
    runner.drain_wait = Duration::from_secs(15);
    let started = Instant::now();
    let out = runner.run(&spec).unwrap();
    assert!(out.timed_out);
    assert_eq!(out.exit_code, None);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let pid = pid.trim();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !not_running(pid) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert!(not_running(pid), "grandchild {pid} survived the timeout");
}

#[test]
fn system_runner_keeps_only_the_tail_of_huge_output() {
    // 8 MB on each stream at once: neither pipe may fill up and block.
    let spec = sh("head -c 8000000 /dev/zero | tr '\\0' a >&2 & \
         head -c 8000000 /dev/zero | tr '\\0' b; wait; \
         echo; echo end-of-stdout; echo >&2; echo end-of-stderr >&2");
    let out = SystemRunner::quiet().run(&spec).unwrap();
    assert!(out.success(), "{:?}", out.exit_code);
    assert!(out.stdout_tail.len() <= TAIL_BYTES);
    assert!(out.stderr_tail.len() <= TAIL_BYTES);
    assert!(out.stdout_tail.len() > TAIL_BYTES - 100);
    assert!(out.stdout_tail.ends_with("bbb\nend-of-stdout\n"));
    assert!(out.stderr_tail.ends_with("aaa\nend-of-stderr\n"));
}

#[test]
fn system_runner_names_a_missing_program() {
    let spec = CommandSpec::new("/nonexistent/vgpu-no-such-tool", ["--flag"]);
    let err = SystemRunner::quiet().run(&spec).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    let msg = err.to_string();
    assert!(
        msg.contains("cannot run `/nonexistent/vgpu-no-such-tool --flag`"),
        "{msg}"
    );
}

#[derive(Clone, Default)]
struct SharedLog(Arc<Mutex<Vec<u8>>>);

impl Write for SharedLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `-q` leaves only failures in the log; `-v` adds the end of a successful
/// command's output to its line.
#[test]
fn system_runner_logs_by_verbosity() {
    let lines = |verbosity: Verbosity| {
        let log = SharedLog::default();
        let mut runner = SystemRunner::with_log(Box::new(log.clone()));
        runner.verbosity = verbosity;
        runner.run(&sh("echo all done").why("checking")).unwrap();
        runner.run(&sh("echo nope >&2; exit 1")).unwrap();
        String::from_utf8(log.0.lock().unwrap().clone()).unwrap()
    };
    let quiet = lines(Verbosity::Quiet);
    assert_eq!(quiet.lines().count(), 1, "{quiet}");
    assert!(
        quiet.contains("(test) failed with exit code 1 after"),
        "{quiet}"
    );
    let verbose = lines(Verbosity::Verbose);
    let v: Vec<&str> = verbose.lines().collect();
    assert_eq!(v.len(), 4, "{verbose}");
    assert!(
        v[1].starts_with("`sh -c 'echo all done'` (checking) succeeded after "),
        "{verbose}"
    );
    assert!(v[1].ends_with(": all done"), "{verbose}");
    assert_eq!(lines(Verbosity::Normal).lines().count(), 4);
}

#[test]
fn verbosity_from_the_flags() {
    use crate::verbosity::Verbosity as V;
    assert_eq!(V::from_flags(false, false), V::Normal);
    assert_eq!(V::from_flags(true, false), V::Quiet);
    assert_eq!(V::from_flags(false, true), V::Verbose);
}

/// A command that runs past the heartbeat gets "still running" lines
/// between its start and end lines, naming why it runs and what it is.
#[test]
fn system_runner_says_a_long_command_still_runs() {
    let log = SharedLog::default();
    let mut runner = SystemRunner::with_log(Box::new(log.clone()));
    runner.heartbeat = Duration::from_millis(300);
    let out = runner
        .run(&sh("sleep 1.5").why("install the driver"))
        .unwrap();
    assert!(out.success(), "{out:?}");
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let beats: Vec<&str> = lines[1..lines.len() - 1].to_vec();
    assert!(!beats.is_empty(), "{text}");
    for line in &beats {
        let rest = line
            .strip_prefix("vgpu-firstboot: still running install the driver: sh -c 'sleep 1.5' (")
            .unwrap_or_else(|| panic!("{line:?} in\n{text}"));
        let secs = rest.strip_suffix(" s so far)").unwrap();
        assert!(secs.parse::<u64>().is_ok(), "{line}");
    }
    assert_eq!(lines[0], "running `sh -c 'sleep 1.5'`: install the driver");
    assert!(lines.last().unwrap().contains("succeeded in"), "{text}");
}

#[test]
fn system_runner_logs_start_and_end() {
    let log = SharedLog::default();
    let mut runner = SystemRunner::with_log(Box::new(log.clone()));
    runner.run(&sh("exit 0").why("checking")).unwrap();
    runner.run(&sh("echo nope >&2; exit 1")).unwrap();
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[0], "running `sh -c 'exit 0'`: checking");
    assert!(lines[1].starts_with("`sh -c 'exit 0'` succeeded in "));
    assert!(
        lines[3].contains("(test) failed with exit code 1 after"),
        "{text}"
    );
    assert!(lines[3].ends_with(": nope"), "{text}");
}

#[test]
fn tail_keeps_the_last_bytes_on_a_char_boundary() {
    let mut tail = Tail::default();
    tail.push(b"abc");
    assert_eq!(tail.text(), "abc");
    let mut tail = Tail::default();
    tail.push("é".repeat(TAIL_BYTES).as_bytes());
    tail.push(b"x");
    // 4095 bytes of é pairs plus "x": the first byte would be half an é.
    let text = tail.text();
    assert!(!text.contains('\u{fffd}'), "{text:?}");
    assert!(text.ends_with("éx"));
    assert_eq!(text.len(), TAIL_BYTES - 1);
}

#[test]
fn command_line_quotes_what_a_shell_would_split() {
    let spec = CommandSpec::new("apt-get", ["-y", "install", "it's here", "a b", ""]);
    assert_eq!(
        spec.command_line(),
        r"apt-get -y install 'it'\''s here' 'a b' ''"
    );
}

fn outcome(exit_code: Option<i32>, stdout: &str, stderr: &str) -> CommandOutcome {
    CommandOutcome {
        exit_code,
        timed_out: false,
        stdout_tail: stdout.to_string(),
        stderr_tail: stderr.to_string(),
        duration: Duration::from_millis(1500),
    }
}

#[test]
fn format_failure_is_one_line_with_the_end_of_stderr() {
    let spec = CommandSpec::new("update-initramfs", ["-u", "-k", "all"]).why("rebuild initramfs");
    let line = format_failure(&spec, &outcome(Some(1), "out\n", "l1\nl2\n\nl3\nl4\n"));
    assert_eq!(
        line,
        "`update-initramfs -u -k all` (rebuild initramfs) failed with exit code 1 after 1.5s: l2 | l3 | l4"
    );
    // No stderr: stdout explains.
    let line = format_failure(&spec, &outcome(None, "only stdout\n", " \n"));
    assert!(
        line.ends_with("was killed by a signal after 1.5s: only stdout"),
        "{line}"
    );
    // A huge last line is cut from the front.
    let line = format_failure(
        &spec,
        &outcome(Some(2), "", &format!("{}END", "x".repeat(5000))),
    );
    assert!(!line.contains('\n'));
    assert!(line.ends_with("xxxEND") && line.contains(": …x"), "{line}");
    assert!(line.chars().count() < 520);
}

#[test]
fn recording_runner_records_and_defaults_to_success() {
    let mut runner = RecordingRunner::new();
    let spec = CommandSpec::new("update-grub", Vec::<String>::new()).why("kernel args");
    let out = runner.run(&spec).unwrap();
    assert!(out.success());
    runner
        .run(&CommandSpec::new("modprobe", ["-r", "nouveau"]))
        .unwrap();
    assert_eq!(runner.calls()[0], spec);
    assert_eq!(
        runner.command_lines(),
        ["update-grub", "modprobe -r nouveau"]
    );
}

#[test]
fn recording_runner_answers_from_its_script() {
    let mut runner = RecordingRunner::new();
    runner
        .respond_once(
            "apt-get",
            &["update"],
            Response::exit(100).stderr("E: offline\n"),
        )
        .respond("apt-get", &["install", "pve-headers"], Response::exit(2))
        .respond("nvidia-smi", &[], Response::ok().stdout("GPU 0\n"))
        .respond("mdevctl", &[], Response::timeout())
        .respond("dkms", &[], Response::spawn_error(io::ErrorKind::NotFound));
    let update = CommandSpec::new("apt-get", ["-q", "--error-on=any", "update"]);
    let first = runner.run(&update).unwrap();
    assert_eq!(first.exit_code, Some(100));
    assert_eq!(first.stderr_tail, "E: offline\n");
    // `respond_once`: the retry succeeds.
    assert!(runner.run(&update).unwrap().success());
    // Arguments match in order, not necessarily adjacent.
    let install = CommandSpec::new("apt-get", ["-y", "install", "dkms", "pve-headers"]);
    assert_eq!(runner.run(&install).unwrap().exit_code, Some(2));
    let reversed = CommandSpec::new("apt-get", ["pve-headers", "install"]);
    assert!(runner.run(&reversed).unwrap().success());
    // By base name too.
    let smi = CommandSpec::new("/usr/bin/nvidia-smi", ["vgpu"]);
    assert_eq!(runner.run(&smi).unwrap().stdout_tail, "GPU 0\n");
    let mdev = runner.run(&CommandSpec::new("mdevctl", ["types"])).unwrap();
    assert!(mdev.timed_out && mdev.exit_code.is_none());
    let err = runner
        .run(&CommandSpec::new("dkms", ["status"]))
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(err.to_string().contains("`dkms status`"));
    assert_eq!(runner.calls().len(), 7);
}

/// A background process that keeps the command's stdout is not waited for
/// past `drain_wait`, and its later writes do not kill it (the pipe stays
/// open while the runner lives: no SIGPIPE).
#[test]
fn system_runner_keeps_a_lingering_pipe_open() {
    let dir = tempfile::tempdir().unwrap();
    let done = dir.path().join("done");
    let spec = sh(&format!(
        "(sleep 1; echo late; echo late >&2; echo alive > '{}') & echo early",
        done.display()
    ));
    let mut runner = SystemRunner::quiet();
    runner.drain_wait = Duration::from_millis(200);
    let started = Instant::now();
    let out = runner.run(&spec).unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout_tail, "early\n");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done.exists() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(std::fs::read_to_string(&done).unwrap(), "alive\n");
    drop(runner);
}

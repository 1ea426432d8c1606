//! `status` tells the truth in every state (no bundle, not started, a new
//! plan on a finished host, a state file that cannot be read), `status
//! --json` is one JSON document whatever the state file holds, the other
//! commands' answers and exit codes, and no command panics on a closed
//! stdout or stderr.

#[path = "agent/harness.rs"]
mod agent_harness;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use agent_harness::SimHost;
use vgpu_plan::layout;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The agent on `root`, for the commands that need no stand-ins.
fn agent(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vgpu-firstboot"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

/// The exit code `--help` and the README give each `status`.
fn documented_code(status: &str) -> i32 {
    match status {
        "done" => 0,
        "failed" => 1,
        "needs-operator" => 2,
        "in-progress" | "not-started" => 3,
        "no-bundle" => 4,
        "new-plan" => 5,
        "state-unreadable" => 6,
        other => panic!("undocumented status {other:?}"),
    }
}

/// `status --json` on `root`: one JSON document on one line, of the current
/// schema, whose `status` and `exit-code` agree with the exit code. Returns
/// the document.
fn status_json(root: &Path, what: &str) -> serde_json::Value {
    let o = agent(root, &["status", "--json"]);
    let code = o
        .status
        .code()
        .unwrap_or_else(|| panic!("{what}: killed by a signal: {}", stderr(&o)));
    let text = stdout(&o);
    assert_eq!(text.lines().count(), 1, "{what}: one line: {text:?}");
    let doc: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text:?} {}", stderr(&o)));
    assert_eq!(doc["schema"], vgpu_firstboot::state::JSON_SCHEMA, "{what}");
    let status = doc["status"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no status: {text}"));
    assert_eq!(documented_code(status), code, "{what}: {text}");
    assert_eq!(doc["exit-code"], code, "{what}: {text}");
    doc
}

#[test]
fn a_root_without_a_bundle_is_no_bundle_and_wait_returns_at_once() {
    let bare = tempfile::tempdir().unwrap();
    let doc = status_json(bare.path(), "bare root");
    assert_eq!(doc["status"], "no-bundle");
    assert_eq!(doc["exit-code"], 4);
    let human = agent(bare.path(), &["status"]);
    assert_eq!(human.status.code(), Some(4));
    assert!(
        stdout(&human).contains("no bundle installed"),
        "{}",
        stdout(&human)
    );
    assert!(!stdout(&human).contains("reboots"), "{}", stdout(&human));
    let start = Instant::now();
    let waited = agent(bare.path(), &["status", "--wait", "--timeout", "30"]);
    assert_eq!(waited.status.code(), Some(4));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn before_the_first_run_the_reboot_cap_is_the_plans() {
    let host = SimHost::new("pve8-grub", "demo");
    let doc = status_json(&host.root(), "not started");
    assert_eq!(doc["status"], "not-started");
    assert_eq!(doc["reboot-cap"], 2, "the demo plan's reboot-cap");
    let human = agent(&host.root(), &["status"]);
    assert_eq!(human.status.code(), Some(3));
    assert!(
        stdout(&human).contains("reboots: 0 of at most 2"),
        "{}",
        stdout(&human)
    );
}

#[test]
fn a_new_plan_on_a_finished_host_is_new_plan_never_done() {
    let mut host = SimHost::new("pve8-grub", "demo");
    host.converge(&[], 5, |_| {});
    let done = status_json(&host.root(), "done");
    assert_eq!(done["status"], "done");
    assert_eq!(done["last-error"], serde_json::Value::Null);
    // A new bundle laid on the host: a different plan file.
    let plan = host.root().join(layout::PLAN_FILE);
    let mut text = std::fs::read_to_string(&plan).unwrap();
    text.push_str("# a new bundle\n");
    std::fs::write(&plan, text).unwrap();
    let doc = status_json(&host.root(), "new plan");
    assert_eq!(doc["status"], "new-plan");
    assert_eq!(doc["exit-code"], 5);
    let installed = doc["installed-plan-sha256"].as_str().unwrap();
    assert_eq!(installed.len(), 64);
    assert_ne!(doc["plan-sha256"], installed);
    let human = agent(&host.root(), &["status"]);
    assert_eq!(human.status.code(), Some(5));
    assert!(stdout(&human).starts_with("vgpu-firstboot: NEW PLAN, not run"));
    let start = Instant::now();
    let waited = agent(&host.root(), &["status", "--wait", "--timeout", "30"]);
    assert_eq!(waited.status.code(), Some(5));
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn the_last_error_is_cleared_once_the_plan_is_done() {
    let mut host = SimHost::new("pve8-grub", "demo");
    let failed = host
        .boot_run(&[("VGPU_TEST_FAIL", "update-initramfs")])
        .unwrap();
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    let doc = status_json(&host.root(), "failed");
    assert!(
        doc["last-error"]
            .as_str()
            .unwrap()
            .contains("update-initramfs")
    );
    assert_eq!(host.agent(&["retry"], &[]).status.code(), Some(0));
    host.converge(&[], 5, |_| {});
    let doc = status_json(&host.root(), "done after a retry");
    assert_eq!(doc["status"], "done");
    assert_eq!(doc["last-error"], serde_json::Value::Null);
    assert!(!stdout(&agent(&host.root(), &["status"])).contains("last error"));
}

/// A small deterministic PRNG (xorshift64*), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Mutations of a real state file: cut short, bytes flipped, random bytes
/// spliced in, lines dropped or repeated, binary junk, empty, a newer
/// schema, and the state, the plan and the state directory made unreadable.
#[test]
fn status_json_is_one_document_for_every_state_file() {
    let host = SimHost::new("pve8-grub", "demo");
    let first = host.boot_run(&[]).unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let root = host.root();
    let state = root.join(layout::STATE_FILE);
    let real = std::fs::read(&state).unwrap();
    assert_eq!(status_json(&root, "real")["status"], "in-progress");

    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), Vec::new()),
        ("blank".into(), b"\n  \n".to_vec()),
        ("binary".into(), (0..=255u8).cycle().take(4096).collect()),
        (
            "newer schema".into(),
            String::from_utf8(real.clone())
                .unwrap()
                .replacen("schema = 1", "schema = 2", 1)
                .into_bytes(),
        ),
        ("not utf-8".into(), vec![0xff, 0xfe, b's', b'=']),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..60 {
        let cut = rng.below(real.len());
        cases.push((format!("cut at {cut} ({i})"), real[..cut].to_vec()));
    }
    for i in 0..60 {
        let mut m = real.clone();
        for _ in 0..=rng.below(4) {
            let at = rng.below(m.len());
            m[at] ^= 1 << rng.below(8);
        }
        cases.push((format!("flipped bits ({i})"), m));
    }
    for i in 0..40 {
        let mut m = real.clone();
        let at = rng.below(m.len());
        let junk: Vec<u8> = (0..=rng.below(16)).map(|_| rng.next() as u8).collect();
        m.splice(at..at, junk);
        cases.push((format!("random bytes spliced ({i})"), m));
    }
    let lines: Vec<&[u8]> = real.split_inclusive(|&b| b == b'\n').collect();
    for i in 0..40 {
        let mut m = lines.clone();
        let at = rng.below(m.len());
        if i % 2 == 0 {
            m.remove(at);
        } else {
            m.insert(at, lines[rng.below(lines.len())]);
        }
        cases.push((format!("lines changed ({i})"), m.concat()));
    }
    let mut unreadable = 0;
    for (what, bytes) in &cases {
        std::fs::write(&state, bytes).unwrap();
        let doc = status_json(&root, what);
        if doc["status"] == "state-unreadable" {
            unreadable += 1;
            assert!(
                doc["reason"].as_str().unwrap().contains("state.toml"),
                "{what}: the reason names the file: {doc}"
            );
        }
    }
    assert!(
        unreadable >= 60,
        "only {unreadable} of {} unreadable",
        cases.len()
    );
    for what in ["empty", "binary", "newer schema"] {
        let bytes = &cases.iter().find(|(w, _)| w == what).unwrap().1;
        std::fs::write(&state, bytes).unwrap();
        assert_eq!(
            status_json(&root, what)["status"],
            "state-unreadable",
            "{what}"
        );
    }

    // A directory where the file should be.
    std::fs::remove_file(&state).unwrap();
    std::fs::create_dir(&state).unwrap();
    assert_eq!(
        status_json(&root, "a directory")["status"],
        "state-unreadable"
    );
    std::fs::remove_dir(&state).unwrap();
    // The plan cut short: the state cannot be judged against it.
    std::fs::write(&state, &real).unwrap();
    let plan = root.join(layout::PLAN_FILE);
    let plan_text = std::fs::read(&plan).unwrap();
    std::fs::write(&plan, &plan_text[..plan_text.len() / 2]).unwrap();
    let doc = status_json(&root, "plan cut short");
    assert_eq!(doc["status"], "state-unreadable");
    assert!(
        doc["reason"].as_str().unwrap().contains("plan.toml"),
        "{doc}"
    );
}

#[test]
fn plan_retry_and_facts_answer_for_what_they_see() {
    let bare = tempfile::tempdir().unwrap();
    let none = agent(bare.path(), &["plan"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(stderr(&none).contains("no plan at"), "{}", stderr(&none));
    assert!(stdout(&none).is_empty(), "{}", stdout(&none));

    let host = SimHost::new("pve8-grub", "demo");
    let want = "the plan has no step \"no-such-step\"";
    let before = host.agent(&["retry", "no-such-step"], &[]);
    assert_eq!(before.status.code(), Some(1));
    assert!(stderr(&before).contains(want), "{}", stderr(&before));
    assert!(
        stderr(&before).contains("install-driver"),
        "{}",
        stderr(&before)
    );
    host.boot_run(&[]).unwrap();
    let started = host.agent(&["retry", "no-such-step"], &[]);
    assert_eq!(started.status.code(), Some(1));
    assert!(stderr(&started).contains(want), "{}", stderr(&started));

    // pve8-grub can host vGPU; a host without an NVIDIA GPU cannot.
    assert_eq!(host.agent(&["facts"], &[]).status.code(), Some(0));
    let plain = SimHost::new("debian-plain", "demo");
    for args in [&["facts"][..], &["facts", "--json"]] {
        let o = plain.agent(args, &[]);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {}", stdout(&o));
        assert!(stdout(&o).contains("no NVIDIA GPU"), "{}", stdout(&o));
    }
}

/// A pipe whose reader is gone: every write to it fails (EPIPE).
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Stdio::from(writer)
}

/// Runs `cmd` with stdout (or stderr) a closed pipe; asserts it exits with
/// `code`, not a panic's 101 or an abort's 134, and says nothing of a panic.
fn survives_closed(mut cmd: Command, close_stdout: bool, code: i32, what: &str) -> Output {
    if close_stdout {
        cmd.stdout(closed_pipe()).stderr(Stdio::piped());
    } else {
        cmd.stdout(Stdio::piped()).stderr(closed_pipe());
    }
    let o = cmd.output().unwrap();
    let seen = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!seen.contains("panicked"), "{what}: {seen}");
    assert_eq!(o.status.code(), Some(code), "{what}: {:?} {seen}", o.status);
    o
}

#[test]
fn no_command_panics_on_a_closed_stdout_or_stderr() {
    let mut host = SimHost::new("pve8-grub", "demo");
    let bare = tempfile::tempdir().unwrap();
    let on = |root: &Path, args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vgpu-firstboot"));
        c.arg("--root").arg(root).args(args);
        c
    };
    for close_stdout in [true, false] {
        for (root, args, code) in [
            (host.root(), &["status"][..], 3),
            (host.root(), &["status", "--json"], 3),
            (host.root(), &["plan"], 0),
            (host.root(), &["facts"], 0),
            (host.root(), &["facts", "--json"], 0),
            (bare.path().to_path_buf(), &["plan"], 1),
            (bare.path().to_path_buf(), &["status", "--json"], 4),
            // no compatibility table: a note on stderr
            (bare.path().to_path_buf(), &["facts"], 3),
            (bare.path().to_path_buf(), &["--help"], 0),
            // a usage error
            (bare.path().to_path_buf(), &["frob"], 2),
        ] {
            let what = format!("{args:?} (closed stdout: {close_stdout})");
            survives_closed(on(&root, args), close_stdout, code, &what);
        }
    }

    // `run` whose journal (stderr) is gone still does its steps.
    let o = survives_closed(host.agent_command(&["run"], &[]), false, 0, "run");
    assert!(stdout(&o).contains("rebooting"), "{}", stdout(&o));
    let doc = status_json(&host.root(), "after a run with a closed stderr");
    assert_eq!(doc["status"], "in-progress");
    assert!(doc["pending-reboot"].is_string(), "{doc}");
    assert!(
        host.commands().iter().any(|c| c == "systemctl reboot"),
        "{:?}",
        host.commands()
    );
    // And with stdout gone too, the next phase still runs.
    host.reboot();
    let mut cmd = host.agent_command(&["run"], &[]);
    cmd.stdout(closed_pipe()).stderr(closed_pipe());
    let status = cmd.status().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert_eq!(status_json(&host.root(), "phase 2")["status"], "done");
}

/// `status --json` on `root`, killed and failed if it has not answered
/// within 10 s (a read blocked on a FIFO or fed by /dev/zero never would).
fn status_json_within_10s(root: &Path, what: &str) -> serde_json::Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vgpu-firstboot"))
        .arg("--root")
        .arg(root)
        .args(["status", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(10) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{what}: `status` did not answer within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(6), "{what}: {}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(doc["status"], "state-unreadable", "{what}: {doc}");
    assert_eq!(doc["exit-code"], 6, "{what}: {doc}");
    doc
}

fn mknod(path: &Path, kind: rustix::fs::FileType, dev: rustix::fs::Dev) -> rustix::io::Result<()> {
    let mode = rustix::fs::Mode::from_raw_mode(0o644);
    rustix::fs::mknodat(rustix::fs::CWD, path, kind, mode, dev)
}

#[test]
fn a_state_or_plan_that_is_no_regular_file_or_too_big_is_unreadable_at_once() {
    use rustix::fs::FileType;
    let host = SimHost::new("pve8-grub", "demo");
    let first = host.boot_run(&[]).unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let root = host.root();
    let state = root.join(layout::STATE_FILE);
    let real = std::fs::read(&state).unwrap();
    let reason = |doc: &serde_json::Value| doc["reason"].as_str().unwrap().to_string();

    // A FIFO: opening it for reading would wait for a writer forever.
    std::fs::remove_file(&state).unwrap();
    mknod(&state, FileType::Fifo, 0).unwrap();
    let doc = status_json_within_10s(&root, "a FIFO");
    assert!(reason(&doc).contains("not a regular file"), "{doc}");
    assert!(reason(&doc).contains("state.toml"), "{doc}");

    // A link to /dev/zero (in the root, where the link resolves): it would
    // be read until memory runs out.
    std::fs::remove_file(&state).unwrap();
    std::fs::create_dir_all(root.join("dev")).unwrap();
    let _ = std::fs::remove_file(root.join("dev/zero"));
    mknod(
        &root.join("dev/zero"),
        FileType::CharacterDevice,
        rustix::fs::makedev(1, 5),
    )
    .unwrap();
    std::os::unix::fs::symlink("/dev/zero", &state).unwrap();
    let doc = status_json_within_10s(&root, "a link to /dev/zero");
    assert!(reason(&doc).contains("not a regular file"), "{doc}");

    // A state file larger than any the agent writes (the real one, then
    // a comment padding it past 1 MiB).
    std::fs::remove_file(&state).unwrap();
    let mut big = real.clone();
    big.extend_from_slice(b"#");
    big.resize((1 << 20) + 1, b'x');
    big.push(b'\n');
    std::fs::write(&state, &big).unwrap();
    let doc = status_json_within_10s(&root, "a 1 MiB state file");
    assert!(
        reason(&doc).contains("larger than the 1048576 bytes"),
        "{doc}"
    );
    // The same content within the limit is read as before.
    big.truncate((1 << 20) - 1);
    big.push(b'\n');
    std::fs::write(&state, &big).unwrap();
    assert_eq!(status_json(&root, "1 MiB")["status"], "in-progress");

    // The plan a FIFO.
    std::fs::write(&state, &real).unwrap();
    let plan = root.join(layout::PLAN_FILE);
    std::fs::remove_file(&plan).unwrap();
    mknod(&plan, FileType::Fifo, 0).unwrap();
    let doc = status_json_within_10s(&root, "the plan a FIFO");
    assert!(reason(&doc).contains("plan.toml"), "{doc}");
    assert!(reason(&doc).contains("not a regular file"), "{doc}");
}

//! Progress a fleet can watch, with the real agent on simulated hosts: the
//! node_exporter textfile checked by the real `promtool check metrics` at
//! every phase change, the `status --json` documents the real `wget` POSTs
//! received by a collector on 127.0.0.1, a collector that is down or hangs,
//! and the installer's boot line that already carried the kernel arguments
//! (both phases in one run, no reboot).

#[path = "agent/harness.rs"]
mod agent_harness;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use agent_harness::SimHost;
use vgpu_plan::layout;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `text` checked by the real `promtool check metrics` (package
/// prometheus): it must parse and pass its lint with nothing to say.
fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the progress tests need promtool: apt-get install prometheus");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {:?}\n{}{}\n--- the textfile:\n{text}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
}

/// The value of the sample `series` (name and labels, as written).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

/// What the textfile says, checked by promtool first.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    state: String,
    phase: f64,
    reboots: f64,
    done_at: f64,
    failed_step: Option<String>,
}

fn read_textfile(path: &Path) -> Seen {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    promtool_check(&text);
    let states: Vec<&str> = [
        "not-started",
        "in-progress",
        "needs-operator",
        "failed",
        "done",
    ]
    .into_iter()
    .filter(|s| {
        let v = sample(
            &text,
            &format!("vgpu_firstboot_state{{plan=\"demo\",state=\"{s}\"}}"),
        );
        assert!(v == Some(0.0) || v == Some(1.0), "state {s}: {v:?}\n{text}");
        v == Some(1.0)
    })
    .collect();
    assert_eq!(states.len(), 1, "one-hot state:\n{text}");
    let get = |name: &str| {
        sample(&text, &format!("vgpu_firstboot_{name}{{plan=\"demo\"}}"))
            .unwrap_or_else(|| panic!("no {name}:\n{text}"))
    };
    let failed_step = text
        .lines()
        .find_map(|l| l.strip_prefix("vgpu_firstboot_failed_step{plan=\"demo\",step=\""))
        .map(|rest| {
            assert!(rest.ends_with("\"} 1"), "{rest}");
            rest.split('"').next().unwrap().to_owned()
        });
    Seen {
        state: states[0].to_owned(),
        phase: get("phase"),
        reboots: get("reboots"),
        done_at: get("done_timestamp_seconds"),
        failed_step,
    }
}

/// What the collector received, in order.
type Posts = Arc<Mutex<Vec<Received>>>;

/// One POST the collector received, with the textfile as it was then.
#[derive(Debug)]
struct Received {
    status: serde_json::Value,
    textfile: Seen,
}

/// A collector on 127.0.0.1 answering every POST with 200: it keeps each
/// body (parsed as the status JSON) with the textfile read when it came.
/// The textfile's path is set once the host (whose plan names the URL)
/// exists.
fn collector() -> (String, Posts, Arc<OnceLock<PathBuf>>) {
    let textfile = Arc::new(OnceLock::<PathBuf>::new());
    let path = Arc::clone(&textfile);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/vgpu/progress", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&got);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let mut conn = conn.unwrap();
            let (head, body) = read_request(&mut conn);
            assert!(head.starts_with("POST /vgpu/progress HTTP/1."), "{head}");
            assert!(
                head.to_ascii_lowercase()
                    .contains("\r\ncontent-type: application/json\r\n"),
                "{head}"
            );
            let status: serde_json::Value = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)));
            let textfile = read_textfile(path.get().expect("the host is made"));
            keep.lock().unwrap().push(Received { status, textfile });
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .unwrap();
        }
    });
    (url, got, textfile)
}

/// The request's head and its body (`Content-Length` bytes).
fn read_request(conn: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        let n = conn.read(&mut chunk).unwrap();
        assert!(n > 0, "the request ended early");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8(buf[..end].to_vec()).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .expect("a POST with a Content-Length");
    while buf.len() < end + len {
        let n = conn.read(&mut chunk).unwrap();
        assert!(n > 0, "the body ended early");
        buf.extend_from_slice(&chunk[..n]);
    }
    (head, buf[end..end + len].to_vec())
}

/// The demo plan reporting to `url`, on a host with the real wget.
fn reporting_host(url: &str) -> SimHost {
    let url = url.to_owned();
    let host = SimHost::with_plan("pve8-grub", "demo", |p| p.report.url = Some(url));
    host.install_wget();
    host
}

/// The installer's boot line carried the plan's kernel arguments and the
/// nouveau blacklist: the installed system's first boot already has them.
fn args_on_the_boot_line(host: &SimHost) {
    let cmdline = host.root().join("proc/cmdline");
    let line = std::fs::read_to_string(&cmdline).unwrap();
    std::fs::write(
        &cmdline,
        format!(
            "{} intel_iommu=on iommu=pt modprobe.blacklist=nouveau\n",
            line.trim()
        ),
    )
    .unwrap();
    std::fs::remove_dir_all(host.root().join("sys/module/nouveau")).unwrap();
}

fn reboots_issued(host: &SimHost) -> usize {
    host.commands()
        .iter()
        .filter(|c| *c == "systemctl reboot")
        .count()
}

#[test]
fn two_boots_post_and_write_the_textfile_at_every_phase_change() {
    let (url, got, textfile) = collector();
    let mut host = reporting_host(&url);
    textfile.set(host.textfile()).unwrap();
    let first = host.boot_run(&[]).unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert!(stdout(&first).contains("rebooting"), "{}", stdout(&first));
    assert_eq!(reboots_issued(&host), 1);
    host.reboot();
    let second = host.boot_run(&[]).unwrap();
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    assert!(stdout(&second).contains("done"), "{}", stdout(&second));

    let got = got.lock().unwrap();
    let seen: Vec<(&str, f64, f64)> = got
        .iter()
        .map(|r| {
            (
                r.status["status"].as_str().unwrap(),
                r.textfile.phase,
                r.textfile.reboots,
            )
        })
        .collect();
    // Phase 1 starts, the reboot is next, phase 2 starts, done.
    assert_eq!(
        seen,
        [
            ("not-started", 1.0, 0.0),
            ("in-progress", 1.0, 1.0),
            ("in-progress", 2.0, 1.0),
            ("done", 2.0, 1.0),
        ],
        "{got:#?}"
    );
    for r in got.iter() {
        assert_eq!(r.status["schema"], vgpu_firstboot::state::JSON_SCHEMA);
        assert_eq!(r.textfile.state, r.status["status"].as_str().unwrap());
        assert_eq!(r.status["reboots"].as_f64(), Some(r.textfile.reboots));
        assert_eq!(r.textfile.failed_step, None);
    }
    assert_eq!(got[0].textfile.done_at, 0.0);
    assert_eq!(got[2].textfile.done_at, 0.0);
    let done = &got[3];
    assert_eq!(done.status["exit-code"], 0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - 600.0..=now + 1.0).contains(&done.textfile.done_at),
        "done timestamp {} is not now ({now})",
        done.textfile.done_at
    );
    // The document POSTed is the one `status --json` prints.
    let status: serde_json::Value =
        serde_json::from_str(&stdout(&host.agent(&["status", "--json"], &[]))).unwrap();
    assert_eq!(status, done.status);
    // The file node_exporter reads is the last one, mode 0644, no temp file left.
    assert_eq!(read_textfile(&host.textfile()), done.textfile);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(host.textfile())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
    let dir: Vec<_> = std::fs::read_dir(host.textfile().parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(dir, ["vgpu-firstboot.prom"]);
}

#[test]
fn boot_line_with_the_arguments_runs_both_phases_without_a_reboot() {
    let host = SimHost::new("pve8-grub", "demo");
    args_on_the_boot_line(&host);
    let out = host.boot_run(&[]).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("done"), "{}", stdout(&out));
    assert!(host.root().join(layout::DONE_MARKER).exists());
    assert_eq!(reboots_issued(&host), 0, "{:?}", host.commands());
    assert!(
        stderr(&out).contains("no reboot"),
        "the reboot step says why it did not reboot:\n{}",
        stderr(&out)
    );
    // Without [report] url nothing is POSTed.
    assert!(!stderr(&out).contains("wget"), "{}", stderr(&out));
    let st = host.agent(&["status", "--json"], &[]);
    assert_eq!(st.status.code(), Some(0), "{}", stdout(&st));
    let status: serde_json::Value = serde_json::from_str(&stdout(&st)).unwrap();
    assert_eq!(status["status"], "done");
    assert_eq!(status["reboots"], 0);
    let steps = status["steps"].as_array().unwrap();
    assert!(
        steps.iter().all(|s| s["state"] == "done"),
        "every step done in one boot: {steps:#?}"
    );
    let seen = read_textfile(&host.textfile());
    assert_eq!(
        (seen.state.as_str(), seen.phase, seen.reboots),
        ("done", 2.0, 0.0)
    );
    assert!(seen.done_at > 0.0);
}

#[test]
fn without_a_reboot_the_posts_still_mark_each_phase() {
    let (url, got, textfile) = collector();
    let host = reporting_host(&url);
    textfile.set(host.textfile()).unwrap();
    args_on_the_boot_line(&host);
    let out = host.boot_run(&[]).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(reboots_issued(&host), 0);
    let got = got.lock().unwrap();
    let seen: Vec<(&str, f64, f64)> = got
        .iter()
        .map(|r| {
            (
                r.status["status"].as_str().unwrap(),
                r.textfile.phase,
                r.textfile.reboots,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("not-started", 1.0, 0.0),
            ("in-progress", 2.0, 0.0),
            ("done", 2.0, 0.0),
        ],
        "{got:#?}"
    );
}

#[test]
fn a_failed_step_is_in_the_textfile_and_the_post() {
    let (url, got, textfile) = collector();
    let host = reporting_host(&url);
    textfile.set(host.textfile()).unwrap();
    let out = host
        .boot_run(&[("VGPU_TEST_FAIL", "update-initramfs")])
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let got = got.lock().unwrap();
    let last = got.last().unwrap();
    assert_eq!(last.status["status"], "failed");
    assert_eq!(last.status["failed-step"], "initramfs");
    assert_eq!(last.textfile.state, "failed");
    assert_eq!(last.textfile.failed_step.as_deref(), Some("initramfs"));
    assert_eq!(last.textfile.phase, 1.0);
}

/// Runs the 0-reboot flow and then the two-boot flow reporting to `url`
/// (a collector that does not answer): both reach `done`, the reboot is
/// issued, and each run logs the warning.
fn provisioning_goes_on(url: &str, bound: Duration) {
    let host = reporting_host(url);
    args_on_the_boot_line(&host);
    let start = Instant::now();
    let out = host.boot_run(&[]).unwrap();
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("done"), "{}", stdout(&out));
    let warnings = stderr(&out)
        .lines()
        .filter(|l| l.contains(&format!("warning: progress not reported to {url}")))
        .count();
    assert_eq!(warnings, 3, "one per phase change:\n{}", stderr(&out));
    assert!(took < bound, "the run took {took:?}");
    assert_eq!(read_textfile(&host.textfile()).state, "done");

    let mut host = reporting_host(url);
    let start = Instant::now();
    let first = host.boot_run(&[]).unwrap();
    let took = start.elapsed();
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert!(stdout(&first).contains("rebooting"), "{}", stdout(&first));
    assert_eq!(reboots_issued(&host), 1);
    assert!(took < bound, "the run before the reboot took {took:?}");
    host.reboot();
    let second = host.boot_run(&[]).unwrap();
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    assert!(host.root().join(layout::DONE_MARKER).exists());
    assert!(
        stderr(&second).contains("warning: progress not reported to"),
        "{}",
        stderr(&second)
    );
}

#[test]
fn a_collector_that_is_down_does_not_stop_provisioning() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The listener is gone: the port is closed, wget's connection refused.
    provisioning_goes_on(
        &format!("http://127.0.0.1:{port}/vgpu"),
        Duration::from_secs(60),
    );
}

#[test]
fn a_collector_that_hangs_does_not_stop_provisioning() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/vgpu", listener.local_addr().unwrap());
    // Accepts every connection and never answers.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn.unwrap());
        }
    });
    // wget gives up after --timeout=5 --tries=2 (about 11 s), the runner
    // stops it after 20 s at the latest: three POSTs stay well inside this.
    provisioning_goes_on(&url, Duration::from_secs(90));
}

#[test]
fn the_dry_run_says_where_progress_goes() {
    let host = SimHost::with_plan("pve8-grub", "demo", |p| {
        p.report.url = Some("https://collector.example.net/vgpu".into());
        p.report.textfile_dir = "/srv/textfiles".into();
    });
    let out = host.agent(&["plan"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for want in [
        "progress: node_exporter textfile /srv/textfiles/vgpu-firstboot.prom",
        "POSTed to https://collector.example.net/vgpu",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    assert!(
        !host.root().join("srv/textfiles").exists(),
        "the dry run wrote"
    );
    let plain = SimHost::new("pve8-grub", "demo");
    let text = stdout(&plain.agent(&["plan"], &[]));
    assert!(
        text.contains("textfile /var/lib/prometheus/node-exporter/vgpu-firstboot.prom")
            && text.contains("no POST ([report] url not set)"),
        "{text}"
    );
}

//! The test host: a temporary root with the identifiers sysfs gives, a hook
//! made from this crate's real `vgpu-hook` binary (stripped; a debug build
//! is over the installer's 1 MiB, so the trailer is appended with
//! `HookConfig::trailer`, the bytes `write_hook` appends), and stand-ins on
//! `PATH` for what cannot run here: `systemctl` (no systemd in the test
//! container) and `mount`/`umount` (no loop devices). Each stand-in records
//! its argv and fails on any argument it does not expect. `wget` and
//! `openssl` are the real ones.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use vgpu_bake::rollout::config::{HookConfig, SCHEMA, Source};
use vgpu_bake::rollout::index::Index;

/// The workspace's `tests/fixtures/NAME`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// The index for one bundle (as `vgpu-bake hook --bundle` makes it).
pub fn single_index(bundle: &Path) -> Index {
    vgpu_bake::rollout::make::bundle_index(bundle, &[]).unwrap()
}

/// A configuration.
pub fn config(index: Index, sources: Vec<Source>, keys: Vec<String>) -> HookConfig {
    HookConfig {
        schema: SCHEMA,
        made_by: "vgpu-bake test".into(),
        trusted_keys: keys,
        sources,
        index,
    }
}

pub fn path_source(p: &str) -> Source {
    Source::Path { path: p.into() }
}

/// The stripped debug `vgpu-hook`, made once per test process.
fn template() -> &'static Path {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let out = dir.join("vgpu-hook-template");
        // Stripped under a private name, then renamed: a concurrent run
        // never sees half a file.
        let tmp = dir.join(format!("vgpu-hook-template.{}", std::process::id()));
        let st = Command::new("strip")
            .arg("-o")
            .arg(&tmp)
            .arg(env!("CARGO_BIN_EXE_vgpu-hook"))
            .status()
            .expect("strip (binutils)");
        assert!(st.success());
        fs::rename(&tmp, &out).unwrap();
        out
    })
}

const SYSTEMCTL: &str = r#"#!/bin/sh
echo "systemctl $*" >> "$VGPU_TEST_LOG"
case "$*" in
"daemon-reload"|"start --no-block vgpu-firstboot.service")
    if [ -n "$VGPU_TEST_SYSTEMCTL_FAIL" ]; then
        echo "Failed to connect to bus: No such file or directory" >&2
        exit 1
    fi
    exit 0 ;;
esac
echo "systemctl stand-in: unexpected arguments: $*" >&2
exit 99
"#;

const SYSTEMD_RUN: &str = r#"#!/bin/sh
echo "systemd-run $*" >> "$VGPU_TEST_LOG"
[ "$*" = "--no-block --collect --unit=vgpu-firstboot-upgrade /usr/local/sbin/vgpu-firstboot upgrade" ] && exit 0
echo "systemd-run stand-in: unexpected arguments: $*" >&2
exit 99
"#;

/// "Mounts" the device by copying the directory the by-label link points
/// to (a stick's contents) into the mount point.
const MOUNT: &str = r#"#!/bin/sh
echo "mount $*" >> "$VGPU_TEST_LOG"
if [ "$#" -ne 4 ] || [ "$1" != "-o" ] || [ "$2" != "ro,nosuid,nodev,noexec" ]; then
    echo "mount stand-in: unexpected arguments: $*" >&2
    exit 99
fi
case "$3" in */dev/disk/by-label/*) ;; *) echo "mount stand-in: not a by-label device: $3" >&2; exit 99 ;; esac
case "$4" in */run/vgpu-hook/*) ;; *) echo "mount stand-in: unexpected mount point: $4" >&2; exit 99 ;; esac
[ -d "$3" ] || { echo "mount: $3: special device does not exist" >&2; exit 32; }
[ -d "$4" ] && [ -z "$(ls -A "$4")" ] || { echo "mount stand-in: $4 is not an empty directory" >&2; exit 99; }
cp -a "$3/." "$4/"
"#;

const UMOUNT: &str = r#"#!/bin/sh
echo "umount $*" >> "$VGPU_TEST_LOG"
if [ "$#" -ne 1 ]; then
    echo "umount stand-in: unexpected arguments: $*" >&2
    exit 99
fi
case "$1" in */run/vgpu-hook/*) ;; *) echo "umount stand-in: unexpected mount point: $1" >&2; exit 99 ;; esac
find "$1" -mindepth 1 -delete
"#;

/// What a run printed and returned.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// A test host.
pub struct Host {
    pub dir: TempDir,
    pub root: PathBuf,
    pub bin: PathBuf,
    pub log: PathBuf,
    pub hook: PathBuf,
}

fn put(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

impl Host {
    /// A root as the installer leaves it: its first-boot directory, `lo`
    /// and one NIC, a placeholder serial and no UUID.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let bin = dir.path().join("bin");
        fs::create_dir_all(root.join("var/lib/proxmox-first-boot")).unwrap();
        fs::create_dir_all(&bin).unwrap();
        for (name, text) in [
            ("systemctl", SYSTEMCTL),
            ("systemd-run", SYSTEMD_RUN),
            ("mount", MOUNT),
            ("umount", UMOUNT),
        ] {
            let p = bin.join(name);
            fs::write(&p, text).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let host = Host {
            log: dir.path().join("calls.log"),
            hook: dir.path().join("first-boot-hook"),
            root,
            bin,
            dir,
        };
        host.set_ids(&["52:54:00:00:00:01"], "To Be Filled By O.E.M.", None);
        host
    }

    /// Replaces the NICs, the DMI serial and UUID.
    pub fn set_ids(&self, macs: &[&str], serial: &str, uuid: Option<&str>) {
        let net = self.root.join("sys/class/net");
        let _ = fs::remove_dir_all(&net);
        put(&net.join("lo/address"), "00:00:00:00:00:00\n");
        for (i, m) in macs.iter().enumerate() {
            put(&net.join(format!("eth{i}/address")), &format!("{m}\n"));
        }
        let dmi = self.root.join("sys/class/dmi/id");
        put(&dmi.join("product_serial"), &format!("{serial}\n"));
        match uuid {
            Some(u) => put(&dmi.join("product_uuid"), &format!("{u}\n")),
            None => {
                let _ = fs::remove_file(dmi.join("product_uuid"));
            }
        }
    }

    /// Writes the hook: the template with `config`'s trailer.
    pub fn make_hook(&self, config: &HookConfig) {
        let mut bytes = fs::read(template()).unwrap();
        bytes.extend(config.trailer().unwrap());
        fs::write(&self.hook, bytes).unwrap();
        fs::set_permissions(&self.hook, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Copies `bundle` to `<root><dir>/<file>`.
    pub fn place(&self, dir: &str, file: &str, bundle: &Path) {
        let dest = self.root.join(dir.trim_start_matches('/')).join(file);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(bundle, dest).unwrap();
    }

    /// A stick labelled `label` holding `files` (name, source), reachable
    /// as `<root>/dev/disk/by-label/<label>`.
    pub fn stick(&self, label: &str, files: &[(&str, &Path)]) {
        let (stick, link) = self.stick_unplugged(label, files);
        symlink(&stick, link).unwrap();
    }

    /// The stick's directory and where its by-label link goes, the link
    /// not made yet (udev has not seen the stick).
    pub fn stick_unplugged(&self, label: &str, files: &[(&str, &Path)]) -> (PathBuf, PathBuf) {
        let stick = self.dir.path().join("sticks").join(label);
        fs::create_dir_all(&stick).unwrap();
        for (name, src) in files {
            let dest = stick.join(name);
            fs::create_dir_all(dest.parent().unwrap()).unwrap();
            fs::copy(src, dest).unwrap();
        }
        let link = self.root.join("dev/disk/by-label").join(label);
        fs::create_dir_all(link.parent().unwrap()).unwrap();
        (stick, link)
    }

    /// Runs the hook with `args`, the stand-ins first on PATH.
    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Ran {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new(&self.hook);
        cmd.args(args)
            .env("PATH", path)
            .env("VGPU_TEST_LOG", &self.log)
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = spawn_retrying_busy(&mut cmd);
        Ran {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `fully-up` and asserts a refusal: exit code 1, each of `says`
    /// in stderr, the root unchanged (the whole tree compared), no command
    /// run.
    pub fn run_refused(&self, says: &[&str]) -> Ran {
        let before = tree(&self.root);
        let ran = self.run();
        assert_eq!(ran.code, Some(1), "{}", ran.all());
        for text in says {
            assert!(ran.stderr.contains(text), "no {text:?} in:\n{}", ran.stderr);
        }
        assert_eq!(tree(&self.root), before, "the root changed");
        assert!(self.calls().is_empty(), "{:?}", self.calls());
        ran
    }

    /// `fully-up --root ROOT`.
    pub fn run(&self) -> Ran {
        self.run_with(&["fully-up", "--root", self.root.to_str().unwrap()], &[])
    }

    /// The stand-ins' calls, in order.
    pub fn calls(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The marker's text.
    pub fn marker(&self) -> Option<String> {
        fs::read_to_string(self.root.join("var/lib/proxmox-first-boot/vgpu-hook.done")).ok()
    }
}

pub const STARTED: [&str; 2] = [
    "systemctl daemon-reload",
    "systemctl start --no-block vgpu-firstboot.service",
];

/// One node of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir(u32),
    File(u32, Vec<u8>),
    Link(PathBuf),
}

/// Every path under `root` with its type, mode and content.
pub fn tree(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let m = fs::symlink_metadata(&p).unwrap();
        let mode = m.permissions().mode() & 0o7777;
        if m.file_type().is_symlink() {
            out.insert(rel, Node::Link(fs::read_link(&p).unwrap()));
        } else if m.is_dir() {
            out.insert(rel, Node::Dir(mode));
            walk(root, &p, out);
        } else {
            out.insert(rel, Node::File(mode, fs::read(&p).unwrap()));
        }
    }
}

/// A small HTTP/1.0 server on 127.0.0.1 serving `files` (URL path ->
/// bytes), 404 for anything else; records the paths asked for.
pub struct Http {
    pub base: String,
    pub hits: Arc<Mutex<Vec<String>>>,
}

pub fn http(files: Vec<(String, Vec<u8>)>) -> Http {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    let hits = Arc::new(Mutex::new(Vec::new()));
    let seen = hits.clone();
    let files: BTreeMap<String, Vec<u8>> = files.into_iter().collect();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&req);
            let path = text.split_whitespace().nth(1).unwrap_or("").to_owned();
            seen.lock().unwrap().push(path.clone());
            let _ = match files.get(&path) {
                Some(body) => s
                    .write_all(
                        format!(
                            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|()| s.write_all(body)),
                None => s.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
            };
        }
    });
    Http { base, hits }
}

/// `openssl s_server -WWW` serving `dir` over TLS with a throwaway
/// self-signed certificate made by `openssl req`; killed when dropped.
pub struct Https {
    pub base: String,
    pub fingerprint: String,
    child: Child,
}

impl Drop for Https {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn https(dir: &Path, certs: &Path) -> Https {
    let (cert, key) = (certs.join("cert.pem"), certs.join("key.pem"));
    let ok = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(ok.success());
    let fp = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    let fp = String::from_utf8(fp.stdout).unwrap();
    let fingerprint = fp.trim().rsplit('=').next().unwrap().to_owned();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("openssl")
        .args(["s_server", "-WWW", "-quiet", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Https {
        base: format!("https://127.0.0.1:{port}/"),
        fingerprint,
        child,
    }
}

/// `cmd.output()`, tried again while exec says ETXTBSY: the hook was just
/// written, and a test on another thread that forks in that moment holds
/// the file open for writing until its child execs (close-on-exec).
fn spawn_retrying_busy(cmd: &mut Command) -> std::process::Output {
    const ETXTBSY: i32 = 26;
    let mut tries = 0;
    loop {
        match cmd.output() {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            out => return out.unwrap(),
        }
    }
}

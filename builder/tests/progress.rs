//! Progress bars: drawn on a terminal for large files only, never into a
//! pipe. The terminal is a real pty (`script` from util-linux).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/pinned.rs"]
mod pinned;
#[path = "support/run.rs"]
mod run;

/// A large fake driver (a makeself-like header, then zeros: a sparse file,
/// cheap to make) and a native profile pinning its sha256.
struct Large {
    dir: tempfile::TempDir,
}

const SIZE: u64 = 80 << 20;

impl Large {
    fn new() -> Self {
        Self::make(|driver| {
            fs::write(driver, b"#!/bin/sh\n# a large fake driver\n").unwrap();
            fs::OpenOptions::new()
                .write(true)
                .open(driver)
                .unwrap()
                .set_len(SIZE)
                .unwrap();
        })
    }

    /// A driver that does not compress: its bundle is as large.
    fn incompressible() -> Self {
        Self::make(|driver| {
            let mut random = fs::File::open("/dev/urandom").unwrap().take(SIZE);
            std::io::copy(&mut random, &mut fs::File::create(driver).unwrap()).unwrap();
        })
    }

    fn make(write: impl FnOnce(&Path)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let driver = dir.path().join("driver.run");
        write(&driver);
        let sha = vgpu_bake::hash::digest_bytes(&fs::read(&driver).unwrap()).sha256;
        pinned::write_profile_and_agent(dir.path(), &sha);
        Large { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `bake` of the profile with the driver file, into OUT.
    fn args(&self, out: &str) -> Vec<String> {
        [
            "bake",
            s(&self.path("p.toml")),
            "--out",
            s(&self.path(out)),
            "--cache",
            s(&self.path("cache")),
            "--agent",
            s(&self.path("agent")),
            "--driver-file",
            s(&self.path("driver.run")),
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn assert_no_bar(what: &str, text: &str) {
    assert!(
        !text.contains('\x1b') && !text.contains('\r'),
        "{what} has terminal control bytes: {text:?}"
    );
    for word in ["compressing ", "importing ", "hashing ", "installing "] {
        assert!(!text.contains(word), "{what} has a bar ({word:?}): {text}");
    }
}

#[test]
fn a_large_bake_into_a_pipe_draws_no_bar() {
    let large = Large::new();
    let out = Command::new(env!("CARGO_BIN_EXE_vgpu-bake"))
        .args(large.args("o"))
        .current_dir(run::workspace())
        .env("SOURCE_DATE_EPOCH", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_no_bar("stdout", &stdout);
    assert_no_bar("stderr", &stderr);
}

/// The demo bake's output through a pipe, as it was before bars existed:
/// the bundle lines on stdout, the notes on stderr, nothing else.
#[test]
fn a_demo_bake_into_a_pipe_prints_what_it_always_did() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("agent"), "#!/bin/sh\necho fake agent\n").unwrap();
    let (o, c, a) = (
        dir.path().join("o"),
        dir.path().join("c"),
        dir.path().join("agent"),
    );
    let (code, stdout, stderr) = run::vgpu_bake(&[
        "bake",
        "profiles/demo.toml",
        "--out",
        s(&o),
        "--cache",
        s(&c),
        "--agent",
        s(&a),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let tmp = s(dir.path());
    let stdout = stdout.replace(tmp, "TMP");
    let stderr = masked(&stderr.replace(tmp, "TMP"));
    assert_eq!(stdout, "TMP/o/demo.cpio.zst\n");
    assert_eq!(stderr, DEMO_STDERR, "stderr changed:\n{stderr}");
}

/// What a demo bake printed on stderr before bars existed (vgpu-bake at
/// b528df6), with the bundle's size and sha256 masked: they change with
/// the agent and the bundle format, which is not this test's business.
const DEMO_STDERR: &str = "\
driver vgpu-bake-demo-driver-1.0-vgpu-kvm.run: demo installer from data/demo imported into the cache
frame cache TMP/c/frames: 0 large file(s) copied from it, 0 stored
DEMO bundle: its driver is the stand-in installer from data/demo, not an NVIDIA driver
baked demo: 21 entries, N bytes, sha256 SHA
";

/// `text` with every 64-hex-digit word replaced by `SHA` and every number
/// before " bytes" by `N`.
fn masked(text: &str) -> String {
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let words: Vec<&str> = line.split(' ').collect();
        let masked: Vec<&str> = words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let hex = w.trim_end();
                if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    if w.ends_with('\n') { "SHA\n" } else { "SHA" }
                } else if words.get(i + 1).is_some_and(|n| n.starts_with("bytes"))
                    && w.bytes().all(|b| b.is_ascii_digit())
                {
                    "N"
                } else {
                    w
                }
            })
            .collect();
        out.push_str(&masked.join(" "));
    }
    out
}

/// On a terminal (a pty made by `script`), a large driver's compression is
/// shown on a bar; its import into the cache rides on the same read (one
/// pass, no bar of its own) unless the frame cache spares the compression.
#[test]
fn a_large_bake_on_a_terminal_draws_a_bar() {
    let large = Large::new();
    let text = on_a_pty(&large.args("o"), None);
    assert!(
        text.contains("compressing var/lib/vgpu-firstboot/payload/driver/"),
        "no bake bar in: {text:?}"
    );
    assert!(
        !text.contains("importing "),
        "a separate import pass before the bake: {text:?}"
    );
    assert!(
        text.contains("driver imported ") && text.contains("checksum ok"),
        "{text:?}"
    );
    assert!(text.contains("\x1b[36m"), "a coloured bar: {text:?}");
    // The bundle's path is still printed after the bars.
    assert!(text.contains("o/p.cpio.zst"), "{text:?}");

    // NO_COLOR: the same bar without colour codes (the import again; the
    // frame cache now spares the compression).
    let text = on_a_pty(&large.args("o2"), Some("1"));
    assert!(
        text.contains("importing NVIDIA-Linux-x86_64-"),
        "no import bar in: {text:?}"
    );
    assert!(
        !text.contains("\x1b[3"),
        "colour despite NO_COLOR: {text:?}"
    );
}

/// `install` of a large bundle on a terminal shows a bar; into a pipe not.
#[test]
fn a_large_install_on_a_terminal_draws_a_bar() {
    let large = Large::incompressible();
    let (code, out, err) = run::vgpu_bake(
        &large
            .args("o")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(code, 0, "{out}{err}");
    let bundle = large.path("o/p.cpio.zst");
    assert!(fs::metadata(&bundle).unwrap().len() >= 64 << 20);
    let install = |root: &str| {
        fs::create_dir(large.path(root)).unwrap();
        ["install", s(&bundle), "--root", s(&large.path(root))].map(str::to_owned)
    };
    let text = on_a_pty(&install("r1"), None);
    assert!(
        text.contains("installing p.cpio.zst"),
        "no install bar in: {text:?}"
    );
    let (code, out, err) = run::vgpu_bake(&install("r2").each_ref().map(String::as_str));
    assert_eq!(code, 0, "{out}{err}");
    assert_no_bar("stdout", &out);
    assert_no_bar("stderr", &err);
}

/// `vgpu-bake ARGS` on a pty (`script -qfec`): what the terminal got.
fn on_a_pty(args: &[String], no_color: Option<&str>) -> String {
    let exe = env!("CARGO_BIN_EXE_vgpu-bake");
    let command = std::iter::once(exe.to_owned())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = Command::new("script");
    cmd.args(["-qfec", &command, "/dev/null"])
        .current_dir(run::workspace())
        .env("SOURCE_DATE_EPOCH", "0")
        .env_remove("NO_COLOR");
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let out = cmd.output().expect("running script (util-linux)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    text
}

//! A simulated host for the real `vgpu-firstboot` binary: a fixture root
//! with an installed bundle, stand-in commands first in `PATH` that record
//! how they were called, and a "reboot" that does what the boot loader and
//! kernel would (new boot id, kernel arguments from the boot config,
//! nouveau gone after the blacklist).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vgpu_plan::layout;
use vgpu_plan::manifest::{Manifest, ManifestFile, mode_string};
use vgpu_plan::plan::{PayloadFile, Plan};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn sha256(bytes: &[u8]) -> String {
    vgpu_firstboot::sha256::sha256_hex(bytes)
}

/// Stand-ins: each logs `name args` to $VGPU_TEST_LOG; some answer.
/// (`dpkg-deb` is the real one: it only reads the payload .deb.)
const STUB: &str = r#"#!/bin/sh
name=$(basename "$0")
if [ $# -gt 0 ]; then echo "$name $*"; else echo "$name"; fi >>"$VGPU_TEST_LOG"
case " ${VGPU_TEST_CRASH_IN:-} " in
  *" $name "*)
    if [ ! -e "$VGPU_TEST_DIR/crashed-$name" ]; then
      : >"$VGPU_TEST_DIR/crashed-$name"
      kill -9 "$PPID"; sleep 5
    fi ;;
esac
case " ${VGPU_TEST_FAIL:-} " in
  *" $name "*) echo "E: simulated failure of $name" >&2; exit 100 ;;
esac
case "$name $1" in
  "dpkg-query "*) exit 1 ;;
  "systemctl is-enabled"|"systemctl is-active") exit 1 ;;
  "mdevctl types") echo "0000:01:00.0"; echo "  nvidia-222"; echo "    Name: GRID T4-1Q" ;;
  "nvidia-smi vgpu") echo "GPU 00000000:01:00.0" ;;
  "mokutil --test-key") echo "not enrolled"; exit 1 ;;
esac
exit 0
"#;

pub const STUBS: &[&str] = &[
    "apt-get",
    "apt-cache",
    "dpkg-query",
    "update-grub",
    "update-initramfs",
    "proxmox-boot-tool",
    "systemctl",
    "nvidia-smi",
    "mdevctl",
    "mokutil",
    "openssl",
    "zpool",
];

/// What [`SimHost::converge`] saw.
#[derive(Debug)]
pub struct Boots {
    /// stdout and stderr of every run.
    pub outs: Vec<String>,
    /// Runs that ended in a power cut.
    pub cuts: usize,
}

#[derive(Debug)]
pub struct SimHost {
    pub dir: tempfile::TempDir,
    pub boots: u32,
}

impl SimHost {
    /// Fixture host `fixture` with the golden plan `plan` installed as a
    /// bundle would lay it (plan, manifest, payload, unit, wants link).
    pub fn new(fixture: &str, plan: &str) -> SimHost {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let st = Command::new("cp")
            .arg("-a")
            .arg(workspace().join("tests/hosts").join(fixture))
            .arg(&root)
            .status()
            .unwrap();
        assert!(st.success());
        let stubs = dir.path().join("bin");
        fs::create_dir(&stubs).unwrap();
        for s in STUBS {
            let p = stubs.join(s);
            fs::write(&p, STUB).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let host = SimHost { dir, boots: 1 };
        host.install_bundle(plan);
        host
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("commands.log")
    }

    /// Every stand-in call so far, one per line.
    pub fn commands(&self) -> Vec<String> {
        fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    fn install_bundle(&self, plan_name: &str) {
        let root = self.root();
        let text = fs::read_to_string(
            workspace()
                .join("tests/plans")
                .join(format!("{plan_name}.toml")),
        )
        .unwrap();
        let mut plan = Plan::from_toml(&text).unwrap();
        let mut files: BTreeMap<String, (Vec<u8>, u32)> = BTreeMap::new();
        if let Some(d) = plan.driver.as_mut() {
            let bytes =
                fs::read(workspace().join("data/demo/vgpu-bake-demo-driver-1.0-vgpu-kvm.run"))
                    .unwrap();
            let rel = format!("driver/{}", d.filename);
            d.sha256 = sha256(&bytes).parse().unwrap();
            d.size = bytes.len() as u64;
            d.installer = PayloadFile {
                path: rel.clone(),
                sha256: d.sha256.clone(),
                size: d.size,
            };
            files.insert(format!("{}/{rel}", layout::PAYLOAD_DIR), (bytes, 0o755));
        }
        for deb in plan.host.offline_debs.iter_mut() {
            let name = deb.path.rsplit('/').next().unwrap().to_string();
            let bytes = fs::read(workspace().join("data/demo").join(&name)).unwrap();
            deb.sha256 = sha256(&bytes).parse().unwrap();
            deb.size = bytes.len() as u64;
            files.insert(
                format!("{}/{}", layout::PAYLOAD_DIR, deb.path),
                (bytes, 0o644),
            );
        }
        if let Some(u) = plan.unlock.as_mut() {
            let bytes = b"stand-in unlock library\n".to_vec();
            u.library.sha256 = sha256(&bytes).parse().unwrap();
            u.library.size = bytes.len() as u64;
            files.insert(
                format!("{}/{}", layout::PAYLOAD_DIR, u.library.path),
                (bytes, 0o644),
            );
        }
        files.insert(
            layout::PLAN_FILE.into(),
            (plan.to_toml().into_bytes(), 0o600),
        );
        files.insert(
            layout::UNIT_FILE.into(),
            (vgpu_plan::unit::render().into_bytes(), 0o644),
        );
        let manifest = Manifest {
            schema: 1,
            name: plan.name.clone(),
            files: files
                .iter()
                .map(|(p, (b, m))| ManifestFile {
                    path: p.clone(),
                    sha256: sha256(b),
                    size: b.len() as u64,
                    mode: mode_string(*m),
                })
                .collect(),
        };
        files.insert(
            layout::MANIFEST_FILE.into(),
            (manifest.to_toml().into_bytes(), 0o644),
        );
        for (p, (b, m)) in files {
            let path = root.join(p);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, b).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(m)).unwrap();
        }
        let link = root.join(layout::UNIT_WANTS_LINK);
        fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(layout::UNIT_WANTS_TARGET, link).unwrap();
    }

    /// Runs the real agent; `env` adds variables (faults, crashes).
    pub fn agent(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let path = format!("{}:/usr/bin:/bin", self.dir.path().join("bin").display());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vgpu-firstboot"));
        cmd.arg("--root")
            .arg(self.root())
            .args(args)
            .env("PATH", path)
            .env("VGPU_TEST_LOG", self.log_path())
            .env("VGPU_TEST_DIR", self.dir.path())
            .env("VGPU_DEMO_LOG", self.dir.path().join("demo-installer.log"))
            .env("VGPU_DEMO_PREFIX", self.root())
            .env_remove("VGPU_FIRSTBOOT_FAULT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// `run` with the unit's condition: skipped when the done marker exists.
    pub fn boot_run(&self, env: &[(&str, &str)]) -> Option<Output> {
        if self.root().join(layout::DONE_MARKER).exists()
            || !self.root().join(layout::UNIT_WANTS_LINK).exists()
        {
            return None;
        }
        Some(self.agent(&["run"], env))
    }

    /// A reboot after which the boot loader did not pick up the new kernel
    /// arguments (a stale ESP, say): only the boot id changes.
    pub fn reboot_without_new_args(&mut self) {
        self.boots += 1;
        fs::write(
            self.root().join("proc/sys/kernel/random/boot_id"),
            format!("00000000-0000-4000-8000-{:012x}\n", self.boots),
        )
        .unwrap();
    }

    /// What a reboot does to the files the agent reads.
    pub fn reboot(&mut self) {
        self.boots += 1;
        let root = self.root();
        fs::write(
            root.join("proc/sys/kernel/random/boot_id"),
            format!("00000000-0000-4000-8000-{:012x}\n", self.boots),
        )
        .unwrap();
        let mut cmdline = fs::read_to_string(root.join("proc/cmdline"))
            .unwrap()
            .trim()
            .to_string();
        let mut extra = String::new();
        if let Ok(dropin) = fs::read_to_string(root.join("etc/default/grub.d/vgpu-bake.cfg")) {
            for line in dropin
                .lines()
                .filter(|l| l.starts_with("GRUB_CMDLINE_LINUX_DEFAULT="))
            {
                let v = line.split_once('=').unwrap().1.trim_matches('"');
                extra.push_str(&v.replace("${GRUB_CMDLINE_LINUX_DEFAULT}", ""));
                extra.push(' ');
            }
        }
        if let Ok(k) = fs::read_to_string(root.join("etc/kernel/cmdline")) {
            extra = k;
        }
        for arg in extra.split_whitespace() {
            if !cmdline.split_whitespace().any(|a| a == arg) {
                cmdline.push(' ');
                cmdline.push_str(arg);
            }
        }
        fs::write(root.join("proc/cmdline"), format!("{cmdline}\n")).unwrap();
        if root
            .join("etc/modprobe.d/vgpu-bake-blacklist.conf")
            .exists()
        {
            let _ = fs::remove_dir_all(root.join("sys/module/nouveau"));
        }
    }

    /// Boots until the agent is done or stops, at most `max` boots: boots
    /// carry `env` until a power cut happens (a phase 2 step's fault fires
    /// in the second boot), later boots run clean. `after_cut` sees the host
    /// right after each cut.
    pub fn converge(&mut self, env: &[(&str, &str)], max: u32, after_cut: fn(&SimHost)) -> Boots {
        let mut b = Boots {
            outs: Vec::new(),
            cuts: 0,
        };
        for _ in 0..max {
            let Some(out) = self.boot_run(if b.cuts == 0 { env } else { &[] }) else {
                break;
            };
            let cut = out.status.code().is_none();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            b.outs
                .push(format!("{text}{}", String::from_utf8_lossy(&out.stderr)));
            if cut {
                b.cuts += 1;
                after_cut(self);
            }
            if cut || text.contains("rebooting") {
                self.reboot();
            } else if !text.contains("done") {
                break;
            }
        }
        b
    }

    /// Files under the root with their contents (symlinks as their target),
    /// leaving out the agent's own bookkeeping.
    pub fn tree(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let root = self.root();
        walk(&root, &root, &mut out);
        out.retain(|k, _| {
            !k.starts_with("var/lib/vgpu-firstboot/state.toml")
                && !k.starts_with("var/lib/vgpu-firstboot/lock")
                && !k.starts_with("proc/sys/kernel/random/boot_id")
        });
        out
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let meta = fs::symlink_metadata(&p).unwrap();
        if meta.file_type().is_symlink() {
            out.insert(rel, format!("-> {}", fs::read_link(&p).unwrap().display()));
        } else if meta.is_dir() {
            out.insert(rel.clone(), "dir".into());
            walk(root, &p, out);
        } else {
            let body = fs::read(&p).unwrap();
            out.insert(
                rel,
                format!(
                    "{:o} {}",
                    meta.permissions().mode() & 0o7777,
                    String::from_utf8_lossy(&body)
                ),
            );
        }
    }
}

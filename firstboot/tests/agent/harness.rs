//! A simulated host for the real `vgpu-firstboot` binary: a fixture root
//! with an installed bundle, stand-in commands inside it that record how
//! they were called, and a "reboot" that does what the boot loader and
//! kernel would (new boot id, kernel arguments from the boot config,
//! nouveau gone after the blacklist).
//!
//! `run` and `retry` chroot into the root, so everything their commands
//! need is inside it: this machine's `dash` as `/bin/sh` and GNU
//! `sha256sum`, with their libraries, and under [`TEST_DIR`] a static
//! busybox for the other tools the stand-ins and the demo driver installer
//! use, the stand-ins, and the files they write.
//! The tests run as root (the agent needs it to enter the root).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vgpu_plan::layout;
use vgpu_plan::manifest::{Manifest, ManifestEntry, SCHEMA};
use vgpu_plan::plan::{KernelPin, PayloadFile, Phase, Plan, Step, StepKind};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn sha256(bytes: &[u8]) -> String {
    vgpu_firstboot::sha256::sha256_hex(bytes)
}

/// The tests' directory inside the root, as the agent's commands see it:
/// `bin` (busybox, its applets, GNU `sha256sum`), `stubs` (the stand-ins,
/// first in `PATH`) and the logs. [`SimHost::tree`] leaves it out.
pub const TEST_DIR: &str = "/vgpu-test";

/// The agent's node_exporter textfile, in the default directory.
pub const TEXTFILE: &str = "var/lib/prometheus/node-exporter/vgpu-firstboot.prom";

/// `PATH` inside the root.
pub const PATH: &str = "/vgpu-test/stubs:/vgpu-test/bin";

/// The unlock library a bundle of an unlock plan carries, unless the test
/// lays another ([`SimHost::lay_bundle`]).
pub const STAND_IN_LIBRARY: &[u8] = b"stand-in unlock library\n";

/// Stand-ins: each logs `name args` to $VGPU_TEST_LOG; some answer
/// (`systemctl is-enabled U` succeeds only for a unit in $VGPU_TEST_ENABLED).
const STUB: &str = r#"#!/bin/sh
name=$(basename "$0")
if [ $# -gt 0 ]; then echo "$name $*"; else echo "$name"; fi >>"$VGPU_TEST_LOG"
[ -z "${VGPU_TEST_MOUNTINFO:-}" ] || cat /proc/self/mountinfo >"$VGPU_TEST_MOUNTINFO"
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
  "systemctl is-enabled") case " ${VGPU_TEST_ENABLED:-} " in *" $2 "*) exit 0 ;; esac; exit 1 ;;
  "systemctl is-active") exit 1 ;;
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
    "update-initramfs",
    "proxmox-boot-tool",
    "systemctl",
    "nvidia-smi",
    "mdevctl",
    "mokutil",
    "openssl",
    "zpool",
];

/// `dpkg-deb` reads the payload .deb for real (busybox's), called only the
/// way the agent calls it: busybox prints every control field and takes no
/// field names.
const DPKG_DEB: &str = r#"#!/bin/sh
if [ $# -ne 4 ] || [ "$1" != -f ] || [ "$3 $4" != "Package Version" ] || [ ! -f "$2" ]; then
  echo "dpkg-deb stand-in: unexpected call: dpkg-deb $*" >&2; exit 2
fi
exec busybox dpkg-deb -f "$2"
"#;

/// The crash hook of the stateful stand-ins (`VGPU_TEST_CRASH_IN`): kills
/// the agent, once per program, before the call has any effect.
macro_rules! crash_hook {
    () => {
        r#"case " ${VGPU_TEST_CRASH_IN:-} " in
  *" $name "*)
    if [ ! -e "$VGPU_TEST_DIR/crashed-$name" ]; then
      : >"$VGPU_TEST_DIR/crashed-$name"
      kill -9 "$PPID"; exit 137
    fi ;;
esac
"#
    };
}

/// `mkcfg`, shared by `update-grub` and the kernel packages' install: the
/// grub.cfg `update-grub` writes, the fixture's ([`GRUB_CFG_BASE`]) with an
/// "Advanced options" entry for each `proxmox-kernel-V-pve[-signed]` in
/// dpkg's record (as `10_linux` lists installed kernels), then the output
/// of every executable `/etc/grub.d` script.
macro_rules! mkcfg {
    () => {
        r#"mkcfg() {
  k=$VGPU_TEST_DIR/kernels.cfg; : >"$k"
  for v in $(sed -n 's/^proxmox-kernel-\([^ ]*-pve\)[-a-z]* .*/\1/p' /var/lib/dpkg/status 2>/dev/null); do
    printf "\tmenuentry 'Proxmox VE GNU/Linux, with Linux %s' --class os \$menuentry_id_option 'gnulinux-%s-advanced-fixture' {\n\t\tlinux\t/boot/vmlinuz-%s root=/dev/mapper/pve-root ro  quiet\n\t\tinitrd\t/boot/initrd.img-%s\n\t}\n" "$v" "$v" "$v" "$v" >>"$k"
  done
  sed "/^submenu /r $k" "$VGPU_TEST_DIR/grub.cfg.base" >/boot/grub/grub.cfg || exit 1
  for s in /etc/grub.d/*; do
    if [ -f "$s" ] && [ -x "$s" ]; then "$s" >>/boot/grub/grub.cfg || exit 1; fi
  done
}
"#
    };
}

/// `p` with a kernel pin, its kernel-pin step where the builder puts it:
/// before apt-install (else before kernel-args).
pub fn add_kernel_pin(p: &mut Plan, pin: KernelPin) {
    p.host.kernel_pin = Some(pin);
    let at = p
        .steps
        .iter()
        .position(|s| matches!(s.kind, StepKind::AptInstall | StepKind::KernelArgs))
        .unwrap();
    p.steps.insert(
        at,
        Step {
            phase: Phase::One,
            kind: StepKind::KernelPin,
            why: "pin the kernel".into(),
        },
    );
}

/// The boot loader stand-ins of the trial boot, which keep what the real
/// tools keep and fail (stderr, exit 2) when called in any other way:
/// `update-grub` writes `/boot/grub/grub.cfg` (`mkcfg`); `grub-reboot ID` needs `--id ID` in grub.cfg and sets
/// `next_entry` in grubenv; `grub-editenv /boot/grub/grubenv unset
/// next_entry` clears it; `mount -t vfat /dev/disk/by-uuid/U DIR` copies
/// the simulated ESP `esp/U` into the empty DIR and `umount DIR` copies it
/// back; `bootctl set-oneshot E` needs `loader/entries/E` on every ESP
/// (`""` clears) and keeps it in `oneshot`, as the EFI variable would.
const BOOT_TOOLS: &str = concat!(
    r#"#!/bin/sh
name=$(basename "$0")
if [ $# -gt 0 ]; then echo "$name $*"; else echo "$name"; fi >>"$VGPU_TEST_LOG"
bad() { echo "$name stand-in: unexpected call: $name $*" >&2; exit 2; }
"#,
    crash_hook!(),
    mkcfg!(),
    r#"esp=$VGPU_TEST_DIR/esp
case "$name" in
  update-grub)
    [ $# -eq 0 ] || bad
    mkcfg ;;
  grub-reboot)
    [ $# -eq 1 ] && grep -q -- "--id $1 " /boot/grub/grub.cfg || bad
    echo "next_entry=$1" >/boot/grub/grubenv ;;
  grub-editenv)
    [ $# -eq 3 ] && [ "$1" = /boot/grub/grubenv ] && [ "$2 $3" = "unset next_entry" ] || bad
    rm -f /boot/grub/grubenv ;;
  mount)
    [ $# -eq 4 ] && [ "$1" = -t ] && [ "$2" = vfat ] || bad
    uuid=${3#/dev/disk/by-uuid/}
    [ "$uuid" != "$3" ] && [ -d "$esp/$uuid" ] && [ ! -e "$esp/$uuid.mounted" ] || bad
    [ -d "$4" ] && [ -z "$(ls -A "$4")" ] || bad
    cp -a "$esp/$uuid/." "$4/" && echo "$4" >"$esp/$uuid.mounted" ;;
  umount)
    [ $# -eq 1 ] || bad
    uuid=
    for m in "$esp"/*.mounted; do
      [ -f "$m" ] && [ "$(cat "$m")" = "$1" ] && uuid=$(basename "$m" .mounted)
    done
    [ -n "$uuid" ] || bad
    rm -rf "$esp/$uuid" && cp -a "$1" "$esp/$uuid" && rm -rf "$1" && mkdir "$1" && rm "$esp/$uuid.mounted" ;;
  bootctl)
    [ $# -eq 2 ] && [ "$1" = set-oneshot ] || bad
    if [ -z "$2" ]; then rm -f "$VGPU_TEST_DIR/oneshot"; exit 0; fi
    for e in "$esp"/*/; do [ -f "$e/loader/entries/$2" ] || bad; done
    echo "$2" >"$VGPU_TEST_DIR/oneshot" ;;
  *) bad ;;
esac
exit 0
"#
);

/// The boot loader tools [`BOOT_TOOLS`] stands in for.
pub const BOOT_TOOL_NAMES: &[&str] = &[
    "update-grub",
    "grub-reboot",
    "grub-editenv",
    "mount",
    "umount",
    "bootctl",
];

/// The fixture's grub.cfg, in the tests' directory: `update-grub`'s base.
pub const GRUB_CFG_BASE: &str = "grub.cfg.base";

/// The package manager and boot tool stand-ins of [`SimHost::package_db`]:
/// they keep dpkg's record of installed packages (`name version` lines in
/// [`PACKAGE_DB`]) so `apt-get install` adds to it, `apt-get purge -y`
/// removes from it (and fails for a package that is not installed, or
/// without `-y`), `dpkg-query -W` answers from it, and `proxmox-boot-tool
/// kernel pin|unpin` writes or removes the pin file. A kernel package's
/// install does what its hooks do: GRUB's grub.cfg written again (`mkcfg`),
/// and on each simulated ESP its loader entry `proxmox-V.conf`, as
/// `proxmox-boot-tool refresh` writes it. The crash hook
/// (`VGPU_TEST_CRASH_IN`) kills the agent before the call has any effect.
const STATEFUL: &str = concat!(
    r#"#!/bin/sh
name=$(basename "$0")
echo "$name $*" >>"$VGPU_TEST_LOG"
"#,
    crash_hook!(),
    mkcfg!(),
    r#"db=/var/lib/dpkg/status
log=/var/log/dpkg.log
# dpkg's log, when there is one, gets a line per package newly installed;
# mdevctl pulls in a dependency, as apt would.
add() {
  grep -q "^$1 " "$db" && return 0
  echo "$1 $2" >>"$db"
  [ ! -e "$log" ] || echo "2026-12-03 06:00:00 install $1:amd64 <none> $2" >>"$log"
  [ "$1" != mdevctl ] || add libmdevctl-dep-stand-in 1.0
  case "$1" in proxmox-kernel-*-pve*)
    [ ! -f "$VGPU_TEST_DIR/grub.cfg.base" ] || mkcfg
    v=${1#proxmox-kernel-}; v=${v%-signed}
    for e in "$VGPU_TEST_DIR"/esp/*/loader/entries; do
      [ -d "$e" ] || continue
      printf 'title    Proxmox Virtual Environment\nversion  %s\noptions  %s\nlinux    /EFI/proxmox/%s/vmlinuz-%s\ninitrd   /EFI/proxmox/%s/initrd.img-%s\n' "$v" "$(cat /etc/kernel/cmdline)" "$v" "$v" "$v" "$v" >"$e/proxmox-$v.conf"
    done ;;
  esac
}
case "$name $1" in
  "apt-get install")
    shift; skip=no
    for a in "$@"; do
      if [ $skip = yes ]; then skip=no; continue; fi
      case "$a" in
        -o) skip=yes ;;
        -*) ;;
        *.deb) add "$(busybox dpkg-deb -f "$a" | sed -n 's/^Package: //p')"                    "$(busybox dpkg-deb -f "$a" | sed -n 's/^Version: //p')" ;;
        *) add "$a" 1.0 ;;
      esac
    done ;;
  "apt-get purge")
    [ "${2:-}" = -y ] || { echo "apt-get stand-in: purge without -y: $*" >&2; exit 2; }
    shift 2
    [ $# -gt 0 ] || { echo "apt-get stand-in: purge of nothing" >&2; exit 2; }
    for p in "$@"; do
      grep -q "^$p " "$db" || { echo "E: stand-in: package $p is not installed, a wrong purge" >&2; exit 100; }
    done
    for p in "$@"; do grep -v "^$p " "$db" >"$db.new"; mv "$db.new" "$db"; done ;;
  "apt-get "*) ;;
  "dpkg-query -W")
    for p; do :; done
    line=$(grep "^$p " "$db") || exit 1
    echo "install ok installed ${line#* }" ;;
  "proxmox-boot-tool kernel")
    case "$2" in
      pin) [ -n "${3:-}" ] || exit 2; mkdir -p /etc/kernel; echo "$3" >/etc/kernel/proxmox-boot-pin ;;
      unpin) rm -f /etc/kernel/proxmox-boot-pin ;;
      *) echo "proxmox-boot-tool stand-in: kernel $2?" >&2; exit 2 ;;
    esac ;;
  "proxmox-boot-tool "*) ;;
  *) echo "stand-in: unexpected call $name $*" >&2; exit 2 ;;
esac
exit 0
"#
);

/// dpkg's record of installed packages, as [`STATEFUL`] keeps it.
pub const PACKAGE_DB: &str = "var/lib/dpkg/status";
/// dpkg's log, where [`STATEFUL`] adds a line per package it installs.
pub const DPKG_LOG: &str = "var/log/dpkg.log";

/// busybox applets the stand-ins, the demo driver installer and the agent
/// (`sync`) run.
const APPLETS: &[&str] = &[
    "basename", "dirname", "cat", "sleep", "date", "sync", "mkdir", "grep", "cut", "sed", "chmod",
    "mv", "rm", "cp", "true", "false", "rmdir", "ls", "tail",
];

/// Programs of this machine copied into the root with the libraries `ldd`
/// names, at the same paths: the shell (busybox's would run its own
/// applets ahead of `PATH`) and GNU `sha256sum`, whose `--check --quiet
/// --strict` the demo installer's `--sanity` uses.
const COPIED: &[(&str, &str)] = &[
    ("/bin/dash", "bin/sh"),
    ("/usr/bin/sha256sum", "vgpu-test/bin/sha256sum"),
];

/// The static busybox to copy into roots (package busybox-static): a
/// dynamic one would find no C library inside them.
fn busybox() -> Vec<u8> {
    let bytes = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .find_map(|p| fs::read(p).ok())
        .expect(
            "the agent tests need a static busybox at /bin/busybox: apt-get install busybox-static",
        );
    assert!(
        is_static_elf(&bytes),
        "/bin/busybox is dynamically linked: the agent tests need busybox-static (apt-get install busybox-static)"
    );
    bytes
}

/// An ELF executable without a program interpreter (PT_INTERP).
fn is_static_elf(b: &[u8]) -> bool {
    let u16_at = |o: usize| {
        b.get(o..o + 2)
            .map(|s| u16::from_le_bytes([s[0], s[1]]) as usize)
    };
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .map(|s| u32::from_le_bytes(s.try_into().unwrap()))
    };
    let u64_at = |o: usize| {
        b.get(o..o + 8)
            .map(|s| u64::from_le_bytes(s.try_into().unwrap()))
    };
    if !b.starts_with(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(size), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    (0..count).all(|i| u32_at(phoff as usize + i * size) != Some(3))
}

/// Copies this machine's `program` to `to` under `root`, with every
/// library `ldd` lists at its own path under `root`.
fn copy_with_libs(root: &Path, program: &str, to: &str) {
    let out = Command::new("ldd").arg(program).output().unwrap();
    assert!(out.status.success(), "ldd {program}: {out:?}");
    let libs = String::from_utf8(out.stdout).unwrap();
    let mut files: Vec<(PathBuf, PathBuf)> = vec![(program.into(), root.join(to))];
    for lib in libs.split_whitespace().filter(|w| w.starts_with('/')) {
        files.push((lib.into(), root.join(lib.trim_start_matches('/'))));
    }
    for (from, to) in files {
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        if !to.exists() {
            fs::copy(&from, &to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        }
    }
}

fn write_exec(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

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
    /// A kernel argument whose boot does not come up (panics): a trial boot
    /// with it is followed by the old default, as after a power cycle.
    pub failing_arg: Option<String>,
    /// A kernel whose trial boot panics (the power cycle boots the default).
    pub failing_kernel: Option<String>,
}

impl SimHost {
    /// Fixture host `fixture` with the golden plan `plan` installed as a
    /// bundle would lay it (plan, manifest, payload, unit, wants link).
    pub fn new(fixture: &str, plan: &str) -> SimHost {
        Self::with_plan(fixture, plan, |_| {})
    }

    /// [`SimHost::new`] with the plan changed by `edit` before it is laid.
    pub fn with_plan(fixture: &str, plan: &str, edit: impl FnOnce(&mut Plan)) -> SimHost {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let st = Command::new("cp")
            .arg("-a")
            .arg(workspace().join("tests/hosts").join(fixture))
            .arg(&root)
            .status()
            .unwrap();
        assert!(st.success());
        let host = SimHost {
            dir,
            boots: 1,
            failing_arg: None,
            failing_kernel: None,
        };
        host.install_tools();
        host.install_bundle(plan, edit, STAND_IN_LIBRARY);
        host
    }

    /// A package database with `installed` (`name version`) and the
    /// stand-ins that keep it ([`STATEFUL`]) for `apt-get`, `dpkg-query`
    /// and `proxmox-boot-tool`.
    pub fn package_db(&self, installed: &[&str]) {
        let db = self.root().join(PACKAGE_DB);
        fs::create_dir_all(db.parent().unwrap()).unwrap();
        let text: String = installed.iter().map(|l| format!("{l}\n")).collect();
        fs::write(&db, text).unwrap();
        let log = self.root().join(DPKG_LOG);
        fs::create_dir_all(log.parent().unwrap()).unwrap();
        fs::write(&log, "").unwrap();
        for s in ["apt-get", "dpkg-query", "proxmox-boot-tool"] {
            write_exec(&self.test_path("stubs").join(s), STATEFUL);
        }
    }

    /// The package database's lines.
    pub fn packages(&self) -> Vec<String> {
        fs::read_to_string(self.root().join(PACKAGE_DB))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// Every file, directory and symlink under the root with its mode and
    /// contents, leaving out the tests' own directory, the kernel's view
    /// (`proc`, `sys`: the simulated reboots change them; `dev`, `run`:
    /// the mount points the agent's confinement makes) and the agent's
    /// state directory.
    pub fn whole_tree(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let root = self.root();
        walk(&root, &root, &mut out);
        let own = |k: &str, dir: &str| k == dir || k.starts_with(&format!("{dir}/"));
        out.retain(|k, _| {
            !own(k, TEST_DIR.trim_start_matches('/'))
                && !own(k, "proc")
                && !own(k, "sys")
                && !own(k, "dev")
                && !own(k, "run")
                && !own(k, layout::STATE_DIR)
        });
        out
    }

    /// Lays the bundle of golden plan `plan` (changed by `edit`, with
    /// `library` as its unlock library) over the root, as `vgpu-bake
    /// install` lays a newer bundle over a provisioned host: its files
    /// replace the ones of the same name, the rest stays.
    pub fn lay_bundle(&self, plan: &str, edit: impl FnOnce(&mut Plan), library: &[u8]) {
        self.install_bundle(plan, edit, library);
    }

    /// This machine's real `wget` in the root's `/vgpu-test/bin` (on the
    /// agent's `PATH`), with its libraries: the agent POSTs its progress
    /// with it.
    pub fn install_wget(&self) {
        copy_with_libs(&self.root(), "/usr/bin/wget", "vgpu-test/bin/wget");
    }

    /// The node_exporter textfile in the plan's default directory.
    pub fn textfile(&self) -> PathBuf {
        self.root().join(TEXTFILE)
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// `rel` under the root's [`TEST_DIR`], as the test sees it.
    pub fn test_path(&self, rel: &str) -> PathBuf {
        self.root().join(TEST_DIR.trim_start_matches('/')).join(rel)
    }

    pub fn log_path(&self) -> PathBuf {
        self.test_path("commands.log")
    }

    /// The demo driver installer's log: one line per run.
    pub fn demo_log_path(&self) -> PathBuf {
        self.test_path("demo-installer.log")
    }

    /// Every stand-in call so far, one per line.
    pub fn commands(&self) -> Vec<String> {
        fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// The shell, busybox, its applets and the stand-ins inside the root.
    fn install_tools(&self) {
        let bin = self.test_path("bin");
        let stubs = self.test_path("stubs");
        fs::create_dir_all(&bin).unwrap();
        fs::create_dir_all(&stubs).unwrap();
        fs::write(bin.join("busybox"), busybox()).unwrap();
        fs::set_permissions(bin.join("busybox"), fs::Permissions::from_mode(0o755)).unwrap();
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        for s in STUBS {
            write_exec(&stubs.join(s), STUB);
        }
        write_exec(&stubs.join("dpkg-deb"), DPKG_DEB);
        for s in BOOT_TOOL_NAMES {
            write_exec(&stubs.join(s), BOOT_TOOLS);
        }
        self.lay_boot_loader();
        for (program, to) in COPIED {
            copy_with_libs(&self.root(), program, to);
        }
    }

    /// What the boot loader stand-ins start from: the fixture's grub.cfg
    /// and command line, and for a host whose ESPs proxmox-boot-tool
    /// manages, each ESP with Proxmox's loader.conf and the running
    /// kernel's entry.
    fn lay_boot_loader(&self) {
        let root = self.root();
        if let Ok(cfg) = fs::read(root.join("boot/grub/grub.cfg")) {
            fs::write(self.test_path(GRUB_CFG_BASE), cfg).unwrap();
        }
        fs::copy(root.join("proc/cmdline"), self.test_path("cmdline.base")).unwrap();
        fs::copy(
            root.join("proc/sys/kernel/osrelease"),
            self.test_path("osrelease.base"),
        )
        .unwrap();
        let Ok(uuids) = fs::read_to_string(root.join("etc/kernel/proxmox-boot-uuids")) else {
            return;
        };
        let release = fs::read_to_string(root.join("proc/sys/kernel/osrelease")).unwrap();
        let release = release.trim();
        let options = fs::read_to_string(root.join("etc/kernel/cmdline")).unwrap();
        for uuid in uuids.split_whitespace() {
            let esp = self.test_path("esp").join(uuid).join("loader");
            fs::create_dir_all(esp.join("entries")).unwrap();
            fs::write(esp.join("loader.conf"), "timeout 3\ndefault proxmox-*\n").unwrap();
            fs::write(
                esp.join(format!("entries/proxmox-{release}.conf")),
                format!(
                    "title    Proxmox Virtual Environment\nversion  {release}\noptions  {}\nlinux    /EFI/proxmox/{release}/vmlinuz-{release}\ninitrd   /EFI/proxmox/{release}/initrd.img-{release}\n",
                    options.trim()
                ),
            )
            .unwrap();
        }
    }

    /// The one-shot entry's kernel arguments and kernel, used up as the
    /// boot loader would: GRUB's `next_entry` naming the trial script's
    /// entry, or the systemd-boot one-shot naming an entry on the first ESP.
    fn take_oneshot(&self) -> Option<(String, String)> {
        let root = self.root();
        let env = root.join("boot/grub/grubenv");
        if let Ok(text) = fs::read_to_string(&env) {
            fs::remove_file(&env).unwrap();
            let id = text.lines().find_map(|l| l.strip_prefix("next_entry="))?;
            let script = fs::read_to_string(root.join("etc/grub.d/42_vgpu-bake-trial")).ok()?;
            assert!(script.contains(&format!("--id {id} ")), "{script}");
            let linux = script
                .lines()
                .find(|l| l.trim_start().starts_with("linux"))?;
            let words: Vec<&str> = linux.split_whitespace().collect();
            let kernel = words[1].rsplit("vmlinuz-").next().unwrap().to_owned();
            return Some((
                format!("BOOT_IMAGE={} {}", words[1], words[2..].join(" ")),
                kernel,
            ));
        }
        let oneshot = self.test_path("oneshot");
        let entry = fs::read_to_string(&oneshot).ok()?;
        fs::remove_file(&oneshot).unwrap();
        let esps = fs::read_to_string(root.join("etc/kernel/proxmox-boot-uuids")).unwrap();
        let first = esps.split_whitespace().next()?;
        let text = fs::read_to_string(
            self.test_path("esp")
                .join(first)
                .join("loader/entries")
                .join(entry.trim()),
        )
        .ok()?;
        let value = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|o| o.trim().to_owned())
        };
        Some((value("options")?, value("version")?))
    }

    fn install_bundle(&self, plan_name: &str, edit: impl FnOnce(&mut Plan), library: &[u8]) {
        let root = self.root();
        let text = fs::read_to_string(
            workspace()
                .join("tests/plans")
                .join(format!("{plan_name}.toml")),
        )
        .unwrap();
        let mut plan = Plan::from_toml(&text).unwrap();
        edit(&mut plan);
        let mut files: BTreeMap<String, (Vec<u8>, u32)> = BTreeMap::new();
        if let Some(d) = plan.driver.as_mut() {
            // The demo installer the plan names (1.0 or 1.1), from data/demo/;
            // the 1.0 one stands in for an NVIDIA installer.
            let demo = workspace().join("data/demo");
            let bytes = fs::read(demo.join(&d.filename))
                .or_else(|_| fs::read(demo.join("vgpu-bake-demo-driver-1.0-vgpu-kvm.run")))
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
            let bytes = library.to_vec();
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
            schema: SCHEMA,
            name: plan.name.clone(),
            entries: files
                .iter()
                .map(|(p, (b, m))| {
                    ManifestEntry::file(p.clone(), *m, b.len() as u64, sha256(b).parse().unwrap())
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
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(layout::UNIT_WANTS_TARGET, link).unwrap();
    }

    /// Runs the real agent; `env` adds variables (faults, crashes). Paths in
    /// the variables are the root's: `run` and `retry` work inside it.
    pub fn agent(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let out = self.agent_command(args, env).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("may not set them up"),
            "the agent could not enter its --root: run these tests as root\n{stderr}"
        );
        out
    }

    /// The command [`SimHost::agent`] runs, for a test that sets its own
    /// stdio (a closed pipe, say).
    pub fn agent_command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        self.agent_command_of(Path::new(env!("CARGO_BIN_EXE_vgpu-firstboot")), args, env)
    }

    /// [`SimHost::agent_command`] for the agent binary `program` (one laid
    /// from a bundle, say).
    pub fn agent_command_of(&self, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(program);
        cmd.arg("--root")
            .arg(self.root())
            .args(args)
            .env("PATH", PATH)
            .env("VGPU_TEST_LOG", format!("{TEST_DIR}/commands.log"))
            .env("VGPU_TEST_DIR", TEST_DIR)
            .env("VGPU_DEMO_LOG", format!("{TEST_DIR}/demo-installer.log"))
            .env_remove("VGPU_DEMO_PREFIX")
            .env_remove("VGPU_TEST_MOUNTINFO")
            .env_remove("VGPU_TEST_ENABLED")
            .env_remove("VGPU_FIRSTBOOT_FAULT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// `run` with the unit's condition: skipped when the done marker exists.
    pub fn boot_run(&self, env: &[(&str, &str)]) -> Option<Output> {
        // systemd starts the unit for its `.wants` link; the unit's
        // conditions (not done, or the link still there) then always hold.
        if !self.root().join(layout::UNIT_WANTS_LINK).exists() {
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
        if let Some((trial, kernel)) = self.take_oneshot() {
            let fails = self
                .failing_arg
                .as_ref()
                .is_some_and(|a| trial.split_whitespace().any(|t| t == a))
                || self.failing_kernel.as_deref() == Some(kernel.as_str());
            if !fails {
                fs::write(root.join("proc/cmdline"), format!("{trial}\n")).unwrap();
                fs::write(
                    root.join("proc/sys/kernel/osrelease"),
                    format!("{kernel}\n"),
                )
                .unwrap();
                self.blacklist_takes_effect();
                return;
            }
            // The trial boot panicked: the power cycle boots the default.
            self.boots += 1;
            fs::write(
                root.join("proc/sys/kernel/random/boot_id"),
                format!("00000000-0000-4000-8000-{:012x}\n", self.boots),
            )
            .unwrap();
        }
        let mut cmdline = fs::read_to_string(self.test_path("cmdline.base"))
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
        // The default kernel: the pinned one, else the one the host had.
        let release = fs::read_to_string(root.join("etc/kernel/proxmox-boot-pin"))
            .or_else(|_| fs::read_to_string(self.test_path("osrelease.base")))
            .unwrap();
        fs::write(
            root.join("proc/sys/kernel/osrelease"),
            format!("{}\n", release.trim()),
        )
        .unwrap();
        self.blacklist_takes_effect();
    }

    fn blacklist_takes_effect(&self) {
        let root = self.root();
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
            !k.starts_with(TEST_DIR.trim_start_matches('/'))
                && !k.starts_with("var/lib/vgpu-firstboot/state.toml")
                // The trial record: boot ids, as in the state.
                && !k.starts_with("var/lib/vgpu-firstboot/trial")
                && !k.starts_with("var/lib/vgpu-firstboot/lock")
                && !k.starts_with("proc/sys/kernel/random/boot_id")
                // Progress: its done timestamp is the clock's.
                && k != TEXTFILE
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

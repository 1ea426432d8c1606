//! A test bed for the agent's steps: a fixture host copied into a temp
//! root, a golden plan, the facts read from the copy, and a runner that
//! records commands and plays the few side effects later steps look for.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;
use vgpu_firstboot::agent::host::{Host, StepError, StepOutcome};
use vgpu_firstboot::facts::{Facts, read_facts};
use vgpu_firstboot::runner::{CommandOutcome, CommandSpec, RecordingRunner, Response, Runner};
use vgpu_plan::plan::Plan;

/// A phase 1 step function.
pub type StepFn = fn(&mut Host) -> Result<StepOutcome, StepError>;

/// Workspace-relative path.
pub fn workspace(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// One baked plan fixture from `tests/plans/<name>.toml`.
pub fn plan(name: &str) -> Plan {
    let path = workspace(&format!("tests/plans/{name}.toml"));
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Plan::from_toml(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A host copy, its plan and its facts.
pub struct Bed {
    pub dir: TempDir,
    pub plan: Plan,
    pub facts: Facts,
}

impl Bed {
    /// Copies `tests/hosts/<host>` (symlinks kept) and reads its facts.
    pub fn new(host: &str, plan_name: &str) -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let src = workspace(&format!("tests/hosts/{host}/."));
        let status = Command::new("cp")
            .arg("-a")
            .arg(&src)
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "cp -a {}", src.display());
        let facts = read_facts(dir.path()).unwrap();
        Bed {
            dir,
            plan: plan(plan_name),
            facts,
        }
    }

    /// Copies an APT fixture (`firstboot/tests/data/apt/<case>/input`) to
    /// `etc/apt`.
    pub fn with_apt(self, case: &str) -> Bed {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/apt")
            .join(case)
            .join("input/.");
        let dst = self.path("etc/apt");
        fs::create_dir_all(&dst).unwrap();
        let ok = Command::new("cp")
            .arg("-a")
            .arg(&src)
            .arg(&dst)
            .status()
            .unwrap();
        assert!(ok.success());
        self
    }

    /// Reads the facts again, as the next boot would.
    pub fn reread(&mut self) {
        self.facts = read_facts(self.dir.path()).unwrap();
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    pub fn mode(&self, rel: &str) -> u32 {
        fs::metadata(self.path(rel)).unwrap().permissions().mode() & 0o777
    }

    /// Runs one step with `runner`; returns its outcome and journal lines.
    pub fn run(
        &self,
        runner: &mut Fake,
        step: StepFn,
    ) -> (Result<StepOutcome, StepError>, Vec<String>) {
        let mut host = self.host(runner);
        let out = step(&mut host);
        (out, host.log)
    }

    /// A host handle on this bed.
    pub fn host<'a>(&'a self, runner: &'a mut Fake) -> Host<'a> {
        Host::new(self.root(), runner, &self.plan, &self.facts)
    }

    /// Every file and link under the root: path, mode and content (or
    /// link target), to tell whether a run changed anything.
    pub fn snapshot(&self) -> BTreeMap<String, (u32, Vec<u8>)> {
        let mut out = BTreeMap::new();
        walk(self.root(), self.root(), &mut out).unwrap();
        out
    }

    /// Panics, naming the paths, when the tree differs from `before`.
    pub fn assert_unchanged(&self, before: &BTreeMap<String, (u32, Vec<u8>)>) {
        let now = self.snapshot();
        let changed: Vec<&String> = before
            .keys()
            .chain(now.keys())
            .filter(|k| before.get(*k) != now.get(*k))
            .collect();
        assert!(changed.is_empty(), "changed by the run: {changed:?}");
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (u32, Vec<u8>)>) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        let meta = fs::symlink_metadata(&p)?;
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&p)?;
            out.insert(rel, (0, target.to_string_lossy().into_owned().into_bytes()));
        } else if meta.is_dir() {
            out.insert(format!("{rel}/"), (mode, Vec::new()));
            walk(root, &p, out)?;
        } else {
            out.insert(rel, (mode, fs::read(&p)?));
        }
    }
    Ok(())
}

/// A [`RecordingRunner`] that also does what later steps read back:
/// `openssl req` writes its key and certificate files, and
/// `proxmox-boot-tool kernel pin V` writes `/etc/kernel/proxmox-boot-pin`.
#[derive(Debug)]
pub struct Fake {
    pub rec: RecordingRunner,
    root: PathBuf,
}

impl Fake {
    pub fn new(bed: &Bed) -> Fake {
        Fake {
            rec: RecordingRunner::new(),
            root: bed.root().to_path_buf(),
        }
    }

    pub fn respond(&mut self, program: &str, args: &[&str], response: Response) -> &mut Self {
        self.rec.respond(program, args, response);
        self
    }

    pub fn lines(&self) -> Vec<String> {
        self.rec.command_lines()
    }
}

impl Runner for Fake {
    fn run(&mut self, spec: &CommandSpec) -> io::Result<CommandOutcome> {
        let out = self.rec.run(spec)?;
        if !out.success() {
            return Ok(out);
        }
        let after = |flag: &str| {
            spec.args
                .iter()
                .position(|a| a == flag)
                .and_then(|i| spec.args.get(i + 1))
        };
        if spec.program == "openssl" {
            for flag in ["-keyout", "-out"] {
                if let Some(p) = after(flag) {
                    fs::write(p, format!("fake {flag}\n"))?;
                }
            }
        }
        if spec.program == "proxmox-boot-tool"
            && spec.args.starts_with(&["kernel".into(), "pin".into()])
            && let Some(v) = spec.args.get(2)
        {
            fs::write(
                self.root.join("etc/kernel/proxmox-boot-pin"),
                format!("{v}\n"),
            )?;
        }
        Ok(out)
    }
}

/// Commands a second run may still run: probes that change nothing.
pub fn read_only(line: &str) -> bool {
    [
        "dpkg-query ",
        "dpkg-deb ",
        "apt-cache ",
        "zpool get ",
        "mokutil --test-key ",
        "mokutil --list-new",
    ]
    .iter()
    .any(|p| line.starts_with(p))
}

/// `dpkg-query` answer for an installed package.
pub fn installed(version: &str) -> Response {
    Response::ok().stdout(format!("install ok installed {version}\n"))
}

/// `dpkg-query` answer for a package dpkg does not know.
pub fn unknown(package: &str) -> Response {
    Response::exit(1).stderr(format!(
        "dpkg-query: no packages found matching {package}\n"
    ))
}

/// The `apt-get install` prefix the steps use.
pub const INSTALL: &str = "apt-get install -y --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold";

/// The `dpkg-query` probe for `package`, as a command line.
pub fn query(package: &str) -> String {
    format!(r"dpkg-query -W '-f=${{Status}} ${{Version}}\n' {package}")
}

/// Runs `steps` in order; panics on a failed step.
pub fn run_all(bed: &Bed, runner: &mut Fake, steps: &[StepFn]) -> Vec<String> {
    let mut log = Vec::new();
    for step in steps {
        let (out, lines) = bed.run(runner, *step);
        assert!(out.is_ok(), "{out:?}\n{lines:#?}");
        log.extend(lines);
    }
    log
}

/// A fresh runner where every package is installed and everything else
/// succeeds quietly.
pub fn all_installed(bed: &Bed) -> Fake {
    let mut r = Fake::new(bed);
    r.respond("dpkg-query", &[], installed("1.0"));
    r
}

/// The ZFS host running a kernel the pin applies to.
pub fn pve9_on_617() -> Bed {
    let mut bed = Bed::new("pve9-zfs-sdboot", "unlock-pve9-pin614");
    bed.write("proc/sys/kernel/osrelease", "6.17.2-1-pve\n");
    bed.reread();
    bed
}

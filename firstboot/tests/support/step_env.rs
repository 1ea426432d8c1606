//! A temp copy of a fixture host, a golden plan with a baked payload, and a
//! recording runner, for the phase 2 step tests.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use vgpu_firstboot::agent::host::{Host, StepError, StepOutcome};
use vgpu_firstboot::agent::steps;
use vgpu_firstboot::facts::{Facts, read_facts};
use vgpu_firstboot::runner::RecordingRunner;
use vgpu_firstboot::sha256::sha256_hex;
use vgpu_plan::layout::{MANIFEST_FILE, PAYLOAD_DIR, UNIT_WANTS_LINK};
use vgpu_plan::manifest::{Manifest, ManifestEntry, SCHEMA};
use vgpu_plan::plan::{PayloadFile, Plan, StepKind};

pub type StepFn = fn(&mut Host) -> Result<StepOutcome, StepError>;

pub const INSTALLER: &str = "driver/installer.run";
pub const LIBRARY: &str = "unlock/libvgpu_unlock_rs.so";
pub const DEB: &str = "debs/extra.deb";
pub const KEY: &str = "var/lib/vgpu-firstboot/secure-boot/module-signing.key";
pub const DER: &str = "var/lib/vgpu-firstboot/secure-boot/module-signing.der";

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A temp copy of a fixture host, a golden plan, and a recording runner.
pub struct Env {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub plan: Plan,
    pub facts: Facts,
    pub runner: RecordingRunner,
    pub log: Vec<String>,
}

impl Env {
    pub fn new(host: &str, plan: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let ok = Command::new("cp")
            .arg("-a")
            .arg(workspace().join("tests/hosts").join(host))
            .arg(&root)
            .status()
            .unwrap()
            .success();
        assert!(ok, "cp -a {host}");
        let text =
            fs::read_to_string(workspace().join(format!("tests/plans/{plan}.toml"))).unwrap();
        let plan = Plan::from_toml(&text).unwrap();
        let facts = read_facts(&root).unwrap();
        Env {
            _dir: dir,
            root,
            plan,
            facts,
            runner: RecordingRunner::new(),
            log: Vec::new(),
        }
    }

    pub fn at(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) {
        let p = self.at(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.at(rel)).unwrap()
    }

    /// Re-reads the facts, as the agent does at each boot.
    pub fn refresh(&mut self) {
        self.facts = read_facts(&self.root).unwrap();
    }

    pub fn run(&mut self, step: StepFn) -> Result<StepOutcome, StepError> {
        let mut host = Host::new(&self.root, &mut self.runner, &self.plan, &self.facts);
        let out = step(&mut host);
        self.log = host.log;
        out
    }

    pub fn preview(&mut self, kind: StepKind) -> Vec<String> {
        let host = Host::new(&self.root, &mut self.runner, &self.plan, &self.facts);
        (steps::step_impl(kind).preview)(&host).unwrap()
    }

    pub fn commands(&self) -> Vec<String> {
        self.runner.command_lines()
    }

    pub fn logged(&self, part: &str) -> bool {
        self.log.iter().any(|l| l.contains(part))
    }

    /// A payload as the builder leaves it: installer (mode 0644, so the
    /// agent has to make it executable), unlock library, an offline .deb,
    /// a manifest listing them (and the agent binary, outside the
    /// payload), and the plan pointing at them.
    pub fn bake(&mut self) {
        let files: [(&str, &[u8]); 3] = [
            (INSTALLER, b"#!/bin/sh\necho stand-in installer\n"),
            (LIBRARY, b"\x7fELF unlock library stand-in"),
            (DEB, b"!<arch>\ndebian-binary"),
        ];
        let mut entries = vec![ManifestEntry::file(
            "usr/local/sbin/vgpu-firstboot",
            0o755,
            7,
            "ab".repeat(32).parse().unwrap(),
        )];
        for (name, bytes) in files {
            let rel = format!("{PAYLOAD_DIR}/{name}");
            self.write(&rel, bytes);
            fs::set_permissions(self.at(&rel), fs::Permissions::from_mode(0o644)).unwrap();
            entries.push(ManifestEntry::file(
                rel,
                0o644,
                bytes.len() as u64,
                sha256_hex(bytes).parse().unwrap(),
            ));
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let manifest = Manifest {
            schema: SCHEMA,
            name: self.plan.name.clone(),
            entries,
        };
        self.write(MANIFEST_FILE, manifest.to_toml());
        let payload = |name: &str, bytes: &[u8]| PayloadFile {
            path: name.into(),
            sha256: sha256_hex(bytes).parse().unwrap(),
            size: bytes.len() as u64,
        };
        if let Some(d) = &mut self.plan.driver {
            d.installer = payload(INSTALLER, files[0].1);
        }
        if let Some(u) = &mut self.plan.unlock {
            u.library = payload(LIBRARY, files[1].1);
            u.profile_override = "[profile.nvidia-259]\nnum_displays = 1\n".into();
        }
    }
}

pub fn reason(r: Result<StepOutcome, StepError>) -> String {
    match r {
        Err(e) => e.reason,
        Ok(o) => panic!("expected an error, got {o:?}"),
    }
}

pub fn link_unit(env: &Env) {
    let link = env.at(UNIT_WANTS_LINK);
    fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("../vgpu-firstboot.service", link).unwrap();
}

//! A signed bundle travels to the host as plain files: baked with the
//! builder (its library, as `vgpu-bake bake --sign-key` does, carrying this
//! real agent, stripped), laid with nothing but `zstd -dc | cpio -idmu`
//! (GNU cpio, not `vgpu-bake install`), the host's key placed in
//! `etc/vgpu-firstboot/trusted-keys/`. The agent laid from the bundle
//! checks it before phase 1: accepted as baked, refused (nothing run) once
//! the plan is flipped or the signature is another key's.
//! Needs root, `strip` (binutils), `zstd`, GNU `cpio` and `minisign`.

#[path = "agent/harness.rs"]
mod agent_harness;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use agent_harness::{SimHost, workspace};
use vgpu_bake::bake::{self, BakeInputs};
use vgpu_bake::bundle::BakeOptions;
use vgpu_bake::fetch::FetchOptions;
use vgpu_bake::gpudb::GpuDb;
use vgpu_bake::profile::Profile;
use vgpu_bake::registry::Registry;
use vgpu_bake::resolve::{self, DriverOverrides};
use vgpu_bake::sign::{self, SigningKey};
use vgpu_plan::layout;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn tool(program: &str, args: &[&str], dir: &Path) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (apt-get install it)"));
    assert!(out.status.success(), "{program} {args:?}: {}", text(&out));
}

/// The demo profile baked into `dir/out/demo.cpio.zst`, signed with
/// `dir/fleet.key` (made by the builder's keygen), carrying a stripped copy
/// of this agent (a debug build is over the bake's agent cap).
fn bake_signed(dir: &Path) -> PathBuf {
    let key = sign::keygen(&dir.join("fleet"), false).unwrap();
    let agent = dir.join("agent");
    tool(
        "strip",
        &[
            "-o",
            agent.to_str().unwrap(),
            env!("CARGO_BIN_EXE_vgpu-firstboot"),
        ],
        dir,
    );
    let profile_path = workspace().join("profiles/demo.toml");
    let db = GpuDb::builtin().unwrap();
    let profile = Profile::load(&profile_path).unwrap();
    let resolved = resolve::resolve(&profile, &profile_path, &Registry::builtin(), &db).unwrap();
    resolve::check_files(&resolved, &profile_path).unwrap();
    let inputs = BakeInputs {
        fetch: FetchOptions::new(dir.join("cache")),
        overrides: DriverOverrides::default(),
        agent,
        out_dir: dir.join("out"),
        options: BakeOptions {
            sign: Some(SigningKey::load(&key.secret).unwrap()),
            ..BakeOptions::default()
        },
    };
    fs::create_dir_all(&inputs.out_dir).unwrap();
    let baked = bake::bake(resolved, &db, &inputs).unwrap();
    assert_eq!(baked.plan.name, "demo");
    baked.output.bundle
}

/// A fixture host with `bundle` laid over it by GNU cpio alone, and the
/// key `dir/fleet.pub` trusted.
fn laid_host(bundle: &Path, dir: &Path) -> SimHost {
    let host = SimHost::new("pve8-grub", "demo");
    let root = host.root();
    let script = format!("zstd -dc -- '{}' | cpio -idmu --quiet", bundle.display());
    tool("sh", &["-c", &script], &root);
    let keys = root.join(layout::TRUSTED_KEYS_DIR);
    fs::create_dir_all(&keys).unwrap();
    fs::copy(dir.join("fleet.pub"), keys.join("fleet.pub")).unwrap();
    // What travelled: the signature beside the manifest, and the agent.
    assert!(root.join(layout::SIGNATURE_FILE).is_file());
    tool(
        "minisign",
        &[
            "-V",
            "-q",
            "-p",
            keys.join("fleet.pub").to_str().unwrap(),
            "-m",
            root.join(layout::MANIFEST_FILE).to_str().unwrap(),
            "-x",
            root.join(layout::SIGNATURE_FILE).to_str().unwrap(),
        ],
        &root,
    );
    host
}

/// The agent the bundle laid on the host.
fn laid_agent(host: &SimHost) -> PathBuf {
    host.root().join(layout::AGENT_BIN)
}

fn laid_run(host: &SimHost, args: &[&str]) -> Output {
    host.agent_command_of(&laid_agent(host), args, &[])
        .output()
        .unwrap()
}

/// `run` by the laid agent is refused before phase 1 with `want`; `plan`
/// said so first; nothing ran or was written outside the state.
fn refused(host: &SimHost, want: &str) {
    let plan = laid_run(host, &["plan"]);
    assert!(
        text(&plan).contains("bundle check: REFUSED: `run` would stop before phase 1"),
        "{}",
        text(&plan)
    );
    assert!(text(&plan).contains(want), "{}", text(&plan));
    let out = laid_run(host, &["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("bundle check, nothing was run"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains(want), "want {want:?}: {}", text(&out));
    assert!(host.commands().is_empty(), "{:?}", host.commands());
    assert!(
        !host
            .root()
            .join("etc/default/grub.d/vgpu-bake.cfg")
            .exists()
    );
}

#[test]
fn a_signed_bundle_laid_by_plain_cpio_is_checked_by_the_agent_it_carries() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = bake_signed(dir.path());

    // As baked: the laid agent is this agent, and it accepts the bundle.
    let host = laid_host(&bundle, dir.path());
    let laid = fs::read(laid_agent(&host)).unwrap();
    assert_eq!(laid, fs::read(dir.path().join("agent")).unwrap());
    let plan = laid_run(&host, &["plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert!(
        text(&plan)
            .contains("bundle check: passes; signature verified by the trusted key fleet.pub;"),
        "{}",
        text(&plan)
    );
    let out = laid_run(&host, &["run"]);
    assert!(
        text(&out).contains("bundle verified: signature by trusted key fleet.pub"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("rebooting"), "{}", text(&out));
    assert!(!host.commands().is_empty());

    // One byte of the laid plan flipped (in its description: still a plan
    // the agent reads, so the bundle check is what refuses it).
    let host = laid_host(&bundle, dir.path());
    let p = host.root().join(layout::PLAN_FILE);
    let mut b = fs::read(&p).unwrap();
    let at = b.windows(4).position(|w| w == b"DEMO").unwrap();
    b[at] ^= 1;
    fs::write(&p, b).unwrap();
    refused(
        &host,
        "the plan /var/lib/vgpu-firstboot/plan.toml is not the one baked",
    );

    // The signature replaced by another key's over the same manifest, with
    // the right trusted comment.
    let host = laid_host(&bundle, dir.path());
    tool(
        "minisign",
        &["-G", "-W", "-p", "other.pub", "-s", "other.key"],
        dir.path(),
    );
    let sig = host.root().join(layout::SIGNATURE_FILE);
    fs::remove_file(&sig).unwrap();
    tool(
        "minisign",
        &[
            "-S",
            "-s",
            "other.key",
            "-m",
            host.root().join(layout::MANIFEST_FILE).to_str().unwrap(),
            "-x",
            sig.to_str().unwrap(),
            "-t",
            &layout::signature_comment("demo"),
        ],
        dir.path(),
    );
    refused(
        &host,
        "does not verify with any key in /etc/vgpu-firstboot/trusted-keys (fleet.pub)",
    );
}

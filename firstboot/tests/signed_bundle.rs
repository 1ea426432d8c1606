//! The agent checks the installed bundle before phase 1 acts: with a trusted
//! key on the host the manifest must carry a valid signature by it; with or
//! without keys the plan and every file must match the manifest. Signatures
//! and keys are made with the real `minisign` (`apt-get install minisign`),
//! so these tests do not depend on the builder.

#[path = "agent/harness.rs"]
mod agent_harness;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use agent_harness::SimHost;
use vgpu_plan::layout;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn minisign(args: &[&str], dir: &Path) {
    let out = Command::new("minisign")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("these tests run the real minisign: apt-get install minisign");
    assert!(out.status.success(), "minisign {args:?}: {out:?}");
}

/// A key pair `NAME.key`/`NAME.pub` in the host's temp dir (outside the root).
fn keypair(host: &SimHost, name: &str) -> std::path::PathBuf {
    let dir = host.dir.path();
    minisign(
        &[
            "-G",
            "-W",
            "-p",
            &format!("{name}.pub"),
            "-s",
            &format!("{name}.key"),
        ],
        dir,
    );
    dir.join(name)
}

/// Signs the installed manifest as `vgpu-bake bake --sign-key` does.
fn sign(host: &SimHost, key: &Path, comment: &str) {
    let manifest = host.root().join(layout::MANIFEST_FILE);
    minisign(
        &[
            "-S",
            "-s",
            &format!("{}.key", key.display()),
            "-m",
            manifest.to_str().unwrap(),
            "-x",
            host.root().join(layout::SIGNATURE_FILE).to_str().unwrap(),
            "-t",
            comment,
        ],
        host.dir.path(),
    );
}

fn trust(host: &SimHost, key: &Path, as_name: &str) {
    let dir = host.root().join(layout::TRUSTED_KEYS_DIR);
    fs::create_dir_all(&dir).unwrap();
    fs::copy(format!("{}.pub", key.display()), dir.join(as_name)).unwrap();
}

/// The first run is refused before any command, with `want` in its output
/// and in `status`.
fn refused(host: &SimHost, want: &str) {
    let out = host.boot_run(&[]).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(want),
        "want {want:?} in:\n{}",
        text(&out)
    );
    assert!(
        host.commands().is_empty(),
        "commands ran: {:?}",
        host.commands()
    );
    assert!(
        !host
            .root()
            .join("etc/default/grub.d/vgpu-bake.cfg")
            .exists()
    );
    let st = host.agent(&["status"], &[]);
    assert_eq!(st.status.code(), Some(1), "{}", text(&st));
    assert!(text(&st).contains("bundle check"), "{}", text(&st));
}

#[test]
fn a_signed_bundle_with_its_key_trusted_runs() {
    let host = SimHost::new("pve8-grub", "demo");
    let key = keypair(&host, "fleet");
    sign(&host, &key, "vgpu-bake bundle demo");
    trust(&host, &key, "fleet.pub");
    let out = host.boot_run(&[]).unwrap();
    assert!(text(&out).contains("rebooting"), "{}", text(&out));
    assert!(
        text(&out).contains("bundle verified: signature by trusted key fleet.pub"),
        "{}",
        text(&out)
    );
    assert!(!host.commands().is_empty());
}

#[test]
fn with_a_trusted_key_an_unsigned_or_wrongly_signed_bundle_runs_nothing() {
    // Unsigned.
    let host = SimHost::new("pve8-grub", "demo");
    let key = keypair(&host, "fleet");
    trust(&host, &key, "fleet.pub");
    refused(&host, "the bundle is unsigned");

    // Signed by another key.
    let host = SimHost::new("pve8-grub", "demo");
    let key = keypair(&host, "fleet");
    let other = keypair(&host, "other");
    sign(&host, &other, "vgpu-bake bundle demo");
    trust(&host, &key, "fleet.pub");
    refused(&host, "does not verify with any key");

    // The manifest changed after signing.
    let host = SimHost::new("pve8-grub", "demo");
    let key = keypair(&host, "fleet");
    sign(&host, &key, "vgpu-bake bundle demo");
    trust(&host, &key, "fleet.pub");
    let m = host.root().join(layout::MANIFEST_FILE);
    let mut t = fs::read_to_string(&m).unwrap();
    t.push('\n');
    fs::write(&m, t).unwrap();
    refused(&host, "does not verify with any key");

    // A valid signature made for another bundle.
    let host = SimHost::new("pve8-grub", "demo");
    let key = keypair(&host, "fleet");
    sign(&host, &key, "vgpu-bake bundle other");
    trust(&host, &key, "fleet.pub");
    refused(&host, "made for another bundle");

    // A garbled key file is an error, not skipped.
    let host = SimHost::new("pve8-grub", "demo");
    let key = keypair(&host, "fleet");
    sign(&host, &key, "vgpu-bake bundle demo");
    trust(&host, &key, "fleet.pub");
    fs::write(
        host.root()
            .join(layout::TRUSTED_KEYS_DIR)
            .join("broken.pub"),
        "not a key\n",
    )
    .unwrap();
    refused(&host, "broken.pub: not a minisign public key");
}

/// Makes a tampered bundle of the demo plan: the probe's findings.
fn tampered(how: &str) -> SimHost {
    let host = SimHost::new("pve8-grub", "demo");
    match how {
        "plan" => {
            let p = host.root().join(layout::PLAN_FILE);
            let t = fs::read_to_string(&p).unwrap();
            assert!(t.contains("kernel-args = []"), "{t}");
            let t = t.replace("kernel-args = []", "kernel-args = [\"init=/bin/sh\"]");
            fs::write(&p, t).unwrap();
        }
        "link" => {
            // The right bytes, but through a symlink to a copy elsewhere.
            let dir = host.root().join(layout::PAYLOAD_DIR).join("debs");
            let deb = fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
            let copy = host.root().join("copy.deb");
            fs::rename(&deb, &copy).unwrap();
            std::os::unix::fs::symlink("/copy.deb", &deb).unwrap();
        }
        "deb" => {
            let dir = host.root().join(layout::PAYLOAD_DIR).join("debs");
            let deb = fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
            let mut b = fs::read(&deb).unwrap();
            let mid = b.len() / 2;
            b[mid] ^= 1;
            fs::write(&deb, b).unwrap();
        }
        _ => unreachable!(),
    }
    host
}

#[test]
fn without_keys_an_unsigned_bundle_runs_but_tampering_is_caught_before_phase_1() {
    let host = SimHost::new("pve8-grub", "demo");
    let out = host.boot_run(&[]).unwrap();
    assert!(text(&out).contains("rebooting"), "{}", text(&out));
    assert!(text(&out).contains("(unsigned;"), "{}", text(&out));

    let host = tampered("plan");
    refused(
        &host,
        "the plan /var/lib/vgpu-firstboot/plan.toml is not the one baked",
    );
    let host = tampered("deb");
    refused(&host, "is corrupt");
    let host = tampered("link");
    refused(&host, "is not a regular file");
}

#[test]
fn tampering_is_caught_with_keys_too_and_again_after_a_power_cut_in_phase_1() {
    // Signed and trusted, then the plan edited: the manifest still verifies,
    // the plan does not match it.
    let host = tampered("plan");
    let key = keypair(&host, "fleet");
    sign(&host, &key, "vgpu-bake bundle demo");
    trust(&host, &key, "fleet.pub");
    refused(&host, "is not the one baked");

    // Phase 1 re-entered after a power cut: the check runs again.
    let host = SimHost::new("pve8-grub", "demo");
    let out = host
        .boot_run(&[("VGPU_TEST_CRASH_IN", "update-initramfs")])
        .unwrap();
    assert_eq!(out.status.code(), None, "{}", text(&out));
    let ran = host.commands().len();
    let dir = host.root().join(layout::PAYLOAD_DIR).join("debs");
    let deb = fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    let mut b = fs::read(&deb).unwrap();
    b[0] ^= 1;
    fs::write(&deb, b).unwrap();
    let out = host.boot_run(&[]).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is corrupt"), "{}", text(&out));
    assert_eq!(host.commands().len(), ran, "{:?}", host.commands());
}

#[test]
fn only_regular_pub_files_are_keys_and_none_is_skipped() {
    // A README beside the key is not a key; the signed bundle runs.
    let host = SimHost::new("pve8-grub", "demo");
    let key = keypair(&host, "fleet");
    sign(&host, &key, "vgpu-bake bundle demo");
    trust(&host, &key, "fleet.pub");
    let dir = host.root().join(layout::TRUSTED_KEYS_DIR);
    fs::write(dir.join("README"), "keys for this host\n").unwrap();
    let out = host.boot_run(&[]).unwrap();
    assert!(text(&out).contains("rebooting"), "{}", text(&out));

    // A key file that is a symlink is refused, not followed or skipped.
    let host = SimHost::new("pve8-grub", "demo");
    let key = keypair(&host, "fleet");
    sign(&host, &key, "vgpu-bake bundle demo");
    trust(&host, &key, "fleet.pub");
    let dir = host.root().join(layout::TRUSTED_KEYS_DIR);
    std::os::unix::fs::symlink("fleet.pub", dir.join("link.pub")).unwrap();
    refused(&host, "link.pub: not a regular file");

    // The keys directory must be a directory.
    let host = SimHost::new("pve8-grub", "demo");
    let dir = host.root().join(layout::TRUSTED_KEYS_DIR);
    fs::create_dir_all(dir.parent().unwrap()).unwrap();
    fs::write(&dir, "").unwrap();
    refused(&host, "trusted-keys is not a directory");
}

/// `plan` (the dry run) previews the bundle check: the signature's status,
/// the files checked, and plainly whether `run` would refuse; it runs and
/// writes nothing either way, and `run` then does what it said.
#[test]
fn the_dry_run_previews_the_bundle_check() {
    let plan = |host: &SimHost| {
        let out = host.agent(&["plan"], &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(host.commands().is_empty(), "{:?}", host.commands());
        assert!(
            !host
                .root()
                .join("var/lib/vgpu-firstboot/state.toml")
                .exists(),
            "the dry run wrote the state"
        );
        text(&out)
    };

    // Unsigned, no key: passes, every checked file listed.
    let host = SimHost::new("pve8-grub", "demo");
    let t = plan(&host);
    assert!(
        t.contains(
            "bundle check: passes; signature none, not required: no trusted key in /etc/vgpu-firstboot/trusted-keys;"
        ),
        "{t}"
    );
    let manifest = fs::read_to_string(host.root().join(layout::MANIFEST_FILE)).unwrap();
    let listed = manifest.matches("/payload/").count() + 1;
    assert!(
        t.contains(&format!(
            "; {listed} files match the manifest (size, sha256):"
        )),
        "{listed}: {t}"
    );
    assert!(
        t.contains("\n    /var/lib/vgpu-firstboot/plan.toml\n"),
        "{t}"
    );
    assert!(
        t.contains("\n    /var/lib/vgpu-firstboot/payload/debs/"),
        "{t}"
    );

    // Signed, the key trusted: verified by it; `run` agrees.
    let host = SimHost::new("pve8-grub", "demo");
    let key = keypair(&host, "fleet");
    sign(&host, &key, "vgpu-bake bundle demo");
    let t = plan(&host);
    assert!(
        t.contains(
            "signature present, not checked: no trusted key in /etc/vgpu-firstboot/trusted-keys;"
        ),
        "{t}"
    );
    trust(&host, &key, "fleet.pub");
    let t = plan(&host);
    assert!(
        t.contains("bundle check: passes; signature verified by the trusted key fleet.pub;"),
        "{t}"
    );
    let out = host.boot_run(&[]).unwrap();
    assert!(text(&out).contains("rebooting"), "{}", text(&out));

    // Signed by another key: the dry run says `run` would refuse, and why;
    // `run` then refuses with the same reason.
    let host = SimHost::new("pve8-grub", "demo");
    let key = keypair(&host, "fleet");
    let other = keypair(&host, "other");
    sign(&host, &other, "vgpu-bake bundle demo");
    trust(&host, &key, "fleet.pub");
    let t = plan(&host);
    assert!(
        t.contains("bundle check: REFUSED: `run` would stop before phase 1 and change nothing: the signature /var/lib/vgpu-firstboot/manifest.toml.minisig of /var/lib/vgpu-firstboot/manifest.toml does not verify with any key in /etc/vgpu-firstboot/trusted-keys (fleet.pub)"),
        "{t}"
    );
    assert!(!t.contains("bundle check: passes"), "{t}");
    refused(&host, "does not verify with any key");

    // Unsigned where a key is required, and a tampered plan.
    let host = SimHost::new("pve8-grub", "demo");
    let key = keypair(&host, "fleet");
    trust(&host, &key, "fleet.pub");
    let t = plan(&host);
    assert!(t.contains("bundle check: REFUSED:"), "{t}");
    assert!(t.contains("the bundle is unsigned"), "{t}");
    let host = tampered("plan");
    let t = plan(&host);
    assert!(t.contains("bundle check: REFUSED:"), "{t}");
    assert!(
        t.contains("the plan /var/lib/vgpu-firstboot/plan.toml is not the one baked"),
        "{t}"
    );
}

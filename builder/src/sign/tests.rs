use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use super::*;

const MANIFEST: &[u8] = b"schema = 2\nname = \"demo\"\n";

fn key(dir: &Path, name: &str) -> (SigningKey, TrustedKey) {
    let made = keygen(&dir.join(name), false).unwrap();
    (
        SigningKey::load(&made.secret).unwrap(),
        TrustedKey::load(&made.public).unwrap(),
    )
}

fn check(
    sig: Option<&str>,
    manifest: &[u8],
    name: &str,
    keys: &[TrustedKey],
) -> Result<Option<SignatureInfo>, SignError> {
    check_bundle(Path::new("out/demo.cpio.zst"), manifest, sig, name, keys)
}

#[test]
fn keygen_writes_a_private_key_and_never_overwrites_one() {
    let dir = tempfile::tempdir().unwrap();
    let made = keygen(&dir.path().join("fleet"), false).unwrap();
    assert_eq!(made.secret, dir.path().join("fleet.key"));
    assert_eq!(made.public, dir.path().join("fleet.pub"));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&made.secret), 0o600);
    assert_eq!(mode(&made.public), 0o644);
    assert_eq!(made.key_id.len(), 16);
    let before = std::fs::read(&made.secret).unwrap();
    let err = keygen(&dir.path().join("fleet"), false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("fleet.key already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&made.secret).unwrap(),
        before,
        "the key was not touched"
    );
    // Only the public half there still refuses.
    std::fs::remove_file(&made.secret).unwrap();
    let err = keygen(&dir.path().join("fleet"), false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("fleet.pub already exists"), "{err}");
    let again = keygen(&dir.path().join("fleet"), true).unwrap();
    assert_ne!(again.key_id, made.key_id);
    assert_eq!(
        SigningKey::load(&again.secret).unwrap().key_id(),
        again.key_id
    );
    assert_eq!(
        TrustedKey::load(&again.public).unwrap().key_id(),
        again.key_id
    );
}

#[test]
fn a_signature_verifies_with_its_key_only_over_its_manifest_and_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let (sk, pk) = key(dir.path(), "a");
    let (_, other) = key(dir.path(), "b");
    let sig = sk.sign_manifest("demo", MANIFEST).unwrap();
    assert!(
        sig.contains("trusted comment: vgpu-bake bundle demo"),
        "{sig}"
    );

    let info = check(Some(&sig), MANIFEST, "demo", std::slice::from_ref(&pk))
        .unwrap()
        .unwrap();
    assert_eq!(info.key_id, sk.key_id());
    assert_eq!(info.verified_by.as_deref(), Some(pk.path()));
    // Any one of several keys.
    let both = [other.clone(), pk.clone()];
    assert!(
        check(Some(&sig), MANIFEST, "demo", &both)
            .unwrap()
            .is_some()
    );
    // Without keys: reported, not checked.
    let info = check(Some(&sig), MANIFEST, "demo", &[]).unwrap().unwrap();
    assert_eq!(info.verified_by, None);
    assert_eq!(info.trusted_comment, "vgpu-bake bundle demo");
    assert_eq!(check(None, MANIFEST, "demo", &[]).unwrap(), None);

    let err = check(Some(&sig), MANIFEST, "demo", std::slice::from_ref(&other))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("does not verify with any trusted key"),
        "{err}"
    );
    assert!(err.contains("b.pub") && err.contains(sk.key_id()), "{err}");
    let changed = b"schema = 2\nname = \"demo\"\n\n";
    let err = check(Some(&sig), changed, "demo", std::slice::from_ref(&pk))
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not verify"), "{err}");
    let err = check(None, MANIFEST, "demo", std::slice::from_ref(&pk))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("out/demo.cpio.zst: it is unsigned") && err.contains("a.pub"),
        "{err}"
    );
    let err = check(Some(&sig), MANIFEST, "other", std::slice::from_ref(&pk))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"vgpu-bake bundle demo\", not \"vgpu-bake bundle other\""),
        "{err}"
    );
    let err = check(
        Some("garbage\n"),
        MANIFEST,
        "demo",
        std::slice::from_ref(&pk),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("is not a minisign signature"), "{err}");
}

#[test]
fn bad_key_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let made = keygen(&dir.path().join("k"), false).unwrap();
    let err = SigningKey::load(&made.public).unwrap_err().to_string();
    assert!(err.contains("k.pub is not a minisign secret key"), "{err}");
    let err = TrustedKey::load(&made.secret).unwrap_err().to_string();
    assert!(err.contains("k.key is not a minisign public key"), "{err}");
    let err = TrustedKey::load(&dir.path().join("missing.pub"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot read the public key") && err.contains("missing.pub"),
        "{err}"
    );
}

fn minisign(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new("minisign")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("these tests run the real minisign: apt-get install minisign")
}

#[test]
fn minisign_verifies_our_signatures_and_its_keys_sign() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Ours, checked by minisign.
    let (sk, _) = key(d, "ours");
    std::fs::write(d.join("manifest.toml"), MANIFEST).unwrap();
    std::fs::write(
        d.join("manifest.toml.minisig"),
        sk.sign_manifest("demo", MANIFEST).unwrap(),
    )
    .unwrap();
    let out = minisign(
        &[
            "-V",
            "-p",
            "ours.pub",
            "-m",
            "manifest.toml",
            "-x",
            "manifest.toml.minisig",
        ],
        d,
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("vgpu-bake bundle demo"),
        "{out:?}"
    );
    std::fs::write(d.join("manifest.toml"), b"schema = 2\nname = \"evil\"\n").unwrap();
    let out = minisign(
        &[
            "-V",
            "-p",
            "ours.pub",
            "-m",
            "manifest.toml",
            "-x",
            "manifest.toml.minisig",
        ],
        d,
    );
    assert!(!out.status.success(), "{out:?}");

    // minisign's unencrypted key signs with us; its signature checks with us.
    let out = minisign(&["-G", "-W", "-p", "theirs.pub", "-s", "theirs.key"], d);
    assert!(out.status.success(), "{out:?}");
    let theirs = SigningKey::load(&d.join("theirs.key")).unwrap();
    let pk = TrustedKey::load(&d.join("theirs.pub")).unwrap();
    assert_eq!(theirs.key_id(), pk.key_id());
    let sig = theirs.sign_manifest("demo", MANIFEST).unwrap();
    assert!(
        check(Some(&sig), MANIFEST, "demo", std::slice::from_ref(&pk))
            .unwrap()
            .is_some()
    );
    std::fs::write(d.join("m2"), MANIFEST).unwrap();
    let out = minisign(
        &[
            "-S",
            "-s",
            "theirs.key",
            "-m",
            "m2",
            "-t",
            "vgpu-bake bundle demo",
        ],
        d,
    );
    assert!(out.status.success(), "{out:?}");
    let sig = std::fs::read_to_string(d.join("m2.minisig")).unwrap();
    let info = check(Some(&sig), MANIFEST, "demo", std::slice::from_ref(&pk))
        .unwrap()
        .unwrap();
    assert_eq!(info.key_id, pk.key_id());
}

#[test]
fn an_encrypted_key_needs_the_password_variable() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // minisign reads the password twice from stdin when it is not a tty.
    let mut child = Command::new("minisign")
        .args(["-G", "-p", "enc.pub", "-s", "enc.key"])
        .current_dir(d)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hunter2\nhunter2\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    // SAFETY of the environment: only this test touches PASSWORD_ENV.
    let err = SigningKey::load(&d.join("enc.key"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("enc.key is encrypted") && err.contains(PASSWORD_ENV),
        "{err}"
    );
}

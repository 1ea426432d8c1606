//! The hook at first boot, run as the installer runs it (`ORDERING`, here
//! with `--root`): what it lays, what it refuses, which bundle a host of a
//! fleet takes, and how it falls back from one source to the next. Needs
//! `strip` (binutils), `wget` and `openssl`.

mod support;

use std::fs;

use support::{Host, STARTED, config, fixture, path_source, single_index, tree};
use vgpu_bake::rollout::config::Source;
use vgpu_bake::rollout::index::{HostEntry, Index};

const MARKER: &str = "var/lib/proxmox-first-boot/vgpu-hook.done";

fn key_text(name: &str) -> String {
    fs::read_to_string(fixture(&format!("keys/{name}"))).unwrap()
}

#[test]
fn lays_what_install_lays_then_starts_the_agent() {
    let host = Host::new();
    let bundle = fixture("valid.cpio.zst");
    let index = single_index(&bundle);
    host.place("/srv/vgpu", "valid.cpio.zst", &bundle);
    // A staging directory left by a run cut off by a power loss.
    let stale = host
        .root
        .join("var/lib/proxmox-first-boot/.vgpu-hook-staging-OLD");
    fs::create_dir(&stale).unwrap();
    fs::write(stale.join("valid.cpio.zst"), "partial").unwrap();
    host.make_hook(&config(
        index.clone(),
        vec![path_source("/srv/vgpu")],
        vec![],
    ));
    let ran = host.run();
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    assert_eq!(host.calls(), STARTED);
    // The same tree `vgpu-bake install` lays onto the same starting root.
    let other = Host::new();
    other.place("/srv/vgpu", "valid.cpio.zst", &bundle);
    vgpu_bake::install::install(&bundle, &other.root).unwrap();
    let mut hooked = tree(&host.root);
    let marker = hooked.remove(MARKER).expect("the marker");
    assert_eq!(hooked, tree(&other.root));
    let sha = index.bundles[0].sha256.as_str().to_owned();
    assert_eq!(
        marker,
        support::Node::File(
            0o644,
            format!("{sha} {}\n", index.bundles[0].name).into_bytes()
        )
    );
    assert!(ran.stdout.contains("got bundle"), "{}", ran.stdout);
    // No staging directory is left.
    let left: Vec<_> = fs::read_dir(host.root.join("var/lib/proxmox-first-boot"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, ["vgpu-hook.done"]);

    // A second run lays nothing (the source is gone, the root stays as it
    // is) and issues the start again.
    fs::remove_dir_all(host.root.join("srv")).unwrap();
    let before = tree(&host.root);
    let ran = host.run();
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    assert!(ran.stdout.contains("laid already"), "{}", ran.stdout);
    assert_eq!(tree(&host.root), before);
    assert_eq!(host.calls(), [STARTED, STARTED].concat());

    // Once the agent is done, only daemon-reload runs.
    fs::write(host.root.join("var/lib/vgpu-firstboot/done"), "").unwrap();
    let ran = host.run();
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    assert_eq!(
        host.calls(),
        [&STARTED[..], &STARTED, &STARTED[..1]].concat()
    );
}

/// A new bundle laid over a host whose agent finished an earlier one: the
/// hook starts `vgpu-firstboot upgrade` (in a transient unit), not the
/// unit, which the done marker would skip.
#[test]
fn a_new_bundle_over_a_finished_agent_starts_the_upgrade() {
    let host = Host::new();
    let old = fixture("valid.cpio.zst");
    host.place("/srv/old", "valid.cpio.zst", &old);
    host.make_hook(&config(
        single_index(&old),
        vec![path_source("/srv/old")],
        vec![],
    ));
    assert_eq!(host.run().code, Some(0));
    fs::write(host.root.join("var/lib/vgpu-firstboot/done"), "demo\n").unwrap();
    // The same bundle again: nothing to start.
    let ran = host.run();
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    assert_eq!(host.calls(), [&STARTED[..], &STARTED[..1]].concat());

    let new = fixture("signed-valid.cpio.zst");
    host.place("/srv/new", "signed-valid.cpio.zst", &new);
    host.make_hook(&config(
        single_index(&new),
        vec![path_source("/srv/new")],
        vec![],
    ));
    let ran = host.run();
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    assert_eq!(
        host.calls(),
        [
            &STARTED[..],
            &STARTED[..1],
            &[
                "systemctl daemon-reload",
                "systemd-run --no-block --collect --unit=vgpu-firstboot-upgrade /usr/local/sbin/vgpu-firstboot upgrade",
            ],
        ]
        .concat()
    );
    assert!(
        ran.all().contains("started `vgpu-firstboot upgrade`"),
        "{}",
        ran.all()
    );
}

#[test]
fn installs_the_trusted_keys_of_a_signed_bundle() {
    let host = Host::new();
    let bundle = fixture("signed-valid.cpio.zst");
    host.place("/srv", "signed-valid.cpio.zst", &bundle);
    let key = key_text("test.pub");
    host.make_hook(&config(
        single_index(&bundle),
        vec![path_source("/srv")],
        vec![key.clone()],
    ));
    let ran = host.run();
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    let keys = host.root.join("etc/vgpu-firstboot/trusted-keys");
    let names: Vec<_> = fs::read_dir(&keys)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["99991D95F45D37EF.pub"]);
    assert_eq!(fs::read_to_string(keys.join(&names[0])).unwrap(), key);
    assert!(host.root.join("usr/local/sbin/vgpu-firstboot").is_file());
    assert_eq!(host.calls(), STARTED);
}

#[test]
fn a_tampered_bundle_changes_nothing() {
    let host = Host::new();
    let bundle = fixture("valid.cpio.zst");
    let mut bytes = fs::read(&bundle).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    let tampered = host.dir.path().join("tampered");
    fs::write(&tampered, &bytes).unwrap();
    host.place("/srv", "valid.cpio.zst", &tampered);
    host.make_hook(&config(
        single_index(&bundle),
        vec![path_source("/srv")],
        vec![],
    ));
    host.run_refused(&[
        "vgpu-hook: could not get bundle valid",
        "path /srv: its sha256 is",
    ]);
}

#[test]
fn a_trusted_key_refuses_an_unsigned_bundle() {
    let host = Host::new();
    let bundle = fixture("valid.cpio.zst");
    host.place("/srv", "valid.cpio.zst", &bundle);
    host.make_hook(&config(
        single_index(&bundle),
        vec![path_source("/srv")],
        vec![key_text("test.pub")],
    ));
    host.run_refused(&["it is unsigned"]);
    // Signed by another key: refused as well.
    let host = Host::new();
    let bundle = fixture("signed-valid.cpio.zst");
    host.place("/srv", "signed-valid.cpio.zst", &bundle);
    host.make_hook(&config(
        single_index(&bundle),
        vec![path_source("/srv")],
        vec![key_text("other.pub")],
    ));
    let ran = host.run();
    assert_eq!(ran.code, Some(1), "{}", ran.all());
    assert!(
        ran.stderr.contains("does not verify with any trusted key"),
        "{}",
        ran.stderr
    );
    assert!(!host.root.join("usr").exists());
}

/// Two bundles: `valid` for the host with MAC ...:0a, `signed-valid` by
/// serial and by UUID, `default` for the rest.
fn fleet(default: bool) -> Index {
    let a = single_index(&fixture("valid.cpio.zst")).bundles.remove(0);
    let b = single_index(&fixture("signed-valid.cpio.zst"))
        .bundles
        .remove(0);
    let entry =
        |name: &str, mac: &[&str], serial: Option<&str>, uuid: Option<&str>, sha| HostEntry {
            name: Some(name.into()),
            mac: mac.iter().map(|m| (*m).to_owned()).collect(),
            serial: serial.map(Into::into),
            uuid: uuid.map(Into::into),
            bundle: sha,
        };
    Index {
        schema: 1,
        default: default.then(|| a.sha256.clone()),
        hosts: vec![
            entry(
                "by-mac",
                &["52:54:00:00:00:0a"],
                None,
                None,
                a.sha256.clone(),
            ),
            entry("by-serial", &[], Some("CZ1234"), None, b.sha256.clone()),
            entry(
                "by-uuid",
                &[],
                None,
                Some("4c4c4544-0042-3510-8052-b4c04f384e32"),
                b.sha256.clone(),
            ),
        ],
        bundles: vec![a, b],
    }
}

fn fleet_host(index: &Index) -> Host {
    let host = Host::new();
    for b in &index.bundles {
        host.place("/srv", &b.file, &fixture(&b.file));
    }
    host.make_hook(&config(index.clone(), vec![path_source("/srv")], vec![]));
    host
}

#[test]
fn a_fleet_host_takes_its_own_bundle() {
    let index = fleet(true);
    let cases: [(&[&str], &str, Option<&str>, &str); 4] = [
        (
            &["52:54:00:00:00:01", "52-54-00-00-00-0A"],
            "Default string",
            None,
            "valid",
        ),
        (&["52:54:00:00:00:01"], " CZ1234 ", None, "signed-valid"),
        (
            &["52:54:00:00:00:01"],
            "0",
            Some("4C4C4544-0042-3510-8052-B4C04F384E32"),
            "signed-valid",
        ),
        (&["52:54:00:00:00:99"], "OTHER", None, "valid"),
    ];
    for (macs, serial, uuid, want) in cases {
        let host = fleet_host(&index);
        host.set_ids(macs, serial, uuid);
        let ran = host.run();
        assert_eq!(ran.code, Some(0), "{macs:?} {serial}: {}", ran.all());
        let marker = host.marker().unwrap();
        assert_eq!(
            marker.split_whitespace().nth(1),
            Some(want),
            "{macs:?} {serial} {uuid:?}"
        );
        assert_eq!(host.calls(), STARTED);
    }
}

#[test]
fn a_host_no_entry_names_is_refused_with_its_identifiers() {
    let index = fleet(false);
    let host = fleet_host(&index);
    host.set_ids(
        &["52:54:00:00:00:99"],
        "SN-777",
        Some("11111111-2222-3333-4444-555555555555"),
    );
    host.run_refused(&[
        "no bundle for this host: no [[host]] entry matches it (mac 52:54:00:00:00:99; serial SN-777; uuid 11111111-2222-3333-4444-555555555555)",
    ]);
}

#[test]
fn falls_back_from_a_missing_path_to_a_stick_to_http() {
    let bundle = fixture("valid.cpio.zst");
    let index = single_index(&bundle);
    // The stick has it: the path is tried first, then the stick.
    let host = Host::new();
    host.stick("VGPU", &[("valid.cpio.zst", &bundle)]);
    host.make_hook(&config(
        index.clone(),
        vec![
            path_source("/srv/missing"),
            Source::Label {
                label: "VGPU".into(),
            },
        ],
        vec![],
    ));
    let ran = host.run();
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    assert!(ran.stderr.contains("path /srv/missing: "), "{}", ran.stderr);
    assert!(ran.stderr.contains("does not exist"), "{}", ran.stderr);
    let calls = host.calls();
    assert_eq!(calls.len(), 4, "{calls:?}");
    let dev = host.root.join("dev/disk/by-label/VGPU");
    let mount = format!("mount -o ro,nosuid,nodev,noexec {} ", dev.display());
    assert!(calls[0].starts_with(&mount), "{calls:?}");
    let mnt = calls[0].rsplit(' ').next().unwrap();
    assert!(mnt.starts_with(&host.root.join("run/vgpu-hook/").display().to_string()));
    assert_eq!(calls[1], format!("umount {mnt}"));
    assert_eq!(calls[2..], STARTED);
    assert_eq!(
        fs::read_dir(host.root.join("run/vgpu-hook"))
            .unwrap()
            .count(),
        0
    );
    assert!(host.marker().is_some());

    // The stick lacks it: on to the web server.
    let host = Host::new();
    host.stick("VGPU", &[]);
    let server = support::http(vec![(
        "/fleet/valid.cpio.zst".into(),
        fs::read(&bundle).unwrap(),
    )]);
    host.make_hook(&config(
        index,
        vec![
            path_source("/srv/missing"),
            Source::Label {
                label: "VGPU".into(),
            },
            Source::Url {
                url: format!("{}fleet/", server.base),
                cert_fingerprint: None,
            },
        ],
        vec![],
    ));
    let ran = host.run();
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    assert!(ran.stderr.contains("label VGPU: "), "{}", ran.stderr);
    assert!(
        ran.stdout
            .contains(&format!("from url {}fleet/", server.base)),
        "{}",
        ran.stdout
    );
    assert_eq!(*server.hits.lock().unwrap(), ["/fleet/valid.cpio.zst"]);
    assert_eq!(host.calls()[2..], STARTED);
    assert!(host.root.join("usr/local/sbin/vgpu-firstboot").is_file());
}

#[test]
fn no_source_has_it_every_reason_is_listed() {
    let bundle = fixture("valid.cpio.zst");
    let host = Host::new();
    host.stick(
        "VGPU",
        &[("valid.cpio.zst", &fixture("signed-valid.cpio.zst"))],
    );
    let server = support::http(vec![]);
    host.make_hook(&config(
        single_index(&bundle),
        vec![
            path_source("/srv"),
            Source::Label {
                label: "VGPU".into(),
            },
            Source::Url {
                url: server.base.clone(),
                cert_fingerprint: None,
            },
        ],
        vec![],
    ));
    let ran = host.run();
    assert_eq!(ran.code, Some(1), "{}", ran.all());
    let last = ran.stderr.lines().last().unwrap();
    assert!(
        last.starts_with("vgpu-hook: could not get bundle valid"),
        "{last}"
    );
    assert!(last.contains("1) path /srv: "), "{last}");
    assert!(last.contains("2) label VGPU: it is "), "{last}");
    assert!(
        last.contains("3) url http://127.0.0.1:")
            && last.contains("the server answered with an error"),
        "{last}"
    );
    assert!(!host.root.join("usr").exists());
    assert!(host.marker().is_none());
    assert!(host.calls().iter().all(|c| !c.starts_with("systemctl")));
}

#[test]
fn an_answer_larger_than_the_bundle_is_cut_off() {
    let bundle = fixture("valid.cpio.zst");
    let host = Host::new();
    // The file the server sends is 64 MiB: far past the index's size.
    let bytes = fs::read(&bundle).unwrap();
    let mut huge = bytes.clone();
    huge.resize(64 << 20, 0);
    let server = support::http(vec![("/valid.cpio.zst".into(), huge)]);
    host.make_hook(&config(
        single_index(&bundle),
        vec![Source::Url {
            url: server.base.clone(),
            cert_fingerprint: None,
        }],
        vec![],
    ));
    // Nothing stays: not the root's files, not a staged partial download.
    host.run_refused(&[&format!(
        "the answer is larger than the bundle's {} bytes: stopped",
        bytes.len()
    )]);
}

#[test]
fn https_with_the_pinned_certificate_only() {
    let bundle = fixture("valid.cpio.zst");
    let served = tempfile::tempdir().unwrap();
    fs::copy(&bundle, served.path().join("valid.cpio.zst")).unwrap();
    let certs = tempfile::tempdir().unwrap();
    let server = support::https(served.path(), certs.path());
    let run = |fp: &str| {
        let host = Host::new();
        host.make_hook(&config(
            single_index(&bundle),
            vec![Source::Url {
                url: server.base.clone(),
                cert_fingerprint: Some(fp.to_owned()),
            }],
            vec![],
        ));
        (host.run(), host)
    };
    let (ran, host) = run(&server.fingerprint);
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    assert_eq!(host.calls(), STARTED);
    assert!(host.root.join("usr/local/sbin/vgpu-firstboot").is_file());

    let wrong = vgpu_bake::rollout::config::normalize_fingerprint(&"ab".repeat(32)).unwrap();
    let (ran, host) = run(&wrong);
    assert_eq!(ran.code, Some(1), "{}", ran.all());
    assert!(
        ran.stderr.contains(&format!(
            "has SHA-256 fingerprint {}, not the pinned {wrong}",
            server.fingerprint
        )),
        "{}",
        ran.stderr
    );
    assert!(!host.root.join("usr").exists());
    assert!(host.calls().is_empty());
}

#[test]
fn a_failing_systemctl_fails_the_hook() {
    let host = Host::new();
    let bundle = fixture("valid.cpio.zst");
    host.place("/srv", "valid.cpio.zst", &bundle);
    host.make_hook(&config(
        single_index(&bundle),
        vec![path_source("/srv")],
        vec![],
    ));
    let root = host.root.to_str().unwrap();
    let ran = host.run_with(
        &["network-online", "--root", root],
        &[("VGPU_TEST_SYSTEMCTL_FAIL", "1")],
    );
    assert_eq!(ran.code, Some(1), "{}", ran.all());
    assert!(
        ran.stderr.contains("`systemctl daemon-reload` failed")
            && ran.stderr.contains("Failed to connect to bus"),
        "{}",
        ran.stderr
    );
    assert_eq!(host.calls(), ["systemctl daemon-reload"]);
    // The cause is said once.
    assert_eq!(
        ran.stderr.matches("Failed to connect to bus").count(),
        1,
        "{}",
        ran.stderr
    );
}

#[test]
fn usage_help_and_the_bare_template() {
    let host = Host::new();
    let bundle = fixture("signed-valid.cpio.zst");
    host.make_hook(&config(
        single_index(&bundle),
        vec![
            path_source("/srv"),
            Source::Label {
                label: "VGPU".into(),
            },
        ],
        vec![key_text("test.pub")],
    ));
    let ran = host.run_with(&["--help"], &[]);
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    assert!(
        ran.stdout.starts_with("usage: vgpu-hook ORDERING"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("sources, in order: path /srv, label VGPU"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("bundles: 1\n  signed-valid 5229 bytes"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("hosts: 0\ntrusted keys: 99991D95F45D37EF"),
        "{}",
        ran.stdout
    );
    for args in [
        &[][..],
        &["later"],
        &["fully-up", "--root"],
        &["fully-up", "--x"],
    ] {
        let ran = host.run_with(args, &[]);
        assert_eq!(ran.code, Some(2), "{args:?}: {}", ran.all());
        assert!(ran.stderr.contains("usage: vgpu-hook"), "{}", ran.stderr);
    }
    assert!(host.calls().is_empty());

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vgpu-hook"))
        .args(["fully-up", "--root", host.root.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("this executable carries no hook configuration: it is the vgpu-hook template"),
        "{err}"
    );
}

#[test]
fn waits_for_a_stick_udev_has_not_seen_yet() {
    let bundle = fixture("valid.cpio.zst");
    let host = Host::new();
    let (stick, link) = host.stick_unplugged("VGPU", &[("valid.cpio.zst", &bundle)]);
    host.make_hook(&config(
        single_index(&bundle),
        vec![Source::Label {
            label: "VGPU".into(),
        }],
        vec![],
    ));
    let plug = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        std::os::unix::fs::symlink(stick, link).unwrap();
    });
    let started = std::time::Instant::now();
    let ran = host.run();
    plug.join().unwrap();
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    assert!(started.elapsed() >= std::time::Duration::from_millis(1500));
    assert!(host.calls()[0].starts_with("mount -o ro,nosuid,nodev,noexec "));
    assert!(host.root.join("usr/local/sbin/vgpu-firstboot").is_file());
}

//! `vgpu-bake fleet`: golden inventories and the whole command.
//!
//! `tests/fleet/<case>.toml` -> `<case>.index.toml` (the index written,
//! with the real bundles' sha256: the bake is reproducible) or
//! `<case>.error` (the exact error text). `VGPU_BAKE_BLESS=1 cargo test -p
//! vgpu-bake --test fleet` rewrites them; review the diff before committing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use vgpu_bake::bundle::BakeOptions;
use vgpu_bake::fetch::FetchOptions;
use vgpu_bake::gpudb::GpuDb;
use vgpu_bake::rollout::config::{Source, read_trailer};
use vgpu_bake::rollout::fleet::{FleetInputs, fleet};
use vgpu_bake::rollout::index::{HostIds, Index, IndexError};

#[path = "support/run.rs"]
mod run;
use run::{vgpu_bake, workspace};

/// A stand-in agent and hook template: fixed bytes, so the bundles' and
/// the hook's bytes are fixed too.
fn stand_ins(dir: &Path) -> (PathBuf, PathBuf) {
    let agent = dir.join("agent");
    fs::write(&agent, "#!/bin/sh\necho fake agent\n").unwrap();
    let template = dir.join("vgpu-hook");
    fs::write(&template, b"\x7fELF stand-in vgpu-hook template\n").unwrap();
    (agent, template)
}

fn inputs(tmp: &Path, inventory: &Path, out: PathBuf) -> FleetInputs {
    let (agent, template) = stand_ins(tmp);
    FleetInputs {
        inventory: inventory.to_owned(),
        out,
        fetch: FetchOptions::new(tmp.join("cache")),
        agent,
        options: BakeOptions {
            mtime: 0,
            ..BakeOptions::default()
        },
        template,
        sources: vec![Source::Url {
            url: "http://10.0.2.2:8080/".into(),
            cert_fingerprint: None,
        }],
        trusted: vec![],
    }
}

#[test]
fn golden_inventories() {
    std::env::set_current_dir(workspace()).unwrap();
    let dir = workspace().join("tests/fleet");
    let bless = std::env::var_os("VGPU_BAKE_BLESS").is_some();
    let db = GpuDb::builtin().unwrap();
    let mut cases: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".toml")
                .filter(|s| !s.ends_with(".index"))
                .map(String::from)
        })
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "expected the cases in {}", dir.display());
    let mut failures = Vec::new();
    for case in &cases {
        let tmp = tempfile::tempdir().unwrap();
        let rel = PathBuf::from(format!("tests/fleet/{case}.toml"));
        let out = tmp.path().join("fleet");
        let got = fleet(&inputs(tmp.path(), &rel, out.clone()), &db)
            .map(|_| fs::read_to_string(out.join("index.toml")).unwrap())
            .map_err(|e| e.to_string());
        if got.is_err() {
            assert!(!out.exists(), "{case}: failed but wrote {}", out.display());
        }
        let index_file = dir.join(format!("{case}.index.toml"));
        let error_file = dir.join(format!("{case}.error"));
        if bless {
            let _ = fs::remove_file(&index_file);
            let _ = fs::remove_file(&error_file);
            match &got {
                Ok(i) => fs::write(&index_file, i).unwrap(),
                Err(e) => fs::write(&error_file, format!("{e}\n")).unwrap(),
            }
            continue;
        }
        let expected = match (
            fs::read_to_string(&index_file),
            fs::read_to_string(&error_file),
        ) {
            (Ok(i), Err(_)) => Ok(i),
            (Err(_), Ok(e)) => Err(e.trim_end_matches('\n').to_string()),
            _ => {
                failures.push(format!(
                    "{case}: needs exactly one of {case}.index.toml or {case}.error"
                ));
                continue;
            }
        };
        if got != expected {
            failures.push(format!(
                "{case}:\n--- expected\n{expected:?}\n--- got\n{got:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden case(s) differ:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Every file under `dir`, relative, with its bytes.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn fleet_args<'a>(tmp: &'a Path, out: &'a Path, inventory: &'a str) -> Vec<String> {
    vec![
        "fleet".into(),
        inventory.into(),
        "--out".into(),
        out.display().to_string(),
        "--agent".into(),
        tmp.join("agent").display().to_string(),
        "--hook-template".into(),
        tmp.join("vgpu-hook").display().to_string(),
        "--cache".into(),
        tmp.join("cache").display().to_string(),
        "--from-label".into(),
        "VGPU".into(),
        "--from-url".into(),
        "http://10.0.2.2:8080".into(),
    ]
}

#[test]
fn three_hosts_two_profiles_bake_two_bundles_reproducibly() {
    let tmp = tempfile::tempdir().unwrap();
    stand_ins(tmp.path());
    let out = tmp.path().join("site/fleet");
    fs::create_dir(tmp.path().join("site")).unwrap();
    let args = fleet_args(
        tmp.path(),
        &out,
        "tests/fleet/three-hosts-two-profiles.toml",
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = vgpu_bake(&args);
    assert_eq!(code, 0, "{stdout}\n{stderr}");

    // The summary: one line per bundle, then the hook.
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].starts_with("bundle demo "), "{stdout}");
    assert!(lines[0].contains("1 host(s) + default"), "{stdout}");
    assert!(lines[1].starts_with("bundle passthrough "), "{stdout}");
    assert!(lines[1].contains("2 host(s)"), "{stdout}");
    assert!(lines[2].starts_with("hook   "), "{stdout}");
    assert!(lines[2].contains("first-boot-hook"), "{stdout}");

    let first = tree(&out);
    let names: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 6, "{names:?}");
    assert!(names.contains(&"index.toml") && names.contains(&"first-boot-hook"));

    // The index round-trips and names the bundles it sits beside.
    let text = fs::read_to_string(out.join("index.toml")).unwrap();
    assert_eq!(
        text,
        fs::read_to_string(workspace().join("tests/fleet/three-hosts-two-profiles.index.toml"))
            .unwrap(),
        "the command writes the golden index"
    );
    let index = Index::parse(&text).unwrap();
    assert_eq!(Index::parse(&index.to_toml()).unwrap(), index);
    assert_eq!(index.bundles.len(), 2);
    for b in &index.bundles {
        let bytes = fs::read(out.join(&b.file)).unwrap();
        assert_eq!(bytes.len() as u64, b.size);
        assert_eq!(
            vgpu_bake::hash::digest_bytes(&bytes).sha256,
            b.sha256.to_string()
        );
        assert_eq!(b.file, format!("bundles/{}.cpio.zst", b.sha256));
        // `sha256sum -c` in bundles/ checks it.
        let check = Command::new("sha256sum")
            .arg("-c")
            .arg(format!("{}.cpio.zst.sha256", b.sha256))
            .current_dir(out.join("bundles"))
            .output()
            .unwrap();
        assert!(check.status.success(), "{check:?}");
    }

    // Each host gets its bundle; an unknown one the default.
    let pick = |ids: HostIds| index.select(&ids).map(|b| b.name.clone());
    let by_mac = HostIds {
        macs: vec!["52:54:00:ab:cd:ef".into()],
        ..HostIds::default()
    };
    assert_eq!(pick(by_mac).unwrap(), "passthrough");
    let by_serial = HostIds {
        serial: Some("CZ1234ABCD".into()),
        ..HostIds::default()
    };
    assert_eq!(pick(by_serial).unwrap(), "passthrough");
    let by_uuid = HostIds {
        uuid: Some("4c4c4544-0042-3510-8052-b4c04f384e32".into()),
        ..HostIds::default()
    };
    assert_eq!(pick(by_uuid).unwrap(), "demo");
    assert_eq!(pick(HostIds::default()).unwrap(), "demo");
    let two = HostIds {
        macs: vec!["52:54:00:12:34:56".into()],
        uuid: Some("4c4c4544-0042-3510-8052-b4c04f384e32".into()),
        serial: None,
    };
    assert!(matches!(
        index.select(&two),
        Err(IndexError::Ambiguous { .. })
    ));

    // The hook carries the same index and the sources, in order.
    let hook = fs::read(out.join("first-boot-hook")).unwrap();
    assert!(hook.starts_with(b"\x7fELF stand-in vgpu-hook template\n"));
    let config = read_trailer(&hook).unwrap();
    assert_eq!(config.index, index);
    assert_eq!(
        config.sources,
        [
            Source::Label {
                label: "VGPU".into()
            },
            Source::Url {
                url: "http://10.0.2.2:8080/".into(),
                cert_fingerprint: None
            }
        ]
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(out.join("first-boot-hook"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);

    // Again over the same DIR: the same bytes, and no staging left.
    let (code, _, stderr) = vgpu_bake(&args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(tree(&out), first);
    let left: Vec<_> = fs::read_dir(tmp.path().join("site"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["fleet"]);
}

#[test]
fn a_bad_inventory_or_profile_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    stand_ins(tmp.path());
    let site = tmp.path().join("site");
    fs::create_dir(&site).unwrap();
    let out = site.join("fleet");
    for (inventory, want) in [
        (
            "tests/fleet/err-bad-profile.toml",
            "tests/fleet/../profiles/err-bad-mode.toml",
        ),
        (
            "tests/fleet/err-missing-profile.toml",
            "host[0].profile = \"profiles/two-gpu.toml\": cannot find the profile tests/fleet/profiles/two-gpu.toml",
        ),
    ] {
        let args = fleet_args(tmp.path(), &out, inventory);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, stderr) = vgpu_bake(&args);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains(want), "{stderr}");
        assert_eq!(fs::read_dir(&site).unwrap().count(), 0, "{inventory}");
    }
    // A bake that fails half way (the second profile's agent is gone by
    // then: here, from the start): the staging directory goes too.
    let mut args = fleet_args(
        tmp.path(),
        &out,
        "tests/fleet/three-hosts-two-profiles.toml",
    );
    let agent_at = args.iter().position(|a| a == "--agent").unwrap() + 1;
    args[agent_at] = tmp.path().join("no-agent").display().to_string();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, stderr) = vgpu_bake(&a);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot read the agent binary"), "{stderr}");
    assert_eq!(fs::read_dir(&site).unwrap().count(), 0);
    // No source for the hook: refused before any bake.
    let (code, _, stderr) = vgpu_bake(&[
        "fleet",
        "tests/fleet/default-only.toml",
        "--out",
        out.to_str().unwrap(),
        "--agent",
        tmp.path().join("agent").to_str().unwrap(),
        "--hook-template",
        tmp.path().join("vgpu-hook").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "a usage error");
    assert!(stderr.contains("no source: give --from-path"), "{stderr}");
    assert_eq!(fs::read_dir(&site).unwrap().count(), 0);
    // A directory that is not a fleet's is not replaced.
    fs::create_dir(&out).unwrap();
    fs::write(out.join("notes.txt"), "mine").unwrap();
    let args = fleet_args(tmp.path(), &out, "tests/fleet/default-only.toml");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, stderr) = vgpu_bake(&args);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("exists and is not a fleet directory"),
        "{stderr}"
    );
    assert_eq!(fs::read_to_string(out.join("notes.txt")).unwrap(), "mine");
}

#[test]
fn signed_fleets_carry_the_trusted_keys_and_refuse_a_wrong_one() {
    let tmp = tempfile::tempdir().unwrap();
    stand_ins(tmp.path());
    let t = tmp.path();
    for prefix in ["fleet", "other"] {
        let (code, _, err) = vgpu_bake(&["keygen", t.join(prefix).to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
    }
    let out = t.join("signed");
    let mut args = fleet_args(t, &out, "tests/fleet/three-hosts-two-profiles.toml");
    args.extend(
        [
            "--sign-key",
            t.join("fleet.key").to_str().unwrap(),
            "--trusted-key",
            t.join("fleet.pub").to_str().unwrap(),
        ]
        .map(String::from),
    );
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, err) = vgpu_bake(&a);
    assert_eq!(code, 0, "{err}");
    let config = read_trailer(&fs::read(out.join("first-boot-hook")).unwrap()).unwrap();
    assert_eq!(
        config.trusted_keys,
        [fs::read_to_string(t.join("fleet.pub")).unwrap()]
    );
    for b in &config.index.bundles {
        let (code, stdout, err) = vgpu_bake(&[
            "inspect",
            out.join(&b.file).to_str().unwrap(),
            "--trusted-key",
            t.join("fleet.pub").to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
        assert!(stdout.contains("signature verified"), "{stdout}");
    }
    // Signed with one key, trusting another: refused, nothing written.
    let out2 = t.join("wrong");
    let mut args = fleet_args(t, &out2, "tests/fleet/default-only.toml");
    args.extend(
        [
            "--sign-key",
            t.join("fleet.key").to_str().unwrap(),
            "--trusted-key",
            t.join("other.pub").to_str().unwrap(),
        ]
        .map(String::from),
    );
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, err) = vgpu_bake(&a);
    assert_eq!(code, 1);
    assert!(
        err.contains("does not verify with the --trusted-key keys"),
        "{err}"
    );
    assert!(!out2.exists());
    // A --trusted-key that is not a key.
    let mut args = fleet_args(t, &out2, "tests/fleet/default-only.toml");
    args.extend(["--trusted-key", t.join("agent").to_str().unwrap()].map(String::from));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, err) = vgpu_bake(&a);
    assert_eq!(code, 1);
    assert!(err.contains("agent"), "{err}");
    assert!(!out2.exists());
}

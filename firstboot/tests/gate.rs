//! The host gate in the real agent: hosts a plan does not fit are refused
//! before any change, with every reason, and the whole fixture root is
//! byte-identical afterwards (paths, modes, contents, symlink targets),
//! except the state file that records the refusal and its lock file.
//! The copies get the empty `dev/` and `run/` a real root has: entering a
//! root (`--root`) creates missing mount points, which is not the gate's
//! doing.

#[path = "agent/harness.rs"]
mod agent_harness;
#[path = "support/hosts.rs"]
#[allow(dead_code)]
mod hosts;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use agent_harness::SimHost;
use vgpu_firstboot::agent::journal::{JOURNAL_DIR, JOURNAL_FILE};
use vgpu_plan::compat::Support;
use vgpu_plan::layout;
use vgpu_plan::plan::{GpuRole, GpuRule, Plan};

type Tree = BTreeMap<String, (u32, Vec<u8>)>;

/// Every path under `root`: mode and contents, or a symlink's target.
fn snapshot(root: &Path) -> Tree {
    fn walk(root: &Path, dir: &Path, out: &mut Tree) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let meta = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&p).unwrap();
                out.insert(rel, (0, target.to_string_lossy().into_owned().into_bytes()));
            } else if meta.is_dir() {
                out.insert(format!("{rel}/"), (mode, Vec::new()));
                walk(root, &p, out);
            } else {
                out.insert(rel, (mode, fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Tree::new();
    walk(root, root, &mut out);
    out
}

/// The paths that differ between two snapshots.
fn changed(before: &Tree, after: &Tree) -> Vec<String> {
    let mut paths: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// A fixture host with `plan` installed, the test rows as its baked
/// compatibility table, and `edit` applied to the plan and the tree.
fn host(fixture: &str, plan: &str, edit: impl FnOnce(&Path, &mut Plan)) -> SimHost {
    let host = SimHost::new(fixture, plan);
    let root = host.root();
    let path = root.join(layout::PLAN_FILE);
    let mut p = Plan::from_toml(&fs::read_to_string(&path).unwrap()).unwrap();
    for dir in ["dev", "run"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    edit(&root, &mut p);
    fs::write(&path, p.to_toml()).unwrap();
    fs::write(
        root.join(layout::COMPAT_FILE),
        toml::to_string(&hosts::table()).unwrap(),
    )
    .unwrap();
    // As a re-bake would: the manifest lists the edited plan and table
    // (the agent refuses a plan that does not match it).
    let mpath = root.join(layout::MANIFEST_FILE);
    let mut m =
        vgpu_plan::manifest::Manifest::from_toml(&fs::read_to_string(&mpath).unwrap()).unwrap();
    for e in m
        .entries
        .iter_mut()
        .filter(|e| e.path == layout::PLAN_FILE || e.path == layout::COMPAT_FILE)
    {
        let b = fs::read(root.join(&e.path)).unwrap();
        e.size = Some(b.len() as u64);
        e.sha256 = Some(vgpu_firstboot::sha256::sha256_hex(&b).parse().unwrap());
    }
    fs::write(&mpath, m.to_toml()).unwrap();
    host
}

fn rule(id: &str, name: &str, support: Support) -> GpuRule {
    GpuRule {
        id: id.into(),
        role: GpuRole::Vgpu,
        name: name.into(),
        database: Some(support),
        declared: None,
        address: None,
    }
}

/// Runs the agent on `host`; asserts it refused with `status` and exit
/// `code`, that the reasons it lists are exactly `reasons` (in the log and
/// in the state), and that nothing but the state file changed.
fn refused(host: &SimHost, code: i32, status: &str, reasons: &[&str]) {
    let before = snapshot(&host.root());
    let out = host.agent(&["run"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    let listed: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("vgpu-firstboot: "))
        .filter_map(|l| {
            l.strip_prefix("fail: ")
                .or_else(|| l.strip_prefix("needs-operator: "))
        })
        .collect();
    assert_eq!(listed, reasons, "{stderr}");
    let after = snapshot(&host.root());
    // The state, and the progress textfile that says so (journaled, so
    // `undo` removes it).
    let textfile = agent_harness::TEXTFILE;
    let mut want = vec![
        format!("{}/lock", layout::STATE_DIR),
        layout::STATE_FILE.into(),
        format!("{JOURNAL_DIR}/"),
        JOURNAL_FILE.into(),
        "var/lib/prometheus/".into(),
        "var/lib/prometheus/node-exporter/".into(),
        textfile.into(),
    ];
    want.sort();
    assert_eq!(changed(&before, &after), want, "{stderr}");
    let progress = String::from_utf8_lossy(&after[textfile].1).into_owned();
    assert!(
        progress.contains(&format!("state=\"{status}\"}} 1\n")),
        "{progress}"
    );
    assert!(host.commands().is_empty(), "ran: {:?}", host.commands());

    let st = host.agent(&["status", "--json"], &[]);
    let json: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(json["status"], status, "{json}");
    let key = if status == "failed" {
        "reason"
    } else {
        "action"
    };
    let said = json[key].as_str().unwrap_or_default().to_string();
    for r in reasons {
        assert!(said.contains(r), "{said}\nmissing: {r}");
    }
}

#[test]
fn unlock_plan_on_a_t4_only_host_is_refused() {
    // The plan as baked: it names the 2080 Ti the profile was written for.
    let declared = host("pve8-grub", "unlock-pve8-pin65", |_, _| {});
    refused(
        &declared,
        1,
        "failed",
        &[
            "`gpu[0]` 10de:1e07 (NVIDIA GeForce RTX 2080 Ti) is not on this host; it has 0000:01:00.0 10de:1eb8 (NVIDIA Tesla T4): use the bundle made for this host, or fix `[[gpu]]` in the profile",
        ],
    );
    // A profile without `[[gpu]]`: the card's class decides.
    let undeclared = host("pve8-grub", "unlock-pve8-pin65", |_, p| p.gpus.clear());
    refused(
        &undeclared,
        1,
        "failed",
        &[
            "no GPU on this host fits the plan's mode `unlock` (a vgpu_unlock consumer card needed): 0000:01:00.0 10de:1eb8 (NVIDIA Tesla T4) is a native vGPU card; use a bundle of the cards' mode",
        ],
    );
}

#[test]
fn native_a100_plan_on_a_2080ti_host_is_refused() {
    let host = host("pve8-grub", "native-a100-corrected", |root, _| {
        let dev = root.join("sys/bus/pci/devices/0000:01:00.0");
        fs::write(dev.join("device"), "0x1e07\n").unwrap();
        fs::write(dev.join("class"), "0x030000\n").unwrap();
    });
    refused(
        &host,
        1,
        "failed",
        &[
            "`gpu[0]` 10de:20f1 (NVIDIA A100-PCIE-40GB) is not on this host; it has 0000:01:00.0 10de:1e07 (NVIDIA GeForce RTX 2080 Ti): use the bundle made for this host, or fix `[[gpu]]` in the profile",
        ],
    );
}

#[test]
fn p40_plan_on_a_t4_and_3090_host_is_refused() {
    let host = host("pve8-two-gpus", "native-pve8", |_, p| {
        p.gpus = vec![rule("10de:1b38", "NVIDIA Tesla P40", Support::Native)];
    });
    refused(
        &host,
        1,
        "failed",
        &[
            "`gpu[0]` 10de:1b38 (NVIDIA Tesla P40) is not on this host; it has 0000:01:00.0 10de:1eb8 (NVIDIA Tesla T4), 0000:02:00.0 10de:2204 (NVIDIA GeForce RTX 3090): use the bundle made for this host, or fix `[[gpu]]` in the profile",
        ],
    );
}

fn ubuntu(root: &Path) {
    fs::write(
        root.join("etc/os-release"),
        "PRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nVERSION_CODENAME=noble\nID=ubuntu\nID_LIKE=debian\n",
    )
    .unwrap();
}

const NOBLE: &str = "the host runs Ubuntu 24.04.1 LTS (ubuntu noble, from /etc/os-release) but the plan is for Proxmox VE 8 on Debian bookworm: bake the profile with `proxmox` set to this host's release, or install Proxmox VE 8 here";

#[test]
fn wrong_debian_release_is_refused_even_for_a_demo_plan() {
    let native = host("pve8-grub", "native-pve8", |root, _| ubuntu(root));
    refused(&native, 1, "failed", &[NOBLE]);
    let demo = host("pve8-grub", "demo", |root, _| ubuntu(root));
    refused(&demo, 1, "failed", &[NOBLE]);
    // And the dry run shows the gate first, before any step.
    let out = demo.agent(&["plan"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    let gate = text.find("host gate: FAILED").expect(&text);
    let step = text.find("[phase 1]").expect(&text);
    assert!(gate < step, "{text}");
    assert!(text.contains(&format!("fail: {NOBLE}")), "{text}");
}

#[test]
fn a_debian_host_without_proxmox_is_refused() {
    let host = host("pve8-grub", "native-pve8", |root, _| {
        fs::remove_dir_all(root.join("etc/pve")).unwrap();
        fs::remove_file(root.join("usr/bin/pveversion")).unwrap();
    });
    refused(
        &host,
        1,
        "failed",
        &[
            "not a Proxmox VE host: neither /etc/pve nor /usr/bin/pveversion exists; install Proxmox VE 8 first",
        ],
    );
}

#[test]
fn a_card_at_another_address_is_refused() {
    let host = host("pve8-two-gpus", "two-gpu", |_, p| {
        p.gpus[0].address = Some("0000:03:00.0".into());
    });
    refused(
        &host,
        1,
        "failed",
        &[
            "`gpu[0]` 10de:1eb8 (NVIDIA Tesla T4) at 0000:03:00.0 is not on this host (10de:1eb8 is at 0000:01:00.0); it has 0000:01:00.0 10de:1eb8 (NVIDIA Tesla T4), 0000:02:00.0 10de:2204 (NVIDIA GeForce RTX 3090): use the bundle made for this host, or fix `[[gpu]]` in the profile",
        ],
    );
}

#[test]
fn iommu_off_in_the_firmware_needs_an_operator() {
    // The kernel was started with intel_iommu=on, and still no group.
    let mut host = host("pve8-two-gpus", "two-gpu", |root, _| {
        let groups = root.join("sys/kernel/iommu_groups");
        fs::remove_dir_all(&groups).unwrap();
        fs::create_dir(&groups).unwrap();
    });
    refused(
        &host,
        2,
        "needs-operator",
        &[
            "IOMMU is off (no IOMMU groups) although the running kernel was started with it on (/proc/cmdline): enable VT-d/AMD-Vi in the firmware, reboot, then `vgpu-firstboot retry`",
        ],
    );
    // Still the same boot: it keeps waiting, and changes nothing.
    let again = host.agent(&["run"], &[]);
    assert_eq!(again.status.code(), Some(2));
    assert!(host.commands().is_empty(), "ran: {:?}", host.commands());
    // The operator turns VT-d on and reboots: the gate runs again, passes,
    // and phase 1 starts.
    let groups = host.root().join("sys/kernel/iommu_groups");
    fs::remove_dir(&groups).unwrap();
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(agent_harness::workspace().join("tests/hosts/pve8-two-gpus/sys/kernel/iommu_groups"))
        .arg(&groups)
        .status()
        .unwrap();
    assert!(st.success());
    host.reboot();
    let out = host.agent(&["run"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("host gate: passed"), "{stderr}");
    assert!(!host.commands().is_empty(), "phase 1 ran nothing\n{stderr}");
}

#[test]
fn a_demo_plan_is_bound_by_the_os_check_only() {
    // Plain Debian 12 without a GPU (the VM test's guest): the gate
    // reports what does not fit, and passes.
    let host = host("debian-plain", "demo", |_, _| {});
    let out = host.agent(&["plan"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let gate: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("host gate:"))
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(
        gate,
        [
            "host gate: passed",
            "not binding (demo plan): not a Proxmox VE host: neither /etc/pve nor /usr/bin/pveversion exists; install Proxmox VE 8 first",
            "not binding (demo plan): no NVIDIA GPU found (no PCI function with vendor 10de and a VGA or 3D controller class): vGPU needs one",
            "note: before reboot: IOMMU is off (no IOMMU groups): enable VT-d/AMD-Vi in the firmware; the agent adds the kernel arguments",
        ],
        "{text}"
    );
}

#[test]
fn regenerated_facts_fixtures_are_the_committed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let ws = agent_harness::workspace();
    let st = std::process::Command::new("bash")
        .arg(ws.join("tests/facts/generate.sh"))
        .arg(env!("CARGO_BIN_EXE_vgpu-firstboot"))
        .env("VGPU_FACTS_OUT", dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    for name in hosts::HOSTS {
        let file = format!("{name}.json");
        let fresh = fs::read_to_string(dir.path().join(&file)).unwrap();
        let committed = fs::read_to_string(ws.join("tests/facts").join(&file)).unwrap();
        assert_eq!(
            fresh, committed,
            "tests/facts/{file} is stale: run tests/facts/generate.sh"
        );
    }
}

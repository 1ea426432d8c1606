//! `plan --json` (`commands::dry_run_json`): the dry run as one JSON
//! document, computed once ([`dry_run_report`]) and rendered as text or
//! JSON. Checked against the demo plan on the `pve8-grub` fixture host, and
//! against the text the real agent's `plan` prints for the same host.

#[path = "agent/harness.rs"]
mod agent_harness;

use agent_harness::SimHost;
use serde_json::Value;
use vgpu_firstboot::commands::{dry_run_json, dry_run_report, render_text};
use vgpu_plan::layout;
use vgpu_plan::plan::Plan;

fn document(host: &SimHost) -> Value {
    let report = dry_run_report(&host.root()).unwrap();
    serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap()
}

#[test]
fn the_json_dry_run_holds_the_gate_bundle_and_every_change() {
    let host = SimHost::with_plan("pve8-grub", "demo", |p| {
        p.report.url = Some("https://collector.example.net/vgpu".into());
    });
    let before = host.tree();
    let plan =
        Plan::from_toml(&std::fs::read_to_string(host.root().join(layout::PLAN_FILE)).unwrap())
            .unwrap();
    let doc = document(&host);
    assert_eq!(doc["schema"], 1);
    assert_eq!(doc["name"], plan.name.as_str());
    assert_eq!(doc["mode"], "native");
    assert_eq!(doc["proxmox"], 8);
    assert_eq!(doc["demo"], true);
    assert_eq!(
        doc["progress"]["textfile"],
        "/var/lib/prometheus/node-exporter/vgpu-firstboot.prom"
    );
    assert_eq!(doc["progress"]["url"], "https://collector.example.net/vgpu");

    assert_eq!(doc["gate"]["verdict"], "passed", "{doc:#}");
    assert!(doc["gate"]["reasons"].is_array(), "{doc:#}");

    let bundle = &doc["bundle"];
    assert_eq!(bundle["passes"], true, "{doc:#}");
    assert!(bundle.get("refused").is_none());
    assert_eq!(bundle["signature"], "none");
    let files: Vec<&str> = bundle["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(files[0], format!("/{}", layout::PLAN_FILE));
    assert!(
        files.iter().any(|f| f.ends_with("hello_2.10-3_amd64.deb")),
        "{files:?}"
    );

    let steps = doc["steps"].as_array().unwrap();
    let kinds: Vec<&str> = steps.iter().map(|s| s["kind"].as_str().unwrap()).collect();
    let want: Vec<&str> = plan.steps.iter().map(|s| s.kind.id()).collect();
    assert_eq!(kinds, want);
    for (s, step) in steps.iter().zip(&plan.steps) {
        assert_eq!(s["why"], step.why.as_str());
        assert_eq!(s["state"], "pending");
    }
    assert_eq!(steps[0]["phase"], "one");
    let changes = |kind: &str| -> String {
        let s = steps.iter().find(|s| s["kind"] == kind).unwrap();
        s["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(changes("kernel-args").contains("intel_iommu=on"), "{doc:#}");
    assert!(
        changes("kernel-args").contains("/etc/default/grub.d/vgpu-bake.cfg"),
        "{doc:#}"
    );
    assert!(changes("blacklist-modules").contains("nouveau"), "{doc:#}");

    // The real agent's text is the same value rendered for humans.
    let out = host.agent(&["plan"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let report = dry_run_report(&host.root()).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), render_text(&report));
    assert_eq!(dry_run_json(&host.root()), 0);

    // `plan --json` through the real binary: one document on stdout, the
    // same value; -q changes nothing of it; -q with -v is a usage error.
    for args in [&["plan", "--json"][..], &["-q", "plan", "--json"]] {
        let out = host.agent(args, &[]);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let got: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
        assert_eq!(got, document(&host), "{args:?}");
    }
    let out = host.agent(&["-q", "-v", "plan", "--json"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("-q and -v"));
    assert_eq!(host.tree(), before, "the dry run changed the host");
}

#[test]
fn the_json_dry_run_carries_a_failed_gate_with_its_reasons() {
    let host = SimHost::new("pve8-grub", "native-pve8");
    std::fs::write(
        host.root().join("etc/os-release"),
        "PRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nVERSION_CODENAME=noble\nID=ubuntu\nID_LIKE=debian\n",
    )
    .unwrap();
    let doc = document(&host);
    assert_eq!(doc["gate"]["verdict"], "fail", "{doc:#}");
    let reasons = doc["gate"]["reasons"].as_array().unwrap();
    let os = reasons
        .iter()
        .find(|r| r["check"] == "os")
        .expect("os reason");
    assert_eq!(os["kind"], "fail");
    assert_eq!(os["binding"], true);
    assert!(
        os["message"]
            .as_str()
            .unwrap()
            .contains("Ubuntu 24.04.1 LTS"),
        "{os}"
    );
}

#[test]
fn without_a_plan_there_is_no_document_and_the_exit_code_is_1() {
    let dir = tempfile::tempdir().unwrap();
    let err = dry_run_report(dir.path()).unwrap_err();
    assert!(
        err.contains("no plan at") && err.contains("vgpu-bake install"),
        "{err}"
    );
    assert_eq!(dry_run_json(dir.path()), 1);
}

//! Exit codes, the human status and the JSON status.

use super::*;

#[test]
fn exit_codes_are_stable() {
    let mut s = State::default();
    for (status, code) in [
        (Status::Done, 0),
        (
            Status::Failed {
                step: "x".into(),
                reason: "y".into(),
            },
            1,
        ),
        (Status::NeedsOperator { action: "z".into() }, 2),
        (Status::InProgress, 3),
        (Status::NotStarted, 3),
    ] {
        s.status = status;
        assert_eq!(exit_code(&s), code, "{:?}", s.status);
    }
}

#[test]
fn utc_dates() {
    assert_eq!(utc(0), "1970-01-01 00:00:00Z");
    assert_eq!(utc(NOW), "2023-11-14 22:13:20Z");
    assert_eq!(utc(951_782_400), "2000-02-29 00:00:00Z");
    assert_eq!(utc(4_107_542_399), "2100-02-28 23:59:59Z");
}

fn failed() -> State {
    run(
        &bound(),
        [
            booted("b1"),
            begin("apt-repositories"),
            complete("apt-repositories"),
            begin("kernel-args"),
            Event::Fail(
                "kernel-args".into(),
                Failure {
                    reason: "`update-grub` failed with exit code 1".into(),
                    exit_code: Some(1),
                    stderr_tail: "line one\n\nerror: \"grub.cfg\" is read-only\n".into(),
                },
            ),
        ],
    )
}

#[test]
fn human_status_of_a_failure() {
    let text = render_human(&failed());
    let expected = format!(
        "\
vgpu-firstboot: FAILED at step kernel-args
  cause: `update-grub` failed with exit code 1
  next: fix the cause, then run `vgpu-firstboot retry`
plan sha256: {SHA}
machine id:  {MACHINE}
boots: 1 seen, reboots: 0 of at most 2
steps:
  done    apt-repositories  at 2023-11-14 22:13:20Z
  failed  kernel-args       attempt 1, exit code 1
          | line one
          | error: \"grub.cfg\" is read-only
  pending reboot
  pending verify-reboot
  pending finish
last error: step kernel-args: `update-grub` failed with exit code 1
recent events:
  2023-11-14 22:13:20Z  agent started in boot b1
  2023-11-14 22:13:20Z  begin step apt-repositories (attempt 1)
  2023-11-14 22:13:20Z  step apt-repositories done
  2023-11-14 22:13:20Z  begin step kernel-args (attempt 1)
  2023-11-14 22:13:20Z  step kernel-args failed (attempt 1): `update-grub` failed with exit code 1
"
    );
    assert_eq!(text, expected, "\n{text}");
}

#[test]
fn human_status_of_a_fresh_host() {
    assert_eq!(
        render_human(&State::default()),
        "vgpu-firstboot: not started\nboots: 0 seen, reboots: 0 of at most 0\n"
    );
}

#[test]
fn json_status_of_a_failure() {
    let json = render_json(&failed()).unwrap();
    let expected = format!(
        concat!(
            r#"{{"schema":3,"status":"failed","exit-code":1,"failed-step":"kernel-args","#,
            r#""reason":"`update-grub` failed with exit code 1","action":null,"state-schema":1,"#,
            r#""plan-sha256":"{sha}","installed-plan-sha256":null,"machine-id":"{machine}","boot-ids":["b1"],"current-boot":"b1","#,
            r#""reboots":0,"reboot-cap":2,"pending-reboot":null,"#,
            r#""last-error":"step kernel-args: `update-grub` failed with exit code 1","steps":["#,
            r#"{{"id":"apt-repositories","state":"done","attempts":1,"attempt":null,"boot-id":"b1","at":{now},"reason":null,"exit-code":null,"stderr-tail":null}},"#,
            r#"{{"id":"kernel-args","state":"failed","attempts":1,"attempt":1,"boot-id":null,"at":null,"reason":"`update-grub` failed with exit code 1","exit-code":1,"stderr-tail":"line one\n\nerror: \"grub.cfg\" is read-only\n"}},"#,
            r#"{{"id":"reboot","state":"pending","attempts":0,"attempt":null,"boot-id":null,"at":null,"reason":null,"exit-code":null,"stderr-tail":null}},"#,
            r#"{{"id":"verify-reboot","state":"pending","attempts":0,"attempt":null,"boot-id":null,"at":null,"reason":null,"exit-code":null,"stderr-tail":null}},"#,
            r#"{{"id":"finish","state":"pending","attempts":0,"attempt":null,"boot-id":null,"at":null,"reason":null,"exit-code":null,"stderr-tail":null}}],"#,
            r#""events":[{{"at":{now},"what":"agent started in boot b1"}},"#,
            r#"{{"at":{now},"what":"begin step apt-repositories (attempt 1)"}},"#,
            r#"{{"at":{now},"what":"step apt-repositories done"}},"#,
            r#"{{"at":{now},"what":"begin step kernel-args (attempt 1)"}},"#,
            r#"{{"at":{now},"what":"step kernel-args failed (attempt 1): `update-grub` failed with exit code 1"}}]}}"#,
        ),
        sha = SHA,
        machine = MACHINE,
        now = NOW
    );
    assert_eq!(json, expected);
}

#[test]
fn human_status_of_an_operator_stop_says_the_agent_resumes_at_the_next_boot() {
    let s = after(
        &bound(),
        Event::NeedOperator("reboot, and at the blue MOK screen choose Enroll MOK".into()),
    );
    let text = render_human(&s);
    assert!(
        text.starts_with(
            "vgpu-firstboot: NEEDS AN OPERATOR\n  action: reboot, and at the blue MOK screen choose Enroll MOK\n  next: the agent resumes by itself at the next boot\n"
        ),
        "{text}"
    );
    assert!(!text.contains("retry"), "{text}");
}

#[test]
fn json_status_of_an_operator_stop_escapes_the_action() {
    let s = after(
        &bound(),
        Event::NeedOperator("press \"Enroll MOK\"\tat the console\n(password: see \\docs)".into()),
    );
    let json = render_json(&s).unwrap();
    assert!(json.starts_with(
        r#"{"schema":3,"status":"needs-operator","exit-code":2,"failed-step":null,"reason":null,"action":"press \"Enroll MOK\"\tat the console\n(password: see \\docs)","#
    ), "{json}");
    assert!(!json.contains('\n'));
}

#[test]
fn json_status_reads_back_whatever_the_strings_hold() {
    let mut action: String = (0u32..0x300).filter_map(char::from_u32).collect();
    action.push_str("\u{2028}\u{2029}\u{fffd}\u{10ffff}😀 tail\\\"");
    let s = after(&bound(), Event::NeedOperator(action.clone()));
    let json = render_json(&s).unwrap();
    assert!(!json.chars().any(|c| (c as u32) < 0x20), "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["action"].as_str(), Some(action.as_str()));
    assert_eq!(v["schema"], JSON_SCHEMA);
    assert_eq!(v["exit-code"], 2);
}

fn installed(sha: &str) -> Result<Option<Installed>, String> {
    Ok(Some(Installed {
        sha256: sha.into(),
        reboot_cap: 7,
    }))
}

#[test]
fn found_judges_the_state_against_the_installed_plan() {
    // No plan, no state: nothing will run.
    assert_eq!(found(Ok(State::default()), Ok(None)), Found::NoBundle);
    assert_eq!(Found::NoBundle.exit_code(), 4);
    // Not started: the plan's reboot cap, not 0.
    let Found::State(fresh) = found(Ok(State::default()), installed(SHA)) else {
        panic!("a fresh state");
    };
    assert_eq!(fresh.reboot_cap, 7);
    assert!(render_human(&fresh).contains("reboots: 0 of at most 7"));
    // Bound to this plan: the state as it is.
    let done = State {
        status: Status::Done,
        ..bound()
    };
    assert_eq!(
        found(Ok(done.clone()), installed(SHA)),
        Found::State(done.clone())
    );
    assert_eq!(
        found(Ok(done.clone()), Ok(None)),
        Found::State(done.clone())
    );
    // Another plan installed over a finished one: never done.
    let other = "f".repeat(64);
    let new = found(Ok(done.clone()), installed(&other));
    assert_eq!(new, Found::NewPlan(done.clone(), other.clone()));
    assert_eq!(new.exit_code(), 5);
    // A state or plan that cannot be read, said with the reason.
    let err = StateError::Corrupt {
        path: "/var/lib/vgpu-firstboot/state.toml".into(),
        detail: "the file is empty".into(),
    };
    let unreadable = found(Err(err), installed(SHA));
    assert!(
        matches!(&unreadable, Found::Unreadable(why) if why.contains("state.toml") && why.contains("empty"))
    );
    assert_eq!(unreadable.exit_code(), 6);
    assert_eq!(
        found(Ok(done), Err("the plan x is not UTF-8".into())),
        Found::Unreadable("the plan x is not UTF-8".into())
    );
}

#[test]
fn every_found_state_is_one_json_document_with_its_code() {
    let done = State {
        status: Status::Done,
        ..bound()
    };
    let other = "f".repeat(64);
    let cases = [
        (Found::NoBundle, "no-bundle", 4),
        (Found::NewPlan(done.clone(), other.clone()), "new-plan", 5),
        (
            Found::Unreadable("x is empty".into()),
            "state-unreadable",
            6,
        ),
        (Found::State(failed()), "failed", 1),
        (Found::State(done), "done", 0),
    ];
    for (found, status, code) in cases {
        let json = render_found_json(&found, found.exit_code()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["schema"], JSON_SCHEMA);
        assert_eq!(v["status"], status, "{json}");
        assert_eq!(v["exit-code"], code, "{json}");
        let human = render_found_human(&found);
        assert!(human.starts_with("vgpu-firstboot: "), "{human}");
        match status {
            "new-plan" => {
                assert_eq!(v["installed-plan-sha256"], other.as_str());
                assert_eq!(v["plan-sha256"], SHA);
                assert!(
                    human.contains(&other) && human.contains("has not run"),
                    "{human}"
                );
            }
            "state-unreadable" => {
                assert_eq!(v["reason"], "x is empty");
                assert_eq!(v["state-schema"], 0);
                assert!(human.contains("cause: x is empty"), "{human}");
            }
            "no-bundle" => {
                assert_eq!(v["plan-sha256"], "");
                assert!(human.contains("vgpu-bake install"), "{human}");
            }
            "failed" => assert_eq!(v["failed-step"], "kernel-args"),
            _ => assert_eq!(v["installed-plan-sha256"], serde_json::Value::Null),
        }
    }
}

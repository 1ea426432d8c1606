//! The transition table, without I/O.

use super::*;

#[test]
fn two_boots_from_not_started_to_done() {
    let s = bound();
    assert_eq!(s.status, Status::NotStarted);
    let s = run(
        &s,
        [
            booted("b1"),
            begin("apt-repositories"),
            complete("apt-repositories"),
            begin("kernel-args"),
            complete("kernel-args"),
            begin("reboot"),
            Event::RebootRequested,
        ],
    );
    assert_eq!(s.status, Status::InProgress);
    assert_eq!(s.reboots, 1);
    assert_eq!(s.pending_reboot.as_deref(), Some("b1"));

    // The reboot happened: the reboot step runs again to check its effect.
    let s = after(&s, booted("b2"));
    assert_eq!(s.pending_reboot, None);
    assert_eq!(s.step("reboot").unwrap().status, StepState::Pending);
    assert!(
        s.events
            .iter()
            .any(|e| e.what.contains("requested the reboot"))
    );
    let s = run(
        &s,
        [
            begin("reboot"),
            complete("reboot"),
            begin("verify-reboot"),
            complete("verify-reboot"),
            begin("finish"),
            complete("finish"),
            Event::Finish,
        ],
    );
    assert_eq!(s.status, Status::Done);
    assert_eq!(s.boot_ids, ["b1", "b2"]);
    assert_eq!(s.step("reboot").unwrap().attempts, 2);
    assert_eq!(s.step("apt-repositories").unwrap().attempts, 1);
    assert_eq!(
        s.step("apt-repositories").unwrap().status,
        StepState::Done {
            boot_id: "b1".into(),
            at: NOW
        }
    );
    assert_eq!(exit_code(&s), 0);
}

#[test]
fn a_step_begun_before_a_crash_runs_again() {
    let s = run(&bound(), [booted("b1"), begin("apt-repositories")]);
    assert_eq!(
        s.step("apt-repositories").unwrap().status,
        StepState::Begun {
            attempt: 1,
            boot_id: "b1".into(),
            at: NOW
        }
    );
    // Power cut, next boot: reset, and the next begin is attempt 2.
    let s = after(&s, booted("b2"));
    assert_eq!(
        s.step("apt-repositories").unwrap().status,
        StepState::Pending
    );
    assert!(
        s.events
            .iter()
            .any(|e| e.what.contains("interrupted by a reboot or power loss"))
    );
    let s = after(&s, begin("apt-repositories"));
    assert!(matches!(
        s.step("apt-repositories").unwrap().status,
        StepState::Begun { attempt: 2, ref boot_id, .. } if boot_id == "b2"
    ));
}

#[test]
fn an_agent_restarted_in_the_same_boot_reruns_the_begun_step() {
    let s = run(
        &bound(),
        [booted("b1"), begin("apt-repositories"), booted("b1")],
    );
    assert_eq!(s.boot_ids, ["b1"], "the same boot is not recorded twice");
    assert_eq!(
        s.step("apt-repositories").unwrap().status,
        StepState::Pending
    );
    assert!(
        s.events
            .iter()
            .any(|e| e.what.contains("the agent stopped while it ran"))
    );
}

#[test]
fn illegal_events_are_refused_with_the_reason() {
    let fresh = bound();
    assert!(refused(&fresh, begin("apt-repositories")).contains("send Booted"));
    assert!(refused(&fresh, complete("apt-repositories")).contains("no step has begun"));
    assert!(refused(&fresh, Event::Finish).contains("no step has begun"));
    assert!(refused(&fresh, Event::Retry(RetryTarget::AllFailed)).contains("no step has failed"));

    let s = run(&fresh, [booted("b1"), begin("apt-repositories")]);
    let msg = refused(&s, begin("kernel-args"));
    assert_eq!(
        msg,
        "cannot begin step kernel-args while the agent is in progress: step apt-repositories is still begun in this boot; complete or fail it first"
    );
    assert!(refused(&s, complete("kernel-args")).contains("it was not begun (it is pending)"));
    assert!(refused(&s, begin("no-such-step")).contains("the plan has no step \"no-such-step\""));
    assert!(refused(&s, Event::Finish).contains("step apt-repositories is begun"));

    let s = after(&s, complete("apt-repositories"));
    assert!(refused(&s, begin("apt-repositories")).contains("already done"));
    assert!(refused(&s, complete("apt-repositories")).contains("it is done"));
    assert!(refused(&s, Event::Retry(RetryTarget::AllFailed)).contains("no step has failed"));
}

#[test]
fn an_illegal_event_leaves_the_state_unchanged() {
    let s = run(&bound(), [booted("b1"), begin("apt-repositories")]);
    let copy = s.clone();
    assert!(s.next(&begin("kernel-args"), NOW).is_err());
    assert_eq!(s, copy);
}

fn failed_state() -> State {
    run(
        &bound(),
        [
            booted("b1"),
            begin("apt-repositories"),
            Event::Fail(
                "apt-repositories".into(),
                Failure {
                    reason: "`apt-get update` failed with exit code 100".into(),
                    exit_code: Some(100),
                    stderr_tail: "E: The repository is not signed.\n".into(),
                },
            ),
        ],
    )
}

#[test]
fn a_failure_stops_everything_until_retry() {
    let s = failed_state();
    assert_eq!(
        s.status,
        Status::Failed {
            step: "apt-repositories".into(),
            reason: "`apt-get update` failed with exit code 100".into()
        }
    );
    assert_eq!(
        s.last_error.as_deref(),
        Some("step apt-repositories: `apt-get update` failed with exit code 100")
    );
    assert!(matches!(
        s.step("apt-repositories").unwrap().status,
        StepState::Failed { attempt: 1, exit_code: Some(100), ref stderr_tail, .. }
            if stderr_tail.contains("not signed")
    ));
    assert_eq!(exit_code(&s), 1);
    for event in [begin("kernel-args"), Event::RebootRequested, Event::Finish] {
        assert!(refused(&s, event).contains("run `vgpu-firstboot retry`"));
    }
    // A reboot does not clear a failure.
    let rebooted = after(&s, booted("b2"));
    assert_eq!(rebooted.status, s.status);

    assert!(
        refused(&s, Event::Retry(RetryTarget::Step("kernel-args".into())))
            .contains("step kernel-args has not failed")
    );
    let retried = after(
        &s,
        Event::Retry(RetryTarget::Step("apt-repositories".into())),
    );
    assert_eq!(retried.status, Status::InProgress);
    assert_eq!(
        retried.step("apt-repositories").unwrap().status,
        StepState::Pending
    );
    assert_eq!(
        retried.last_error, s.last_error,
        "the last error is history"
    );
    let again = after(&retried, begin("apt-repositories"));
    assert!(matches!(
        again.step("apt-repositories").unwrap().status,
        StepState::Begun { attempt: 2, .. }
    ));
    let all = after(&s, Event::Retry(RetryTarget::AllFailed));
    assert_eq!(all.status, Status::InProgress);
}

#[test]
fn success_after_a_retry_clears_the_last_error() {
    let retried = after(&failed_state(), Event::Retry(RetryTarget::AllFailed));
    assert!(retried.last_error.is_some(), "kept until the plan is done");
    let mut events = Vec::new();
    for id in [
        "apt-repositories",
        "kernel-args",
        "reboot",
        "verify-reboot",
        "finish",
    ] {
        events.push(begin(id));
        events.push(complete(id));
    }
    events.push(Event::Finish);
    let done = run(&retried, events);
    assert_eq!(done.status, Status::Done);
    assert_eq!(done.last_error, None);
    assert!(render_human(&done).contains("vgpu-firstboot: done"));
    assert!(!render_human(&done).contains("last error"));
    assert!(
        done.events.iter().any(|e| e.what.contains("failed")),
        "the event log keeps the failure"
    );
}

#[test]
fn needs_operator_waits_for_retry_and_reruns_the_step() {
    let s = run(&bound(), [booted("b1"), begin("apt-repositories")]);
    let s = after(
        &s,
        Event::NeedOperator("enrol the MOK key at the console".into()),
    );
    assert_eq!(
        s.status,
        Status::NeedsOperator {
            action: "enrol the MOK key at the console".into()
        }
    );
    assert_eq!(
        s.step("apt-repositories").unwrap().status,
        StepState::Pending
    );
    assert_eq!(exit_code(&s), 2);
    assert!(refused(&s, begin("apt-repositories")).contains("first: enrol the MOK key"));
    let s = after(&s, Event::Retry(RetryTarget::AllFailed));
    assert_eq!(s.status, Status::InProgress);
    after(&s, begin("apt-repositories"));
}

#[test]
fn reboots_stop_at_the_cap_until_retry() {
    let s = run(
        &bound(),
        [booted("b1"), begin("reboot"), Event::RebootRequested],
    );
    let s = run(&s, [booted("b2"), begin("reboot"), Event::RebootRequested]);
    let s = run(&s, [booted("b3"), begin("reboot")]);
    assert_eq!(s.reboots, 2);
    let err = s.next(&Event::RebootRequested, NOW).unwrap_err();
    assert!(matches!(err, StateError::RebootCap { reboots: 2, cap: 2 }));
    assert!(
        err.to_string()
            .contains("already rebooted the host 2 times (cap 2)")
    );

    let s = after(
        &s,
        Event::Fail("reboot".into(), Failure::new(err.to_string())),
    );
    let s = after(&s, Event::Retry(RetryTarget::AllFailed));
    assert_eq!(s.reboots, 0, "the operator looked: the count restarts");
    run(&s, [begin("reboot"), Event::RebootRequested]);
}

#[test]
fn the_event_log_and_boot_list_are_bounded() {
    let mut s = bound();
    for i in 0..200 {
        s = after(&s, booted(&format!("boot-{i}")));
    }
    assert_eq!(s.events.len(), EVENT_LOG_CAP);
    assert_eq!(
        s.events.last().unwrap().what,
        "agent started in boot boot-199"
    );
    assert_eq!(s.boot_ids.len(), BOOT_IDS_CAP);
    assert_eq!(s.current_boot(), Some("boot-199"));
    assert_eq!(s.boot_ids[0], format!("boot-{}", 200 - BOOT_IDS_CAP));
}

#[test]
fn retry_of_a_step_that_never_ran_is_not_started() {
    // A needs-operator stop before any step began goes back to not started.
    let s = after(&bound(), Event::NeedOperator("plug the GPU in".into()));
    let s = after(&s, Event::Retry(RetryTarget::AllFailed));
    assert_eq!(s.status, Status::NotStarted);
}

//! Fuzzing the state file codec (proptest, stable Rust): every generated
//! valid state encodes and decodes back equal; arbitrary and mutated state
//! files decode to a state or an error naming the file, never a panic; a
//! decoded state renders for `status` (human and JSON). `cargo test` runs
//! a short pass; `VGPU_FUZZ_SECS=600` (or `tests/fuzz/run.sh`) a long one.

#[path = "../../tests/fuzz/support.rs"]
mod support;

use std::path::Path;

use proptest::prelude::*;
use support::{apply, edits, fuzz};
use vgpu_firstboot::state::{
    self, LogEntry, SCHEMA, State, Status, StepRecord, StepState, decode, encode,
};

const PATH: &str = "/var/lib/vgpu-firstboot/state.toml";

/// Any string: control characters, quotes, backslashes, non-ASCII.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9 .:/-]{0,24}",
        1 => any::<String>(),
        1 => "[\"\\\\\n\t\r\u{0}\u{7f}\u{1b}é\u{2028}\u{fffd}]{0,8}",
    ]
}

/// Seconds since the epoch as the agent's clock gives them.
fn at() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 0..=i64::MAX as u64, Just(i64::MAX as u64)]
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::NotStarted),
        Just(Status::InProgress),
        Just(Status::Done),
        text().prop_map(|action| Status::NeedsOperator { action }),
        (text(), text()).prop_map(|(step, reason)| Status::Failed { step, reason }),
    ]
}

fn step_state() -> impl Strategy<Value = StepState> {
    prop_oneof![
        Just(StepState::Pending),
        (any::<u32>(), text(), at()).prop_map(|(attempt, boot_id, at)| StepState::Begun {
            attempt,
            boot_id,
            at
        }),
        (text(), at()).prop_map(|(boot_id, at)| StepState::Done { boot_id, at }),
        (any::<u32>(), text(), any::<Option<i32>>(), text()).prop_map(
            |(attempt, reason, exit_code, stderr_tail)| StepState::Failed {
                attempt,
                reason,
                exit_code,
                stderr_tail
            }
        ),
    ]
}

fn valid_state() -> impl Strategy<Value = State> {
    let steps = proptest::collection::vec(
        (text(), any::<u32>(), step_state()).prop_map(|(id, attempts, status)| StepRecord {
            id,
            attempts,
            status,
        }),
        0..20,
    );
    let events = proptest::collection::vec(
        (at(), text()).prop_map(|(at, what)| LogEntry { at, what }),
        0..10,
    );
    (
        (text(), text(), any::<u32>(), any::<u32>()),
        (
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::collection::vec(text(), 0..5),
        ),
        status(),
        steps,
        events,
    )
        .prop_map(
            |(
                (plan_sha256, machine_id, reboots, reboot_cap),
                (pending_reboot, last_error, boot_ids),
                status,
                steps,
                events,
            )| State {
                schema: SCHEMA,
                plan_sha256,
                machine_id,
                reboots,
                reboot_cap,
                pending_reboot,
                last_error,
                boot_ids,
                status,
                steps,
                events,
            },
        )
}

/// Decodes `bytes`; a state renders, an error names the file. True if it
/// decoded.
fn check(bytes: Vec<u8>) -> Result<bool, TestCaseError> {
    match decode(bytes, Path::new(PATH)) {
        Ok(st) => {
            let found = state::found(Ok(st), Ok(None));
            let _ = state::render_found_human(&found);
            prop_assert!(state::render_found_json(&found, found.exit_code()).is_ok());
            Ok(true)
        }
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(msg.contains(PATH), "{msg}");
            Ok(false)
        }
    }
}

#[test]
fn fuzz_state_round_trip() {
    fuzz("state-round-trip", 1000, valid_state(), |st| {
        let text = encode(&st);
        let back = decode(text.clone().into_bytes(), Path::new(PATH))
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(back, st);
        Ok(true)
    });
}

#[test]
fn fuzz_state_mutations() {
    fuzz(
        "state-mutations",
        1000,
        (valid_state(), edits(4)),
        |(st, e)| check(apply(encode(&st).as_bytes(), &e)),
    );
}

#[test]
fn fuzz_state_arbitrary_bytes() {
    let strategy = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        any::<String>().prop_map(|s| format!("schema = 1\n{s}").into_bytes()),
    ];
    fuzz("state-bytes", 3000, strategy, check);
}

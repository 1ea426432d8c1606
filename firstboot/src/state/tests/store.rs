//! The store on a temp root: atomic saves, the lock, crashes, binding.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::*;

fn open(root: &Path) -> (StateStore, State) {
    let (store, state) = StateStore::open_locked(root).expect("open_locked");
    (store.with_clock(Box::new(FixedClock(NOW))), state)
}

fn open_bound(root: &Path) -> (StateStore, State) {
    let (mut store, mut state) = open(root);
    store.bind(&mut state, &plan(), SHA, MACHINE).expect("bind");
    (store, state)
}

fn on_disk(root: &Path) -> State {
    load(root).expect("the state on disk parses")
}

#[test]
fn a_missing_state_file_is_not_started() {
    let root = tempfile::tempdir().unwrap();
    let (store, state) = open(root.path());
    assert_eq!(state, State::default());
    assert_eq!(state.status, Status::NotStarted);
    assert_eq!(exit_code(&state), 3);
    assert!(root.path().join(LOCK_FILE).exists());
    // Opening writes nothing: status on a fresh host stays read-only.
    assert!(!store.path().exists());
    assert_eq!(on_disk(root.path()), State::default());
}

#[test]
fn every_transition_is_on_disk_with_the_fixed_clock() {
    let root = tempfile::tempdir().unwrap();
    let (mut store, mut state) = open_bound(root.path());
    assert_eq!(on_disk(root.path()), state);
    for event in [
        booted("b1"),
        begin("apt-repositories"),
        complete("apt-repositories"),
    ] {
        store.apply(&mut state, event).unwrap();
        assert_eq!(on_disk(root.path()), state);
    }
    let text = fs::read_to_string(store.path()).unwrap();
    assert!(text.contains(&format!("at = {NOW}")), "{text}");
    assert!(
        !root
            .path()
            .join("var/lib/vgpu-firstboot")
            .join(TEMP_NAME)
            .exists()
    );
    drop(store);
    let (_store, reread) = open(root.path());
    assert_eq!(reread, state);
}

#[test]
fn a_second_agent_is_refused_while_the_lock_is_held() {
    let root = tempfile::tempdir().unwrap();
    let (store, _) = open(root.path());
    let err = StateStore::open_locked(root.path()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StateError::Locked { .. }));
    assert!(
        msg.starts_with(&format!(
            "another vgpu-firstboot is running (pid {}, lock ",
            std::process::id()
        )),
        "{msg}"
    );
    assert!(msg.contains("var/lib/vgpu-firstboot/lock"), "{msg}");
    drop(store);
    StateStore::open_locked(root.path()).expect("free again once the first store is gone");
}

#[test]
fn a_lock_held_by_another_process_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let lock = root.path().join(LOCK_FILE);
    fs::create_dir_all(lock.parent().unwrap()).unwrap();
    let ready = root.path().join("ready");
    // util-linux flock(1) takes the same flock(2) lock File::try_lock does.
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["-c", &format!("touch '{}'; sleep 30", ready.display())])
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("flock(1) runs");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "flock(1) never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    // As the other agent would have written it.
    fs::write(&lock, "4242\n").unwrap();
    let err = StateStore::open_locked(root.path()).unwrap_err();
    // flock(1) and its `sleep` both hold the lock: stop the whole group.
    let group = format!("-{}", holder.id());
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--", &group])
        .status();
    let _ = holder.wait();
    assert!(err.to_string().contains("(pid 4242, lock "), "{err}");
    // The group dies asynchronously; its last member releases the lock.
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = StateStore::open_locked(root.path()) {
        assert!(
            Instant::now() < deadline,
            "still locked after flock(1) died: {e}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_crash_between_temp_write_and_rename_keeps_the_old_state() {
    let root = tempfile::tempdir().unwrap();
    let (mut store, mut state) = open_bound(root.path());
    store.apply(&mut state, booted("b1")).unwrap();
    let before = state.clone();

    store.crash_before_rename = true;
    let err = store
        .apply(&mut state, begin("apt-repositories"))
        .unwrap_err();
    assert!(err.to_string().contains("simulated crash"), "{err}");
    assert_eq!(state, before, "memory follows the disk, not the attempt");
    let temp = root.path().join("var/lib/vgpu-firstboot").join(TEMP_NAME);
    assert!(temp.exists(), "the crash leaves the temp file behind");
    assert_eq!(on_disk(root.path()), before);
    drop(store);

    let (mut store, reopened) = open(root.path());
    assert_eq!(reopened, before);
    assert!(!temp.exists(), "the leftover temp file is removed");
    let notes = store.take_notes();
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0].contains("an earlier save was cut short"),
        "{notes:?}"
    );
}

#[test]
fn a_half_written_temp_file_is_ignored() {
    let root = tempfile::tempdir().unwrap();
    let (mut store, mut state) = open_bound(root.path());
    store.apply(&mut state, booted("b1")).unwrap();
    let before = state.clone();
    drop(store);
    let temp = root.path().join("var/lib/vgpu-firstboot").join(TEMP_NAME);
    fs::write(&temp, "schema = 1\nplan-sha256 = \"trunc").unwrap();
    let (_store, reopened) = open(root.path());
    assert_eq!(reopened, before);
    assert!(!temp.exists());
}

#[test]
fn the_state_file_is_never_seen_half_written() {
    let root = tempfile::tempdir().unwrap();
    let (mut store, mut state) = open_bound(root.path());
    let stop = Arc::new(AtomicBool::new(false));
    // A reader like `vgpu-firstboot status`: no lock, reads while we write.
    let reader = {
        let (root, stop) = (root.path().to_path_buf(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut reads = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let s = load(&root).unwrap_or_else(|e| panic!("read {reads}: {e}"));
                assert_eq!(s.plan_sha256, SHA);
                reads += 1;
            }
            reads
        })
    };
    let ids = ["apt-repositories", "kernel-args"];
    for i in 0..150 {
        let events = [
            booted(&format!("boot-{i}")),
            begin(ids[i % 2]),
            Event::NeedOperator(format!(
                "operator action {i} with \"quotes\"\nand a newline"
            )),
            Event::Retry(RetryTarget::AllFailed),
        ];
        for event in events {
            store.apply(&mut state, event).unwrap();
            assert_eq!(on_disk(root.path()), state);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("no read saw a broken file");
    assert!(reads > 0);
    assert_eq!(state.events.len(), EVENT_LOG_CAP);
}

#[test]
fn a_corrupt_state_file_is_an_error_never_a_fresh_start() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join(vgpu_plan::layout::STATE_FILE);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let (mut store, mut state) = open_bound(root.path());
    store.apply(&mut state, booted("b1")).unwrap();
    drop(store);
    let good = fs::read_to_string(&path).unwrap();

    let cases = [
        ("", "the file is empty"),
        ("\0\0\0\0", "TOML parse error"),
        (&good[..good.len() / 3], "TOML parse error"),
        ("schema = 1\n", "`[status]` is missing"),
    ];
    for (text, detail) in cases {
        fs::write(&path, text).unwrap();
        let msg = StateStore::open_locked(root.path())
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with(&format!("{} is not a valid state file (", path.display())),
            "{msg}"
        );
        assert!(msg.contains(detail), "{msg}");
        assert!(msg.contains("`vgpu-firstboot retry`"), "{msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
        assert_eq!(fs::read_to_string(&path).unwrap(), text, "left as it was");
        assert!(load(root.path()).is_err());
    }
}

#[test]
fn a_state_cut_after_whole_steps_is_caught_at_bind() {
    let root = tempfile::tempdir().unwrap();
    let (store, state) = open_bound(root.path());
    drop(store);
    let path = root.path().join(vgpu_plan::layout::STATE_FILE);
    let text = fs::read_to_string(&path).unwrap();
    // Cut before the third step: still valid TOML, steps missing.
    let cut = text.match_indices("[[step]]").nth(2).unwrap().0;
    fs::write(&path, &text[..cut]).unwrap();
    let (mut store, mut short) = open(root.path());
    assert_eq!(short.steps.len(), 2, "{state:?}");
    let err = store.bind(&mut short, &plan(), SHA, MACHINE).unwrap_err();
    assert!(
        err.to_string().contains("its steps do not match the plan"),
        "{err}"
    );
}

#[test]
fn an_unknown_schema_names_itself() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join(vgpu_plan::layout::STATE_FILE);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, "schema = 9\nfuture = true\n").unwrap();
    let err = StateStore::open_locked(root.path()).unwrap_err();
    assert!(matches!(err, StateError::Schema { found: 9, .. }), "{err}");
    assert!(
        err.to_string()
            .contains("has schema 9, this agent reads schema 1")
    );
}

#[test]
fn a_state_from_another_machine_or_plan_is_not_reused() {
    let root = tempfile::tempdir().unwrap();
    let (mut store, mut state) = open_bound(root.path());
    store.apply(&mut state, booted("b1")).unwrap();
    drop(store);

    let (mut store, mut state) = open(root.path());
    let before = state.clone();
    let err = store
        .bind(&mut state, &plan(), SHA, "ffffffffffffffffffffffffffffffff")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} belongs to machine {MACHINE}, but this host is ffffffffffffffffffffffffffffffff (cloned disk?); remove it to start over on this host",
            store.path().display()
        )
    );
    let err = store
        .bind(&mut state, &plan(), "bbbb", MACHINE)
        .unwrap_err();
    assert!(matches!(err, StateError::OtherPlan { .. }));
    assert!(err.to_string().contains(&format!(
        "written for plan sha256 {SHA}, but the installed plan is bbbb"
    )));
    assert_eq!(state, before);
    assert_eq!(on_disk(root.path()), before);
    store
        .bind(&mut state, &plan(), SHA, MACHINE)
        .expect("the right host and plan");
}

#[test]
fn a_failure_is_on_disk_before_the_error_is_returned() {
    let root = tempfile::tempdir().unwrap();
    let (mut store, mut state) = open_bound(root.path());
    for event in [booted("b1"), begin("reboot")] {
        store.apply(&mut state, event).unwrap();
    }
    store.request_reboot(&mut state).unwrap();
    store.apply(&mut state, booted("b2")).unwrap();
    store.apply(&mut state, begin("reboot")).unwrap();
    store.request_reboot(&mut state).unwrap();
    store.apply(&mut state, booted("b3")).unwrap();
    store.apply(&mut state, begin("reboot")).unwrap();
    let err = store.request_reboot(&mut state).unwrap_err();
    assert!(matches!(err, StateError::RebootCap { reboots: 2, cap: 2 }));
    let disk = on_disk(root.path());
    assert_eq!(disk, state);
    assert!(
        matches!(disk.status, Status::Failed { ref step, ref reason }
        if step == "reboot" && reason.contains("refusing to reboot"))
    );
    assert_eq!(exit_code(&disk), 1);
    assert_eq!(disk.reboots, 2);
}

#[test]
fn a_reboot_refused_with_no_step_begun_waits_for_an_operator() {
    let root = tempfile::tempdir().unwrap();
    let (mut store, mut state) = open_bound(root.path());
    store.apply(&mut state, booted("b1")).unwrap();
    store.apply(&mut state, begin("apt-repositories")).unwrap();
    store
        .apply(&mut state, complete("apt-repositories"))
        .unwrap();
    state.reboot_cap = 0;
    assert!(store.request_reboot(&mut state).is_err());
    assert!(
        matches!(on_disk(root.path()).status, Status::NeedsOperator { ref action }
        if action.contains("refusing to reboot"))
    );
}

#[test]
fn host_ids_are_read_under_the_root() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("etc")).unwrap();
    fs::create_dir_all(root.path().join("proc/sys/kernel/random")).unwrap();
    fs::write(root.path().join("etc/machine-id"), format!("{MACHINE}\n")).unwrap();
    fs::write(
        root.path().join("proc/sys/kernel/random/boot_id"),
        "1-2-3\n",
    )
    .unwrap();
    assert_eq!(read_machine_id(root.path()).unwrap(), MACHINE);
    assert_eq!(read_boot_id(root.path()).unwrap(), "1-2-3");
    fs::write(root.path().join("etc/machine-id"), "uninitialized\n").unwrap();
    let err = read_machine_id(root.path()).unwrap_err().to_string();
    assert!(
        err.contains("etc/machine-id") && err.contains("no id"),
        "{err}"
    );
    let empty = tempfile::tempdir().unwrap();
    assert!(
        read_boot_id(empty.path())
            .unwrap_err()
            .to_string()
            .contains("boot_id")
    );
}

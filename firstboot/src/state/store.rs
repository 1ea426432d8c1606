//! Reading and writing `state.toml`: atomic, durable, under a lock.

use std::fs::{File, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{Clock, Event, Failure, SCHEMA, State, StateError, StepRecord, StepState, SystemClock};
use vgpu_plan::layout;
use vgpu_plan::plan::Plan;
use vgpu_rootfs::Root;

/// The lock file, relative to the root. It holds the pid of the agent that
/// has it locked, for the "another vgpu-firstboot is running" message.
pub const LOCK_FILE: &str = "var/lib/vgpu-firstboot/lock";

/// Name of the temp file a save writes before renaming it over the state.
/// Only the lock holder writes it, so one fixed name is enough; a leftover
/// one means a save was cut short and is removed on the next open.
pub const TEMP_NAME: &str = "state.toml.tmp";

/// The largest state file read: 1 MiB. A plan's state is a few KB (its
/// event log is capped); anything larger is not a file the agent wrote.
pub const STATE_LIMIT: u64 = 1 << 20;

/// `/etc/machine-id`, relative to the root.
const MACHINE_ID: &str = "etc/machine-id";
/// The kernel's id for the current boot, relative to the root.
const BOOT_ID: &str = "proc/sys/kernel/random/boot_id";

/// A confined file access that failed, as a [`StateError`].
fn fs_err(e: vgpu_rootfs::Error) -> StateError {
    StateError::Io {
        what: e.action,
        path: e.path,
        source: e.source,
    }
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StateError + use<> {
    let path = path.to_path_buf();
    move |source| StateError::Io { what, path, source }
}

/// Owns the lock for the agent's run and persists every transition.
pub struct StateStore {
    root: Root,
    path: PathBuf,
    dir: PathBuf,
    lock_path: PathBuf,
    /// Held open for the store's life: dropping it releases the flock.
    _lock: File,
    clock: Box<dyn Clock + Send>,
    notes: Vec<String>,
    /// Test hook: the next save stops after writing the temp file, as if the
    /// power went out before the rename.
    #[cfg(test)]
    pub(super) crash_before_rename: bool,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("path", &self.path)
            .field("lock_path", &self.lock_path)
            .field("notes", &self.notes)
            .finish_non_exhaustive()
    }
}

impl StateStore {
    /// Takes the exclusive lock on `var/lib/vgpu-firstboot/lock` under
    /// `root` (without waiting: a second agent gets [`StateError::Locked`]),
    /// removes a temp file a cut-short save left, and reads the state. A
    /// missing state file is a fresh [`State`] (not started); a corrupt one
    /// is an error, never a silent fresh start.
    pub fn open_locked(root: &Path) -> Result<(StateStore, State), StateError> {
        let fs = Root::at(root).map_err(fs_err)?;
        let path = root.join(layout::STATE_FILE);
        let dir = root.join(layout::STATE_DIR);
        fs.create_dir_all(layout::STATE_DIR, 0o755)
            .map_err(fs_err)?;
        let lock_path = root.join(LOCK_FILE);
        let mut lock = fs.open_or_create(LOCK_FILE, 0o644).map_err(fs_err)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = match fs.read_to_string(LOCK_FILE) {
                    Ok(Some(pid)) if !pid.trim().is_empty() => format!("pid {}", pid.trim()),
                    _ => "pid unknown".to_string(),
                };
                return Err(StateError::Locked {
                    lock: lock_path,
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err("locking", &lock_path)(e)),
        }
        lock.set_len(0)
            .and_then(|()| writeln!(lock, "{}", std::process::id()))
            .map_err(io_err("writing the pid to", &lock_path))?;

        let mut notes = Vec::new();
        let temp = dir.join(TEMP_NAME);
        if fs
            .remove_file(&format!("{}/{TEMP_NAME}", layout::STATE_DIR))
            .map_err(fs_err)?
        {
            notes.push(format!(
                "removed {}: an earlier save was cut short; the state before it is used",
                temp.display()
            ));
        }
        let state = read_state(&fs, &path)?;
        let store = StateStore {
            root: fs,
            path,
            dir,
            lock_path,
            _lock: lock,
            clock: Box::new(SystemClock),
            notes,
            #[cfg(test)]
            crash_before_rename: false,
        };
        Ok((store, state))
    }

    /// Uses `clock` for the times recorded from now on.
    pub fn with_clock(mut self, clock: Box<dyn Clock + Send>) -> Self {
        self.clock = clock;
        self
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lock file.
    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    /// Things worth a journal line that are not errors (a leftover temp
    /// file removed, a directory fsync the filesystem refused); drained.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// Ties a fresh state to the plan and this machine, and saves it; checks
    /// that an existing state belongs to both. `plan_sha256` is the plan
    /// file's sha256 (the manifest has it); `machine_id` is this host's
    /// ([`read_machine_id`]).
    pub fn bind(
        &mut self,
        state: &mut State,
        plan: &Plan,
        plan_sha256: &str,
        machine_id: &str,
    ) -> Result<(), StateError> {
        if state.plan_sha256.is_empty() {
            let mut next = state.clone();
            next.plan_sha256 = plan_sha256.to_string();
            next.machine_id = machine_id.to_string();
            next.reboot_cap = plan.agent.reboot_cap;
            next.steps = plan
                .steps
                .iter()
                .map(|s| StepRecord {
                    id: s.kind.id().to_owned(),
                    attempts: 0,
                    status: StepState::Pending,
                })
                .collect();
            let at = self.clock.now();
            next.events.push(super::LogEntry {
                at,
                what: format!(
                    "bound to plan {} (sha256 {plan_sha256}) on machine {machine_id}",
                    plan.name
                ),
            });
            self.save(&next)?;
            *state = next;
            return Ok(());
        }
        // Machine first: on a cloned disk that is the cause to report.
        if state.machine_id != machine_id {
            return Err(StateError::OtherMachine {
                path: self.path.clone(),
                state_machine: state.machine_id.clone(),
                host_machine: machine_id.to_string(),
            });
        }
        if state.plan_sha256 != plan_sha256 {
            return Err(StateError::OtherPlan {
                path: self.path.clone(),
                state_plan: state.plan_sha256.clone(),
                plan: plan_sha256.to_string(),
            });
        }
        // Same plan, so the same steps. A file cut short by a lying disk can
        // still parse (trailing steps gone); this catches it.
        let ids = |s: &[StepRecord]| s.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        let planned: Vec<String> = plan.steps.iter().map(|s| s.kind.id().to_owned()).collect();
        if ids(&state.steps) != planned {
            return Err(StateError::Corrupt {
                path: self.path.clone(),
                detail: "its steps do not match the plan it names".into(),
            });
        }
        Ok(())
    }

    /// Replaces `state` with a fresh one bound to `plan` (see [`Self::bind`]),
    /// its event log starting with `why`, in one atomic save: `upgrade`'s
    /// switch from an earlier plan's state (archived first) to the new one.
    pub fn start_over(
        &mut self,
        state: &mut State,
        plan: &Plan,
        plan_sha256: &str,
        machine_id: &str,
        why: String,
    ) -> Result<(), StateError> {
        let mut fresh = State::BLANK;
        fresh.events.push(super::LogEntry {
            at: self.clock.now(),
            what: why,
        });
        self.bind(&mut fresh, plan, plan_sha256, machine_id)?;
        *state = fresh;
        Ok(())
    }

    /// Applies `event` ([`State::next`]) and saves the result; `state` is
    /// updated only once the new state is on disk. An illegal event changes
    /// nothing.
    pub fn apply(&mut self, state: &mut State, event: Event) -> Result<(), StateError> {
        let next = state.next(&event, self.clock.now())?;
        self.save(&next)?;
        *state = next;
        Ok(())
    }

    /// Records a reboot about to happen, or refuses past the plan's cap: the
    /// refusal is then saved as the failure of the begun step (or, with no
    /// step begun, as a stop for an operator) before it is returned.
    pub fn request_reboot(&mut self, state: &mut State) -> Result<(), StateError> {
        match self.apply(state, Event::RebootRequested) {
            Err(StateError::RebootCap { reboots, cap }) => {
                let refusal = StateError::RebootCap { reboots, cap };
                let event = match state.begun_step() {
                    Some(step) => Event::Fail(step.id.clone(), Failure::new(refusal.to_string())),
                    None => Event::NeedOperator(refusal.to_string()),
                };
                self.apply(state, event)?;
                Err(refusal)
            }
            other => other,
        }
    }

    /// Writes `state` atomically: temp file in the same directory, write,
    /// fsync, rename over the state file, fsync the directory. A reader (or
    /// the next boot) sees the old file or the new one, never a mix.
    pub fn save(&mut self, state: &State) -> Result<(), StateError> {
        let text = super::codec::to_toml(state);
        let temp = self.dir.join(TEMP_NAME);
        let mut file = self
            .root
            .atomic_file(layout::STATE_FILE, Some(TEMP_NAME))
            .map_err(fs_err)?;
        file.write_all(text.as_bytes())
            .map_err(io_err("writing", &temp))?;
        file.set_mode(0o644).map_err(fs_err)?;
        #[cfg(test)]
        if self.crash_before_rename {
            file.file().sync_all().map_err(io_err("writing", &temp))?;
            file.abandon();
            return Err(io_err("simulated crash before renaming", &temp)(
                io::Error::other("test hook"),
            ));
        }
        let renamed = file.rename_into_place().map_err(fs_err)?;
        // The rename is done; if the directory cannot be synced the new state
        // is still the one every reader sees, so this is a note, not a failure.
        if let Err(e) = renamed.sync() {
            self.notes.push(format!(
                "could not fsync {}: {}",
                self.dir.display(),
                e.source
            ));
        }
        Ok(())
    }
}

/// Reads the state under `root` without the lock (for `status`): the
/// atomic rename means a reader never sees a half-written file.
pub fn load(root: &Path) -> Result<State, StateError> {
    let fs = Root::at(root).map_err(fs_err)?;
    read_state(&fs, &root.join(layout::STATE_FILE))
}

fn read_state(fs: &Root, path: &Path) -> Result<State, StateError> {
    match fs.read_bounded(layout::STATE_FILE, STATE_LIMIT) {
        Ok(Some(bytes)) => decode(bytes, path),
        Ok(None) => Ok(State::default()),
        Err(e) => Err(fs_err(e)),
    }
}

/// The state in `bytes`, the content of the state file `path` (named in
/// errors): what [`load`] does once the file is read.
pub fn decode(bytes: Vec<u8>, path: &Path) -> Result<State, StateError> {
    let corrupt = |detail: String| StateError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let text = String::from_utf8(bytes).map_err(|_| corrupt("not UTF-8".into()))?;
    if text.trim().is_empty() {
        return Err(corrupt("the file is empty".into()));
    }
    let table: toml::Table = toml::from_str(&text).map_err(|e| corrupt(one_line(&e)))?;
    // The schema first, so a newer format says so instead of failing on a field.
    let schema = super::codec::schema_of(&table).map_err(corrupt)?;
    if schema != SCHEMA {
        return Err(StateError::Schema {
            path: path.to_path_buf(),
            found: schema,
        });
    }
    super::codec::from_table(&table).map_err(corrupt)
}

/// A TOML error on one line: its position and its message, without the
/// multi-line source excerpt.
fn one_line(e: &toml::de::Error) -> String {
    let text = e.to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("parse error").to_string();
    match lines.next_back() {
        Some(last) if last != first => format!("{first}: {last}"),
        _ => first,
    }
}

/// This host's `/etc/machine-id` (under `root`), trimmed.
pub fn read_machine_id(root: &Path) -> Result<String, StateError> {
    read_id(root, MACHINE_ID)
}

/// The current boot id, `/proc/sys/kernel/random/boot_id` (under `root`).
pub fn read_boot_id(root: &Path) -> Result<String, StateError> {
    read_id(root, BOOT_ID)
}

fn read_id(root: &Path, rel: &str) -> Result<String, StateError> {
    let path = root.join(rel);
    let text = Root::at(root)
        .and_then(|fs| fs.read_to_string(rel))
        .map_err(fs_err)?
        .ok_or_else(|| io_err("reading", &path)(io::Error::from_raw_os_error(2)))?;
    let id = text.trim();
    if id.is_empty() || id == "uninitialized" {
        let e = io::Error::new(io::ErrorKind::InvalidData, "no id in the file");
        return Err(io_err("reading", &path)(e));
    }
    Ok(id.to_string())
}

//! `state.toml` written and read by hand.
//!
//! The serde route (derives + `toml::to_string`, internally tagged enums)
//! cost about 70 KB of the agent's 1 MiB budget; the format is small and
//! fixed, so it is written here directly and read back through a
//! `toml::Table` the plan parser already links in. The layout is the one
//! the serde derives on [`State`] produce, so both read each other.

use toml::{Table, Value};

use super::{LogEntry, State, Status, StepRecord, StepState};

/// A TOML basic string.
fn q(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn kv_str(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push_str(" = ");
    q(out, value);
    out.push('\n');
}

fn kv_num(out: &mut String, key: &str, value: impl std::fmt::Display) {
    out.push_str(&format!("{key} = {value}\n"));
}

/// Serialises a state.
pub fn to_toml(s: &State) -> String {
    let mut o = String::new();
    kv_num(&mut o, "schema", s.schema);
    kv_str(&mut o, "plan-sha256", &s.plan_sha256);
    kv_str(&mut o, "machine-id", &s.machine_id);
    kv_num(&mut o, "reboots", s.reboots);
    kv_num(&mut o, "reboot-cap", s.reboot_cap);
    if let Some(p) = &s.pending_reboot {
        kv_str(&mut o, "pending-reboot", p);
    }
    if let Some(e) = &s.last_error {
        kv_str(&mut o, "last-error", e);
    }
    o.push_str("boot-ids = [");
    for (i, b) in s.boot_ids.iter().enumerate() {
        if i > 0 {
            o.push_str(", ");
        }
        q(&mut o, b);
    }
    o.push_str("]\n\n[status]\n");
    match &s.status {
        Status::NotStarted => kv_str(&mut o, "state", "not-started"),
        Status::InProgress => kv_str(&mut o, "state", "in-progress"),
        Status::Done => kv_str(&mut o, "state", "done"),
        Status::NeedsOperator { action } => {
            kv_str(&mut o, "state", "needs-operator");
            kv_str(&mut o, "action", action);
        }
        Status::Failed { step, reason } => {
            kv_str(&mut o, "state", "failed");
            kv_str(&mut o, "step", step);
            kv_str(&mut o, "reason", reason);
        }
    }
    for step in &s.steps {
        o.push_str("\n[[step]]\n");
        kv_str(&mut o, "id", &step.id);
        kv_num(&mut o, "attempts", step.attempts);
        o.push_str("\n[step.status]\n");
        kv_str(&mut o, "state", step.status.name());
        match &step.status {
            StepState::Pending => {}
            StepState::Begun {
                attempt,
                boot_id,
                at,
            } => {
                kv_num(&mut o, "attempt", attempt);
                kv_str(&mut o, "boot-id", boot_id);
                kv_num(&mut o, "at", at);
            }
            StepState::Done { boot_id, at } => {
                kv_str(&mut o, "boot-id", boot_id);
                kv_num(&mut o, "at", at);
            }
            StepState::Failed {
                attempt,
                reason,
                exit_code,
                stderr_tail,
            } => {
                kv_num(&mut o, "attempt", attempt);
                kv_str(&mut o, "reason", reason);
                if let Some(code) = exit_code {
                    kv_num(&mut o, "exit-code", code);
                }
                kv_str(&mut o, "stderr-tail", stderr_tail);
            }
        }
    }
    for e in &s.events {
        o.push_str("\n[[event]]\n");
        kv_num(&mut o, "at", e.at);
        kv_str(&mut o, "what", &e.what);
    }
    o
}

fn str_of(t: &Table, key: &str) -> Result<String, String> {
    match t.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("`{key}` is not a string")),
        None => Err(format!("`{key}` is missing")),
    }
}

fn opt_str(t: &Table, key: &str) -> Result<Option<String>, String> {
    t.get(key).map(|_| str_of(t, key)).transpose()
}

fn int_of(t: &Table, key: &str) -> Result<i64, String> {
    match t.get(key) {
        Some(Value::Integer(i)) => Ok(*i),
        Some(_) => Err(format!("`{key}` is not an integer")),
        None => Err(format!("`{key}` is missing")),
    }
}

fn u32_of(t: &Table, key: &str) -> Result<u32, String> {
    u32::try_from(int_of(t, key)?).map_err(|_| format!("`{key}` is out of range"))
}

fn u64_of(t: &Table, key: &str) -> Result<u64, String> {
    u64::try_from(int_of(t, key)?).map_err(|_| format!("`{key}` is out of range"))
}

/// `key` as a table, or an empty one when absent and `optional`.
fn table_of<'a>(t: &'a Table, key: &str) -> Result<&'a Table, String> {
    match t.get(key) {
        Some(Value::Table(t)) => Ok(t),
        _ => Err(format!("`[{key}]` is missing or not a table")),
    }
}

fn tables_of<'a>(t: &'a Table, key: &str) -> Result<Vec<&'a Table>, String> {
    match t.get(key) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_table()
                    .ok_or_else(|| format!("`[[{key}]]` holds a non-table"))
            })
            .collect(),
        Some(_) => Err(format!("`{key}` is not an array of tables")),
    }
}

fn check_keys(t: &Table, what: &str, allowed: &[&str]) -> Result<(), String> {
    match t.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("unknown key `{k}` in {what}")),
        None => Ok(()),
    }
}

fn status_of(t: &Table) -> Result<Status, String> {
    let state = str_of(t, "state")?;
    let (status, keys): (Status, &[&str]) = match state.as_str() {
        "not-started" => (Status::NotStarted, &["state"]),
        "in-progress" => (Status::InProgress, &["state"]),
        "done" => (Status::Done, &["state"]),
        "needs-operator" => (
            Status::NeedsOperator {
                action: str_of(t, "action")?,
            },
            &["state", "action"],
        ),
        "failed" => (
            Status::Failed {
                step: str_of(t, "step")?,
                reason: str_of(t, "reason")?,
            },
            &["state", "step", "reason"],
        ),
        other => return Err(format!("unknown status `{other}`")),
    };
    check_keys(t, "[status]", keys)?;
    Ok(status)
}

fn step_state_of(t: &Table) -> Result<StepState, String> {
    let state = str_of(t, "state")?;
    let (s, keys): (StepState, &[&str]) = match state.as_str() {
        "pending" => (StepState::Pending, &["state"]),
        "begun" => (
            StepState::Begun {
                attempt: u32_of(t, "attempt")?,
                boot_id: str_of(t, "boot-id")?,
                at: u64_of(t, "at")?,
            },
            &["state", "attempt", "boot-id", "at"],
        ),
        "done" => (
            StepState::Done {
                boot_id: str_of(t, "boot-id")?,
                at: u64_of(t, "at")?,
            },
            &["state", "boot-id", "at"],
        ),
        "failed" => (
            StepState::Failed {
                attempt: u32_of(t, "attempt")?,
                reason: str_of(t, "reason")?,
                exit_code: t
                    .get("exit-code")
                    .map(|_| int_of(t, "exit-code"))
                    .transpose()?
                    .map(|c| c as i32),
                stderr_tail: opt_str(t, "stderr-tail")?.unwrap_or_default(),
            },
            &["state", "attempt", "reason", "exit-code", "stderr-tail"],
        ),
        other => return Err(format!("unknown step state `{other}`")),
    };
    check_keys(t, "a step's status", keys)?;
    Ok(s)
}

/// The schema number, read before anything else.
pub fn schema_of(t: &Table) -> Result<u32, String> {
    u32_of(t, "schema")
}

/// Reads a state from its parsed table.
pub fn from_table(t: &Table) -> Result<State, String> {
    check_keys(
        t,
        "the state",
        &[
            "schema",
            "plan-sha256",
            "machine-id",
            "reboots",
            "reboot-cap",
            "pending-reboot",
            "last-error",
            "boot-ids",
            "status",
            "step",
            "event",
        ],
    )?;
    let boot_ids = match t.get("boot-ids") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(String::from)
                    .ok_or("`boot-ids` holds a non-string".to_string())
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("`boot-ids` is not an array".into()),
    };
    let steps = tables_of(t, "step")?
        .into_iter()
        .map(|s| {
            check_keys(s, "a [[step]]", &["id", "attempts", "status"])?;
            Ok(StepRecord {
                id: str_of(s, "id")?,
                attempts: if s.contains_key("attempts") {
                    u32_of(s, "attempts")?
                } else {
                    0
                },
                status: step_state_of(table_of(s, "status")?)?,
            })
        })
        .collect::<Result<_, String>>()?;
    let events = tables_of(t, "event")?
        .into_iter()
        .map(|e| {
            check_keys(e, "an [[event]]", &["at", "what"])?;
            Ok(LogEntry {
                at: u64_of(e, "at")?,
                what: str_of(e, "what")?,
            })
        })
        .collect::<Result<_, String>>()?;
    let opt_u32 = |key: &str| {
        if t.contains_key(key) {
            u32_of(t, key)
        } else {
            Ok(0)
        }
    };
    Ok(State {
        schema: schema_of(t)?,
        plan_sha256: opt_str(t, "plan-sha256")?.unwrap_or_default(),
        machine_id: opt_str(t, "machine-id")?.unwrap_or_default(),
        reboots: opt_u32("reboots")?,
        reboot_cap: opt_u32("reboot-cap")?,
        pending_reboot: opt_str(t, "pending-reboot")?,
        last_error: opt_str(t, "last-error")?,
        boot_ids,
        status: status_of(table_of(t, "status")?)?,
        steps,
        events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> State {
        State {
            plan_sha256: "ab".repeat(32),
            machine_id: "m1".into(),
            reboots: 1,
            reboot_cap: 2,
            pending_reboot: Some("args \"quoted\"".into()),
            last_error: Some("line1\nline2\t\u{1}".into()),
            boot_ids: vec!["b1".into(), "b2".into()],
            status: Status::Failed {
                step: "install-driver".into(),
                reason: "exit 1 \\ back".into(),
            },
            steps: vec![
                StepRecord {
                    id: "a".into(),
                    attempts: 0,
                    status: StepState::Pending,
                },
                StepRecord {
                    id: "b".into(),
                    attempts: 1,
                    status: StepState::Begun {
                        attempt: 1,
                        boot_id: "b1".into(),
                        at: 5,
                    },
                },
                StepRecord {
                    id: "c".into(),
                    attempts: 1,
                    status: StepState::Done {
                        boot_id: "b2".into(),
                        at: 9,
                    },
                },
                StepRecord {
                    id: "d".into(),
                    attempts: 2,
                    status: StepState::Failed {
                        attempt: 2,
                        reason: "r".into(),
                        exit_code: Some(-1),
                        stderr_tail: "tail é".into(),
                    },
                },
                StepRecord {
                    id: "e".into(),
                    attempts: 1,
                    status: StepState::Failed {
                        attempt: 1,
                        reason: "r".into(),
                        exit_code: None,
                        stderr_tail: String::new(),
                    },
                },
            ],
            events: vec![LogEntry {
                at: 1,
                what: "bound".into(),
            }],
            ..State::default()
        }
    }

    #[test]
    fn round_trips_and_matches_the_serde_layout() {
        let s = sample();
        let text = to_toml(&s);
        let table: Table = toml::from_str(&text).unwrap();
        assert_eq!(from_table(&table).unwrap(), s);
        // The serde derives read what we write, and we read what they write.
        let via_serde: State = toml::from_str(&text).unwrap();
        assert_eq!(via_serde, s);
        let serde_text = toml::to_string(&s).unwrap();
        assert_eq!(
            from_table(&toml::from_str(&serde_text).unwrap()).unwrap(),
            s
        );
        for status in [
            Status::NotStarted,
            Status::InProgress,
            Status::Done,
            Status::NeedsOperator {
                action: "enrol".into(),
            },
        ] {
            let s = State {
                status,
                ..State::default()
            };
            assert_eq!(
                from_table(&toml::from_str(&to_toml(&s)).unwrap()).unwrap(),
                s
            );
        }
    }

    #[test]
    fn damaged_files_are_named_errors() {
        let text = to_toml(&sample());
        for (from, to, want) in [
            (
                "state = \"failed\"\nstep",
                "state = \"exploded\"\nstep",
                "unknown status `exploded`",
            ),
            (
                "reboots = 1",
                "reboots = \"one\"",
                "`reboots` is not an integer",
            ),
            (
                "machine-id",
                "machine-idx",
                "unknown key `machine-idx` in the state",
            ),
        ] {
            let bad = text.replacen(from, to, 1);
            let err = from_table(&toml::from_str(&bad).unwrap()).unwrap_err();
            assert_eq!(err, want);
        }
        let no_status = text.split("\n[status]").next().unwrap().to_string();
        assert_eq!(
            from_table(&toml::from_str(&no_status).unwrap()).unwrap_err(),
            "`[status]` is missing or not a table"
        );
    }
}

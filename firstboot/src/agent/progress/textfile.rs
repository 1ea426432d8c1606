//! The node_exporter textfile `vgpu-firstboot.prom`: the agent's progress as
//! `vgpu_firstboot_*` gauges labelled with the plan's name.
//!
//! The state is one-hot (`vgpu_firstboot_state{state="failed"} == 1` finds
//! the failed hosts, and a dashboard counts hosts per state with `sum by
//! (state)`), as node_exporter does for systemd units. The failed step is
//! one sample, value 1, labelled with the step, only while the plan has
//! failed: its `step` label is what a query wants, and a sample per step
//! at 0 would list the plan's eighteen steps on every host.

use std::fmt::Write as _;

use crate::state::{State, Status};

/// The file's name in the textfile directory (node_exporter reads `*.prom`).
pub const FILE_NAME: &str = "vgpu-firstboot.prom";

/// The `state` label's values, in the order the file lists them.
const STATES: [&str; 5] = [
    "not-started",
    "in-progress",
    "needs-operator",
    "failed",
    "done",
];

/// What the textfile shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress<'a> {
    /// The plan's name.
    pub plan: &'a str,
    /// One of [`STATES`].
    pub state: &'static str,
    /// 1 before the agent's reboot, 2 after it (or when none was needed).
    pub phase: u8,
    /// The failed step, when the state is `failed`.
    pub failed_step: Option<&'a str>,
    /// Reboots the agent requested.
    pub reboots: u32,
    /// When the plan completed (seconds since the epoch), 0 until then.
    pub done_at: u64,
}

impl<'a> Progress<'a> {
    /// The progress `st` records for the plan `plan` in phase `phase`.
    pub fn of(plan: &'a str, st: &'a State, phase: u8) -> Self {
        let (state, failed_step) = match &st.status {
            Status::NotStarted => (STATES[0], None),
            Status::InProgress => (STATES[1], None),
            Status::NeedsOperator { .. } => (STATES[2], None),
            Status::Failed { step, .. } => (STATES[3], Some(step.as_str())),
            Status::Done => (STATES[4], None),
        };
        let done_at = match st.status {
            Status::Done => st.events.last().map_or(0, |e| e.at),
            _ => 0,
        };
        Progress {
            plan,
            state,
            phase,
            failed_step,
            reboots: st.reboots,
            done_at,
        }
    }

    /// The file's text (the Prometheus text format, version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let plan = escape(self.plan);
        let step = self.failed_step.map(escape);
        for (name, help) in GAUGES {
            let _ = write!(
                out,
                "# HELP vgpu_firstboot_{name} {help}\n# TYPE vgpu_firstboot_{name} gauge\n"
            );
            let mut sample = |label: Option<(&str, &str)>, v: u64| {
                let _ = write!(out, "vgpu_firstboot_{name}{{plan=\"{plan}\"");
                if let Some((key, value)) = label {
                    let _ = write!(out, ",{key}=\"{value}\"");
                }
                let _ = writeln!(out, "}} {v}");
            };
            match name {
                "state" => {
                    for s in STATES {
                        sample(Some(("state", s)), (s == self.state).into());
                    }
                }
                "phase" => sample(None, self.phase.into()),
                "failed_step" => {
                    if let Some(step) = &step {
                        sample(Some(("step", step)), 1);
                    }
                }
                "reboots" => sample(None, self.reboots.into()),
                _ => sample(None, self.done_at),
            }
        }
        out
    }
}

/// The gauges, in the file's order, with their help texts.
const GAUGES: [(&str, &str); 5] = [
    (
        "state",
        "Provisioning state of the plan: 1 for the state it is in, 0 for the others.",
    ),
    (
        "phase",
        "Boot phase of the plan: 1 before the agent's reboot, 2 after it or when none was needed.",
    ),
    (
        "failed_step",
        "1 for the step that failed, labelled step; no sample unless the plan failed.",
    ),
    (
        "reboots",
        "Reboots the agent requested since it started or since the last retry.",
    ),
    (
        "done_timestamp_seconds",
        "When the plan completed, in seconds since the epoch; 0 until it is done.",
    ),
];

/// A label value as the text format needs it: `\`, `"` and line feeds
/// escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_plan_names_its_step_and_is_one_hot() {
        let p = Progress {
            plan: "a\"b",
            state: "failed",
            phase: 2,
            failed_step: Some("install-driver"),
            reboots: 1,
            done_at: 0,
        };
        let text = p.render();
        assert!(text.contains("vgpu_firstboot_state{plan=\"a\\\"b\",state=\"failed\"} 1\n"));
        assert_eq!(text.matches("state=").count(), 5);
        assert_eq!(text.matches("} 1\n").count(), 3, "{text}");
        assert!(
            text.contains(
                "vgpu_firstboot_failed_step{plan=\"a\\\"b\",step=\"install-driver\"} 1\n"
            )
        );
        assert!(text.contains("vgpu_firstboot_phase{plan=\"a\\\"b\"} 2\n"));
        let ok = Progress {
            state: "done",
            failed_step: None,
            done_at: 1_700_000_000,
            ..p
        };
        let text = ok.render();
        assert!(!text.contains("step=\""), "{text}");
        assert!(text.contains("# TYPE vgpu_firstboot_failed_step gauge\n"));
        assert!(
            text.contains("vgpu_firstboot_done_timestamp_seconds{plan=\"a\\\"b\"} 1700000000\n")
        );
    }
}

//! `vgpu-firstboot plan`: a dry run of the plan on this host, as text
//! ([`dry_run`]) or one JSON document ([`dry_run_json`]). Both render the
//! same [`DryRun`], which [`dry_run_report`] computes: it reads the plan,
//! the facts, the state and the bundle, and writes and runs nothing.

use std::path::Path;

use serde::Serialize;

use crate::agent::bundle::Preview;
use crate::agent::host::Host;
use crate::agent::{progress, run, steps};
use crate::facts;
use crate::runner::{CommandOutcome, CommandSpec, Runner};
use crate::state;
use vgpu_plan::gate::{GateReport, Kind};
use vgpu_plan::layout;
use vgpu_plan::plan::{LicensingMode, Mode, Phase, StepKind};

/// `schema` of the `plan --json` document.
pub const JSON_SCHEMA: u32 = 1;

/// A runner for the dry run: it runs nothing.
#[derive(Debug)]
struct NoRunner;

impl Runner for NoRunner {
    fn run(&mut self, spec: &CommandSpec) -> std::io::Result<CommandOutcome> {
        Err(std::io::Error::other(format!(
            "dry run: would run `{}`",
            spec.command_line()
        )))
    }
}

/// Everything the dry run shows (`plan --json`: kebab-case keys).
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DryRun {
    /// [`JSON_SCHEMA`].
    pub schema: u32,
    /// The plan's name.
    pub name: String,
    /// Its one line for humans.
    pub description: String,
    /// Native, unlock or passthrough.
    pub mode: Mode,
    /// The Proxmox VE major it targets.
    pub proxmox: u8,
    /// A demo plan (stand-in driver).
    pub demo: bool,
    /// Where progress is reported.
    pub progress: ProgressTargets,
    /// The host gate: what `run` checks before its first change.
    pub gate: Gate,
    /// The bundle check `run` makes before phase 1.
    pub bundle: Preview,
    /// Every step, in order, with what it would change.
    pub steps: Vec<StepChange>,
    /// The licensing mode a plan carries but this version does not apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub licensing_not_applied: Option<LicensingMode>,
}

/// Where the agent reports its progress at each phase change.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ProgressTargets {
    /// The node_exporter textfile (absolute).
    pub textfile: String,
    /// Where the `status --json` document is POSTed; none: no POST.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Seconds one POST may take.
    pub post_limit_secs: u64,
}

/// The host gate's verdict and reasons.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Gate {
    /// `passed`, `fail` or `needs-operator`.
    pub verdict: &'static str,
    /// Each reason (`kind`, `check`, `binding`, `message`) and note.
    #[serde(flatten)]
    pub report: GateReport,
}

/// One step: its state and what it would change.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct StepChange {
    /// `one`, `reboot` or `two`.
    pub phase: Phase,
    /// The step (`kernel-args`, `apt-install`, ...).
    pub kind: StepKind,
    /// Its state: `pending`, `done`, `failed`, ...
    pub state: &'static str,
    /// Why the plan has it.
    pub why: String,
    /// What it would do: each file, kernel argument, module, repository,
    /// package or service it would change, one line each, as the text dry
    /// run shows them.
    pub changes: Vec<String>,
}

/// Computes the dry run; `Err` (the message) when there is no plan or the
/// plan or the facts cannot be read.
pub fn dry_run_report(root: &Path) -> Result<DryRun, String> {
    if !vgpu_rootfs::Root::at(root).is_ok_and(|r| r.resolves(layout::PLAN_FILE)) {
        return Err(format!(
            "no plan at {}: no bundle is installed, so there is nothing to show; lay one on this host with `vgpu-bake install`",
            root.join(layout::PLAN_FILE).display()
        ));
    }
    let (plan, plan_sha, plan_size) = run::read_plan(root).map_err(|e| e.to_string())?;
    let facts = facts::read_facts(root).map_err(|e| e.to_string())?;
    let st = state::load(root).ok();
    let mut runner = NoRunner;
    let host = Host::new(root, &mut runner, &plan, &facts);
    let report = crate::agent::gate::check(root, &plan, &facts);
    let bundle = match vgpu_rootfs::Root::at(root) {
        Ok(fs) => crate::agent::bundle::preview(&fs, &plan.name, &plan_sha, plan_size),
        Err(e) => Preview {
            passes: false,
            refused: Some(e.to_string()),
            signature: None,
            signed_by: None,
            files: Vec::new(),
        },
    };
    let steps = plan
        .steps
        .iter()
        .map(|step| StepChange {
            phase: step.phase,
            kind: step.kind,
            state: st
                .as_ref()
                .and_then(|s| s.step(step.kind.id()))
                .map(|r| r.status.name())
                .unwrap_or("pending"),
            why: step.why.clone(),
            changes: steps::preview(step, &host),
        })
        .collect();
    Ok(DryRun {
        schema: JSON_SCHEMA,
        name: plan.name.clone(),
        description: plan.description.clone(),
        mode: plan.mode,
        proxmox: plan.proxmox,
        demo: plan.demo,
        progress: ProgressTargets {
            textfile: progress::textfile_path(&plan.report.textfile_dir),
            url: plan.report.url.clone(),
            post_limit_secs: progress::POST_LIMIT.as_secs(),
        },
        gate: Gate {
            verdict: match report.verdict() {
                None => "passed",
                Some(Kind::Fail) => "fail",
                Some(Kind::NeedsOperator) => "needs-operator",
            },
            report,
        },
        bundle,
        steps,
        licensing_not_applied: (!plan.licensing.applied
            && plan.licensing.mode != LicensingMode::None)
            .then_some(plan.licensing.mode),
    })
}

/// Prints the host gate's verdict and reasons (what `run` checks before
/// its first change), the bundle check's preview (trusted keys, signature,
/// files; whether `run` would refuse the bundle), then every step with its
/// state and what it would change; writes and runs nothing. 0, or 1 when
/// there is no plan or the plan or the facts cannot be read.
pub fn dry_run(root: &Path) -> u8 {
    match dry_run_report(root) {
        Ok(d) => {
            out!("{}", render_text(&d));
            0
        }
        Err(e) => super::fail(e),
    }
}

/// [`dry_run`] as one JSON document ([`DryRun`]); the same exit codes.
pub fn dry_run_json(root: &Path) -> u8 {
    match dry_run_report(root).and_then(|d| serde_json::to_string(&d).map_err(|e| e.to_string())) {
        Ok(json) => {
            outln!("{json}");
            0
        }
        Err(e) => super::fail(e),
    }
}

/// The dry run for humans.
pub fn render_text(d: &DryRun) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "plan {} ({} mode, Proxmox VE {}): {}",
        d.name, d.mode, d.proxmox, d.description
    );
    if d.demo {
        t.push_str("DEMO plan: the driver is a stand-in installer, not an NVIDIA driver\n");
    }
    let _ = writeln!(
        t,
        "progress: node_exporter textfile {} at each phase change",
        d.progress.textfile
    );
    match &d.progress.url {
        Some(url) => {
            let _ = writeln!(
                t,
                "progress: the `status --json` document POSTed to {url} at each phase change (wget, at most {}s each; a failure is only a warning)",
                d.progress.post_limit_secs
            );
        }
        None => t.push_str("progress: no POST ([report] url not set)\n"),
    }
    t.push('\n');
    for line in d.gate.report.lines() {
        let _ = writeln!(t, "{line}");
    }
    t.push('\n');
    let b = &d.bundle;
    match &b.refused {
        Some(reason) => {
            let _ = writeln!(
                t,
                "bundle check: REFUSED: `run` would stop before phase 1 and change nothing: {reason}"
            );
        }
        None => {
            let sig = match b.signature {
                Some("verified") => "verified by the trusted key ",
                Some("unchecked") => "present, not checked: no trusted key in ",
                _ => "none, not required: no trusted key in ",
            };
            let _ = writeln!(
                t,
                "bundle check: passes; signature {sig}{}; {} files match the manifest (size, sha256):",
                b.signed_by.as_deref().unwrap_or_default(),
                b.files.len()
            );
            for f in &b.files {
                let _ = writeln!(t, "    {f}");
            }
        }
    }
    for s in &d.steps {
        let _ = writeln!(
            t,
            "\n[{}] {} ({}): {}",
            phase_name(s.phase),
            s.kind,
            s.state,
            s.why
        );
        for line in &s.changes {
            let _ = writeln!(t, "    {line}");
        }
    }
    if let Some(mode) = d.licensing_not_applied {
        let _ = writeln!(
            t,
            "\nlicensing ({mode:?}) is carried in the plan but not applied by this version"
        );
    }
    t
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::One => "phase 1",
        Phase::Reboot => "reboot",
        Phase::Two => "phase 2",
    }
}

//! `vgpu-firstboot plan`: a dry run of the plan on this host.

use std::path::Path;

use crate::agent::host::Host;
use crate::agent::{progress, run, steps};
use crate::facts;
use crate::runner::{CommandOutcome, CommandSpec, Runner};
use crate::state;
use vgpu_plan::layout;
use vgpu_plan::plan::{LicensingMode, Phase};

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

/// Prints the host gate's verdict and reasons (what `run` checks before
/// its first change), the bundle check's preview (trusted keys, signature,
/// files; whether `run` would refuse the bundle), then every step with its state and what it would change; writes and
/// runs nothing. 0, or 1 when there is no plan or the plan or the facts
/// cannot be read.
pub fn dry_run(root: &Path) -> u8 {
    if !vgpu_rootfs::Root::at(root).is_ok_and(|r| r.resolves(layout::PLAN_FILE)) {
        return super::fail(format_args!(
            "no plan at {}: no bundle is installed, so there is nothing to show; lay one on this host with `vgpu-bake install`",
            root.join(layout::PLAN_FILE).display()
        ));
    }
    let (plan, plan_sha, plan_size) = match run::read_plan(root) {
        Ok(p) => p,
        Err(e) => return super::fail(e),
    };
    let facts = match facts::read_facts(root) {
        Ok(f) => f,
        Err(e) => return super::fail(e),
    };
    let st = state::load(root).ok();
    let mut runner = NoRunner;
    let host = Host::new(root, &mut runner, &plan, &facts);
    outln!(
        "plan {} ({} mode, Proxmox VE {}): {}",
        plan.name,
        plan.mode,
        plan.proxmox,
        plan.description
    );
    if plan.demo {
        outln!("DEMO plan: the driver is a stand-in installer, not an NVIDIA driver");
    }
    outln!(
        "progress: node_exporter textfile {} at each phase change",
        progress::textfile_path(&plan.report.textfile_dir)
    );
    match &plan.report.url {
        Some(url) => outln!(
            "progress: the `status --json` document POSTed to {url} at each phase change (wget, at most {}s each; a failure is only a warning)",
            progress::POST_LIMIT.as_secs()
        ),
        None => outln!("progress: no POST ([report] url not set)"),
    }
    outln!("");
    for line in crate::agent::gate::check(root, &plan, &facts).lines() {
        outln!("{line}");
    }
    outln!("");
    let preview = vgpu_rootfs::Root::at(root)
        .map(|fs| crate::agent::bundle::preview(&fs, &plan.name, &plan_sha, plan_size).0);
    match preview {
        Ok(text) => outln!("{text}"),
        Err(e) => outln!("bundle check: {e}"),
    }
    for step in &plan.steps {
        let done = st
            .as_ref()
            .and_then(|s| s.step(step.kind.id()))
            .map(|r| r.status.name())
            .unwrap_or("pending");
        outln!(
            "\n[{}] {} ({done}): {}",
            phase_name(step.phase),
            step.kind,
            step.why
        );
        for line in steps::preview(step, &host) {
            outln!("    {line}");
        }
    }
    if !plan.licensing.applied && plan.licensing.mode != LicensingMode::None {
        outln!(
            "\nlicensing ({:?}) is carried in the plan but not applied by this version",
            plan.licensing.mode
        );
    }
    0
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::One => "phase 1",
        Phase::Reboot => "reboot",
        Phase::Two => "phase 2",
    }
}

//! vgpu-firstboot: the agent a vgpu-bake bundle installs. See `--help`.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use vgpu_firstboot::agent::confine;
use vgpu_firstboot::agent::host::Host;
use vgpu_firstboot::agent::run::{self, RunEnd};
use vgpu_firstboot::agent::steps;
use vgpu_firstboot::cli::{self, Command, USAGE};
use vgpu_firstboot::facts;
use vgpu_firstboot::runner::{CommandOutcome, CommandSpec, Runner, SystemRunner};
use vgpu_firstboot::state::{self, RetryTarget, StateStore, Status};
use vgpu_plan::compat::CompatTable;
use vgpu_plan::layout;

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vgpu-firstboot: {e}\n\n{USAGE}");
            return ExitCode::from(64);
        }
    };
    // `run` and `retry` enter a --root other than / before anything else.
    let root = match confine::root_for(&cli.command, &cli.root) {
        Ok(root) => root,
        Err(e) => {
            eprintln!("vgpu-firstboot: {e}");
            return ExitCode::from(1);
        }
    };
    let root = root.as_path();
    let code = match cli.command {
        Command::Help => {
            print!("{USAGE}");
            0
        }
        Command::Version => {
            println!("vgpu-firstboot {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Command::Run => run_cmd(root),
        Command::Status { json, wait } => status(root, json, wait),
        Command::Plan => dry_run(root),
        Command::Facts { json } => facts_cmd(root, json),
        Command::Retry { step } => retry(root, step),
    };
    ExitCode::from(code)
}

fn run_cmd(root: &Path) -> u8 {
    match run::run(root, &mut SystemRunner::default()) {
        Ok(end) => {
            println!("vgpu-firstboot: {end}");
            match end {
                RunEnd::Done | RunEnd::Rebooting(_) => 0,
                RunEnd::Failed(_) => 1,
                RunEnd::NeedsOperator(_) => 2,
            }
        }
        Err(e) => {
            eprintln!("vgpu-firstboot: {e}");
            1
        }
    }
}

fn status(root: &Path, json: bool, wait: Option<Duration>) -> u8 {
    let start = Instant::now();
    loop {
        let st = match state::load(root) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("vgpu-firstboot: {e}");
                return 1;
            }
        };
        let done_marker = root.join(layout::DONE_MARKER).exists();
        let mut code = state::exit_code(&st);
        if done_marker && code == 3 {
            // The done marker is written by the last step; a power cut
            // before the state recorded it leaves the state one step behind.
            code = 0;
        }
        let remaining = wait.map(|w| w.saturating_sub(start.elapsed()));
        if code != 3 || remaining.is_none_or(|r| r.is_zero()) {
            if json {
                println!("{}", state::render_json(&st));
            } else {
                print!("{}", state::render_human(&st));
                if done_marker && !matches!(st.status, Status::Done) {
                    println!(
                        "done marker {} is present",
                        layout::absolute(layout::DONE_MARKER)
                    );
                }
            }
            return u8::try_from(code).unwrap_or(1);
        }
        std::thread::sleep(remaining.unwrap_or_default().min(Duration::from_secs(1)));
    }
}

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

fn dry_run(root: &Path) -> u8 {
    if !root.join(layout::PLAN_FILE).exists() {
        println!(
            "no plan at {}: nothing would change",
            root.join(layout::PLAN_FILE).display()
        );
        return 0;
    }
    let plan = match run::load_plan(root) {
        Ok((p, _)) => p,
        Err(e) => {
            eprintln!("vgpu-firstboot: {e}");
            return 1;
        }
    };
    let facts = match facts::read_facts(root) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("vgpu-firstboot: {e}");
            return 1;
        }
    };
    let st = state::load(root).ok();
    let mut runner = NoRunner;
    let host = Host::new(root, &mut runner, &plan, &facts);
    println!(
        "plan {} ({} mode, Proxmox VE {}): {}",
        plan.name, plan.mode, plan.proxmox, plan.description
    );
    if plan.demo {
        println!("DEMO plan: the driver is a stand-in installer, not an NVIDIA driver");
    }
    for step in &plan.steps {
        let done = st
            .as_ref()
            .and_then(|s| s.step(&step.id))
            .map(|r| r.status.name())
            .unwrap_or("pending");
        println!(
            "\n[{}] {} ({done}): {}",
            phase_name(step.phase),
            step.id,
            step.why
        );
        for line in steps::preview(step, &host) {
            println!("    {line}");
        }
    }
    if !plan.licensing.applied && plan.licensing.mode != vgpu_plan::plan::LicensingMode::None {
        println!(
            "\nlicensing ({:?}) is carried in the plan but not applied by this version",
            plan.licensing.mode
        );
    }
    0
}

fn phase_name(p: vgpu_plan::plan::Phase) -> &'static str {
    match p {
        vgpu_plan::plan::Phase::One => "phase 1",
        vgpu_plan::plan::Phase::Reboot => "reboot",
        vgpu_plan::plan::Phase::Two => "phase 2",
    }
}

fn facts_cmd(root: &Path, json: bool) -> u8 {
    let f = match facts::read_facts(root) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("vgpu-firstboot: {e}");
            return 1;
        }
    };
    let table = std::fs::read_to_string(root.join(layout::COMPAT_FILE))
        .ok()
        .and_then(|t| vgpu_plan::from_toml::<CompatTable>(&t).ok());
    if table.is_none() && !json {
        eprintln!(
            "vgpu-firstboot: no compatibility table at {} (no bundle installed): GPUs are not classified",
            layout::absolute(layout::COMPAT_FILE)
        );
    }
    let table = table.unwrap_or(CompatTable {
        schema: 1,
        source: String::new(),
        gpus: Vec::new(),
    });
    let verdicts = facts::classify_gpus(&f, &table);
    if json {
        println!("{}", facts::render_json(&f, &verdicts));
    } else {
        print!("{}", facts::render_human(&f, &verdicts));
    }
    0
}

fn retry(root: &Path, step: Option<String>) -> u8 {
    let result = (|| {
        let (mut store, mut st) = StateStore::open_locked(root)?;
        if matches!(st.status, Status::NotStarted) {
            return Ok(
                "nothing to retry: the plan has not started; `run` starts it from the first step"
                    .to_string(),
            );
        }
        let target = match &step {
            Some(s) => RetryTarget::Step(s.clone()),
            None => RetryTarget::AllFailed,
        };
        store.apply(&mut st, state::Event::Retry(target))?;
        Ok::<_, state::StateError>(format!(
            "{} will run again: `systemctl start vgpu-firstboot` (or reboot)",
            step.as_deref().unwrap_or("every failed step")
        ))
    })();
    match result {
        Ok(msg) => {
            println!("{msg}");
            0
        }
        Err(e) => {
            eprintln!("vgpu-firstboot: {e}");
            1
        }
    }
}

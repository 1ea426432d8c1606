//! `vgpu-bake`: bake a vGPU provisioning profile into an overlay bundle.
//!
//! Exit codes: 0 success, 1 a user error (bad profile, failed verification,
//! ...), 2 a usage error.

mod bake_many;
mod commands;
mod report;
mod usage;

use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches};
use vgpu_bake::cli::{Cli, Cmd, HookSourceArgs};
use vgpu_bake::term;
use vgpu_rootfs::errln;

fn main() -> ExitCode {
    let matches = Cli::command().color(term::clap_colour()).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    term::set_verbosity(cli.verbosity());
    if term::quiet() {
        vgpu_bake::progress::silence();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("vgpu-bake: error: {}", report::error_text(&e));
            ExitCode::from(usage::exit_code(&e))
        }
    }
}

/// The hook's sources (in the order tried), the trusted keys (each checked to
/// be a minisign public key, with its text) and the template (found now,
/// read when the hook is written).
fn hook_parts(hook: HookSourceArgs) -> Result<commands::HookParts> {
    let sources = hook.flags().sources()?;
    let (keys, texts) = vgpu_bake::rollout::make::read_keys(&hook.trusted_key)?;
    let exe = std::env::current_exe()?;
    let template = vgpu_bake::rollout::hook::find_template(hook.hook_template.as_deref(), &exe)?;
    Ok(commands::HookParts {
        sources,
        trusted: keys.into_iter().zip(texts).collect(),
        template,
    })
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Validate { profiles, json, db } => {
            commands::validate(&profiles, json, db.gpu_db.as_deref())
        }
        Cmd::Check {
            profiles,
            facts,
            json,
            db,
        } => commands::check(&profiles, &facts, json, db.gpu_db.as_deref()),
        Cmd::Plan {
            profile,
            json,
            cache,
            db,
        } => commands::plan(
            &profile,
            json,
            cache,
            &commands::open_db(db.gpu_db.as_deref())?,
        ),
        Cmd::Fetch {
            profile,
            json,
            source,
            db,
        } => {
            let (overrides, cache) = source.split();
            commands::fetch(&profile, &overrides, cache, json, db.gpu_db.as_deref())
        }
        Cmd::Bake {
            profiles,
            out,
            json,
            agent,
            sign_key,
            source,
            db,
        } => {
            let (overrides, cache) = source.split();
            let inputs = commands::BakeArgs {
                agent,
                sign_key,
                overrides,
                cache,
                gpu_db: db.gpu_db,
            };
            commands::bake(&profiles, out, json, inputs)
        }
        Cmd::Inspect {
            bundle,
            json,
            trusted_key,
        } => commands::inspect(&bundle, json, &trusted_key),
        Cmd::Install {
            bundle,
            root,
            json,
            trusted_key,
        } => commands::install(&bundle, &root, json, &trusted_key),
        Cmd::Hook {
            bundle,
            index,
            hook,
            out,
            json,
        } => {
            use vgpu_bake::rollout::make::HookInput;
            let input = match (bundle, index) {
                (Some(b), _) => HookInput::Bundle(b),
                (None, Some(i)) => HookInput::Index(i),
                (None, None) => unreachable!("clap requires --bundle or --index"),
            };
            commands::hook(
                &input,
                &hook.flags(),
                &hook.trusted_key,
                hook.hook_template.as_deref(),
                &out,
                json,
            )
        }
        Cmd::Keygen {
            prefix,
            force,
            json,
        } => commands::keygen(&prefix, force, json),
        // --- rollout: fleet, answer, usb ---
        Cmd::Fleet {
            inventory,
            out,
            hook,
            sign_key,
            cache,
            agent,
            json,
            db,
        } => commands::fleet(
            &inventory,
            out,
            hook_parts(hook),
            sign_key.as_deref(),
            cache,
            agent,
            db.gpu_db.as_deref(),
            json,
        ),
        Cmd::Answer {
            profile,
            hook_url,
            cert_fingerprint,
            json,
            db,
        } => commands::answer(
            &profile,
            hook_url.as_deref(),
            cert_fingerprint.as_deref(),
            json,
            &commands::open_db(db.gpu_db.as_deref())?,
        ),
        Cmd::Usb {
            input,
            out,
            label,
            force,
            json,
        } => commands::usb(&input, &out, &label, force, json),
        // --- end rollout ---
        Cmd::GuestDrivers {
            release,
            os,
            json,
            fetch,
            cache,
            sha256,
        } => {
            let filter = commands::GuestFilter {
                release: release.as_deref(),
                os: os.as_deref(),
            };
            if fetch {
                commands::guest_fetch(filter, sha256.as_deref(), cache, json)
            } else {
                commands::guest_drivers(filter, json)
            }
        }
        Cmd::Gpus { ids, json, db } => {
            commands::gpus(&ids, json, &commands::open_db(db.gpu_db.as_deref())?)
        }
        Cmd::Doctor {
            profiles,
            cache,
            out,
            deep,
            json,
            db,
        } => {
            let db = commands::open_db(db.gpu_db.as_deref())?;
            commands::doctor(&profiles, cache, out, deep, json, &db)
        }
    }
}

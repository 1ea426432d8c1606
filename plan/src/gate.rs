//! The host gate: does this plan fit this host? One pure function for both
//! programs.
//!
//! The agent runs [`gate`] before the first change of a fresh run (and
//! shows it first in its dry run) with the compatibility table baked into
//! the bundle; `vgpu-bake check` runs it on facts captured on the targets
//! (`vgpu-firstboot facts --json`) with the builder's full GPU database.
//! The host passes only if all of these hold:
//!
//! - it runs the Debian release of the plan's Proxmox VE major (the OS
//!   check),
//! - it is a Proxmox VE host (`/etc/pve` or `/usr/bin/pveversion`),
//! - every `[[gpu]]` the plan declares is present, by PCI id and, when the
//!   profile gives one, by address,
//! - each card's class fits the mode (no unlock plan on a native card, no
//!   native plan on an unlock-only card, no vGPU on a passthrough-only
//!   card); a plan that declares no vGPU card needs at least one card of
//!   its mode,
//! - vGPU is possible at all ([`vgpu_possible`]).
//!
//! Every reason is listed, each with its [`Kind`]: `fail`, or
//! `needs-operator` where a person can fix it in the firmware (VT-x/AMD-V
//! off, or the IOMMU off although the kernel was asked to turn it on).
//! NVIDIA functions the plan does not declare are notes: left alone.
//! A demo plan runs every check but only the OS check binds it; the others
//! are reported as not binding.

use serde::Serialize;

use crate::compat::{CompatTable, Support};
use crate::facts::{Facts, PciFunction, Severity, vgpu_possible};
use crate::plan::{GpuRole, GpuRule, Mode, Plan};

/// What a failed check asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The plan does not fit the host: use another bundle or another host.
    Fail,
    /// A person can fix it on the host (the firmware's settings), then
    /// retry.
    NeedsOperator,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Fail => "fail",
            Kind::NeedsOperator => "needs-operator",
        })
    }
}

/// Which check a reason comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// The host's Debian release against the plan's Proxmox VE major.
    Os,
    /// `/etc/pve` or `/usr/bin/pveversion`.
    Proxmox,
    /// A declared `[[gpu]]` is on the host.
    Gpus,
    /// The cards' class against the mode.
    Class,
    /// vGPU can work on the host at all.
    Vgpu,
}

/// One reason the host does not pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Reason {
    /// Fail or needs an operator.
    pub kind: Kind,
    /// The check that found it.
    pub check: Check,
    /// False for a demo plan's checks other than the OS check: reported,
    /// not acted on.
    pub binding: bool,
    /// A plain sentence naming the file, key or card, and what to do.
    pub message: String,
}

/// Everything the gate found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct GateReport {
    /// Every reason, in check order.
    pub reasons: Vec<Reason>,
    /// NVIDIA functions the plan leaves alone, and warnings.
    pub notes: Vec<String>,
}

impl GateReport {
    /// No binding reason.
    pub fn passed(&self) -> bool {
        self.binding().next().is_none()
    }

    /// The reasons that stop the plan.
    pub fn binding(&self) -> impl Iterator<Item = &Reason> {
        self.reasons.iter().filter(|r| r.binding)
    }

    /// What the binding reasons ask for: `Fail` if any fails, else
    /// `NeedsOperator`; `None` when the host passed.
    pub fn verdict(&self) -> Option<Kind> {
        let mut kinds = self.binding().map(|r| r.kind);
        let first = kinds.next()?;
        Some(if first == Kind::Fail || kinds.any(|k| k == Kind::Fail) {
            Kind::Fail
        } else {
            Kind::NeedsOperator
        })
    }

    /// The report as lines for humans: a verdict line, then one line per
    /// reason (`fail: ...`, `needs-operator: ...`, `not binding (demo):
    /// ...`) and per note (`note: ...`).
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![match self.verdict() {
            None => "host gate: passed".to_string(),
            Some(Kind::Fail) => {
                "host gate: FAILED: this plan does not fit this host; nothing will be changed"
                    .to_string()
            }
            Some(Kind::NeedsOperator) => {
                "host gate: NEEDS AN OPERATOR: fix the firmware settings below, then `vgpu-firstboot retry`; nothing will be changed"
                    .to_string()
            }
        }];
        for r in &self.reasons {
            if r.binding {
                out.push(format!("{}: {}", r.kind, r.message));
            } else {
                out.push(format!("not binding (demo plan): {}", r.message));
            }
        }
        out.extend(self.notes.iter().map(|n| format!("note: {n}")));
        out
    }
}

fn support_words(s: Option<Support>) -> &'static str {
    match s {
        Some(Support::Native) => "a native vGPU card",
        Some(Support::Unlock) => "a vgpu_unlock consumer card",
        Some(Support::No) => "a passthrough-only card (not usable for vGPU)",
        None => "a card the compatibility data does not know",
    }
}

fn card(f: &PciFunction, table: &CompatTable) -> String {
    match table.lookup(&f.device) {
        Some(row) => format!("{} {} ({})", f.address, f.id(), row.name),
        None => format!("{} {}", f.address, f.id()),
    }
}

/// The PCI slot of a function (`0000:01:00` of `0000:01:00.1`).
fn slot(address: &str) -> &str {
    address.rsplit_once('.').map_or(address, |(s, _)| s)
}

fn rule_label(i: usize, rule: &GpuRule) -> String {
    let name = if rule.name.is_empty() {
        String::new()
    } else {
        format!(" ({})", rule.name)
    };
    match &rule.address {
        Some(a) => format!("`gpu[{i}]` {}{name} at {a}", rule.id),
        None => format!("`gpu[{i}]` {}{name}", rule.id),
    }
}

/// What the gate reads of a plan: the agent has a baked [`Plan`], the
/// builder's `check` a resolved profile.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// A demo plan: only the OS check binds.
    pub demo: bool,
    /// Proxmox VE major release.
    pub proxmox: u8,
    /// Debian codename of that release.
    pub codename: &'a str,
    /// What the host is provisioned for.
    pub mode: Mode,
    /// The `[[gpu]]` entries.
    pub gpus: &'a [GpuRule],
}

impl<'a> From<&'a Plan> for Target<'a> {
    fn from(plan: &'a Plan) -> Self {
        Target {
            demo: plan.demo,
            proxmox: plan.proxmox,
            codename: &plan.codename,
            mode: plan.mode,
            gpus: &plan.gpus,
        }
    }
}

/// The host gate: the plan `plan` against `facts`, classifying cards with
/// `table`.
pub fn gate(plan: Target<'_>, facts: &Facts, table: &CompatTable) -> GateReport {
    let mut reasons = Vec::new();
    let mut notes = Vec::new();
    let demo = plan.demo;
    let mut add = |kind: Kind, check: Check, message: String| {
        reasons.push(Reason {
            kind,
            check,
            binding: !demo || check == Check::Os,
            message,
        });
    };
    let os = &facts.os;
    let pretty = os
        .pretty_name
        .clone()
        .or_else(|| os.id.clone())
        .unwrap_or_else(|| "an unknown system".into());
    match os.codename.as_deref() {
        None => add(
            Kind::Fail,
            Check::Os,
            format!(
                "/etc/os-release names no release codename ({pretty}): the plan is for Proxmox VE {} on Debian {}; run it only on such a host",
                plan.proxmox, plan.codename
            ),
        ),
        Some(c) if c != plan.codename || os.id.as_deref().is_some_and(|id| id != "debian") => add(
            Kind::Fail,
            Check::Os,
            format!(
                "the host runs {pretty} ({} {c}, from /etc/os-release) but the plan is for Proxmox VE {} on Debian {}: bake the profile with `proxmox` set to this host's release, or install Proxmox VE {} here",
                os.id.as_deref().unwrap_or("?"),
                plan.proxmox,
                plan.codename,
                plan.proxmox
            ),
        ),
        Some(_) => {}
    }
    if !os.proxmox_hint() {
        add(
            Kind::Fail,
            Check::Proxmox,
            format!(
                "not a Proxmox VE host: neither /etc/pve nor /usr/bin/pveversion exists; install Proxmox VE {} first",
                plan.proxmox
            ),
        );
    }

    let gpus: Vec<&PciFunction> = facts.gpus().collect();
    let found_list = || {
        if gpus.is_empty() {
            "no NVIDIA GPU".to_string()
        } else {
            gpus.iter()
                .map(|g| card(g, table))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let needed = match plan.mode {
        Mode::Native => Some(Support::Native),
        Mode::Unlock => Some(Support::Unlock),
        Mode::Passthrough => None,
    };
    let support_of = |rule: Option<&GpuRule>, f: &PciFunction| {
        rule.and_then(|r| r.declared)
            .or_else(|| table.lookup(&f.device).map(|row| row.support))
            .or_else(|| rule.and_then(|r| r.database))
    };
    // Slots of the functions the plan declares (their audio/USB functions
    // go with them).
    let mut used: Vec<&str> = Vec::new();
    for (i, rule) in plan.gpus.iter().enumerate() {
        let by_id: Vec<&&PciFunction> = gpus.iter().filter(|g| g.id() == rule.id).collect();
        let matching: Vec<&&PciFunction> = by_id
            .iter()
            .copied()
            .filter(|g| rule.address.as_ref().is_none_or(|a| *a == g.address))
            .collect();
        if matching.is_empty() {
            let also = if by_id.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} is at {})",
                    rule.id,
                    by_id
                        .iter()
                        .map(|g| g.address.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            add(
                Kind::Fail,
                Check::Gpus,
                format!(
                    "{} is not on this host{also}; it has {}: use the bundle made for this host, or fix `[[gpu]]` in the profile",
                    rule_label(i, rule),
                    found_list()
                ),
            );
            continue;
        }
        for g in matching {
            used.push(slot(&g.address));
            let Some(needed) = needed.filter(|_| rule.role == GpuRole::Vgpu) else {
                continue;
            };
            let support = support_of(Some(rule), g);
            if support != Some(needed) {
                add(
                    Kind::Fail,
                    Check::Class,
                    format!(
                        "{} is {}, but the plan's mode `{}` needs {}: use a bundle of the card's mode",
                        card(g, table),
                        support_words(support),
                        plan.mode,
                        support_words(Some(needed))
                    ),
                );
            }
        }
    }
    let declares_vgpu = plan.gpus.iter().any(|r| r.role == GpuRole::Vgpu);
    if let Some(needed) = needed.filter(|_| !declares_vgpu && !gpus.is_empty()) {
        let fitting: Vec<&&PciFunction> = gpus
            .iter()
            .filter(|g| support_of(None, g) == Some(needed))
            .collect();
        if fitting.is_empty() {
            let cards: Vec<String> = gpus
                .iter()
                .map(|g| {
                    format!(
                        "{} is {}",
                        card(g, table),
                        support_words(support_of(None, g))
                    )
                })
                .collect();
            add(
                Kind::Fail,
                Check::Class,
                format!(
                    "no GPU on this host fits the plan's mode `{}` ({} needed): {}; use a bundle of the cards' mode",
                    plan.mode,
                    support_words(Some(needed)),
                    cards.join("; ")
                ),
            );
        }
        used.extend(fitting.iter().map(|g| slot(&g.address)));
    }

    if let Err(obstacles) = vgpu_possible(facts) {
        let passthrough = plan.mode == Mode::Passthrough && !gpus.is_empty();
        let asked_iommu = facts
            .kernel
            .cmdline
            .iter()
            .any(|a| a == "intel_iommu=on" || a == "amd_iommu=on");
        for o in obstacles {
            let firmware_vtx = o.severity == Severity::Fatal
                && !facts.cpu.hypervisor
                && facts.cpu.flags_read
                && !facts.cpu.virtualisation();
            match o.severity {
                Severity::Fatal if firmware_vtx => {
                    add(Kind::NeedsOperator, Check::Vgpu, o.message);
                }
                Severity::Fatal if !passthrough => add(Kind::Fail, Check::Vgpu, o.message),
                Severity::PreReboot if asked_iommu && !facts.cpu.hypervisor => add(
                    Kind::NeedsOperator,
                    Check::Vgpu,
                    "IOMMU is off (no IOMMU groups) although the running kernel was started with it on (/proc/cmdline): enable VT-d/AMD-Vi in the firmware, reboot, then `vgpu-firstboot retry`".into(),
                ),
                _ => notes.push(format!("{}: {}", o.severity, o.message)),
            }
        }
    }

    for f in &facts.nvidia {
        if !used.contains(&slot(&f.address)) {
            notes.push(format!(
                "{} {} ({}) is not in the plan: left alone",
                f.address,
                table
                    .lookup(&f.device)
                    .filter(|_| f.is_gpu())
                    .map_or_else(|| f.id(), |row| format!("{} {}", f.id(), row.name)),
                f.class_name()
            ));
        }
    }
    GateReport { reasons, notes }
}

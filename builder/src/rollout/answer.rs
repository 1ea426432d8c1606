//! `vgpu-bake answer PROFILE`: what the Proxmox automated installer's
//! answer file and boot line need for this profile.
//!
//! - The `[first-boot]` section: the hook from the ISO (`prepare-iso
//!   --on-first-boot first-boot-hook`) or from a URL, run at
//!   `network-online`: it may fetch its bundle over HTTP(S), and the agent
//!   it starts needs the network for its package steps.
//! - The kernel arguments for the installer's boot line. The installer
//!   copies its boot parameters into the installed system's boot
//!   configuration (`/etc/default/grub.d/installer.cfg`,
//!   `/etc/kernel/cmdline`), so the installed system's first boot already
//!   runs with them and the agent's reboot between its phases finds nothing
//!   to do. The arguments are exactly the agent's kernel-args step's: the
//!   IOMMU arguments of the CPU vendor ([`Vendor::iommu_kernel_args`]) and
//!   the profile's extra ones. A profile with `iommu = "auto"` leaves the
//!   vendor to the host, so both vendors' lines are given, each saying the
//!   CPUs it is for: one ISO or PXE setup usually serves one kind of host,
//!   and the admin knows which. The agent also reboots while nouveau is
//!   loaded, which it is at the first boot of a host with an NVIDIA GPU
//!   unless the boot line blacklists it: the line adds
//!   `modprobe.blacklist=` for the plan's blacklisted modules.

use serde::Serialize;
use vgpu_plan::iommu::Vendor;

use super::config::normalize_fingerprint;
use crate::resolve::Resolved;

/// The JSON document's schema.
pub const SCHEMA: u32 = 1;

/// Why the proxmox-first-boot hook runs at `network-online`.
pub const ORDERING_WHY: &str = "the hook may fetch its bundle over HTTP(S), and the agent it starts needs the network for its package steps";

/// What `answer` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Answer {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The plan's name.
    pub plan: String,
    /// The answer file's `[first-boot]` section.
    pub first_boot: FirstBoot,
    /// The boot line's arguments: one entry, or one per CPU vendor when the
    /// profile leaves the vendor to the host.
    pub kernel_args: Vec<BootLine>,
    /// What the arguments spare, and what they cannot.
    pub notes: Vec<String>,
}

/// `[first-boot]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct FirstBoot {
    /// `from-iso` or `from-url`.
    pub source: String,
    /// Always `network-online` ([`ORDERING_WHY`]).
    pub ordering: String,
    /// The hook's URL, for `from-url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The URL's certificate fingerprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_fingerprint: Option<String>,
}

/// The arguments for hosts with one CPU vendor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct BootLine {
    /// `intel` or `amd`.
    pub vendor: Vendor,
    /// Which CPUs (the `/proc/cpuinfo` `vendor_id`).
    pub cpus: String,
    /// Exactly what the agent's kernel-args step puts on the command line.
    pub agent_args: Vec<String>,
    /// `modprobe.blacklist=...` for the plan's blacklisted modules, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blacklist_arg: Option<String>,
    /// Everything to append to the installer's boot line, space-separated.
    pub line: String,
}

/// A `--hook-url` or `--cert-fingerprint` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AnswerError(String);

/// The agent's kernel arguments for `vendor` with the profile's extras, in
/// the kernel-args step's order (vendor first, extras not repeated).
pub fn agent_args(vendor: Vendor, extra: &[String]) -> Vec<String> {
    let mut args: Vec<String> = vendor
        .iommu_kernel_args()
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
    for a in extra {
        if !args.contains(a) {
            args.push(a.clone());
        }
    }
    args
}

/// The answer for a resolved profile (pure).
pub fn answer(
    resolved: &Resolved,
    hook_url: Option<&str>,
    cert_fingerprint: Option<&str>,
) -> Result<Answer, AnswerError> {
    let first_boot = match hook_url {
        None => FirstBoot {
            source: "from-iso".into(),
            ordering: "network-online".into(),
            url: None,
            cert_fingerprint: None,
        },
        Some(url) => {
            let https = url.starts_with("https://");
            if !(https || url.starts_with("http://"))
                || url.len() <= "https://".len()
                || url
                    .chars()
                    .any(|c| c.is_control() || c.is_whitespace() || c == '"')
            {
                return Err(AnswerError(format!(
                    "--hook-url {url:?} must be an http:// or https:// URL of the hook file (e.g. http://10.0.0.5/fleet/first-boot-hook)"
                )));
            }
            let fp = cert_fingerprint
                .map(|fp| {
                    if !https {
                        return Err(AnswerError(format!(
                            "--cert-fingerprint applies to an https --hook-url, not {url}"
                        )));
                    }
                    normalize_fingerprint(fp).ok_or_else(|| {
                        AnswerError(format!(
                            "--cert-fingerprint {fp:?} is not a SHA-256 fingerprint: give the 32 octets `openssl x509 -noout -fingerprint -sha256 -in CERT.pem` prints"
                        ))
                    })
                })
                .transpose()?;
            FirstBoot {
                source: "from-url".into(),
                ordering: "network-online".into(),
                url: Some(url.to_owned()),
                cert_fingerprint: fp,
            }
        }
    };
    let host = &resolved.host;
    let vendors = match host.iommu.fixed_vendor() {
        Some(v) => vec![v],
        None => vec![Vendor::Intel, Vendor::Amd],
    };
    let blacklist_arg = (!host.blacklist.is_empty())
        .then(|| format!("modprobe.blacklist={}", host.blacklist.join(",")));
    let kernel_args = vendors
        .into_iter()
        .map(|vendor| {
            let agent_args = agent_args(vendor, &host.kernel_args_extra);
            let mut line = agent_args.join(" ");
            if let Some(b) = &blacklist_arg {
                line.push(' ');
                line.push_str(b);
            }
            BootLine {
                vendor,
                cpus: match vendor {
                    Vendor::Intel => "Intel CPUs (vendor_id GenuineIntel)".into(),
                    Vendor::Amd => "AMD CPUs (vendor_id AuthenticAMD)".into(),
                },
                agent_args,
                blacklist_arg: blacklist_arg.clone(),
                line,
            }
        })
        .collect::<Vec<_>>();
    let mut notes = vec![
        "The installer copies its boot line's arguments into the installed system's boot configuration, so the installed system's first boot already has them and the agent skips the phase-1 reboot (both phases run in one boot).".to_owned(),
    ];
    if kernel_args.len() > 1 {
        notes.push(
            "The profile leaves the IOMMU vendor to the host (`iommu = \"auto\"`): use the line for the CPUs of the hosts this installer boots; on the other vendor's CPUs the agent adds its own arguments and reboots once. Set `iommu = \"intel\"` or `\"amd\"` in the profile's [host] section to get one line.".to_owned());
    }
    if let Some(b) = &blacklist_arg {
        notes.push(format!(
            "{b} keeps those modules from loading at the first boot: the agent reboots while nouveau is loaded, and its own blacklist applies only from the next boot."
        ));
    }
    if let Some(pin) = &host.kernel_pin {
        notes.push(format!(
            "The profile pins kernel {} when the running kernel is {} or newer: if the installer's kernel is, the agent still reboots once into the pinned kernel.",
            pin.series, pin.when_running_at_least
        ));
    }
    Ok(Answer {
        schema: SCHEMA,
        plan: resolved.name.clone(),
        first_boot,
        kernel_args,
        notes,
    })
}

/// A TOML basic string.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The text form: a `[first-boot]` section to paste into answer.toml, then
/// the boot line(s), as comments and lines.
pub fn render_text(a: &Answer, profile: &str) -> String {
    let mut out = String::new();
    let mut line = |s: &str| {
        out.push_str(s);
        out.push('\n');
    };
    line(&format!(
        "# vgpu-bake answer: plan {} ({profile})",
        quoted(&a.plan)
    ));
    line("#");
    line("# 1. In the automated installer's answer file (answer.toml):");
    let fb = &a.first_boot;
    line("[first-boot]");
    match &fb.url {
        None => {
            line(
                "# the hook is on the ISO: proxmox-auto-install-assistant prepare-iso ... --on-first-boot first-boot-hook",
            );
            line(&format!("source = {}", quoted(&fb.source)));
        }
        Some(url) => {
            line("# the installer downloads the hook from this URL at install time");
            line(&format!("source = {}", quoted(&fb.source)));
            line(&format!("url = {}", quoted(url)));
            if let Some(fp) = &fb.cert_fingerprint {
                line(&format!("cert-fingerprint = {}", quoted(fp)));
            }
        }
    }
    line(&format!("# network-online: {ORDERING_WHY}"));
    line(&format!("ordering = {}", quoted(&fb.ordering)));
    line("");
    line("# 2. On the installer's boot line (its GRUB entry's `linux` line, or the kernel line of");
    line("#    boot.ipxe from `prepare-iso --pxe`), append:");
    for k in &a.kernel_args {
        if a.kernel_args.len() > 1 {
            line(&format!("# for {}:", k.cpus));
        }
        line(&k.line);
    }
    line("");
    for n in &a.notes {
        line(&format!("# {n}"));
    }
    out
}

/// The JSON form: one document.
pub fn render_json(a: &Answer) -> String {
    let mut s = serde_json::to_string_pretty(a).expect("an answer always serialises");
    s.push('\n');
    s
}

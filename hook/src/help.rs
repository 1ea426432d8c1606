//! `--help`: the usage and what this hook carries.

use std::fmt::Write;

use vgpu_bake::rollout::config::HookConfig;

/// The usage text.
pub const USAGE: &str = "usage: vgpu-hook ORDERING [--root DIR]
       vgpu-hook --help

The first-boot hook of the Proxmox automated installer
(`proxmox-auto-install-assistant prepare-iso --on-first-boot HOOK`), made by
`vgpu-bake hook` or `vgpu-bake fleet`. The installer runs it as
`/var/lib/proxmox-first-boot/proxmox-first-boot ORDERING`, ORDERING one of
before-network, network-online, fully-up, until it exits 0. It picks this
host's bundle from its index, gets it from its sources in order, verifies
its size and sha256 (and signature, with trusted keys) before writing
anything, lays it as `vgpu-bake install` does, installs the trusted keys and
starts vgpu-firstboot.service without waiting for it.

  --root DIR   work under DIR instead of / (tests)
Exit codes: 0 done, 1 failed (the reason is in the journal and on the
console; the installer runs the hook again at the next boot), 2 usage.";

/// What `config` carries, one item per line.
pub fn carried(config: &HookConfig) -> String {
    let mut s = String::new();
    let i = &config.index;
    let _ = writeln!(s, "made by: {}", config.made_by);
    let sources: Vec<String> = config.sources.iter().map(ToString::to_string).collect();
    let _ = writeln!(s, "sources, in order: {}", sources.join(", "));
    let _ = writeln!(s, "bundles: {}", i.bundles.len());
    for b in &i.bundles {
        let default = if i.default.as_ref() == Some(&b.sha256) {
            " (default)"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "  {} {} bytes, sha256 {}, file {}{default}",
            b.name,
            b.size,
            b.sha256.as_str(),
            b.file
        );
    }
    let _ = writeln!(s, "hosts: {}", i.hosts.len());
    let keys = if config.trusted_keys.is_empty() {
        "none (bundles are checked by sha256 only)".to_owned()
    } else {
        match crate::lay::parse_keys(&config.trusted_keys) {
            Ok(k) => k
                .iter()
                .map(|k| k.key.key_id().to_owned())
                .collect::<Vec<_>>()
                .join(", "),
            Err(e) => format!("unreadable: {e}"),
        }
    };
    let _ = writeln!(s, "trusted keys: {keys}");
    s
}

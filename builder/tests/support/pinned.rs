//! A bake's inputs beside a driver file: `p.toml`, a native profile for
//! release 19.4 pinning `sha256`, and a fake agent.

use std::fs;
use std::path::Path;

/// Writes `dir/p.toml` (pinning `sha256`) and `dir/agent`.
pub fn write_profile_and_agent(dir: &Path, sha256: &str) {
    fs::write(
        dir.join("p.toml"),
        format!(
            "proxmox = 9\n[vgpu]\nmode = \"native\"\n[driver]\nrelease = \"19.4\"\nsha256 = \"{sha256}\"\n"
        ),
    )
    .unwrap();
    fs::write(dir.join("agent"), "#!/bin/sh\necho fake agent\n").unwrap();
}

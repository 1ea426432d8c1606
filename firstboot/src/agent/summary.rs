//! What to do in the Proxmox VE web UI once the plan is done (the bash
//! installer's closing summary), printed by `run` and `status`.

use std::path::Path;

use vgpu_plan::plan::Mode;

/// The next steps for a host provisioned in `mode`, one line.
pub fn next_steps(mode: Mode) -> &'static str {
    match mode {
        Mode::Passthrough => {
            "next, in the web UI: Datacenter > Resource Mappings > PCI Devices > Add, select the GPU; then the VM's Hardware > Add > PCI Device > Mapped Device (the whole card: no MDev Type)"
        }
        Mode::Native | Mode::Unlock => {
            "next, in the web UI: Datacenter > Resource Mappings > PCI Devices > Add, tick \"Use with Mediated Devices\", select the GPU; then the VM's Hardware > Add > PCI Device > Mapped Device and its MDev Type (a vGPU profile)"
        }
    }
}

/// Prints [`next_steps`] for the installed plan, if it can be read.
pub fn print(root: &Path) {
    if let Ok((plan, _)) = super::run::load_plan(root) {
        outln!("{}", next_steps(plan.mode));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vgpu_modes_map_mediated_devices_and_passthrough_does_not() {
        for mode in [Mode::Native, Mode::Unlock] {
            let s = next_steps(mode);
            assert!(
                s.contains("Datacenter > Resource Mappings > PCI Devices"),
                "{s}"
            );
            assert!(s.contains("\"Use with Mediated Devices\""), "{s}");
            assert!(s.contains("MDev Type"), "{s}");
        }
        let s = next_steps(Mode::Passthrough);
        assert!(
            s.contains("Datacenter > Resource Mappings > PCI Devices"),
            "{s}"
        );
        assert!(!s.contains("Mediated"), "{s}");
    }
}

//! The IOMMU rule: which kernel arguments turn the IOMMU on for a CPU
//! vendor. The one place the rule lives; the builder's plan, the agent's
//! kernel-args and reboot steps and the facts report all read it here.

use serde::{Deserialize, Serialize};

/// A CPU vendor the IOMMU kernel arguments exist for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Vendor {
    /// Intel (VT-d): `intel_iommu=on iommu=pt`.
    Intel,
    /// AMD (AMD-Vi): `amd_iommu=on iommu=pt`.
    Amd,
}

impl Vendor {
    /// The vendor of a `/proc/cpuinfo` `vendor_id`, if it is one of ours.
    pub fn from_vendor_id(vendor_id: &str) -> Option<Vendor> {
        match vendor_id {
            "GenuineIntel" => Some(Vendor::Intel),
            "AuthenticAMD" => Some(Vendor::Amd),
            _ => None,
        }
    }

    /// The kernel arguments that turn the IOMMU on, in pass-through mode
    /// (`iommu=pt`: host devices skip translation, guests' do not).
    pub fn iommu_kernel_args(self) -> &'static [&'static str] {
        match self {
            Vendor::Intel => &["intel_iommu=on", "iommu=pt"],
            Vendor::Amd => &["amd_iommu=on", "iommu=pt"],
        }
    }
}

impl std::fmt::Display for Vendor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Vendor::Intel => "intel",
            Vendor::Amd => "amd",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_vendor_has_its_iommu_arguments() {
        assert_eq!(
            Vendor::Intel.iommu_kernel_args(),
            ["intel_iommu=on", "iommu=pt"]
        );
        assert_eq!(
            Vendor::Amd.iommu_kernel_args(),
            ["amd_iommu=on", "iommu=pt"]
        );
        assert_eq!(Vendor::from_vendor_id("GenuineIntel"), Some(Vendor::Intel));
        assert_eq!(Vendor::from_vendor_id("AuthenticAMD"), Some(Vendor::Amd));
        assert_eq!(Vendor::from_vendor_id("HygonGenuine"), None);
    }
}

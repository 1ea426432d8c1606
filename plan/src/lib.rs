//! The contract between the builder and the agent.
//!
//! `vgpu-bake` resolves a profile into a [`plan::Plan`], writes it into the
//! bundle together with a [`manifest::Manifest`] and a copy of the GPU
//! compatibility data ([`compat::CompatTable`]), at the places [`layout`]
//! names, with the unit [`unit`] renders; the agent reads them back on the
//! target host. Both programs depend on this crate and on nothing of each
//! other, so the format cannot drift.

pub mod compat;
mod de;
pub mod digest;
pub mod facts;
pub mod gate;
pub mod iommu;
pub mod layout;
pub mod manifest;
pub mod plan;
pub mod unit;

/// Parses TOML into `T` through a `toml::Table`: the agent reads only files
/// the builder or the agent wrote, so span-tracking errors are not worth
/// their size in a binary that must stay under 1 MiB. The table is read
/// into `T` by [`de`], which gives the errors `toml::Table` would but costs
/// less per type.
pub fn from_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, toml::de::Error> {
    let table: toml::Table = toml::from_str(text)?;
    de::from_table(table).map_err(<toml::de::Error as serde::de::Error>::custom)
}

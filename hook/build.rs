//! Release-only link arguments for `vgpu-hook` (shared with the agent): the
//! hook must leave room for its configuration under the installer's 1 MiB.

include!("../build-support/small_link.rs");

fn main() {
    small_link_args("vgpu-hook");
}

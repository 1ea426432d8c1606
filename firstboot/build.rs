//! Release-only link arguments for `vgpu-firstboot` (shared with the hook).

include!("../build-support/small_link.rs");

fn main() {
    small_link_args("vgpu-firstboot");
}

//! Link arguments for the release hook only, the agent's (see
//! `firstboot/build.rs` for why each is safe): the hook must leave room
//! for its configuration under the installer's 1 MiB. Each changes the
//! file's layout, never its behaviour.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=RUSTC_LINKER");
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    if env("PROFILE") != "release" || env("CARGO_CFG_TARGET_OS") != "linux" {
        return;
    }
    let bin = "cargo::rustc-link-arg-bin=vgpu-hook";
    let flags = env("CARGO_ENCODED_RUSTFLAGS");
    if env("TARGET") == "x86_64-unknown-linux-gnu"
        && env("RUSTC_LINKER").is_empty()
        && !flags.contains("link")
    {
        // Identical code folding (rustc's bundled LLD has it).
        println!("{bin}=-Wl,--icf=all");
        // Relative relocations packed as RELR: still PIE; needs glibc 2.36
        // (Proxmox VE 8 and 9 have it).
        println!("{bin}=-Wl,-z,pack-relative-relocs");
        // No .eh_frame_hdr (about 14 KB): with panic = "abort" nothing
        // unwinds; only a panic's backtrace (already without symbols in a
        // stripped binary) loses its frames.
        println!("{bin}=-Wl,--no-eh-frame-hdr");
    }
}

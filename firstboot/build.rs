//! Link arguments for the release agent only: they keep `vgpu-firstboot`
//! under its 1 MiB budget (see `[profile.release]` in the workspace
//! Cargo.toml) without touching debug or test builds, the builder, or any
//! other binary. Each one changes the file's layout, never its behaviour.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=RUSTC_LINKER");
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    if env("PROFILE") != "release" || env("CARGO_CFG_TARGET_OS") != "linux" {
        return;
    }
    let bin = "cargo::rustc-link-arg-bin=vgpu-firstboot";
    // Not `-no-pie`: it would save about 25 KB of dynamic relocations but
    // take address randomisation from an agent that runs as root.
    // Identical code folding (about 7 KB): rustc links this target with its
    // bundled LLD, which has it. Left out when another linker is configured,
    // as GNU ld does not know the option.
    // Any rustflag naming the linker (`-C linker=`, `-C link-self-contained`,
    // `-C linker-features`, ...) leaves it out too.
    let flags = env("CARGO_ENCODED_RUSTFLAGS");
    if env("TARGET") == "x86_64-unknown-linux-gnu"
        && env("RUSTC_LINKER").is_empty()
        && !flags.contains("link")
    {
        println!("{bin}=-Wl,--icf=all");
        // Relative relocations packed as RELR (about 27 KB): the binary
        // stays PIE with ASLR. The loader needs glibc 2.36 (the binary
        // records GLIBC_ABI_DT_RELR, so an older one refuses it with a
        // clear message); it already needed 2.34, so Proxmox VE 8 (bookworm,
        // 2.36) and 9 (trixie) run it as before.
        println!("{bin}=-Wl,-z,pack-relative-relocs");
        // No .eh_frame_hdr (about 14 KB): with `panic = "abort"` nothing
        // unwinds; the table only lets a panic under RUST_BACKTRACE walk the
        // stack, and in this stripped binary that walk could print bare
        // addresses at best. The panic message itself is printed as before.
        println!("{bin}=-Wl,--no-eh-frame-hdr");
    }
}

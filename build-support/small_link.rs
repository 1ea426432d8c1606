// Shared by `firstboot/build.rs` and `hook/build.rs` (through `include!`):
// release-only link arguments that keep the agent and the first-boot hook
// under the Proxmox installer's 1 MiB (see `[profile.release]` in the
// workspace Cargo.toml) without touching debug or test builds or any other
// binary. Each one changes the file's layout, never its behaviour.

/// Prints the link arguments for the release binary `bin`.
fn small_link_args(bin: &str) {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=../build-support/small_link.rs");
    println!("cargo::rerun-if-changed=../build-support/no_unwind_tables.ld");
    println!("cargo::rerun-if-env-changed=RUSTC_LINKER");
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    if env("PROFILE") != "release" || env("CARGO_CFG_TARGET_OS") != "linux" {
        return;
    }
    let arg = format!("cargo::rustc-link-arg-bin={bin}");
    // Not `-no-pie`: it would save about 25 KB of dynamic relocations but
    // take address randomisation from programs that run as root.
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
        println!("{arg}=-Wl,--icf=all");
        // Relative relocations packed as RELR (about 27 KB): the binary
        // stays PIE with ASLR. The loader needs glibc 2.36 (the binary
        // records GLIBC_ABI_DT_RELR, so an older one refuses it with a
        // clear message); it already needed 2.34, so Proxmox VE 8 (bookworm,
        // 2.36) and 9 (trixie) run it as before.
        println!("{arg}=-Wl,-z,pack-relative-relocs");
        // No .eh_frame_hdr (about 14 KB): with `panic = "abort"` nothing
        // unwinds; the table only lets a panic under RUST_BACKTRACE walk the
        // stack, and in a stripped binary that walk could print bare
        // addresses at best. The panic message itself is printed as before.
        println!("{arg}=-Wl,--no-eh-frame-hdr");
        // LLD's -O2: merges strings that end another string (tail merging
        // in the mergeable string sections): 160 bytes of agent (1,048,648
        // -> 1,048,488 when its command-line table came, issue 15).
        println!("{arg}=-Wl,-O2");
        // No .eh_frame and .gcc_except_table (about 111 KB): the same
        // reasoning, so the tables go too, through a linker script that is
        // INSERTed into LLD's default layout (it only adds a /DISCARD/
        // rule, build-support/no_unwind_tables.ld; it also drops .comment,
        // the compilers' and linker's names, about 180 bytes). A panic still prints
        // its message and aborts; with RUST_BACKTRACE it printed one bare
        // frame before and still does. Measured: agent 1,057,800 -> 944,280
        // bytes, hook 916,504 -> 823,608.
        let dir = env("CARGO_MANIFEST_DIR");
        let script = format!("{dir}/../build-support/no_unwind_tables.ld");
        println!("{arg}=-Wl,-T,{script}");
    }
}

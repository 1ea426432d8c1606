//! The committed man pages and completions (dist/) are what the argument
//! definitions make today, and real tools accept them: man-db renders the
//! pages without a warning, bash, zsh and fish parse the completions, and
//! bash's completes a subcommand.

use std::path::{Path, PathBuf};
use std::process::Command;

use gen_docs::{Generated, generate, stale};

#[test]
fn committed_files_are_up_to_date() {
    let stale = stale(&gen_docs::default_dist(), &generate());
    assert!(
        stale.is_empty(),
        "stale generated files:\n{}",
        stale.join("\n")
    );
}

#[test]
fn stale_names_a_changed_or_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let files = generate();
    write_all(dir.path(), &files);
    assert_eq!(stale(dir.path(), &files), Vec::<String>::new());

    let changed = dir.path().join("man/vgpu-firstboot.8");
    let mut bytes = std::fs::read(&changed).unwrap();
    bytes.extend_from_slice(b".\\\" edited by hand\n");
    std::fs::write(&changed, bytes).unwrap();
    std::fs::remove_file(dir.path().join("completions/fish/vgpu-bake.fish")).unwrap();
    let got = stale(dir.path(), &files);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].contains("man/vgpu-firstboot.8 differs"), "{got:?}");
    assert!(
        got[1].contains("completions/fish/vgpu-bake.fish is missing"),
        "{got:?}"
    );
    for line in &got {
        assert!(
            line.ends_with("run `cargo run -p gen-docs` and commit dist/"),
            "{line}"
        );
    }
}

#[test]
fn generation_is_deterministic_and_complete() {
    let files = generate();
    assert_eq!(files, generate());
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "man/vgpu-bake.1",
            "man/vgpu-firstboot.8",
            "systemd/vgpu-firstboot.service",
            "completions/bash/vgpu-bake",
            "completions/zsh/_vgpu-bake",
            "completions/fish/vgpu-bake.fish",
            "completions/bash/vgpu-firstboot",
            "completions/zsh/_vgpu-firstboot",
            "completions/fish/vgpu-firstboot.fish",
        ]
    );
}

#[test]
fn man_renders_each_page_without_warnings_showing_every_command_and_option() {
    let man = tool("man", "man-db");
    let dir = tempfile::tempdir().unwrap();
    let files = generate();
    write_all(dir.path(), &files);
    for (page, cmd) in [
        ("man/vgpu-bake.1", gen_docs::bake_command()),
        ("man/vgpu-firstboot.8", gen_docs::firstboot::command()),
    ] {
        let out = Command::new(&man)
            .args(["--warnings", "-l"])
            .arg(dir.path().join(page))
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "man -l {page}: {:?} {stderr}",
            out.status
        );
        assert_eq!(stderr, "", "man --warnings -l {page} warned");
        // Words may be hyphenated at the line ends: compare without them.
        let text = String::from_utf8_lossy(&out.stdout).replace("‐\n", "");
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for sub in cmd.get_subcommands() {
            let title = format!("{} {}", cmd.get_name(), sub.get_name());
            assert!(text.contains(&title), "{page} does not show `{title}`");
            for arg in sub.get_arguments() {
                if let Some(long) = arg.get_long().filter(|_| !arg.is_global_set()) {
                    assert!(
                        text.contains(&format!("--{long}")),
                        "{page}: no --{long} ({title})"
                    );
                }
            }
        }
        if page.ends_with(".8") {
            for section in ["EXIT STATUS", "FILES", "/var/lib/vgpu-firstboot/state.toml"] {
                assert!(text.contains(section), "{page} has no {section}");
            }
        }
    }
}

#[test]
fn bash_parses_the_completions_and_completes_a_subcommand() {
    let bash = tool("bash", "bash");
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path(), &generate());
    for (name, word, want) in [
        ("vgpu-bake", "ba", "bake"),
        ("vgpu-firstboot", "st", "status"),
    ] {
        let file = dir.path().join("completions/bash").join(name);
        let out = Command::new(&bash).arg("-n").arg(&file).output().unwrap();
        assert!(
            out.status.success(),
            "bash -n {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The function the file registers for NAME, called as bash calls it
        // for `NAME WORD<TAB>`.
        let script = format!(
            "source {file:?}\n\
             f=$(complete -p {name} | sed -n 's/.* -F \\([^ ]*\\) .*/\\1/p')\n\
             [ -n \"$f\" ] || {{ echo 'no complete -F for {name}' >&2; exit 1; }}\n\
             COMP_WORDS=({name} {word}); COMP_CWORD=1; COMP_LINE='{name} {word}'; COMP_POINT=${{#COMP_LINE}}\n\
             \"$f\" {name} {word} {name}\n\
             printf '%s\\n' \"${{COMPREPLY[@]}}\"\n"
        );
        let out = Command::new(&bash).arg("-c").arg(&script).output().unwrap();
        let offered = String::from_utf8_lossy(&out.stdout);
        assert!(
            offered.lines().any(|l| l.trim() == want),
            "`{name} {word}<TAB>` does not offer {want}: {offered:?} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn zsh_and_fish_parse_the_completions() {
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path(), &generate());
    for (shell, package, flag, files) in [
        (
            "zsh",
            "zsh",
            "-n",
            ["zsh/_vgpu-bake", "zsh/_vgpu-firstboot"],
        ),
        (
            "fish",
            "fish",
            "--no-execute",
            ["fish/vgpu-bake.fish", "fish/vgpu-firstboot.fish"],
        ),
    ] {
        let exe = tool(shell, package);
        for f in files {
            let out = Command::new(&exe)
                .arg(flag)
                .arg(dir.path().join("completions").join(f))
                .output()
                .unwrap();
            assert!(
                out.status.success() && out.stderr.is_empty(),
                "{shell} {flag} {f}: {:?} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

fn write_all(dir: &Path, files: &[Generated]) {
    for f in files {
        let path = dir.join(&f.path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, &f.bytes).unwrap();
    }
}

/// `name` on PATH; a missing tool fails the test saying what to install.
fn tool(name: &str, package: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{name}` is not installed: apt-get install {package} (.ci/run installs it)")
        })
}

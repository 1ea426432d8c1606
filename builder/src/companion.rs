//! Where `vgpu-bake` finds the programs it puts into what it makes: the
//! agent it bakes into every bundle and the first-boot hook's template.
//!
//! Tried in this order, the first file that exists wins:
//! 1. the path given on the command line (`--agent`, `--hook-template`);
//! 2. the packaged place, `../lib/vgpu-bake/NAME` from the directory of the
//!    running `vgpu-bake` (`/usr/lib/vgpu-bake/` for `/usr/bin/vgpu-bake`,
//!    `/usr/local/lib/vgpu-bake/` for a copy in `/usr/local/bin`);
//! 3. cargo's build directories and the folder `vgpu-bake` sits in: for the
//!    hook `../hook/` (its size-tuned profile) before the folder itself; then
//!    `../release/`. The folder itself is skipped when it is cargo's `debug`
//!    directory, whose agent is a debug build far over the 1 MiB budget.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// A program `vgpu-bake` ships inside its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Companion {
    /// `vgpu-firstboot`, baked into every bundle.
    Agent,
    /// `vgpu-hook`, the template `vgpu-bake hook` and `fleet` append to.
    Hook,
}

/// No candidate exists.
#[derive(Debug, Error)]
#[error("no {name} found (looked in {looked}): {advice}")]
pub struct NotFound {
    /// The program's name.
    pub name: &'static str,
    /// The places looked in, in order.
    pub looked: String,
    /// What to do.
    pub advice: &'static str,
}

impl Companion {
    /// The program's file name.
    pub fn file_name(self) -> &'static str {
        match self {
            Companion::Agent => "vgpu-firstboot",
            Companion::Hook => "vgpu-hook",
        }
    }

    fn advice(self) -> &'static str {
        match self {
            Companion::Agent => {
                "install the vgpu-bake package (it ships /usr/lib/vgpu-bake/vgpu-firstboot), build it with `cargo build --release -p vgpu-firstboot`, or pass --agent FILE"
            }
            Companion::Hook => {
                "install the vgpu-bake package (it ships /usr/lib/vgpu-bake/vgpu-hook), build it with `cargo build --profile hook -p vgpu-hook`, or pass --hook-template FILE"
            }
        }
    }

    /// The places tried when no path is given, in order, for a `vgpu-bake`
    /// whose directory is `dir`. Pure: nothing is looked at but `dir`'s
    /// name and whether `dir/../CACHEDIR.TAG` exists (cargo's target dir).
    pub fn candidates(self, dir: &Path) -> Vec<PathBuf> {
        let name = self.file_name();
        let mut out = vec![dir.join("../lib/vgpu-bake").join(name)];
        if self == Companion::Hook {
            out.push(dir.join("../hook").join(name));
        }
        if !is_cargo_debug_dir(dir) {
            out.push(dir.join(name));
        }
        out.push(dir.join("../release").join(name));
        out
    }

    /// The program to use: `explicit` if given (used as it is; reading it
    /// reports a missing file), else the first candidate that is a file.
    pub fn find(self, explicit: Option<&Path>, exe: &Path) -> Result<PathBuf, NotFound> {
        if let Some(p) = explicit {
            return Ok(p.to_owned());
        }
        let dir = exe.parent().unwrap_or(Path::new("."));
        let candidates = self.candidates(dir);
        if let Some(found) = candidates.iter().find(|c| c.is_file()) {
            return Ok(found.clone());
        }
        Err(NotFound {
            name: self.file_name(),
            looked: candidates
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            advice: self.advice(),
        })
    }
}

/// Cargo's `target/debug`: named `debug`, its parent tagged by cargo.
fn is_cargo_debug_dir(dir: &Path) -> bool {
    dir.file_name().is_some_and(|n| n == "debug") && dir.join("../CACHEDIR.TAG").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    #[test]
    fn a_copy_anywhere_finds_the_agent_next_to_itself() {
        let t = tempfile::tempdir().unwrap();
        let exe = t.path().join("tools/vgpu-bake");
        touch(&exe);
        touch(&t.path().join("tools/vgpu-firstboot"));
        let found = Companion::Agent.find(None, &exe).unwrap();
        assert_eq!(found, t.path().join("tools/vgpu-firstboot"));
    }

    #[test]
    fn the_packaged_place_comes_before_next_to_itself() {
        let t = tempfile::tempdir().unwrap();
        let exe = t.path().join("usr/bin/vgpu-bake");
        touch(&exe);
        touch(&t.path().join("usr/bin/vgpu-firstboot"));
        touch(&t.path().join("usr/lib/vgpu-bake/vgpu-firstboot"));
        touch(&t.path().join("usr/lib/vgpu-bake/vgpu-hook"));
        let found = Companion::Agent.find(None, &exe).unwrap();
        assert_eq!(
            found,
            t.path().join("usr/bin/../lib/vgpu-bake/vgpu-firstboot")
        );
        let hook = Companion::Hook.find(None, &exe).unwrap();
        assert_eq!(hook, t.path().join("usr/bin/../lib/vgpu-bake/vgpu-hook"));
    }

    #[test]
    fn an_explicit_path_wins_even_when_a_packaged_one_exists() {
        let t = tempfile::tempdir().unwrap();
        let exe = t.path().join("usr/bin/vgpu-bake");
        touch(&t.path().join("usr/lib/vgpu-bake/vgpu-firstboot"));
        let mine = t.path().join("mine");
        assert_eq!(Companion::Agent.find(Some(&mine), &exe).unwrap(), mine);
    }

    #[test]
    fn cargo_debug_builds_take_the_release_agent_not_their_own() {
        let t = tempfile::tempdir().unwrap();
        touch(&t.path().join("target/CACHEDIR.TAG"));
        let exe = t.path().join("target/debug/vgpu-bake");
        touch(&exe);
        touch(&t.path().join("target/debug/vgpu-firstboot"));
        let err = Companion::Agent.find(None, &exe).unwrap_err().to_string();
        assert!(err.contains("no vgpu-firstboot found"), "{err}");
        assert!(!err.contains("target/debug/vgpu-firstboot,"), "{err}");
        assert!(err.contains("or pass --agent FILE"), "{err}");
        touch(&t.path().join("target/release/vgpu-firstboot"));
        let found = Companion::Agent.find(None, &exe).unwrap();
        assert_eq!(
            found,
            t.path().join("target/debug/../release/vgpu-firstboot")
        );
    }

    #[test]
    fn the_hook_prefers_its_size_tuned_profile_over_the_release_build() {
        let t = tempfile::tempdir().unwrap();
        touch(&t.path().join("target/CACHEDIR.TAG"));
        let exe = t.path().join("target/release/vgpu-bake");
        touch(&t.path().join("target/release/vgpu-hook"));
        touch(&t.path().join("target/hook/vgpu-hook"));
        let found = Companion::Hook.find(None, &exe).unwrap();
        assert_eq!(found, t.path().join("target/release/../hook/vgpu-hook"));
    }

    #[test]
    fn nothing_found_lists_every_place_in_order() {
        let t = tempfile::tempdir().unwrap();
        let exe = t.path().join("bin/vgpu-bake");
        let err = Companion::Hook.find(None, &exe).unwrap_err();
        let d = t.path().join("bin");
        let want = [
            d.join("../lib/vgpu-bake/vgpu-hook"),
            d.join("../hook/vgpu-hook"),
            d.join("vgpu-hook"),
            d.join("../release/vgpu-hook"),
        ]
        .map(|p| p.display().to_string())
        .join(", ");
        assert_eq!(err.looked, want);
    }
}

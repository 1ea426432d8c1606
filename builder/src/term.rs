//! The terminal, decided in one place: whether colour is used, and how much
//! `vgpu-bake` says (`-q`, `-v`).
//!
//! Colour only on a terminal, and never while `NO_COLOR` is set to a
//! non-empty value (<https://no-color.org>). clap's help and error styling
//! (`main` sets its `ColorChoice` from [`clap_colour`]) and the progress
//! bars of large files (`crate::progress`, drawn on a terminal only) are
//! the colour `vgpu-bake` has; fetch's download bar has none.

use std::ffi::OsStr;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU8, Ordering};

/// How much the commands say beyond their results and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// `-q`: errors and warnings only on stderr; on stdout only the JSON
    /// document (with `--json`) or the report a query command exists to
    /// print (`plan`, `inspect`, `gpus`, `guest-drivers`, `answer`, `check`).
    Quiet,
    /// The default: results on stdout, progress and notes on stderr.
    Normal,
    /// `-v`: also the writer's phase timings, which cache answered (driver
    /// cache, frame cache) and how each payload file was vouched for.
    Verbose,
}

static VERBOSITY: AtomicU8 = AtomicU8::new(1);

/// Sets the process's verbosity (once, from the command line).
pub fn set_verbosity(v: Verbosity) {
    let n = match v {
        Verbosity::Quiet => 0,
        Verbosity::Normal => 1,
        Verbosity::Verbose => 2,
    };
    VERBOSITY.store(n, Ordering::Relaxed);
}

/// The process's verbosity.
pub fn verbosity() -> Verbosity {
    match VERBOSITY.load(Ordering::Relaxed) {
        0 => Verbosity::Quiet,
        1 => Verbosity::Normal,
        _ => Verbosity::Verbose,
    }
}

/// `-q` was given.
pub fn quiet() -> bool {
    verbosity() == Verbosity::Quiet
}

/// `-v` was given.
pub fn verbose() -> bool {
    verbosity() == Verbosity::Verbose
}

/// A line on stderr unless `-q`: progress, notes, summaries.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {
        if !$crate::term::quiet() {
            ::vgpu_rootfs::errln!($($arg)*);
        }
    };
}

/// A line on stderr only with `-v`.
#[macro_export]
macro_rules! detail {
    ($($arg:tt)*) => {
        if $crate::term::verbose() {
            ::vgpu_rootfs::errln!($($arg)*);
        }
    };
}

/// A human-readable result line on stdout unless `-q` (a command's JSON
/// document is printed with `outln!` whatever the verbosity).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        if !$crate::term::quiet() {
            ::vgpu_rootfs::outln!($($arg)*);
        }
    };
}

/// Which standard stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// The rule (pure): colour on a terminal while `NO_COLOR` is unset or empty.
pub fn colour_allowed(no_color: Option<&OsStr>, is_terminal: bool) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// Whether `stream` may carry colour now.
pub fn colour_enabled(stream: Stream) -> bool {
    let tty = match stream {
        Stream::Stdout => std::io::stdout().is_terminal(),
        Stream::Stderr => std::io::stderr().is_terminal(),
    };
    colour_allowed(std::env::var_os("NO_COLOR").as_deref(), tty)
}

/// clap's colour choice: its help goes to stdout and its errors to
/// stderr, so colour only when both may carry it (`Always`, so clap's own
/// environment rules such as `CLICOLOR_FORCE` cannot colour a pipe).
pub fn clap_colour() -> clap::ColorChoice {
    if colour_enabled(Stream::Stdout) && colour_enabled(Stream::Stderr) {
        clap::ColorChoice::Always
    } else {
        clap::ColorChoice::Never
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_needs_a_terminal_and_no_no_color() {
        assert!(colour_allowed(None, true));
        assert!(colour_allowed(Some(OsStr::new("")), true));
        assert!(!colour_allowed(Some(OsStr::new("1")), true));
        assert!(!colour_allowed(Some(OsStr::new("0")), true));
        assert!(!colour_allowed(None, false));
        assert!(!colour_allowed(Some(OsStr::new("")), false));
    }
}

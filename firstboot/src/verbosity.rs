//! `-q` / `-v`: one process-wide level, set once by `main` from the global
//! flags before the command runs, read where output is only informational.
//! An atomic byte, so it costs the agent next to nothing.

use std::sync::atomic::{AtomicU8, Ordering};

/// How much the agent says besides what the command is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// `-q`: results, warnings and errors only.
    Quiet = 0,
    /// The default.
    Normal = 1,
    /// `-v`: also the output of commands that succeeded.
    Verbose = 2,
}

impl Verbosity {
    /// The level `-q` and `-v` ask for (the last one given wins, as the
    /// parser reports it): `quiet` and `verbose` both false is
    /// [`Verbosity::Normal`].
    pub fn from_flags(quiet: bool, verbose: bool) -> Self {
        match (quiet, verbose) {
            (true, _) => Verbosity::Quiet,
            (false, true) => Verbosity::Verbose,
            (false, false) => Verbosity::Normal,
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Verbosity::Normal as u8);

/// Sets the level for the rest of the process (`main`, once).
pub fn set(level: Verbosity) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// The level `main` set ([`Verbosity::Normal`] until then).
pub fn get() -> Verbosity {
    match LEVEL.load(Ordering::Relaxed) {
        0 => Verbosity::Quiet,
        1 => Verbosity::Normal,
        _ => Verbosity::Verbose,
    }
}

/// `outln!` for information a script does not need: nothing under `-q`.
#[macro_export]
macro_rules! infoln {
    ($($t:tt)*) => {
        if $crate::verbosity::get() > $crate::verbosity::Verbosity::Quiet {
            outln!($($t)*)
        }
    };
}

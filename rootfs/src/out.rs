//! Console output that never panics, for both programs. `println!` panics
//! when stdout is closed (a pipe whose reader left, `| head -c0`) and
//! `eprintln!` when stderr is (the journal's stream gone); these lose the
//! text instead, and the command goes on to exit with its usual code. A
//! journal line must never abort one of the agent's steps.

use std::fmt;
use std::io::{self, Write as _};

/// `print!` that ignores a closed stdout.
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => { $crate::out::stdout(format_args!($($t)*)) };
}

/// `println!` that ignores a closed stdout.
#[macro_export]
macro_rules! outln {
    ($($t:tt)*) => { $crate::out::stdout(format_args!("{}\n", format_args!($($t)*))) };
}

/// `eprintln!` that ignores a closed stderr.
#[macro_export]
macro_rules! errln {
    ($($t:tt)*) => { $crate::out::stderr(format_args!("{}\n", format_args!($($t)*))) };
}

/// Writes `args` to stdout; a failed write is ignored.
pub fn stdout(args: fmt::Arguments<'_>) {
    let _ = io::stdout().lock().write_fmt(args);
}

/// Writes `args` to stderr; a failed write is ignored.
pub fn stderr(args: fmt::Arguments<'_>) {
    let _ = io::stderr().lock().write_fmt(args);
}

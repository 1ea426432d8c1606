//! Progress bars for the long byte-bound steps: hashing a large driver
//! (fetch's import and cache check), compressing it into a bundle, and
//! installing a large bundle. Downloads have their own reporter
//! (`fetch/progress.rs`: plain lines off a terminal too).
//!
//! A bar is drawn only on a terminal (stderr) and only for
//! [`LARGE`] files or more, so small bakes and anything piped or logged
//! print exactly what they did before. Otherwise [`Progress`] is a no-op
//! that costs one branch per call. Callers update it per block (4 MiB),
//! never per small write. It clears itself when the last clone is dropped.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};

/// Files below this many bytes get no bar.
pub const LARGE: u64 = 64 << 20;

/// A byte counter with a bar behind it, or nothing. Cheap to clone (the
/// clones share one bar), safe to update from any thread.
#[derive(Debug, Clone, Default)]
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// No bar.
    pub fn hidden() -> Self {
        Self(None)
    }

    /// A bar on stderr for `total` bytes, labelled `what` (e.g.
    /// "hashing NAME"), when stderr is a terminal and `total` is
    /// [`LARGE`] or more; otherwise [`Self::hidden`].
    pub fn bytes(what: &str, total: u64) -> Self {
        if SILENT.load(Ordering::Relaxed) || !shown(total, std::io::stderr().is_terminal()) {
            return Self::hidden();
        }
        let p = Self::on(ProgressDrawTarget::hidden(), what, total, colour_allowed());
        if let Some(bar) = &p.0 {
            // One draw target for the process: bakes of several bundles at
            // once stack their bars instead of overwriting each other.
            static STDERR: OnceLock<MultiProgress> = OnceLock::new();
            STDERR
                .get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
                .add(bar.clone());
        }
        p
    }

    /// A bar drawn on `target`, whatever the size (the decision is the
    /// caller's; indicatif's stderr target also hides itself off a terminal).
    fn on(target: ProgressDrawTarget, what: &str, total: u64, colour: bool) -> Self {
        let bar = ProgressBar::with_draw_target(Some(total), target)
            .with_finish(ProgressFinish::AndClear)
            .with_message(what.to_owned());
        let template = if colour {
            "{msg} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
        } else {
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        Self(Some(bar))
    }

    /// The bar as a callback counting bytes (none when hidden), for code
    /// that must not link the bars itself (`install`, which the hook
    /// shares: [`crate::inspect::ReadWatch`]).
    pub fn watcher(self) -> Option<Arc<dyn Fn(u64) + Send + Sync>> {
        let bar = self.0?;
        Some(Arc::new(move |n| bar.inc(n)))
    }

    /// `n` more bytes done.
    pub fn add(&self, n: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(n);
        }
    }

    /// Whether a bar is behind this (for callers that would do extra work
    /// only for one).
    pub fn is_shown(&self) -> bool {
        self.0.is_some()
    }

    /// Bytes counted so far (0 when hidden).
    pub fn position(&self) -> u64 {
        self.0.as_ref().map_or(0, ProgressBar::position)
    }
}

/// Set by [`silence`].
static SILENT: AtomicBool = AtomicBool::new(false);

/// No bar from here on, for this process (`--quiet`, fetch's
/// [`crate::fetch::ProgressMode::Quiet`]).
pub fn silence() {
    SILENT.store(true, Ordering::Relaxed);
}

/// The one rule: a bar only on a terminal, and only for a large file.
fn shown(total: u64, terminal: bool) -> bool {
    terminal && total >= LARGE
}

/// The project's colour rule ([`crate::term`]): a terminal, and `NO_COLOR`
/// unset or empty. (The bar itself is drawn either way on a terminal, only
/// its colour codes go.)
fn colour_allowed() -> bool {
    crate::term::colour_enabled(crate::term::Stream::Stderr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_only_on_a_terminal_for_large_files() {
        assert!(shown(LARGE, true));
        assert!(shown(500 << 20, true));
        assert!(!shown(LARGE - 1, true));
        assert!(!shown(500 << 20, false));
        assert!(!Progress::hidden().is_shown());
    }

    /// The counter adds up blocks from several threads, like the
    /// compression workers do.
    #[test]
    fn counts_bytes_from_many_threads() {
        let p = Progress::on(ProgressDrawTarget::hidden(), "test", 100 << 20, false);
        assert!(p.is_shown());
        std::thread::scope(|s| {
            for _ in 0..4 {
                let p = p.clone();
                s.spawn(move || {
                    for _ in 0..5 {
                        p.add(4 << 20);
                    }
                });
            }
        });
        p.add(123);
        assert_eq!(p.position(), 80 * (1 << 20) + 123);
        // A hidden one counts nothing and costs nothing.
        let h = Progress::hidden();
        h.add(10);
        assert_eq!(h.position(), 0);
    }
}

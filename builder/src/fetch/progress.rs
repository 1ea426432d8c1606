//! Download progress and notices on stderr: an indicatif bar on a terminal,
//! a few plain lines otherwise (logs and CI must not get thousands of them).

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How [`crate::fetch::fetch`] reports progress on stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// Plain lines: start, every quarter, end, and notices.
    Plain,
    /// Nothing at all.
    Quiet,
}

/// Plain mode prints one line per this many bytes when the size is unknown.
const PLAIN_STEP_UNKNOWN: u64 = 128 << 20;

#[derive(Debug)]
enum Sink {
    Bar(ProgressBar),
    Plain,
    Quiet,
}

/// Progress of one file's download, across its attempts.
#[derive(Debug)]
pub(super) struct Reporter {
    sink: Sink,
    name: String,
    total: Option<u64>,
    /// Plain mode: the next position worth a line.
    next_mark: u64,
    /// Position and time when the current response started.
    start: (u64, Instant),
}

impl Reporter {
    pub(super) fn new(mode: ProgressMode, name: &str) -> Self {
        let sink = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => Sink::Bar(
                ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            ),
            ProgressMode::Auto | ProgressMode::Plain => Sink::Plain,
            ProgressMode::Quiet => Sink::Quiet,
        };
        Self {
            sink,
            name: name.to_owned(),
            total: None,
            next_mark: 0,
            start: (0, Instant::now()),
        }
    }

    /// A one-line notice (retry, backup kept, ...).
    pub(super) fn note(&self, msg: &str) {
        match &self.sink {
            Sink::Bar(bar) => bar.println(msg),
            Sink::Plain => errln!("{msg}"),
            Sink::Quiet => {}
        }
    }

    /// A response started delivering bytes from `offset` of `total`.
    pub(super) fn begin(&mut self, url: &str, offset: u64, total: Option<u64>) {
        self.total = total;
        self.start = (offset, Instant::now());
        self.next_mark = next_mark(offset, total);
        let size = total.map_or_else(|| "size unknown".to_owned(), |t| HumanBytes(t).to_string());
        match &self.sink {
            Sink::Bar(bar) => {
                let template = if total.is_some() {
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
                } else {
                    "{msg} {spinner} {bytes} {bytes_per_sec}"
                };
                if let Ok(style) = ProgressStyle::with_template(template) {
                    bar.set_style(style.progress_chars("=> "));
                }
                if let Some(t) = total {
                    bar.set_length(t);
                }
                bar.set_message(self.name.clone());
                bar.set_position(offset);
                bar.reset_eta();
            }
            Sink::Plain if offset > 0 => errln!(
                "resuming {} at {} of {size} from {url}",
                self.name,
                HumanBytes(offset)
            ),
            Sink::Plain => errln!("downloading {} ({size}) from {url}", self.name),
            Sink::Quiet => {}
        }
    }

    /// `pos` bytes of the file are now on disk.
    pub(super) fn advance(&mut self, pos: u64) {
        match &self.sink {
            Sink::Bar(bar) => bar.set_position(pos),
            Sink::Plain if pos >= self.next_mark => {
                match self.total {
                    Some(t) if t > 0 => errln!(
                        "  {}: {}% ({} of {})",
                        self.name,
                        pos.saturating_mul(100) / t,
                        HumanBytes(pos),
                        HumanBytes(t)
                    ),
                    _ => errln!("  {}: {} so far", self.name, HumanBytes(pos)),
                }
                self.next_mark = next_mark(pos, self.total);
            }
            Sink::Plain | Sink::Quiet => {}
        }
    }

    /// The download is complete (`pos` bytes).
    pub(super) fn finish(&mut self, pos: u64) {
        let secs = self.start.1.elapsed().as_secs_f64();
        let fetched = pos.saturating_sub(self.start.0);
        match &self.sink {
            Sink::Bar(bar) => bar.finish_and_clear(),
            Sink::Plain => errln!(
                "  {}: done, {} in {secs:.1} s",
                self.name,
                HumanBytes(fetched)
            ),
            Sink::Quiet => {}
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Sink::Bar(bar) = &self.sink {
            bar.finish_and_clear();
        }
    }
}

/// Plain mode's next line after `pos`: the next quarter of `total` (the
/// final 100% is left to [`Reporter::finish`]), or the next fixed step.
fn next_mark(pos: u64, total: Option<u64>) -> u64 {
    match total {
        Some(t) if t > 0 => {
            let quarter = (t / 4).max(1);
            let next = (pos / quarter + 1).saturating_mul(quarter);
            if next >= t { u64::MAX } else { next }
        }
        _ => (pos / PLAIN_STEP_UNKNOWN + 1).saturating_mul(PLAIN_STEP_UNKNOWN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain mode prints a handful of lines whatever the chunk size.
    #[test]
    fn plain_marks_are_few() {
        let total = 500_000_000u64;
        let mut mark = next_mark(0, Some(total));
        let mut lines = 0;
        for pos in (0..=total).step_by(64 * 1024) {
            if pos >= mark {
                lines += 1;
                mark = next_mark(pos, Some(total));
            }
        }
        assert_eq!(lines, 3, "25%, 50%, 75%");
        assert_eq!(next_mark(0, Some(3)), 1);
        assert_eq!(next_mark(2, Some(3)), u64::MAX);
        assert_eq!(next_mark(5, None), PLAIN_STEP_UNKNOWN);
        assert_eq!(next_mark(0, Some(0)), PLAIN_STEP_UNKNOWN);
    }
}

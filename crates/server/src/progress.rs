//! A one-line progress bar on stderr for long commands (export, import), drawn only when stderr
//! is a terminal, so logs and pipes never see carriage returns.
//!
//! Hand-written rather than `indicatif`: one redrawn line with a bar, a count and a rate is all
//! these commands show, and it is a few dozen lines without a dependency tree behind it.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Redraw at most this often: a terminal is slow, and an export may pass thousands of
/// messages a second.
const REDRAW_EVERY: Duration = Duration::from_millis(100);
const BAR_WIDTH: usize = 30;

pub struct ProgressBar {
    enabled: bool,
    started: Instant,
    last_drawn: Option<Instant>,
    drawn: bool,
}

impl ProgressBar {
    /// A bar that draws only if stderr is a terminal.
    pub fn on_terminal() -> Self {
        Self {
            enabled: std::io::stderr().is_terminal(),
            started: Instant::now(),
            last_drawn: None,
            drawn: false,
        }
    }

    /// Show `done` of `total` items (`unit`, e.g. "messages") and `bytes` so far.
    pub fn update(&mut self, done: u64, total: u64, unit: &str, bytes: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let finished = total > 0 && done >= total;
        if !finished
            && self
                .last_drawn
                .is_some_and(|last| now.duration_since(last) < REDRAW_EVERY)
        {
            return;
        }
        self.last_drawn = Some(now);
        self.drawn = true;
        let line = render(done, total, unit, bytes, now.duration_since(self.started));
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line}\x1b[K");
        let _ = err.flush();
    }

    /// End the bar's line so the next message starts on a fresh one.
    pub fn finish(&mut self) {
        if self.enabled && self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}

/// `[#########.....................]  30% 300/1000 messages, 12.0 MB, 4.1 MB/s`
fn render(done: u64, total: u64, unit: &str, bytes: u64, elapsed: Duration) -> String {
    let megabytes = bytes as f64 / 1e6;
    let rate = megabytes / elapsed.as_secs_f64().max(0.001);
    if total == 0 {
        return format!("{done} {unit}, {megabytes:.1} MB, {rate:.1} MB/s");
    }
    let fraction = (done as f64 / total as f64).clamp(0.0, 1.0);
    let filled = (fraction * BAR_WIDTH as f64).round() as usize;
    format!(
        "[{}{}] {:3.0}% {done}/{total} {unit}, {megabytes:.1} MB, {rate:.1} MB/s",
        "#".repeat(filled),
        ".".repeat(BAR_WIDTH - filled),
        fraction * 100.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_bar_count_and_rate() {
        let line = render(300, 1000, "messages", 12_000_000, Duration::from_secs(3));
        assert_eq!(
            line,
            "[#########.....................]  30% 300/1000 messages, 12.0 MB, 4.0 MB/s"
        );
        let done = render(5, 5, "messages", 0, Duration::from_secs(1));
        assert!(done.starts_with(&format!("[{}] 100%", "#".repeat(BAR_WIDTH))));
        assert_eq!(
            render(7, 0, "messages", 1_000_000, Duration::from_secs(1)),
            "7 messages, 1.0 MB, 1.0 MB/s"
        );
    }
}

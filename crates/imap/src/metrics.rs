//! Hooks for metrics: the binary implements [`Metrics`] (e.g. with Prometheus counters and a
//! latency histogram) and passes it in [`crate::session::SessionConfig`]. Nothing here is ever
//! given a password, key or message content.

use std::time::Duration;

/// Observations the IMAP server reports.
pub trait Metrics: Send + Sync + 'static {
    /// A command finished: its name (`"UID FETCH"`), outcome and duration.
    fn command(&self, name: &'static str, outcome: Outcome, elapsed: Duration);
    /// A password check finished.
    fn login(&self, succeeded: bool);
    /// A connection was accepted (`true`) or ended (`false`).
    fn connection(&self, opened: bool);
}

/// How a command completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    No,
    Bad,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::No => "no",
            Outcome::Bad => "bad",
        }
    }
}

/// The default: observe nothing.
#[derive(Debug, Default)]
pub struct NoMetrics;

impl Metrics for NoMetrics {
    fn command(&self, _: &'static str, _: Outcome, _: Duration) {}
    fn login(&self, _: bool) {}
    fn connection(&self, _: bool) {}
}

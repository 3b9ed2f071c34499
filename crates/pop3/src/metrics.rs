//! Hooks for metrics: the binary implements [`Metrics`] (e.g. with Prometheus counters) and
//! passes it in [`crate::session::SessionConfig`], as it does for IMAP. Nothing here is ever
//! given a user name, password or message content.

use std::time::Duration;

/// Observations the POP3 server reports.
pub trait Metrics: Send + Sync + 'static {
    /// A command line was answered: the command's name (`"RETR"`, or `"UNKNOWN"` for a line
    /// that did not parse), whether the answer was `+OK` (or a SASL continuation), and how long
    /// it took.
    fn command(&self, name: &'static str, ok: bool, elapsed: Duration);
    /// A password check finished.
    fn login(&self, succeeded: bool);
    /// A connection was accepted (`true`) or ended (`false`).
    fn connection(&self, opened: bool);
}

/// The default: observe nothing.
#[derive(Debug, Default)]
pub struct NoMetrics;

impl Metrics for NoMetrics {
    fn command(&self, _: &'static str, _: bool, _: Duration) {}
    fn login(&self, _: bool) {}
    fn connection(&self, _: bool) {}
}

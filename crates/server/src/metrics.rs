//! Prometheus metrics: counters and a latency histogram fed by the protocol servers' hooks,
//! served as text on the metrics listener (`GET /metrics`). Labels are command names and
//! outcomes only: never an address, a password or message content.

use sealmail_imap::metrics::{Metrics, Outcome};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Upper bounds (seconds) of the latency histogram's buckets.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Everything observed since start.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    connections_total: AtomicU64,
    connections_open: AtomicI64,
    logins_ok: AtomicU64,
    logins_failed: AtomicU64,
    /// Scheduled backups that stored a version or found the mailbox unchanged, and failures.
    backups_ok: AtomicU64,
    backups_failed: AtomicU64,
    /// Per (command, outcome): count. A std mutex: held for a map update, never across await.
    commands: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    latency: Mutex<Histogram>,
    pop3_connections_total: AtomicU64,
    pop3_connections_open: AtomicI64,
    /// POP3 commands per (command, outcome), as `commands` is for IMAP.
    pop3_commands: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// The data directory whose queues are measured at each scrape.
    queues: OnceLock<PathBuf>,
    /// The running relay, for its STARTTLS failure count.
    outbound: OnceLock<Arc<sealmail_smtp::OutboundQueue>>,
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics for ServerMetrics {
    fn command(&self, name: &'static str, outcome: Outcome, elapsed: Duration) {
        *self
            .commands
            .lock()
            .unwrap()
            .entry((name, outcome.as_str()))
            .or_default() += 1;
        let secs = elapsed.as_secs_f64();
        let mut latency = self.latency.lock().unwrap();
        latency.count += 1;
        latency.sum += secs;
        for (bound, bucket) in BUCKETS.iter().zip(latency.buckets.iter_mut()) {
            if secs <= *bound {
                *bucket += 1;
            }
        }
    }

    fn login(&self, succeeded: bool) {
        let counter = if succeeded {
            &self.logins_ok
        } else {
            &self.logins_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn connection(&self, opened: bool) {
        if opened {
            self.connections_total.fetch_add(1, Ordering::Relaxed);
            self.connections_open.fetch_add(1, Ordering::Relaxed);
        } else {
            self.connections_open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// POP3 feeds the same password-check counters as IMAP, and its own connection and command
/// counters.
impl sealmail_pop3::metrics::Metrics for ServerMetrics {
    fn command(&self, name: &'static str, ok: bool, _elapsed: Duration) {
        let outcome = if ok { "ok" } else { "err" };
        *self
            .pop3_commands
            .lock()
            .unwrap()
            .entry((name, outcome))
            .or_default() += 1;
    }

    fn login(&self, succeeded: bool) {
        Metrics::login(self, succeeded);
    }

    fn connection(&self, opened: bool) {
        if opened {
            self.pop3_connections_total.fetch_add(1, Ordering::Relaxed);
            self.pop3_connections_open.fetch_add(1, Ordering::Relaxed);
        } else {
            self.pop3_connections_open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl ServerMetrics {
    /// Report the sizes of the sealed and outbound queues of `data_dir` at each scrape.
    pub fn watch_queues(&self, data_dir: &Path) {
        let _ = self.queues.set(data_dir.to_path_buf());
    }

    /// Report the relay's STARTTLS failures.
    pub fn watch_outbound(&self, queue: Arc<sealmail_smtp::OutboundQueue>) {
        let _ = self.outbound.set(queue);
    }

    /// Count one scheduled backup run.
    pub fn backup(&self, succeeded: bool) {
        let counter = if succeeded {
            &self.backups_ok
        } else {
            &self.backups_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        gauge(
            &mut out,
            "sealmail_imap_connections_total",
            "IMAP connections accepted.",
            "counter",
            self.connections_total.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut out,
            "sealmail_imap_connections_open",
            "IMAP connections open now.",
            "gauge",
            self.connections_open.load(Ordering::Relaxed).to_string(),
        );
        let _ = writeln!(
            out,
            "# HELP sealmail_logins_total Password checks by result."
        );
        let _ = writeln!(out, "# TYPE sealmail_logins_total counter");
        let _ = writeln!(
            out,
            "sealmail_logins_total{{result=\"ok\"}} {}",
            self.logins_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "sealmail_logins_total{{result=\"failed\"}} {}",
            self.logins_failed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP sealmail_backups_total Scheduled mailbox backups by result (ok: stored or \
             unchanged)."
        );
        let _ = writeln!(out, "# TYPE sealmail_backups_total counter");
        for (result, counter) in [("ok", &self.backups_ok), ("failed", &self.backups_failed)] {
            let _ = writeln!(
                out,
                "sealmail_backups_total{{result=\"{result}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP sealmail_imap_commands_total IMAP commands by name and outcome."
        );
        let _ = writeln!(out, "# TYPE sealmail_imap_commands_total counter");
        for ((name, outcome), count) in self.commands.lock().unwrap().iter() {
            let _ = writeln!(
                out,
                "sealmail_imap_commands_total{{command=\"{name}\",outcome=\"{outcome}\"}} {count}"
            );
        }
        let latency = self.latency.lock().unwrap();
        let _ = writeln!(
            out,
            "# HELP sealmail_imap_command_seconds IMAP command latency."
        );
        let _ = writeln!(out, "# TYPE sealmail_imap_command_seconds histogram");
        for (bound, count) in BUCKETS.iter().zip(latency.buckets) {
            let _ = writeln!(
                out,
                "sealmail_imap_command_seconds_bucket{{le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "sealmail_imap_command_seconds_bucket{{le=\"+Inf\"}} {}",
            latency.count
        );
        let _ = writeln!(out, "sealmail_imap_command_seconds_sum {}", latency.sum);
        let _ = writeln!(out, "sealmail_imap_command_seconds_count {}", latency.count);
        gauge(
            &mut out,
            "sealmail_pop3_connections_total",
            "POP3 connections accepted.",
            "counter",
            self.pop3_connections_total
                .load(Ordering::Relaxed)
                .to_string(),
        );
        gauge(
            &mut out,
            "sealmail_pop3_connections_open",
            "POP3 connections open now.",
            "gauge",
            self.pop3_connections_open
                .load(Ordering::Relaxed)
                .to_string(),
        );
        let _ = writeln!(
            out,
            "# HELP sealmail_pop3_commands_total POP3 commands by name and outcome."
        );
        let _ = writeln!(out, "# TYPE sealmail_pop3_commands_total counter");
        for ((name, outcome), count) in self.pop3_commands.lock().unwrap().iter() {
            let _ = writeln!(
                out,
                "sealmail_pop3_commands_total{{command=\"{name}\",outcome=\"{outcome}\"}} {count}"
            );
        }
        if let Some(data_dir) = self.queues.get() {
            match crate::queue_cmd::QueueSizes::measure(data_dir) {
                Ok(sizes) => render_queue_sizes(&mut out, &sizes),
                Err(error) => tracing::warn!(%error, "measuring the queues for metrics failed"),
            }
        }
        if let Some(queue) = self.outbound.get() {
            gauge(
                &mut out,
                "sealmail_outbound_tls_failures_total",
                "Relay attempts whose STARTTLS failed (sent in the clear, or held under require_tls).",
                "counter",
                queue.tls_failures().to_string(),
            );
        }
        out
    }
}

/// The queue gauges: counts and bytes only, no label that could name a mailbox.
fn render_queue_sizes(out: &mut String, sizes: &crate::queue_cmd::QueueSizes) {
    for (name, help, value) in [
        (
            "sealmail_sealed_queue_items",
            "Sealed messages waiting for their owners' next login.",
            sizes.sealed_items,
        ),
        (
            "sealmail_sealed_queue_bytes",
            "Bytes of the sealed messages waiting.",
            sizes.sealed_bytes,
        ),
        (
            "sealmail_sealed_queue_mailboxes",
            "Mailboxes with sealed messages waiting.",
            sizes.sealed_mailboxes,
        ),
        (
            "sealmail_outbound_queue_items",
            "Outbound messages not yet delivered, bounced or expired.",
            sizes.outbound_items,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
}

/// Largest HTTP request head read before answering; anything longer is refused.
const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Serve `GET /metrics` until `shutdown` completes. A minimal HTTP/1.0-style responder: one
/// request per connection, `Connection: close`, which is all a Prometheus scraper needs.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: std::sync::Arc<ServerMetrics>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (mut stream, _) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let metrics = std::sync::Arc::clone(&metrics);
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(512);
            let mut buf = [0u8; 1024];
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD {
                    let n = stream.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
            }
            let request_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
            let (status, body) = match request_line.strip_suffix(b"\r").unwrap_or(request_line) {
                line if line.starts_with(b"GET /metrics ") => {
                    // Blocking: measuring the queues lists directories.
                    let metrics = std::sync::Arc::clone(&metrics);
                    match tokio::task::spawn_blocking(move || metrics.render()).await {
                        Ok(body) => ("200 OK", body),
                        Err(_) => ("500 Internal Server Error", "rendering failed\n".into()),
                    }
                }
                line if line.starts_with(b"GET ") => ("404 Not Found", "not found\n".into()),
                _ => ("405 Method Not Allowed", "only GET /metrics\n".into()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let metrics = ServerMetrics::default();
        metrics.connection(true);
        metrics.connection(true);
        metrics.connection(false);
        metrics.login(true);
        metrics.login(false);
        metrics.login(false);
        metrics.command("UID FETCH", Outcome::Ok, Duration::from_micros(800));
        metrics.command("UID FETCH", Outcome::Ok, Duration::from_millis(30));
        metrics.command("LOGIN", Outcome::No, Duration::from_millis(2));
        let text = metrics.render();
        assert!(
            text.contains("sealmail_imap_connections_total 2\n"),
            "{text}"
        );
        assert!(text.contains("sealmail_imap_connections_open 1\n"));
        assert!(text.contains("sealmail_logins_total{result=\"failed\"} 2\n"));
        assert!(
            text.contains("sealmail_imap_commands_total{command=\"UID FETCH\",outcome=\"ok\"} 2\n")
        );
        assert!(
            text.contains("sealmail_imap_commands_total{command=\"LOGIN\",outcome=\"no\"} 1\n")
        );
        assert!(text.contains("sealmail_imap_command_seconds_bucket{le=\"0.001\"} 1\n"));
        assert!(text.contains("sealmail_imap_command_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("sealmail_imap_command_seconds_bucket{le=\"0.05\"} 3\n"));
        assert!(text.contains("sealmail_imap_command_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("sealmail_imap_command_seconds_count 3\n"));
    }

    #[test]
    fn pop3_counts_its_own_commands_and_connections_and_shares_logins() {
        use sealmail_pop3::metrics::Metrics as Pop3Metrics;
        let metrics = ServerMetrics::default();
        Pop3Metrics::connection(&metrics, true);
        Pop3Metrics::login(&metrics, false);
        Pop3Metrics::login(&metrics, true);
        Pop3Metrics::command(&metrics, "RETR", true, Duration::from_millis(1));
        Pop3Metrics::command(&metrics, "RETR", true, Duration::from_millis(1));
        Pop3Metrics::command(&metrics, "PASS", false, Duration::from_millis(1));
        let text = metrics.render();
        assert!(
            text.contains("sealmail_pop3_connections_total 1\n"),
            "{text}"
        );
        assert!(text.contains("sealmail_pop3_connections_open 1\n"));
        assert!(text.contains("sealmail_imap_connections_total 0\n"));
        assert!(text.contains("sealmail_logins_total{result=\"ok\"} 1\n"));
        assert!(text.contains("sealmail_logins_total{result=\"failed\"} 1\n"));
        assert!(text.contains("sealmail_pop3_commands_total{command=\"RETR\",outcome=\"ok\"} 2\n"));
        assert!(
            text.contains("sealmail_pop3_commands_total{command=\"PASS\",outcome=\"err\"} 1\n")
        );
        assert!(!text.contains("sealmail_imap_commands_total{command=\"RETR\""));
    }
}

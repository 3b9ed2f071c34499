//! `sealmail queue`: what waits in the sealed queue (per mailbox) and in the outbound relay
//! queue, and the operator's retry and bounce of outbound items. Also the queue sizes the
//! metrics endpoint reports.
//!
//! Sealed items are never opened (nobody here has the key) and never described beyond
//! counts, sizes and ages; the only address shown is the one the registry maps the mailbox
//! id to.

use crate::config::Config;
use anyhow::{Context, Result};
use clap::Subcommand;
use sealmail_core::registry::Registry;
use sealmail_core::seal::SealedQueue;
use sealmail_core::time::iso8601_utc;
use sealmail_smtp::outbound::store::{QueueDir, RecipientStatus};
use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Per mailbox id: sealed items waiting for the owner's next login, the oldest one's age,
    /// their bytes, and damaged items set aside (quarantined). Never any content.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The outbound relay queue: item id, recipient domains still pending, attempts, next
    /// retry, last error, last STARTTLS failure.
    Outbound {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make an outbound item due now; a running server sends it within a minute.
    Retry {
        id: String,
        /// The server's config file (for the relay's settings).
        #[arg(long, env = "SEALMAIL_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Give up on an outbound item: its sender gets a failure report (DSN) for the pending
    /// recipients, and the item is removed.
    Bounce {
        id: String,
        /// The server's config file (for the name in the report).
        #[arg(long, env = "SEALMAIL_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// Run one `sealmail queue` command.
pub fn run(data_dir: &Path, command: QueueCommand) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        QueueCommand::List { json } => {
            let registry = Registry::open(data_dir)?;
            let addresses: HashMap<String, String> = registry
                .list_accounts()?
                .into_iter()
                .map(|info| {
                    (
                        info.mailbox_id.as_str().to_string(),
                        info.address.as_str().to_string(),
                    )
                })
                .collect();
            if !json {
                writeln!(out, "MAILBOX\tADDRESS\tITEMS\tOLDEST\tBYTES\tQUARANTINED")?;
            }
            for row in sealed_rows(data_dir)? {
                let address = addresses.get(&row.mailbox_id).map_or("-", String::as_str);
                if json {
                    let line = serde_json::json!({
                        "mailbox_id": row.mailbox_id,
                        "address": addresses.get(&row.mailbox_id),
                        "pending": row.pending,
                        "oldest_age_secs": row.oldest_age.map(|age| age.as_secs()),
                        "bytes": row.bytes,
                        "quarantined": row.quarantined,
                    });
                    writeln!(out, "{line}")?;
                } else {
                    writeln!(
                        out,
                        "{}\t{address}\t{}\t{}\t{}\t{}",
                        row.mailbox_id,
                        row.pending,
                        row.oldest_age.map_or_else(|| "-".into(), human_age),
                        row.bytes,
                        row.quarantined
                    )?;
                }
            }
        }
        QueueCommand::Outbound { json } => {
            let mut envelopes = QueueDir::new(data_dir)
                .envelopes()
                .context("reading the outbound queue")?;
            envelopes.sort_by(|a, b| a.id.cmp(&b.id));
            if !json {
                writeln!(out, "ID\tDOMAINS\tATTEMPTS\tNEXT_RETRY\tLAST_ERROR")?;
            }
            for envelope in envelopes {
                let pending: Vec<_> = envelope.pending().collect();
                let domains: BTreeSet<String> = pending
                    .iter()
                    .map(|r| {
                        r.address
                            .rsplit_once('@')
                            .map_or("", |(_, domain)| domain)
                            .to_ascii_lowercase()
                    })
                    .collect();
                let domains: Vec<String> = domains.into_iter().collect();
                let last_error = pending
                    .iter()
                    .chain(
                        envelope
                            .recipients
                            .iter()
                            .filter(|r| r.status == RecipientStatus::Failed)
                            .collect::<Vec<_>>()
                            .iter(),
                    )
                    .find_map(|r| r.last_reply.as_deref())
                    .map(one_line);
                let next_retry = iso8601_utc(envelope.next_attempt_ms.div_euclid(1000));
                if json {
                    let line = serde_json::json!({
                        "id": envelope.id,
                        "domains": domains,
                        "pending_recipients": pending.len(),
                        "attempts": envelope.attempts,
                        "created": iso8601_utc(envelope.created),
                        "next_retry": next_retry,
                        "last_error": last_error,
                        "tls_failure": envelope.tls_failure.as_deref().map(one_line),
                    });
                    writeln!(out, "{line}")?;
                } else {
                    writeln!(
                        out,
                        "{}\t{}\t{}\t{next_retry}\t{}",
                        envelope.id,
                        domains.join(","),
                        envelope.attempts,
                        last_error.as_deref().unwrap_or("-"),
                    )?;
                }
            }
        }
        QueueCommand::Retry { id, config } => {
            let envelope = with_outbound_queue(data_dir, config.as_deref(), |queue| async move {
                queue.retry_now(&id).await.map_err(anyhow::Error::from)
            })?;
            writeln!(
                out,
                "{} is due now (attempts so far: {})",
                envelope.id, envelope.attempts
            )?;
        }
        QueueCommand::Bounce { id, config } => {
            let shown = id.clone();
            let bounced = with_outbound_queue(data_dir, config.as_deref(), |queue| async move {
                queue.bounce_now(&id).await.map_err(anyhow::Error::from)
            })?;
            writeln!(out, "{shown} bounced ({bounced} recipients reported)")?;
        }
    }
    Ok(())
}

/// One mailbox's line of `sealmail queue list`.
struct SealedRow {
    mailbox_id: String,
    pending: usize,
    oldest_age: Option<Duration>,
    bytes: u64,
    quarantined: usize,
}

/// Every mailbox with something in the sealed queue.
fn sealed_rows(data_dir: &Path) -> Result<Vec<SealedRow>> {
    let queue = SealedQueue::new(data_dir);
    let now = SystemTime::now();
    let mut rows = Vec::new();
    for mailbox_id in queue.mailbox_ids()? {
        let summary = queue.summary(&mailbox_id)?;
        if summary.pending == 0 && summary.quarantined == 0 {
            continue;
        }
        rows.push(SealedRow {
            mailbox_id,
            pending: summary.pending,
            oldest_age: summary
                .oldest
                .map(|id| now.duration_since(id.arrived_at()).unwrap_or_default()),
            bytes: summary.bytes,
            quarantined: summary.quarantined,
        });
    }
    Ok(rows)
}

/// Sizes of both queues, for the metrics endpoint.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueSizes {
    /// Sealed items waiting, over every mailbox.
    pub sealed_items: u64,
    pub sealed_bytes: u64,
    /// Mailboxes with at least one sealed item waiting.
    pub sealed_mailboxes: u64,
    /// Outbound items (messages) not yet finished.
    pub outbound_items: u64,
}

impl QueueSizes {
    /// Read both queue directories (blocking: a directory listing per mailbox).
    pub fn measure(data_dir: &Path) -> Result<QueueSizes> {
        let mut sizes = QueueSizes::default();
        let queue = SealedQueue::new(data_dir);
        for mailbox_id in queue.mailbox_ids()? {
            let pending = queue.pending_count(&mailbox_id)? as u64;
            if pending > 0 {
                sizes.sealed_items += pending;
                sizes.sealed_mailboxes += 1;
                sizes.sealed_bytes += queue.pending_bytes(&mailbox_id)?;
            }
        }
        sizes.outbound_items = QueueDir::new(data_dir).envelopes()?.len() as u64;
        Ok(sizes)
    }
}

/// Run `work` on the outbound queue of `data_dir`, opened for administration (a running
/// server may be using it: nothing is cleaned up).
fn with_outbound_queue<T, F, Fut>(data_dir: &Path, config: Option<&Path>, work: F) -> Result<T>
where
    F: FnOnce(Arc<sealmail_smtp::OutboundQueue>) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let config = Config::load(config, |name| std::env::var(name).ok())?;
    let registry = Arc::new(Registry::open(data_dir)?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let queue = sealmail_smtp::OutboundQueue::open_existing(
            registry,
            crate::serve::outbound_config(&config),
        )
        .context("opening the outbound queue")?;
        work(Arc::new(queue)).await
    })
}

/// `90s`, `5m`, `3h12m`, `2d4h`.
fn human_age(age: Duration) -> String {
    let secs = age.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h{}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// A reply or error on one line, cut short.
fn one_line(text: &str) -> String {
    text.chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(human_age(Duration::from_secs(42)), "42s");
        assert_eq!(human_age(Duration::from_secs(300)), "5m");
        assert_eq!(human_age(Duration::from_secs(3 * 3600 + 12 * 60)), "3h12m");
        assert_eq!(
            human_age(Duration::from_secs(2 * 86_400 + 4 * 3600)),
            "2d4h"
        );
    }
}

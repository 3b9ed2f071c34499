//! One delivery attempt of one queued item: per recipient domain, resolve the MX hosts and
//! try them in order until one takes the session; record each recipient's outcome; bounce
//! what failed for good, report requested successes, and reschedule or remove the item.

use super::client::{self, DsnParameters, RecipientResult, SessionError, Transaction};
use super::dsn::{self, DsnAction, DsnRecipient};
use super::resolve::ResolveError;
use super::store::{Envelope, RecipientState, RecipientStatus};
use super::{OutboundQueue, blocking, now_ms};
use sealmail_core::account;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// What one domain's attempt came to for its recipients.
enum DomainOutcome {
    /// The session reached RCPT on `host`: one result per recipient.
    Results {
        host: String,
        results: Vec<RecipientResult>,
        /// `host` offered DSN and took over the success reports.
        remote_dsn: bool,
        /// STARTTLS failed and the mail went in the clear.
        tls_failure: Option<String>,
    },
    /// Nothing got through; every recipient shares the reason.
    Failed {
        host: Option<String>,
        reason: String,
        permanent: bool,
        /// The last attempt failed for want of TLS under `require_tls` (counted as a TLS
        /// failure).
        tls_failure: bool,
    },
}

/// Why an operator's action on an outbound item failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no outbound item {0}")]
    NoSuchItem(String),
    #[error("outbound queue: {0}")]
    Io(#[from] std::io::Error),
    #[error("sending the bounce: {0}")]
    Report(String),
}

impl OutboundQueue {
    /// Make item `id` due now; a running server's worker takes it at its next look at the
    /// queue (within a minute). Returns the updated envelope.
    pub async fn retry_now(&self, id: &str) -> Result<Envelope, AdminError> {
        let mut envelope = self.read_item(id).await?;
        envelope.next_attempt_ms = now_ms();
        let dir = self.dir.clone();
        let copy = envelope.clone();
        blocking(move || dir.update(&copy)).await?;
        // In the server's own process this starts it at once.
        self.wake.notify_one();
        Ok(envelope)
    }

    /// Give up on item `id` now: its pending recipients fail with `5.0.0 bounced by the
    /// postmaster`, the sender gets the failure report it asked for (as after a last
    /// attempt), and the item is removed. Returns how many recipients were bounced.
    pub async fn bounce_now(&self, id: &str) -> Result<usize, AdminError> {
        let mut envelope = self.read_item(id).await?;
        let dir = self.dir.clone();
        let read_id = id.to_string();
        let message = blocking(move || dir.read_message(&read_id)).await?;
        let mut bounced = 0;
        for recipient in &mut envelope.recipients {
            if recipient.status == RecipientStatus::Pending {
                recipient.status = RecipientStatus::Failed;
                let last = recipient.last_reply.take().unwrap_or_default();
                recipient.last_reply = Some(format!(
                    "5.0.0 delivery cancelled by the postmaster; last error: {last}"
                ));
                bounced += 1;
            }
        }
        self.report(&mut envelope, &message)
            .await
            .map_err(AdminError::Report)?;
        let dir = self.dir.clone();
        let remove_id = id.to_string();
        blocking(move || dir.remove(&remove_id)).await?;
        Ok(bounced)
    }

    async fn read_item(&self, id: &str) -> Result<Envelope, AdminError> {
        // Ids are hex; anything else could name a path outside the queue.
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AdminError::NoSuchItem(id.to_string()));
        }
        let dir = self.dir.clone();
        let read_id = id.to_string();
        blocking(move || dir.read_envelope(&read_id))
            .await?
            .ok_or_else(|| AdminError::NoSuchItem(id.to_string()))
    }

    pub(super) async fn attempt(&self, mut envelope: Envelope) {
        let message = match self.dir.read_message(&envelope.id) {
            Ok(message) => message,
            Err(error) => {
                // Not removed (the operator may repair it), but not retried in a tight loop.
                tracing::error!(id = %envelope.id, %error, "outbound message unreadable");
                envelope.attempts += 1;
                envelope.next_attempt_ms =
                    now_ms() + self.backoff(envelope.attempts).as_millis() as i64;
                self.save(&envelope).await;
                return;
            }
        };
        let mut by_domain: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for recipient in envelope.pending() {
            let domain = recipient
                .address
                .rsplit_once('@')
                .map_or("", |(_, d)| d)
                .to_ascii_lowercase();
            by_domain
                .entry(domain)
                .or_default()
                .push(recipient.address.clone());
        }
        for (domain, recipients) in &by_domain {
            let dsn = DsnParameters {
                return_full: envelope.return_full,
                envelope_id: envelope.envelope_id.clone(),
                recipients: recipients
                    .iter()
                    .map(|address| {
                        envelope
                            .recipients
                            .iter()
                            .find(|r| r.address == *address)
                            .map_or((None, None), |r| {
                                (r.notify.clone(), r.original_recipient.clone())
                            })
                    })
                    .collect(),
            };
            let outcome = self
                .deliver_domain(domain, &envelope.sender, recipients, &message, &dsn)
                .await;
            self.record(&mut envelope, recipients, outcome);
        }
        envelope.attempts += 1;
        let now = sealmail_core::time::now_unix();
        let expired =
            now.saturating_sub(envelope.created) >= self.config.max_lifetime.as_secs() as i64;
        if expired {
            for recipient in &mut envelope.recipients {
                if recipient.status == RecipientStatus::Pending {
                    recipient.status = RecipientStatus::Failed;
                    let last = recipient.last_reply.take().unwrap_or_default();
                    recipient.last_reply =
                        Some(format!("4.4.7 delivery time expired; last error: {last}"));
                }
            }
        }
        if let Err(error) = self.report(&mut envelope, &message).await {
            // Keep the item: its report is tried again with the next attempt.
            tracing::error!(id = %envelope.id, %error, "sending a DSN failed");
            envelope.next_attempt_ms =
                now_ms() + self.backoff(envelope.attempts).as_millis() as i64;
            self.save(&envelope).await;
            return;
        }
        if envelope.pending().next().is_none() {
            let dir = self.dir.clone();
            let id = envelope.id.clone();
            if let Err(error) = blocking(move || dir.remove(&id)).await {
                tracing::error!(id = %envelope.id, %error, "removing a finished outbound item failed");
            }
            return;
        }
        // Reported recipients are not reported twice.
        for recipient in &mut envelope.recipients {
            if recipient.status != RecipientStatus::Pending {
                recipient.notify_success = false;
            }
        }
        envelope
            .recipients
            .retain(|r| r.status == RecipientStatus::Pending);
        envelope.next_attempt_ms = now_ms() + self.backoff(envelope.attempts).as_millis() as i64;
        self.save(&envelope).await;
    }

    async fn save(&self, envelope: &Envelope) {
        let dir = self.dir.clone();
        let copy = envelope.clone();
        if let Err(error) = blocking(move || dir.update(&copy)).await {
            tracing::error!(id = %envelope.id, %error, "updating an outbound item failed");
        }
    }

    /// Try the domain's hosts in MX order, and each host's addresses, until a session gets
    /// to RCPT or the server refuses permanently.
    async fn deliver_domain(
        &self,
        domain: &str,
        sender: &str,
        recipients: &[String],
        message: &[u8],
        dsn: &DsnParameters,
    ) -> DomainOutcome {
        let hosts = match self.resolver.mail_hosts(domain).await {
            Ok(hosts) => hosts,
            Err(error) => {
                return DomainOutcome::Failed {
                    host: None,
                    permanent: matches!(error, ResolveError::Permanent(_)),
                    reason: error.to_string(),
                    tls_failure: false,
                };
            }
        };
        let transaction = Transaction {
            sender,
            recipients,
            message,
            dsn,
        };
        let mut last_error = None;
        let mut all_permanent = true;
        for host in hosts {
            let addresses = match self.resolver.addresses(&host).await {
                Ok(addresses) => addresses,
                Err(error) => {
                    all_permanent &= matches!(error, ResolveError::Permanent(_));
                    last_error = Some((host.clone(), error.to_string(), false));
                    continue;
                }
            };
            for ip in addresses {
                let addr = SocketAddr::new(ip, self.config.port);
                match client::deliver(addr, &host, &self.client, &transaction).await {
                    Ok(outcome) => {
                        return DomainOutcome::Results {
                            host,
                            results: outcome.results,
                            remote_dsn: outcome.remote_dsn,
                            tls_failure: outcome.tls_failure,
                        };
                    }
                    Err(error) if error.is_permanent() => {
                        return DomainOutcome::Failed {
                            host: Some(host),
                            reason: reply_text(&error),
                            permanent: true,
                            tls_failure: false,
                        };
                    }
                    Err(error) => {
                        tracing::info!(%host, %addr, %error, "outbound attempt failed");
                        all_permanent = false;
                        last_error =
                            Some((host.clone(), reply_text(&error), error.is_tls_failure()));
                    }
                }
            }
        }
        let (host, reason, tls_failure) = match last_error {
            Some((host, reason, tls_failure)) => (Some(host), reason, tls_failure),
            None => (None, format!("no usable mail host for {domain}"), false),
        };
        DomainOutcome::Failed {
            host,
            reason,
            permanent: all_permanent,
            tls_failure,
        }
    }

    fn record(&self, envelope: &mut Envelope, recipients: &[String], outcome: DomainOutcome) {
        match &outcome {
            DomainOutcome::Results {
                host,
                tls_failure: Some(reason),
                ..
            } => {
                tracing::warn!(id = %envelope.id, %host, %reason, "STARTTLS failed; sent in the clear");
                envelope.tls_failure = Some(format!("{host}: {reason}"));
                self.tls_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            DomainOutcome::Failed {
                host,
                reason,
                tls_failure: true,
                ..
            } => {
                let host = host.as_deref().unwrap_or("?");
                envelope.tls_failure = Some(format!("{host}: {reason}"));
                self.tls_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            _ => {}
        }
        let remote_took_over = matches!(
            outcome,
            DomainOutcome::Results {
                remote_dsn: true,
                ..
            }
        );
        for recipient in envelope
            .recipients
            .iter_mut()
            .filter(|r| recipients.contains(&r.address))
        {
            let index = recipients.iter().position(|a| *a == recipient.address);
            let (status, reply, host) = match &outcome {
                DomainOutcome::Results { host, results, .. } => {
                    match index.and_then(|i| results.get(i)) {
                        Some(RecipientResult::Delivered(reply)) => {
                            (RecipientStatus::Delivered, reply.to_string(), Some(host))
                        }
                        Some(RecipientResult::Rejected(reply)) => {
                            (RecipientStatus::Failed, reply.to_string(), Some(host))
                        }
                        Some(RecipientResult::Deferred(reply)) => {
                            (RecipientStatus::Pending, reply.to_string(), Some(host))
                        }
                        None => (
                            RecipientStatus::Pending,
                            "no reply for this recipient".into(),
                            Some(host),
                        ),
                    }
                }
                DomainOutcome::Failed {
                    host,
                    reason,
                    permanent,
                    ..
                } => (
                    if *permanent {
                        RecipientStatus::Failed
                    } else {
                        RecipientStatus::Pending
                    },
                    reason.clone(),
                    host.as_ref(),
                ),
            };
            tracing::info!(
                id = %envelope.id,
                recipient = %recipient.address,
                ?status,
                reply = %reply,
                "outbound delivery attempt"
            );
            if status == RecipientStatus::Delivered && remote_took_over {
                // The remote got NOTIFY with the message: a success report is its to send.
                recipient.notify_success = false;
            }
            recipient.status = status;
            recipient.last_reply = Some(reply);
            recipient.remote_host = host.cloned();
        }
    }

    /// Does `recipient` get a delay report now?
    fn owes_delay_notice(&self, envelope: &Envelope, recipient: &RecipientState) -> bool {
        let Some(after) = self.config.delay_notice_after else {
            return false;
        };
        let waited = sealmail_core::time::now_unix().saturating_sub(envelope.created);
        recipient.status == RecipientStatus::Pending
            && recipient.notify_delay
            && !recipient.delay_reported
            && waited >= after.as_secs() as i64
    }

    /// Send the DSNs this attempt owes: failures (unless NOTIFY says otherwise), one delay
    /// report per recipient once the message has waited `delay_notice_after`, and the
    /// success reports asked for that the remote did not take over (`relayed`). Nothing for
    /// an item that is itself a bounce. Marks the delay reports sent.
    async fn report(&self, envelope: &mut Envelope, message: &[u8]) -> Result<(), String> {
        if envelope.sender.is_empty() {
            return Ok(());
        }
        let retry_until = envelope
            .created
            .saturating_add(self.config.max_lifetime.as_secs() as i64);
        for action in [DsnAction::Failed, DsnAction::Delayed, DsnAction::Relayed] {
            let selected: Vec<usize> = (0..envelope.recipients.len())
                .filter(|&i| {
                    let r = &envelope.recipients[i];
                    match action {
                        // NOTIFY without FAILURE (NEVER) silences the failure report.
                        DsnAction::Failed => {
                            r.status == RecipientStatus::Failed && r.notify_failure
                        }
                        DsnAction::Delayed => self.owes_delay_notice(envelope, r),
                        DsnAction::Relayed | DsnAction::Delivered => {
                            r.status == RecipientStatus::Delivered && r.notify_success
                        }
                    }
                })
                .collect();
            let entries: Vec<DsnRecipient<'_>> = selected
                .iter()
                .map(|&i| &envelope.recipients[i])
                .map(|r| DsnRecipient {
                    address: &r.address,
                    action,
                    diagnostic: r.last_reply.as_deref().unwrap_or(""),
                    remote_host: r.remote_host.as_deref(),
                    original_recipient: r.original_recipient.as_deref(),
                    retry_until: (action == DsnAction::Delayed).then_some(retry_until),
                })
                .collect();
            if entries.is_empty() {
                continue;
            }
            let report = dsn::build(
                &self.config.hostname,
                &envelope.sender,
                message,
                envelope.created,
                &entries,
                envelope.envelope_id.as_deref(),
                // RFC 3461 4.3: RET concerns failure reports; a success report never
                // carries the content.
                envelope.return_full && action == DsnAction::Failed,
            );
            self.return_to_sender(&envelope.sender, report).await?;
            if action == DsnAction::Delayed {
                for i in selected {
                    envelope.recipients[i].delay_reported = true;
                }
            }
        }
        Ok(())
    }

    /// A local sender gets the report sealed into its mailbox like any arriving mail (folded
    /// in at once when the mailbox is open); a remote one (forwarded mail) gets it relayed with the null reverse-path.
    async fn return_to_sender(&self, sender: &str, report: Vec<u8>) -> Result<(), String> {
        let registry = std::sync::Arc::clone(&self.registry);
        let address = sender.to_string();
        let destination = blocking(move || -> Result<ReportDestination, std::io::Error> {
            let as_io = |e: sealmail_core::Error| std::io::Error::other(e.to_string());
            let Some(account) = registry.lookup(&address).map_err(as_io)? else {
                return Ok(ReportDestination::Remote(report));
            };
            account::deliver_sealed(&registry, &address, &report).map_err(as_io)?;
            Ok(ReportDestination::Sealed(account.mailbox_id))
        })
        .await
        .map_err(|e| e.to_string())?;
        match destination {
            ReportDestination::Sealed(mailbox_id) => {
                // The sender may be logged in right now: fold the report in at once.
                if let Some(fold_in) = self.fold_in.get() {
                    fold_in(mailbox_id).await;
                }
            }
            ReportDestination::Remote(report) => {
                self.enqueue("", &[sender.to_string()], &report)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}

/// Where a report went, or goes.
enum ReportDestination {
    /// Sealed for this local mailbox.
    Sealed(sealmail_core::registry::MailboxId),
    /// To a remote sender, through the queue.
    Remote(Vec<u8>),
}

fn reply_text(error: &SessionError) -> String {
    match error {
        SessionError::Refused(reply) => reply.to_string(),
        other => other.to_string(),
    }
}

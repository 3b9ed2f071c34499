//! Outbound relay: a durable queue under `<data>/outbound/`, and the worker that delivers it
//! to other domains' MX hosts, retries with exponential backoff, and reports permanent
//! failures (and requested successes) to the sender with a DSN.
//!
//! [`OutboundQueue::enqueue`] is the one entry point: submission calls it for remote
//! recipients, and forwarding can call it for remote targets. It signs the message with the
//! sender domain's DKIM key (when there is one) and returns only once the item is on disk.

pub mod client;
pub mod dsn;
pub mod resolve;
pub mod store;
pub mod tls;
mod worker;

use crate::dkim::{DkimError, DkimKeys};
use crate::proto::RcptParams;
use crate::relay::{Relay, RelayError};
use client::ClientSettings;
use resolve::MxResolver;
use sealmail_core::mailstore::MailStore;
use sealmail_core::registry::{Address, MailboxId, Registry};
use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{Envelope, QueueDir, RecipientState, RecipientStatus};
use tokio::sync::Notify;

pub use store::Envelope as QueuedEnvelope;
pub use worker::AdminError;

/// Relay settings.
#[derive(Debug, Clone)]
pub struct OutboundConfig {
    /// Our name in EHLO and in DSNs (`Reporting-MTA`).
    pub hostname: String,
    /// Port of remote MX hosts: 25, or a high port in tests.
    pub port: u16,
    /// Send only over STARTTLS with a certificate that chains to a trusted root and names
    /// the MX host; hosts without it are retried and finally bounced. When false, TLS is
    /// opportunistic (RFC 7435): used when offered, any certificate accepted.
    pub require_tls: bool,
    /// PEM file of root certificates trusted in addition to the system's, for `require_tls`
    /// (a private CA, or a test CA).
    pub extra_ca_file: Option<std::path::PathBuf>,
    /// DNS servers (host:port); empty means the system's /etc/resolv.conf.
    pub nameservers: Vec<SocketAddr>,
    /// After this long without success a message is bounced (RFC 5321 4.5.4.1: 4-5 days).
    pub max_lifetime: Duration,
    /// Wait before the first retry; each further retry waits twice as long...
    pub first_retry: Duration,
    /// ...up to this.
    pub max_retry_interval: Duration,
    /// Per command and for connecting.
    pub timeout: Duration,
    /// Messages in delivery at once.
    pub max_concurrent_deliveries: usize,
    /// Once a message has waited this long undelivered, its sender gets one `delayed` DSN
    /// (RFC 3464) for the recipients still pending, unless they asked otherwise (NOTIFY
    /// without DELAY). `None`: never.
    pub delay_notice_after: Option<Duration>,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            hostname: "localhost".into(),
            port: 25,
            require_tls: false,
            extra_ca_file: None,
            nameservers: Vec::new(),
            max_lifetime: Duration::from_secs(5 * 24 * 3600),
            first_retry: Duration::from_secs(5 * 60),
            max_retry_interval: Duration::from_secs(4 * 3600),
            timeout: Duration::from_secs(5 * 60),
            max_concurrent_deliveries: 32,
            // Sendmail's and Exim's habit: a first warning after four hours.
            delay_notice_after: Some(Duration::from_secs(4 * 3600)),
        }
    }
}

/// Why a message could not be queued (the client gets a 451 and keeps it).
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("no recipients")]
    NoRecipients,
    #[error("DKIM: {0}")]
    Dkim(#[from] DkimError),
    #[error("writing the outbound queue: {0}")]
    Io(#[from] std::io::Error),
}

/// Options of one enqueued message: the client's DSN parameters (RFC 3461).
#[derive(Debug, Clone, Default)]
pub struct EnqueueOptions {
    /// RET=FULL: a failure DSN returns the whole message (else its headers).
    pub return_full: bool,
    /// ENVID, in its xtext form.
    pub envelope_id: Option<String>,
    /// NOTIFY and ORCPT of the recipients that carried them; the others get the default
    /// (failures reported, successes not).
    pub recipients: Vec<(String, RcptParams)>,
}

/// The durable outbound queue and its delivery worker.
pub struct OutboundQueue {
    dir: QueueDir,
    dkim: DkimKeys,
    /// Bounces to local senders go through the sealed local delivery path.
    registry: Arc<Registry>,
    config: OutboundConfig,
    resolver: MxResolver,
    client: ClientSettings,
    /// Rings when something was enqueued, so the worker does not wait for its next tick.
    wake: Notify,
    /// Items being delivered right now (the worker must not start them twice). A std Mutex:
    /// held only for set operations, never across an await.
    in_flight: Mutex<HashSet<String>>,
    /// Attempts whose STARTTLS failed (sent in the clear, or refused under `require_tls`,
    /// including certificates that failed verification).
    tls_failures: std::sync::atomic::AtomicU64,
    /// Folds a report sealed for a local sender into the sender's mailbox if a session holds
    /// it open (set by [`OutboundQueue::fold_in_through`]); else it waits for the next login.
    fold_in: std::sync::OnceLock<FoldIn>,
}

/// See [`OutboundQueue::fold_in_through`].
type FoldIn =
    Arc<dyn Fn(MailboxId) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

impl std::fmt::Debug for OutboundQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundQueue")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OutboundQueue {
    pub fn new(registry: Arc<Registry>, config: OutboundConfig) -> std::io::Result<Self> {
        let queue = Self::open_existing(registry, config)?;
        let removed = queue.dir.clean_incomplete()?;
        if removed > 0 {
            tracing::info!(removed, "removed incomplete outbound items left by a crash");
        }
        Ok(queue)
    }

    /// The queue as an administration tool sees it (`sealmail queue`): no crash clean-up,
    /// which would remove the message of an item a running server is writing right now.
    /// Do not [`OutboundQueue::run`] it.
    pub fn open_existing(registry: Arc<Registry>, config: OutboundConfig) -> std::io::Result<Self> {
        let data_dir = registry.data_dir().to_path_buf();
        let dir = QueueDir::new(&data_dir);
        let resolver = MxResolver::new(&config.nameservers)?;
        let client = ClientSettings {
            hostname: config.hostname.clone(),
            require_tls: config.require_tls,
            timeout: config.timeout,
            data_timeout: config.timeout.max(Duration::from_secs(10 * 60)),
            tls: if config.require_tls {
                tls::verified_config(config.extra_ca_file.as_deref())
                    .map_err(std::io::Error::other)?
            } else {
                tls::opportunistic_config()
            },
        };
        Ok(OutboundQueue {
            dir,
            dkim: DkimKeys::new(&data_dir),
            registry,
            config,
            resolver,
            client,
            wake: Notify::new(),
            in_flight: Mutex::default(),
            tls_failures: std::sync::atomic::AtomicU64::new(0),
            fold_in: std::sync::OnceLock::new(),
        })
    }

    /// Queue `raw` from `envelope_from` (empty for a bounce) to `recipients`. Signs it with the
    /// sender domain's DKIM key, if any; returns the item id once it is durable.
    pub async fn enqueue(
        &self,
        envelope_from: &str,
        recipients: &[String],
        raw: &[u8],
    ) -> Result<String, OutboundError> {
        self.enqueue_with(envelope_from, recipients, raw, EnqueueOptions::default())
            .await
    }

    /// [`OutboundQueue::enqueue`] with DSN options.
    pub async fn enqueue_with(
        &self,
        envelope_from: &str,
        recipients: &[String],
        raw: &[u8],
        options: EnqueueOptions,
    ) -> Result<String, OutboundError> {
        if recipients.is_empty() {
            return Err(OutboundError::NoRecipients);
        }
        let now = sealmail_core::time::now_unix();
        let envelope = Envelope {
            id: store::new_id(),
            sender: envelope_from.to_string(),
            created: now,
            attempts: 0,
            next_attempt_ms: now_ms(),
            recipients: recipients
                .iter()
                .map(|address| {
                    let params = options
                        .recipients
                        .iter()
                        .find(|(a, _)| a == address)
                        .map(|(_, p)| p.clone())
                        .unwrap_or_default();
                    RecipientState {
                        address: address.clone(),
                        status: RecipientStatus::Pending,
                        last_reply: None,
                        remote_host: None,
                        notify_success: params.notify.is_some_and(|n| n.success),
                        notify_failure: params.notify.is_none_or(|n| n.failure),
                        // RFC 3461 4.1: without NOTIFY, delays MAY be reported; they are.
                        notify_delay: params.notify.is_none_or(|n| n.delay),
                        delay_reported: false,
                        notify: params.notify.map(|n| n.esmtp_value()),
                        original_recipient: params.orcpt,
                    }
                })
                .collect(),
            envelope_id: options.envelope_id,
            return_full: options.return_full,
            tls_failure: None,
        };
        let sender_domain = envelope_from
            .rsplit_once('@')
            .map(|(_, domain)| domain.to_string());
        let dkim = self.dkim.clone();
        let dir = self.dir.clone();
        let raw = raw.to_vec();
        let id = envelope.id.clone();
        blocking(move || {
            let signer = match &sender_domain {
                Some(domain) => dkim.signer(domain)?,
                None => None,
            };
            let message = match signer {
                Some(signer) => signer.sign(&raw)?,
                None => raw,
            };
            dir.insert(&envelope, &message)?;
            Ok::<(), OutboundError>(())
        })
        .await?;
        self.wake.notify_one();
        Ok(id)
    }

    /// Items waiting for delivery (their envelopes).
    pub fn pending(&self) -> std::io::Result<Vec<Envelope>> {
        self.dir.envelopes()
    }

    /// Reports (DSNs) sealed for local senders are folded into their mailboxes at once when
    /// `store` has them open, as MX does with arriving mail, instead of waiting for the
    /// sender's next login (an IDLE client may stay connected for days). The first store
    /// set wins.
    pub fn fold_in_through<M: MailStore>(&self, store: Arc<M>) {
        let fold_in: FoldIn = Arc::new(move |mailbox_id| {
            let store = Arc::clone(&store);
            Box::pin(async move {
                if let Err(error) = store.drain_sealed_if_open(&mailbox_id).await {
                    tracing::warn!(%error, "folding a sealed report into an open mailbox failed");
                }
            })
        });
        let _ = self.fold_in.set(fold_in);
    }

    /// Delivery attempts since start whose STARTTLS failed: sent in the clear after a failed
    /// handshake (opportunistic TLS), or not sent because TLS is required (not offered, or
    /// the certificate failed verification).
    pub fn tls_failures(&self) -> u64 {
        self.tls_failures.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Our name in EHLO and in DSNs.
    pub fn hostname(&self) -> &str {
        &self.config.hostname
    }

    /// Deliver until `shutdown` completes: due items are started (at most
    /// `max_concurrent_deliveries` at once), then the worker sleeps until the next one is due
    /// or something is enqueued. Deliveries in progress at shutdown are abandoned; they stay
    /// queued and are retried by the next run (the remote may then see them twice, which
    /// SMTP's at-least-once delivery allows).
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let slots = Arc::new(tokio::sync::Semaphore::new(
            self.config.max_concurrent_deliveries.max(1),
        ));
        let mut deliveries = tokio::task::JoinSet::new();
        loop {
            while deliveries.try_join_next().is_some() {}
            let wait = match self.start_due(&slots, &mut deliveries).await {
                Ok(wait) => wait,
                Err(error) => {
                    tracing::error!(%error, "reading the outbound queue failed");
                    Duration::from_secs(30)
                }
            };
            tokio::select! {
                () = &mut shutdown => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
            }
        }
        deliveries.shutdown().await;
    }

    /// Start every due item not yet in flight; returns how long until the next is due.
    async fn start_due(
        self: &Arc<Self>,
        slots: &Arc<tokio::sync::Semaphore>,
        deliveries: &mut tokio::task::JoinSet<()>,
    ) -> std::io::Result<Duration> {
        let dir = self.dir.clone();
        let mut envelopes = blocking(move || dir.envelopes()).await?;
        let now = now_ms();
        let mut next_due: Option<i64> = None;
        envelopes.sort_by_key(|e| e.next_attempt_ms);
        for envelope in envelopes {
            if envelope.next_attempt_ms > now {
                let due = envelope.next_attempt_ms;
                next_due = Some(next_due.map_or(due, |n| n.min(due)));
                continue;
            }
            if self.lock_in_flight().contains(&envelope.id) {
                continue;
            }
            let Ok(permit) = Arc::clone(slots).try_acquire_owned() else {
                break;
            };
            self.lock_in_flight().insert(envelope.id.clone());
            let queue = Arc::clone(self);
            deliveries.spawn(async move {
                let _permit = permit;
                let id = envelope.id;
                // The listing may predate an attempt that finished since: trust only the file
                // as it is now that this item is marked in flight.
                let dir = queue.dir.clone();
                let read_id = id.clone();
                match blocking(move || dir.read_envelope(&read_id)).await {
                    Ok(Some(current)) if current.next_attempt_ms <= now_ms() => {
                        queue.attempt(current).await;
                    }
                    Ok(_) => {}
                    Err(error) => tracing::error!(%id, %error, "outbound envelope unreadable"),
                }
                queue.lock_in_flight().remove(&id);
            });
        }
        // Poll at least every minute: an item whose attempt ended re-enters this loop then.
        let until_next = next_due.map_or(60_000, |due| (due - now).clamp(0, 60_000));
        Ok(Duration::from_millis(until_next as u64).max(Duration::from_millis(20)))
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait before attempt number `attempts + 1`.
    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32 << attempts.saturating_sub(1).min(20);
        self.config
            .first_retry
            .saturating_mul(factor)
            .min(self.config.max_retry_interval)
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Run blocking work (fsync, signing, sealing) off the reactor.
async fn blocking<T: Send + 'static, E: From<std::io::Error> + Send + 'static>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(E::from(std::io::Error::other(
            "blocking task cancelled: runtime shutting down",
        ))),
    }
}

/// Forwarding (inbound delivery) hands remote copies to the queue through the [`Relay`] seam.
/// Delivery calls it on a blocking thread, so waiting here for the durable enqueue is fine.
impl Relay for OutboundQueue {
    fn enqueue(
        &self,
        sender: &str,
        recipients: &[Address],
        message: &[u8],
    ) -> Result<(), RelayError> {
        let recipients: Vec<String> = recipients.iter().map(|r| r.as_str().to_string()).collect();
        tokio::runtime::Handle::current()
            .block_on(OutboundQueue::enqueue(self, sender, &recipients, message))
            .map(|_| ())
            .map_err(|error| RelayError::Queue(error.to_string()))
    }
}

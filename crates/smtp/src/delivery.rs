//! Where accepted mail goes: recipient checks against the registry, sealed delivery into the
//! queue (durable before the 250), and for submission the password check and the Sent copy.

use crate::outbound::OutboundQueue;
use crate::session::{AuthFailure, Credentials, Delivery, DeliveryFailure, RecipientVerdict};
use sealmail_core::Error;
use sealmail_core::account;
use sealmail_core::mailstore::{MailSession, MailStore};
use sealmail_core::registry::{Address, Registry};
use sealmail_core::seal::SealedQueue;
use sealmail_core::store::{AppendOptions, Flags};
use std::sync::Arc;

/// Folder used for submitted mail when the mailbox has no `\Sent` folder.
const SENT_FALLBACK: &str = "Sent";

/// Local delivery over the registry (lookups, the sealed queue) and the `MailStore` (login and
/// Sent copies for submission).
pub struct LocalDelivery<M> {
    registry: Arc<Registry>,
    store: Arc<M>,
    /// Where authenticated submissions to other domains go; without it they are refused.
    outbound: Option<Arc<OutboundQueue>>,
}

impl<M> std::fmt::Debug for LocalDelivery<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDelivery")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl<M: MailStore> LocalDelivery<M> {
    pub fn new(registry: Arc<Registry>, store: Arc<M>) -> Self {
        LocalDelivery {
            registry,
            store,
            outbound: None,
        }
    }

    /// Relay authenticated submissions to other domains through `queue`.
    pub fn with_outbound(mut self, queue: Arc<OutboundQueue>) -> Self {
        self.outbound = Some(queue);
        self
    }

    /// Can submissions to other domains be relayed?
    pub fn relays(&self) -> bool {
        self.outbound.is_some()
    }

    /// Queue the message for its remote recipients (DKIM-signed, durable before returning).
    pub async fn relay(&self, delivery: &Delivery) -> Result<(), DeliveryFailure> {
        if delivery.relay_recipients.is_empty() {
            return Ok(());
        }
        let Some(queue) = &self.outbound else {
            return Err(DeliveryFailure::Temporary);
        };
        let recipients: Vec<String> = delivery
            .relay_recipients
            .iter()
            .map(|r| r.as_str().to_string())
            .collect();
        queue
            .enqueue(&delivery.sender, &recipients, &delivery.with_trace_header())
            .await
            .map(|_| ())
            .map_err(|error| {
                tracing::warn!(%error, "queueing outbound mail failed");
                DeliveryFailure::Temporary
            })
    }

    /// Is `address` ours, and may it receive a message of about `size_hint` bytes?
    pub async fn check_recipient(
        &self,
        address: &Address,
        size_hint: Option<u64>,
    ) -> RecipientVerdict {
        let registry = Arc::clone(&self.registry);
        let address = address.clone();
        blocking(move || check_recipient(&registry, &address, size_hint))
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "recipient lookup failed");
                RecipientVerdict::TemporaryFailure
            })
    }

    /// Seal the message for every recipient. Returns only once each sealed item is on disk
    /// (file and directory fsynced); an error means the client must not consider it delivered.
    pub async fn deliver(&self, delivery: Delivery) -> Result<(), DeliveryFailure> {
        let registry = Arc::clone(&self.registry);
        blocking(move || {
            let message = delivery.with_trace_header();
            for recipient in &delivery.recipients {
                account::deliver_sealed(&registry, recipient.as_str(), &message)?;
            }
            Ok(())
        })
        .await
        .map_err(delivery_failure)
    }

    /// Check the password of a submission client; the session opened is where Sent copies go.
    pub async fn authenticate(
        &self,
        credentials: Credentials,
    ) -> Result<(Address, M::Session), AuthFailure> {
        let address =
            Address::parse(&credentials.username).map_err(|_| AuthFailure::InvalidCredentials)?;
        match self
            .store
            .login(address.as_str(), &credentials.password)
            .await
        {
            Ok(session) => Ok((address, session)),
            Err(Error::WrongPassword | Error::NoSuchAccount(_) | Error::InvalidAddress(..)) => {
                Err(AuthFailure::InvalidCredentials)
            }
            Err(error) => {
                tracing::warn!(%error, "submission login failed");
                Err(AuthFailure::Temporary)
            }
        }
    }

    /// Keep a copy of submitted mail in the sender's Sent folder, marked as read.
    pub async fn store_sent(
        &self,
        session: &M::Session,
        message: Vec<u8>,
    ) -> Result<(), DeliveryFailure> {
        let folders = session.list_folders().await.map_err(delivery_failure)?;
        let sent = folders
            .iter()
            .find(|folder| folder.special_use.as_deref() == Some("\\Sent"))
            .map_or(SENT_FALLBACK, |folder| folder.path.as_str());
        let options = AppendOptions {
            flags: Flags {
                seen: true,
                ..Flags::default()
            },
            internal_date: None,
        };
        session
            .append(sent, vec![(message, options)])
            .await
            .map(|_| ())
            .map_err(delivery_failure)
    }
}

fn check_recipient(
    registry: &Registry,
    address: &Address,
    size_hint: Option<u64>,
) -> sealmail_core::Result<RecipientVerdict> {
    let Some(account) = registry.lookup(address.as_str())? else {
        let local_domain = registry
            .list_domains()?
            .iter()
            .any(|domain| domain.eq_ignore_ascii_case(address.domain()));
        return Ok(if local_domain {
            RecipientVerdict::Unknown
        } else {
            RecipientVerdict::NotLocal
        });
    };
    if let Some(quota) = account.quota {
        // The recorded use is from the owner's last session; what arrived since waits sealed.
        let used = account.used_bytes.saturating_add(
            SealedQueue::new(registry.data_dir()).pending_bytes(account.mailbox_id.as_str())?,
        );
        let expected = used.saturating_add(size_hint.unwrap_or(0));
        if used >= quota || expected > quota {
            return Ok(RecipientVerdict::OverQuota);
        }
    }
    Ok(RecipientVerdict::Accepted)
}

fn delivery_failure(error: Error) -> DeliveryFailure {
    match error {
        Error::QuotaExceeded { .. } => DeliveryFailure::OverQuota,
        Error::MessageTooLarge { .. } => DeliveryFailure::TooLarge,
        error => {
            tracing::warn!(%error, "delivery failed");
            DeliveryFailure::Temporary
        }
    }
}

/// Run blocking work (SQLite, fsync, sealing) off the reactor.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> sealmail_core::Result<T> + Send + 'static,
) -> sealmail_core::Result<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(Error::Io(std::io::Error::other(
            "blocking task cancelled: runtime shutting down",
        ))),
    }
}

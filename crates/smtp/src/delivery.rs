//! Where accepted mail goes: recipient checks against the registry, sealed delivery into the
//! queue (durable before the 250), and for submission the password check and the Sent copy.

use crate::authentication::{Disposition, InboundAuthenticator, strip_own_results};
use crate::outbound::dsn::{self, DsnAction, DsnRecipient};
use crate::outbound::{EnqueueOptions, OutboundQueue};
use crate::proto::DsnReturn;
use crate::relay::{Relay, RelayError};
use crate::session::{AuthFailure, Credentials, Delivery, DeliveryFailure, RecipientVerdict};
use crate::webhook::WebhookQueue;
use sealmail_core::Error;
use sealmail_core::account;
use sealmail_core::mailstore::{MailSession, MailStore};
use sealmail_core::registry::{Address, ForwardMode, MailboxId, Registry};
use sealmail_core::seal::SealedQueue;
use sealmail_core::store::{AppendOptions, Flags};
use std::collections::HashSet;
use std::sync::Arc;

/// How many forwarding hops between local addresses are followed (a -> b -> c ...); the last
/// address reached keeps the message. Loops end earlier: each address gets one copy.
const MAX_FORWARD_HOPS: usize = 5;

/// Folder used for submitted mail when the mailbox has no `\Sent` folder.
const SENT_FALLBACK: &str = "Sent";

/// Local delivery over the registry (lookups, the sealed queue) and the `MailStore` (login and
/// Sent copies for submission).
pub struct LocalDelivery<M> {
    registry: Arc<Registry>,
    store: Arc<M>,
    /// Where authenticated submissions to other domains go; without it they are refused.
    outbound: Option<Arc<OutboundQueue>>,
    /// SPF/DKIM/ARC/DMARC checks of unauthenticated (MX) mail; off when `None`.
    inbound_auth: Option<InboundAuthenticator>,
    forwarding: Forwarders,
    /// Our name as the `Reporting-MTA` of success reports for local delivery.
    reporting_host: String,
}

/// Where forwarded copies go besides local mailboxes.
#[derive(Debug, Clone, Default)]
struct Forwarders {
    webhooks: Option<Arc<WebhookQueue>>,
    relay: Option<Arc<dyn Relay>>,
}

impl<M> std::fmt::Debug for LocalDelivery<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDelivery")
            .field("registry", &self.registry)
            .field("inbound_auth", &self.inbound_auth)
            .field("forwarding", &self.forwarding)
            .finish_non_exhaustive()
    }
}

impl<M: MailStore> LocalDelivery<M> {
    pub fn new(registry: Arc<Registry>, store: Arc<M>) -> Self {
        LocalDelivery {
            registry,
            store,
            outbound: None,
            inbound_auth: None,
            forwarding: Forwarders::default(),
            reporting_host: "localhost".into(),
        }
    }

    /// Our name in the delivery reports this side writes (the relay's name by default).
    pub fn with_reporting_host(mut self, hostname: impl Into<String>) -> Self {
        self.reporting_host = hostname.into();
        self
    }

    /// Relay authenticated submissions to other domains through `queue`.
    /// Forwards to addresses on other domains take the same queue.
    pub fn with_outbound(mut self, queue: Arc<OutboundQueue>) -> Self {
        self.forwarding.relay = Some(Arc::clone(&queue) as Arc<dyn Relay>);
        self.reporting_host = queue.hostname().to_string();
        queue.fold_in_through(Arc::clone(&self.store));
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
        let options = EnqueueOptions {
            return_full: delivery.dsn.ret == Some(DsnReturn::Full),
            envelope_id: delivery.dsn.envid.clone(),
            recipients: delivery
                .dsn
                .relay_recipients
                .iter()
                .map(|(address, params)| (address.as_str().to_string(), params.clone()))
                .collect(),
        };
        queue
            .enqueue_with(
                &delivery.sender,
                &recipients,
                &delivery.with_trace_header(),
                options,
            )
            .await
            .map(|_| ())
            .map_err(|error| {
                tracing::warn!(%error, "queueing outbound mail failed");
                DeliveryFailure::Temporary
            })
    }

    /// Verify SPF, DKIM, ARC and DMARC on mail from unauthenticated clients and record the
    /// results in an `Authentication-Results:` field.
    pub fn with_inbound_auth(mut self, authenticator: InboundAuthenticator) -> Self {
        self.inbound_auth = Some(authenticator);
        self
    }

    /// Queue webhook forwards here (its worker, [`WebhookQueue::run`], is the caller's task).
    pub fn with_webhook_queue(mut self, queue: Arc<WebhookQueue>) -> Self {
        self.forwarding.webhooks = Some(queue);
        self
    }

    /// Hand forwards to addresses on other domains to this outbound queue.
    pub fn with_outbound_queue(mut self, relay: Arc<dyn Relay>) -> Self {
        self.forwarding.relay = Some(relay);
        self
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

    /// Deliver to every recipient: verify the sender's authentication first (unauthenticated
    /// mail, when configured), then follow each address's forwarding and seal a copy for each
    /// mailbox that keeps one. Returns only once every copy and every queued forward is on
    /// disk (file and directory fsynced); an error means the client must not consider it
    /// delivered.
    pub async fn deliver(&self, mut delivery: Delivery) -> Result<(), DeliveryFailure> {
        let mut prefix = String::new();
        if let Some(authenticator) = self
            .inbound_auth
            .as_ref()
            .filter(|_| !delivery.authenticated)
        {
            let verdict = authenticator
                .verify(
                    delivery.peer,
                    &delivery.helo,
                    &delivery.sender,
                    &delivery.message,
                )
                .await;
            if verdict.disposition == Disposition::Reject {
                tracing::info!(peer = %delivery.peer, "message refused: DMARC policy reject");
                return Err(DeliveryFailure::PolicyRejected);
            }
            if let std::borrow::Cow::Owned(stripped) =
                strip_own_results(&delivery.message, authenticator.hostname())
            {
                delivery.message = stripped;
            }
            prefix = verdict.header;
        }
        let message = Arc::new(prepend_fields(
            std::mem::take(&mut delivery.message),
            &[prefix.as_bytes(), delivery.received.as_bytes()],
        ));
        let success_report = SuccessReport::requested(&delivery);
        let registry = Arc::clone(&self.registry);
        let forwarders = self.forwarding.clone();
        let routed = Arc::clone(&message);
        // Routing and the copies on one blocking thread: a sealed copy then costs no second
        // hand-off between the reactor and the blocking pool.
        let store = Arc::clone(&self.store);
        blocking(move || {
            let route = Route {
                registry: &registry,
                forwarders: &forwarders,
                sender: &delivery.sender,
                message: &routed,
            };
            let mut delivered = HashSet::new();
            let mut mailboxes = Vec::new();
            for recipient in &delivery.recipients {
                route.deliver_to(recipient, 0, &mut delivered, &mut mailboxes)?;
            }
            for mailbox in &mailboxes {
                store_copy_blocking(&registry, &*store, &mailbox.mailbox_id, &routed)?;
            }
            Ok(())
        })
        .await
        .map_err(delivery_failure)?;
        if let Some(report) = success_report {
            // The message is delivered: a report that cannot be sent is logged, and the
            // client still gets its 250.
            if let Err(error) = self.send_success_report(report, &message).await {
                tracing::warn!(%error, "sending a success DSN failed");
            }
        }
        Ok(())
    }

    /// Tell the sender that its message reached the local mailboxes it asked about
    /// (NOTIFY=SUCCESS, RFC 3461 5.2.1; `Action: delivered`): a local sender gets the report
    /// in its mailbox, a remote one through the relay, from the null reverse-path.
    async fn send_success_report(
        &self,
        report: SuccessReport,
        message: &[u8],
    ) -> Result<(), String> {
        let entries: Vec<DsnRecipient<'_>> = report
            .recipients
            .iter()
            .map(|(address, original)| DsnRecipient {
                address: address.as_str(),
                action: DsnAction::Delivered,
                diagnostic: "250 2.0.0 delivered to the mailbox",
                remote_host: None,
                original_recipient: original.as_deref(),
                retry_until: None,
            })
            .collect();
        let text = dsn::build(
            &self.reporting_host,
            &report.sender,
            message,
            sealmail_core::time::now_unix(),
            &entries,
            report.envelope_id.as_deref(),
            false,
        );
        let registry = Arc::clone(&self.registry);
        let sender = report.sender.clone();
        let local = blocking(move || registry.lookup(&sender))
            .await
            .map_err(|e| e.to_string())?;
        match (local, &self.outbound) {
            (Some(account), _) => {
                let mailbox = LocalMailbox {
                    mailbox_id: account.mailbox_id,
                };
                self.store_copy(mailbox, &Arc::new(text))
                    .await
                    .map_err(|e| e.to_string())
            }
            (None, Some(queue)) => queue
                .enqueue("", std::slice::from_ref(&report.sender), &text)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            (None, None) => Err("the sender is remote and no relay is configured".into()),
        }
    }

    /// Durably store one copy for a local mailbox: straight into it when a session holds it
    /// open (its sessions see the message at once), else sealed into the queue.
    async fn store_copy(
        &self,
        mailbox: LocalMailbox,
        message: &Arc<Vec<u8>>,
    ) -> sealmail_core::Result<()> {
        let (registry, store) = (Arc::clone(&self.registry), Arc::clone(&self.store));
        let message = Arc::clone(message);
        blocking(move || store_copy_blocking(&registry, &*store, &mailbox.mailbox_id, &message))
            .await
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

/// A success report owed after local delivery.
#[derive(Debug)]
struct SuccessReport {
    sender: String,
    envelope_id: Option<String>,
    /// The recipients that asked, with their ORCPT.
    recipients: Vec<(Address, Option<String>)>,
}

impl SuccessReport {
    /// The report `delivery` asks for, if any: never for a bounce (null reverse-path).
    fn requested(delivery: &Delivery) -> Option<SuccessReport> {
        let recipients: Vec<(Address, Option<String>)> = delivery
            .dsn
            .local_recipients
            .iter()
            .filter(|(_, params)| params.notify.is_some_and(|n| n.success))
            .map(|(address, params)| (address.clone(), params.orcpt.clone()))
            .collect();
        (!recipients.is_empty() && !delivery.sender.is_empty()).then(|| SuccessReport {
            sender: delivery.sender.clone(),
            envelope_id: delivery.dsn.envid.clone(),
            recipients,
        })
    }
}

/// A local mailbox that keeps a copy of the message.
#[derive(Debug)]
struct LocalMailbox {
    mailbox_id: MailboxId,
}

/// One message on its way to local mailboxes, webhooks and the relay.
struct Route<'a> {
    registry: &'a Registry,
    forwarders: &'a Forwarders,
    sender: &'a str,
    message: &'a [u8],
}

impl Route<'_> {
    /// Deliver to `address` as its forwarding says: webhooks and remote forwards are queued
    /// here, the local mailboxes that keep a copy are added to `mailboxes`. `delivered` holds
    /// the addresses already served, so a forwarding loop ends and nobody gets two copies.
    fn deliver_to(
        &self,
        address: &Address,
        hops: usize,
        delivered: &mut HashSet<Address>,
        mailboxes: &mut Vec<LocalMailbox>,
    ) -> sealmail_core::Result<()> {
        if !delivered.insert(address.clone()) {
            return Ok(());
        }
        let forwarding = match hops < MAX_FORWARD_HOPS {
            true => self.registry.forwarding(address.as_str())?,
            false => None,
        };
        let Some(forwarding) = forwarding.filter(|f| !f.is_empty()) else {
            return self.keep_copy(address, mailboxes);
        };
        let mut forwarded = false;
        for webhook in &forwarding.webhooks {
            let Some(queue) = &self.forwarders.webhooks else {
                tracing::warn!(%address, "webhook forwarding configured but no webhook queue runs");
                continue;
            };
            queue
                .enqueue(webhook, address.as_str(), self.sender, self.message)
                .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
            forwarded = true;
        }
        let local_domains = self.registry.list_domains()?;
        let mut remote = Vec::new();
        for target in &forwarding.addresses {
            if self.registry.lookup(target.as_str())?.is_some() {
                self.deliver_to(target, hops + 1, delivered, mailboxes)?;
                forwarded = true;
            } else if local_domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(target.domain()))
            {
                tracing::warn!(%address, %target, "forwarding target is an unknown local address; skipped");
            } else {
                remote.push(target.clone());
            }
        }
        if !remote.is_empty() {
            let result = match &self.forwarders.relay {
                Some(relay) => relay.enqueue(self.sender, &remote, self.message),
                None => Err(RelayError::NotConfigured),
            };
            match result {
                Ok(()) => forwarded = true,
                Err(error) => tracing::warn!(
                    %address, targets = remote.len(), %error,
                    "forwarding to remote addresses failed; the message stays with the local copy"
                ),
            }
        }
        if forwarding.mode == ForwardMode::StoreAndForward || !forwarded {
            if forwarding.mode == ForwardMode::ForwardOnly {
                tracing::warn!(%address, "no forward accepted the message; keeping it in the mailbox");
            }
            return self.keep_copy(address, mailboxes);
        }
        Ok(())
    }

    fn keep_copy(
        &self,
        address: &Address,
        mailboxes: &mut Vec<LocalMailbox>,
    ) -> sealmail_core::Result<()> {
        let account = self
            .registry
            .lookup(address.as_str())?
            .ok_or_else(|| Error::NoSuchAccount(address.to_string()))?;
        mailboxes.push(LocalMailbox {
            mailbox_id: account.mailbox_id,
        });
        Ok(())
    }
}

/// The work of [`LocalDelivery::store_copy`], on a blocking thread (the one that routed the
/// message, for deliveries): the copy is committed there, without a further hand-off, and
/// shares `message` rather than copying it. A login may open (and drain) the mailbox between
/// the check and the sealed write, so an open mailbox is drained after it: the item is
/// durable already, and a failed drain only delays it to the next login.
fn store_copy_blocking<M: MailStore>(
    registry: &Registry,
    store: &M,
    mailbox_id: &MailboxId,
    message: &Arc<Vec<u8>>,
) -> sealmail_core::Result<()> {
    let direct = store.deliver_if_open_blocking(
        mailbox_id,
        Arc::clone(message),
        AppendOptions::default(),
    )?;
    if direct.is_some() {
        return Ok(());
    }
    account::deliver_sealed_to(registry, mailbox_id, message)?;
    if let Err(error) = store.drain_sealed_if_open_blocking(mailbox_id) {
        tracing::warn!(%error, "folding sealed mail into an open mailbox failed; it waits for the next login");
    }
    Ok(())
}

/// `message` with the header `fields` in front, moved within its own buffer: the DATA and
/// BDAT receivers leave room for them after the announced size, so the text is not copied
/// into a second buffer.
fn prepend_fields(mut message: Vec<u8>, fields: &[&[u8]]) -> Vec<u8> {
    let added: usize = fields.iter().map(|field| field.len()).sum();
    let text_len = message.len();
    message.resize(text_len + added, 0);
    message.copy_within(..text_len, added);
    let mut at = 0;
    for field in fields {
        message[at..at + field.len()].copy_from_slice(field);
        at += field.len();
    }
    message
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepended_fields_come_first_in_order_and_reuse_the_room_left_for_them() {
        let mut message = Vec::with_capacity(64);
        message.extend_from_slice(b"Subject: hi\r\n\r\nbody\r\n");
        let buffer = message.as_ptr();
        let full = prepend_fields(message, &[b"A: 1\r\n", b"", b"B: 2\r\n"]);
        assert_eq!(full, b"A: 1\r\nB: 2\r\nSubject: hi\r\n\r\nbody\r\n");
        assert_eq!(full.as_ptr(), buffer, "moved within its buffer");
        assert_eq!(prepend_fields(Vec::new(), &[b"A: 1\r\n"]), b"A: 1\r\n");
    }
}

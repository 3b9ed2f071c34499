//! The seam between inbound delivery and the outbound relay: forwarding to an address on
//! another domain hands the message to a [`Relay`], which the outbound queue ([`crate::outbound::OutboundQueue`]) (MX
//! lookup, STARTTLS, DKIM signing, retries, DSN) implements.

use sealmail_core::registry::Address;

/// A durable queue of mail for remote recipients.
pub trait Relay: Send + Sync + std::fmt::Debug + 'static {
    /// Queue `message` for `recipients` (all on other domains) with the envelope sender
    /// `sender` (empty for a null reverse-path). Called from a blocking thread; returns only
    /// once the message survives a crash, since the caller acknowledges the inbound message
    /// with `250` next.
    fn enqueue(
        &self,
        sender: &str,
        recipients: &[Address],
        message: &[u8],
    ) -> Result<(), RelayError>;
}

/// Why a message could not be queued for a remote recipient.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// This server has no outbound relay configured.
    #[error("no outbound relay is configured on this server")]
    NotConfigured,
    /// The relay refuses this message or recipient for good.
    #[error("relay refused the message: {0}")]
    Refused(String),
    /// The queue could not store it (disk, I/O).
    #[error("outbound queue failed: {0}")]
    Queue(String),
}

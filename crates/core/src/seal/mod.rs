//! Sealing mail for offline recipients, and the queue that holds it until they log in.
//!
//! When mail arrives for a mailbox whose key is not in memory, the server cannot write into the
//! encrypted mailbox file. It seals the message to the mailbox's public key instead — a hybrid of
//! X25519 and ML-KEM-768, so it stays confidential against a future quantum computer — and
//! queues it. The server keeps no key that opens the queue; the owner's next login drains it.
//!
//! - [`keys`]: the per-mailbox [`SealingKeyPair`] and its byte forms.
//! - [`envelope`]: [`seal`] and [`open`], the versioned sealed-item format.
//! - [`queue`]: [`SealedQueue`], durable one-file-per-message storage with crash-safe draining.

pub mod envelope;
pub mod keys;
pub mod queue;

pub use envelope::{MAX_SEALED_MESSAGE_LEN, SEAL_FORMAT_VERSION, open, seal};
pub use keys::{SealingKeyPair, SealingPublicKey, SealingSecretKey};
pub use queue::{DrainReport, ItemId, QuarantinedItem, QueueSummary, SealedQueue};

//! sealmail-core: everything about mail data, and nothing about sockets.
//!
//! - [`key`]: the mailbox data key (DEK) and the key-encryption key derived from a password.
//! - [`mailstore`]: the async `MailStore` boundary protocol servers use, and its local
//!   implementation.
//! - [`store`]: one SQLCipher file per mailbox: folders, messages, flags, search, quota.
//! - [`registry`]: accounts: addresses, mailbox ids, wrapped keys, quotas.
//! - [`backup`]: encrypted snapshots, restore, retention, export.
//! - [`login_cache`]: recently unwrapped keys, so reconnecting clients skip Argon2id.
//! - [`login_limiter`]: failed-login rate limits per client IP and per address.
//! - [`seal`]: hybrid post-quantum sealing of mail for offline recipients, and its queue.
//! - [`account`]: what every front end does with a password: open, drain, deliver.
//! - [`query`]: Mongo-style JSON queries compiled to parameterized SQL over a declared schema.
#![forbid(unsafe_code)]

pub mod account;
pub mod backup;
pub mod error;
pub mod import;
pub mod key;
pub mod login_cache;
pub mod login_limiter;
pub mod mailstore;
pub mod query;
pub mod registry;
pub mod seal;
pub mod store;
pub mod time;

pub use error::{Error, Result};
pub use key::MailboxKey;

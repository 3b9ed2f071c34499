//! sealmail-core: everything about mail data, and nothing about sockets.
//!
//! - [`key`]: the mailbox data key (DEK) and the key-encryption key derived from a password.
//! - [`mailstore`]: the async `MailStore` boundary protocol servers use, and its local
//!   implementation.
//! - [`store`]: one SQLCipher file per mailbox: folders, messages, flags, search, quota.
#![forbid(unsafe_code)]

pub mod error;
pub mod key;
pub mod mailstore;
pub mod store;
pub mod time;

pub use error::{Error, Result};
pub use key::MailboxKey;

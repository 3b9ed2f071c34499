//! sealmail-imap: an IMAP4rev1 / IMAP4rev2 server over the `MailStore` boundary.
#![forbid(unsafe_code)]
pub mod compress;
pub mod metrics;
pub mod proto;
pub mod server;
pub mod session;

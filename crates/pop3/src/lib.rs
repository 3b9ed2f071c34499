//! sealmail-pop3: a POP3 server (RFC 1939 with CAPA, STLS and AUTH PLAIN) over the
//! `MailStore` boundary. It shows the INBOX only, and applies deletions at QUIT.
//!
//! - [`proto`]: bounded line framing, command parsing, response encoding, dot-stuffing; no I/O.
//! - [`session`]: the AUTHORIZATION -> TRANSACTION -> UPDATE state machine.
//! - [`server`]: the tokio driver: TLS, connection limits, timeouts, graceful shutdown.
//! - [`metrics`]: hooks through which the binary counts commands, logins and connections.
#![forbid(unsafe_code)]
pub mod metrics;
pub mod proto;
pub mod server;
pub mod session;

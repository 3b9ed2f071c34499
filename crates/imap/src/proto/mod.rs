//! The IMAP protocol layer: framing, parsing and encoding, bounded, with no I/O.
//!
//! - [`frame`]: split a byte stream into commands with their literals, within [`Limits`].
//! - [`parse`]: one framed command -> a typed [`Command`] (RFC 3501, RFC 9051 and extensions).
//! - [`encode`]: typed [`Response`]s -> bytes (and commands -> bytes, for clients and tests).
//! - [`utf7`]: modified UTF-7 mailbox names.

pub mod encode;
pub mod frame;
pub mod parse;
pub mod response;
pub mod types;
pub mod utf7;

pub use encode::{EncodeOptions, encode_command, encode_response, response_bytes};
pub use frame::{FrameError, FrameEvent, Framer, Limits};
pub use parse::{ParseError, ParseFailure, ParseOptions, is_idle_done, parse_command};
pub use response::*;
pub use types::*;

#[cfg(test)]
mod tests;

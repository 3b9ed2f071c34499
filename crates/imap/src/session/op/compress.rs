//! COMPRESS (RFC 4978). Only DEFLATE exists; the driver wraps the stream once the tagged OK is
//! out (see [`crate::compress`]).

use crate::proto::Code;
use crate::session::{Done, Failure, OpResult, Session};
use sealmail_core::mailstore::MailStore;

pub(crate) fn run<M: MailStore>(session: &mut Session<M>, algorithm: &str) -> OpResult {
    if session.compressed {
        return Err(Failure::no_code(
            Code::CompressionActive,
            "DEFLATE is already active",
        ));
    }
    if algorithm != "DEFLATE" {
        return Err(Failure::bad("unknown compression algorithm"));
    }
    session.compressed = true;
    // TLS cannot start inside the compressed stream (RFC 4978 section 4: TLS goes below).
    session.starttls_offered = false;
    Ok(Done::ok("DEFLATE active"))
}

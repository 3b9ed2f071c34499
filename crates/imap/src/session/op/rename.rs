//! RENAME (RFC 9051 section 6.3.6).

use crate::proto::Code;
use crate::session::{Done, Failure, OpResult, Session};
use sealmail_core::mailstore::{MailSession, MailStore};

pub(crate) async fn run<M: MailStore>(
    session: &mut Session<M>,
    from: String,
    to: String,
) -> OpResult {
    let authed = session.authed()?;
    authed
        .mail
        .rename_folder(&from, &to)
        .await
        .map_err(|e| Failure::store(e, Code::NonExistent))?;
    Ok(Done::ok("RENAME completed"))
}

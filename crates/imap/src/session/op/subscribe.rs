//! SUBSCRIBE / UNSUBSCRIBE (RFC 9051 sections 6.3.7-6.3.8).

use crate::proto::Code;
use crate::session::{Done, Failure, OpResult, Session};
use sealmail_core::mailstore::{MailSession, MailStore};

pub(crate) async fn run<M: MailStore>(
    session: &mut Session<M>,
    folder: String,
    subscribe: bool,
) -> OpResult {
    let authed = session.authed()?;
    authed
        .mail
        .set_subscribed(&folder, subscribe)
        .await
        .map_err(|e| Failure::store(e, Code::NonExistent))?;
    Ok(Done::ok(if subscribe {
        "SUBSCRIBE completed"
    } else {
        "UNSUBSCRIBE completed"
    }))
}

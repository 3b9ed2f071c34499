//! DELETE (RFC 9051 section 6.3.5).

use crate::proto::Code;
use crate::session::{Done, Failure, OpResult, Session};
use sealmail_core::mailstore::{MailSession, MailStore};

pub(crate) async fn run<M: MailStore>(session: &mut Session<M>, folder: String) -> OpResult {
    let authed = session.authed()?;
    authed
        .mail
        .delete_folder(&folder)
        .await
        .map_err(|e| Failure::store(e, Code::NonExistent))?;
    if authed.selected.as_ref().is_some_and(|s| s.folder == folder) {
        authed.selected = None;
    }
    Ok(Done::ok("DELETE completed"))
}

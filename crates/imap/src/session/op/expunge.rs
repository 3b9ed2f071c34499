//! EXPUNGE and UID EXPUNGE (RFC 9051 section 6.4.3, UIDPLUS RFC 4315).

use crate::proto::{Code, SequenceSet};
use crate::session::{Done, Failure, OpResult, Responder, Session};
use sealmail_core::mailstore::{MailSession, MailStore};

pub(crate) async fn run<M: MailStore>(
    session: &mut Session<M>,
    uids: Option<SequenceSet>,
    out: &mut Responder<'_>,
) -> OpResult {
    let qresync = session.enabled.qresync;
    let authed = session.authed()?;
    let Some(selected) = authed.selected.as_mut() else {
        return Err(Failure::bad("no folder selected"));
    };
    if selected.read_only {
        return Err(Failure::no_code(Code::ReadOnly, "folder is read-only"));
    }
    let restrict = match &uids {
        Some(set) => Some(selected.uid_set(&selected.resolve(set, true)?)),
        None => None,
    };
    let expunged = authed
        .mail
        .expunge(&selected.folder, restrict)
        .await
        .map_err(|e| Failure::store(e, Code::NonExistent))?;
    selected.report_expunged(&expunged, qresync, out);
    Ok(Done::ok("EXPUNGE completed"))
}

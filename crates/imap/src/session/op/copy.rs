//! COPY and MOVE (RFC 9051 sections 6.4.7-6.4.8, MOVE RFC 6851, COPYUID RFC 4315).

use crate::proto::{Code, Response, SequenceSet, StatusKind, StatusResponse};
use crate::session::{Done, Failure, OpResult, Responder, Session};
use sealmail_core::mailstore::{MailSession, MailStore};

pub(crate) async fn run<M: MailStore>(
    session: &mut Session<M>,
    uid: bool,
    set: SequenceSet,
    target: String,
    is_move: bool,
    out: &mut Responder<'_>,
) -> OpResult {
    let qresync = session.enabled.qresync;
    let authed = session.authed()?;
    let Some(selected) = authed.selected.as_mut() else {
        return Err(Failure::bad("no folder selected"));
    };
    if is_move && selected.read_only {
        return Err(Failure::no_code(Code::ReadOnly, "folder is read-only"));
    }
    let indexes = selected.resolve(&set, uid)?;
    if indexes.is_empty() {
        return Ok(Done::ok("nothing to copy"));
    }
    let uids = selected.uid_set(&indexes);
    let result = if is_move {
        authed
            .mail
            .move_messages(&selected.folder, uids, &target)
            .await
    } else {
        authed
            .mail
            .copy_messages(&selected.folder, uids, &target)
            .await
    }
    .map_err(|e| Failure::store(e, Code::TryCreate))?;
    let (source, destination): (Vec<u32>, Vec<u32>) = result.pairs.iter().copied().unzip();
    let code = Code::CopyUid {
        uid_validity: result.uidvalidity,
        source: source.clone(),
        destination,
    };
    if !is_move {
        return Ok(Done::with_code(code, "COPY completed"));
    }
    // RFC 6851 section 4.3: COPYUID in an untagged OK before the expunges.
    out.push(&Response::Status(StatusResponse::untagged(
        StatusKind::Ok,
        Some(code),
        "moved",
    )));
    let mut source = source;
    source.sort_unstable();
    selected.report_expunged(&source, qresync, out);
    Ok(Done::ok("MOVE completed"))
}

//! SELECT / EXAMINE (RFC 9051 sections 6.3.2-6.3.3, with CONDSTORE and QRESYNC from RFC 7162),
//! CLOSE and UNSELECT.

use crate::proto::{Code, Data, FetchItem, Response, SelectParams, StatusKind, StatusResponse};
use crate::session::selected::Selected;
use crate::session::{Done, Failure, OpResult, Responder, Session, convert};
use sealmail_core::mailstore::{MailSession, MailStore};
use sealmail_core::store::UidSet;

pub(crate) async fn select<M: MailStore>(
    session: &mut Session<M>,
    folder: String,
    read_only: bool,
    params: SelectParams,
    out: &mut Responder<'_>,
) -> OpResult {
    if params.qresync.is_some() && !session.enabled.qresync {
        return Err(Failure::bad("QRESYNC parameter without ENABLE QRESYNC"));
    }
    if params.condstore {
        session.enabled.condstore = true;
    }
    let enabled = session.enabled;
    let authed = session.authed()?;
    // A failed SELECT leaves no folder selected (RFC 9051 section 6.3.2).
    if authed.selected.take().is_some() {
        out.push(&Response::Status(StatusResponse::untagged(
            StatusKind::Ok,
            Some(Code::Closed),
            "previous folder closed",
        )));
    }
    let info = authed
        .mail
        .folder(&folder)
        .await
        .map_err(|e| Failure::store(e, Code::NonExistent))?;
    let messages = authed
        .mail
        .message_states(&info.path)
        .await
        .map_err(|e| Failure::store(e, Code::NonExistent))?;
    // Drain changes from before this snapshot: they are already in it.
    while authed.changes.try_recv().is_ok() {}
    authed.dirty = false;

    let flags = convert::system_flags();
    out.push(&Response::Data(Data::Flags(flags.clone())));
    out.push(&Response::Data(Data::Exists(messages.len() as u32)));
    if !enabled.rev2 {
        out.push(&Response::Data(Data::Recent(0)));
        if let Some(i) = messages.iter().position(|m| !m.flags.seen) {
            out.push(&Response::Status(StatusResponse::untagged(
                StatusKind::Ok,
                Some(Code::Unseen(i as u32 + 1)),
                "first unseen",
            )));
        }
    }
    let mut permanent = flags;
    permanent.push("\\*".into());
    let untagged_ok = |code, text: &str| {
        Response::Status(StatusResponse::untagged(StatusKind::Ok, Some(code), text))
    };
    out.push(&untagged_ok(
        Code::PermanentFlags(if read_only { Vec::new() } else { permanent }),
        "flags permitted",
    ));
    out.push(&untagged_ok(
        Code::UidValidity(info.uidvalidity),
        "UIDs valid",
    ));
    out.push(&untagged_ok(
        Code::UidNext(info.uidnext),
        "predicted next UID",
    ));
    out.push(&untagged_ok(
        Code::MailboxId(info.mailbox_id()),
        "mailbox id",
    ));
    if enabled.condstore {
        out.push(&untagged_ok(
            Code::HighestModSeq(info.highest_modseq),
            "highest modseq",
        ));
    }
    if enabled.rev2 {
        out.push(&Response::Data(Data::List {
            attributes: Vec::new(),
            delimiter: Some(sealmail_core::store::DELIMITER),
            mailbox: info.path.clone(),
            child_info: Vec::new(),
            old_name: None,
        }));
    }
    let mut selected = Selected {
        folder: info.path.clone(),
        read_only,
        messages,
        known_modseq: info.highest_modseq,
        expunge_modseq: info.highest_modseq,
        expunge_pending: false,
        saved_search: Vec::new(),
    };
    if let Some(q) = params
        .qresync
        .filter(|q| q.uid_validity == info.uidvalidity)
    {
        // RFC 7162 section 3.2.5: VANISHED (EARLIER) for known UIDs expunged since the client's
        // MODSEQ, then FETCH for messages changed since.
        let known = q
            .known_uids
            .as_ref()
            .map(|set| UidSet::from_ranges(set.resolved_ranges(selected.largest_uid().max(1))));
        let vanished: Vec<u32> = authed
            .mail
            .expunged_since(&selected.folder, q.modseq)
            .await
            .map_err(|e| Failure::store(e, Code::NonExistent))?
            .into_iter()
            .filter(|uid| known.as_ref().is_none_or(|k| k.contains(*uid)))
            .collect();
        if !vanished.is_empty() {
            out.push(&Response::Data(Data::Vanished {
                earlier: true,
                uids: vanished,
            }));
        }
        for (i, m) in selected.messages.iter().enumerate() {
            if m.modseq > q.modseq {
                out.push(&Response::Data(Data::Fetch {
                    seq: i as u32 + 1,
                    items: vec![
                        FetchItem::Uid(m.uid),
                        FetchItem::Flags(convert::flags(&m.flags)),
                        FetchItem::ModSeq(m.modseq),
                    ],
                }));
            }
        }
        out.flush_if_large().await?;
    }
    selected.saved_search.clear();
    authed.selected = Some(selected);
    Ok(Done::with_code(
        if read_only {
            Code::ReadOnly
        } else {
            Code::ReadWrite
        },
        if read_only {
            "EXAMINE completed"
        } else {
            "SELECT completed"
        },
    ))
}

/// CLOSE (`expunge` true: remove `\Deleted` messages silently) or UNSELECT.
pub(crate) async fn close<M: MailStore>(session: &mut Session<M>, expunge: bool) -> OpResult {
    let authed = session.authed()?;
    let Some(selected) = authed.selected.take() else {
        return Err(Failure::bad("no folder selected"));
    };
    if expunge && !selected.read_only {
        authed
            .mail
            .expunge(&selected.folder, None)
            .await
            .map_err(|e| Failure::store(e, Code::NonExistent))?;
    }
    Ok(Done::ok(if expunge {
        "CLOSE completed"
    } else {
        "UNSELECT completed"
    }))
}

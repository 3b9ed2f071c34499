//! APPEND (RFC 9051 section 6.3.12, MULTIAPPEND from RFC 3502, APPENDUID from RFC 4315).

use crate::proto::{AppendMessage, Code};
use crate::session::{Done, Failure, OpResult, Responder, Session, convert};
use sealmail_core::mailstore::{MailSession, MailStore};
use sealmail_core::store::{AppendOptions, Flags};

pub(crate) async fn run<M: MailStore>(
    session: &mut Session<M>,
    folder: String,
    messages: Vec<AppendMessage>,
    out: &mut Responder<'_>,
) -> OpResult {
    let limit = session.config.max_message_size;
    let mut batch = Vec::with_capacity(messages.len());
    for message in messages {
        // RFC 6855 section 4: the UTF8 data item only after ENABLE UTF8=ACCEPT.
        if message.utf8 && !session.enabled.utf8_accept {
            return Err(Failure::bad("APPEND UTF8 needs ENABLE UTF8=ACCEPT"));
        }
        if message.data.len() as u64 > limit {
            return Err(Failure::no_code(
                Code::TooBig,
                "message exceeds APPENDLIMIT",
            ));
        }
        let options = AppendOptions {
            flags: convert::store_flags(&message.flags)?,
            internal_date: message.internal_date.map(|d| d.unix_timestamp()),
        };
        batch.push((message.data, options));
    }
    let flags: Vec<Flags> = batch.iter().map(|(_, o)| o.flags.clone()).collect();
    // With NOTIFY, new messages of the selected folder go through the general path, which
    // also sends the FETCH that NOTIFY's MessageNew may ask for.
    let notify = session.notify.is_some();
    let authed = session.authed()?;
    let appended = authed
        .mail
        .append(&folder, batch)
        .await
        .map_err(|e| Failure::store(e, Code::TryCreate))?;
    let Some(first) = appended.first() else {
        return Err(Failure::bad("no message to append"));
    };
    if let Some(selected) = authed.selected.as_mut()
        && !notify
        && sealmail_core::store::normalize_folder_name(&folder)
            .is_ok_and(|path| path == selected.folder)
    {
        selected.record_own_append(&appended, &flags, out);
    }
    Ok(Done::with_code(
        Code::AppendUid {
            uid_validity: first.uidvalidity,
            uids: appended.iter().map(|a| a.uid).collect(),
        },
        "APPEND completed",
    ))
}

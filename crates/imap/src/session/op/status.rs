//! STATUS (RFC 9051 section 6.3.11; SIZE from RFC 8438, HIGHESTMODSEQ from RFC 7162,
//! APPENDLIMIT from RFC 7889).

use crate::proto::{Code, Data, Response, StatusItem, StatusValue};
use crate::session::{Done, Failure, OpResult, Responder, Session};
use sealmail_core::mailstore::{MailSession, MailStore};
use sealmail_core::store::{FolderInfo, SearchKey};

pub(crate) async fn run<M: MailStore>(
    session: &mut Session<M>,
    folder: String,
    items: Vec<StatusItem>,
    out: &mut Responder<'_>,
) -> OpResult {
    let limit = session.config.max_message_size;
    let authed = session.authed()?;
    let info = authed
        .mail
        .folder(&folder)
        .await
        .map_err(|e| Failure::store(e, Code::NonExistent))?;
    respond(&authed.mail, &info, &items, limit, out).await?;
    Ok(Done::ok("STATUS completed"))
}

/// Write one `* STATUS` response (shared with LIST-STATUS).
pub(crate) async fn respond<S: MailSession>(
    mail: &S,
    info: &FolderInfo,
    items: &[StatusItem],
    append_limit: u64,
    out: &mut Responder<'_>,
) -> Result<(), Failure> {
    let mut values = Vec::with_capacity(items.len());
    for &item in items {
        let value = match item {
            StatusItem::Messages => u64::from(info.messages),
            StatusItem::Recent => 0,
            StatusItem::UidNext => u64::from(info.uidnext),
            StatusItem::UidValidity => u64::from(info.uidvalidity),
            StatusItem::Unseen => u64::from(info.unseen),
            StatusItem::Size => info.size,
            StatusItem::HighestModSeq => info.highest_modseq,
            StatusItem::AppendLimit => append_limit,
            StatusItem::Deleted => mail
                .search(&info.path, SearchKey::Deleted(true))
                .await
                .map_err(|e| Failure::store(e, Code::NonExistent))?
                .len() as u64,
            StatusItem::MailboxId => {
                values.push((item, StatusValue::ObjectId(info.mailbox_id())));
                continue;
            }
        };
        values.push((item, StatusValue::Number(value)));
    }
    out.push(&Response::Data(Data::Status {
        mailbox: info.path.clone(),
        items: values,
    }));
    Ok(())
}

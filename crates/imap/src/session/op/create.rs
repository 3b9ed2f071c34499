//! CREATE (RFC 9051 section 6.3.4, with CREATE-SPECIAL-USE from RFC 6154).

use crate::proto::Code;
use crate::session::{Done, Failure, OpResult, Session};
use sealmail_core::mailstore::{MailSession, MailStore};
use sealmail_core::store::DELIMITER;

pub(crate) async fn run<M: MailStore>(
    session: &mut Session<M>,
    folder: String,
    special_use: Vec<String>,
) -> OpResult {
    if special_use.len() > 1 {
        return Err(Failure::no_code(
            Code::Cannot,
            "one special-use attribute per folder",
        ));
    }
    // A trailing delimiter only says the client intends subfolders (RFC 9051 section 6.3.4).
    let folder = folder.trim_end_matches(DELIMITER).to_string();
    let authed = session.authed()?;
    let info = authed
        .mail
        .create_folder(&folder, special_use.first().map(String::as_str))
        .await
        .map_err(|e| match e {
            sealmail_core::Error::InvalidArgument(text) => Failure::no_code(Code::UseAttr, text),
            other => Failure::store(other, Code::NonExistent),
        })?;
    // RFC 8474 section 4.1: the new folder's MAILBOXID in the tagged OK.
    Ok(Done::with_code(
        Code::MailboxId(info.mailbox_id()),
        "CREATE completed",
    ))
}

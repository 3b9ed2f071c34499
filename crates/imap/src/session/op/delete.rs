//! DELETE (RFC 9051 section 6.3.5).
//!
//! A mailbox with inferiors may be deleted: its messages go, its subfolders stay, and its name
//! becomes a `\Noselect` level of hierarchy (the second example of section 6.3.5; Dovecot does
//! the same). Deleting such a name, one that has inferiors but is not a mailbox, is the error
//! the section names; it is answered `NO [HASCHILDREN]`.

use crate::proto::Code;
use crate::session::{Done, Failure, OpResult, Session};
use sealmail_core::Error as StoreError;
use sealmail_core::mailstore::{MailSession, MailStore};
use sealmail_core::store::{DELIMITER, normalize_folder_name};

pub(crate) async fn run<M: MailStore>(session: &mut Session<M>, folder: String) -> OpResult {
    let authed = session.authed()?;
    match authed.mail.delete_folder(&folder).await {
        Ok(()) => {}
        Err(StoreError::NoSuchFolder(name)) => {
            let path = normalize_folder_name(&folder).unwrap_or(name);
            let prefix = format!("{path}{DELIMITER}");
            let folders = authed
                .mail
                .list_folders()
                .await
                .map_err(|e| Failure::store(e, Code::NonExistent))?;
            if folders.iter().any(|f| f.path.starts_with(&prefix)) {
                return Err(Failure::no_code(
                    Code::HasChildren,
                    format!("{path:?} is not a mailbox, only the parent of others"),
                ));
            }
            return Err(Failure::no_code(
                Code::NonExistent,
                format!("no folder named {path:?}"),
            ));
        }
        Err(e) => return Err(Failure::store(e, Code::NonExistent)),
    }
    if authed.selected.as_ref().is_some_and(|s| s.folder == folder) {
        authed.selected = None;
    }
    Ok(Done::ok("DELETE completed"))
}

//! NOTIFY (RFC 5465): SET replaces what the session watches, NONE turns it off. The events
//! themselves are reported by `Session::send_updates` (see [`crate::session`]).

use crate::proto::NotifyCommand;
use crate::session::notify::Notify;
use crate::session::{Done, OpResult, Responder, Session};
use sealmail_core::mailstore::MailStore;

pub(crate) async fn run<M: MailStore>(
    session: &mut Session<M>,
    command: NotifyCommand,
    out: &mut Responder<'_>,
) -> OpResult {
    let NotifyCommand::Set { status, groups } = command else {
        session.notify = None;
        return Ok(Done::ok("NOTIFY NONE completed"));
    };
    let notify = Notify::new(groups)?;
    // Changes made before this command are not events of the new set: report what is due
    // under the old one first.
    session.send_updates(out, true).await?;
    let condstore = session.enabled.condstore;
    let authed = session.authed()?;
    if status {
        let selected = authed.selected.as_ref().map(|s| s.folder.as_str());
        notify
            .initial_status(&authed.mail, selected, condstore, out)
            .await?;
    }
    session.notify = Some(notify);
    Ok(Done::ok("NOTIFY completed"))
}

//! ENABLE (RFC 5161): CONDSTORE, QRESYNC (implies CONDSTORE), IMAP4rev2 and UTF8=ACCEPT
//! (RFC 6855).

use crate::proto::{Data, Response};
use crate::session::{Done, OpResult, Responder, Session};
use sealmail_core::mailstore::MailStore;

pub(crate) fn run<M: MailStore>(
    session: &mut Session<M>,
    capabilities: Vec<String>,
    out: &mut Responder<'_>,
) -> OpResult {
    let mut enabled = Vec::new();
    for capability in capabilities {
        let newly = match capability.as_str() {
            "CONDSTORE" => !std::mem::replace(&mut session.enabled.condstore, true),
            "QRESYNC" => {
                session.enabled.condstore = true;
                !std::mem::replace(&mut session.enabled.qresync, true)
            }
            "IMAP4REV2" => !std::mem::replace(&mut session.enabled.rev2, true),
            "UTF8=ACCEPT" => !std::mem::replace(&mut session.enabled.utf8_accept, true),
            // Unknown capabilities are ignored (RFC 5161 section 3.1).
            _ => false,
        };
        if newly {
            enabled.push(if capability == "IMAP4REV2" {
                "IMAP4rev2".to_string()
            } else {
                capability
            });
        }
    }
    out.push(&Response::Data(Data::Enabled(enabled)));
    Ok(Done::ok("ENABLE completed"))
}

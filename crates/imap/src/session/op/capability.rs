//! CAPABILITY (RFC 9051 section 6.1.1). Only extensions that fully work are advertised.

use crate::proto::{Data, Response};
use crate::session::{Done, OpResult, Responder, Session, State};
use sealmail_core::mailstore::MailStore;

impl<M: MailStore> Session<M> {
    pub(crate) fn capabilities(&self) -> Vec<String> {
        let mut caps: Vec<&str> = vec![
            "IMAP4rev1",
            "IMAP4rev2",
            "LITERAL+",
            "SASL-IR",
            "ID",
            "ENABLE",
            "IDLE",
        ];
        match self.state {
            State::NotAuthenticated => {
                if self.starttls_offered {
                    caps.push("STARTTLS");
                }
                if self.secure || self.config.allow_plaintext_auth {
                    caps.push("AUTH=PLAIN");
                } else {
                    caps.push("LOGINDISABLED");
                }
            }
            _ => caps.extend([
                "NAMESPACE",
                "UNSELECT",
                "UIDPLUS",
                "MOVE",
                "CHILDREN",
                "SPECIAL-USE",
                "CREATE-SPECIAL-USE",
                "LIST-EXTENDED",
                "LIST-STATUS",
                "STATUS=SIZE",
                "CONDSTORE",
                "QRESYNC",
                "ESEARCH",
                "SEARCHRES",
                "QUOTA",
                "QUOTA=RES-STORAGE",
                "UNAUTHENTICATE",
                "BINARY",
                "PREVIEW",
                "SORT",
                "SORT=DISPLAY",
                "ESORT",
                "THREAD=ORDEREDSUBJECT",
                "THREAD=REFERENCES",
                "OBJECTID",
                "COMPRESS=DEFLATE",
                "SAVEDATE",
                "UTF8=ACCEPT",
                "NOTIFY",
            ]),
        }
        let mut caps: Vec<String> = caps.into_iter().map(String::from).collect();
        if !matches!(self.state, State::NotAuthenticated) {
            caps.push(format!("APPENDLIMIT={}", self.config.max_message_size));
        }
        caps
    }
}

pub(crate) fn run<M: MailStore>(session: &Session<M>, out: &mut Responder<'_>) -> OpResult {
    out.push(&Response::Data(Data::Capability(session.capabilities())));
    Ok(Done::ok("CAPABILITY completed"))
}

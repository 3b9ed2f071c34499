//! THREAD and UID THREAD (RFC 5256): ORDEREDSUBJECT and REFERENCES. The store builds the
//! trees from data stored at append time; this maps UIDs to the numbers the client asked for.

use crate::proto::{Code, Data, Response, SearchKey, ThreadAlgorithm, ThreadList};
use crate::session::op::search::Positions;
use crate::session::op::sort::check_charset;
use crate::session::{Done, Failure, OpResult, Responder, Session, convert};
use sealmail_core::mailstore::{MailSession, MailStore};
use sealmail_core::store::{self, UidSet};

pub(crate) async fn run<M: MailStore>(
    session: &mut Session<M>,
    uid: bool,
    algorithm: ThreadAlgorithm,
    charset: &str,
    key: &SearchKey,
    out: &mut Responder<'_>,
) -> OpResult {
    check_charset(charset)?;
    let authed = session.authed()?;
    let Some(selected) = authed.selected.as_mut() else {
        return Err(Failure::bad("no folder selected"));
    };
    // Thread only messages this session knows about: a message appended meanwhile has a
    // higher UID and is announced with EXISTS first. (Restricting the rows, rather than
    // dropping nodes afterwards, keeps the trees well formed.)
    let known = store::SearchKey::Uids(UidSet::from_ranges([(1, selected.largest_uid())]));
    let key = store::SearchKey::And(vec![convert::search_key(key, selected)?, known]);
    let algorithm = match algorithm {
        ThreadAlgorithm::OrderedSubject => store::ThreadAlgorithm::OrderedSubject,
        ThreadAlgorithm::References => store::ThreadAlgorithm::References,
    };
    let threads = if selected.messages.is_empty() {
        store::Threads::default()
    } else {
        authed
            .mail
            .thread(&selected.folder, algorithm, key)
            .await
            .map_err(|e| Failure::store(e, Code::NonExistent))?
    };
    // UID THREAD keeps the UIDs. A message expunged by another session but not yet reported
    // to this one is not in the store's answer at all, so every UID maps; a node that does
    // not would be left out with its subtree.
    let threads = if uid {
        threads
    } else {
        // Every message appears once in the trees: about as many lookups as the folder has.
        let positions = Positions::new(selected, selected.messages.len());
        threads.renumber(|uid| positions.index_of(uid).map(|index| index as u32 + 1))
    };
    let list = ThreadList {
        nodes: threads
            .entries()
            .iter()
            .map(|entry| (entry.uid, entry.children))
            .collect(),
    };
    out.push(&Response::Data(Data::Thread(list)));
    Ok(Done::ok("THREAD completed"))
}

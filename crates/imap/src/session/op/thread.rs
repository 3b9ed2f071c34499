//! THREAD and UID THREAD (RFC 5256): ORDEREDSUBJECT and REFERENCES. The store builds the
//! trees from data stored at append time; this maps UIDs to the numbers the client asked for.

use crate::proto::{Code, Data, Response, SearchKey, ThreadAlgorithm, ThreadNode};
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
    out.push(&Response::Data(Data::Thread(trees(&threads))));
    Ok(Done::ok("THREAD completed"))
}

/// The flat store threads as response trees, built without recursion: a hostile reply chain
/// can be deeper than a thread's stack allows.
fn trees(threads: &store::Threads) -> Vec<ThreadNode> {
    let mut roots = Vec::new();
    // Open nodes: the node being built and the children it still waits for.
    let mut open: Vec<(ThreadNode, u32)> = Vec::new();
    for entry in threads.entries() {
        open.push((
            ThreadNode {
                id: entry.uid,
                children: Vec::with_capacity(entry.children as usize),
            },
            entry.children,
        ));
        while let Some((_, 0)) = open.last() {
            let Some((node, _)) = open.pop() else { break };
            match open.last_mut() {
                Some((parent, due)) => {
                    parent.children.push(node);
                    *due -= 1;
                }
                None => roots.push(node),
            }
        }
    }
    roots
}

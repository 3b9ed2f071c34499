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
        Vec::new()
    } else {
        authed
            .mail
            .thread(&selected.folder, algorithm, key)
            .await
            .map_err(|e| Failure::store(e, Code::NonExistent))?
    };
    // Every message appears once in the trees: about as many lookups as the folder has (none
    // for UID THREAD, which keeps the UIDs).
    let lookups = if uid { 0 } else { selected.messages.len() };
    let positions = Positions::new(selected, lookups);
    let threads = threads
        .into_iter()
        .filter_map(|t| numbered(t, &positions, uid))
        .collect();
    out.push(&Response::Data(Data::Thread(threads)));
    Ok(Done::ok("THREAD completed"))
}

/// A store thread with UIDs replaced by sequence numbers (or kept, for UID THREAD). A message
/// expunged by another session but not yet reported to this one is not in the store's answer
/// at all, so every UID here maps; a node that does not is dropped with its subtree. Built with
/// an explicit stack: a hostile reply chain can be deeper than a thread's stack allows.
fn numbered(
    mut root: store::ThreadNode,
    positions: &Positions<'_>,
    uid: bool,
) -> Option<ThreadNode> {
    /// A node being built: its id, the store children still to convert, the converted ones.
    struct Frame {
        id: u32,
        pending: std::vec::IntoIter<store::ThreadNode>,
        built: Vec<ThreadNode>,
    }
    let id_of = |node: &store::ThreadNode| match node.uid {
        0 => Some(0),
        u if uid => Some(u),
        u => positions.index_of(u).map(|index| index as u32 + 1),
    };
    let mut stack = vec![Frame {
        id: id_of(&root)?,
        pending: std::mem::take(&mut root.children).into_iter(),
        built: Vec::new(),
    }];
    loop {
        let top = stack.last_mut()?;
        match top.pending.next() {
            Some(mut child) => {
                // A child that does not map is dropped here with its subtree.
                if let Some(id) = id_of(&child) {
                    stack.push(Frame {
                        id,
                        pending: std::mem::take(&mut child.children).into_iter(),
                        built: Vec::new(),
                    });
                }
            }
            None => {
                let frame = stack.pop()?;
                let node = ThreadNode {
                    id: frame.id,
                    children: frame.built,
                };
                match stack.last_mut() {
                    Some(parent) => parent.built.push(node),
                    None => return Some(node),
                }
            }
        }
    }
}

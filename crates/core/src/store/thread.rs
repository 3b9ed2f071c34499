//! THREAD (RFC 5256 section 3): ORDEREDSUBJECT and REFERENCES.
//!
//! Threading only ever asks whether two Message-IDs, or two base subjects, are equal. So what it
//! reads are 64-bit digests of them ([`thread_key`]), computed at append time and kept with the
//! parent chain and the sent date in a covering index (schema version 5): a THREAD reads one
//! compact row per message, allocates nothing per message, and compares integers. The
//! algorithms work on an arena of containers with explicit stacks, so a hostile, very deep
//! References chain cannot exhaust the stack while threading.

use super::Mailbox;
use super::folders::normalize_folder_name;
use super::search::{SearchKey, filter_sql};
use crate::error::{Error, Result};
use crate::time::parse_iso8601_utc;
use rusqlite::OptionalExtension;
use rusqlite::types::ValueRef;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

/// `thread-alg` (RFC 5256 section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ThreadAlgorithm {
    OrderedSubject,
    References,
}

/// One node of a thread tree: a message (by UID), or a placeholder parent (`uid == 0`) for
/// messages whose common parent is not in the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadNode {
    pub uid: u32,
    pub children: Vec<ThreadNode>,
}

/// Dropped without recursion: a reply chain thousands of messages deep (anyone can mail one)
/// must not exhaust a worker thread's stack.
impl Drop for ThreadNode {
    fn drop(&mut self) {
        let mut pending = std::mem::take(&mut self.children);
        while let Some(mut node) = pending.pop() {
            pending.append(&mut node.children);
        }
    }
}

/// Threads as one flat list: every node in depth-first order (a parent, then each child with
/// its whole subtree), the threads one after another. Flat, so that it is copied, cached, sent
/// and dropped in one piece, without recursion or an allocation per node, however deep a
/// reply chain is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Threads {
    nodes: Vec<ThreadEntry>,
}

/// One node of [`Threads`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadEntry {
    /// The message's UID; 0 for a placeholder parent (a common parent not in the result).
    pub uid: u32,
    /// How many children follow, each with its subtree.
    pub children: u32,
}

impl Threads {
    /// The nodes in depth-first order.
    pub fn entries(&self) -> &[ThreadEntry] {
        &self.nodes
    }

    /// Nodes in depth-first order; fails unless every child count is matched by the nodes
    /// that follow (a list received from elsewhere is checked before use).
    pub fn from_entries(nodes: Vec<ThreadEntry>) -> Result<Threads> {
        let mut open: u64 = 0;
        for node in &nodes {
            // Each node fills one slot of its parent (or starts a thread) and opens its own.
            open = open.saturating_sub(1) + u64::from(node.children);
        }
        if open != 0 {
            return Err(Error::InvalidArgument(
                "thread list ends inside a thread".into(),
            ));
        }
        Ok(Threads { nodes })
    }

    /// Number of threads.
    pub fn thread_count(&self) -> usize {
        let mut threads = 0;
        let mut open: u64 = 0;
        for node in &self.nodes {
            if open == 0 {
                threads += 1;
            } else {
                open -= 1;
            }
            open += u64::from(node.children);
        }
        threads
    }

    /// Number of nodes (messages and placeholders).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The same threads with every UID replaced by `rename(uid)` (placeholders stay 0). A node
    /// for which it gives `None` is left out with its whole subtree, and its parent loses
    /// that child.
    pub fn renumber(&self, mut rename: impl FnMut(u32) -> Option<u32>) -> Threads {
        let mut out: Vec<ThreadEntry> = Vec::with_capacity(self.nodes.len());
        // Per open parent: its index in `out` (`None` when it was left out) and the children
        // still due.
        let mut open: Vec<(Option<usize>, u32)> = Vec::new();
        for node in &self.nodes {
            while let Some(&(_, 0)) = open.last() {
                open.pop();
            }
            // `None`: a root; `Some(None)`: below a node that was left out.
            let parent = open.last_mut().map(|slot| {
                slot.1 -= 1;
                slot.0
            });
            let uid = match (parent, node.uid) {
                (Some(None), _) => None,
                (_, 0) => Some(0),
                (_, uid) => rename(uid),
            };
            let index = uid.map(|uid| {
                out.push(ThreadEntry { uid, children: 0 });
                if let Some(Some(parent)) = parent {
                    out[parent].children += 1;
                }
                out.len() - 1
            });
            if node.children > 0 {
                open.push((index, node.children));
            }
        }
        Threads { nodes: out }
    }

    /// The threads as trees (built without recursion).
    pub fn to_nodes(&self) -> Vec<ThreadNode> {
        let mut roots = Vec::new();
        // Open nodes: the node being built and the children it still waits for.
        let mut open: Vec<(ThreadNode, u32)> = Vec::new();
        for entry in &self.nodes {
            open.push((
                ThreadNode {
                    uid: entry.uid,
                    children: Vec::with_capacity(entry.children as usize),
                },
                entry.children,
            ));
            // Close every node that is complete, innermost first.
            while let Some((_, 0)) = open.last() {
                let (node, _) = open.pop().expect("just looked");
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

    /// Flatten trees (without recursion).
    pub fn from_nodes(roots: &[ThreadNode]) -> Threads {
        let mut nodes = Vec::new();
        let mut stack: Vec<&ThreadNode> = roots.iter().rev().collect();
        while let Some(node) = stack.pop() {
            nodes.push(ThreadEntry {
                uid: node.uid,
                children: to_u32(node.children.len()),
            });
            stack.extend(node.children.iter().rev());
        }
        Threads { nodes }
    }
}

/// The digest threading compares instead of a Message-ID or a base subject: the first 8 bytes
/// of SHA-256. A cryptographic digest, so nobody can mail a message whose id poses as the id of
/// one already in the mailbox (that takes a second preimage, 2^64 work), and two distinct ids
/// meet by chance with odds of about n^2 / 2^65 (3e-8 for a million ids). `0` stands for
/// "none" (an empty text) and is never a digest.
pub fn thread_key(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    let digest = Sha256::digest(text.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first).max(1)
}

/// A parent chain as stored (`thread_parents`): the [`thread_key`] of each id of a
/// space-separated `thread_refs`, oldest first, 8 little-endian bytes each.
pub(crate) fn parent_keys(thread_refs: &str) -> Vec<u8> {
    thread_refs
        .split_ascii_whitespace()
        .flat_map(|id| thread_key(id).to_le_bytes())
        .collect()
}

/// What threading knows about one message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadMessage {
    pub uid: u32,
    /// Sent date in seconds since the epoch; `i64::MIN` when unknown.
    pub sent: i64,
    /// [`thread_key`] of the base subject (case-folded); 0 for an empty one.
    pub subject: u64,
    /// Extracting the base subject removed a reply/forward marker.
    pub is_reply: bool,
    /// [`thread_key`] of the Message-ID; 0 for none.
    pub message_id: u64,
    /// Where this message's parent chain lies in [`ThreadInput::parents`] (start, end).
    pub parents: (u32, u32),
}

/// The messages to thread, with all their parent chains in one list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadInput {
    pub messages: Vec<ThreadMessage>,
    /// Every message's parent chain (References, else the first In-Reply-To id; oldest first)
    /// as [`thread_key`]s, back to back.
    pub parents: Vec<u64>,
}

impl ThreadInput {
    /// Add `message` with its parent chain (its `parents` field is set here).
    pub fn push(&mut self, mut message: ThreadMessage, parents: impl IntoIterator<Item = u64>) {
        let start = self.parents.len();
        self.parents.extend(parents);
        message.parents = (to_u32(start), to_u32(self.parents.len()));
        self.messages.push(message);
    }

    fn parents_of(&self, message: usize) -> &[u64] {
        let (start, end) = self.messages[message].parents;
        &self.parents[start as usize..end as usize]
    }
}

impl Mailbox {
    /// Thread the messages of `folder` that match `key`.
    pub fn thread(
        &self,
        folder: &str,
        algorithm: ThreadAlgorithm,
        key: &SearchKey,
    ) -> Result<Threads> {
        let run = |input: &ThreadInput| match algorithm {
            ThreadAlgorithm::OrderedSubject => thread_ordered_subject(input),
            ThreadAlgorithm::References => thread_references(input),
        };
        // Read before the messages: should another connection write in between, the result
        // is newer than its stamp, and the next call sees a changed folder and recomputes.
        let path = folder;
        let folder = self.folder_stamp(path)?;
        if !key.covers_folder(|| self.largest_uid(folder.id))? {
            return Ok(run(&self.thread_input(path, key)?));
        }
        let mut cache = self.thread_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(threads) =
            cache.get(&folder, algorithm, || self.folder_message_count(folder.id))?
        {
            return Ok(threads);
        }
        drop(cache);
        let input = self.thread_input(path, &SearchKey::All)?;
        let threads = run(&input);
        let messages = input.messages.len() as u64;
        let mut cache = self.thread_cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.put(folder, messages, algorithm, threads.clone());
        Ok(threads)
    }

    /// The folder's identity and change counters, which tell whether its messages may have
    /// changed since a thread result was cached.
    fn folder_stamp(&self, folder: &str) -> Result<FolderStamp> {
        let path = normalize_folder_name(folder)?;
        self.conn
            .prepare_cached(
                "SELECT id, uidvalidity, uidnext, highestmodseq FROM folders WHERE path = ?1",
            )?
            .query_row([&path], |r| {
                Ok(FolderStamp {
                    id: r.get(0)?,
                    uidvalidity: r.get(1)?,
                    uidnext: r.get(2)?,
                    highest_modseq: r.get(3)?,
                })
            })
            .optional()?
            .ok_or(Error::NoSuchFolder(path))
    }

    /// The folder's highest UID in use (0 when empty): one step down the (folder, uid) index.
    fn largest_uid(&self, folder_id: i64) -> Result<i64> {
        let largest: Option<i64> = self
            .conn
            .prepare_cached("SELECT max(uid) FROM messages WHERE folder_id = ?1")?
            .query_row([folder_id], |r| r.get(0))?;
        Ok(largest.unwrap_or(0))
    }

    fn folder_message_count(&self, folder_id: i64) -> Result<u64> {
        let count: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM messages WHERE folder_id = ?1")?
            .query_row([folder_id], |r| r.get(0))?;
        Ok(count as u64)
    }

    /// What threading reads for the messages of `folder` that match `key`, in UID order.
    pub fn thread_input(&self, folder: &str, key: &SearchKey) -> Result<ThreadInput> {
        let (filter, params) = filter_sql(&self.conn, folder, key)?;
        let sql = format!(
            "SELECT m.uid, m.sort_date, m.subject_is_reply, m.subject_key, m.thread_key,
                    m.thread_parents {filter} ORDER BY m.uid"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        let mut input = ThreadInput::default();
        while let Some(row) = rows.next()? {
            // Read in place: no String or Vec per message.
            let sent = match row.get_ref(1)? {
                ValueRef::Text(text) => std::str::from_utf8(text)
                    .ok()
                    .and_then(parse_iso8601_utc)
                    .unwrap_or(i64::MIN),
                _ => i64::MIN,
            };
            let parents = match row.get_ref(5)? {
                ValueRef::Blob(bytes) => bytes,
                _ => &[],
            };
            let message = ThreadMessage {
                uid: row.get(0)?,
                sent,
                is_reply: row.get(2)?,
                // Stored as SQLite's signed integers: the bits are the digest.
                subject: row.get::<_, i64>(3)? as u64,
                message_id: row.get::<_, i64>(4)? as u64,
                parents: (0, 0),
            };
            input.push(
                message,
                parents.chunks_exact(8).map(|chunk| {
                    let mut word = [0u8; 8];
                    word.copy_from_slice(chunk);
                    u64::from_le_bytes(word)
                }),
            );
        }
        Ok(input)
    }
}

/// Container and message positions are `u32` (half the memory of `usize`); a folder holds far
/// fewer than 4 billion messages.
fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("fewer than 2^32 messages and references")
}

/// "No container" / "no message".
const NONE: u32 = u32::MAX;

/// ORDEREDSUBJECT: messages grouped by base subject; in each group the earliest message is the
/// parent of all others, in sent-date order; groups ordered by their first message's date.
pub fn thread_ordered_subject(input: &ThreadInput) -> Threads {
    let messages = &input.messages;
    let mut order: Vec<u32> = (0..to_u32(messages.len())).collect();
    order.sort_unstable_by_key(|&m| {
        let m = &messages[m as usize];
        (m.subject, m.sent, m.uid)
    });
    // Each group is a run of `order`: (its first message, where the run starts, its length).
    let mut groups: Vec<(u32, usize, usize)> = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let subject = messages[order[start] as usize].subject;
        let length = order[start..]
            .iter()
            .take_while(|&&m| messages[m as usize].subject == subject)
            .count();
        groups.push((order[start], start, length));
        start += length;
    }
    groups.sort_unstable_by_key(|&(first, _, _)| date_key(&messages[first as usize]));
    let mut nodes = Vec::with_capacity(order.len());
    for (_, start, length) in groups {
        let run = &order[start..start + length];
        nodes.push(ThreadEntry {
            uid: messages[run[0] as usize].uid,
            children: to_u32(length - 1),
        });
        nodes.extend(run[1..].iter().map(|&m| ThreadEntry {
            uid: messages[m as usize].uid,
            children: 0,
        }));
    }
    Threads { nodes }
}

/// Sent date, then mailbox order.
fn date_key(message: &ThreadMessage) -> (i64, u32) {
    (message.sent, message.uid)
}

/// A container of the REFERENCES algorithm: a message, or a dummy (`message == NONE`).
#[derive(Debug)]
struct Container {
    message: u32,
    parent: u32,
    children: Vec<u32>,
}

/// The containers and the messages they hold.
struct Arena<'a> {
    input: &'a ThreadInput,
    containers: Vec<Container>,
}

impl Arena<'_> {
    fn new_container(&mut self, message: u32) -> u32 {
        self.containers.push(Container {
            message,
            parent: NONE,
            children: Vec::new(),
        });
        to_u32(self.containers.len() - 1)
    }

    fn get(&self, container: u32) -> &Container {
        &self.containers[container as usize]
    }

    fn get_mut(&mut self, container: u32) -> &mut Container {
        &mut self.containers[container as usize]
    }

    /// Whether `node` is `ancestor` or lies below it.
    fn is_within(&self, mut node: u32, ancestor: u32) -> bool {
        // A leaf is nobody's ancestor: this keeps long reply chains linear.
        if self.get(ancestor).children.is_empty() {
            return node == ancestor;
        }
        loop {
            if node == ancestor {
                return true;
            }
            match self.get(node).parent {
                NONE => return false,
                parent => node = parent,
            }
        }
    }

    fn link(&mut self, parent: u32, child: u32) {
        self.get_mut(child).parent = parent;
        self.get_mut(parent).children.push(child);
    }

    fn unlink(&mut self, child: u32) {
        let parent = std::mem::replace(&mut self.get_mut(child).parent, NONE);
        if parent != NONE {
            self.get_mut(parent).children.retain(|&c| c != child);
        }
    }

    fn is_dummy(&self, container: u32) -> bool {
        self.get(container).message == NONE
    }

    /// The message a container stands for when taking a subject: its own, or (for a dummy)
    /// that of its first child.
    fn representative(&self, mut container: u32) -> Option<&ThreadMessage> {
        loop {
            let c = self.get(container);
            if c.message != NONE {
                return Some(&self.input.messages[c.message as usize]);
            }
            container = *c.children.first()?;
        }
    }

    fn subject_of(&self, container: u32) -> u64 {
        self.representative(container).map_or(0, |m| m.subject)
    }

    fn is_reply(&self, container: u32) -> bool {
        let message = self.get(container).message;
        message != NONE && self.input.messages[message as usize].is_reply
    }
}

/// Keys are digests already, uniform in every bit: a map over them needs only a cheap,
/// seeded mix (the seed keeps bucket positions unpredictable from outside), not SipHash.
#[derive(Clone, Copy)]
struct DigestState(u64);

impl DigestState {
    fn new() -> Self {
        DigestState(std::collections::hash_map::RandomState::new().hash_one(0x7468_7265_6164u64))
    }
}

impl BuildHasher for DigestState {
    type Hasher = DigestHasher;
    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(self.0)
    }
}

struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        // The murmur3 finalizer: every input bit reaches every output bit.
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

type DigestMap<V> = HashMap<u64, V, DigestState>;

/// REFERENCES (RFC 5256 section 3), steps 1 to 6.
pub fn thread_references(input: &ThreadInput) -> Threads {
    let count = input.messages.len();
    let mut arena = Arena {
        input,
        containers: Vec::with_capacity(count * 2),
    };
    let mut by_id: DigestMap<u32> =
        HashMap::with_capacity_and_hasher(count * 2, DigestState::new());

    // Step 1: link messages along their References.
    for index in 0..count {
        let message = to_u32(index);
        // A message without Message-ID, or with one an earlier message already has, gets a
        // container of its own that no reference can reach (a unique id).
        let id = input.messages[index].message_id;
        let own = if id == 0 {
            arena.new_container(message)
        } else {
            match by_id.get(&id) {
                Some(&c) if arena.is_dummy(c) => {
                    arena.get_mut(c).message = message;
                    c
                }
                Some(_) => arena.new_container(message),
                None => {
                    let c = arena.new_container(message);
                    by_id.insert(id, c);
                    c
                }
            }
        };
        // 1A: each reference is the parent of the next, unless the child already has a parent
        // or the link would close a loop.
        let mut previous = NONE;
        for &reference in input.parents_of(index) {
            let current = match by_id.get(&reference) {
                Some(&c) => c,
                None => {
                    let c = arena.new_container(NONE);
                    by_id.insert(reference, c);
                    c
                }
            };
            if previous != NONE
                && arena.get(current).parent == NONE
                && !arena.is_within(previous, current)
            {
                arena.link(previous, current);
            }
            previous = current;
        }
        // 1B: the last reference is the message's parent, replacing a parent set earlier from
        // another message's (possibly truncated) References; no references, no parent.
        arena.unlink(own);
        if previous != NONE && !arena.is_within(previous, own) {
            arena.link(previous, own);
        }
    }

    // Steps 2 and 3: the root set; the id table is no longer needed.
    drop(by_id);
    let roots: Vec<u32> = (0..to_u32(arena.containers.len()))
        .filter(|&c| arena.get(c).parent == NONE)
        .collect();

    // Step 4: prune dummies.
    let mut roots = prune_dummies(&mut arena, roots);

    // Step 5: gather root-level threads with the same base subject.
    gather_by_subject(&mut arena, &mut roots);

    // Step 6: sort siblings by sent date (a dummy by its first child's), and build the tree.
    sort_and_build(&mut arena, roots)
}

/// Every container reachable from `roots`, parents before their children.
fn preorder(arena: &Arena, roots: &[u32]) -> Vec<u32> {
    let mut order = Vec::with_capacity(arena.containers.len());
    let mut stack: Vec<u32> = roots.to_vec();
    while let Some(node) = stack.pop() {
        order.push(node);
        stack.extend_from_slice(&arena.get(node).children);
    }
    order
}

/// Step 4: remove dummies without children; replace a dummy by its children, except a root
/// dummy with more than one child. Returns the new root set.
fn prune_dummies(arena: &mut Arena, roots: Vec<u32>) -> Vec<u32> {
    // Post-order without recursion: children are pruned before their parent looks at them.
    let order = preorder(arena, &roots);
    for &node in order.iter().rev() {
        if !arena.get(node).children.iter().any(|&c| arena.is_dummy(c)) {
            continue;
        }
        let children = std::mem::take(&mut arena.get_mut(node).children);
        let mut kept = Vec::with_capacity(children.len());
        for child in children {
            if arena.is_dummy(child) {
                // Promote the (already pruned) children of a dummy; drop an empty dummy.
                for grandchild in std::mem::take(&mut arena.get_mut(child).children) {
                    arena.get_mut(grandchild).parent = node;
                    kept.push(grandchild);
                }
                arena.get_mut(child).parent = NONE;
            } else {
                kept.push(child);
            }
        }
        arena.get_mut(node).children = kept;
    }
    let mut new_roots = Vec::with_capacity(roots.len());
    for root in roots {
        if !arena.is_dummy(root) || arena.get(root).children.len() > 1 {
            new_roots.push(root);
            continue;
        }
        // A root dummy with no child disappears; with one child, the child becomes a root.
        for child in std::mem::take(&mut arena.get_mut(root).children) {
            arena.get_mut(child).parent = NONE;
            new_roots.push(child);
        }
    }
    new_roots
}

/// Step 5: merge root-level threads whose subjects match.
fn gather_by_subject(arena: &mut Arena, roots: &mut Vec<u32>) {
    // 5B: one container per subject, preferring a dummy, then a non-reply message.
    let mut table: DigestMap<u32> =
        HashMap::with_capacity_and_hasher(roots.len(), DigestState::new());
    for &root in roots.iter() {
        let subject = arena.subject_of(root);
        if subject == 0 {
            continue;
        }
        match table.get(&subject) {
            None => {
                table.insert(subject, root);
            }
            Some(&old) => {
                let better = (arena.is_dummy(root) && !arena.is_dummy(old))
                    || (!arena.is_dummy(old)
                        && !arena.is_dummy(root)
                        && arena.is_reply(old)
                        && !arena.is_reply(root));
                if better {
                    table.insert(subject, root);
                }
            }
        }
    }
    // 5C: merge every other root with the same subject into the table's container.
    let mut removed = vec![false; arena.containers.len()];
    // Where each root sits in `roots`, so a dummy takes a root's place in constant time (a
    // search per merge would be quadratic in a mailbox of many same-subject threads).
    let mut slot_of = vec![NONE; arena.containers.len()];
    for (slot, &root) in roots.iter().enumerate() {
        slot_of[root as usize] = to_u32(slot);
    }
    let snapshot = roots.clone();
    for root in snapshot {
        if removed[root as usize] {
            continue;
        }
        let subject = arena.subject_of(root);
        if subject == 0 {
            continue;
        }
        let Some(&that) = table.get(&subject) else {
            continue;
        };
        if that == root {
            continue;
        }
        match (arena.is_dummy(that), arena.is_dummy(root)) {
            (true, true) => {
                for child in std::mem::take(&mut arena.get_mut(root).children) {
                    arena.link(that, child);
                }
                removed[root as usize] = true;
            }
            (true, false) => {
                arena.link(that, root);
                removed[root as usize] = true;
            }
            (false, true) => {
                arena.link(root, that);
                removed[that as usize] = true;
                table.insert(subject, root);
            }
            (false, false) if !arena.is_reply(that) && arena.is_reply(root) => {
                arena.link(that, root);
                removed[root as usize] = true;
            }
            (false, false) if arena.is_reply(that) && !arena.is_reply(root) => {
                arena.link(root, that);
                removed[that as usize] = true;
                table.insert(subject, root);
            }
            (false, false) => {
                let dummy = arena.new_container(NONE);
                removed.push(false);
                arena.link(dummy, that);
                arena.link(dummy, root);
                removed[that as usize] = true;
                removed[root as usize] = true;
                // The dummy takes the place of the table's container in the root set.
                if let Some(&slot) = slot_of.get(that as usize).filter(|&&s| s != NONE) {
                    roots[slot as usize] = dummy;
                }
                table.insert(subject, dummy);
            }
        }
    }
    roots.retain(|&r| !removed[r as usize]);
}

/// Step 6: sort every sibling list by sent date (a dummy takes its first child's date after
/// that child list is sorted; ties keep mailbox order), then list the nodes depth-first.
fn sort_and_build(arena: &mut Arena, mut roots: Vec<u32>) -> Threads {
    let order = preorder(arena, &roots);
    // Each container's sort key, filled children first so a dummy can take its first child's.
    let mut keys: Vec<(i64, u32)> = vec![(i64::MAX, u32::MAX); arena.containers.len()];
    for &node in order.iter().rev() {
        let mut children = std::mem::take(&mut arena.get_mut(node).children);
        children.sort_unstable_by_key(|&c| keys[c as usize]);
        let container = arena.get_mut(node);
        container.children = children;
        keys[node as usize] = match container.message {
            NONE => container
                .children
                .first()
                .map_or((i64::MAX, u32::MAX), |&c| keys[c as usize]),
            m => date_key(&arena.input.messages[m as usize]),
        };
    }
    roots.sort_unstable_by_key(|&r| keys[r as usize]);

    // Depth-first, again without recursion: the stack holds what comes next in reverse.
    let mut nodes = Vec::with_capacity(order.len());
    let mut stack: Vec<u32> = roots.iter().rev().copied().collect();
    while let Some(node) = stack.pop() {
        let container = arena.get(node);
        let uid = match container.message {
            NONE => 0,
            m => arena.input.messages[m as usize].uid,
        };
        nodes.push(ThreadEntry {
            uid,
            children: to_u32(container.children.len()),
        });
        stack.extend(container.children.iter().rev());
    }
    Threads { nodes }
}

impl SearchKey {
    /// Whether the key matches every message of a folder: ALL, or UID ranges from 1 up to the
    /// folder's largest UID (`largest` tells it, asked only for such keys), alone or under AND
    /// (THREAD in a session that knows every message of its folder).
    fn covers_folder(&self, largest: impl FnOnce() -> Result<i64>) -> Result<bool> {
        let mut lowest_uid_bound = i64::MAX;
        if !self.covers_folder_up_to(&mut lowest_uid_bound) {
            return Ok(false);
        }
        Ok(lowest_uid_bound == i64::MAX || lowest_uid_bound >= largest()?)
    }

    /// Whether the key matches every message with a UID up to `bound`, which it lowers to the
    /// end of its UID ranges.
    fn covers_folder_up_to(&self, bound: &mut i64) -> bool {
        match self {
            SearchKey::All => true,
            SearchKey::Uids(set) => match set.ranges().first() {
                Some(&(first, last)) if first <= 1 => {
                    *bound = (*bound).min(i64::from(last));
                    true
                }
                _ => false,
            },
            SearchKey::And(keys) => keys.iter().all(|k| k.covers_folder_up_to(bound)),
            _ => false,
        }
    }
}

/// A folder's identity and change counters ([`Mailbox::thread`] keys its cache on them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FolderStamp {
    id: i64,
    uidvalidity: i64,
    uidnext: i64,
    highest_modseq: i64,
}

/// Whole-folder thread results of the folders last threaded, kept by the open mailbox.
///
/// A result stays valid while the folder holds the same messages. Messages never change, and
/// UIDs only grow: every message added (APPEND, COPY, MOVE in, delivery) raises UIDNEXT, and
/// every message removed (EXPUNGE, MOVE out) lowers the count while UIDNEXT stays. So the same
/// UIDVALIDITY, UIDNEXT and message count mean the same messages. Most changes of a folder are
/// flag changes, which raise only HIGHESTMODSEQ: when that is all that moved, one count
/// confirms the result; when nothing moved, not even that is needed.
#[derive(Debug, Default)]
pub(crate) struct ThreadCache {
    /// Most recently used last.
    entries: Vec<CachedThreads>,
    /// Results computed and stored (for tests: a hit computes nothing).
    stored: u64,
}

#[derive(Debug)]
struct CachedThreads {
    algorithm: ThreadAlgorithm,
    stamp: FolderStamp,
    messages: u64,
    threads: Threads,
}

/// Results kept at once: a few folders, both algorithms (100,000 messages take 800 KB each).
const CACHED_RESULTS: usize = 6;

impl ThreadCache {
    /// The cached result for `folder`, if still valid; `count` gives the folder's current
    /// message count, asked only when HIGHESTMODSEQ moved.
    fn get(
        &mut self,
        folder: &FolderStamp,
        algorithm: ThreadAlgorithm,
        count: impl FnOnce() -> Result<u64>,
    ) -> Result<Option<Threads>> {
        let Some(position) = self
            .entries
            .iter()
            .position(|e| e.stamp.id == folder.id && e.algorithm == algorithm)
        else {
            return Ok(None);
        };
        let entry = &mut self.entries[position];
        let same_messages = entry.stamp.uidvalidity == folder.uidvalidity
            && entry.stamp.uidnext == folder.uidnext
            && (entry.stamp.highest_modseq == folder.highest_modseq || entry.messages == count()?);
        if !same_messages {
            self.entries.remove(position);
            return Ok(None);
        }
        entry.stamp.highest_modseq = folder.highest_modseq;
        let entry = self.entries.remove(position);
        let threads = entry.threads.clone();
        self.entries.push(entry);
        Ok(Some(threads))
    }

    fn put(
        &mut self,
        stamp: FolderStamp,
        messages: u64,
        algorithm: ThreadAlgorithm,
        threads: Threads,
    ) {
        self.entries
            .retain(|e| !(e.stamp.id == stamp.id && e.algorithm == algorithm));
        if self.entries.len() >= CACHED_RESULTS {
            self.entries.remove(0);
        }
        self.stored += 1;
        self.entries.push(CachedThreads {
            algorithm,
            stamp,
            messages,
            threads,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sort::base_subject;

    /// One test message: `day` of January 2024, subject as written, Message-ID and parent
    /// chain as strings.
    struct Msg<'a>(u32, u32, &'a str, Option<&'a str>, &'a [&'a str]);

    fn input(messages: &[Msg]) -> ThreadInput {
        let mut input = ThreadInput::default();
        for &Msg(uid, day, subject, id, refs) in messages {
            let base = base_subject(subject);
            let message = ThreadMessage {
                uid,
                sent: i64::from(day) * 86_400,
                subject: thread_key(&base.text.to_ascii_lowercase()),
                is_reply: base.is_reply_or_forward,
                message_id: id.map_or(0, thread_key),
                parents: (0, 0),
            };
            input.push(message, refs.iter().map(|r| thread_key(r)));
        }
        input
    }

    fn references(messages: &[Msg]) -> String {
        show(&thread_references(&input(messages)).to_nodes())
    }

    /// The tree in IMAP's THREAD notation, e.g. `(1 2 (3)(4))`, for compact assertions.
    fn show(threads: &[ThreadNode]) -> String {
        fn chain(node: &ThreadNode, out: &mut String) {
            if node.uid != 0 {
                out.push_str(&node.uid.to_string());
            }
            match node.children.as_slice() {
                [] => {}
                [only] if node.uid != 0 => {
                    out.push(' ');
                    chain(only, out);
                }
                children => {
                    if node.uid != 0 {
                        out.push(' ');
                    }
                    for child in children {
                        out.push('(');
                        chain(child, out);
                        out.push(')');
                    }
                }
            }
        }
        let mut out = String::new();
        for thread in threads {
            out.push('(');
            chain(thread, &mut out);
            out.push(')');
        }
        out
    }

    #[test]
    fn references_builds_a_simple_tree() {
        let messages = vec![
            Msg(1, 1, "Plan", Some("a"), &[]),
            Msg(2, 2, "Re: Plan", Some("b"), &["a"]),
            Msg(3, 3, "Re: Plan", Some("c"), &["a"]),
            Msg(4, 4, "Re: Plan", Some("d"), &["a", "b"]),
            Msg(5, 5, "Other", Some("e"), &[]),
        ];
        assert_eq!(references(&messages), "(1 (2 4)(3))(5)");
    }

    #[test]
    fn missing_parents_become_dummies_or_are_pruned() {
        // 2 and 3 reply to a message not in the mailbox: a root dummy holds both. 5 replies to
        // a missing message on its own: the dummy is pruned and 5 becomes a root.
        let messages = vec![
            Msg(2, 2, "Re: lost", Some("b"), &["missing"]),
            Msg(3, 3, "Re: lost", Some("c"), &["missing"]),
            Msg(5, 5, "Re: alone", Some("e"), &["gone1", "gone2"]),
            Msg(6, 6, "Re: deep", Some("f"), &["x", "y", "z"]),
            Msg(7, 7, "Re: deep", Some("g"), &["x", "y", "w"]),
        ];
        // 6 and 7 share the missing ancestors x/y: the dummies z and w are pruned, y is promoted
        // away, x remains as the root dummy with both.
        assert_eq!(
            references(&messages),
            "((2)(3))(5)((6)(7))",
            "dummies with several children stay at the root, others are pruned"
        );
    }

    #[test]
    fn reference_cycles_are_not_linked() {
        // a's References name b, and b's name a: linking both ways would close a loop.
        let messages = vec![
            Msg(1, 1, "loop one", Some("a"), &["b"]),
            Msg(2, 2, "loop two", Some("b"), &["a"]),
            Msg(3, 3, "self", Some("c"), &["c"]),
        ];
        // 2 is linked as 1's parent first; 2's own reference to 1 would then close a loop
        // and is skipped. 3 references itself and stays alone.
        assert_eq!(references(&messages), "(2 1)(3)");
    }

    #[test]
    fn truncated_references_are_replaced_by_the_message_own_chain() {
        // 3 first appears (via 4's References) under 1, but its own References say 2.
        let messages = vec![
            Msg(1, 1, "t", Some("a"), &[]),
            Msg(2, 2, "Re: t", Some("b"), &["a"]),
            Msg(4, 4, "Re: t", Some("d"), &["a", "c"]),
            Msg(3, 3, "Re: t", Some("c"), &["a", "b"]),
        ];
        assert_eq!(references(&messages), "(1 2 3 4)");
    }

    #[test]
    fn subjects_merge_at_the_root() {
        // No References at all: 1 (non-reply) collects the replies 2 and 4; 5 and 6 are both
        // non-replies of one subject, so a dummy holds them; 7 has an empty subject.
        let messages = vec![
            Msg(1, 1, "Meeting", Some("a"), &[]),
            Msg(2, 2, "Re: Meeting", Some("b"), &[]),
            Msg(4, 4, "RE: [team] meeting", Some("d"), &[]),
            Msg(5, 5, "Lunch", Some("e"), &[]),
            Msg(6, 6, "lunch", Some("f"), &[]),
            Msg(7, 7, "", Some("g"), &[]),
            Msg(8, 8, "", Some("h"), &[]),
        ];
        assert_eq!(references(&messages), "(1 (2)(4))((5)(6))(7)(8)");
    }

    #[test]
    fn several_subjects_each_gather_under_their_own_dummy() {
        let messages = vec![
            Msg(1, 1, "Alpha", Some("a"), &[]),
            Msg(2, 2, "Beta", Some("b"), &[]),
            Msg(3, 3, "Gamma", Some("c"), &[]),
            Msg(4, 4, "alpha", Some("d"), &[]),
            Msg(5, 5, "beta", Some("e"), &[]),
            Msg(6, 6, "Re: beta", Some("f"), &[]),
        ];
        assert_eq!(references(&messages), "((1)(4))((2)(5)(6))(3)");
    }

    #[test]
    fn a_reply_arriving_first_is_put_under_the_original() {
        let messages = vec![
            Msg(1, 1, "Re: news", Some("a"), &[]),
            Msg(2, 2, "News", Some("b"), &[]),
        ];
        assert_eq!(references(&messages), "(2 1)");
    }

    #[test]
    fn children_and_roots_are_sorted_by_sent_date() {
        let messages = vec![
            Msg(1, 9, "late root", Some("a"), &[]),
            Msg(2, 1, "early root", Some("b"), &[]),
            Msg(3, 8, "Re: early root", Some("c"), &["b"]),
            Msg(4, 3, "Re: early root", Some("d"), &["b"]),
            // Same date as 4: mailbox order breaks the tie.
            Msg(5, 3, "Re: early root", Some("e"), &["b"]),
        ];
        assert_eq!(references(&messages), "(2 (4)(5)(3))(1)");
    }

    #[test]
    fn duplicate_and_missing_message_ids_stay_separate() {
        let messages = vec![
            Msg(1, 1, "x one", Some("dup"), &[]),
            Msg(2, 2, "x two", Some("dup"), &[]),
            Msg(3, 3, "x three", None, &[]),
            Msg(4, 4, "Re: x one", Some("d"), &["dup"]),
        ];
        assert_eq!(references(&messages), "(1 4)(2)(3)");
    }

    #[test]
    fn a_deep_chain_does_not_exhaust_the_stack() {
        let count = 50_000u32;
        let ids: Vec<u64> = (0..count).map(|i| thread_key(&format!("m{i}"))).collect();
        let subject = thread_key("chain");
        let mut messages = ThreadInput::default();
        for i in 0..count {
            let message = ThreadMessage {
                uid: i + 1,
                sent: i64::from(i),
                subject,
                is_reply: i > 0,
                message_id: ids[i as usize],
                parents: (0, 0),
            };
            messages.push(message, (i > 0).then(|| ids[i as usize - 1]));
        }
        let threads = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                let threads = thread_references(&messages);
                assert_eq!(threads.thread_count(), 1);
                // Renumbered, cloned, turned into a tree and back, and dropped: all without
                // recursion.
                let renumbered = threads.renumber(|uid| Some(uid + 1)).clone();
                let nodes = renumbered.to_nodes();
                assert_eq!(Threads::from_nodes(&nodes), renumbered);
                // Walk the chain iteratively.
                let mut depth = 0;
                let mut node = nodes.into_iter().next();
                while let Some(mut n) = node {
                    depth += 1;
                    node = n.children.pop();
                }
                depth
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(threads, count);
    }

    #[test]
    fn ordered_subject_groups_by_base_subject() {
        let messages = vec![
            Msg(1, 5, "Beta", None, &[]),
            Msg(2, 1, "Alpha", None, &[]),
            Msg(3, 2, "Re: alpha", None, &[]),
            Msg(4, 6, "Re: Beta", None, &[]),
            Msg(5, 3, "Fwd: Alpha", None, &[]),
            Msg(6, 4, "Gamma", None, &[]),
        ];
        assert_eq!(
            show(&thread_ordered_subject(&input(&messages)).to_nodes()),
            "(2 (3)(5))(6)(1 4)"
        );
    }

    #[test]
    fn the_cache_is_used_until_the_messages_change() {
        use crate::key::MailboxKey;
        use crate::store::{AppendOptions, FlagMode, Flags, UidSet};
        let dir = tempfile::tempdir().unwrap();
        let mut mailbox =
            Mailbox::create(&dir.path().join("m.sqlite"), &MailboxKey::generate()).unwrap();
        let append = |mailbox: &mut Mailbox, id: &str, refs: &str| {
            let raw =
                format!("Subject: s\r\nMessage-ID: <{id}>\r\nReferences: {refs}\r\n\r\nx\r\n");
            mailbox
                .append("INBOX", raw.as_bytes(), &AppendOptions::default())
                .unwrap();
        };
        let stored = |mailbox: &Mailbox| mailbox.thread_cache.lock().unwrap().stored;
        let thread = |mailbox: &Mailbox, key: &SearchKey| {
            let threads = mailbox
                .thread("INBOX", ThreadAlgorithm::References, key)
                .unwrap();
            show(&threads.to_nodes())
        };
        append(&mut mailbox, "a@x", "");
        append(&mut mailbox, "b@x", "<a@x>");
        assert_eq!(thread(&mailbox, &SearchKey::All), "(1 2)");
        assert_eq!(stored(&mailbox), 1);
        assert_eq!(thread(&mailbox, &SearchKey::All), "(1 2)");
        assert_eq!(stored(&mailbox), 1, "nothing changed: a hit");
        // Criteria other than the whole folder are computed each time, not stored.
        assert_eq!(thread(&mailbox, &SearchKey::Seen(false)), "(1 2)");
        assert_eq!(stored(&mailbox), 1);
        // A flag change moves HIGHESTMODSEQ only: still a hit.
        let flagged = Flags {
            flagged: true,
            ..Flags::default()
        };
        mailbox
            .set_flags(
                "INBOX",
                &UidSet::from_uids([1]),
                FlagMode::Add,
                &flagged,
                None,
            )
            .unwrap();
        assert_eq!(thread(&mailbox, &SearchKey::All), "(1 2)");
        assert_eq!(stored(&mailbox), 1, "a flag change keeps the result");
        assert_eq!(thread(&mailbox, &SearchKey::Flagged(true)), "(1)");
        // An append: computed again.
        append(&mut mailbox, "c@x", "<a@x> <b@x>");
        assert_eq!(thread(&mailbox, &SearchKey::All), "(1 2 3)");
        assert_eq!(stored(&mailbox), 2);
        // ORDEREDSUBJECT is kept apart.
        let ordered = mailbox
            .thread("INBOX", ThreadAlgorithm::OrderedSubject, &SearchKey::All)
            .unwrap();
        assert_eq!(show(&ordered.to_nodes()), "(1 (2)(3))");
        assert_eq!(stored(&mailbox), 3);
        assert_eq!(thread(&mailbox, &SearchKey::All), "(1 2 3)");
        assert_eq!(stored(&mailbox), 3);
        // The newest message expunged: a session that knows UIDs 1 to 2 knows them all.
        let deleted = Flags {
            deleted: true,
            ..Flags::default()
        };
        mailbox
            .set_flags(
                "INBOX",
                &UidSet::from_uids([3]),
                FlagMode::Add,
                &deleted,
                None,
            )
            .unwrap();
        mailbox.expunge("INBOX", None).unwrap();
        let known = |last| {
            SearchKey::And(vec![
                SearchKey::All,
                SearchKey::Uids(UidSet::from_ranges([(1, last)])),
            ])
        };
        assert_eq!(thread(&mailbox, &known(2)), "(1 2)");
        assert_eq!(stored(&mailbox), 4);
        assert_eq!(thread(&mailbox, &known(2)), "(1 2)");
        assert_eq!(thread(&mailbox, &SearchKey::All), "(1 2)");
        assert_eq!(stored(&mailbox), 4, "UIDs 1 to 2 are the whole folder");
        // Knowing less than the folder holds is not the whole folder.
        assert_eq!(thread(&mailbox, &known(1)), "(1)");
        assert_eq!(stored(&mailbox), 4);
    }

    #[test]
    fn flat_threads_renumber_and_convert() {
        let entry = |uid, children| ThreadEntry { uid, children };
        // (1 (2 3)(0 (4)(5)))(6): a placeholder with two children under 1.
        let threads = Threads::from_entries(vec![
            entry(1, 2),
            entry(2, 1),
            entry(3, 0),
            entry(0, 2),
            entry(4, 0),
            entry(5, 0),
            entry(6, 0),
        ])
        .unwrap();
        assert_eq!(threads.thread_count(), 2);
        assert_eq!(show(&threads.to_nodes()), "(1 (2 3)((4)(5)))(6)");
        assert_eq!(Threads::from_nodes(&threads.to_nodes()), threads);
        // 2 is left out with its child 3; 5 alone; the others shift down by one.
        let renumbered = threads.renumber(|uid| (uid != 2 && uid != 5).then(|| uid * 10));
        assert_eq!(show(&renumbered.to_nodes()), "(10 (40))(60)");
        assert_eq!(renumbered.entries()[0], entry(10, 1));
        // A list whose child counts run past its end is refused.
        assert!(Threads::from_entries(vec![entry(1, 2), entry(2, 0)]).is_err());
        assert!(Threads::from_entries(Vec::new()).unwrap().is_empty());
    }

    #[test]
    fn digests_are_stable_nonzero_and_stored_back_to_back() {
        assert_eq!(thread_key(""), 0);
        assert_ne!(thread_key("a@x"), 0);
        assert_eq!(thread_key("a@x"), thread_key("a@x"));
        assert_ne!(
            thread_key("a@x"),
            thread_key("A@x"),
            "ids compare case-sensitively"
        );
        // Known answer: the first 8 bytes of SHA-256("abc"), little-endian. A change here
        // would silently break the digests already stored in mailbox files.
        assert_eq!(thread_key("abc"), 0xeacf_018f_bf16_78ba);
        let stored = parent_keys("a@x  b@x");
        assert_eq!(stored.len(), 16);
        assert_eq!(stored[..8], thread_key("a@x").to_le_bytes());
        assert_eq!(stored[8..], thread_key("b@x").to_le_bytes());
        assert!(parent_keys("").is_empty());
    }
}

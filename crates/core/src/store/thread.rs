//! THREAD (RFC 5256 section 3): ORDEREDSUBJECT and REFERENCES.
//!
//! What the algorithms need (Message-ID, the parent chain, base subject, reply marker, sent
//! date) is stored at append time and read through a covering index, so a THREAD reads one
//! compact row per message and never parses a message. The algorithms work on an arena of
//! containers with explicit stacks, so a hostile, very deep References chain cannot exhaust
//! the stack while threading.

use super::Mailbox;
use super::search::{SearchKey, filter_sql};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::HashMap;

/// `thread-alg` (RFC 5256 section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// What threading needs to know about one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadMessage {
    pub uid: u32,
    /// Sent date as stored (ISO-8601 UTC, so strings order like dates).
    pub sent: String,
    /// Base subject, case-folded.
    pub base_subject: String,
    /// Extracting the base subject removed a reply/forward marker.
    pub is_reply: bool,
    pub message_id: Option<String>,
    /// The parent chain: References, else the first In-Reply-To id; oldest first.
    pub references: Vec<String>,
}

impl Mailbox {
    /// Thread the messages of `folder` that match `key`.
    pub fn thread(
        &self,
        folder: &str,
        algorithm: ThreadAlgorithm,
        key: &SearchKey,
    ) -> Result<Vec<ThreadNode>> {
        let (filter, params) = filter_sql(&self.conn, folder, key)?;
        let sql = format!(
            "SELECT m.uid, m.sort_date, m.sort_subject, m.subject_is_reply, m.message_id,
                    m.thread_refs {filter} ORDER BY m.uid"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
            let refs: String = r.get(5)?;
            Ok(ThreadMessage {
                uid: r.get(0)?,
                sent: r.get(1)?,
                base_subject: r.get(2)?,
                is_reply: r.get(3)?,
                message_id: r.get::<_, Option<String>>(4)?.filter(|id| !id.is_empty()),
                references: refs.split_ascii_whitespace().map(str::to_string).collect(),
            })
        })?;
        let messages: Vec<ThreadMessage> = rows.collect::<Result<_, _>>()?;
        Ok(match algorithm {
            ThreadAlgorithm::OrderedSubject => thread_ordered_subject(messages),
            ThreadAlgorithm::References => thread_references(messages),
        })
    }
}

/// ORDEREDSUBJECT: messages grouped by base subject; in each group the earliest message is the
/// parent of all others, in sent-date order; groups ordered by their first message's date.
pub fn thread_ordered_subject(mut messages: Vec<ThreadMessage>) -> Vec<ThreadNode> {
    messages.sort_by(|a, b| {
        a.base_subject
            .cmp(&b.base_subject)
            .then_with(|| by_date(a, b))
    });
    let mut threads: Vec<(ThreadMessage, ThreadNode)> = Vec::new();
    let mut messages = messages.into_iter().peekable();
    while let Some(first) = messages.next() {
        let mut root = ThreadNode {
            uid: first.uid,
            children: Vec::new(),
        };
        while let Some(next) = messages.next_if(|m| m.base_subject == first.base_subject) {
            root.children.push(ThreadNode {
                uid: next.uid,
                children: Vec::new(),
            });
        }
        threads.push((first, root));
    }
    threads.sort_by(|(a, _), (b, _)| by_date(a, b));
    threads.into_iter().map(|(_, node)| node).collect()
}

/// Sent date, then mailbox order.
fn by_date(a: &ThreadMessage, b: &ThreadMessage) -> Ordering {
    a.sent.cmp(&b.sent).then(a.uid.cmp(&b.uid))
}

/// A container of the REFERENCES algorithm: a message, or a dummy (`message == None`).
#[derive(Debug, Default)]
struct Container {
    message: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
}

/// The containers and the messages they hold.
struct Arena {
    messages: Vec<ThreadMessage>,
    containers: Vec<Container>,
}

impl Arena {
    fn new_container(&mut self, message: Option<usize>) -> usize {
        self.containers.push(Container {
            message,
            ..Container::default()
        });
        self.containers.len() - 1
    }

    /// Whether `node` is `ancestor` or lies below it.
    fn is_within(&self, mut node: usize, ancestor: usize) -> bool {
        // A leaf is nobody's ancestor: this keeps long reply chains linear.
        if self.containers[ancestor].children.is_empty() {
            return node == ancestor;
        }
        loop {
            if node == ancestor {
                return true;
            }
            match self.containers[node].parent {
                Some(parent) => node = parent,
                None => return false,
            }
        }
    }

    fn link(&mut self, parent: usize, child: usize) {
        self.containers[child].parent = Some(parent);
        self.containers[parent].children.push(child);
    }

    fn unlink(&mut self, child: usize) {
        if let Some(parent) = self.containers[child].parent.take() {
            self.containers[parent].children.retain(|&c| c != child);
        }
    }

    fn is_dummy(&self, container: usize) -> bool {
        self.containers[container].message.is_none()
    }

    /// The message a container stands for when comparing or taking a subject: its own, or
    /// (for a dummy) that of its first child.
    fn representative(&self, mut container: usize) -> Option<&ThreadMessage> {
        loop {
            if let Some(m) = self.containers[container].message {
                return Some(&self.messages[m]);
            }
            container = *self.containers[container].children.first()?;
        }
    }
}

/// REFERENCES (RFC 5256 section 3), steps 1 to 6.
pub fn thread_references(messages: Vec<ThreadMessage>) -> Vec<ThreadNode> {
    let mut arena = Arena {
        containers: Vec::with_capacity(messages.len() * 2),
        messages,
    };
    let mut by_id: HashMap<String, usize> = HashMap::with_capacity(arena.messages.len() * 2);

    // Step 1: link messages along their References.
    for index in 0..arena.messages.len() {
        // A message without Message-ID, or with one an earlier message already has, gets a
        // container of its own that no reference can reach (a unique id).
        let own = match arena.messages[index].message_id.clone() {
            Some(id) => match by_id.get(&id) {
                Some(&c) if arena.containers[c].message.is_none() => {
                    arena.containers[c].message = Some(index);
                    c
                }
                Some(_) => arena.new_container(Some(index)),
                None => {
                    let c = arena.new_container(Some(index));
                    by_id.insert(id, c);
                    c
                }
            },
            None => arena.new_container(Some(index)),
        };
        // 1A: each reference is the parent of the next, unless the child already has a parent
        // or the link would close a loop.
        let references = std::mem::take(&mut arena.messages[index].references);
        let mut previous: Option<usize> = None;
        for reference in &references {
            let current = match by_id.get(reference) {
                Some(&c) => c,
                None => {
                    let c = arena.new_container(None);
                    by_id.insert(reference.clone(), c);
                    c
                }
            };
            if let Some(parent) = previous
                && arena.containers[current].parent.is_none()
                && !arena.is_within(parent, current)
            {
                arena.link(parent, current);
            }
            previous = Some(current);
        }
        arena.messages[index].references = references;
        // 1B: the last reference is the message's parent, replacing a parent set earlier from
        // another message's (possibly truncated) References; no references, no parent.
        arena.unlink(own);
        if let Some(parent) = previous
            && !arena.is_within(parent, own)
        {
            arena.link(parent, own);
        }
    }

    // Steps 2 and 3: the root set; the id table is no longer needed.
    drop(by_id);
    let roots: Vec<usize> = (0..arena.containers.len())
        .filter(|&c| arena.containers[c].parent.is_none())
        .collect();

    // Step 4: prune dummies.
    let mut roots = prune_dummies(&mut arena, roots);

    // Step 5: gather root-level threads with the same base subject.
    gather_by_subject(&mut arena, &mut roots);

    // Step 6: sort siblings by sent date (a dummy by its first child's), and build the tree.
    sort_and_build(&mut arena, roots)
}

/// Step 4: remove dummies without children; replace a dummy by its children, except a root
/// dummy with more than one child. Returns the new root set.
fn prune_dummies(arena: &mut Arena, roots: Vec<usize>) -> Vec<usize> {
    // Post-order without recursion: children are pruned before their parent looks at them.
    let mut order = Vec::with_capacity(arena.containers.len());
    let mut stack: Vec<usize> = roots.clone();
    while let Some(node) = stack.pop() {
        order.push(node);
        stack.extend(arena.containers[node].children.iter().copied());
    }
    for &node in order.iter().rev() {
        let children = std::mem::take(&mut arena.containers[node].children);
        let mut kept = Vec::with_capacity(children.len());
        for child in children {
            if arena.is_dummy(child) {
                // Promote the (already pruned) children of a dummy; drop an empty dummy.
                for grandchild in std::mem::take(&mut arena.containers[child].children) {
                    arena.containers[grandchild].parent = Some(node);
                    kept.push(grandchild);
                }
                arena.containers[child].parent = None;
            } else {
                kept.push(child);
            }
        }
        arena.containers[node].children = kept;
    }
    let mut new_roots = Vec::with_capacity(roots.len());
    for root in roots {
        if !arena.is_dummy(root) || arena.containers[root].children.len() > 1 {
            new_roots.push(root);
            continue;
        }
        // A root dummy with no child disappears; with one child, the child becomes a root.
        for child in std::mem::take(&mut arena.containers[root].children) {
            arena.containers[child].parent = None;
            new_roots.push(child);
        }
    }
    new_roots
}

/// Step 5: merge root-level threads whose subjects match.
fn gather_by_subject(arena: &mut Arena, roots: &mut Vec<usize>) {
    let subject_of = |arena: &Arena, c: usize| {
        arena
            .representative(c)
            .map(|m| m.base_subject.clone())
            .unwrap_or_default()
    };
    let is_reply = |arena: &Arena, c: usize| {
        arena.containers[c]
            .message
            .is_some_and(|m| arena.messages[m].is_reply)
    };
    // 5B: one container per subject, preferring a dummy, then a non-reply message.
    let mut table: HashMap<String, usize> = HashMap::new();
    for &root in roots.iter() {
        let subject = subject_of(arena, root);
        if subject.is_empty() {
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
                        && is_reply(arena, old)
                        && !is_reply(arena, root));
                if better {
                    table.insert(subject, root);
                }
            }
        }
    }
    // 5C: merge every other root with the same subject into the table's container.
    let mut removed = vec![false; arena.containers.len()];
    let snapshot = roots.clone();
    for root in snapshot {
        if removed[root] {
            continue;
        }
        let subject = subject_of(arena, root);
        if subject.is_empty() {
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
                for child in std::mem::take(&mut arena.containers[root].children) {
                    arena.link(that, child);
                }
                removed[root] = true;
            }
            (true, false) => {
                arena.link(that, root);
                removed[root] = true;
            }
            (false, true) => {
                arena.link(root, that);
                removed[that] = true;
                table.insert(subject, root);
            }
            (false, false) if !is_reply(arena, that) && is_reply(arena, root) => {
                arena.link(that, root);
                removed[root] = true;
            }
            (false, false) if is_reply(arena, that) && !is_reply(arena, root) => {
                arena.link(root, that);
                removed[that] = true;
                table.insert(subject, root);
            }
            (false, false) => {
                let dummy = arena.new_container(None);
                removed.push(false);
                arena.link(dummy, that);
                arena.link(dummy, root);
                removed[that] = true;
                removed[root] = true;
                // The dummy takes the place of the table's container in the root set.
                if let Some(slot) = roots.iter_mut().find(|r| **r == that) {
                    *slot = dummy;
                }
                table.insert(subject, dummy);
            }
        }
    }
    roots.retain(|&r| !removed[r]);
}

/// Step 6: sort every sibling list by sent date (a dummy takes its first child's date after
/// that child list is sorted; ties keep mailbox order), then turn the arena into nodes.
fn sort_and_build(arena: &mut Arena, mut roots: Vec<usize>) -> Vec<ThreadNode> {
    let mut order = Vec::with_capacity(arena.containers.len());
    let mut stack = roots.clone();
    while let Some(node) = stack.pop() {
        order.push(node);
        stack.extend(arena.containers[node].children.iter().copied());
    }
    let compare = |arena: &Arena, a: usize, b: usize| match (
        arena.representative(a),
        arena.representative(b),
    ) {
        (Some(x), Some(y)) => by_date(x, y),
        (x, y) => x.is_some().cmp(&y.is_some()),
    };
    // Children before parents, so a dummy's first child is final when the parent sorts.
    for &node in order.iter().rev() {
        let mut children = std::mem::take(&mut arena.containers[node].children);
        children.sort_by(|&a, &b| compare(arena, a, b));
        arena.containers[node].children = children;
    }
    roots.sort_by(|&a, &b| compare(arena, a, b));

    // Build nodes bottom-up, again without recursion.
    let mut built: HashMap<usize, ThreadNode> = HashMap::with_capacity(order.len());
    for &node in order.iter().rev() {
        let children = arena.containers[node]
            .children
            .iter()
            .filter_map(|c| built.remove(c))
            .collect();
        let uid = arena.containers[node]
            .message
            .map_or(0, |m| arena.messages[m].uid);
        built.insert(node, ThreadNode { uid, children });
    }
    roots.iter().filter_map(|r| built.remove(r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sort::base_subject;

    fn msg(uid: u32, day: u32, subject: &str, id: Option<&str>, refs: &[&str]) -> ThreadMessage {
        let base = base_subject(subject);
        ThreadMessage {
            uid,
            sent: format!("2024-01-{day:02}T00:00:00Z"),
            base_subject: base.text.to_ascii_lowercase(),
            is_reply: base.is_reply_or_forward,
            message_id: id.map(str::to_string),
            references: refs.iter().map(|r| r.to_string()).collect(),
        }
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
            msg(1, 1, "Plan", Some("a"), &[]),
            msg(2, 2, "Re: Plan", Some("b"), &["a"]),
            msg(3, 3, "Re: Plan", Some("c"), &["a"]),
            msg(4, 4, "Re: Plan", Some("d"), &["a", "b"]),
            msg(5, 5, "Other", Some("e"), &[]),
        ];
        assert_eq!(show(&thread_references(messages)), "(1 (2 4)(3))(5)");
    }

    #[test]
    fn missing_parents_become_dummies_or_are_pruned() {
        // 2 and 3 reply to a message not in the mailbox: a root dummy holds both. 5 replies to
        // a missing message on its own: the dummy is pruned and 5 becomes a root.
        let messages = vec![
            msg(2, 2, "Re: lost", Some("b"), &["missing"]),
            msg(3, 3, "Re: lost", Some("c"), &["missing"]),
            msg(5, 5, "Re: alone", Some("e"), &["gone1", "gone2"]),
            msg(6, 6, "Re: deep", Some("f"), &["x", "y", "z"]),
            msg(7, 7, "Re: deep", Some("g"), &["x", "y", "w"]),
        ];
        // 6 and 7 share the missing ancestors x/y: the dummies z and w are pruned, y is promoted
        // away, x remains as the root dummy with both.
        assert_eq!(
            show(&thread_references(messages)),
            "((2)(3))(5)((6)(7))",
            "dummies with several children stay at the root, others are pruned"
        );
    }

    #[test]
    fn reference_cycles_are_not_linked() {
        // a's References name b, and b's name a: linking both ways would close a loop.
        let messages = vec![
            msg(1, 1, "loop one", Some("a"), &["b"]),
            msg(2, 2, "loop two", Some("b"), &["a"]),
            msg(3, 3, "self", Some("c"), &["c"]),
        ];
        // 2 is linked as 1's parent first; 2's own reference to 1 would then close a loop
        // and is skipped. 3 references itself and stays alone.
        assert_eq!(show(&thread_references(messages)), "(2 1)(3)");
    }

    #[test]
    fn truncated_references_are_replaced_by_the_message_own_chain() {
        // 3 first appears (via 4's References) under 1, but its own References say 2.
        let messages = vec![
            msg(1, 1, "t", Some("a"), &[]),
            msg(2, 2, "Re: t", Some("b"), &["a"]),
            msg(4, 4, "Re: t", Some("d"), &["a", "c"]),
            msg(3, 3, "Re: t", Some("c"), &["a", "b"]),
        ];
        assert_eq!(show(&thread_references(messages)), "(1 2 3 4)");
    }

    #[test]
    fn subjects_merge_at_the_root() {
        // No References at all: 1 (non-reply) collects the replies 2 and 4; 5 and 6 are both
        // non-replies of one subject, so a dummy holds them; 7 has an empty subject.
        let messages = vec![
            msg(1, 1, "Meeting", Some("a"), &[]),
            msg(2, 2, "Re: Meeting", Some("b"), &[]),
            msg(4, 4, "RE: [team] meeting", Some("d"), &[]),
            msg(5, 5, "Lunch", Some("e"), &[]),
            msg(6, 6, "lunch", Some("f"), &[]),
            msg(7, 7, "", Some("g"), &[]),
            msg(8, 8, "", Some("h"), &[]),
        ];
        assert_eq!(
            show(&thread_references(messages)),
            "(1 (2)(4))((5)(6))(7)(8)"
        );
    }

    #[test]
    fn a_reply_arriving_first_is_put_under_the_original() {
        let messages = vec![
            msg(1, 1, "Re: news", Some("a"), &[]),
            msg(2, 2, "News", Some("b"), &[]),
        ];
        assert_eq!(show(&thread_references(messages)), "(2 1)");
    }

    #[test]
    fn children_and_roots_are_sorted_by_sent_date() {
        let messages = vec![
            msg(1, 9, "late root", Some("a"), &[]),
            msg(2, 1, "early root", Some("b"), &[]),
            msg(3, 8, "Re: early root", Some("c"), &["b"]),
            msg(4, 3, "Re: early root", Some("d"), &["b"]),
            // Same date as 4: mailbox order breaks the tie.
            msg(5, 3, "Re: early root", Some("e"), &["b"]),
        ];
        assert_eq!(show(&thread_references(messages)), "(2 (4)(5)(3))(1)");
    }

    #[test]
    fn duplicate_and_missing_message_ids_stay_separate() {
        let messages = vec![
            msg(1, 1, "x one", Some("dup"), &[]),
            msg(2, 2, "x two", Some("dup"), &[]),
            msg(3, 3, "x three", None, &[]),
            msg(4, 4, "Re: x one", Some("d"), &["dup"]),
        ];
        assert_eq!(show(&thread_references(messages)), "(1 4)(2)(3)");
    }

    #[test]
    fn a_deep_chain_does_not_exhaust_the_stack() {
        let count = 50_000u32;
        let ids: Vec<String> = (0..count).map(|i| format!("m{i}")).collect();
        let messages: Vec<ThreadMessage> = (0..count)
            .map(|i| ThreadMessage {
                uid: i + 1,
                sent: format!("{i:010}"),
                base_subject: "chain".into(),
                is_reply: i > 0,
                message_id: Some(ids[i as usize].clone()),
                references: (i > 0)
                    .then(|| ids[i as usize - 1].clone())
                    .into_iter()
                    .collect(),
            })
            .collect();
        let threads = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                let threads = thread_references(messages);
                // Flatten the chain iteratively (dropping it recursively would be the test's
                // own stack problem, not the algorithm's).
                let mut depth = 0;
                let mut node = threads.into_iter().next();
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
            msg(1, 5, "Beta", None, &[]),
            msg(2, 1, "Alpha", None, &[]),
            msg(3, 2, "Re: alpha", None, &[]),
            msg(4, 6, "Re: Beta", None, &[]),
            msg(5, 3, "Fwd: Alpha", None, &[]),
            msg(6, 4, "Gamma", None, &[]),
        ];
        assert_eq!(
            show(&thread_ordered_subject(messages)),
            "(2 (3)(5))(6)(1 4)"
        );
    }
}

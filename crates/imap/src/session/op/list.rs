//! LIST (RFC 9051 section 6.3.9 with LIST-EXTENDED basics, RFC 5258; CHILDREN; SPECIAL-USE,
//! RFC 6154; LIST-STATUS, RFC 5819) and LSUB.

use crate::proto::{Code, Data, ListCommand, Response};
use crate::session::op::status;
use crate::session::{Done, Failure, OpResult, Responder, Session};
use sealmail_core::mailstore::{MailSession, MailStore};
use sealmail_core::store::{DELIMITER, FolderInfo};
use std::collections::BTreeMap;

pub(crate) async fn list<M: MailStore>(
    session: &mut Session<M>,
    command: ListCommand,
    out: &mut Responder<'_>,
) -> OpResult {
    // `LIST "" ""` asks for the delimiter and root (RFC 9051 section 6.3.9).
    if command.patterns.len() == 1 && command.patterns[0].is_empty() {
        out.push(&Response::Data(Data::List {
            attributes: vec!["\\Noselect".into()],
            delimiter: Some(DELIMITER),
            mailbox: String::new(),
            child_info: Vec::new(),
            old_name: None,
        }));
        return Ok(Done::ok("LIST completed"));
    }
    let has = |list: &[String], option: &str| list.iter().any(|o| o == option);
    let subscribed_only = has(&command.select_options, "SUBSCRIBED");
    let special_use_only = has(&command.select_options, "SPECIAL-USE");
    // RECURSIVEMATCH (RFC 5258 section 3.5): a parent that matches but is not itself selected
    // is listed when a descendant is, with CHILDINFO saying why.
    let recursive = has(&command.select_options, "RECURSIVEMATCH");
    if recursive && !subscribed_only && !special_use_only {
        return Err(Failure::bad(
            "RECURSIVEMATCH needs another selection option",
        ));
    }
    let show_subscribed = subscribed_only || has(&command.return_options, "SUBSCRIBED");
    let append_limit = session.config.max_message_size;
    let authed = session.authed()?;
    let folders = authed
        .mail
        .list_folders()
        .await
        .map_err(|e| Failure::store(e, Code::NonExistent))?;
    let tree = Tree::new(&folders);
    let patterns: Vec<String> = command
        .patterns
        .iter()
        .map(|p| canonical_pattern(&command.reference, p))
        .collect();
    let selected_by_options = |info: &FolderInfo| {
        (!subscribed_only || info.subscribed) && (!special_use_only || info.special_use.is_some())
    };
    for (path, node) in &tree.nodes {
        if !patterns.iter().any(|p| matches(p, path)) {
            continue;
        }
        // With RECURSIVEMATCH: does a descendant meet the selection options?
        let child_info = if recursive {
            let prefix = format!("{path}{DELIMITER}");
            let descendant_selected = folders
                .iter()
                .any(|f| f.path.starts_with(&prefix) && selected_by_options(f));
            if descendant_selected {
                vec![
                    if subscribed_only {
                        "SUBSCRIBED"
                    } else {
                        "SPECIAL-USE"
                    }
                    .to_string(),
                ]
            } else {
                Vec::new()
            }
        } else {
            Vec::new()
        };
        let Some(info) = node.info else {
            // A parent that exists only through its children: a level of hierarchy, listed as
            // `\Noselect` (RFC 9051 section 6.3.9), or `\NonExistent` when a selection option
            // lists it for its descendants' sake (RFC 5258 section 3.5).
            let plain = !subscribed_only && !special_use_only;
            if plain || !child_info.is_empty() {
                let not_a_mailbox = if plain { "\\Noselect" } else { "\\NonExistent" };
                out.push(&Response::Data(Data::List {
                    attributes: vec![not_a_mailbox.into(), "\\HasChildren".into()],
                    delimiter: Some(DELIMITER),
                    mailbox: path.clone(),
                    child_info,
                    old_name: None,
                }));
            }
            continue;
        };
        let selected = selected_by_options(info);
        if !selected && child_info.is_empty() {
            continue;
        }
        let mut attributes = vec![
            if node.has_children {
                "\\HasChildren"
            } else {
                "\\HasNoChildren"
            }
            .to_string(),
        ];
        if show_subscribed && info.subscribed {
            attributes.push("\\Subscribed".into());
        }
        if let Some(special) = &info.special_use {
            attributes.push(special.clone());
        }
        out.push(&Response::Data(Data::List {
            attributes,
            delimiter: Some(DELIMITER),
            mailbox: path.clone(),
            child_info,
            old_name: None,
        }));
        // LIST-STATUS: a mailbox's STATUS comes right after its LIST (RFC 5819 section 2).
        // A STATUS that fails is left out, the LIST stays (RFC 5819 section 2).
        if let Some(items) = &command.return_status
            && selected
            && let Err(failure) =
                status::respond(&authed.mail, info, items, append_limit, out).await
        {
            tracing::warn!(?failure, "LIST-STATUS left a STATUS out");
        }
    }
    Ok(Done::ok("LIST completed"))
}

pub(crate) async fn lsub<M: MailStore>(
    session: &mut Session<M>,
    reference: String,
    pattern: String,
    out: &mut Responder<'_>,
) -> OpResult {
    let authed = session.authed()?;
    let folders = authed
        .mail
        .list_folders()
        .await
        .map_err(|e| Failure::store(e, Code::NonExistent))?;
    let pattern = canonical_pattern(&reference, &pattern);
    for info in folders.iter().filter(|f| f.subscribed) {
        if matches(&pattern, &info.path) {
            out.push(&Response::Data(Data::Lsub {
                attributes: Vec::new(),
                delimiter: Some(DELIMITER),
                mailbox: info.path.clone(),
            }));
        }
    }
    Ok(Done::ok("LSUB completed"))
}

/// Every folder plus the parents its path implies, sorted by path.
struct Tree<'a> {
    nodes: BTreeMap<String, Node<'a>>,
}

#[derive(Default)]
struct Node<'a> {
    info: Option<&'a FolderInfo>,
    has_children: bool,
}

impl<'a> Tree<'a> {
    fn new(folders: &'a [FolderInfo]) -> Self {
        let mut nodes: BTreeMap<String, Node<'a>> = BTreeMap::new();
        for info in folders {
            nodes.entry(info.path.clone()).or_default().info = Some(info);
            let mut path = info.path.as_str();
            while let Some((parent, _)) = path.rsplit_once(DELIMITER) {
                nodes.entry(parent.to_string()).or_default().has_children = true;
                path = parent;
            }
        }
        Tree { nodes }
    }
}

/// Reference + pattern, with a leading `INBOX` in any case made canonical.
fn canonical_pattern(reference: &str, pattern: &str) -> String {
    let joined = if pattern.starts_with(DELIMITER) || reference.is_empty() {
        pattern.to_string()
    } else {
        format!("{reference}{pattern}")
    };
    let first_len = joined.find(DELIMITER).unwrap_or(joined.len());
    if joined[..first_len].eq_ignore_ascii_case("INBOX") {
        format!("INBOX{}", &joined[first_len..])
    } else {
        joined
    }
}

/// `*` matches anything, `%` anything but the delimiter (RFC 9051 section 6.3.9).
pub(crate) fn matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matching with memo of (pattern index, name index) reachability.
    let mut reachable = vec![false; n.len() + 1];
    reachable[0] = true;
    for &pc in &p {
        let mut next = vec![false; n.len() + 1];
        match pc {
            '*' | '%' => {
                let mut carry = false;
                for j in 0..=n.len() {
                    carry |= reachable[j];
                    next[j] = carry;
                    if j < n.len() && pc == '%' && n[j] == DELIMITER {
                        carry = false;
                    }
                }
            }
            c => {
                for j in 0..n.len() {
                    if reachable[j] && n[j] == c {
                        next[j + 1] = true;
                    }
                }
            }
        }
        reachable = next;
    }
    reachable[n.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_follow_rfc_semantics() {
        assert!(matches("*", "a/b/c"));
        assert!(matches("%", "INBOX"));
        assert!(!matches("%", "a/b"));
        assert!(matches("a/%", "a/b"));
        assert!(!matches("a/%", "a/b/c"));
        assert!(matches("a/*", "a/b/c"));
        assert!(matches("%/b", "a/b"));
        assert!(!matches("x", "xy"));
        assert!(matches("x*y", "x/1/y"));
        assert!(matches("", ""));
        assert_eq!(canonical_pattern("", "inbox/%"), "INBOX/%");
        assert_eq!(canonical_pattern("Archive/", "%"), "Archive/%");
    }
}

//! SORT (RFC 5256, with DISPLAYFROM/DISPLAYTO from RFC 5957).
//!
//! Every sort key is computed once when a message is appended and stored in an indexed column
//! (`sort_subject`, `sort_from`, ..., see schema version 3), so a SORT is one `ORDER BY` over an
//! index, filtered by the same SQL as SEARCH. This module also owns the key derivations: the
//! RFC 5256 base subject, the first addr-mailbox of an address list, the RFC 5957 display name.

use super::Mailbox;
use super::search::{SearchKey, filter_sql};
use super::thread::{parent_keys, thread_key};
use super::types::EmailAddress;
use crate::error::Result;
use rusqlite::Connection;
use rusqlite::functions::FunctionFlags;
use serde::{Deserialize, Serialize};

/// A sort key (RFC 5256 section 3, RFC 5957 section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortKey {
    /// Internal date and time.
    Arrival,
    /// addr-mailbox of the first Cc address.
    Cc,
    /// Sent date (Date header, else internal date), in UTC.
    Date,
    /// addr-mailbox of the first From address.
    From,
    /// RFC822.SIZE.
    Size,
    /// Base subject (RFC 5256 section 2.1).
    Subject,
    /// addr-mailbox of the first To address.
    To,
    /// Display name (else addr-spec) of the first From address (RFC 5957).
    DisplayFrom,
    /// Display name (else addr-spec) of the first To address (RFC 5957).
    DisplayTo,
}

impl SortKey {
    /// The stored column the key orders by.
    fn column(self) -> &'static str {
        match self {
            SortKey::Arrival => "m.internal_date",
            SortKey::Cc => "m.sort_cc",
            SortKey::Date => "m.sort_date",
            SortKey::From => "m.sort_from",
            SortKey::Size => "m.size",
            SortKey::Subject => "m.sort_subject",
            SortKey::To => "m.sort_to",
            SortKey::DisplayFrom => "m.display_from",
            SortKey::DisplayTo => "m.display_to",
        }
    }
}

/// One `sort-criterion`: a key, optionally reversed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SortCriterion {
    pub key: SortKey,
    pub reverse: bool,
}

impl Mailbox {
    /// UIDs of the messages in `folder` matching `key`, ordered by `criteria`. Messages equal
    /// under every criterion keep mailbox (UID) order, as RFC 5256 requires.
    pub fn sort(
        &self,
        folder: &str,
        criteria: &[SortCriterion],
        key: &SearchKey,
    ) -> Result<Vec<u32>> {
        let (filter, params) = filter_sql(&self.conn, folder, key)?;
        let mut order = String::new();
        for criterion in criteria {
            order.push_str(criterion.key.column());
            order.push_str(if criterion.reverse { " DESC, " } else { ", " });
        }
        order.push_str("m.uid");
        let sql = format!("SELECT m.uid {filter} ORDER BY {order}");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// The sort and thread columns of one message, as stored at append time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SortColumns {
    pub subject: String,
    pub subject_is_reply: bool,
    pub from: String,
    pub to: String,
    pub cc: String,
    pub display_from: String,
    pub display_to: String,
    pub thread_refs: String,
    /// [`thread_key`] of `subject`, as SQLite's signed integer.
    pub subject_key: i64,
    /// [`parent_keys`] of `thread_refs`.
    pub thread_parents: Vec<u8>,
}

impl SortColumns {
    pub fn new(
        subject: Option<&str>,
        from: &[EmailAddress],
        to: &[EmailAddress],
        cc: &[EmailAddress],
        references: &[String],
        in_reply_to: Option<&str>,
    ) -> Self {
        let base = base_subject(subject.unwrap_or_default());
        let subject = base.text.to_ascii_lowercase();
        let thread_refs = thread_refs(references, in_reply_to);
        SortColumns {
            subject_key: thread_key(&subject) as i64,
            thread_parents: parent_keys(&thread_refs),
            subject,
            subject_is_reply: base.is_reply_or_forward,
            from: first_mailbox(from),
            to: first_mailbox(to),
            cc: first_mailbox(cc),
            display_from: first_display(from),
            display_to: first_display(to),
            thread_refs,
        }
    }
}

/// The result of RFC 5256 base subject extraction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseSubject {
    /// The base subject, case preserved.
    pub text: String,
    /// Extraction removed a `Re:`/`Fw:`/`Fwd:` leader, a `(fwd)` trailer or a `[fwd: ...]`
    /// wrapper: the message is a reply or forward (THREAD=REFERENCES step 5).
    pub is_reply_or_forward: bool,
}

/// Extract the base subject of an (already decoded) subject, RFC 5256 section 2.1.
pub fn base_subject(subject: &str) -> BaseSubject {
    // (1) Tabs and line breaks become spaces; runs of spaces become one.
    let mut text = String::with_capacity(subject.len());
    for c in subject.chars() {
        let c = if matches!(c, '\t' | '\r' | '\n') {
            ' '
        } else {
            c
        };
        if !(c == ' ' && text.ends_with(' ')) {
            text.push(c);
        }
    }
    let mut is_reply = false;
    loop {
        // (2) Trailing "(fwd)" and whitespace.
        loop {
            if text.ends_with(' ') {
                text.pop();
            } else if ends_with_ignore_ascii_case(&text, "(fwd)") {
                text.truncate(text.len() - "(fwd)".len());
                is_reply = true;
            } else {
                break;
            }
        }
        // (3)-(5) Leaders and blobs, until neither changes anything.
        loop {
            let mut changed = false;
            // (3) subj-leader = (*subj-blob subj-refwd) / WSP, as often as it matches.
            loop {
                if let Some(rest) = text.strip_prefix(' ') {
                    text = rest.to_string();
                    changed = true;
                } else if let Some(end) = refwd_leader_end(&text) {
                    text.drain(..end);
                    is_reply = true;
                    changed = true;
                } else {
                    break;
                }
            }
            // (4) A leading subj-blob, unless the subject would then be empty.
            if let Some(end) = blob_end(&text) {
                let rest = text[end..].trim_start_matches(' ');
                if !rest.is_empty() {
                    text = rest.to_string();
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        // (6) "[fwd:" ... "]" wraps a subject: unwrap and start over at (2).
        if text.len() >= "[fwd:]".len()
            && text.as_bytes()[.."[fwd:".len()].eq_ignore_ascii_case(b"[fwd:")
            && text.ends_with(']')
        {
            text = text["[fwd:".len()..text.len() - 1].to_string();
            is_reply = true;
            continue;
        }
        break;
    }
    BaseSubject {
        text,
        is_reply_or_forward: is_reply,
    }
}

fn ends_with_ignore_ascii_case(text: &str, suffix: &str) -> bool {
    text.len() >= suffix.len()
        && text.as_bytes()[text.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// `subj-blob = "[" *BLOBCHAR "]" *WSP` at the start of `text`: the offset just past it.
fn blob_end(text: &str) -> Option<usize> {
    let rest = text.strip_prefix('[')?;
    let close = rest.find([']', '['])?;
    if rest.as_bytes()[close] != b']' {
        return None;
    }
    let after = 1 + close + 1;
    Some(after + (text[after..].len() - text[after..].trim_start_matches(' ').len()))
}

/// `*subj-blob subj-refwd` at the start of `text`, where
/// `subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"`: the offset just past the colon.
fn refwd_leader_end(text: &str) -> Option<usize> {
    let mut at = 0;
    while let Some(end) = blob_end(&text[at..]) {
        at += end;
    }
    let bytes = text.as_bytes();
    let word = |w: &str| {
        bytes
            .get(at..at + w.len())
            .is_some_and(|b| b.eq_ignore_ascii_case(w.as_bytes()))
    };
    if word("re") {
        at += 2;
    } else if word("fwd") {
        at += 3;
    } else if word("fw") {
        at += 2;
    } else {
        return None;
    }
    while bytes.get(at) == Some(&b' ') {
        at += 1;
    }
    if let Some(end) = blob_end(&text[at..]) {
        at += end;
    }
    (bytes.get(at) == Some(&b':')).then_some(at + 1)
}

/// addr-mailbox (local part) of the first address, ASCII-lowercased; empty when there is none.
fn first_mailbox(addresses: &[EmailAddress]) -> String {
    addresses
        .iter()
        .find_map(|a| a.address.as_deref())
        .map(|address| {
            let local = address.rsplit_once('@').map_or(address, |(l, _)| l);
            local.to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// RFC 5957: the display name of the first address if it has a non-empty one, else its
/// addr-spec; lowercased (i;unicode-casemap). Empty when there is no address.
fn first_display(addresses: &[EmailAddress]) -> String {
    let Some(first) = addresses.iter().find(|a| a.address.is_some()) else {
        return String::new();
    };
    match first
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        Some(name) => name.to_lowercase(),
        None => first.address.as_deref().unwrap_or_default().to_lowercase(),
    }
}

/// The parent chain THREAD=REFERENCES links: the References ids, or else the first
/// In-Reply-To id; space-separated (message ids contain no spaces once parsed).
fn thread_refs(references: &[String], in_reply_to: Option<&str>) -> String {
    let ids: Vec<&str> = if references.is_empty() {
        in_reply_to.into_iter().collect()
    } else {
        references.iter().map(String::as_str).collect()
    };
    ids.iter()
        .map(|id| id.trim())
        .filter(|id| !id.is_empty() && !id.contains(char::is_whitespace))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Register the functions schema versions 3 and 5 back-fill existing messages with. They run
/// the same code as the append path, over the stored (decoded) columns.
pub(crate) fn register_functions(conn: &Connection) -> Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("sm_sort_base_subject", 1, flags, |ctx| {
        let subject: Option<String> = ctx.get(0)?;
        Ok(base_subject(subject.as_deref().unwrap_or_default())
            .text
            .to_ascii_lowercase())
    })?;
    conn.create_scalar_function("sm_sort_subject_is_reply", 1, flags, |ctx| {
        let subject: Option<String> = ctx.get(0)?;
        Ok(base_subject(subject.as_deref().unwrap_or_default()).is_reply_or_forward)
    })?;
    conn.create_scalar_function("sm_sort_mailbox", 1, flags, |ctx| {
        Ok(first_mailbox(&stored_addresses(ctx.get(0)?)))
    })?;
    conn.create_scalar_function("sm_sort_display", 1, flags, |ctx| {
        Ok(first_display(&stored_addresses(ctx.get(0)?)))
    })?;
    conn.create_scalar_function("sm_sort_thread_refs", 2, flags, |ctx| {
        let references: Option<String> = ctx.get(0)?;
        let in_reply_to: Option<String> = ctx.get(1)?;
        let references: Vec<String> = references
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default();
        Ok(thread_refs(&references, in_reply_to.as_deref()))
    })?;
    // Version 5: digests of a Message-ID or base subject, and of a stored parent chain.
    conn.create_scalar_function("sm_thread_key", 1, flags, |ctx| {
        let text: Option<String> = ctx.get(0)?;
        Ok(thread_key(text.as_deref().unwrap_or_default()) as i64)
    })?;
    conn.create_scalar_function("sm_thread_parent_keys", 1, flags, |ctx| {
        let thread_refs: Option<String> = ctx.get(0)?;
        Ok(parent_keys(thread_refs.as_deref().unwrap_or_default()))
    })?;
    Ok(())
}

/// An address column as stored (JSON list of [`EmailAddress`]); unreadable is no address.
fn stored_addresses(json: Option<String>) -> Vec<EmailAddress> {
    json.and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(subject: &str) -> (String, bool) {
        let b = base_subject(subject);
        (b.text, b.is_reply_or_forward)
    }

    #[test]
    fn base_subject_strips_reply_and_forward_markers() {
        let cases: &[(&str, &str, bool)] = &[
            ("Hello world", "Hello world", false),
            ("Re: Hello", "Hello", true),
            ("RE: re: Hello", "Hello", true),
            ("Fwd: Hello", "Hello", true),
            ("FW: Hello", "Hello", true),
            ("Re : Hello", "Hello", true),
            ("Re[2]: Hello", "Hello", true),
            ("Hello (fwd)", "Hello", true),
            ("Hello (FWD) (fwd)  ", "Hello", true),
            ("[Fwd: Hello]", "Hello", true),
            ("[fwd: Re: Hello (fwd)]", "Hello", true),
            ("Re: [list] Fwd: [other] Re: Hello", "Hello", true),
            ("[list] Re: Hello", "Hello", true),
            ("[list] Hello", "Hello", false),
            ("[list] [tag] Hello", "Hello", false),
            ("[only a blob]", "[only a blob]", false),
            ("Re: [only a blob]", "[only a blob]", true),
            ("  Hello \t\r\n  world  ", "Hello world", false),
            ("Refresh: the page", "Refresh: the page", false),
            ("Re:", "", true),
            ("", "", false),
            ("Réponse: été", "Réponse: été", false),
            ("Re: Fwd: [Fwd: Re: [x] nested]", "nested", true),
        ];
        for &(input, want, reply) in cases {
            assert_eq!(base(input), (want.to_string(), reply), "subject {input:?}");
        }
    }

    #[test]
    fn address_keys_take_the_first_mailbox() {
        let addr = |name: Option<&str>, address: Option<&str>| EmailAddress {
            name: name.map(str::to_string),
            address: address.map(str::to_string),
        };
        let list = [
            addr(Some("Group"), None),
            addr(Some("Zoë Müller"), Some("Zoe@Example.ORG")),
            addr(None, Some("bob@example.org")),
        ];
        assert_eq!(first_mailbox(&list), "zoe");
        assert_eq!(first_display(&list), "zoë müller");
        assert_eq!(first_display(&list[2..]), "bob@example.org");
        assert_eq!(first_mailbox(&[]), "");
        assert_eq!(first_display(&[addr(Some("  "), Some("X@y"))]), "x@y");
    }

    #[test]
    fn thread_refs_prefer_references_over_in_reply_to() {
        let refs = vec!["a@x".to_string(), "b@x".to_string()];
        assert_eq!(thread_refs(&refs, Some("c@x")), "a@x b@x");
        assert_eq!(thread_refs(&[], Some("c@x")), "c@x");
        assert_eq!(thread_refs(&[], None), "");
    }
}

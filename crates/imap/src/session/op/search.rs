//! SEARCH and UID SEARCH (RFC 9051 section 6.4.4), with ESEARCH return options (RFC 4731),
//! SEARCHRES `SAVE` (RFC 5182) and MODSEQ (RFC 7162).

use crate::proto::{Code, Data, Response, SearchCommand, SearchKey, SearchReturn, Tag};
use crate::session::op::sort::check_charset;
use crate::session::selected::Selected;
use crate::session::{Done, Failure, OpResult, Responder, Session, convert};
use sealmail_core::mailstore::{MailSession, MailStore};

pub(crate) async fn run<M: MailStore>(
    session: &mut Session<M>,
    search: SearchCommand,
    tag: &Tag,
    out: &mut Responder<'_>,
) -> OpResult {
    // RFC 6855 section 3: after ENABLE UTF8=ACCEPT a SEARCH with CHARSET is refused with BAD.
    if search.charset.is_some() && session.enabled.utf8_accept {
        return Err(Failure::bad(
            "SEARCH CHARSET is not allowed after ENABLE UTF8=ACCEPT",
        ));
    }
    if let Some(charset) = &search.charset {
        check_charset(charset)?;
    }
    let rev2 = session.enabled.rev2;
    let authed = session.authed()?;
    let Some(selected) = authed.selected.as_mut() else {
        return Err(Failure::bad("no folder selected"));
    };
    let key = convert::search_key(&search.key, selected)?;
    let found = authed
        .mail
        .search(&selected.folder, key)
        .await
        .map_err(|e| Failure::store(e, Code::NonExistent))?;
    let Numbered {
        indexes,
        ids,
        highest_modseq,
    } = numbered(selected, &found, search.uid, &search.key);
    // IMAP4rev2 clients get ESEARCH even without RETURN (RFC 9051 section 6.4.4).
    let options = match search.result {
        Some(options) => Some(options),
        None if rev2 => Some(vec![SearchReturn::All]),
        None => None,
    };
    let Some(mut options) = options else {
        out.push(&Response::Data(Data::Search {
            ids,
            highest_modseq,
        }));
        return Ok(Done::ok("SEARCH completed"));
    };
    if options.is_empty() {
        options.push(SearchReturn::All);
    }
    let has = |o: SearchReturn| options.contains(&o);
    if has(SearchReturn::Save) {
        let mut saved: Vec<u32> = indexes.iter().map(|&i| selected.messages[i].uid).collect();
        // SAVE with MIN and/or MAX, but neither ALL nor COUNT, saves only the messages those
        // return (RFC 5182 section 2.1). UID order is sequence order, so the ends match.
        let only_ends = (has(SearchReturn::Min) || has(SearchReturn::Max))
            && !has(SearchReturn::All)
            && !has(SearchReturn::Count);
        if only_ends && let (Some(&first), Some(&last)) = (saved.iter().min(), saved.iter().max()) {
            saved = [
                has(SearchReturn::Min).then_some(first),
                has(SearchReturn::Max).then_some(last),
            ]
            .into_iter()
            .flatten()
            .collect();
            saved.dedup();
        }
        selected.saved_search = saved;
    }
    // `RETURN (SAVE)` alone produces no ESEARCH response (RFC 5182 section 2.1).
    if options.iter().any(|&o| o != SearchReturn::Save) {
        let non_empty = !ids.is_empty();
        let mut all = ids.clone();
        all.sort_unstable();
        out.push(&Response::Data(Data::ESearch {
            tag: Some(tag.clone()),
            uid: search.uid,
            min: (has(SearchReturn::Min) && non_empty).then(|| all[0]),
            max: (has(SearchReturn::Max) && non_empty).then(|| all[all.len() - 1]),
            count: has(SearchReturn::Count).then_some(ids.len() as u32),
            all: has(SearchReturn::All).then_some(all),
            highest_modseq,
        }));
    }
    Ok(Done::ok("SEARCH completed"))
}

/// The matches of a SEARCH or SORT as this session numbers them, in the store's order.
pub(crate) struct Numbered {
    /// Positions in the session's message list.
    pub indexes: Vec<usize>,
    /// UIDs for the UID form of the command, sequence numbers otherwise.
    pub ids: Vec<u32>,
    /// The highest MODSEQ among the matches when `key` uses MODSEQ (RFC 7162 section 3.1.5).
    pub highest_modseq: Option<u64>,
}

/// Number the store's matching `uids` for this session. Only messages it knows about count:
/// new ones are announced with EXISTS first.
pub(crate) fn numbered(
    selected: &Selected,
    uids: &[u32],
    by_uid: bool,
    key: &SearchKey,
) -> Numbered {
    let indexes: Vec<usize> = uids
        .iter()
        .filter_map(|&uid| selected.index_of(uid))
        .collect();
    let ids = indexes
        .iter()
        .map(|&i| {
            if by_uid {
                selected.messages[i].uid
            } else {
                i as u32 + 1
            }
        })
        .collect();
    let highest_modseq = convert::uses_modseq(key)
        .then(|| indexes.iter().map(|&i| selected.messages[i].modseq).max())
        .flatten();
    Numbered {
        indexes,
        ids,
        highest_modseq,
    }
}

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
        let uids: Vec<u32> = indexes.iter().map(|&i| selected.messages[i].uid).collect();
        // MIN and MAX are the lowest and highest match: UID order is sequence order.
        let ends = (uids.iter().min().copied(), uids.iter().max().copied());
        selected.saved_search = saved_result(&options, uids, ends);
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

/// What `RETURN (... SAVE ...)` keeps for `$`, in UID order (RFC 5182 section 2.4): with MIN
/// and/or MAX but neither ALL nor COUNT, only the messages MIN and MAX return; otherwise every
/// match. `uids` are the matches, `ends` the UIDs of the MIN and MAX messages (SEARCH and SORT
/// define those differently).
pub(crate) fn saved_result(
    options: &[SearchReturn],
    mut uids: Vec<u32>,
    (min, max): (Option<u32>, Option<u32>),
) -> Vec<u32> {
    let has = |o: SearchReturn| options.contains(&o);
    let only_ends = (has(SearchReturn::Min) || has(SearchReturn::Max))
        && !has(SearchReturn::All)
        && !has(SearchReturn::Count);
    if only_ends {
        uids = [
            min.filter(|_| has(SearchReturn::Min)),
            max.filter(|_| has(SearchReturn::Max)),
        ]
        .into_iter()
        .flatten()
        .collect();
    }
    uids.sort_unstable();
    uids.dedup();
    uids
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
    let positions = Positions::new(selected, uids.len());
    let indexes: Vec<usize> = uids
        .iter()
        .filter_map(|&uid| positions.index_of(uid))
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

/// Finds messages of the selected folder by UID, for commands that look up many at once (a
/// SORT or THREAD of a whole big folder). A binary search per UID misses the cache on most
/// probes of a 100,000-message list; a table indexed by UID, built in one sequential pass,
/// answers each lookup with one read. UIDs are usually dense; when they are too sparse for a
/// table (or the lookups too few to pay for one), it falls back to the binary search.
pub(crate) struct Positions<'a> {
    selected: &'a Selected,
    /// `by_uid[uid]` is the message's index + 1, or 0 for no such message.
    by_uid: Vec<u32>,
}

impl<'a> Positions<'a> {
    /// For about `lookups` lookups.
    pub fn new(selected: &'a Selected, lookups: usize) -> Self {
        let len = selected.messages.len();
        let span = selected.largest_uid() as usize + 1;
        let by_uid = if lookups >= 1024 && span <= len.saturating_mul(8).max(1024) {
            let mut table = vec![0u32; span];
            for (index, message) in selected.messages.iter().enumerate() {
                table[message.uid as usize] = index as u32 + 1;
            }
            table
        } else {
            Vec::new()
        };
        Positions { selected, by_uid }
    }

    pub fn index_of(&self, uid: u32) -> Option<usize> {
        if self.by_uid.is_empty() {
            return self.selected.index_of(uid);
        }
        match self.by_uid.get(uid as usize) {
            Some(&found) if found > 0 => Some(found as usize - 1),
            _ => None,
        }
    }
}

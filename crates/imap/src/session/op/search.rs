//! SEARCH and UID SEARCH (RFC 9051 section 6.4.4), with ESEARCH return options (RFC 4731),
//! SEARCHRES `SAVE` (RFC 5182) and MODSEQ (RFC 7162).

use crate::proto::{Code, Data, Response, SearchCommand, SearchReturn, Tag};
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
    if let Some(charset) = &search.charset
        && !charset.eq_ignore_ascii_case("UTF-8")
        && !charset.eq_ignore_ascii_case("US-ASCII")
    {
        return Err(Failure::no_code(
            Code::BadCharset(vec!["UTF-8".into(), "US-ASCII".into()]),
            "unsupported charset",
        ));
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
    // Only messages this session knows about (new ones are announced with EXISTS first).
    let indexes: Vec<usize> = found
        .iter()
        .filter_map(|&uid| selected.index_of(uid))
        .collect();
    let ids: Vec<u32> = indexes
        .iter()
        .map(|&i| {
            if search.uid {
                selected.messages[i].uid
            } else {
                i as u32 + 1
            }
        })
        .collect();
    let highest_modseq = convert::uses_modseq(&search.key)
        .then(|| indexes.iter().map(|&i| selected.messages[i].modseq).max())
        .flatten();
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

//! SORT and UID SORT (RFC 5256), with DISPLAYFROM/DISPLAYTO (RFC 5957) and the ESORT return
//! options MIN, MAX, COUNT, ALL and SAVE (RFC 5267 section 3). The store orders by indexed
//! columns; this only maps UIDs to the numbers the client asked for.

use crate::proto::{Code, Data, Response, SearchKey, SearchReturn, SortCriterion, SortKey, Tag};
use crate::session::op::search::{Numbered, numbered, saved_result};
use crate::session::{Done, Failure, OpResult, Responder, Session, convert};
use sealmail_core::mailstore::{MailSession, MailStore};
use sealmail_core::store;

/// What a SORT command asks for, as parsed.
pub(crate) struct SortCommand {
    pub uid: bool,
    pub criteria: Vec<SortCriterion>,
    pub charset: String,
    pub key: SearchKey,
    pub result: Option<Vec<SearchReturn>>,
}

pub(crate) async fn run<M: MailStore>(
    session: &mut Session<M>,
    command: SortCommand,
    tag: &Tag,
    out: &mut Responder<'_>,
) -> OpResult {
    check_charset(&command.charset)?;
    let authed = session.authed()?;
    let Some(selected) = authed.selected.as_mut() else {
        return Err(Failure::bad("no folder selected"));
    };
    let key = convert::search_key(&command.key, selected)?;
    let criteria = command.criteria.iter().map(|c| criterion(*c)).collect();
    let sorted = authed
        .mail
        .sort(&selected.folder, criteria, key)
        .await
        .map_err(|e| Failure::store(e, Code::NonExistent))?;
    let Numbered {
        indexes,
        ids,
        highest_modseq,
    } = numbered(selected, &sorted, command.uid, &command.key);
    let Some(mut options) = command.result else {
        out.push(&Response::Data(Data::Sort {
            ids,
            highest_modseq,
        }));
        return Ok(Done::ok("SORT completed"));
    };
    if options.is_empty() {
        options.push(SearchReturn::All);
    }
    let has = |o: SearchReturn| options.contains(&o);
    if has(SearchReturn::Save) {
        let uids: Vec<u32> = indexes.iter().map(|&i| selected.messages[i].uid).collect();
        // ESORT's MIN and MAX are the first and last message in sort order.
        let ends = (uids.first().copied(), uids.last().copied());
        selected.saved_search = saved_result(&options, uids, ends);
    }
    if options.iter().any(|&o| o != SearchReturn::Save) {
        // RFC 5267 section 3: MIN and MAX are the first and last message in sort order, and
        // ALL lists the matches in sort order.
        out.push(&Response::Data(Data::ESearch {
            tag: Some(tag.clone()),
            uid: command.uid,
            min: if has(SearchReturn::Min) {
                ids.first().copied()
            } else {
                None
            },
            max: if has(SearchReturn::Max) {
                ids.last().copied()
            } else {
                None
            },
            count: has(SearchReturn::Count).then_some(ids.len() as u32),
            all: has(SearchReturn::All).then_some(ids),
            highest_modseq,
        }));
    }
    Ok(Done::ok("SORT completed"))
}

/// SORT and THREAD take a charset; strings are UTF-8 inside, so UTF-8 and its subset
/// US-ASCII are the ones accepted (RFC 5256 requires both).
pub(crate) fn check_charset(charset: &str) -> Result<(), Failure> {
    if charset.eq_ignore_ascii_case("UTF-8") || charset.eq_ignore_ascii_case("US-ASCII") {
        return Ok(());
    }
    Err(Failure::no_code(
        Code::BadCharset(vec!["UTF-8".into(), "US-ASCII".into()]),
        "unsupported charset",
    ))
}

fn criterion(criterion: SortCriterion) -> store::SortCriterion {
    let key = match criterion.key {
        SortKey::Arrival => store::SortKey::Arrival,
        SortKey::Cc => store::SortKey::Cc,
        SortKey::Date => store::SortKey::Date,
        SortKey::From => store::SortKey::From,
        SortKey::Size => store::SortKey::Size,
        SortKey::Subject => store::SortKey::Subject,
        SortKey::To => store::SortKey::To,
        SortKey::DisplayFrom => store::SortKey::DisplayFrom,
        SortKey::DisplayTo => store::SortKey::DisplayTo,
    };
    store::SortCriterion {
        key,
        reverse: criterion.reverse,
    }
}

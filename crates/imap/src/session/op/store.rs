//! STORE and UID STORE (RFC 9051 section 6.4.6, UNCHANGEDSINCE from RFC 7162).

use crate::proto::{Code, Data, FetchItem, Flag, Response, SequenceSet, StoreMode};
use crate::session::{Done, Failure, OpResult, Responder, Session, convert};
use sealmail_core::mailstore::{MailSession, MailStore};
use sealmail_core::store::FlagMode;

#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<M: MailStore>(
    session: &mut Session<M>,
    uid: bool,
    set: SequenceSet,
    unchanged_since: Option<u64>,
    mode: StoreMode,
    silent: bool,
    flags: Vec<Flag>,
    out: &mut Responder<'_>,
) -> OpResult {
    let condstore = session.enabled.condstore || unchanged_since.is_some();
    let authed = session.authed()?;
    let Some(selected) = authed.selected.as_mut() else {
        return Err(Failure::bad("no folder selected"));
    };
    if selected.read_only {
        return Err(Failure::no_code(Code::ReadOnly, "folder is read-only"));
    }
    let flags = convert::store_flags(&flags)?;
    let indexes = selected.resolve(&set, uid)?;
    if indexes.is_empty() {
        return Ok(Done::ok("STORE completed"));
    }
    let mode = match mode {
        StoreMode::Replace => FlagMode::Replace,
        StoreMode::Add => FlagMode::Add,
        StoreMode::Remove => FlagMode::Remove,
    };
    let changed = authed
        .mail
        .set_flags(
            &selected.folder,
            selected.uid_set(&indexes),
            mode,
            flags,
            unchanged_since,
        )
        .await
        .map_err(|e| Failure::store(e, Code::NonExistent))?;
    for state in changed.updated {
        let Some(i) = selected.index_of(state.uid) else {
            continue;
        };
        selected.messages[i] = state;
        let m = &selected.messages[i];
        // FLAGS.SILENT still reports MODSEQ under CONDSTORE (RFC 7162 section 3.1.3).
        if silent && !condstore {
            continue;
        }
        let mut items = Vec::new();
        if uid {
            items.push(FetchItem::Uid(m.uid));
        }
        if !silent {
            items.push(FetchItem::Flags(convert::flags(&m.flags)));
        }
        if condstore {
            items.push(FetchItem::ModSeq(m.modseq));
        }
        out.push(&Response::Data(Data::Fetch {
            seq: i as u32 + 1,
            items,
        }));
    }
    if changed.modified.is_empty() {
        return Ok(Done::ok("STORE completed"));
    }
    let modified: Vec<u32> = if uid {
        changed.modified
    } else {
        changed
            .modified
            .iter()
            .filter_map(|&u| selected.index_of(u).map(|i| i as u32 + 1))
            .collect()
    };
    Ok(Done::with_code(
        Code::Modified(modified),
        "conditional STORE failed for some messages",
    ))
}

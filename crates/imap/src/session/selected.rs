//! The selected folder as this session knows it: the message sequence (UIDs in order, with
//! flags and MODSEQ), and the watermarks up to which changes have been reported to the client.

use super::responder::Responder;
use super::{Failure, convert};
use crate::proto::{Code, Data, FetchItem, Response, SeqNumber, SequenceSet};
use sealmail_core::mailstore::{Change, ChangeEvent, MailSession};
use sealmail_core::store::{Appended, Flags, MessageState, UidSet};

/// What [`Selected::synchronise`] may report.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Report {
    /// EXPUNGE / VANISHED (else they wait, `expunge_pending`).
    pub expunges: bool,
    /// FETCH (UID FLAGS) for flags other sessions changed.
    pub flags: bool,
    /// MODSEQ in those FETCHes.
    pub condstore: bool,
    /// VANISHED instead of EXPUNGE.
    pub qresync: bool,
}

pub(crate) struct Selected {
    pub folder: String,
    pub read_only: bool,
    /// Messages in sequence-number order (ascending UID): index + 1 is the sequence number.
    pub messages: Vec<MessageState>,
    /// Flag changes and new messages up to this MODSEQ have been reported.
    pub known_modseq: u64,
    /// Expunges up to this MODSEQ have been reported.
    pub expunge_modseq: u64,
    /// Expunges are waiting for a command that may report them.
    pub expunge_pending: bool,
    /// UIDs saved by `SEARCH RETURN (SAVE)` for `$` (RFC 5182).
    pub saved_search: Vec<u32>,
}

impl Selected {
    pub fn largest_uid(&self) -> u32 {
        self.messages.last().map_or(0, |m| m.uid)
    }

    pub fn index_of(&self, uid: u32) -> Option<usize> {
        self.messages.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    /// Message indexes (0-based) a sequence set or UID set names, ascending and unique.
    /// Sequence numbers beyond the folder are an error (RFC 9051 section 9: "invalid"); UIDs that
    /// do not exist are simply skipped.
    pub fn resolve(&self, set: &SequenceSet, uid: bool) -> Result<Vec<usize>, Failure> {
        let len = self.messages.len();
        let mut indexes = Vec::new();
        match set {
            SequenceSet::Saved => {
                for &u in &self.saved_search {
                    if let Some(i) = self.index_of(u) {
                        indexes.push(i);
                    }
                }
            }
            SequenceSet::Ranges(ranges) if uid => {
                let largest = self.largest_uid();
                for &(a, b) in ranges {
                    // `*` on an empty folder names nothing (a real-client quirk: UID FETCH 1:*).
                    if largest == 0 && (a == SeqNumber::Largest || b == SeqNumber::Largest) {
                        continue;
                    }
                    let (a, b) = (a.resolve(largest), b.resolve(largest));
                    let (lo, hi) = (a.min(b), a.max(b));
                    let start = self.messages.partition_point(|m| m.uid < lo);
                    let end = self.messages.partition_point(|m| m.uid <= hi);
                    indexes.extend(start..end);
                }
            }
            SequenceSet::Ranges(ranges) => {
                for &(a, b) in ranges {
                    let (a, b) = (a.resolve(len as u32), b.resolve(len as u32));
                    let (lo, hi) = (a.min(b), a.max(b));
                    if lo == 0 || hi as usize > len {
                        return Err(Failure::bad("invalid message sequence number"));
                    }
                    indexes.extend(lo as usize - 1..hi as usize);
                }
            }
        }
        indexes.sort_unstable();
        indexes.dedup();
        Ok(indexes)
    }

    pub fn uid_set(&self, indexes: &[usize]) -> UidSet {
        UidSet::from_uids(indexes.iter().map(|&i| self.messages[i].uid))
    }

    /// Forget an expunged message; returns its sequence number before removal.
    pub fn remove_uid(&mut self, uid: u32) -> Option<u32> {
        let index = self.index_of(uid)?;
        self.messages.remove(index);
        Some(index as u32 + 1)
    }

    /// Report changes since the watermarks: EXPUNGE (or VANISHED with QRESYNC) when allowed,
    /// EXISTS for new messages, FETCH FLAGS for changed flags. Returns the UIDs of the new
    /// messages.
    pub async fn synchronise<S: MailSession>(
        &mut self,
        mail: &S,
        out: &mut Responder<'_>,
        report: Report,
    ) -> Result<Vec<u32>, Failure> {
        let Report {
            expunges: allow_expunge,
            flags: report_flags,
            condstore,
            qresync,
        } = report;
        // One round trip for the watermark, the expunges (when they may be reported) and the
        // changed messages.
        let changes = mail
            .folder_changes(
                &self.folder,
                self.known_modseq,
                allow_expunge.then_some(self.expunge_modseq),
            )
            .await
            .map_err(|e| Failure::store(e, Code::NonExistent))?;
        let highest_modseq = changes.highest_modseq;
        if highest_modseq > self.expunge_modseq {
            match &changes.expunged {
                Some(gone) if allow_expunge => {
                    self.report_expunged(gone, qresync, out);
                    self.expunge_modseq = highest_modseq;
                    self.expunge_pending = false;
                }
                _ => self.expunge_pending = true,
            }
        }
        let mut added = Vec::new();
        if highest_modseq > self.known_modseq {
            let changed = changes.changed;
            let before = self.messages.len();
            let mut changed_indexes = Vec::new();
            for state in changed {
                match self.messages.binary_search_by_key(&state.uid, |m| m.uid) {
                    Ok(i) => {
                        if self.messages[i] != state {
                            self.messages[i] = state;
                            changed_indexes.push(i);
                        }
                    }
                    Err(i) if i == self.messages.len() => self.messages.push(state),
                    // Below our highest UID but unknown: expunged and already reported.
                    Err(_) => {}
                }
            }
            if self.messages.len() != before {
                out.push(&Response::Data(Data::Exists(self.messages.len() as u32)));
                added.extend(self.messages[before..].iter().map(|m| m.uid));
            }
            // Not reported, the new flags are still recorded: a later FETCH FLAGS shows them.
            if !report_flags {
                changed_indexes.clear();
            }
            for i in changed_indexes {
                let m = &self.messages[i];
                let mut items = vec![
                    FetchItem::Uid(m.uid),
                    FetchItem::Flags(convert::flags(&m.flags)),
                ];
                if condstore {
                    items.push(FetchItem::ModSeq(m.modseq));
                }
                out.push(&Response::Data(Data::Fetch {
                    seq: i as u32 + 1,
                    items,
                }));
            }
            self.known_modseq = highest_modseq;
        }
        Ok(added)
    }

    /// Record messages this session has just appended to this folder, with the flags it gave
    /// them, and announce them (EXISTS), without asking the store again: possible when nothing
    /// else changed the folder since it was last synchronised, which the MODSEQs show (every
    /// change to a folder takes the next MODSEQ; one APPEND's messages take theirs in one
    /// transaction, in order). Otherwise nothing is recorded and the next synchronisation
    /// reports them with whatever else happened.
    pub fn record_own_append(
        &mut self,
        appended: &[Appended],
        flags: &[Flags],
        out: &mut Responder<'_>,
    ) {
        let Some(first) = appended.first() else {
            return;
        };
        let follows_on = first.modseq == self.known_modseq + 1
            && first.uid > self.largest_uid()
            && appended.len() == flags.len()
            && appended
                .windows(2)
                .all(|w| w[1].uid > w[0].uid && w[1].modseq >= w[0].modseq);
        if !follows_on {
            return;
        }
        let previous = self.known_modseq;
        for (message, flags) in appended.iter().zip(flags) {
            self.messages.push(MessageState {
                uid: message.uid,
                modseq: message.modseq,
                flags: flags.clone(),
            });
        }
        self.known_modseq = appended.last().map_or(previous, |a| a.modseq);
        // No expunge can hide between the known MODSEQ and these: they took the next ones.
        if self.expunge_modseq == previous {
            self.expunge_modseq = self.known_modseq;
        }
        out.push(&Response::Data(Data::Exists(self.messages.len() as u32)));
    }

    /// A flag change or expunge this session made in this folder, and already applied to its
    /// view and reported: when its MODSEQ is the next one after the view's, nothing else
    /// happened in between and the view is current up to it. Without this, the next APPEND
    /// (see [`Selected::record_own_append`]) would find the MODSEQs not following on and ask
    /// the store for changes there are none of.
    pub fn note_own_change(&mut self, change: &Change) {
        if !matches!(
            change.event,
            ChangeEvent::FlagsChanged | ChangeEvent::MessagesExpunged
        ) || change.modseq == 0
            || change.modseq != self.known_modseq + 1
        {
            return;
        }
        if self.expunge_modseq == self.known_modseq {
            self.expunge_modseq = change.modseq;
        }
        self.known_modseq = change.modseq;
    }

    /// Report removed UIDs as EXPUNGE (sequence numbers, each after the previous removal) or
    /// as one VANISHED (QRESYNC).
    pub fn report_expunged(&mut self, uids: &[u32], qresync: bool, out: &mut Responder<'_>) {
        let mut vanished = Vec::new();
        for &uid in uids {
            if let Some(seq) = self.remove_uid(uid) {
                if qresync {
                    vanished.push(uid);
                } else {
                    out.push(&Response::Data(Data::Expunge(seq)));
                }
            }
        }
        if !vanished.is_empty() {
            out.push(&Response::Data(Data::Vanished {
                earlier: false,
                uids: vanished,
            }));
        }
    }
}

//! Messages: append, fetch, flags, copy, move, expunge. Every write bumps the folder's MODSEQ;
//! UIDs only ever grow and are never reused.

use super::folders::folder_id;
use super::parse::{ParsedMessage, parse};
use super::sort::SortColumns;
use super::types::{
    AppendOptions, Appended, BodyPart, Copied, Envelope, FlagMode, Flags, FlagsChanged,
    MessageState, MessageSummary, UidSet,
};
use super::{Mailbox, bodies};
use crate::error::{Error, Result};
use crate::time::{iso8601_utc, now_unix};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

/// Messages larger than this are refused before any work is done.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 64 << 20;

/// SQL fragment: the message rows of folder `?1` whose UID is in the JSON ranges `?2`. The
/// subquery walks the ranges once, each an index range on (folder_id, uid); CROSS JOIN keeps
/// SQLite from nesting the ranges inside a folder scan. A per-row EXISTS over the ranges took
/// minutes for a 500-range set on a 100,000-message folder.
const IN_UID_SET: &str = "m.id IN (SELECT s.id FROM json_each(?2) r
    CROSS JOIN messages s ON s.folder_id = ?1 AND s.uid BETWEEN r.value ->> 0 AND r.value ->> 1)";

impl Mailbox {
    /// Store a raw RFC 5322 message in `folder`. The bytes are kept exactly; malformed MIME is
    /// stored and described as well as possible.
    pub fn append(
        &mut self,
        folder: &str,
        raw: &[u8],
        options: &AppendOptions,
    ) -> Result<Appended> {
        self.check_message_size(raw.len() as u64)?;
        self.check_quota(raw.len() as u64)?;
        let parsed = parse(raw);
        let internal_date = options.internal_date.unwrap_or_else(now_unix);
        let appended = self.appending(|conn| {
            // IMMEDIATE, as every write here: with another session writing the same file, a
            // deferred transaction that reads first fails with SQLITE_BUSY at its first write
            // instead of waiting for the lock (busy_timeout does not apply to that upgrade).
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let appended =
                insert_message(&tx, folder, raw, &parsed, &options.flags, internal_date)?;
            tx.commit()?;
            Ok(appended)
        })?;
        self.index_backlog_if_large();
        Ok(appended)
    }

    /// Run an append transaction with `secure_delete = FAST`, then return to `ON`.
    ///
    /// The only whole pages an append frees are full-text index segments that an automatic
    /// merge has just rewritten into a new segment. With `ON`, SQLite reads, zeroes and
    /// writes back each of them, which on an encrypted file means decrypting and encrypting
    /// pages that hold nothing new: the postings of messages still in the mailbox, copied into
    /// the merged segment. `FAST` still zeroes deleted cells inside the pages it writes anyway
    /// and leaves freed pages to be reused as they are. What it may leave on such a freed page
    /// beyond live postings are postings of messages expunged before the merge, which `ON`
    /// does not protect either: SQLite documents that FTS5 keeps traces of deleted rows in its
    /// shadow tables until a merge, whatever `secure_delete` says, and the page stays
    /// encrypted under the mailbox key like every other page. Everything that deletes mail
    /// (expunge, folder deletion) keeps `ON`, so message bodies and attachments are zeroed
    /// when they are freed.
    fn appending<T>(&mut self, work: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        self.conn.execute_batch("PRAGMA secure_delete = FAST;")?;
        let result = work(&mut self.conn);
        self.conn.execute_batch("PRAGMA secure_delete = ON;")?;
        result
    }

    /// Append several messages to `folder` in one transaction (import, batched delivery):
    /// all are stored or none.
    pub fn append_many(
        &mut self,
        folder: &str,
        messages: &[(&[u8], AppendOptions)],
    ) -> Result<Vec<Appended>> {
        let total: u64 = messages.iter().map(|(raw, _)| raw.len() as u64).sum();
        for (raw, _) in messages {
            self.check_message_size(raw.len() as u64)?;
        }
        self.check_quota(total)?;
        let parsed: Vec<ParsedMessage> = messages.iter().map(|(raw, _)| parse(raw)).collect();
        let out = self.appending(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut out = Vec::with_capacity(messages.len());
            for ((raw, options), parsed) in messages.iter().zip(&parsed) {
                let date = options.internal_date.unwrap_or_else(now_unix);
                out.push(insert_message(
                    &tx,
                    folder,
                    raw,
                    parsed,
                    &options.flags,
                    date,
                )?);
            }
            tx.commit()?;
            Ok(out)
        })?;
        self.index_backlog_if_large();
        Ok(out)
    }

    /// Append a message that came from the sealed queue, unless an item with this id was already
    /// delivered (then `None`): a crash between the append and the queue-file removal must not
    /// deliver it twice.
    pub fn append_delivered(
        &mut self,
        item_id: &str,
        folder: &str,
        raw: &[u8],
        internal_date: i64,
    ) -> Result<Option<Appended>> {
        let parsed = parse(raw);
        let appended = self.appending(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let fresh = tx.execute(
                "INSERT OR IGNORE INTO delivered_items (item_id, delivered_at) VALUES (?1, ?2)",
                params![item_id, iso8601_utc(now_unix())],
            )?;
            if fresh == 0 {
                return Ok(None);
            }
            let appended =
                insert_message(&tx, folder, raw, &parsed, &Flags::default(), internal_date)?;
            tx.commit()?;
            Ok(Some(appended))
        })?;
        self.index_backlog_if_large();
        Ok(appended)
    }

    /// Just the folder's HIGHESTMODSEQ: cheap, unlike the counters of [`Mailbox::folder`].
    pub fn highest_modseq(&self, folder: &str) -> Result<u64> {
        let path = super::normalize_folder_name(folder)?;
        self.conn
            .prepare_cached("SELECT highestmodseq FROM folders WHERE path = ?1")?
            .query_row([&path], |row| row.get::<_, i64>(0))
            .optional()?
            .map(|modseq| modseq as u64)
            .ok_or(Error::NoSuchFolder(path))
    }

    /// UID, MODSEQ and flags of every message in a folder, in UID order (what SELECT loads).
    pub fn message_states(&self, folder: &str) -> Result<Vec<MessageState>> {
        let id = folder_id(&self.conn, folder)?;
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {STATE_COLUMNS} FROM messages m WHERE m.folder_id = ?1 ORDER BY m.uid"
        ))?;
        let rows = stmt.query_map([id], state_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Messages whose MODSEQ is greater than `modseq` (CONDSTORE CHANGEDSINCE), in UID order.
    pub fn changed_since(&self, folder: &str, modseq: u64) -> Result<Vec<MessageState>> {
        let id = folder_id(&self.conn, folder)?;
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {STATE_COLUMNS} FROM messages m WHERE m.folder_id = ?1 AND m.modseq > ?2
             ORDER BY m.uid"
        ))?;
        let rows = stmt.query_map(params![id, modseq], state_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// UIDs expunged after `modseq` (QRESYNC VANISHED (EARLIER)), ascending.
    pub fn expunged_since(&self, folder: &str, modseq: u64) -> Result<Vec<u32>> {
        let id = folder_id(&self.conn, folder)?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT uid FROM expunged WHERE folder_id = ?1 AND modseq > ?2 ORDER BY uid",
        )?;
        let rows = stmt.query_map(params![id, modseq], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Everything but the bytes, for the messages of `uids` that exist, in UID order.
    pub fn summaries(&self, folder: &str, uids: &UidSet) -> Result<Vec<MessageSummary>> {
        let id = folder_id(&self.conn, folder)?;
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {STATE_COLUMNS}, m.internal_date, m.saved_at, m.size, m.body_id,
                    m.thread_id, m.preview, m.envelope, m.body_structure, m.crlf_size
             FROM messages m WHERE m.folder_id = ?1 AND {IN_UID_SET} ORDER BY m.uid"
        ))?;
        let rows = stmt.query_map(params![id, uids.to_json()], |row| {
            let state = state_from_row(row)?;
            let envelope: String = row.get(14)?;
            let body_structure: String = row.get(15)?;
            Ok((
                state,
                row.get(8)?,
                row.get(9)?,
                row.get(10)?,
                row.get::<_, i64>(11)?,
                row.get::<_, Option<i64>>(12)?,
                row.get(13)?,
                envelope,
                body_structure,
                row.get(16)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (
                state,
                internal_date,
                saved_at,
                size,
                body_id,
                thread_id,
                preview,
                env,
                body,
                crlf_size,
            ) = row?;
            out.push(MessageSummary {
                uid: state.uid,
                modseq: state.modseq,
                flags: state.flags,
                internal_date,
                saved_at,
                size,
                crlf_size,
                email_id: format!("M{body_id:016x}"),
                thread_id: format!("T{:016x}", thread_id.unwrap_or(body_id)),
                preview,
                envelope: decode_json::<Envelope>(&env)?,
                body_structure: decode_json::<BodyPart>(&body)?,
            });
        }
        Ok(out)
    }

    /// The raw bytes of one message, exactly as appended.
    pub fn fetch_raw(&self, folder: &str, uid: u32) -> Result<Vec<u8>> {
        let id = folder_id(&self.conn, folder)?;
        let body_id: i64 = self
            .conn
            .prepare_cached("SELECT body_id FROM messages WHERE folder_id = ?1 AND uid = ?2")?
            .query_row(params![id, uid], |r| r.get(0))
            .optional()?
            .ok_or(Error::NoSuchMessage(uid))?;
        bodies::load_raw(&self.conn, body_id)
    }

    /// Change flags of the messages in `uids`. With `unchanged_since` (CONDSTORE), messages
    /// whose MODSEQ is higher are left alone and reported in `modified`. All changes of one call
    /// share one new MODSEQ; messages whose flags would not change are not touched.
    pub fn set_flags(
        &mut self,
        folder: &str,
        uids: &UidSet,
        mode: FlagMode,
        flags: &Flags,
        unchanged_since: Option<u64>,
    ) -> Result<FlagsChanged> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let id = folder_id(&tx, folder)?;
        let current: Vec<MessageState> = tx
            .prepare_cached(&format!(
                "SELECT {STATE_COLUMNS} FROM messages m WHERE m.folder_id = ?1 AND {IN_UID_SET}
                 ORDER BY m.uid"
            ))?
            .query_map(params![id, uids.to_json()], state_from_row)?
            .collect::<Result<_, _>>()?;
        let mut result = FlagsChanged::default();
        let mut modseq = None;
        for state in current {
            if unchanged_since.is_some_and(|limit| state.modseq > limit) {
                result.modified.push(state.uid);
                continue;
            }
            let new_flags = state.flags.apply(mode, flags);
            if new_flags == state.flags {
                continue;
            }
            let new_modseq = match modseq {
                Some(m) => m,
                None => *modseq.insert(bump_modseq(&tx, id)?),
            };
            tx.prepare_cached(
                "UPDATE messages SET seen = ?3, answered = ?4, flagged = ?5, deleted = ?6,
                        draft = ?7, keywords = ?8, modseq = ?9
                 WHERE folder_id = ?1 AND uid = ?2",
            )?
            .execute(params![
                id,
                state.uid,
                new_flags.seen,
                new_flags.answered,
                new_flags.flagged,
                new_flags.deleted,
                new_flags.draft,
                json(&new_flags.keywords),
                new_modseq,
            ])?;
            result.updated.push(MessageState {
                uid: state.uid,
                modseq: new_modseq,
                flags: new_flags,
            });
        }
        tx.commit()?;
        Ok(result)
    }

    /// Copy messages to another folder; bodies are shared, not duplicated.
    pub fn copy_messages(&mut self, from: &str, uids: &UidSet, to: &str) -> Result<Copied> {
        self.check_quota(0)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (from_id, to_id) = (folder_id(&tx, from)?, folder_id(&tx, to)?);
        let sources = rows_in_uid_set(&tx, from_id, uids)?;
        let mut copied = Copied {
            uidvalidity: uidvalidity(&tx, to_id)?,
            pairs: Vec::new(),
        };
        if sources.is_empty() {
            return Ok(copied);
        }
        let modseq = bump_modseq(&tx, to_id)?;
        for (row_id, source_uid) in sources {
            let new_uid = next_uid(&tx, to_id)?;
            tx.prepare_cached(
                "INSERT INTO messages (folder_id, uid, modseq, body_id, seen, answered, flagged,
                    deleted, draft, keywords, internal_date, saved_at, header_date, size, subject,
                    from_addr, sender_addr, reply_to_addr, to_addr, cc_addr, bcc_addr, message_id,
                    in_reply_to, refs_header, thread_id, has_attachment, preview, envelope,
                    body_structure, sort_subject, subject_is_reply, sort_from, sort_to, sort_cc,
                    display_from, display_to, sort_date, thread_refs, crlf_size, thread_key,
                    subject_key, thread_parents)
                 SELECT ?2, ?3, ?4, body_id, seen, answered, flagged, deleted, draft, keywords,
                    internal_date, ?5, header_date, size, subject, from_addr, sender_addr,
                    reply_to_addr, to_addr, cc_addr, bcc_addr, message_id, in_reply_to,
                    refs_header, thread_id, has_attachment, preview, envelope, body_structure,
                    sort_subject, subject_is_reply, sort_from, sort_to, sort_cc, display_from,
                    display_to, sort_date, thread_refs, crlf_size, thread_key, subject_key,
                    thread_parents
                 FROM messages WHERE id = ?1",
            )?
            .execute(params![
                row_id,
                to_id,
                new_uid,
                modseq,
                iso8601_utc(now_unix())
            ])?;
            let body_id: i64 = tx.query_row(
                "SELECT body_id FROM messages WHERE id = ?1",
                [row_id],
                |r| r.get(0),
            )?;
            bodies::add_ref(&tx, body_id)?;
            copied.pairs.push((source_uid, new_uid));
        }
        tx.commit()?;
        Ok(copied)
    }

    /// Move messages to another folder atomically (RFC 6851): new UIDs in the target, the
    /// source UIDs recorded as expunged.
    pub fn move_messages(&mut self, from: &str, uids: &UidSet, to: &str) -> Result<Copied> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (from_id, to_id) = (folder_id(&tx, from)?, folder_id(&tx, to)?);
        let sources = rows_in_uid_set(&tx, from_id, uids)?;
        let mut moved = Copied {
            uidvalidity: uidvalidity(&tx, to_id)?,
            pairs: Vec::new(),
        };
        if sources.is_empty() {
            return Ok(moved);
        }
        let source_modseq = bump_modseq(&tx, from_id)?;
        let target_modseq = bump_modseq(&tx, to_id)?;
        for (row_id, source_uid) in sources {
            let new_uid = next_uid(&tx, to_id)?;
            tx.prepare_cached(
                "UPDATE messages SET folder_id = ?2, uid = ?3, modseq = ?4, saved_at = ?5
                 WHERE id = ?1",
            )?
            .execute(params![
                row_id,
                to_id,
                new_uid,
                target_modseq,
                iso8601_utc(now_unix())
            ])?;
            record_expunge(&tx, from_id, source_uid, source_modseq)?;
            moved.pairs.push((source_uid, new_uid));
        }
        tx.commit()?;
        Ok(moved)
    }

    /// Remove the messages flagged `\Deleted` (restricted to `uids` for UID EXPUNGE) and return
    /// their UIDs in ascending order.
    pub fn expunge(&mut self, folder: &str, uids: Option<&UidSet>) -> Result<Vec<u32>> {
        self.remove_where(folder, uids.cloned().unwrap_or_else(UidSet::all), true)
    }

    /// Remove the messages of `uids` whatever their flags (POP3 DELE applied at QUIT).
    pub fn remove_messages(&mut self, folder: &str, uids: &UidSet) -> Result<Vec<u32>> {
        self.remove_where(folder, uids.clone(), false)
    }

    fn remove_where(&mut self, folder: &str, uids: UidSet, only_deleted: bool) -> Result<Vec<u32>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let id = folder_id(&tx, folder)?;
        let victims: Vec<(i64, u32, i64)> = tx
            .prepare_cached(&format!(
                "SELECT m.id, m.uid, m.body_id FROM messages m
                 WHERE m.folder_id = ?1 AND {IN_UID_SET} AND (m.deleted = 1 OR ?3 = 0)
                 ORDER BY m.uid"
            ))?
            .query_map(params![id, uids.to_json(), only_deleted], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<_, _>>()?;
        if victims.is_empty() {
            return Ok(Vec::new());
        }
        let modseq = bump_modseq(&tx, id)?;
        let mut removed = Vec::with_capacity(victims.len());
        for (row_id, uid, body_id) in victims {
            tx.prepare_cached("DELETE FROM messages WHERE id = ?1")?
                .execute([row_id])?;
            bodies::release(&tx, body_id)?;
            record_expunge(&tx, id, uid, modseq)?;
            removed.push(uid);
        }
        tx.commit()?;
        Ok(removed)
    }

    fn check_message_size(&self, size: u64) -> Result<()> {
        if size > self.max_message_size {
            return Err(Error::MessageTooLarge {
                size,
                limit: self.max_message_size,
            });
        }
        Ok(())
    }
}

/// Insert one parsed message into `folder` within the caller's transaction.
fn insert_message(
    conn: &Connection,
    folder: &str,
    raw: &[u8],
    parsed: &ParsedMessage,
    flags: &Flags,
    internal_date: i64,
) -> Result<Appended> {
    let folder_id = folder_id(conn, folder)?;
    let body_id = bodies::insert(conn, raw, &parsed.attachment_ranges)?;
    conn.prepare_cached("INSERT INTO fts_pending (body_id) VALUES (?1)")?
        .execute([body_id])?;
    let uid = next_uid(conn, folder_id)?;
    let modseq = bump_modseq(conn, folder_id)?;
    let thread_id = find_thread(conn, parsed)?.unwrap_or(body_id);
    let sort = SortColumns::new(
        parsed.subject.as_deref(),
        &parsed.from,
        &parsed.to,
        &parsed.cc,
        &parsed.references,
        parsed.in_reply_to.as_deref(),
    );
    let internal_date_text = iso8601_utc(internal_date);
    conn.prepare_cached(
        "INSERT INTO messages (folder_id, uid, modseq, body_id, seen, answered, flagged, deleted,
            draft, keywords, internal_date, saved_at, header_date, size, subject, from_addr,
            sender_addr, reply_to_addr, to_addr, cc_addr, bcc_addr, message_id, in_reply_to,
            refs_header, thread_id, has_attachment, preview, envelope, body_structure,
            sort_subject, subject_is_reply, sort_from, sort_to, sort_cc, display_from, display_to,
            sort_date, thread_refs, crlf_size, thread_key, subject_key, thread_parents)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
            ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35,
            ?36, ?37, ?38, ?39, ?40, ?41, ?42)",
    )?
    .execute(params![
        folder_id,
        uid,
        modseq,
        body_id,
        flags.seen,
        flags.answered,
        flags.flagged,
        flags.deleted,
        flags.draft,
        json(&flags.keywords),
        internal_date_text,
        iso8601_utc(now_unix()),
        parsed.header_date,
        raw.len(),
        parsed.subject,
        json(&parsed.from),
        json(&parsed.sender),
        json(&parsed.reply_to),
        json(&parsed.to),
        json(&parsed.cc),
        json(&parsed.bcc),
        parsed.message_id,
        parsed.in_reply_to,
        json(&parsed.references),
        thread_id,
        parsed.has_attachment,
        parsed.preview,
        json(&parsed.envelope),
        json(&parsed.body),
        sort.subject,
        sort.subject_is_reply,
        sort.from,
        sort.to,
        sort.cc,
        sort.display_from,
        sort.display_to,
        parsed
            .header_date
            .clone()
            .unwrap_or_else(|| internal_date_text.clone()),
        sort.thread_refs,
        bodies::crlf_size(raw),
        super::thread_key(parsed.message_id.as_deref().unwrap_or_default()) as i64,
        sort.subject_key,
        sort.thread_parents,
    ])?;
    Ok(Appended {
        uidvalidity: uidvalidity(conn, folder_id)?,
        uid,
        modseq,
    })
}

/// A JSON column value; our own plain data types always serialize.
fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serializes")
}

/// The thread of the message this one replies to or references, if it is in the mailbox.
fn find_thread(conn: &Connection, parsed: &ParsedMessage) -> Result<Option<i64>> {
    let parents = parsed
        .in_reply_to
        .iter()
        .chain(parsed.references.iter().rev());
    let mut stmt = conn.prepare_cached(
        "SELECT thread_id FROM messages WHERE message_id = ?1 AND thread_id IS NOT NULL LIMIT 1",
    )?;
    for parent in parents {
        if let Some(thread) = stmt.query_row([parent], |r| r.get(0)).optional()? {
            return Ok(Some(thread));
        }
    }
    Ok(None)
}

/// Move every message of one folder into another (RENAME INBOX). Like MOVE, this saves the
/// messages into the target anew: their save date (RFC 8514) becomes now.
pub(crate) fn move_all(conn: &Connection, from_id: i64, to_id: i64) -> Result<()> {
    let uids: Vec<u32> = conn
        .prepare("SELECT uid FROM messages WHERE folder_id = ?1 ORDER BY uid")?
        .query_map([from_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if uids.is_empty() {
        return Ok(());
    }
    let source_modseq = bump_modseq(conn, from_id)?;
    let target_modseq = bump_modseq(conn, to_id)?;
    let saved_at = iso8601_utc(now_unix());
    for uid in uids {
        let new_uid = next_uid(conn, to_id)?;
        conn.execute(
            "UPDATE messages SET folder_id = ?3, uid = ?4, modseq = ?5, saved_at = ?6
             WHERE folder_id = ?1 AND uid = ?2",
            params![from_id, uid, to_id, new_uid, target_modseq, saved_at],
        )?;
        record_expunge(conn, from_id, uid, source_modseq)?;
    }
    Ok(())
}

/// Row id and UID of the messages of `uids` in a folder, in UID order (what COPY and MOVE act on).
fn rows_in_uid_set(conn: &Connection, folder_id: i64, uids: &UidSet) -> Result<Vec<(i64, u32)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT m.id, m.uid FROM messages m WHERE m.folder_id = ?1 AND {IN_UID_SET}
         ORDER BY m.uid"
    ))?;
    let rows = stmt.query_map(params![folder_id, uids.to_json()], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn next_uid(conn: &Connection, folder_id: i64) -> Result<u32> {
    let uid: i64 = conn
        .prepare_cached(
            "UPDATE folders SET uidnext = uidnext + 1 WHERE id = ?1 RETURNING uidnext - 1",
        )?
        .query_row([folder_id], |r| r.get(0))?;
    u32::try_from(uid).map_err(|_| Error::InvalidArgument("UID space of folder exhausted".into()))
}

fn bump_modseq(conn: &Connection, folder_id: i64) -> Result<u64> {
    Ok(conn
        .prepare_cached(
            "UPDATE folders SET highestmodseq = highestmodseq + 1 WHERE id = ?1
             RETURNING highestmodseq",
        )?
        .query_row([folder_id], |r| r.get(0))?)
}

fn uidvalidity(conn: &Connection, folder_id: i64) -> Result<u32> {
    Ok(conn
        .prepare_cached("SELECT uidvalidity FROM folders WHERE id = ?1")?
        .query_row([folder_id], |r| r.get(0))?)
}

fn record_expunge(conn: &Connection, folder_id: i64, uid: u32, modseq: u64) -> Result<()> {
    // A UID leaves a folder once: UIDs are never reused.
    conn.prepare_cached("INSERT INTO expunged (folder_id, modseq, uid) VALUES (?1, ?3, ?2)")?
        .execute(params![folder_id, uid, modseq])?;
    Ok(())
}

const STATE_COLUMNS: &str =
    "m.uid, m.modseq, m.seen, m.answered, m.flagged, m.deleted, m.draft, m.keywords";

fn state_from_row(row: &Row<'_>) -> rusqlite::Result<MessageState> {
    let keywords: String = row.get(7)?;
    Ok(MessageState {
        uid: row.get(0)?,
        modseq: row.get(1)?,
        flags: Flags {
            seen: row.get(2)?,
            answered: row.get(3)?,
            flagged: row.get(4)?,
            deleted: row.get(5)?,
            draft: row.get(6)?,
            keywords: serde_json::from_str(&keywords).unwrap_or_default(),
        },
    })
}

fn decode_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt {
        path: "(mailbox)".into(),
        reason: format!("stored message metadata unreadable: {e}"),
    })
}

/// Fill `messages.crlf_size` of every message from its stored bytes: the one-time step of the
/// migration that added the column (rows written since compute it at append).
pub(crate) fn fill_crlf_sizes(conn: &Connection) -> Result<()> {
    let body_ids: Vec<i64> = conn
        .prepare("SELECT DISTINCT body_id FROM messages")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut update = conn.prepare("UPDATE messages SET crlf_size = ?2 WHERE body_id = ?1")?;
    for body_id in body_ids {
        let raw = bodies::load_raw(conn, body_id)?;
        update.execute(params![body_id, bodies::crlf_size(&raw)])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::MailboxKey;
    use crate::store::folders::insert_folder;
    use crate::store::schema::{MIGRATION_4, MIGRATION_9, file_before};

    /// A file written by the previous schema version has no `crlf_size`; opening it migrates
    /// and fills the column from the stored bytes, attachments included, so POP3 sizes of old
    /// messages are right too.
    #[test]
    fn upgrade_from_the_previous_version_fills_crlf_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("previous.sqlite");
        let key = MailboxKey::generate();
        let attachment = "QUJD\nREVG\n".repeat(400);
        let with_attachment = format!(
            "Subject: att\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\
             Content-Type: text/plain\n\nhello\n--b\nContent-Type: application/pdf\n\
             Content-Transfer-Encoding: base64\n\n{attachment}--b--\n"
        );
        let messages: [&[u8]; 3] = [
            b"Subject: crlf\r\n\r\nbody\r\n",
            b"Subject: bare\n\nbody\nlast",
            with_attachment.as_bytes(),
        ];
        {
            let conn = file_before(&path, &key, MIGRATION_4);
            insert_folder(&conn, "INBOX", None).unwrap();
            for (uid, raw) in (1..).zip(messages) {
                let parsed = parse(raw);
                let body_id = bodies::insert(&conn, raw, &parsed.attachment_ranges).unwrap();
                conn.execute(
                    "INSERT INTO messages (folder_id, uid, modseq, body_id, internal_date,
                        saved_at, size, envelope, body_structure)
                     VALUES (1, ?1, 1, ?2, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', ?3,
                        ?4, ?5)",
                    params![
                        uid,
                        body_id,
                        raw.len(),
                        json(&parsed.envelope),
                        json(&parsed.body)
                    ],
                )
                .unwrap();
            }
            assert!(
                !messages[2].is_empty() && !parse(messages[2]).attachment_ranges.is_empty(),
                "the third message must store an attachment apart"
            );
        }
        let mailbox = Mailbox::open(&path, &key).unwrap();
        let summaries = mailbox.summaries("INBOX", &UidSet::all()).unwrap();
        let sizes: Vec<u64> = summaries.iter().map(|s| s.crlf_size).collect();
        let expected: Vec<u64> = messages.iter().map(|m| bodies::crlf_size(m)).collect();
        assert_eq!(sizes, expected);
        assert_eq!(expected[0], messages[0].len() as u64);
        assert_eq!(expected[1], messages[1].len() as u64 + 5);
        assert!(expected[2] > messages[2].len() as u64 + 800);
        assert_eq!(mailbox.fetch_raw("INBOX", 3).unwrap(), messages[2]);
    }

    /// Appends relax `secure_delete` to FAST for their own transaction only: afterwards, even
    /// after a failed append, deletions zero freed pages again.
    #[test]
    fn secure_delete_is_on_again_after_every_append() {
        let dir = tempfile::tempdir().unwrap();
        let key = MailboxKey::generate();
        let mut mailbox = Mailbox::create(&dir.path().join("m.sqlite"), &key).unwrap();
        let secure_delete = |mailbox: &Mailbox| -> i64 {
            mailbox
                .conn()
                .query_row("PRAGMA secure_delete", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(secure_delete(&mailbox), 1, "ON when opened");
        let raw: &[u8] = b"Subject: one\r\n\r\nbody\r\n";
        mailbox
            .append("INBOX", raw, &AppendOptions::default())
            .unwrap();
        assert_eq!(secure_delete(&mailbox), 1, "after append");
        mailbox
            .append_many("INBOX", &[(raw, AppendOptions::default())])
            .unwrap();
        assert_eq!(secure_delete(&mailbox), 1, "after append_many");
        assert!(matches!(
            mailbox.append("No such folder", raw, &AppendOptions::default()),
            Err(Error::NoSuchFolder(_))
        ));
        assert_eq!(secure_delete(&mailbox), 1, "after a failed append");
        mailbox
            .append_delivered("item-1", "INBOX", raw, 0)
            .unwrap()
            .unwrap();
        assert_eq!(secure_delete(&mailbox), 1, "after a sealed delivery");
        assert_eq!(mailbox.message_states("INBOX").unwrap().len(), 3);
    }

    /// A cached statement is compiled once, not again each time it is taken from the cache
    /// with new values bound (see `Mailbox::finish_open`): flag changes of different messages
    /// reuse the compiled lookup of `set_flags`.
    #[test]
    fn cached_statements_are_not_compiled_again_for_new_values() {
        let dir = tempfile::tempdir().unwrap();
        let key = MailboxKey::generate();
        let mut mailbox = Mailbox::create(&dir.path().join("m.sqlite"), &key).unwrap();
        for subject in ["one", "two", "three"] {
            let raw = format!("Subject: {subject}\r\n\r\nbody\r\n");
            mailbox
                .append("INBOX", raw.as_bytes(), &AppendOptions::default())
                .unwrap();
        }
        let flagged = Flags {
            flagged: true,
            ..Flags::default()
        };
        for uid in [1, 2, 3, 1, 2] {
            mailbox
                .set_flags(
                    "INBOX",
                    &UidSet::from_uids([uid]),
                    FlagMode::Add,
                    &flagged,
                    None,
                )
                .unwrap();
        }
        let lookup = mailbox
            .conn
            .prepare_cached(&format!(
                "SELECT {STATE_COLUMNS} FROM messages m WHERE m.folder_id = ?1 AND {IN_UID_SET}
                 ORDER BY m.uid"
            ))
            .unwrap();
        assert_eq!(lookup.get_status(rusqlite::StatementStatus::RePrepare), 0);
    }

    #[test]
    fn appended_and_copied_messages_carry_their_crlf_size() {
        let dir = tempfile::tempdir().unwrap();
        let key = MailboxKey::generate();
        let mut mailbox = Mailbox::create(&dir.path().join("m.sqlite"), &key).unwrap();
        let raw = b"Subject: bare\n\n.body\nlast line without newline";
        mailbox
            .append("INBOX", raw, &AppendOptions::default())
            .unwrap();
        mailbox
            .copy_messages("INBOX", &UidSet::all(), "Archive")
            .unwrap();
        for folder in ["INBOX", "Archive"] {
            let summary = &mailbox.summaries(folder, &UidSet::all()).unwrap()[0];
            assert_eq!(summary.size, raw.len() as u64);
            assert_eq!(summary.crlf_size, raw.len() as u64 + 5, "{folder}");
        }
    }

    /// The WAL pages a write commits, named after the table or index whose root page each is
    /// (in a small mailbox every B-tree is its root page alone).
    fn btrees_written(mailbox: &mut Mailbox, write: impl FnOnce(&mut Mailbox)) -> Vec<String> {
        const FRAME: usize = 24 + crate::key::MAILBOX_PAGE_SIZE as usize;
        mailbox
            .conn
            .execute_batch("PRAGMA wal_autocheckpoint = 0")
            .unwrap();
        let wal = super::super::wal_path(mailbox.path());
        let before = std::fs::metadata(&wal).map_or(0, |m| m.len() as usize);
        write(mailbox);
        let bytes = std::fs::read(&wal).unwrap();
        let roots: std::collections::HashMap<u32, String> = mailbox
            .conn
            .prepare("SELECT rootpage, name FROM sqlite_master WHERE rootpage > 0")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let mut offset = before.max(32);
        let mut names = Vec::new();
        while offset + FRAME <= bytes.len() {
            let page = u32::from_be_bytes(bytes[offset..offset + 4].try_into().unwrap());
            names.push(
                roots
                    .get(&page)
                    .cloned()
                    .unwrap_or_else(|| format!("page {page}")),
            );
            offset += FRAME;
        }
        names
    }

    /// Recording an expunge for QRESYNC writes one page (the journal is one B-tree keyed by
    /// folder, MODSEQ and UID), and the journal answers what was expunged since a MODSEQ.
    #[test]
    fn an_expunge_writes_its_journal_entry_to_one_page() {
        let dir = tempfile::tempdir().unwrap();
        let key = MailboxKey::generate();
        let mut mailbox = Mailbox::create(&dir.path().join("m.sqlite"), &key).unwrap();
        let deleted = Flags {
            deleted: true,
            ..Flags::default()
        };
        for subject in ["one", "two", "three"] {
            let raw = format!("Subject: {subject}\r\n\r\nbody\r\n");
            mailbox
                .append("INBOX", raw.as_bytes(), &AppendOptions::default())
                .unwrap();
        }
        let all = UidSet::all();
        mailbox
            .set_flags(
                "INBOX",
                &UidSet::from_uids([1, 3]),
                FlagMode::Add,
                &deleted,
                None,
            )
            .unwrap();
        let before = mailbox.highest_modseq("INBOX").unwrap();
        let written = btrees_written(&mut mailbox, |m| {
            assert_eq!(m.expunge("INBOX", Some(&all)).unwrap(), [1, 3]);
        });
        let journal_pages = written.iter().filter(|n| n.contains("expunged")).count();
        assert_eq!(journal_pages, 1, "{written:?}");
        assert_eq!(mailbox.expunged_since("INBOX", before).unwrap(), [1, 3]);
        assert!(
            mailbox
                .expunged_since("INBOX", before + 1)
                .unwrap()
                .is_empty()
        );
    }

    /// A file at the previous version keeps its expunge journal through the upgrade.
    #[test]
    fn upgrade_from_the_previous_version_keeps_the_expunge_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("previous.sqlite");
        let key = MailboxKey::generate();
        {
            let conn = file_before(&path, &key, MIGRATION_9);
            insert_folder(&conn, "INBOX", None).unwrap();
            insert_folder(&conn, "Archive", None).unwrap();
            conn.execute_batch(
                "INSERT INTO expunged (folder_id, uid, modseq) VALUES
                    (1, 4, 10), (1, 2, 7), (1, 9, 12), (2, 5, 11);",
            )
            .unwrap();
        }
        let mailbox = Mailbox::open(&path, &key).unwrap();
        assert_eq!(mailbox.expunged_since("INBOX", 0).unwrap(), [2, 4, 9]);
        assert_eq!(mailbox.expunged_since("INBOX", 7).unwrap(), [4, 9]);
        assert_eq!(mailbox.expunged_since("Archive", 0).unwrap(), [5]);
        let indexes: i64 = mailbox
            .conn()
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'expunged'
                    AND sql IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 0, "the MODSEQ index is gone with the old table");
    }
}

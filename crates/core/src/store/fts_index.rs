//! The full-text index's backlog (schema 8): appends record their body in `fts_pending`, and
//! the trigram index takes the waiting bodies in batches.
//!
//! Indexing is most of what an append costs (every trigram of the text goes through FTS5's
//! hash), and one message per transaction made it worse: each commit flushed its own index
//! segment, which the automatic merges then rewrote. A batch of bodies is tokenized into one
//! segment. The backlog is indexed
//! - before any search that reads the index ([`index_all_pending`] from `filter_sql`), so a
//!   search never misses a message, however recent;
//! - by the append that brings it to [`INLINE_INDEX_THRESHOLD`] bodies, so it stays bounded in
//!   processes that never search (an importer, a Node service);
//! - by the server between client commands ([`Mailbox::index_pending`]), so a client's first
//!   search rarely waits.
//!
//! A message expunged while it waits never touches the index (`bodies::release`).

use super::Mailbox;
use super::bodies;
use super::parse::parse_for_index;
use crate::error::Result;
use rusqlite::{Connection, TransactionBehavior, params};

/// Waiting bodies at which an append indexes the backlog itself, after its own commit.
pub(crate) const INLINE_INDEX_THRESHOLD: u64 = 256;

/// Bodies indexed per transaction when more are indexed at once: bounds the memory FTS5's
/// pending hash takes (its `hashsize` is 16 MiB, schema 10) and the WAL one transaction grows.
const CATCH_UP_CHUNK: usize = 500;

impl Mailbox {
    /// Waiting bodies at which an append indexes the backlog itself, unless
    /// [`Mailbox::set_inline_index_threshold`] says otherwise.
    pub const DEFAULT_INLINE_INDEX_THRESHOLD: u64 = INLINE_INDEX_THRESHOLD;

    /// Bodies waiting for the full-text index.
    pub fn index_backlog(&self) -> Result<u64> {
        backlog(&self.conn)
    }

    /// Index up to `limit` waiting bodies in one transaction; returns how many were indexed.
    /// For a server's idle time: each call holds the mailbox for one bounded batch.
    pub fn index_pending(&self, limit: usize) -> Result<usize> {
        index_batch(&self.conn, limit)
    }

    /// Index up to `limit` waiting bodies (`usize::MAX`: all of them) in transactions of at
    /// most 500; returns how many were indexed. For the end of an import, or a caller's idle
    /// time when it does not mind holding the mailbox for the whole backlog.
    pub fn index_pending_in_batches(&self, limit: usize) -> Result<usize> {
        index_in_batches(&self.conn, limit)
    }

    /// Waiting bodies at which an append indexes the backlog itself (default
    /// [`INLINE_INDEX_THRESHOLD`]). A process that indexes in the background (the server) raises
    /// it, so that a burst of deliveries is stored at full speed and indexed once it is over;
    /// the threshold stays as the bound when the background indexer falls behind.
    pub fn set_inline_index_threshold(&mut self, bodies: u64) {
        self.inline_index_threshold = bodies.max(1);
    }

    /// Whether a background indexer should take the backlog now: something waits, and either
    /// no append added to it for `quiet` (the burst is over) or `cap` bodies or more wait (a
    /// first search would wait too long for them).
    pub fn index_is_due(&self, quiet: std::time::Duration, cap: u64) -> Result<bool> {
        let waiting = backlog(&self.conn)?;
        let settled = self
            .backlog_grew_at
            .is_none_or(|grew| grew.elapsed() >= quiet);
        Ok(waiting > 0 && (settled || waiting >= cap))
    }

    /// After an append committed: note that the backlog grew, and index it once it reached the
    /// threshold. The append is durable whatever happens here, so a failure to index only
    /// leaves the backlog for the next search or append to take.
    pub(crate) fn index_backlog_if_large(&mut self) {
        self.backlog_grew_at = Some(std::time::Instant::now());
        if backlog(&self.conn).is_ok_and(|waiting| waiting >= self.inline_index_threshold) {
            let _ = index_all_pending(&self.conn);
        }
    }
}

fn backlog(conn: &Connection) -> Result<u64> {
    let waiting: i64 = conn
        .prepare_cached("SELECT count(*) FROM fts_pending")?
        .query_row([], |r| r.get(0))?;
    Ok(waiting as u64)
}

/// Index every waiting body, in chunks; inside the caller's transaction if one is open.
pub(crate) fn index_all_pending(conn: &Connection) -> Result<()> {
    index_in_batches(conn, usize::MAX).map(drop)
}

/// Index up to `limit` waiting bodies in chunks of [`CATCH_UP_CHUNK`]; how many were indexed.
fn index_in_batches(conn: &Connection, limit: usize) -> Result<usize> {
    let mut indexed = 0;
    while indexed < limit {
        let wanted = (limit - indexed).min(CATCH_UP_CHUNK);
        let done = index_batch(conn, wanted)?;
        indexed += done;
        if done < wanted {
            break;
        }
    }
    Ok(indexed)
}

/// Index up to `limit` waiting bodies, oldest first, in one transaction (or in the caller's).
fn index_batch(conn: &Connection, limit: usize) -> Result<usize> {
    let own_transaction = conn.is_autocommit();
    if own_transaction {
        // `secure_delete = FAST` as for appends (see `Mailbox::appending`): the only whole pages
        // indexing frees are index segments rewritten by a merge into a new segment.
        conn.execute_batch("PRAGMA secure_delete = FAST;")?;
    }
    let result = (|| {
        let tx = own_transaction
            .then(|| rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate))
            .transpose()?;
        let body_ids: Vec<i64> = conn
            .prepare_cached("SELECT body_id FROM fts_pending ORDER BY body_id LIMIT ?1")?
            .query_map([limit as i64], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut insert = conn.prepare_cached(
            "INSERT INTO body_fts (rowid, subject, addresses, body) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut done = conn.prepare_cached("DELETE FROM fts_pending WHERE body_id = ?1")?;
        for &body_id in &body_ids {
            let indexed = parse_for_index(&bodies::load_raw(conn, body_id)?);
            insert.execute(params![
                body_id,
                indexed.subject,
                indexed.addresses,
                indexed.text
            ])?;
            done.execute([body_id])?;
        }
        if let Some(tx) = tx {
            tx.commit()?;
        }
        Ok(body_ids.len())
    })();
    if own_transaction {
        conn.execute_batch("PRAGMA secure_delete = ON;")?;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::MailboxKey;
    use crate::store::{AppendOptions, SearchKey, UidSet};

    fn message(subject: &str, body: &str) -> Vec<u8> {
        format!("Subject: {subject}\r\nFrom: Ann <ann@example.com>\r\n\r\n{body}\r\n").into_bytes()
    }

    fn mailbox(dir: &tempfile::TempDir) -> Mailbox {
        Mailbox::create(&dir.path().join("m.sqlite"), &MailboxKey::generate()).unwrap()
    }

    fn indexed_rows(mailbox: &Mailbox) -> i64 {
        // Contentless with contentless_delete: the docsize table has one row per indexed row.
        mailbox
            .conn()
            .query_row("SELECT count(*) FROM body_fts_docsize", [], |r| r.get(0))
            .unwrap()
    }

    fn text(mailbox: &Mailbox, needle: &str) -> Vec<u32> {
        mailbox
            .search("INBOX", &SearchKey::Text(needle.into()))
            .unwrap()
    }

    /// FTS5's `hashsize` setting, if the file has one.
    fn hash_size(conn: &Connection) -> Option<i64> {
        use rusqlite::OptionalExtension;
        conn.query_row(
            "SELECT v FROM body_fts_config WHERE k = 'hashsize'",
            [],
            |r| r.get(0),
        )
        .optional()
        .unwrap()
    }

    /// Append one message per word, with the word as subject and body.
    fn append_words(mailbox: &mut Mailbox, words: &[&str]) {
        for word in words {
            mailbox
                .append("INBOX", &message(word, word), &AppendOptions::default())
                .unwrap();
        }
    }

    /// New files and files upgraded from version 9 gather 16 MiB of index before writing a
    /// segment (FTS5's default of 1 MiB wrote a dozen small segments per batch).
    #[test]
    fn the_index_writes_a_batch_as_one_large_segment() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(hash_size(&mailbox(&dir).conn), Some(16 << 20));
        let path = dir.path().join("previous.sqlite");
        let key = MailboxKey::generate();
        {
            let conn =
                crate::store::schema::file_before(&path, &key, crate::store::schema::MIGRATION_10);
            assert_eq!(hash_size(&conn), None);
        }
        assert_eq!(
            hash_size(&Mailbox::open(&path, &key).unwrap().conn),
            Some(16 << 20)
        );
    }

    #[test]
    fn an_append_waits_for_the_index_and_a_text_search_takes_it_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut mailbox = mailbox(&dir);
        mailbox
            .append(
                "INBOX",
                &message("hello", "wombat stew"),
                &AppendOptions::default(),
            )
            .unwrap();
        assert_eq!(mailbox.index_backlog().unwrap(), 1);
        assert_eq!(indexed_rows(&mailbox), 0);
        // A search that does not read the index leaves the backlog alone.
        let all = mailbox.search("INBOX", &SearchKey::All).unwrap();
        assert_eq!(all, vec![1]);
        assert_eq!(mailbox.index_backlog().unwrap(), 1);
        // Nested under NOT and OR, a text key still reads the index.
        let nested = SearchKey::Not(Box::new(SearchKey::Or(
            Box::new(SearchKey::Body("wombat".into())),
            Box::new(SearchKey::Subject("nothing like it".into())),
        )));
        assert_eq!(mailbox.search("INBOX", &nested).unwrap(), Vec::<u32>::new());
        assert_eq!(mailbox.index_backlog().unwrap(), 0);
        assert_eq!(indexed_rows(&mailbox), 1);
        assert_eq!(text(&mailbox, "wombat"), vec![1]);
        assert_eq!(
            text(&mailbox, "ann@example"),
            vec![1],
            "addresses are indexed"
        );
    }

    #[test]
    fn expunging_a_waiting_message_never_touches_the_index_and_an_indexed_one_leaves_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut mailbox = mailbox(&dir);
        let options = AppendOptions::default();
        mailbox
            .append("INBOX", &message("one", "first aardvark"), &options)
            .unwrap();
        assert_eq!(text(&mailbox, "aardvark"), vec![1]);
        mailbox
            .append("INBOX", &message("two", "second aardvark"), &options)
            .unwrap();
        assert_eq!(mailbox.index_backlog().unwrap(), 1);

        mailbox
            .remove_messages("INBOX", &UidSet::from_uids([2]))
            .unwrap();
        assert_eq!(mailbox.index_backlog().unwrap(), 0, "the waiting body went");
        assert_eq!(indexed_rows(&mailbox), 1);
        mailbox
            .remove_messages("INBOX", &UidSet::from_uids([1]))
            .unwrap();
        assert_eq!(indexed_rows(&mailbox), 0, "the indexed body left the index");
        assert_eq!(text(&mailbox, "aardvark"), Vec::<u32>::new());
    }

    #[test]
    fn a_copy_shares_the_waiting_body_and_is_found_once_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let mut mailbox = mailbox(&dir);
        mailbox
            .append(
                "INBOX",
                &message("c", "capybara"),
                &AppendOptions::default(),
            )
            .unwrap();
        mailbox
            .copy_messages("INBOX", &UidSet::from_uids([1]), "Archive")
            .unwrap();
        mailbox
            .remove_messages("INBOX", &UidSet::from_uids([1]))
            .unwrap();
        assert_eq!(
            mailbox.index_backlog().unwrap(),
            1,
            "the copy still needs it"
        );
        let found = mailbox
            .search("Archive", &SearchKey::Text("capybara".into()))
            .unwrap();
        assert_eq!(found, vec![1]);
    }

    #[test]
    fn the_append_that_reaches_the_threshold_indexes_the_backlog() {
        let dir = tempfile::tempdir().unwrap();
        let mut mailbox = mailbox(&dir);
        let options = AppendOptions::default();
        for index in 0..INLINE_INDEX_THRESHOLD - 1 {
            mailbox
                .append("INBOX", &message("m", &format!("note {index}")), &options)
                .unwrap();
        }
        assert_eq!(mailbox.index_backlog().unwrap(), INLINE_INDEX_THRESHOLD - 1);
        let batch = [(&message("m", "last one")[..], AppendOptions::default())];
        mailbox.append_many("INBOX", &batch).unwrap();
        assert_eq!(mailbox.index_backlog().unwrap(), 0);
        assert_eq!(indexed_rows(&mailbox), INLINE_INDEX_THRESHOLD as i64);
    }

    #[test]
    fn index_pending_takes_bounded_batches_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut mailbox = mailbox(&dir);
        append_words(&mut mailbox, &["alpha", "bravo", "charlie"]);
        assert_eq!(mailbox.index_pending(2).unwrap(), 2);
        assert_eq!(mailbox.index_backlog().unwrap(), 1);
        let left: i64 = mailbox
            .conn()
            .query_row("SELECT body_id FROM fts_pending", [], |r| r.get(0))
            .unwrap();
        let newest: i64 = mailbox
            .conn()
            .query_row("SELECT max(id) FROM bodies", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, newest);
        assert_eq!(mailbox.index_pending(10).unwrap(), 1);
        assert_eq!(mailbox.index_pending(10).unwrap(), 0);
    }

    #[test]
    fn index_pending_in_batches_stops_at_its_limit_or_the_end_of_the_backlog() {
        let dir = tempfile::tempdir().unwrap();
        let mut mailbox = mailbox(&dir);
        append_words(&mut mailbox, &["delta", "echo", "foxtrot"]);
        assert_eq!(mailbox.index_pending_in_batches(2).unwrap(), 2);
        assert_eq!(mailbox.index_pending_in_batches(usize::MAX).unwrap(), 1);
        assert_eq!(mailbox.index_pending_in_batches(usize::MAX).unwrap(), 0);
        assert_eq!(indexed_rows(&mailbox), 3);
    }

    /// A file at version 7 has every message indexed and no backlog table: it upgrades to an
    /// empty backlog, its messages are still found, and new ones wait as usual.
    #[test]
    fn a_version_7_file_upgrades_with_an_empty_backlog() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sqlite");
        let key = MailboxKey::generate();
        let mut mailbox = Mailbox::create(&path, &key).unwrap();
        mailbox
            .append(
                "INBOX",
                &message("old", "ocelot"),
                &AppendOptions::default(),
            )
            .unwrap();
        assert_eq!(text(&mailbox, "ocelot"), vec![1]);
        mailbox
            .conn()
            .execute_batch("DROP TABLE fts_pending; PRAGMA user_version = 7;")
            .unwrap();
        drop(mailbox);

        let mut mailbox = Mailbox::open(&path, &key).unwrap();
        let version: i64 = mailbox
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, crate::store::schema::SCHEMA_VERSION);
        assert_eq!(mailbox.index_backlog().unwrap(), 0);
        assert_eq!(text(&mailbox, "ocelot"), vec![1]);
        mailbox
            .append(
                "INBOX",
                &message("new", "ocelot again"),
                &AppendOptions::default(),
            )
            .unwrap();
        assert_eq!(mailbox.index_backlog().unwrap(), 1);
        assert_eq!(text(&mailbox, "ocelot"), vec![1, 2]);
    }
}

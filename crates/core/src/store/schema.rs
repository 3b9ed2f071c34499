//! The mailbox schema: an append-only list of migrations versioned by `PRAGMA user_version`.
//!
//! Never edit a migration that has shipped: append a new one. Connection pragmas are set on
//! open (see `mailbox.rs`), not here.

use crate::error::{Error, Result};
use rusqlite::Connection;

/// Each entry takes the schema from version `index` to `index + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    MIGRATION_1,
    MIGRATION_2,
    MIGRATION_3,
    MIGRATION_4,
    MIGRATION_5,
    MIGRATION_6,
    MIGRATION_7,
    MIGRATION_8,
    MIGRATION_9,
    MIGRATION_10,
    MIGRATION_11,
];

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Version 1: folders, messages, de-duplicated bodies and attachments, full-text index,
/// expunge journal, and the ids of sealed items already delivered.
const MIGRATION_1: &str = r#"
-- One row per IMAP folder. `path` uses '/' as the hierarchy delimiter.
CREATE TABLE folders (
    id              INTEGER PRIMARY KEY,
    path            TEXT NOT NULL UNIQUE,
    special_use     TEXT,
    uidvalidity     INTEGER NOT NULL,
    uidnext         INTEGER NOT NULL DEFAULT 1,
    highestmodseq   INTEGER NOT NULL DEFAULT 1,
    subscribed      INTEGER NOT NULL DEFAULT 1,
    created_at      TEXT NOT NULL
);

-- A message body as stored: the raw RFC 5322 bytes with large attachment parts cut out
-- (`skeleton`, zstd-compressed), and where to splice them back (`parts`, JSON
-- [[offset, attachment_id], ...]). Several message rows (copies) may share one body.
-- AUTOINCREMENT: the id is also the EMAILID and the full-text rowid, never to be reused.
CREATE TABLE bodies (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    skeleton    BLOB NOT NULL,
    parts       TEXT NOT NULL DEFAULT '[]',
    raw_size    INTEGER NOT NULL,
    refs        INTEGER NOT NULL DEFAULT 0
);

-- Attachment part contents keyed by the SHA-256 of their raw (transfer-encoded) bytes,
-- stored once per mailbox, reference-counted in the same transaction as the messages.
CREATE TABLE attachments (
    id      INTEGER PRIMARY KEY,
    sha256  BLOB NOT NULL UNIQUE,
    size    INTEGER NOT NULL,
    data    BLOB NOT NULL,
    refs    INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    folder_id       INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
    uid             INTEGER NOT NULL,
    modseq          INTEGER NOT NULL,
    body_id         INTEGER NOT NULL REFERENCES bodies(id),
    seen            INTEGER NOT NULL DEFAULT 0,
    answered        INTEGER NOT NULL DEFAULT 0,
    flagged         INTEGER NOT NULL DEFAULT 0,
    deleted         INTEGER NOT NULL DEFAULT 0,
    draft           INTEGER NOT NULL DEFAULT 0,
    keywords        TEXT NOT NULL DEFAULT '[]',
    internal_date   TEXT NOT NULL,
    saved_at        TEXT NOT NULL,
    header_date     TEXT,
    size            INTEGER NOT NULL,
    subject         TEXT,
    from_addr       TEXT,
    sender_addr     TEXT,
    reply_to_addr   TEXT,
    to_addr         TEXT,
    cc_addr         TEXT,
    bcc_addr        TEXT,
    message_id      TEXT,
    in_reply_to     TEXT,
    refs_header     TEXT,
    thread_id       INTEGER,
    has_attachment  INTEGER NOT NULL DEFAULT 0,
    preview         TEXT,
    envelope        TEXT NOT NULL,
    body_structure  TEXT NOT NULL,
    UNIQUE (folder_id, uid)
);
CREATE INDEX messages_folder_modseq ON messages(folder_id, modseq);
-- Covering index for the hot paths that touch every message of a folder (SELECT's state load,
-- flag searches, UNSEEN counts): message rows are wide, so reading them is what costs.
CREATE INDEX messages_folder_state ON messages(
    folder_id, uid, modseq, seen, answered, flagged, deleted, draft, keywords, body_id, size);
CREATE INDEX messages_folder_date ON messages(folder_id, header_date);
CREATE INDEX messages_message_id ON messages(message_id);
CREATE INDEX messages_thread ON messages(thread_id);
CREATE INDEX messages_body ON messages(body_id);

-- Full-text index over subject, addresses and text body. Contentless (the text lives
-- compressed in `bodies`), trigram-tokenized so IMAP's substring SEARCH is indexed.
-- rowid = bodies.id: copies of a message share one index entry.
CREATE VIRTUAL TABLE body_fts USING fts5(
    subject, addresses, body,
    content = '', contentless_delete = 1, tokenize = 'trigram'
);
-- Index blobs sized to fill the file's 16 KiB pages, and fewer, larger merges: the trigram
-- index is most of what an append writes, and every page written is encrypted.
INSERT INTO body_fts (body_fts, rank) VALUES ('pgsz', 16000);
INSERT INTO body_fts (body_fts, rank) VALUES ('automerge', 8);

-- UIDs expunged from a folder and the MODSEQ at which it happened, for QRESYNC.
CREATE TABLE expunged (
    folder_id   INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
    uid         INTEGER NOT NULL,
    modseq      INTEGER NOT NULL,
    PRIMARY KEY (folder_id, uid)
) WITHOUT ROWID;
CREATE INDEX expunged_folder_modseq ON expunged(folder_id, modseq);

-- Ids of sealed queue items already folded into this mailbox, so a crash between the
-- append and the queue-file removal never delivers one twice.
CREATE TABLE delivered_items (
    item_id         TEXT PRIMARY KEY,
    delivered_at    TEXT NOT NULL
) WITHOUT ROWID;

-- Small per-mailbox settings and secrets (e.g. the sealing private key), inside the
-- encrypted file.
CREATE TABLE settings (
    name    TEXT PRIMARY KEY,
    value   BLOB NOT NULL
) WITHOUT ROWID;
"#;

/// Bring `conn` to [`SCHEMA_VERSION`], applying missing migrations in one transaction.
/// A file newer than this build is refused, never silently used.
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction()?;
    for migration in &MIGRATIONS[found as usize..] {
        tx.execute_batch(migration)?;
        if *migration == MIGRATION_4 {
            super::messages::fill_crlf_sizes(&tx)?;
        }
    }
    // PRAGMA takes no bound parameters; the value is our own constant.
    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    tx.commit()?;
    Ok(())
}

/// Version 2: application collections declared through the query layer. Each collection's
/// current definition (JSON: fields with types, indexes) and the history of the additive
/// changes applied to it; the collections themselves live in tables named `app_<name>`.
const MIGRATION_2: &str = r#"
CREATE TABLE query_collections (
    name        TEXT PRIMARY KEY,
    definition  TEXT NOT NULL,
    version     INTEGER NOT NULL,
    updated_at  TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE query_collection_changes (
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    applied_at  TEXT NOT NULL,
    changes     TEXT NOT NULL,
    PRIMARY KEY (name, version)
) WITHOUT ROWID;
"#;

/// Version 3: SORT and THREAD keys (RFC 5256, RFC 5957) computed once at append time, so SORT
/// is an ORDER BY over an index and THREAD reads a compact projection. Existing messages are
/// back-filled with the same Rust functions the append path uses (`sm_sort_*`, registered on
/// the connection before migrating).
const MIGRATION_3: &str = r#"
-- RFC 5256 base subject, ASCII-lowercased (i;ascii-casemap), and whether extracting it removed
-- a reply/forward marker (THREAD=REFERENCES step 5 needs that).
ALTER TABLE messages ADD COLUMN sort_subject TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN subject_is_reply INTEGER NOT NULL DEFAULT 0;
-- addr-mailbox of the first From/To/Cc address, ASCII-lowercased (SORT FROM/TO/CC).
ALTER TABLE messages ADD COLUMN sort_from TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN sort_to TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN sort_cc TEXT NOT NULL DEFAULT '';
-- Display name (else addr-spec) of the first From/To address, lowercased (RFC 5957).
ALTER TABLE messages ADD COLUMN display_from TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN display_to TEXT NOT NULL DEFAULT '';
-- Sent date (Date header, else internal date), ISO-8601 UTC: SORT DATE and THREAD order.
ALTER TABLE messages ADD COLUMN sort_date TEXT NOT NULL DEFAULT '';
-- The parent chain THREAD=REFERENCES links: References, else the first In-Reply-To id,
-- space-separated without angle brackets.
ALTER TABLE messages ADD COLUMN thread_refs TEXT NOT NULL DEFAULT '';

UPDATE messages SET
    sort_subject = sm_sort_base_subject(subject),
    subject_is_reply = sm_sort_subject_is_reply(subject),
    sort_from = sm_sort_mailbox(from_addr),
    sort_to = sm_sort_mailbox(to_addr),
    sort_cc = sm_sort_mailbox(cc_addr),
    display_from = sm_sort_display(from_addr),
    display_to = sm_sort_display(to_addr),
    sort_date = coalesce(header_date, internal_date),
    thread_refs = sm_sort_thread_refs(refs_header, in_reply_to);

-- One index per sort key; `uid` last so ties come out in mailbox order from the index itself.
CREATE INDEX messages_sort_arrival ON messages(folder_id, internal_date, uid);
CREATE INDEX messages_sort_date ON messages(folder_id, sort_date, uid);
CREATE INDEX messages_sort_size ON messages(folder_id, size, uid);
CREATE INDEX messages_sort_subject ON messages(folder_id, sort_subject, uid);
CREATE INDEX messages_sort_from ON messages(folder_id, sort_from, uid);
CREATE INDEX messages_sort_to ON messages(folder_id, sort_to, uid);
CREATE INDEX messages_sort_cc ON messages(folder_id, sort_cc, uid);
CREATE INDEX messages_sort_display_from ON messages(folder_id, display_from, uid);
CREATE INDEX messages_sort_display_to ON messages(folder_id, display_to, uid);
-- Covering index: everything THREAD reads, so it never touches the wide message rows.
CREATE INDEX messages_thread_projection ON messages(
    folder_id, uid, sort_date, subject_is_reply, sort_subject, message_id, thread_refs);
"#;

/// Version 4: the size of each message as POP3 sends it (every line ending CRLF, a final CRLF
/// added), so LIST and STAT announce what RETR transfers for messages stored with bare LF.
/// The migration fills it for existing rows from their stored bytes (see `migrate`).
pub(crate) const MIGRATION_4: &str = r#"
ALTER TABLE messages ADD COLUMN crlf_size INTEGER NOT NULL DEFAULT 0;
"#;

/// Version 5: THREAD compares integers. 64-bit digests (`thread_key` in `store/thread.rs`) of
/// the Message-ID, of the base subject and of each id of the parent chain, computed at append
/// time; the covering index THREAD reads holds those instead of the strings, so it is about a
/// fifth of the size and stays in the page cache. Existing messages are back-filled with the
/// append path's functions (`sm_thread_*`, registered before migrating).
pub(crate) const MIGRATION_5: &str = r#"
-- 0 means none (no Message-ID, empty base subject).
ALTER TABLE messages ADD COLUMN thread_key INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN subject_key INTEGER NOT NULL DEFAULT 0;
-- The digests of thread_refs' ids, oldest first, 8 little-endian bytes each.
ALTER TABLE messages ADD COLUMN thread_parents BLOB NOT NULL DEFAULT x'';

UPDATE messages SET
    thread_key = sm_thread_key(message_id),
    subject_key = sm_thread_key(sort_subject),
    thread_parents = sm_thread_parent_keys(thread_refs);

DROP INDEX messages_thread_projection;
CREATE INDEX messages_thread_projection ON messages(
    folder_id, uid, sort_date, subject_is_reply, subject_key, thread_key, thread_parents);
"#;

/// Version 6: every address of every message in a side table, so a query by sender or
/// recipient (`{"from.address": "a@example.org"}` in the query layer) is an index lookup
/// instead of a scan of every message's JSON. Triggers keep it in step with `messages` (an
/// inserted row, appended or copied, brings its addresses; a deleted row takes them along), so
/// no write path has to remember it; existing messages are back-filled here.
pub(crate) const MIGRATION_6: &str = r#"
-- field: which header (from, sender, reply_to, to, cc, bcc); position: index in that header's
-- address list. address: the addr-spec exactly as stored in the message's JSON (what equality
-- in a query compares); normalized: the same ASCII-lowercased; name: the display name.
CREATE TABLE message_addresses (
    message_id  INTEGER NOT NULL,
    field       TEXT NOT NULL,
    position    INTEGER NOT NULL,
    address     TEXT NOT NULL,
    normalized  TEXT NOT NULL,
    name        TEXT,
    PRIMARY KEY (message_id, field, position)
) WITHOUT ROWID;
CREATE INDEX message_addresses_lookup ON message_addresses(field, address);

CREATE VIEW message_address_sources (message_id, field, doc) AS
    SELECT id, 'from', from_addr FROM messages
    UNION ALL SELECT id, 'sender', sender_addr FROM messages
    UNION ALL SELECT id, 'reply_to', reply_to_addr FROM messages
    UNION ALL SELECT id, 'to', to_addr FROM messages
    UNION ALL SELECT id, 'cc', cc_addr FROM messages
    UNION ALL SELECT id, 'bcc', bcc_addr FROM messages;

INSERT INTO message_addresses (message_id, field, position, address, normalized, name)
    SELECT s.message_id, s.field, a.key, json_extract(a.value, '$.address'),
        lower(json_extract(a.value, '$.address')), json_extract(a.value, '$.name')
    FROM message_address_sources AS s, json_each(CASE WHEN json_valid(s.doc) THEN
        CASE WHEN json_type(s.doc) = 'array' THEN s.doc END END) AS a
    WHERE json_type(a.value, '$.address') = 'text';
DROP VIEW message_address_sources;

CREATE TRIGGER message_addresses_insert AFTER INSERT ON messages BEGIN
    INSERT INTO message_addresses (message_id, field, position, address, normalized, name)
        SELECT new.id, s.field, a.key, json_extract(a.value, '$.address'),
            lower(json_extract(a.value, '$.address')), json_extract(a.value, '$.name')
        FROM (SELECT 'from' AS field, new.from_addr AS doc
              UNION ALL SELECT 'sender', new.sender_addr
              UNION ALL SELECT 'reply_to', new.reply_to_addr
              UNION ALL SELECT 'to', new.to_addr
              UNION ALL SELECT 'cc', new.cc_addr
              UNION ALL SELECT 'bcc', new.bcc_addr) AS s,
            json_each(CASE WHEN json_valid(s.doc) THEN
                CASE WHEN json_type(s.doc) = 'array' THEN s.doc END END) AS a
        WHERE json_type(a.value, '$.address') = 'text';
END;

CREATE TRIGGER message_addresses_delete AFTER DELETE ON messages BEGIN
    DELETE FROM message_addresses WHERE message_id = old.id;
END;
"#;

/// Version 7: one covering index for the rarer SORT keys instead of one index each. Every
/// index is a B-tree of its own, so each message appended or expunged dirtied a 16 KiB page in
/// each of them (24 pages per append), and every such page is encrypted, authenticated and
/// written to the WAL: the bulk of what an IMAP APPEND or EXPUNGE costs. SORT DATE and ARRIVAL
/// (what clients ask for; ARRIVAL's index also serves SEARCH SINCE/BEFORE) keep their ordered
/// indexes; a SORT by another key reads this projection, which holds every sort key so any
/// combination of criteria is answered without touching the wide message rows, and sorts it.
/// `IF EXISTS`: files that tests rewound to an older version may lack some of them.
pub(crate) const MIGRATION_7: &str = r#"
DROP INDEX IF EXISTS messages_sort_size;
DROP INDEX IF EXISTS messages_sort_subject;
DROP INDEX IF EXISTS messages_sort_from;
DROP INDEX IF EXISTS messages_sort_to;
DROP INDEX IF EXISTS messages_sort_cc;
DROP INDEX IF EXISTS messages_sort_display_from;
DROP INDEX IF EXISTS messages_sort_display_to;
CREATE INDEX IF NOT EXISTS messages_sort_projection ON messages(
    folder_id, uid, internal_date, sort_date, size, sort_subject, sort_from, sort_to, sort_cc,
    display_from, display_to);
"#;

/// Version 8: bodies waiting for the full-text index. An append no longer indexes its text in
/// its own transaction: it records the body here, and the index takes the waiting bodies in
/// batches (before any text search, when enough have gathered, and when the server is idle).
/// Indexing one message per transaction was most of what a single APPEND or delivery cost:
/// each commit flushed a new index segment and the automatic merges rewrote them again, and a
/// message expunged before it was indexed now never touches the index at all.
/// `IF NOT EXISTS`: files that tests rewound to an older version may still have it.
pub(crate) const MIGRATION_8: &str = r#"
CREATE TABLE IF NOT EXISTS fts_pending (body_id INTEGER PRIMARY KEY);
"#;

/// Version 9: the expunge journal keyed by (folder, MODSEQ, UID),
/// so recording an expunge writes one B-tree instead of the table and its MODSEQ index. Every
/// page an EXPUNGE dirties is encrypted, authenticated and written to the WAL, and an expunge
/// already writes some twenty. QRESYNC asks for the UIDs expunged since a MODSEQ, which the key
/// answers; nothing looks up one UID (UIDs are never reused within a folder, so a UID is
/// expunged at most once).
pub(crate) const MIGRATION_9: &str = r#"
CREATE TABLE expunged_by_modseq (
    folder_id   INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
    modseq      INTEGER NOT NULL,
    uid         INTEGER NOT NULL,
    PRIMARY KEY (folder_id, modseq, uid)
) WITHOUT ROWID;
INSERT INTO expunged_by_modseq (folder_id, modseq, uid)
    SELECT folder_id, modseq, uid FROM expunged;
DROP TABLE expunged;
ALTER TABLE expunged_by_modseq RENAME TO expunged;
"#;

/// Version 10: FTS5 gathers up to 16 MiB of index in memory before it writes a segment (its
/// default is 1 MiB). The trigram index is about 1.8 bytes per character of text, so a 1 MiB
/// hash held some 25 messages: a batch of waiting bodies was flushed as a dozen small
/// segments, which the automatic merges then read back (decrypting every page) and rewrote
/// (encrypting it again). One segment per batch writes each index page once. The memory is
/// taken only while a batch is indexed and given back at its commit; batches are at most
/// the index's catch-up chunks of 500 bodies. Store bench, 1,000 x 27.5 KB, 100 per transaction
/// (median of 5): encrypted 749 -> 802 msg/s, plain 856 -> 903, 72 -> 63 MB on disk.
pub(crate) const MIGRATION_10: &str = r#"
INSERT INTO body_fts (body_fts, rank) VALUES ('hashsize', 16777216);
"#;

/// Version 11: the address table keyed by what queries look up, (field, address), with no
/// second index. Each B-tree an append touches costs a page encrypted, authenticated and
/// written to the WAL at its commit, and an append already writes some twenty; keyed by
/// message, the table needed an index for the lookup, so every append and every expunge wrote
/// both. A lookup now reads the matching message ids straight from the key. Deleting a
/// message's rows finds them by key too: the trigger computes them from the deleted row's
/// address lists, as the insert trigger did from the new row's (messages never change them).
pub(crate) const MIGRATION_11: &str = r#"
CREATE TABLE message_addresses_by_address (
    field       TEXT NOT NULL,
    address     TEXT NOT NULL,
    message_id  INTEGER NOT NULL,
    position    INTEGER NOT NULL,
    normalized  TEXT NOT NULL,
    name        TEXT,
    PRIMARY KEY (field, address, message_id, position)
) WITHOUT ROWID;
INSERT INTO message_addresses_by_address
    (field, address, message_id, position, normalized, name)
    SELECT field, address, message_id, position, normalized, name FROM message_addresses;
DROP TRIGGER message_addresses_insert;
DROP TRIGGER message_addresses_delete;
DROP TABLE message_addresses;
ALTER TABLE message_addresses_by_address RENAME TO message_addresses;

CREATE TRIGGER message_addresses_insert AFTER INSERT ON messages BEGIN
    INSERT INTO message_addresses (field, address, message_id, position, normalized, name)
        SELECT s.field, json_extract(a.value, '$.address'), new.id, a.key,
            lower(json_extract(a.value, '$.address')), json_extract(a.value, '$.name')
        FROM (SELECT 'from' AS field, new.from_addr AS doc
              UNION ALL SELECT 'sender', new.sender_addr
              UNION ALL SELECT 'reply_to', new.reply_to_addr
              UNION ALL SELECT 'to', new.to_addr
              UNION ALL SELECT 'cc', new.cc_addr
              UNION ALL SELECT 'bcc', new.bcc_addr) AS s,
            json_each(CASE WHEN json_valid(s.doc) THEN
                CASE WHEN json_type(s.doc) = 'array' THEN s.doc END END) AS a
        WHERE json_type(a.value, '$.address') = 'text';
END;

CREATE TRIGGER message_addresses_delete AFTER DELETE ON messages BEGIN
    DELETE FROM message_addresses
    WHERE message_id = old.id AND (field, address) IN (
        SELECT s.field, json_extract(a.value, '$.address')
        FROM (SELECT 'from' AS field, old.from_addr AS doc
              UNION ALL SELECT 'sender', old.sender_addr
              UNION ALL SELECT 'reply_to', old.reply_to_addr
              UNION ALL SELECT 'to', old.to_addr
              UNION ALL SELECT 'cc', old.cc_addr
              UNION ALL SELECT 'bcc', old.bcc_addr) AS s,
            json_each(CASE WHEN json_valid(s.doc) THEN
                CASE WHEN json_type(s.doc) = 'array' THEN s.doc END END) AS a
        WHERE json_type(a.value, '$.address') = 'text');
END;
"#;

/// A new file at `path` with the schema of the version before `migration` (which must be in
/// [`MIGRATIONS`]): for tests of what an upgrade through it does to existing rows.
#[cfg(test)]
pub(crate) fn file_before(
    path: &std::path::Path,
    key: &crate::key::MailboxKey,
    migration: &str,
) -> Connection {
    let version = MIGRATIONS.iter().position(|m| *m == migration).unwrap();
    let conn = super::Mailbox::raw_connection(path, key).unwrap();
    // Versions 3 and 5 back-fill with these functions, as `open` registers them.
    super::sort::register_functions(&conn).unwrap();
    for migration in &MIGRATIONS[..version] {
        conn.execute_batch(migration).unwrap();
    }
    conn.execute_batch(&format!("PRAGMA user_version = {version}"))
        .unwrap();
    conn
}

#[cfg(test)]
mod address_table_tests {
    use super::*;
    use crate::key::MailboxKey;
    use crate::store::{AppendOptions, Mailbox};

    type AddressRow = (String, i64, String, String, Option<String>);

    fn address_rows(conn: &Connection, message_id: i64) -> Vec<AddressRow> {
        conn.prepare(
            "SELECT field, position, address, normalized, name FROM message_addresses
             WHERE message_id = ?1 ORDER BY field, position",
        )
        .unwrap()
        .query_map([message_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
    }

    /// A file at the previous version has messages but no address table: opening it migrates
    /// and back-fills the table from every message's address lists; appends after the upgrade
    /// are indexed by the trigger.
    #[test]
    fn upgrade_from_the_previous_version_back_fills_message_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("previous.sqlite");
        let key = MailboxKey::generate();
        {
            let conn = file_before(&path, &key, MIGRATION_6);
            conn.execute_batch(
                "INSERT INTO folders (path, uidvalidity, uidnext, created_at) VALUES ('INBOX', 1, 3, '');
                 INSERT INTO bodies (skeleton, raw_size) VALUES (x'00', 1);",
            )
            .unwrap();
            let rows = [
                (
                    r#"[{"name":"Alice","address":"Alice@Example.com"}]"#,
                    r#"[{"name":null,"address":"bob@example.org"},{"name":"Team","address":null}]"#,
                    Some(r#"[{"name":"Carol","address":"carol@example.net"}]"#),
                ),
                (r#"[]"#, r#"not json"#, None),
            ];
            for (uid, (from, to, cc)) in (1..).zip(rows) {
                conn.execute(
                    "INSERT INTO messages (folder_id, uid, modseq, body_id, internal_date,
                        saved_at, size, from_addr, to_addr, cc_addr, envelope, body_structure)
                     VALUES (1, ?1, 1, 1, '', '', 1, ?2, ?3, ?4, '{}', '{}')",
                    rusqlite::params![uid, from, to, cc],
                )
                .unwrap();
            }
        }
        let mut mailbox = Mailbox::open(&path, &key).unwrap();
        let version: i64 = mailbox
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let row = |field: &str, position: i64, address: &str, name: Option<&str>| -> AddressRow {
            (
                field.into(),
                position,
                address.into(),
                address.to_ascii_lowercase(),
                name.map(str::to_owned),
            )
        };
        assert_eq!(
            address_rows(mailbox.conn(), 1),
            vec![
                row("cc", 0, "carol@example.net", Some("Carol")),
                row("from", 0, "Alice@Example.com", Some("Alice")),
                row("to", 0, "bob@example.org", None),
            ],
            "a group (no address) is not indexed"
        );
        assert_eq!(
            address_rows(mailbox.conn(), 2),
            vec![],
            "an empty list and text that is not JSON give no rows, and no error"
        );

        mailbox
            .append(
                "INBOX",
                b"From: Dan <dan@example.com>\r\nTo: a@example.org, b@example.org\r\n\
                  Subject: new\r\n\r\nnew\r\n",
                &AppendOptions::default(),
            )
            .unwrap();
        let newest: i64 = mailbox
            .conn()
            .query_row("SELECT max(id) FROM messages", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            address_rows(mailbox.conn(), newest),
            vec![
                row("from", 0, "dan@example.com", Some("Dan")),
                row("to", 0, "a@example.org", None),
                row("to", 1, "b@example.org", None),
            ]
        );
    }

    fn all_address_rows(conn: &Connection) -> Vec<(String, String, i64, i64)> {
        conn.prepare("SELECT field, address, message_id, position FROM message_addresses")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// Version 11 keys the table by (field, address): rows written by version 10's triggers
    /// survive the upgrade; an expunge removes exactly its message's rows (by key, without
    /// scanning), and the table has no second B-tree for appends to write.
    #[test]
    fn the_address_table_is_keyed_by_address_and_expunges_find_their_rows_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("previous.sqlite");
        let key = MailboxKey::generate();
        let message = |from: &str, to: &str| {
            format!("From: {from}\r\nTo: {to}\r\nSubject: s\r\n\r\nbody\r\n").into_bytes()
        };
        {
            drop(file_before(&path, &key, MIGRATION_11));
        }
        // Appended by version 10's schema (a file rewound to it, opened without migrating).
        {
            let conn = Mailbox::raw_connection(&path, &key).unwrap();
            conn.execute_batch(
                "INSERT INTO folders (path, uidvalidity, uidnext, created_at) VALUES ('INBOX', 1, 3, '');
                 INSERT INTO bodies (skeleton, raw_size) VALUES (x'00', 1);
                 INSERT INTO messages (folder_id, uid, modseq, body_id, internal_date, saved_at,
                    size, from_addr, to_addr, envelope, body_structure)
                 VALUES (1, 1, 1, 1, '', '', 1, '[{\"name\":null,\"address\":\"ann@example.com\"}]',
                    '[{\"name\":null,\"address\":\"bob@example.org\"},{\"name\":null,\"address\":\"bob@example.org\"}]',
                    '{}', '{}');",
            )
            .unwrap();
        }
        let mut mailbox = Mailbox::open(&path, &key).unwrap();
        let old_rows = all_address_rows(mailbox.conn());
        assert_eq!(old_rows.len(), 3, "{old_rows:?}");
        mailbox
            .append(
                "INBOX",
                &message("ann@example.com", "cy@example.net"),
                &AppendOptions::default(),
            )
            .unwrap();
        assert_eq!(all_address_rows(mailbox.conn()).len(), 5);

        mailbox
            .set_flags(
                "INBOX",
                &crate::store::UidSet::from_uids([1]),
                crate::store::FlagMode::Add,
                &crate::store::Flags {
                    deleted: true,
                    ..Default::default()
                },
                None,
            )
            .unwrap();
        mailbox.expunge("INBOX", None).unwrap();
        let left = all_address_rows(mailbox.conn());
        assert!(
            left.iter().all(|(_, _, message, _)| *message != 1),
            "{left:?}"
        );
        assert_eq!(left.len(), 2, "the other message keeps its rows: {left:?}");
        assert!(
            left.iter()
                .any(|(field, address, _, _)| field == "from" && address == "ann@example.com")
        );

        let plan: Vec<String> = mailbox
            .conn()
            .prepare(
                "EXPLAIN QUERY PLAN DELETE FROM message_addresses
                 WHERE message_id = 7 AND (field, address) IN (SELECT 'from', 'ann@example.com')",
            )
            .unwrap()
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(
            plan.iter().any(|step| step.contains("USING PRIMARY KEY")),
            "{plan:?}"
        );
        assert!(
            !plan
                .iter()
                .any(|step| step.starts_with("SCAN message_addresses")),
            "{plan:?}"
        );
        let indexes: i64 = mailbox
            .conn()
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'index'
                    AND tbl_name = 'message_addresses' AND sql IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 0);
    }
}

//! Shared helpers for the query test binaries: a real encrypted mailbox, a second raw
//! connection to seed built-in tables directly, and a dump of the whole database.
#![allow(dead_code)]

pub mod reference;

use rusqlite::Connection;
use sealmail_core::MailboxKey;
use sealmail_core::query::{QueryError, QueryOutput};
use sealmail_core::store::Mailbox;
use serde_json::{Value, json};
use std::collections::BTreeSet;

pub struct TestMailbox {
    pub mailbox: Mailbox,
    /// A second connection to the same file, for seeding and inspecting tables directly.
    pub raw: Connection,
    _dir: tempfile::TempDir,
}

impl TestMailbox {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mailbox.sqlite");
        let key = MailboxKey::generate();
        let mailbox = Mailbox::create(&path, &key).unwrap();
        let raw = Mailbox::raw_connection(&path, &key).unwrap();
        raw.execute_batch("PRAGMA busy_timeout = 5000;").unwrap();
        sealmail_core::query::register_functions(&raw).unwrap();
        Self {
            mailbox,
            raw,
            _dir: dir,
        }
    }

    pub fn query(&self, request: Value) -> Result<QueryOutput, QueryError> {
        self.mailbox.query(&request)
    }

    /// The documents of a `find`, panicking on any error.
    pub fn find(&self, collection: &str, filter: Value) -> Vec<Value> {
        match self.query(json!({"collection": collection, "op": "find", "filter": filter})) {
            Ok(QueryOutput::Documents(docs)) => docs,
            other => panic!("find {filter} gave {other:?}"),
        }
    }

    /// The key values (`_id` or `id`) of the documents a filter finds, as strings.
    pub fn ids(&self, collection: &str, filter: Value) -> BTreeSet<String> {
        self.find(collection, filter.clone())
            .iter()
            .map(|doc| match doc.get("_id").or_else(|| doc.get("id")) {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => panic!("document without key for {filter}: {doc}"),
            })
            .collect()
    }

    /// The id of folder `path`, created if the mailbox does not have it yet (new mailboxes
    /// start with INBOX, Sent, Drafts, Trash, Junk and Archive).
    pub fn add_folder(&self, path: &str) -> i64 {
        self.raw
            .execute(
                "INSERT INTO folders (path, uidvalidity, created_at) VALUES (?1, 1, ?2)
                 ON CONFLICT(path) DO NOTHING",
                (path, "2026-01-01T00:00:00Z"),
            )
            .unwrap();
        self.raw
            .query_row("SELECT id FROM folders WHERE path = ?1", [path], |r| {
                r.get(0)
            })
            .unwrap()
    }

    /// A message row with the given overrides over plausible defaults.
    pub fn add_message(&self, folder_id: i64, uid: i64, fields: Value) -> i64 {
        self.raw
            .execute(
                "INSERT INTO bodies (skeleton, raw_size) VALUES (x'00', 1)",
                [],
            )
            .unwrap();
        let body_id = self.raw.last_insert_rowid();
        let text = |key: &str, default: &str| -> Option<String> {
            match fields.get(key) {
                Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => Some(other.to_string()),
                None => Some(default.to_owned()),
            }
        };
        let number =
            |key: &str, default: i64| fields.get(key).and_then(Value::as_i64).unwrap_or(default);
        self.raw
            .execute(
                "INSERT INTO messages (folder_id, uid, modseq, body_id, seen, answered, flagged,
                    deleted, draft, keywords, internal_date, saved_at, header_date, size, subject,
                    from_addr, to_addr, message_id, thread_id, has_attachment, envelope,
                    body_structure)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12, ?13, ?14, ?15,
                    ?16, ?17, ?18, ?19, '{}', '{}')",
                rusqlite::params![
                    folder_id,
                    uid,
                    number("modseq", uid),
                    body_id,
                    number("seen", 0),
                    number("answered", 0),
                    number("flagged", 0),
                    number("deleted", 0),
                    number("draft", 0),
                    text("keywords", "[]"),
                    text("internal_date", "2026-11-01T10:00:00Z"),
                    text("date", "2026-11-01T09:59:00Z"),
                    number("size", 1000),
                    text("subject", "hello"),
                    text(
                        "from",
                        r#"[{"name":"Alice","address":"alice@example.com"}]"#
                    ),
                    text("to", r#"[{"name":null,"address":"bob@example.org"}]"#),
                    text("message_id", &format!("<{uid}@example.com>")),
                    fields.get("thread_id").and_then(Value::as_i64),
                    number("has_attachment", 0),
                ],
            )
            .unwrap();
        self.raw.last_insert_rowid()
    }

    /// Every table's schema and rows, in a stable textual form.
    pub fn dump(&self) -> String {
        self.dump_tables(|_| true)
    }

    /// [`Self::dump`] restricted to the tables (and indexes) whose name `keep` accepts.
    pub fn dump_tables(&self, keep: impl Fn(&str) -> bool) -> String {
        let mut out = String::new();
        let tables: Vec<(String, String)> = self
            .raw
            .prepare("SELECT name, coalesce(sql, '') FROM sqlite_master ORDER BY name")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (name, sql) in tables.into_iter().filter(|(name, _)| keep(name)) {
            out.push_str(&format!("{name}: {sql}\n"));
            if !sql.starts_with("CREATE TABLE") {
                continue;
            }
            let mut statement = self
                .raw
                .prepare(&format!("SELECT * FROM \"{name}\" ORDER BY 1"))
                .unwrap();
            let columns = statement.column_count();
            let mut rows = statement.query([]).unwrap();
            while let Some(row) = rows.next().unwrap() {
                for index in 0..columns {
                    let value: rusqlite::types::Value = row.get(index).unwrap();
                    out.push_str(&format!("{value:?}|"));
                }
                out.push('\n');
            }
        }
        out
    }
}

pub fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|id| id.to_string()).collect()
}

//! Fuzz the query layer with arbitrary JSON requests against a real mailbox file.
//!
//! Asserts, for every input: no panic; no SQL syntax (or unknown table/column) error, which
//! would mean the compiler produced malformed SQL; and no access to a table, column or
//! statement kind outside the query schema, checked by an SQLite authorizer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rusqlite::Connection;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use sealmail_core::MailboxKey;
use sealmail_core::query::QueryError;
use sealmail_core::store::Mailbox;
use std::sync::{Arc, Mutex, OnceLock};

struct Fixture {
    conn: Connection,
    violations: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

/// Tables the query layer may read or write, and hidden columns it must never read.
fn allowed(action: &AuthAction<'_>) -> Result<(), String> {
    let visible_table = |table: &str| {
        matches!(
            table,
            "messages" | "folders" | "attachments" | "query_collections"
                | "query_collection_changes" | "sqlite_master" | "sqlite_schema"
                // table-valued JSON functions: they read only their arguments
                | "json_each" | "json_tree"
        ) || table.starts_with("app_")
    };
    match action {
        AuthAction::Read {
            table_name,
            column_name,
        } => {
            let hidden = matches!(
                (*table_name, *column_name),
                ("messages", "envelope" | "body_structure") | ("attachments", "data")
            );
            if hidden || !visible_table(table_name) {
                return Err(format!("read {table_name}.{column_name}"));
            }
        }
        AuthAction::Insert { table_name }
        | AuthAction::Delete { table_name }
        | AuthAction::Update { table_name, .. }
        | AuthAction::AlterTable { table_name, .. }
        | AuthAction::CreateTable { table_name }
        | AuthAction::CreateIndex { table_name, .. } => {
            let writable = table_name.starts_with("app_")
                || matches!(
                    *table_name,
                    "query_collections"
                        | "query_collection_changes"
                        | "sqlite_master"
                        | "sqlite_schema"
                );
            if !writable {
                return Err(format!("write {table_name}"));
            }
        }
        AuthAction::Select
        | AuthAction::Function { .. }
        | AuthAction::Transaction { .. }
        | AuthAction::Recursive => {}
        other => return Err(format!("{other:?}")),
    }
    Ok(())
}

fn fixture() -> &'static Mutex<Fixture> {
    static FIXTURE: OnceLock<Mutex<Fixture>> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("mailbox.sqlite");
        let key = MailboxKey::generate();
        drop(Mailbox::create(&path, &key).expect("create mailbox"));
        let mut conn = Connection::open(&path).expect("open mailbox");
        conn.execute_batch(&format!(
            "PRAGMA key = \"x'{}'\"; PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;",
            hex::encode(key.as_bytes())
        ))
        .expect("key mailbox");
        sealmail_core::query::register_functions(&conn).expect("register functions");
        conn.execute_batch(
            "INSERT OR IGNORE INTO folders (path, uidvalidity, created_at)
                 VALUES ('INBOX', 1, '2026-01-01T00:00:00Z');
             INSERT INTO bodies (skeleton, raw_size) VALUES (x'00', 1);
             INSERT INTO messages (folder_id, uid, modseq, body_id, keywords, internal_date,
                 saved_at, size, subject, from_addr, thread_id, envelope, body_structure)
             VALUES ((SELECT id FROM folders WHERE path = 'INBOX'), 1, 1,
                 (SELECT max(id) FROM bodies), '[\"$label1\"]', '2026-01-01T00:00:00Z',
                 '2026-01-01T00:00:00Z', 10, 'hello',
                 '[{\"name\":\"A\",\"address\":\"a@example.com\"}]', 1, '{}', '{}');",
        )
        .expect("seed messages");
        sealmail_core::query::execute(
            &conn,
            &serde_json::json!({"collection": "notes", "op": "define_collection",
                "fields": {"title": "text", "n": "integer", "r": "real", "b": "boolean",
                           "d": "date", "bin": "binary", "meta": "json"}}),
        )
        .expect("define notes");
        let violations = Arc::new(Mutex::new(Vec::new()));
        let recorded = violations.clone();
        conn.authorizer(Some(move |context: AuthContext<'_>| {
            match allowed(&context.action) {
                Ok(()) => Authorization::Allow,
                Err(violation) => {
                    if let Ok(mut list) = recorded.lock() {
                        list.push(violation);
                    }
                    Authorization::Deny
                }
            }
        }))
        .expect("install authorizer");
        Mutex::new(Fixture {
            conn,
            violations,
            _dir: dir,
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let fixture = fixture()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let result = sealmail_core::query::execute(&fixture.conn, &request);
    if let Err(QueryError::Sqlite(error)) = &result {
        let text = error.to_string();
        for malformed in [
            "syntax error",
            "no such table",
            "no such column",
            "unrecognized token",
            "no such function",
            "not authorized",
        ] {
            assert!(
                !text.contains(malformed),
                "{request} produced bad SQL: {text}"
            );
        }
    }
    let mut violations = fixture.violations.lock().unwrap_or_else(|p| p.into_inner());
    assert!(violations.is_empty(), "{request} touched {violations:?}");
    violations.clear();
});

//! The atomic scope of a write: its own `BEGIN IMMEDIATE` transaction, or a savepoint when the
//! caller already holds a transaction on the connection, so that query writes compose with it.

use super::error::QueryError;
use rusqlite::Connection;
use std::ops::Deref;

/// Rolls back on drop unless [`WriteScope::commit`] was called.
pub(crate) struct WriteScope<'c> {
    conn: &'c Connection,
    nested: bool,
    done: bool,
}

const SAVEPOINT: &str = "sealmail_query_write";

impl<'c> WriteScope<'c> {
    pub(crate) fn begin(conn: &'c Connection) -> Result<Self, QueryError> {
        // IMMEDIATE takes the write lock up front, so a read-modify-write never fails halfway
        // on a lock upgrade.
        let nested = !conn.is_autocommit();
        conn.execute_batch(if nested {
            "SAVEPOINT sealmail_query_write"
        } else {
            "BEGIN IMMEDIATE"
        })?;
        Ok(Self {
            conn,
            nested,
            done: false,
        })
    }

    pub(crate) fn commit(mut self) -> Result<(), QueryError> {
        self.done = true;
        self.conn.execute_batch(if self.nested {
            "RELEASE sealmail_query_write"
        } else {
            "COMMIT"
        })?;
        Ok(())
    }
}

impl Deref for WriteScope<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for WriteScope<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let rollback = if self.nested {
            format!("ROLLBACK TO {SAVEPOINT}; RELEASE {SAVEPOINT}")
        } else {
            "ROLLBACK".to_owned()
        };
        // Nothing useful can be done with a failed rollback inside drop; SQLite rolls back an
        // unfinished transaction itself when the connection closes.
        let _ = self.conn.execute_batch(&rollback);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x)").unwrap();
        conn
    }

    fn count(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn commits_or_rolls_back_alone() {
        let conn = conn();
        let scope = WriteScope::begin(&conn).unwrap();
        scope.execute("INSERT INTO t VALUES (1)", []).unwrap();
        drop(scope);
        assert_eq!(count(&conn), 0);
        let scope = WriteScope::begin(&conn).unwrap();
        scope.execute("INSERT INTO t VALUES (1)", []).unwrap();
        scope.commit().unwrap();
        assert_eq!(count(&conn), 1);
        assert!(conn.is_autocommit());
    }

    #[test]
    fn nests_inside_a_callers_transaction() {
        let conn = conn();
        conn.execute_batch("BEGIN; INSERT INTO t VALUES (0)")
            .unwrap();
        let scope = WriteScope::begin(&conn).unwrap();
        scope.execute("INSERT INTO t VALUES (1)", []).unwrap();
        drop(scope);
        assert_eq!(count(&conn), 1, "only the nested write is undone");
        let scope = WriteScope::begin(&conn).unwrap();
        scope.execute("INSERT INTO t VALUES (2)", []).unwrap();
        scope.commit().unwrap();
        assert!(
            !conn.is_autocommit(),
            "the caller's transaction is still open"
        );
        conn.execute_batch("COMMIT").unwrap();
        assert_eq!(count(&conn), 2);
    }
}

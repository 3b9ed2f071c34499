//! One encrypted SQLCipher file per mailbox.
//!
//! [`Mailbox`] is synchronous: callers on an async runtime run it on blocking threads.

mod schema;

pub use schema::SCHEMA_VERSION;

use crate::error::{Error, Result};
use crate::key::MailboxKey;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};

/// An open, decrypted mailbox file.
pub struct Mailbox {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Mailbox {
    /// Create a new mailbox file at `path` (which must not exist), keyed with `key`.
    pub fn create(path: &Path, key: &MailboxKey) -> Result<Self> {
        if path.exists() {
            return Err(Error::InvalidArgument(format!(
                "{} already exists",
                path.display()
            )));
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        Self::init(conn, path, key)
    }

    /// Open an existing mailbox file. A wrong key, a file that is not SQLite, or a truncated or
    /// tampered file all give [`Error::Corrupt`]; a newer schema gives [`Error::SchemaTooNew`].
    pub fn open(path: &Path, key: &MailboxKey) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::Corrupt {
                path: path.into(),
                reason: "file is missing".into(),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        Self::init(conn, path, key)
    }

    fn init(mut conn: Connection, path: &Path, key: &MailboxKey) -> Result<Self> {
        let corrupt = |e: rusqlite::Error| Error::Corrupt {
            path: path.into(),
            reason: e.to_string(),
        };
        // Silence SQLCipher before keying so a wrong key prints nothing to stderr.
        conn.execute_batch("PRAGMA cipher_log_level = NONE;")?;
        conn.execute_batch(&key.sqlcipher_key_pragma())?;
        // The first read decrypts page 1: this is where a wrong key or a damaged file shows.
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
            .map_err(corrupt)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA busy_timeout = 5000;
             PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;
             PRAGMA secure_delete = ON;",
        )
        .map_err(corrupt)?;
        schema::migrate(&mut conn)?;
        crate::query::register_functions(&conn)?;
        Ok(Self {
            conn,
            path: path.into(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying connection, for the query layer and the backup module inside this crate.
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

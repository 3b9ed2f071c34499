//! One encrypted SQLCipher file per mailbox.
//!
//! [`Mailbox`] is synchronous: callers on an async runtime run it on blocking threads.

mod bodies;
mod folders;
mod fts_index;
mod messages;
mod parse;
mod rotate;
mod schema;
mod search;
mod sort;
mod thread;
pub mod types;

pub use bodies::crlf_size;
pub use folders::{DELIMITER, normalize_folder_name};
pub use messages::DEFAULT_MAX_MESSAGE_SIZE;
pub use rotate::{KeyUsed, RotationStep, RowCounts};
pub(crate) use rotate::{ignore_missing, open_verified, row_counts};
pub use schema::SCHEMA_VERSION;
pub use search::SearchKey;
pub use sort::{BaseSubject, SortCriterion, SortKey, base_subject};
pub use thread::{
    ThreadAlgorithm, ThreadEntry, ThreadInput, ThreadMessage, ThreadNode, Threads, thread_key,
    thread_ordered_subject, thread_references,
};
pub use types::*;

use crate::error::{Error, Result};
use crate::key::MailboxKey;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};

/// An open, decrypted mailbox file.
pub struct Mailbox {
    conn: Connection,
    path: PathBuf,
    /// The account's quota in bytes, from the registry; `None` is unlimited.
    quota_limit: Option<u64>,
    max_message_size: u64,
    /// Whole-folder THREAD results, reused until the folder's messages change.
    thread_cache: std::sync::Mutex<thread::ThreadCache>,
    /// Waiting bodies at which an append indexes the backlog itself
    /// (`fts_index::INLINE_INDEX_THRESHOLD` unless a background indexer raised it).
    inline_index_threshold: u64,
    /// When an append last added to the full-text backlog: a background indexer leaves a
    /// mailbox alone while mail is still arriving.
    backlog_grew_at: Option<std::time::Instant>,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Pragmas of every connection to a mailbox file, set once it is keyed (ARCHITECTURE.md).
/// `secure_delete`: freed pages are zeroed, so deleted mail is gone even for someone who later
/// holds the key. `cache_size`: up to 32 MiB of decrypted pages (memory is taken only as pages
/// are read). SQLCipher decrypts and authenticates a page each time it enters the cache, and
/// the default 2 MiB (128 pages of 16 KiB) is less than one batch of appends touches in the
/// full-text index: pages were evicted, written out early and decrypted again within one
/// transaction, and every search re-read its index pages. `wal_autocheckpoint`: the WAL is
/// written back every 4,000 pages (16 MiB) rather than SQLite's 1,000. A small append writes
/// some twenty pages (the message, its body and a leaf of each index), so the default
/// checkpointed every fifty appends, each time writing back and syncing the same hot index
/// pages; Node bench, 1,000 messages, alternating builds: one append per transaction 12-17%
/// faster, batched 10%. `journal_size_limit`: a large transaction (an import, a full-text
/// batch) leaves the WAL file no larger than that once it is reset, since quota counts it.
const CONNECTION_PRAGMAS: &str = "PRAGMA journal_mode = WAL;
     PRAGMA busy_timeout = 5000;
     PRAGMA synchronous = NORMAL;
     PRAGMA foreign_keys = ON;
     PRAGMA secure_delete = ON;
     PRAGMA cache_size = -32768;
     PRAGMA wal_autocheckpoint = 4000;
     PRAGMA journal_size_limit = 16777216;";

/// Settings row holding the sealing secret key.
const SEALING_SECRET_KEY: &str = "sealing_secret_key";

/// The WAL file SQLite keeps beside a database.
pub(crate) fn wal_path(path: &Path) -> PathBuf {
    sibling(path, "-wal")
}

/// `path` with `suffix` appended to its file name.
pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
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
        Self::open_file(path, key)?.with_initial_contents()
    }

    /// A mailbox file laid out as files created before schema 8 were (16 KiB pages), for tests
    /// of how such files open, search, back up and rotate.
    #[cfg(test)]
    pub(crate) fn create_with_legacy_page_size(path: &Path, key: &MailboxKey) -> Result<Self> {
        {
            let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
            let page_size = crate::key::LEGACY_PAGE_SIZE;
            let conn = crate::key::open_keyed_with_page_size(path, flags, key, page_size)?;
            // Writing page 1 fixes the file's page size.
            conn.execute_batch("CREATE TABLE page_size_probe (x); DROP TABLE page_size_probe;")?;
        }
        Self::open_file(path, key)?.with_initial_contents()
    }

    /// The default folders and a fresh sealing key pair, in a new file.
    fn with_initial_contents(mut self) -> Result<Self> {
        let tx = self.conn.transaction()?;
        for (name, special_use) in folders::DEFAULT_FOLDERS {
            folders::insert_folder(&tx, name, *special_use)?;
        }
        let sealing = crate::seal::SealingKeyPair::generate();
        tx.execute(
            "INSERT INTO settings (name, value) VALUES (?1, ?2)",
            rusqlite::params![SEALING_SECRET_KEY, sealing.secret.to_bytes().as_slice()],
        )?;
        tx.commit()?;
        Ok(self)
    }

    /// The secret half of this mailbox's sealing key pair, which opens mail sealed for it.
    pub fn sealing_secret_key(&self) -> Result<crate::seal::SealingSecretKey> {
        let bytes =
            zeroize::Zeroizing::new(self.setting(SEALING_SECRET_KEY)?.ok_or_else(|| {
                Error::Corrupt {
                    path: self.path.clone(),
                    reason: "sealing key missing".into(),
                }
            })?);
        crate::seal::SealingSecretKey::from_bytes(&bytes)
    }

    /// The public half, published in the registry for sealed delivery.
    pub fn sealing_public_key(&self) -> Result<crate::seal::SealingPublicKey> {
        Ok(self.sealing_secret_key()?.public_key().clone())
    }

    /// An *unencrypted* mailbox with the same schema, only for benchmarks that measure what
    /// encryption costs. Never used for real mail.
    #[doc(hidden)]
    pub fn create_plaintext_for_benchmark(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        // The page size of new encrypted files, and every connection pragma of an encrypted
        // file: only the encryption differs.
        conn.execute_batch(&format!(
            "PRAGMA page_size = {};",
            crate::key::MAILBOX_PAGE_SIZE
        ))?;
        conn.execute_batch(CONNECTION_PRAGMAS)?;
        let mut mailbox = Self::finish_open(conn, path)?;
        let tx = mailbox.conn.transaction()?;
        for (name, special_use) in folders::DEFAULT_FOLDERS {
            folders::insert_folder(&tx, name, *special_use)?;
        }
        tx.commit()?;
        Ok(mailbox)
    }

    /// A bare keyed connection to a mailbox file, bypassing every invariant of the store: for
    /// tests and inspection tools only.
    #[doc(hidden)]
    pub fn raw_connection(path: &Path, key: &MailboxKey) -> Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
        Ok(crate::key::open_keyed(path, flags, key, |_| Ok(()))?)
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
        Self::open_file(path, key)
    }

    /// Open (or, for a new path, create) the file keyed with `key`, then migrate it.
    fn open_file(path: &Path, key: &MailboxKey) -> Result<Self> {
        let corrupt = |e: rusqlite::Error| Error::Corrupt {
            path: path.into(),
            reason: e.to_string(),
        };
        // CREATE lets key rotation ATTACH a new file; an existing file was checked by `open`.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        // The first read decrypts page 1: this is where a wrong key or a damaged file shows.
        let conn = crate::key::open_keyed(path, flags, key, |_| Ok(())).map_err(corrupt)?;
        conn.execute_batch(CONNECTION_PRAGMAS).map_err(corrupt)?;
        Self::finish_open(conn, path)
    }

    fn finish_open(mut conn: Connection, path: &Path) -> Result<Self> {
        // Before migrating: schema version 3 back-fills sort keys with these functions.
        sort::register_functions(&conn)?;
        schema::migrate(&mut conn)?;
        search::register_functions(&conn)?;
        crate::query::register_functions(&conn)?;
        // Query shapes of IMAP and the query layer together stay well under this.
        conn.set_prepared_statement_cache_capacity(128);
        // Without the query planner stability guarantee, SQLite marks a statement whose plan
        // could depend on a bound value (any `column = ?` qualifies) to be compiled again when
        // the value changes, and rusqlite clears the bindings of every statement it returns to
        // its cache: every cached statement was parsed and planned anew on each use, a sixth
        // of an IMAP server's CPU time under load. Our plans never depend on bound values (no
        // ANALYZE statistics, no LIKE patterns to optimize).
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        Ok(Self {
            conn,
            path: path.into(),
            quota_limit: None,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            thread_cache: Default::default(),
            inline_index_threshold: fts_index::INLINE_INDEX_THRESHOLD,
            backlog_grew_at: None,
        })
    }

    /// Apply the account's quota (bytes of file, WAL included) to later writes.
    pub fn set_quota_limit(&mut self, limit: Option<u64>) {
        self.quota_limit = limit;
    }

    pub fn set_max_message_size(&mut self, limit: u64) {
        self.max_message_size = limit;
    }

    /// The largest message an append accepts, in bytes.
    pub fn max_message_size(&self) -> u64 {
        self.max_message_size
    }

    /// Bytes this mailbox occupies on disk: the database file plus its WAL.
    pub fn used_bytes(&self) -> Result<u64> {
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        Ok(size(&self.path) + size(&wal_path(&self.path)))
    }

    /// Refuse a write of `needed` more bytes that would exceed the quota.
    fn check_quota(&self, needed: u64) -> Result<()> {
        let Some(limit) = self.quota_limit else {
            return Ok(());
        };
        let used = self.used_bytes()?;
        if used.saturating_add(needed) > limit {
            return Err(Error::QuotaExceeded {
                used,
                limit,
                needed,
            });
        }
        Ok(())
    }

    /// Write the WAL back into the main file (PASSIVE: never blocks readers).
    pub fn checkpoint(&self) -> Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// A small named value stored inside the encrypted file (e.g. the sealing secret key).
    pub(crate) fn setting(&self, name: &str) -> Result<Option<Vec<u8>>> {
        use rusqlite::OptionalExtension;
        Ok(self
            .conn
            .query_row("SELECT value FROM settings WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?)
    }

    #[allow(dead_code)] // used by the sealing module, which lands separately
    pub(crate) fn set_setting(&self, name: &str, value: &[u8]) -> Result<()> {
        self.conn.execute(
            "INSERT INTO settings (name, value) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            rusqlite::params![name, value],
        )?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying connection, for the query layer and the backup module inside this crate.
    #[allow(dead_code)] // used by the query layer, which lands separately
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    #[allow(dead_code)] // used by the query layer, which lands separately
    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

#[cfg(test)]
mod page_size_tests {
    use super::*;
    use crate::store::{AppendOptions, SearchKey};

    fn page_size(mailbox: &Mailbox) -> u32 {
        crate::key::page_size(mailbox.conn(), mailbox.path()).unwrap()
    }

    fn message(word: &str) -> Vec<u8> {
        format!("Subject: {word}\r\nFrom: a@example.com\r\n\r\nbody with {word} inside\r\n")
            .into_bytes()
    }

    #[test]
    fn new_files_get_the_current_page_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.sqlite");
        let key = MailboxKey::generate();
        drop(Mailbox::create(&path, &key).unwrap());
        let mailbox = Mailbox::open(&path, &key).unwrap();
        assert_eq!(page_size(&mailbox), crate::key::MAILBOX_PAGE_SIZE);
    }

    /// A file with the page size of older versions opens, searches and takes mail as before,
    /// and rotating its key rewrites it with the current page size, contents intact.
    #[test]
    fn legacy_files_keep_working_and_rotation_moves_them_to_the_current_page_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("legacy.sqlite");
        let key = MailboxKey::generate();
        let mut mailbox = Mailbox::create_with_legacy_page_size(&path, &key).unwrap();
        assert_eq!(page_size(&mailbox), crate::key::LEGACY_PAGE_SIZE);
        mailbox
            .append("INBOX", &message("zanzibar"), &AppendOptions::default())
            .unwrap();
        drop(mailbox);

        let mut mailbox = Mailbox::open(&path, &key).unwrap();
        assert_eq!(page_size(&mailbox), crate::key::LEGACY_PAGE_SIZE);
        mailbox
            .append("INBOX", &message("quokka"), &AppendOptions::default())
            .unwrap();
        let text = |mailbox: &Mailbox, word: &str| {
            mailbox
                .search("INBOX", &SearchKey::Text(word.into()))
                .unwrap()
        };
        assert_eq!(text(&mailbox, "zanzibar"), vec![1]);
        assert_eq!(text(&mailbox, "quokka"), vec![2]);
        // A wrong key is still refused, after trying each page size.
        assert!(matches!(
            Mailbox::open(&path, &MailboxKey::generate()),
            Err(Error::Corrupt { .. })
        ));

        let new_key = MailboxKey::generate();
        let rotated = mailbox.rotate_key(&new_key, |_| Ok(())).unwrap();
        assert_eq!(page_size(&rotated), crate::key::MAILBOX_PAGE_SIZE);
        drop(rotated);
        let reopened = Mailbox::open(&path, &new_key).unwrap();
        assert_eq!(page_size(&reopened), crate::key::MAILBOX_PAGE_SIZE);
        assert_eq!(text(&reopened, "zanzibar"), vec![1]);
        assert_eq!(reopened.fetch_raw("INBOX", 2).unwrap(), message("quokka"));
    }
}

#[cfg(test)]
mod wal_tests {
    use super::*;
    use crate::store::AppendOptions;

    /// A message with an incompressible attachment of `bytes` random bytes.
    fn large_message(seed: u64, bytes: usize) -> Vec<u8> {
        use base64ct::{Base64, Encoding};
        let mut random = vec![0u8; bytes];
        getrandom::fill(&mut random).unwrap();
        let encoded = Base64::encode_string(&random);
        let mut raw = format!(
            "Subject: large {seed}\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
             Content-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n\
             Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        );
        for line in encoded.as_bytes().chunks(76) {
            raw.push_str(std::str::from_utf8(line).unwrap());
            raw.push_str("\r\n");
        }
        raw.push_str("--b--\r\n");
        raw.into_bytes()
    }

    /// A transaction larger than the WAL limit grows the WAL file; once the WAL is written back
    /// and restarted, the file shrinks to the limit, so quota (which counts it) is not charged
    /// for it forever.
    #[test]
    fn a_large_transaction_leaves_the_wal_no_larger_than_the_limit() {
        const LIMIT: u64 = 16 << 20;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sqlite");
        let mut mailbox = Mailbox::create(&path, &MailboxKey::generate()).unwrap();
        let messages: Vec<Vec<u8>> = (0..8).map(|i| large_message(i, 4 << 20)).collect();
        let batch: Vec<(&[u8], AppendOptions)> = messages
            .iter()
            .map(|raw| (raw.as_slice(), AppendOptions::default()))
            .collect();
        mailbox.append_many("INBOX", &batch).unwrap();
        let wal = || std::fs::metadata(wal_path(&path)).unwrap().len();
        assert!(
            wal() > LIMIT,
            "the transaction went through the WAL: {}",
            wal()
        );
        mailbox.checkpoint().unwrap();
        mailbox
            .append(
                "INBOX",
                &large_message(9, 1 << 10),
                &AppendOptions::default(),
            )
            .unwrap();
        assert!(
            wal() <= LIMIT,
            "the WAL was cut back when it restarted: {}",
            wal()
        );
    }
}

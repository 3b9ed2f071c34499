//! Data-key rotation: re-encrypt a mailbox file under a new DEK, crash-safely.
//!
//! The new file is built beside the old one, verified, then renamed over it. The caller records
//! the new key as the account's *pending* key before rotating and promotes it afterwards, so at
//! every instant one of the two keys the registry holds opens the file.

use super::{Mailbox, SCHEMA_VERSION, sibling, wal_path};
use crate::error::{Error, Result};
use crate::key::MailboxKey;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

/// The points between rotation steps; a test hook may fail at any of them to simulate a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationStep {
    /// The WAL has been folded into the main file.
    Checkpointed,
    /// A copy keyed with the new key exists beside the file.
    Exported,
    /// The copy passed the integrity check and has the same rows.
    Verified,
    /// The copy replaced the original.
    Swapped,
}

/// Which of the keys offered to [`Mailbox::open_with_keys`] opened the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUsed {
    Current,
    Pending,
}

impl Mailbox {
    /// Open with the current key, or else with a pending key left by an interrupted rotation.
    pub fn open_with_keys(
        path: &Path,
        current: &MailboxKey,
        pending: Option<&MailboxKey>,
    ) -> Result<(Mailbox, KeyUsed)> {
        match (Mailbox::open(path, current), pending) {
            (Ok(mailbox), _) => Ok((mailbox, KeyUsed::Current)),
            (Err(Error::Corrupt { .. }), Some(pending)) => {
                Ok((Mailbox::open(path, pending)?, KeyUsed::Pending))
            }
            (Err(e), _) => Err(e),
        }
    }

    /// Re-encrypt this mailbox under `new_key` and return it reopened. The caller must hold the
    /// only open connection to the file. `hook` runs after each step (tests inject failures).
    pub fn rotate_key(
        self,
        new_key: &MailboxKey,
        mut hook: impl FnMut(RotationStep) -> Result<()>,
    ) -> Result<Mailbox> {
        let path = self.path.clone();
        let (quota_limit, max_message_size) = (self.quota_limit, self.max_message_size);
        let rotating = sibling(&path, ".rotating");
        remove_database_files(&rotating)?;

        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        hook(RotationStep::Checkpointed)?;

        let key_spec = zeroize::Zeroizing::new(format!("x'{}'", hex::encode(new_key.as_bytes())));
        self.conn.execute(
            "ATTACH DATABASE ?1 AS rotated KEY ?2",
            rusqlite::params![rotating.to_string_lossy(), key_spec.as_str()],
        )?;
        self.conn
            .execute_batch(&crate::key::cipher_settings("rotated"))?;
        let exported = self
            .conn
            .query_row("SELECT sqlcipher_export('rotated')", [], |_| Ok(()))
            .and_then(|_| {
                self.conn
                    .execute_batch(&format!("PRAGMA rotated.user_version = {SCHEMA_VERSION}"))
            });
        self.conn.execute_batch("DETACH DATABASE rotated")?;
        exported?;
        hook(RotationStep::Exported)?;

        verify_copy(&self.conn, &rotating, new_key)?;
        hook(RotationStep::Verified)?;

        drop(self); // closes the connection; the WAL was truncated above
        std::fs::remove_file(wal_path(&path)).or_else(ignore_missing)?;
        std::fs::remove_file(sibling(&path, "-shm")).or_else(ignore_missing)?;
        std::fs::File::open(&rotating)?.sync_all()?;
        std::fs::rename(&rotating, &path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        hook(RotationStep::Swapped)?;

        let mut mailbox = Mailbox::open(&path, new_key)?;
        mailbox.quota_limit = quota_limit;
        mailbox.max_message_size = max_message_size;
        Ok(mailbox)
    }
}

/// The copy opens with the new key, passes `integrity_check`, and holds as many messages,
/// bodies and attachments as the original.
fn verify_copy(original: &Connection, copy: &Path, key: &MailboxKey) -> Result<()> {
    let corrupt = |reason: String| Error::Corrupt {
        path: copy.into(),
        reason,
    };
    let conn = Connection::open_with_flags(copy, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.execute_batch("PRAGMA cipher_log_level = NONE;")?;
    conn.execute_batch(&key.sqlcipher_key_pragma())?;
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| corrupt(e.to_string()))?;
    if check != "ok" {
        return Err(corrupt(check));
    }
    const COUNT: &str = "SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM bodies),
        (SELECT count(*) FROM attachments), (SELECT count(*) FROM folders)";
    let counts = |c: &Connection| {
        c.query_row(COUNT, [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
    };
    if counts(original)? != counts(&conn)? {
        return Err(corrupt("rotated copy does not hold the same rows".into()));
    }
    Ok(())
}

fn remove_database_files(path: &Path) -> Result<()> {
    for file in [path.to_path_buf(), wal_path(path), sibling(path, "-shm")] {
        std::fs::remove_file(file).or_else(ignore_missing)?;
    }
    Ok(())
}

fn ignore_missing(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

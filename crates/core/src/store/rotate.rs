//! Data-key rotation: re-encrypt a mailbox file under a new DEK, crash-safely.
//!
//! The new file is built beside the old one, verified, then renamed over it. The caller records
//! the new key as the account's *pending* key before rotating and promotes it afterwards, so at
//! every instant one of the two keys the registry holds opens the file.

use super::{Mailbox, sibling, wal_path};
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

    /// Re-encrypt this mailbox under `new_key` and return it reopened. This must be the only
    /// open connection to the file: one elsewhere (another session, a running server) would
    /// keep writing to the file swapped out, so it is refused with [`Error::MailboxInUse`].
    /// `hook` runs after each step (tests inject failures).
    pub fn rotate_key(
        self,
        new_key: &MailboxKey,
        mut hook: impl FnMut(RotationStep) -> Result<()>,
    ) -> Result<Mailbox> {
        let path = self.path.clone();
        let (quota_limit, max_message_size) = (self.quota_limit, self.max_message_size);
        let rotating = sibling(&path, ".rotating");
        remove_database_files(&rotating)?;
        take_exclusive_lock(&self.conn, &path)?;

        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        hook(RotationStep::Checkpointed)?;

        export_encrypted_copy(&self.conn, &rotating, new_key)?;
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

/// Switch `conn` to exclusive locking and take the file's exclusive lock (an empty write
/// transaction does, in WAL mode). Every other connection to a WAL database keeps a shared lock
/// on the file while it is open, idle or not, so this fails at once when there is one; once
/// held, no connection can open the file until `conn` closes.
fn take_exclusive_lock(conn: &Connection, path: &Path) -> Result<()> {
    conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE;")?;
    match conn.execute_batch("BEGIN IMMEDIATE; COMMIT;") {
        Ok(()) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(failure, _))
            if matches!(
                failure.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            let _ = conn.execute_batch("ROLLBACK; PRAGMA locking_mode = NORMAL;");
            let name = path
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_default();
            Err(Error::MailboxInUse(name))
        }
        Err(error) => Err(error.into()),
    }
}

/// Write a copy of the database open on `conn` to `destination` (which must not exist), keyed
/// with `key` and the mailbox cipher settings, schema version included. It runs in one read
/// transaction, so the copy is a single point in time even while other connections write.
/// (`VACUUM INTO` would be simpler, but its output gets SQLCipher's default page size and
/// HMAC, not the settings of the source, so it would not open like a mailbox file.)
pub(crate) fn export_encrypted_copy(
    conn: &Connection,
    destination: &Path,
    key: &MailboxKey,
) -> Result<()> {
    export_encrypted_copy_if(conn, destination, key, |_| Ok(true)).map(|_| ())
}

/// [`export_encrypted_copy`], after `wanted` has looked at the database in the same read
/// transaction (so at the same point in time) and agreed; `Ok(false)` when it did not and
/// nothing was copied (the destination may then exist, empty).
pub(crate) fn export_encrypted_copy_if(
    conn: &Connection,
    destination: &Path,
    key: &MailboxKey,
    wanted: impl FnOnce(&Connection) -> Result<bool>,
) -> Result<bool> {
    let key_spec = zeroize::Zeroizing::new(format!("x'{}'", hex::encode(key.as_bytes())));
    conn.execute(
        "ATTACH DATABASE ?1 AS export_copy KEY ?2",
        rusqlite::params![destination.to_string_lossy(), key_spec.as_str()],
    )?;
    let exported = (|| -> Result<bool> {
        conn.execute_batch(&crate::key::cipher_settings("export_copy"))?;
        // The copy is a scratch file until its caller has verified and fsynced it (rotation
        // and backup both do): no rollback journal and no syncs while it is written, and a
        // larger cache so pages reach the file in long runs.
        conn.execute_batch(
            "PRAGMA export_copy.journal_mode = OFF;
             PRAGMA export_copy.synchronous = OFF;
             PRAGMA export_copy.cache_size = -16384;",
        )?;
        conn.execute_batch("BEGIN")?;
        let copied = wanted(conn).and_then(|wanted| {
            if !wanted {
                return Ok(false);
            }
            conn.query_row("SELECT sqlcipher_export('export_copy')", [], |_| Ok(()))?;
            let version: i64 = conn.query_row("PRAGMA main.user_version", [], |r| r.get(0))?;
            conn.execute_batch(&format!("PRAGMA export_copy.user_version = {version}"))?;
            Ok(true)
        });
        match copied {
            Ok(copied) => {
                conn.execute_batch("COMMIT")?;
                Ok(copied)
            }
            Err(error) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(error)
            }
        }
    })();
    conn.execute_batch("DETACH DATABASE export_copy")?;
    exported
}

/// The copy opens with the new key, passes `integrity_check`, and holds as many messages,
/// bodies and attachments as the original.
fn verify_copy(original: &Connection, copy: &Path, key: &MailboxKey) -> Result<()> {
    let (_conn, copied) = open_verified(copy, key)?;
    if row_counts(original)? != copied {
        return Err(Error::Corrupt {
            path: copy.into(),
            reason: "rotated copy does not hold the same rows".into(),
        });
    }
    Ok(())
}

/// How many rows the tables that hold mail have: a cheap check that a copy is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RowCounts {
    pub messages: u64,
    pub bodies: u64,
    pub attachments: u64,
    pub folders: u64,
}

pub(crate) fn row_counts(conn: &Connection) -> Result<RowCounts> {
    const COUNT: &str = "SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM bodies),
        (SELECT count(*) FROM attachments), (SELECT count(*) FROM folders)";
    Ok(conn.query_row(COUNT, [], |r| {
        Ok(RowCounts {
            messages: r.get(0)?,
            bodies: r.get(1)?,
            attachments: r.get(2)?,
            folders: r.get(3)?,
        })
    })?)
}

/// Open a copy of a mailbox file (a rotated file, a backup snapshot, a downloaded backup)
/// read-only with `key`, check `PRAGMA integrity_check`, and count its rows. A wrong key or a
/// damaged file gives [`Error::Corrupt`].
pub(crate) fn open_verified(path: &Path, key: &MailboxKey) -> Result<(Connection, RowCounts)> {
    let corrupt = |reason: String| Error::Corrupt {
        path: path.into(),
        reason,
    };
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.execute_batch("PRAGMA cipher_log_level = NONE;")?;
    conn.execute_batch(&key.sqlcipher_key_pragma())?;
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| corrupt(e.to_string()))?;
    if check != "ok" {
        return Err(corrupt(check));
    }
    let counts = row_counts(&conn).map_err(|e| corrupt(e.to_string()))?;
    Ok((conn, counts))
}

fn remove_database_files(path: &Path) -> Result<()> {
    for file in [path.to_path_buf(), wal_path(path), sibling(path, "-shm")] {
        std::fs::remove_file(file).or_else(ignore_missing)?;
    }
    Ok(())
}

pub(crate) fn ignore_missing(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AppendOptions;

    /// Another connection has the mailbox open (a server's idle session): the rotation must
    /// refuse before touching anything, the other connection keeps working, and once it is
    /// gone the rotation goes through.
    #[test]
    fn rotation_refuses_while_another_connection_has_the_file_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sqlite");
        let key = MailboxKey::generate();
        let mut mailbox = Mailbox::create(&path, &key).unwrap();
        mailbox
            .append(
                "INBOX",
                b"Subject: one\r\n\r\none\r\n",
                &AppendOptions::default(),
            )
            .unwrap();
        let mut other = Mailbox::open(&path, &key).unwrap();

        let new_key = MailboxKey::generate();
        let mut steps = Vec::new();
        let refused = mailbox.rotate_key(&new_key, |step| {
            steps.push(step);
            Ok(())
        });
        assert!(
            matches!(refused, Err(Error::MailboxInUse(_))),
            "{refused:?}"
        );
        assert!(steps.is_empty(), "a refused rotation must not start");
        assert!(!sibling(&path, ".rotating").exists());
        other
            .append(
                "INBOX",
                b"Subject: two\r\n\r\ntwo\r\n",
                &AppendOptions::default(),
            )
            .unwrap();
        assert_eq!(row_counts(other.conn()).unwrap().messages, 2);
        drop(other);

        let mailbox = Mailbox::open(&path, &key).unwrap();
        let rotated = mailbox.rotate_key(&new_key, |_| Ok(())).unwrap();
        assert_eq!(row_counts(rotated.conn()).unwrap().messages, 2);
        drop(rotated);
        assert!(matches!(
            Mailbox::open(&path, &key),
            Err(Error::Corrupt { .. })
        ));
    }
}

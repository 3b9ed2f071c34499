//! Local file work shared by backup and restore: the encrypted snapshot, its checks and
//! fingerprints, free space, durable writes and the per-mailbox lock.

use crate::error::{Error, Result};
use crate::key::MailboxKey;
use crate::store::{Mailbox, RowCounts, export_encrypted_copy_if, open_verified};
use hmac::{Hmac, Mac};
use rusqlite::Connection;
use rusqlite::types::ValueRef;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// First bytes of every *unencrypted* SQLite file. An encrypted SQLCipher file starts with a
/// random salt instead, so a snapshot starting with this would be plaintext on disk.
const PLAINTEXT_SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// Domain separation for the content MAC key, derived from the mailbox key.
const CONTENT_MAC_LABEL: &[u8] = b"sealmail/backup-content-mac/v1";
/// Read size for hashing and copying: large enough for sequential throughput, small in RSS.
pub(crate) const IO_BUFFER: usize = 1 << 20;

/// A verified snapshot file and what was learned checking it.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub size: u64,
    pub sha256: String,
    pub schema_version: i64,
    pub rows: RowCounts,
    /// The copy's content MAC, when it was asked for.
    pub content_mac: Option<String>,
}

/// Fold the WAL into the file (PASSIVE: readers are not blocked), then, in one read
/// transaction: unless this is the first backup, compute the content MAC of the mailbox and
/// stop if it equals `previous_mac` (nothing changed since the last backup); else write an
/// encrypted copy keyed with the mailbox's own `key` to `destination`. Writers on other
/// connections are not blocked. Returns `None` when nothing changed, else the copy's MAC if it
/// was computed here (for a first backup it is computed from the copy while it is verified,
/// which saves a pass over the whole mailbox). A copy that is not encrypted is deleted.
pub(crate) fn write_snapshot_if_changed(
    mailbox: &Mailbox,
    key: &MailboxKey,
    destination: &Path,
    previous_mac: Option<&str>,
) -> Result<Option<Option<String>>> {
    mailbox.checkpoint()?;
    let mut mac = None;
    let written = export_encrypted_copy_if(mailbox.conn(), destination, key, |conn| {
        let Some(previous) = previous_mac else {
            return Ok(true);
        };
        let current = content_mac(conn, key)?;
        let changed = previous != current;
        mac = Some(current);
        Ok(changed)
    })?;
    if !written {
        return Ok(None);
    }
    let mut head = [0u8; 16];
    let read = File::open(destination)?.read(&mut head)?;
    if read < head.len() || &head == PLAINTEXT_SQLITE_MAGIC {
        std::fs::remove_file(destination)?;
        return Err(Error::Crypto(
            "the snapshot was not encrypted; it was deleted",
        ));
    }
    Ok(Some(mac))
}

/// Open `path` with `key`, run `integrity_check`, count rows, compute the content MAC if
/// `want_mac`, and hash the encrypted bytes. The hash is computed on a second thread while
/// SQLite checks the file: both only read it, and the two passes then cost one.
pub(crate) fn verify_snapshot(path: &Path, key: &MailboxKey, want_mac: bool) -> Result<Snapshot> {
    let (checked, hashed) = std::thread::scope(|scope| {
        let hashing = scope.spawn(|| sha256_file(path));
        let checked = (|| {
            let (conn, rows) = open_verified(path, key)?;
            let schema_version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            let mac = want_mac.then(|| content_mac(&conn, key)).transpose()?;
            Ok::<_, Error>((rows, schema_version, mac))
        })();
        let hashed = hashing
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (checked, hashed)
    });
    let (rows, schema_version, content_mac) = checked?;
    let (sha256, size) = hashed?;
    Ok(Snapshot {
        size,
        sha256,
        schema_version,
        rows,
        content_mac,
    })
}

/// HMAC-SHA256 over every row of every ordinary table of `main` (the FTS index's shadow
/// tables included), in table-name and storage order. Unchanged content gives the same MAC
/// although every snapshot's encrypted bytes differ, and a copy has the MAC of its source.
/// Keyed, so the manifest reveals nothing about the plaintext.
pub(crate) fn content_mac(conn: &Connection, key: &MailboxKey) -> Result<String> {
    let mut derive =
        <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()).expect("HMAC accepts any key length");
    derive.update(CONTENT_MAC_LABEL);
    let mut mac_key = zeroize::Zeroizing::new([0u8; 32]);
    mac_key.copy_from_slice(&derive.finalize().into_bytes());
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(&mac_key[..]).expect("HMAC accepts any key length");

    let user_version: i64 = conn.query_row("PRAGMA main.user_version", [], |r| r.get(0))?;
    mac.update(&user_version.to_be_bytes());
    let tables: Vec<String> = conn
        .prepare(
            "SELECT name FROM main.sqlite_master WHERE type = 'table'
             AND sql NOT LIKE 'CREATE VIRTUAL TABLE%' ORDER BY name",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for table in tables {
        update_with_len(&mut mac, table.as_bytes());
        let mut statement = conn.prepare(&format!(
            "SELECT * FROM main.\"{}\"",
            table.replace('"', "\"\"")
        ))?;
        let columns = statement.column_count();
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            mac.update(b"R");
            for index in 0..columns {
                match row.get_ref(index)? {
                    ValueRef::Null => mac.update(b"N"),
                    ValueRef::Integer(value) => {
                        mac.update(b"I");
                        mac.update(&value.to_be_bytes());
                    }
                    ValueRef::Real(value) => {
                        mac.update(b"F");
                        mac.update(&value.to_bits().to_be_bytes());
                    }
                    ValueRef::Text(text) => {
                        mac.update(b"T");
                        update_with_len(&mut mac, text);
                    }
                    ValueRef::Blob(blob) => {
                        mac.update(b"B");
                        update_with_len(&mut mac, blob);
                    }
                }
            }
        }
    }
    Ok(hex::encode(mac.finalize().into_bytes()))
}

fn update_with_len(mac: &mut Hmac<Sha256>, bytes: &[u8]) {
    mac.update(&(bytes.len() as u64).to_be_bytes());
    mac.update(bytes);
}

/// SHA-256 (lowercase hex) and length of a file, read in bounded chunks.
pub(crate) fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; IO_BUFFER];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// Refuse to start when `dir`'s file system has less than `needed` bytes free (plus a small
/// margin), so a full disk gives a clear error before anything is written.
pub(crate) fn ensure_free_space(dir: &Path, needed: u64) -> Result<()> {
    const MARGIN: u64 = 1 << 20;
    let available = available_space(dir)?;
    let needed = needed.saturating_add(MARGIN);
    if available < needed {
        return Err(Error::InsufficientSpace {
            path: dir.into(),
            needed,
            available,
        });
    }
    Ok(())
}

#[cfg(unix)]
fn available_space(dir: &Path) -> Result<u64> {
    let stats = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

#[cfg(not(unix))]
fn available_space(_dir: &Path) -> Result<u64> {
    Ok(u64::MAX)
}

/// Delete the files in `dir` whose names start with `prefix` (leftovers of a crash).
pub(crate) fn remove_files_with_prefix(dir: &Path, prefix: &str) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            std::fs::remove_file(entry.path()).or_else(crate::store::ignore_missing)?;
        }
    }
    Ok(())
}

/// Flush a file's data and metadata to disk.
pub(crate) fn sync_file(path: &Path) -> Result<()> {
    File::open(path)?.sync_all()?;
    Ok(())
}

/// Flush a directory entry change (create, rename, unlink) to disk.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    let _ = dir;
    Ok(())
}

/// Write `bytes` to `path` durably: a temporary sibling, fsync, rename, fsync of the directory.
pub(crate) fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let temporary = crate::store::sibling(path, ".tmp");
    std::fs::write(&temporary, bytes)?;
    sync_file(&temporary)?;
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Held while a backup or restore of one mailbox runs: an exclusive advisory lock on a file
/// beside the mailbox, so two backups (threads or processes) never interleave.
#[derive(Debug)]
pub(crate) struct MailboxLock {
    _file: File,
}

pub(crate) fn lock_mailbox(mailbox_path: &Path, mailbox_name: &str) -> Result<MailboxLock> {
    if let Some(dir) = mailbox_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(crate::store::sibling(mailbox_path, ".backup-lock"))?;
    match file.try_lock() {
        Ok(()) => Ok(MailboxLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(Error::BackupInProgress(mailbox_name.to_owned()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_check_refuses_what_does_not_fit() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ensure_free_space(dir.path(), 1).is_ok());
        match ensure_free_space(dir.path(), u64::MAX / 2) {
            Err(Error::InsufficientSpace {
                needed, available, ..
            }) => assert!(available < needed),
            other => panic!("expected InsufficientSpace, got {other:?}"),
        }
    }

    #[test]
    fn a_second_backup_of_one_mailbox_is_refused_while_the_first_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mailbox = dir.path().join("ab/abc.sqlite");
        let first = lock_mailbox(&mailbox, "abc").unwrap();
        assert!(matches!(
            lock_mailbox(&mailbox, "abc"),
            Err(Error::BackupInProgress(_))
        ));
        drop(first);
        assert!(lock_mailbox(&mailbox, "abc").is_ok());
    }
}

//! Local file work shared by backup and restore: the encrypted snapshot, its checks and
//! fingerprints, free space, durable writes and the per-mailbox lock.

use crate::error::{Error, Result};
use crate::key::MailboxKey;
use crate::store::{Mailbox, RowCounts, row_counts};
use hmac::{Hmac, Mac};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
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
/// stop if it equals `previous_mac` (nothing changed since the last backup); else copy the
/// database page by page to `destination` ([`copy_pages_if`]). Writers on other connections
/// are not blocked. Returns `None` when nothing changed, else the copy's MAC if it was
/// computed here (for a first backup it is computed from the copy while it is verified,
/// which saves a pass over the whole mailbox). A copy that is not encrypted is deleted.
pub(crate) fn write_snapshot_if_changed(
    mailbox: &Mailbox,
    key: &MailboxKey,
    destination: &Path,
    previous_mac: Option<&str>,
) -> Result<Option<Option<String>>> {
    mailbox.checkpoint()?;
    let mut mac = None;
    let written = copy_pages_if(mailbox.conn(), destination, key, |conn| {
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

/// Copy the database open on `source` to `destination` (a new file) with SQLite's online
/// backup API, after `wanted` has looked at the database in the same read transaction (so the
/// copy is of the same point in time) and agreed; `Ok(false)` when it did not.
///
/// The destination is keyed with the mailbox's own key and cipher settings, so SQLCipher
/// decrypts each page read from the source and encrypts it again (fresh IVs) on its way into
/// the copy: the copy is never plaintext, and it has the source's page size, HMAC settings,
/// schema version and page layout. This physical copy in page order costs less than
/// `sqlcipher_export`, which rebuilds every table and index row by row (3.6 against 4.5
/// CPU-seconds for 1 GiB of large messages in `benches/backup.rs`; the gap grows with the
/// number of rows and index entries).
pub(crate) fn copy_pages_if(
    source: &Connection,
    destination: &Path,
    key: &MailboxKey,
    wanted: impl FnOnce(&Connection) -> Result<bool>,
) -> Result<bool> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut copy = Connection::open_with_flags(destination, flags)?;
    copy.execute_batch("PRAGMA cipher_log_level = NONE;")?;
    copy.execute_batch(&key.sqlcipher_key_pragma())?;
    // A scratch file until the caller has verified and fsynced it: no journal, no syncs.
    copy.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")?;
    source.execute_batch("BEGIN")?;
    let copied = (|| {
        if !wanted(source)? {
            return Ok(false);
        }
        // One step for every page: the backup then runs inside the read transaction opened
        // above and never restarts because another connection wrote meanwhile.
        let backup = Backup::new(source, &mut copy)?;
        match backup.step(-1)? {
            StepResult::Done => {
                drop(backup);
                // Page 1 came over as it is, marking the copy a WAL database: turn it back
                // into a plain file, so opening it (read-only, to verify it; or after a
                // download) leaves no `-wal`/`-shm` files beside it.
                let mode: String =
                    copy.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
                if !mode.eq_ignore_ascii_case("delete") {
                    return Err(Error::Corrupt {
                        path: destination.into(),
                        reason: format!("snapshot copy stayed in journal mode {mode}"),
                    });
                }
                Ok(true)
            }
            // Busy or Locked: the destination is our own new file, so neither should happen.
            other => Err(Error::Corrupt {
                path: destination.into(),
                reason: format!("snapshot copy stopped early: {other:?}"),
            }),
        }
    })();
    match copied {
        Ok(copied) => {
            source.execute_batch("COMMIT")?;
            Ok(copied)
        }
        Err(error) => {
            let _ = source.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

/// Open `path` with `key`, check it, count rows, compute the content MAC if `want_mac`, and
/// hash the encrypted bytes. The hash is computed on a second thread while SQLite checks the
/// file: both only read it, and the two passes then cost one.
///
/// The check is `PRAGMA quick_check`, not `integrity_check`. The copy is a page-for-page image
/// of the live database taken in one read transaction, so whether its indexes agree with
/// their tables (the part `integrity_check` adds, and its costly part) is a property of the
/// live file the copy cannot change. What copying can get wrong is what `quick_check` sees:
/// it reads every page of every b-tree and overflow chain, so each page must decrypt and pass
/// its HMAC under the key (a wrong key, wrong cipher settings or a damaged page fails), and it
/// checks the b-tree structure and that no page is missing or used twice. A restore still runs
/// the full `integrity_check` before a backup replaces a mailbox.
pub(crate) fn verify_snapshot(path: &Path, key: &MailboxKey, want_mac: bool) -> Result<Snapshot> {
    let (checked, hashed) = std::thread::scope(|scope| {
        let hashing = scope.spawn(|| sha256_file(path));
        let checked = (|| {
            let conn = open_quick_checked(path, key)?;
            let rows = row_counts(&conn)?;
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

/// Open a fresh snapshot read-only with `key` and run `PRAGMA quick_check` (see
/// [`verify_snapshot`] for why that suffices here). A wrong key or a damaged copy gives
/// [`Error::Corrupt`].
fn open_quick_checked(path: &Path, key: &MailboxKey) -> Result<Connection> {
    let corrupt = |reason: String| Error::Corrupt {
        path: path.into(),
        reason,
    };
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.execute_batch("PRAGMA cipher_log_level = NONE;")?;
    conn.execute_batch(&key.sqlcipher_key_pragma())?;
    // Pages are read once each, in order: a large cache only costs memory. Setting it reads
    // the schema, so this is where a wrong key shows first.
    conn.execute_batch("PRAGMA cache_size = -2048;")
        .map_err(|e| corrupt(e.to_string()))?;
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| corrupt(e.to_string()))?;
    if check != "ok" {
        return Err(corrupt(check));
    }
    Ok(conn)
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
    use crate::store::AppendOptions;

    fn mailbox_with_mail(dir: &Path, key: &MailboxKey) -> Mailbox {
        let mut mailbox = Mailbox::create(&dir.join("live.sqlite"), key).unwrap();
        for index in 0..20 {
            let raw = format!(
                "Subject: copy {index}\r\n\r\nplainMARKERq9 {}\r\n",
                "x".repeat(index * 3000)
            );
            mailbox
                .append("INBOX", raw.as_bytes(), &AppendOptions::default())
                .unwrap();
        }
        mailbox
    }

    #[test]
    fn page_copy_is_encrypted_complete_and_leaves_no_side_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = MailboxKey::generate();
        let mailbox = mailbox_with_mail(dir.path(), &key);
        let staging = dir.path().join("staging");
        std::fs::create_dir(&staging).unwrap();
        let copy = staging.join("copy.sqlite");

        let written = write_snapshot_if_changed(&mailbox, &key, &copy, None).unwrap();
        assert_eq!(written, Some(None), "a first backup computes no live MAC");
        let checked = verify_snapshot(&copy, &key, true).unwrap();
        assert_eq!(checked.rows, row_counts(mailbox.conn()).unwrap());
        assert_eq!(checked.rows.messages, 20);
        assert_eq!(checked.schema_version, crate::store::SCHEMA_VERSION);
        assert_eq!(
            checked.content_mac.as_deref(),
            Some(content_mac(mailbox.conn(), &key).unwrap().as_str()),
            "a copy has the MAC of its source"
        );
        let bytes = std::fs::read(&copy).unwrap();
        assert_eq!(checked.size, bytes.len() as u64);
        assert_eq!(checked.sha256, hex::encode(Sha256::digest(&bytes)));
        assert!(!bytes.windows(13).any(|w| w == b"plainMARKERq9"));
        // Verifying opened the copy: it must not have left a WAL or shared-memory file.
        let names: Vec<String> = std::fs::read_dir(&staging)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["copy.sqlite".to_owned()]);
        // The copy is a mailbox: it opens as one with the same key, and with no other.
        assert!(matches!(
            verify_snapshot(&copy, &MailboxKey::generate(), false),
            Err(Error::Corrupt { .. })
        ));
        let reopened = Mailbox::open(&copy, &key).unwrap();
        assert_eq!(row_counts(reopened.conn()).unwrap().messages, 20);
    }

    #[test]
    fn unchanged_content_is_not_copied_and_a_change_is() {
        let dir = tempfile::tempdir().unwrap();
        let key = MailboxKey::generate();
        let mut mailbox = mailbox_with_mail(dir.path(), &key);
        let copy = dir.path().join("copy.sqlite");
        let mac = content_mac(mailbox.conn(), &key).unwrap();

        assert_eq!(
            write_snapshot_if_changed(&mailbox, &key, &copy, Some(&mac)).unwrap(),
            None
        );
        std::fs::remove_file(&copy)
            .or_else(crate::store::ignore_missing)
            .unwrap();
        mailbox
            .append(
                "INBOX",
                b"Subject: new\r\n\r\nnew\r\n",
                &AppendOptions::default(),
            )
            .unwrap();
        let written = write_snapshot_if_changed(&mailbox, &key, &copy, Some(&mac)).unwrap();
        let live_mac = written.flatten().expect("the live MAC was computed");
        assert_ne!(live_mac, mac);
        let checked = verify_snapshot(&copy, &key, true).unwrap();
        assert_eq!(checked.content_mac.as_deref(), Some(live_mac.as_str()));
        assert_eq!(checked.rows.messages, 21);
    }

    #[test]
    fn a_damaged_copy_fails_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let key = MailboxKey::generate();
        let mailbox = mailbox_with_mail(dir.path(), &key);
        let copy = dir.path().join("copy.sqlite");
        write_snapshot_if_changed(&mailbox, &key, &copy, None).unwrap();
        let mut bytes = std::fs::read(&copy).unwrap();
        // A flipped byte in the last page: its HMAC no longer matches.
        let last = bytes.len() - 100;
        bytes[last] ^= 0x40;
        std::fs::write(&copy, &bytes).unwrap();
        assert!(matches!(
            verify_snapshot(&copy, &key, false),
            Err(Error::Corrupt { .. })
        ));
    }

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

//! Local file work shared by backup and restore: the encrypted snapshot, its checks and
//! fingerprints, free space, durable writes and the per-mailbox lock.

use crate::error::{Error, Result};
use crate::key::MailboxKey;
use crate::store::{Mailbox, RowCounts, row_counts};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

/// First bytes of every *unencrypted* SQLite file. An encrypted SQLCipher file starts with a
/// random salt instead, so a snapshot starting with this would be plaintext on disk.
const PLAINTEXT_SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// Read size for hashing and copying: large enough for sequential throughput, small in RSS.
pub(crate) const IO_BUFFER: usize = 1 << 20;

/// A verified snapshot file and what was learned checking it.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub size: u64,
    pub sha256: String,
    pub schema_version: i64,
    pub rows: RowCounts,
}

/// The encrypted snapshot as written, before it is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WrittenSnapshot {
    pub size: u64,
    pub sha256: String,
    pub method: CopyMethod,
}

/// How a snapshot was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CopyMethod {
    /// The encrypted bytes of the main file, copied as they are (the usual case).
    FileBytes,
    /// Page by page through SQLite's online backup API: the WAL could not be folded into the
    /// main file because a reader still needed an older state of it.
    BackupApi,
}

/// Write an encrypted point-in-time snapshot of `mailbox` to `destination` (a new file) and
/// return its size and SHA-256, computed in the same pass as the copy.
///
/// The usual path copies the main file's encrypted bytes as they are, so nothing is decrypted
/// or encrypted again and an unchanged mailbox gives an identical snapshot (the hash then tells
/// that nothing changed). It is consistent because of how SQLite's WAL works:
/// 1. a PASSIVE checkpoint folds most of the WAL into the main file without blocking anyone;
/// 2. `BEGIN IMMEDIATE` on the mailbox's connection takes the database's write lock (across
///    processes): writers wait, readers go on;
/// 3. a second PASSIVE checkpoint, on a connection of our own, folds what was committed
///    meanwhile. If it folded every frame (`log == checkpointed`), the main file now holds the
///    latest committed state, and nothing can commit before step 4;
/// 4. that connection opens a read transaction (a snapshot of exactly that state), and the
///    write lock is released at once: the lock is held only for the last checkpoint;
/// 5. while that read transaction is open SQLite never writes the main file: a checkpoint
///    copies back only frames every reader has seen, and a writer appends to the WAL (it may
///    not restart the WAL under a reader either). So the first `page_count * page_size` bytes
///    of the file are the snapshot, and are copied and hashed in one pass.
///
/// When step 3 cannot fold every frame (a long reader pins an older state), the copy falls back
/// to SQLite's online backup API inside the read transaction ([`copy_pages_if`]), which is
/// consistent but re-encrypts every page. A copy that is not encrypted is deleted.
pub(crate) fn write_snapshot(
    mailbox: &Mailbox,
    key: &MailboxKey,
    destination: &Path,
) -> Result<WrittenSnapshot> {
    let source_path = mailbox.path();
    // Step 1, outside the lock: the bulk of the WAL, if any, is folded here.
    mailbox.checkpoint()?;
    let reader = open_keyed(source_path, key, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    reader.busy_timeout(std::time::Duration::from_secs(5))?;
    let writer = mailbox.conn();
    writer.execute_batch("BEGIN IMMEDIATE")?;
    let pinned = (|| -> Result<Option<u64>> {
        let (busy, log, checkpointed): (i64, i64, i64) =
            reader.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        if busy != 0 || log != checkpointed {
            return Ok(None);
        }
        reader.execute_batch("BEGIN")?;
        // Reading starts the transaction; page_count is the snapshot's size.
        let page_count: u64 = reader.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let page_size = crate::key::page_size(&reader, source_path)?;
        Ok(Some(page_count * u64::from(page_size)))
    })();
    // Release the write lock on every path; a failure to do so would block every writer.
    writer.execute_batch("ROLLBACK")?;
    let written = match pinned {
        Ok(Some(length)) => {
            let copied = copy_and_hash(source_path, destination, length);
            let _ = reader.execute_batch("COMMIT");
            let (sha256, size) = copied?;
            WrittenSnapshot {
                size,
                sha256,
                method: CopyMethod::FileBytes,
            }
        }
        Ok(None) => {
            drop(reader);
            copy_pages_if(mailbox.conn(), destination, key, |_| Ok(true))?;
            let (sha256, size) = sha256_file(destination)?;
            WrittenSnapshot {
                size,
                sha256,
                method: CopyMethod::BackupApi,
            }
        }
        Err(error) => {
            let _ = reader.execute_batch("ROLLBACK");
            return Err(error);
        }
    };
    let mut head = [0u8; 16];
    let read = File::open(destination)?.read(&mut head)?;
    if read < head.len() || &head == PLAINTEXT_SQLITE_MAGIC {
        std::fs::remove_file(destination)?;
        return Err(Error::Crypto(
            "the snapshot was not encrypted; it was deleted",
        ));
    }
    Ok(written)
}

/// Copy the first `length` bytes of `source` to `destination` (created, must not exist),
/// hashing them on the way; SHA-256 and length of what was written.
fn copy_and_hash(source: &Path, destination: &Path, length: u64) -> Result<(String, u64)> {
    let mut input = File::open(source)?;
    let available = input.metadata()?.len();
    if available < length {
        return Err(Error::Corrupt {
            path: source.into(),
            reason: format!("the file holds {available} bytes, its pages need {length}"),
        });
    }
    let mut output = File::options()
        .write(true)
        .create_new(true)
        .open(destination)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; IO_BUFFER];
    let mut remaining = length;
    while remaining > 0 {
        let wanted = remaining.min(IO_BUFFER as u64) as usize;
        input.read_exact(&mut buffer[..wanted])?;
        hasher.update(&buffer[..wanted]);
        output.write_all(&buffer[..wanted])?;
        remaining -= wanted as u64;
    }
    Ok((hex::encode(hasher.finalize()), length))
}

/// A connection to `path` keyed with `key` and the mailbox cipher settings.
fn open_keyed(path: &Path, key: &MailboxKey, flags: OpenFlags) -> Result<Connection> {
    let flags = flags | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Ok(crate::key::open_keyed(path, flags, key, |_| Ok(()))?)
}

/// Copy the database open on `source` to `destination` (a new file) with SQLite's online
/// backup API, after `wanted` has looked at the database in the same read transaction (so the
/// copy is of the same point in time) and agreed; `Ok(false)` when it did not.
///
/// The destination is keyed with the mailbox's own key and cipher settings, so SQLCipher
/// decrypts each page read from the source and encrypts it again (fresh IVs) on its way into
/// the copy: the copy is never plaintext, and it has the source's page size, HMAC settings,
/// schema version and page layout. It is the fallback of [`write_snapshot`], and costs about
/// 2.5 times the CPU of its byte copy (`benches/backup.rs`).
pub(crate) fn copy_pages_if(
    source: &Connection,
    destination: &Path,
    key: &MailboxKey,
    wanted: impl FnOnce(&Connection) -> Result<bool>,
) -> Result<bool> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
    // The backup API copies pages as they are: the copy must have the source's page size.
    let page_size = crate::key::page_size(source, destination)?;
    let mut copy = crate::key::open_keyed_with_page_size(destination, flags, key, page_size)?;
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
            StepResult::Done => Ok(true),
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

/// Open the snapshot at `path` with `key`, check it and count its rows; `written` is what
/// [`write_snapshot`] measured while writing it. The copy is flushed to disk (fsync) on a
/// second thread meanwhile: the check reads the copy from the page cache and costs CPU, the
/// flush waits on the disk, so together they take about as long as the slower of the two.
///
/// The snapshot is opened read-only and `immutable`: SQLite then takes no locks and creates no
/// `-wal`/`-shm` files beside it (its header still says WAL, like the live file it was copied
/// from, and a restored file opens in WAL mode as every mailbox does).
///
/// The check is `PRAGMA integrity_check`, as the backup design asks. `quick_check` would see
/// everything copying can get wrong (every page of every b-tree and overflow chain must decrypt
/// and pass its HMAC under the key; the b-tree structure and page accounting must be sound);
/// what `integrity_check` adds, that every index agrees with its table, is a property of the
/// live file the copy was taken from. Checking it here tells the operator about a damaged live
/// mailbox at backup time, not at the restore that needs the backup. In `benches/backup.rs`
/// (1 GiB of large messages) both checks take the same time; mailboxes of many small messages
/// have more index entries per byte and pay more for it.
pub(crate) fn verify_snapshot(
    path: &Path,
    key: &MailboxKey,
    written: &WrittenSnapshot,
) -> Result<Snapshot> {
    let (checked, synced) = std::thread::scope(|scope| {
        let syncing = scope.spawn(|| sync_file(path));
        let checked = check_snapshot(path, key);
        let synced = syncing
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (checked, synced)
    });
    let (schema_version, rows) = checked?;
    synced?;
    let on_disk = std::fs::metadata(path)?.len();
    if on_disk != written.size {
        return Err(Error::Corrupt {
            path: path.into(),
            reason: format!("{on_disk} bytes on disk, {} written", written.size),
        });
    }
    Ok(Snapshot {
        size: written.size,
        sha256: written.sha256.clone(),
        schema_version,
        rows,
    })
}

/// `PRAGMA integrity_check`, schema version and row counts of the snapshot at `path`.
fn check_snapshot(path: &Path, key: &MailboxKey) -> Result<(i64, RowCounts)> {
    let corrupt = |reason: String| Error::Corrupt {
        path: path.into(),
        reason,
    };
    // Opening reads page 1: this is where a wrong key shows first.
    let conn = crate::key::open_keyed(
        Path::new(&immutable_uri(path)),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        key,
        |_| Ok(()),
    )
    .map_err(|e| corrupt(e.to_string()))?;
    // Pages are read once each, in order: a large cache only costs memory.
    conn.execute_batch("PRAGMA cache_size = -2048;")
        .map_err(|e| corrupt(e.to_string()))?;
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| corrupt(e.to_string()))?;
    if check != "ok" {
        return Err(corrupt(check));
    }
    let rows = row_counts(&conn).map_err(|e| corrupt(e.to_string()))?;
    let schema_version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    Ok((schema_version, rows))
}

/// A `file:` URI opening `path` read-only as an immutable file (no locks, no side files).
/// Every byte that is not plain ASCII, or means something in a URI, is percent-encoded.
fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for byte in path.as_os_str().as_encoded_bytes() {
        match byte {
            b'%' | b'?' | b'#' | 0..=0x20 | 0x7f.. => uri.push_str(&format!("%{byte:02X}")),
            _ => uri.push(char::from(*byte)),
        }
    }
    uri.push_str("?mode=ro&immutable=1");
    uri
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
        fill(Mailbox::create(&dir.join("live.sqlite"), key).unwrap())
    }

    fn fill(mut mailbox: Mailbox) -> Mailbox {
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

    fn snapshot_and_verify(mailbox: &Mailbox, key: &MailboxKey, copy: &Path) -> Snapshot {
        let written = write_snapshot(mailbox, key, copy).unwrap();
        verify_snapshot(copy, key, &written).unwrap()
    }

    #[test]
    fn byte_copy_is_encrypted_complete_and_leaves_no_side_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = MailboxKey::generate();
        let mailbox = mailbox_with_mail(dir.path(), &key);
        let staging = dir.path().join("staging");
        std::fs::create_dir(&staging).unwrap();
        let copy = staging.join("copy.sqlite");

        let written = write_snapshot(&mailbox, &key, &copy).unwrap();
        assert_eq!(written.method, CopyMethod::FileBytes);
        let checked = verify_snapshot(&copy, &key, &written).unwrap();
        assert_eq!(checked.rows, row_counts(mailbox.conn()).unwrap());
        assert_eq!(checked.rows.messages, 20);
        assert_eq!(checked.schema_version, crate::store::SCHEMA_VERSION);
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
            verify_snapshot(&copy, &MailboxKey::generate(), &written),
            Err(Error::Corrupt { .. })
        ));
        let reopened = Mailbox::open(&copy, &key).unwrap();
        assert_eq!(row_counts(reopened.conn()).unwrap().messages, 20);
    }

    #[test]
    fn unchanged_mailbox_gives_identical_bytes_and_a_change_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let key = MailboxKey::generate();
        let mut mailbox = mailbox_with_mail(dir.path(), &key);
        let first = snapshot_and_verify(&mailbox, &key, &dir.path().join("first"));
        let second = snapshot_and_verify(&mailbox, &key, &dir.path().join("second"));
        assert_eq!(first.sha256, second.sha256);
        mailbox
            .append(
                "INBOX",
                b"Subject: new\r\n\r\nnew\r\n",
                &AppendOptions::default(),
            )
            .unwrap();
        let third = snapshot_and_verify(&mailbox, &key, &dir.path().join("third"));
        assert_ne!(third.sha256, first.sha256);
        assert_eq!(third.rows.messages, 21);
    }

    #[test]
    fn a_reader_pinning_an_older_state_makes_the_copy_fall_back_to_pages() {
        let dir = tempfile::tempdir().unwrap();
        let key = MailboxKey::generate();
        fall_back_to_pages(&dir, &key, mailbox_with_mail(dir.path(), &key));
    }

    /// The page-by-page copy of a file with the page size of older versions has that page
    /// size too (the backup API copies pages as they are), and verifies.
    #[test]
    fn a_legacy_file_falls_back_to_a_page_copy_of_its_own_page_size() {
        let dir = tempfile::tempdir().unwrap();
        let key = MailboxKey::generate();
        let path = dir.path().join("legacy.sqlite");
        let mailbox = fill(Mailbox::create_with_legacy_page_size(&path, &key).unwrap());
        fall_back_to_pages(&dir, &key, mailbox);
        let copy = crate::key::open_keyed_with_page_size(
            &dir.path().join("copy"),
            OpenFlags::SQLITE_OPEN_READ_ONLY,
            &key,
            crate::key::LEGACY_PAGE_SIZE,
        )
        .unwrap();
        let messages: i64 = copy
            .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
            .expect("the page copy reads with the legacy page size");
        assert_eq!(messages, 21);
        let snapshot = dir.path().join("legacy-snapshot");
        let written = write_snapshot(&Mailbox::open(&path, &key).unwrap(), &key, &snapshot);
        assert_eq!(written.unwrap().method, CopyMethod::FileBytes);
        assert!(check_snapshot(&snapshot, &key).is_ok());
    }

    fn fall_back_to_pages(dir: &tempfile::TempDir, key: &MailboxKey, mut mailbox: Mailbox) {
        let key = key.clone();
        // A reader that started before the next append keeps its frames out of the main file.
        let reader = open_keyed(mailbox.path(), &key, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader
            .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
            .unwrap();
        mailbox
            .append(
                "INBOX",
                b"Subject: late\r\n\r\nlate\r\n",
                &AppendOptions::default(),
            )
            .unwrap();
        let copy = dir.path().join("copy");
        let written = write_snapshot(&mailbox, &key, &copy).unwrap();
        assert_eq!(written.method, CopyMethod::BackupApi);
        let checked = verify_snapshot(&copy, &key, &written).unwrap();
        assert_eq!(checked.rows.messages, 21, "the copy has the latest commit");
        reader.execute_batch("COMMIT").unwrap();
    }

    /// Writers on other threads keep appending while snapshots are taken: every snapshot must
    /// pass its check and hold a number of messages some commit had (never a torn state).
    #[test]
    fn snapshots_taken_during_concurrent_appends_are_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let key = MailboxKey::generate();
        let mailbox = mailbox_with_mail(dir.path(), &key);
        let path = mailbox.path().to_path_buf();
        let stop = std::sync::atomic::AtomicBool::new(false);
        /// Stops the writer however the snapshot rounds end, a failed assertion included
        /// (else the scope would wait for the writer forever).
        struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            let writer = scope.spawn(|| {
                let mut writer = Mailbox::open(&path, &key).unwrap();
                let mut appended = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let raw = format!(
                        "Subject: during {appended}\r\n\r\n{}\r\n",
                        "y".repeat(20_000)
                    );
                    writer
                        .append("INBOX", raw.as_bytes(), &AppendOptions::default())
                        .unwrap();
                    appended += 1;
                    if appended == 3 {
                        started_tx.send(()).unwrap();
                    }
                }
                appended
            });
            let stopper = StopOnDrop(&stop);
            started_rx
                .recv_timeout(std::time::Duration::from_secs(120))
                .expect("the writer appended nothing within 120 s");
            let mut previous = 20;
            let mut byte_copies = 0;
            for round in 0..8 {
                let copy = dir.path().join(format!("copy-{round}"));
                let written = write_snapshot(&mailbox, &key, &copy).unwrap();
                byte_copies += usize::from(written.method == CopyMethod::FileBytes);
                let checked = verify_snapshot(&copy, &key, &written).unwrap();
                assert!(
                    checked.rows.messages >= previous,
                    "snapshot {round} went back in time"
                );
                previous = checked.rows.messages;
                // The copy is a whole mailbox of its own, every message readable.
                let reopened = Mailbox::open(&copy, &key).unwrap();
                let check: String = reopened
                    .conn()
                    .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                    .unwrap();
                assert_eq!(check, "ok");
                drop(reopened);
                for side in ["", "-wal", "-shm"] {
                    std::fs::remove_file(crate::store::sibling(&copy, side))
                        .or_else(crate::store::ignore_missing)
                        .unwrap();
                }
            }
            assert!(byte_copies > 0, "no snapshot took the byte-copy path");
            drop(stopper);
            let appended = writer.join().unwrap();
            let checked = snapshot_and_verify(&mailbox, &key, &dir.path().join("last"));
            assert_eq!(checked.rows.messages, 20 + appended);
        });
    }

    #[test]
    fn a_damaged_copy_fails_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let key = MailboxKey::generate();
        let mailbox = mailbox_with_mail(dir.path(), &key);
        let copy = dir.path().join("copy.sqlite");
        let written = write_snapshot(&mailbox, &key, &copy).unwrap();
        let mut bytes = std::fs::read(&copy).unwrap();
        // A flipped byte in the last page: its HMAC no longer matches.
        let last = bytes.len() - 100;
        bytes[last] ^= 0x40;
        std::fs::write(&copy, &bytes).unwrap();
        assert!(matches!(
            verify_snapshot(&copy, &key, &written),
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

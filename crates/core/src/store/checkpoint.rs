//! WAL checkpoints off the committing connection.
//!
//! SQLite's automatic checkpoint runs inside the commit that pushes the WAL past its limit: that
//! commit copies the WAL back into the main file and syncs both files before its caller (an
//! IMAP command, say) gets its answer. Under load that made one command in a few hundred wait
//! for two `fsync`s behind everyone else's writes. Here the commit only notices that the WAL has
//! grown, and a short-lived thread with a connection of its own runs a PASSIVE checkpoint, which
//! never blocks the writer: the copy and the syncs overlap with the next commands. The WAL stays
//! bounded: past [`INLINE_CHECKPOINT_FRAMES`] (SQLite's default limit) the committing connection
//! waits for a background checkpoint in flight and checkpoints itself, as before, should the
//! background not keep up.
//!
//! SQLite starts the WAL over (writes it from its beginning again) at the first write after a
//! checkpoint has copied every frame. A busy mailbox keeps committing while a background
//! checkpoint runs, so that checkpoint ends a few frames short; it then runs again over just
//! those frames, a few times, which is quick, so the WAL usually starts over long before the
//! inline limit.

use crate::key::MailboxKey;
use rusqlite::hooks::Wal;
use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// WAL frames (pages) after which a background checkpoint starts: 4 MiB with 16 KiB pages.
const BACKGROUND_CHECKPOINT_FRAMES: i32 = 256;

/// WAL frames after which the committing connection checkpoints itself (SQLite's default
/// `wal_autocheckpoint`): the bound on the WAL when background checkpoints fall behind.
const INLINE_CHECKPOINT_FRAMES: i32 = 1000;

/// Passes of one background checkpoint, each over the frames committed during the previous.
const BACKGROUND_PASSES: usize = 3;

/// Background checkpoints running at once in this process, all mailboxes together. When all are
/// busy a mailbox simply asks again at its next commit (or reaches the inline limit).
const MAX_BACKGROUND_CHECKPOINTS: usize = 4;

static BACKGROUND_CHECKPOINTS: AtomicUsize = AtomicUsize::new(0);

/// The background checkpointing of one mailbox file. Dropping it waits for a checkpoint in
/// flight, so no connection of ours outlives the mailbox (key rotation, account removal and
/// restore need the file to themselves once it is closed).
pub(crate) struct Checkpointer {
    target: Arc<Target>,
}

/// What a background checkpoint needs, shared with the connection's WAL hook.
struct Target {
    path: PathBuf,
    key: MailboxKey,
    /// Whether a background checkpoint of this file is running.
    running: Mutex<bool>,
    finished: Condvar,
    /// The WAL frames the last background checkpoint had copied: the next one starts only once
    /// enough new frames are waiting, not at every commit.
    backfilled: AtomicI32,
    /// Background checkpoints completed, for tests.
    completed: AtomicUsize,
}

impl Checkpointer {
    /// Take over checkpointing of `conn`, the connection to `path` keyed with `key`: its
    /// automatic checkpoint is replaced by this module's WAL hook.
    pub(crate) fn install(
        conn: &mut Connection,
        path: &Path,
        key: &MailboxKey,
    ) -> rusqlite::Result<Checkpointer> {
        let target = Arc::new(Target {
            path: path.to_path_buf(),
            key: key.clone(),
            running: Mutex::new(false),
            finished: Condvar::new(),
            backfilled: AtomicI32::new(0),
            completed: AtomicUsize::new(0),
        });
        let hooked = Arc::clone(&target);
        let mut previous_frames = 0;
        conn.wal_hook(Some(move |wal: &mut Wal, frames: i32| {
            if frames < previous_frames {
                // The WAL started over: nothing in it has been copied yet.
                hooked.backfilled.store(0, Ordering::Release);
            }
            previous_frames = frames;
            after_commit(&hooked, wal, frames);
            // The commit has happened whatever a checkpoint says; an error here would be
            // reported as the failure of the statement that committed.
            Ok(())
        }))?;
        Ok(Checkpointer { target })
    }

    /// Wait until no background checkpoint of this file is running.
    pub(crate) fn wait_idle(&self) {
        self.target.wait_idle();
    }

    /// Background checkpoints of this file completed so far.
    #[cfg(test)]
    pub(crate) fn completed(&self) -> usize {
        self.target.completed.load(Ordering::Acquire)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.wait_idle();
    }
}

impl Target {
    fn lock_running(&self) -> std::sync::MutexGuard<'_, bool> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait_idle(&self) {
        let mut running = self.lock_running();
        while *running {
            running = self
                .finished
                .wait(running)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    fn finish(&self) {
        *self.lock_running() = false;
        self.finished.notify_all();
    }
}

/// The WAL hook: `frames` is the WAL's length after the commit that just happened.
fn after_commit(target: &Arc<Target>, wal: &mut Wal, frames: i32) {
    if frames >= INLINE_CHECKPOINT_FRAMES {
        // What SQLite's automatic checkpoint does, once the background one (which holds the
        // checkpoint lock) is out of the way, so that it copies every frame and the next write
        // starts the WAL over. Its failure leaves the WAL as it is, for the next commit.
        target.wait_idle();
        let _ = wal.checkpoint_v2(CheckpointMode::PASSIVE);
        return;
    }
    let waiting = frames.saturating_sub(target.backfilled.load(Ordering::Acquire));
    if frames >= BACKGROUND_CHECKPOINT_FRAMES && waiting >= BACKGROUND_CHECKPOINT_FRAMES / 4 {
        start_background(target);
    }
}

fn start_background(target: &Arc<Target>) {
    {
        let mut running = target.lock_running();
        if *running {
            return;
        }
        let taken = BACKGROUND_CHECKPOINTS.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < MAX_BACKGROUND_CHECKPOINTS).then_some(n + 1)
        });
        if taken.is_err() {
            return;
        }
        *running = true;
    }
    let job = Arc::clone(target);
    let spawned = std::thread::Builder::new()
        .name("sealmail-checkpoint".into())
        .spawn(move || {
            // Errors (the file is gone, or locked by a rotation) leave the work to the next
            // attempt or to the inline limit.
            if checkpoint_passive(&job).is_ok() {
                job.completed.fetch_add(1, Ordering::AcqRel);
            }
            BACKGROUND_CHECKPOINTS.fetch_sub(1, Ordering::AcqRel);
            job.finish();
        });
    if spawned.is_err() {
        BACKGROUND_CHECKPOINTS.fetch_sub(1, Ordering::AcqRel);
        target.finish();
    }
}

/// PASSIVE checkpoints of the target's file over a connection of their own: they copy what they
/// can without waiting for, or blocking, the mailbox's own connection.
fn checkpoint_passive(target: &Target) -> rusqlite::Result<()> {
    // Never CREATE: a file removed meanwhile must not come back empty.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(&target.path, flags)?;
    conn.execute_batch("PRAGMA cipher_log_level = NONE;")?;
    conn.execute_batch(&target.key.sqlcipher_key_pragma())?;
    // NORMAL, as the mailbox's connection: the WAL is synced before the copy, the main file
    // after it.
    conn.execute_batch("PRAGMA synchronous = NORMAL;")?;
    for _ in 0..BACKGROUND_PASSES {
        let (frames, copied) =
            conn.wal_checkpoint_v2(Some(rusqlite::MAIN_DB), CheckpointMode::PASSIVE)?;
        target.backfilled.store(copied, Ordering::Release);
        if copied >= frames {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AppendOptions, Mailbox, UidSet, wal_path};

    /// Bytes of one WAL frame: a 24-byte header and a 16 KiB page.
    const FRAME_BYTES: u64 = 24 + 16384;

    fn append_some(mailbox: &mut Mailbox, count: usize) {
        for i in 0..count {
            let raw = format!(
                "From: a{i}@example.org\r\nSubject: message {i}\r\n\r\nbody of message {i}\r\n"
            );
            mailbox
                .append("INBOX", raw.as_bytes(), &AppendOptions::default())
                .unwrap();
        }
    }

    fn wal_bytes(mailbox: &Mailbox) -> u64 {
        std::fs::metadata(wal_path(mailbox.path())).map_or(0, |m| m.len())
    }

    /// Commits past the background limit are checkpointed by another connection, and the WAL
    /// stays bounded by the inline limit however many commits follow; nothing is lost.
    #[test]
    fn a_background_connection_checkpoints_and_the_wal_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let key = MailboxKey::generate();
        let path = dir.path().join("m.sqlite");
        let mut mailbox = Mailbox::create(&path, &key).unwrap();
        let main_file_before = std::fs::metadata(&path).unwrap().len();
        // Each append writes more than one page, so this passes the background limit many
        // times over, and the inline limit several times.
        let appends = INLINE_CHECKPOINT_FRAMES as usize / 2;
        append_some(&mut mailbox, appends);
        let checkpointer = mailbox.checkpointer.as_ref().unwrap();
        checkpointer.wait_idle();
        assert!(
            checkpointer.completed() >= 1,
            "no background checkpoint ran"
        );
        assert!(
            std::fs::metadata(&path).unwrap().len() > main_file_before,
            "the main file never received the WAL's pages"
        );
        let bound = (INLINE_CHECKPOINT_FRAMES as u64 + 64) * FRAME_BYTES;
        assert!(
            wal_bytes(&mailbox) <= bound,
            "WAL grew to {} bytes",
            wal_bytes(&mailbox)
        );
        drop(mailbox);
        let reopened = Mailbox::open(&path, &key).unwrap();
        assert_eq!(
            reopened.summaries("INBOX", &UidSet::all()).unwrap().len(),
            appends
        );
        let check: String = reopened
            .conn()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    /// Key rotation needs the file to itself: it waits for the mailbox's own background
    /// checkpoint instead of failing with "in use".
    #[test]
    fn key_rotation_right_after_heavy_writes_is_not_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = MailboxKey::generate();
        let path = dir.path().join("m.sqlite");
        let mut mailbox = Mailbox::create(&path, &key).unwrap();
        for round in 0..5 {
            append_some(&mut mailbox, BACKGROUND_CHECKPOINT_FRAMES as usize / 8);
            let new_key = MailboxKey::generate();
            mailbox = mailbox
                .rotate_key(&new_key, |_| Ok(()))
                .unwrap_or_else(|e| panic!("rotation {round}: {e}"));
        }
    }

    /// Closing a mailbox leaves no connection of ours on the file: right after the drop,
    /// another connection takes the exclusive lock.
    #[test]
    fn a_closed_mailbox_leaves_no_background_connection_behind() {
        let dir = tempfile::tempdir().unwrap();
        let key = MailboxKey::generate();
        let path = dir.path().join("m.sqlite");
        for _ in 0..3 {
            let mut mailbox = match Mailbox::open(&path, &key) {
                Ok(mailbox) => mailbox,
                Err(_) => Mailbox::create(&path, &key).unwrap(),
            };
            append_some(&mut mailbox, BACKGROUND_CHECKPOINT_FRAMES as usize / 8);
            drop(mailbox);
            let conn = Mailbox::raw_connection(&path, &key).unwrap();
            conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN IMMEDIATE; COMMIT;")
                .expect("exclusive lock right after close");
        }
    }
}

//! The `MailStore` boundary: the one interface between protocol servers (IMAP, POP3, SMTP
//! delivery, later the cluster) and mailbox data.
//!
//! Rules (ARCHITECTURE.md, "The `MailStore` boundary"):
//! - async methods on a session handle obtained by [`MailStore::login`]; the handle owns the key
//!   (inside the open mailbox) and wipes it on drop;
//! - arguments and results are plain owned serde types from [`crate::store::types`], never SQLite
//!   types, so a remote implementation can send every call over a socket;
//! - calls are coarse: one call per command, not one per message;
//! - changes come back as a subscription of [`Change`]s, which IDLE, NOTIFY and the cluster
//!   consume.
//!
//! [`LocalMailStore`] is the in-process implementation: it runs every SQLite call on tokio's
//! blocking threads, never on the reactor.

use crate::account::{self, OpenMailbox};
use crate::backup::OpenMailboxSource;
use crate::error::{Error, Result};
use crate::registry::{Login, MailboxId, Registry};
use crate::seal::SealedQueue;
use crate::store::{
    AppendOptions, Appended, Copied, FlagMode, Flags, FlagsChanged, FolderInfo, Mailbox,
    MessageState, MessageSummary, SearchKey, SortCriterion, ThreadAlgorithm, Threads, UidSet,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::broadcast;

/// A data change in a mailbox, published to every session of that mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The [`MailSession::id`] of the session that made the change.
    pub origin: u64,
    pub folder: String,
    /// The folder's HIGHESTMODSEQ after the change (0 for folder-level events).
    pub modseq: u64,
    pub event: ChangeEvent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeEvent {
    MessagesAdded,
    FlagsChanged,
    MessagesExpunged,
    FolderCreated,
    FolderDeleted,
    FolderRenamed { to: String },
}

/// Storage use and limit of an account (QUOTA, APPENDLIMIT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaUsage {
    pub used_bytes: u64,
    pub limit_bytes: Option<u64>,
}

/// What changed in a folder since a session last looked, from [`MailSession::folder_changes`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderChanges {
    pub highest_modseq: u64,
    /// Messages whose MODSEQ is above the caller's `known_modseq`, in UID order; empty unless
    /// `highest_modseq` is above it.
    pub changed: Vec<MessageState>,
    /// UIDs expunged after the caller's `expunged_after`, ascending; `None` when it was not
    /// asked for or `highest_modseq` is not above it.
    pub expunged: Option<Vec<u32>>,
}

/// One message's raw bytes, as FETCH BODY[] needs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawMessage {
    pub uid: u32,
    pub bytes: Vec<u8>,
}

/// Entry point: verify credentials and open a session on the account's mailbox.
pub trait MailStore: Send + Sync + 'static {
    type Session: MailSession;

    /// Verify `password` for `address` and open the mailbox. A wrong password and an unknown
    /// address give the same [`Error::WrongPassword`].
    fn login(
        &self,
        address: &str,
        password: &str,
    ) -> impl Future<Output = Result<Self::Session>> + Send;

    /// Deliver `raw` into the delivery folder (INBOX) of mailbox `mailbox_id` if a session
    /// holds that mailbox open right now (its key is in memory anyway), through the same
    /// single writer as the sessions, and announce it to them ([`DELIVERY_ORIGIN`]), so IDLE
    /// sees it at once. Returns once the message is durable (its commit synced to disk).
    /// `Ok(None)` when no session holds the mailbox: the caller seals the message instead.
    fn deliver_if_open(
        &self,
        mailbox_id: &MailboxId,
        raw: Vec<u8>,
        options: AppendOptions,
    ) -> impl Future<Output = Result<Option<Appended>>> + Send;

    /// [`MailStore::deliver_if_open`] for a caller already on a blocking thread (never call it
    /// on the reactor: it waits for the writer and the fsync). The commit runs on the calling
    /// thread rather than behind a hand-off to another one, under the same single writer and
    /// shared with the deliveries waiting beside it; the answers are the same. `raw` is
    /// shared, not copied: a message for several mailboxes stays one buffer.
    fn deliver_if_open_blocking(
        &self,
        mailbox_id: &MailboxId,
        raw: Arc<Vec<u8>>,
        options: AppendOptions,
    ) -> Result<Option<Appended>>;

    /// Fold the sealed items waiting for `mailbox_id` into its INBOX if a session holds the
    /// mailbox open right now, and announce them ([`DELIVERY_ORIGIN`]). MX calls it after it
    /// sealed a message because [`MailStore::deliver_if_open`] found no session: a login may
    /// have opened (and drained) the mailbox in between, and the item would otherwise wait
    /// for the next login. Items already delivered are skipped by id, so a drain racing
    /// another never delivers twice. `Ok(None)` when no session holds the mailbox; else how
    /// many items were taken from the queue (delivered now, or found delivered already).
    fn drain_sealed_if_open(
        &self,
        mailbox_id: &MailboxId,
    ) -> impl Future<Output = Result<Option<usize>>> + Send;

    /// [`MailStore::drain_sealed_if_open`] for a caller already on a blocking thread (never
    /// on the reactor), run on the calling thread.
    fn drain_sealed_if_open_blocking(&self, mailbox_id: &MailboxId) -> Result<Option<usize>>;
}

/// The [`Change::origin`] of messages delivered by [`MailStore::deliver_if_open`]: no
/// session made them (session ids start at 1).
pub const DELIVERY_ORIGIN: u64 = 0;

/// An authenticated session on one mailbox. Folder names are canonical paths (`INBOX`,
/// `Archive/2024`), UIDs are per folder.
pub trait MailSession: Send + Sync + 'static {
    /// Identifies this session as the origin of the [`Change`]s it causes.
    fn id(&self) -> u64;
    fn list_folders(&self) -> impl Future<Output = Result<Vec<FolderInfo>>> + Send;
    fn folder(&self, path: &str) -> impl Future<Output = Result<FolderInfo>> + Send;
    /// Just the folder's HIGHESTMODSEQ: cheap, unlike the counters of [`MailSession::folder`].
    /// Called after every command of a session with a selected folder.
    fn highest_modseq(&self, path: &str) -> impl Future<Output = Result<u64>> + Send;
    fn create_folder(
        &self,
        path: &str,
        special_use: Option<&str>,
    ) -> impl Future<Output = Result<FolderInfo>> + Send;
    fn delete_folder(&self, path: &str) -> impl Future<Output = Result<()>> + Send;
    fn rename_folder(&self, from: &str, to: &str) -> impl Future<Output = Result<()>> + Send;
    fn set_subscribed(
        &self,
        path: &str,
        subscribed: bool,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Append messages in one transaction: all are stored or none (MULTIAPPEND).
    fn append(
        &self,
        folder: &str,
        messages: Vec<(Vec<u8>, AppendOptions)>,
    ) -> impl Future<Output = Result<Vec<Appended>>> + Send;
    /// UID, MODSEQ and flags of every message (SELECT).
    fn message_states(
        &self,
        folder: &str,
    ) -> impl Future<Output = Result<Vec<MessageState>>> + Send;
    /// Messages with MODSEQ above `modseq` (CONDSTORE, and change tracking of selected folders).
    fn changed_since(
        &self,
        folder: &str,
        modseq: u64,
    ) -> impl Future<Output = Result<Vec<MessageState>>> + Send;
    /// HIGHESTMODSEQ of `folder` with the messages changed since `known_modseq` and, when
    /// `expunged_after` is given, the UIDs expunged since then: what
    /// [`MailSession::highest_modseq`], [`MailSession::changed_since`] and
    /// [`MailSession::expunged_since`] give, in one round trip (a session synchronises its
    /// selected folder this way after every change another session makes).
    fn folder_changes(
        &self,
        folder: &str,
        known_modseq: u64,
        expunged_after: Option<u64>,
    ) -> impl Future<Output = Result<FolderChanges>> + Send;
    /// UIDs expunged after `modseq` (QRESYNC, and change tracking).
    fn expunged_since(
        &self,
        folder: &str,
        modseq: u64,
    ) -> impl Future<Output = Result<Vec<u32>>> + Send;
    /// Everything but the bytes for the messages of `uids`, in UID order.
    fn summaries(
        &self,
        folder: &str,
        uids: UidSet,
    ) -> impl Future<Output = Result<Vec<MessageSummary>>> + Send;
    /// Raw bytes of the messages of `uids` that exist, in UID order.
    fn fetch_raw(
        &self,
        folder: &str,
        uids: UidSet,
    ) -> impl Future<Output = Result<Vec<RawMessage>>> + Send;
    fn set_flags(
        &self,
        folder: &str,
        uids: UidSet,
        mode: FlagMode,
        flags: Flags,
        unchanged_since: Option<u64>,
    ) -> impl Future<Output = Result<FlagsChanged>> + Send;
    fn copy_messages(
        &self,
        from: &str,
        uids: UidSet,
        to: &str,
    ) -> impl Future<Output = Result<Copied>> + Send;
    fn move_messages(
        &self,
        from: &str,
        uids: UidSet,
        to: &str,
    ) -> impl Future<Output = Result<Copied>> + Send;
    /// Remove `\Deleted` messages (only those in `uids` when given); returns their UIDs.
    fn expunge(
        &self,
        folder: &str,
        uids: Option<UidSet>,
    ) -> impl Future<Output = Result<Vec<u32>>> + Send;
    /// Remove the messages of `uids` whatever their flags (POP3's UPDATE state, RFC 1939
    /// section 6); returns the UIDs removed.
    fn remove_messages(
        &self,
        folder: &str,
        uids: UidSet,
    ) -> impl Future<Output = Result<Vec<u32>>> + Send;
    /// Take the mailbox's maildrop lock (RFC 1939 section 8: one POP3 session per maildrop)
    /// for as long as this session lives. `false` when another session holds it. IMAP never
    /// takes it, so IMAP sessions keep working beside a POP3 one.
    fn lock_maildrop(&self) -> impl Future<Output = Result<bool>> + Send;
    /// UIDs matching `key`, ascending.
    fn search(&self, folder: &str, key: SearchKey)
    -> impl Future<Output = Result<Vec<u32>>> + Send;
    /// UIDs matching `key`, ordered by `criteria` (SORT, RFC 5256); ties in UID order.
    fn sort(
        &self,
        folder: &str,
        criteria: Vec<SortCriterion>,
        key: SearchKey,
    ) -> impl Future<Output = Result<Vec<u32>>> + Send;
    /// The messages matching `key` as threads of UIDs (THREAD, RFC 5256).
    fn thread(
        &self,
        folder: &str,
        algorithm: ThreadAlgorithm,
        key: SearchKey,
    ) -> impl Future<Output = Result<Threads>> + Send;
    fn quota(&self) -> impl Future<Output = Result<QuotaUsage>> + Send;
    /// Changes made by any session of this mailbox from now on (this one included).
    fn subscribe(&self) -> broadcast::Receiver<Change>;
}

/// A mailbox opened after a successful password check, as [`MailboxOpener`] hands it over.
pub struct OpenedMailbox {
    /// The open file (a plain [`Mailbox`], or the account layer's [`OpenMailbox`]).
    pub mailbox: Box<dyn AsMut<Mailbox> + Send>,
    /// The account's storage limit, for QUOTA and APPENDLIMIT answers.
    pub quota: Option<u64>,
    /// What a scheduled backup needs while sessions hold the mailbox open (its key among
    /// it); `None` from openers that do not offer backups.
    pub backup_source: Option<OpenMailboxSource>,
}

/// Password check plus opening of the mailbox file, used by [`LocalMailStore`]. Blocking
/// (Argon2id, SQLCipher): it runs on a blocking thread. The [`Registry`] implements it with
/// [`account::open_mailbox_after_login`], which also drains mail sealed while the owner was
/// away.
///
/// Two steps, so that a login to a mailbox another session already holds open (clients keep
/// several connections and reconnect constantly) checks the password, usually from the login
/// cache, and reuses that connection instead of opening the file again.
pub trait MailboxOpener: Send + Sync + 'static {
    /// Verify `password` for `address`; a wrong password and an unknown address give the same
    /// [`Error::WrongPassword`].
    fn authenticate(&self, address: &str, password: &str) -> Result<Login>;
    /// Open the mailbox of an authenticated `login`.
    fn open(&self, login: Login) -> Result<OpenedMailbox>;
    /// Fold the mail sealed for `mailbox_id` into `mailbox` (that mailbox's open file), as a
    /// login does. Called for a login to a mailbox
    /// another session holds open, after a login registered the file it opened (mail sealed
    /// during the opening), and by [`MailStore::drain_sealed_if_open`]. Returns how many items
    /// were taken from the queue.
    fn drain_sealed(&self, mailbox_id: &MailboxId, mailbox: &mut Mailbox) -> Result<usize>;

    /// Where the file of mailbox `mailbox_id` is, as [`MailboxOpener::open`] opens it: it
    /// finds the open mailbox a new login shares and [`MailStore::deliver_if_open`] writes
    /// into. `None` from openers that do not name files by mailbox id: their logins always
    /// open the file and they get no direct delivery.
    fn mailbox_path(&self, mailbox_id: &MailboxId) -> Option<PathBuf> {
        let _ = mailbox_id;
        None
    }

    /// How many sealed items wait for `mailbox_id`, found without opening anything (a
    /// directory listing): the periodic drain skips mailboxes with none. Openers without a
    /// sealed queue have none.
    fn sealed_pending(&self, mailbox_id: &MailboxId) -> Result<usize> {
        let _ = mailbox_id;
        Ok(0)
    }
}

/// A shared opener opens like the one it wraps (the server keeps a handle to the registry for
/// housekeeping while the store uses it).
impl<T: MailboxOpener> MailboxOpener for Arc<T> {
    fn authenticate(&self, address: &str, password: &str) -> Result<Login> {
        T::authenticate(self, address, password)
    }

    fn open(&self, login: Login) -> Result<OpenedMailbox> {
        T::open(self, login)
    }

    fn drain_sealed(&self, mailbox_id: &MailboxId, mailbox: &mut Mailbox) -> Result<usize> {
        T::drain_sealed(self, mailbox_id, mailbox)
    }

    fn mailbox_path(&self, mailbox_id: &MailboxId) -> Option<PathBuf> {
        T::mailbox_path(self, mailbox_id)
    }

    fn sealed_pending(&self, mailbox_id: &MailboxId) -> Result<usize> {
        T::sealed_pending(self, mailbox_id)
    }
}

impl MailboxOpener for Registry {
    fn authenticate(&self, address: &str, password: &str) -> Result<Login> {
        self.login(address, password)
    }

    fn open(&self, login: Login) -> Result<OpenedMailbox> {
        let quota = login.quota;
        let opened = account::open_mailbox_after_login(self, login)?;
        let backup_source = OpenMailboxSource {
            mailbox_id: opened.mailbox_id().clone(),
            path: opened.mailbox().path().to_path_buf(),
            key: opened.key().clone(),
        };
        Ok(OpenedMailbox {
            mailbox: Box::new(opened),
            quota,
            backup_source: Some(backup_source),
        })
    }

    fn drain_sealed(&self, mailbox_id: &MailboxId, mailbox: &mut Mailbox) -> Result<usize> {
        account::drain_sealed_into(self, mailbox_id, mailbox).map(|report| report.delivered.len())
    }

    fn mailbox_path(&self, mailbox_id: &MailboxId) -> Option<PathBuf> {
        Some(Registry::mailbox_path(self, mailbox_id))
    }

    fn sealed_pending(&self, mailbox_id: &MailboxId) -> Result<usize> {
        SealedQueue::new(self.data_dir()).pending_count(mailbox_id.as_str())
    }
}

impl AsMut<Mailbox> for OpenMailbox {
    fn as_mut(&mut self) -> &mut Mailbox {
        self.mailbox_mut()
    }
}

impl AsMut<Mailbox> for Mailbox {
    fn as_mut(&mut self) -> &mut Mailbox {
        self
    }
}

/// How many change events a slow session may lag behind before it resynchronises fully.
const CHANGE_BUFFER: usize = 1024;

/// The in-process [`MailStore`]. Sessions of one mailbox share its open connection and its
/// change channel: a phone, a laptop and a webmail tab cost one SQLCipher connection (about
/// 200 KiB), not three.
pub struct LocalMailStore<O> {
    opener: Arc<O>,
    /// Open mailboxes by file, held weakly: the last session to end closes the file (and drops
    /// the key). A std mutex: it is held for a map lookup only, never across an await.
    open: Mutex<HashMap<PathBuf, Weak<SharedMailbox>>>,
    /// How long a mailbox stays open after its last session ends.
    linger: Duration,
}

/// Keep a mailbox open this long after its last session: clients reconnect constantly, and
/// closing checkpoints the WAL (an fsync) that the next login would wait for. The key stays in
/// memory no longer than the login cache keeps it anyway.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(60);

/// When [`LocalMailStore::index_open_mailboxes`] takes a mailbox's full-text backlog.
#[derive(Debug, Clone)]
pub struct IndexSchedule {
    /// Bodies per transaction (and per turn of the mailbox lock).
    pub batch: usize,
    /// Leave a mailbox alone until no append added to its backlog for this long.
    pub quiet: Duration,
    /// ... unless this many bodies wait.
    pub cap: u64,
}

impl IndexSchedule {
    /// The server's background indexing. Indexing costs about as much CPU as storing (the
    /// trigram index takes every 3-character window of the text): during a burst of
    /// deliveries it would halve the rate at which mail is accepted, so a mailbox is indexed
    /// once mail stops arriving for a second, or when 1,000 bodies wait (a first search then
    /// waits about a second for them on this class of machine: 27 KB messages index at about
    /// 1 ms each). Batches of 64 keep each turn of the mailbox lock short.
    pub const BACKGROUND: Self = Self {
        batch: 64,
        quiet: Duration::from_secs(1),
        cap: 1_000,
    };

    /// Everything waiting, now, in large batches (tests, benchmarks, an operator's command).
    pub const NOW: Self = Self {
        batch: 500,
        quiet: Duration::ZERO,
        cap: 0,
    };
}

/// The inline threshold ([`Mailbox::set_inline_index_threshold`]) of mailboxes the store holds
/// open: the background indexer ([`IndexSchedule::BACKGROUND`]) takes their backlog, and an
/// append only indexes by itself when that indexer is not running or falls far behind.
pub const STORE_INLINE_INDEX_THRESHOLD: u64 = 2 * IndexSchedule::BACKGROUND.cap;

/// Session ids, unique within the process.
static NEXT_SESSION_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// What the sessions of one mailbox share.
struct SharedMailbox {
    /// A std mutex: only blocking threads lock it; the sessions of one mailbox take turns,
    /// as SQLite writers do anyway.
    mailbox: Mutex<Box<dyn AsMut<Mailbox> + Send>>,
    changes: broadcast::Sender<Change>,
    /// Held by at most one session (POP3's maildrop lock); see [`MailSession::lock_maildrop`].
    maildrop_locked: AtomicBool,
    /// Whose mailbox this is: the periodic drain looks up its sealed queue by it.
    mailbox_id: MailboxId,
    /// For scheduled backups; dropped (and the key wiped) with the last session.
    backup_source: Option<OpenMailboxSource>,
    /// Direct deliveries waiting for the writer: whoever takes the mailbox lock next commits
    /// all of them in one transaction, so concurrent deliveries share one fsync. A std
    /// mutex, held only to push or take.
    deliveries: Mutex<Vec<PendingDelivery>>,
}

/// A message [`MailStore::deliver_if_open`] waits to see committed.
struct PendingDelivery {
    raw: Arc<Vec<u8>>,
    options: AppendOptions,
    done: tokio::sync::oneshot::Sender<Result<Appended>>,
}

/// What a direct delivery's waiter learns from the commit that took it.
fn delivery_outcome(
    answer: std::result::Result<Result<Appended>, tokio::sync::oneshot::error::RecvError>,
) -> Result<Option<Appended>> {
    match answer {
        Ok(result) => result.map(Some),
        Err(_) => Err(Error::Io(std::io::Error::other(
            "direct delivery dropped before its commit",
        ))),
    }
}

impl SharedMailbox {
    /// Queue a direct delivery for the next commit; the receiver gets its answer.
    fn enqueue_delivery(
        &self,
        raw: Arc<Vec<u8>>,
        options: AppendOptions,
    ) -> tokio::sync::oneshot::Receiver<Result<Appended>> {
        let (done, answer) = tokio::sync::oneshot::channel();
        self.deliveries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(PendingDelivery { raw, options, done });
        answer
    }

    /// Fold the sealed items of `mailbox_id` in under the writer lock and announce them.
    /// Blocking.
    fn drain_sealed<O: MailboxOpener>(&self, opener: &O, mailbox_id: &MailboxId) -> Result<usize> {
        let mut guard = self.mailbox.lock().unwrap_or_else(|p| p.into_inner());
        let delivered = opener.drain_sealed(mailbox_id, guard.as_mut().as_mut())?;
        if delivered > 0 {
            let modseq = guard
                .as_mut()
                .as_mut()
                .highest_modseq(account::DELIVERY_FOLDER)?;
            drop(guard);
            // No receivers is fine: the sessions may all be gone (a lingering mailbox).
            let _ = self.changes.send(Change {
                origin: DELIVERY_ORIGIN,
                folder: account::DELIVERY_FOLDER.to_string(),
                modseq,
                event: ChangeEvent::MessagesAdded,
            });
        }
        Ok(delivered)
    }

    /// Index this mailbox's full-text backlog if `schedule` says it is due, a batch per turn
    /// of the lock. Blocking. How many bodies were indexed.
    fn index_backlog(&self, schedule: &IndexSchedule) -> Result<usize> {
        let mut indexed = 0;
        let mut due_checked = false;
        loop {
            let mut guard = self.mailbox.lock().unwrap_or_else(|p| p.into_inner());
            let mailbox = guard.as_mut().as_mut();
            // Decided once per mailbox and sweep: once started, the backlog is taken whole,
            // even if a delivery lands between two batches.
            if !due_checked && !mailbox.index_is_due(schedule.quiet, schedule.cap)? {
                return Ok(0);
            }
            due_checked = true;
            let count = mailbox.index_pending(schedule.batch)?;
            drop(guard);
            indexed += count;
            if count < schedule.batch {
                return Ok(indexed);
            }
        }
    }

    /// Commit the waiting direct deliveries (none left when another thread took them first)
    /// durably, answer each, and announce them to the sessions. Blocking.
    fn commit_deliveries(&self) {
        let mut guard = self.mailbox.lock().unwrap_or_else(|p| p.into_inner());
        let pending =
            std::mem::take(&mut *self.deliveries.lock().unwrap_or_else(|p| p.into_inner()));
        if pending.is_empty() {
            return;
        }
        let mailbox = guard.as_mut().as_mut();
        let batch: Vec<(&[u8], AppendOptions)> = pending
            .iter()
            .map(|p| (p.raw.as_slice(), p.options.clone()))
            .collect();
        let results: Vec<Result<Appended>> = match append_durably(mailbox, &batch) {
            Ok(appended) => appended.into_iter().map(Ok).collect(),
            // One message may fail alone (quota, size): give each its own answer.
            Err(_) if batch.len() > 1 => batch
                .chunks(1)
                .map(|one| append_durably(mailbox, one).map(|mut a| a.remove(0)))
                .collect(),
            Err(error) => vec![Err(error)],
        };
        drop(guard);
        let last_modseq = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|a| a.modseq)
            .max();
        if let Some(modseq) = last_modseq {
            // No receivers is fine: the sessions may all be gone (a lingering mailbox).
            let _ = self.changes.send(Change {
                origin: DELIVERY_ORIGIN,
                folder: account::DELIVERY_FOLDER.to_string(),
                modseq,
                event: ChangeEvent::MessagesAdded,
            });
        }
        for (waiting, result) in pending.into_iter().zip(results) {
            // The deliverer may have given up (its client left); the message stays stored.
            let _ = waiting.done.send(result);
        }
    }
}

/// Append `batch` to the delivery folder with the commit synced to disk: the connection runs
/// with `synchronous=NORMAL`, whose WAL commits survive a process crash but not a power cut,
/// and a delivery answers SMTP 250 once it returns.
fn append_durably(
    mailbox: &mut Mailbox,
    batch: &[(&[u8], AppendOptions)],
) -> Result<Vec<Appended>> {
    mailbox.conn().execute_batch("PRAGMA synchronous = FULL")?;
    let appended = mailbox.append_many(account::DELIVERY_FOLDER, batch);
    let restored = mailbox.conn().execute_batch("PRAGMA synchronous = NORMAL");
    let appended = appended?;
    restored?;
    Ok(appended)
}

impl<O: MailboxOpener> LocalMailStore<O> {
    pub fn new(opener: O) -> Self {
        LocalMailStore {
            opener: Arc::new(opener),
            open: Mutex::new(HashMap::new()),
            linger: DEFAULT_LINGER,
        }
    }

    /// Change how long a mailbox stays open after its last session (zero closes at once).
    pub fn with_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// The shared state of the mailbox at `path`, using `opened` if it is not open yet; else
    /// `opened` is handed back to be closed.
    fn share(
        &self,
        mailbox_id: &MailboxId,
        path: &std::path::Path,
        mut opened: Box<dyn AsMut<Mailbox> + Send>,
        backup_source: Option<OpenMailboxSource>,
    ) -> (Arc<SharedMailbox>, Option<Box<dyn AsMut<Mailbox> + Send>>) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(shared) = open.get(path).and_then(Weak::upgrade) {
            return (shared, Some(opened));
        }
        open.retain(|_, weak| weak.strong_count() > 0);
        opened
            .as_mut()
            .as_mut()
            .set_inline_index_threshold(STORE_INLINE_INDEX_THRESHOLD);
        let shared = Arc::new(SharedMailbox {
            mailbox: Mutex::new(opened),
            changes: broadcast::channel(CHANGE_BUFFER).0,
            maildrop_locked: AtomicBool::new(false),
            mailbox_id: mailbox_id.clone(),
            backup_source,
            deliveries: Mutex::new(Vec::new()),
        });
        open.insert(path.to_path_buf(), Arc::downgrade(&shared));
        (shared, None)
    }

    /// Fold in mail that other processes sealed (`sealmail deliver`, the Node binding's
    /// `deliver()`) for every mailbox a session holds open right now, and announce it, so an
    /// IDLE client sees it without logging in again. MX in this process drains by itself
    /// ([`MailStore::drain_sealed_if_open`]); the server runs this every few seconds for the
    /// rest. Mailboxes with an empty queue cost one directory listing, without their lock.
    /// Blocking. Returns how many items were folded in; the first error, if any, after every
    /// mailbox had its turn.
    pub fn drain_sealed_for_open_mailboxes(&self) -> Result<usize> {
        let alive = self.alive_mailboxes();
        let mut delivered = 0;
        let mut first_error = None;
        for shared in alive {
            let drained = match self.opener.sealed_pending(&shared.mailbox_id) {
                Ok(0) => continue,
                Ok(_) => shared.drain_sealed(&*self.opener, &shared.mailbox_id),
                Err(error) => Err(error),
            };
            match drained {
                Ok(count) => delivered += count,
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(delivered), Err)
    }

    /// Index the bodies waiting for the full-text index (`store::fts_index`) in the mailboxes
    /// sessions hold open whose backlog `schedule` says is due, `schedule.batch` bodies per
    /// transaction: the server's background work, so a client's first text search rarely
    /// waits for it. The mailbox lock is taken per batch, so sessions' commands take turns
    /// with the indexing. Blocking. Returns how many bodies were indexed; the first error, if
    /// any, after every mailbox had its turn.
    pub fn index_open_mailboxes(&self, schedule: &IndexSchedule) -> Result<usize> {
        let alive = self.alive_mailboxes();
        // Mailboxes are separate files with locks of their own: as many are indexed at once
        // as there are cores, so a backlog left by a burst across many mailboxes is caught up
        // on all of them.
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(alive.len());
        let next = AtomicUsize::new(0);
        let outcomes: Vec<(usize, Option<Error>)> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let (mut indexed, mut first_error) = (0, None);
                        while let Some(shared) = alive.get(next.fetch_add(1, Ordering::Relaxed)) {
                            match shared.index_backlog(schedule) {
                                Ok(count) => indexed += count,
                                Err(error) => {
                                    first_error.get_or_insert(error);
                                }
                            }
                        }
                        (indexed, first_error)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|worker| worker.join().expect("a full-text indexing thread panicked"))
                .collect()
        });
        let mut indexed = 0;
        let mut first_error = None;
        for (count, error) in outcomes {
            indexed += count;
            if let Some(error) = error {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(indexed), Err)
    }

    /// The mailboxes sessions hold open right now (lingering ones included), with what a
    /// backup needs. The keys are copies: a caller must drop them when its backup is done.
    /// Blocking: if the last session ends meanwhile, its file is closed on this thread.
    pub fn open_mailboxes_for_backup(&self) -> Vec<OpenMailboxSource> {
        let alive = self.alive_mailboxes();
        alive
            .iter()
            .filter_map(|shared| shared.backup_source.clone())
            .collect()
    }
}

/// Run blocking work off the reactor; a panic in it is re-raised here.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(Error::Io(std::io::Error::other(
            "blocking task cancelled: runtime shutting down",
        ))),
    }
}

impl<O: MailboxOpener> MailStore for LocalMailStore<O> {
    type Session = LocalSession;

    async fn login(&self, address: &str, password: &str) -> Result<LocalSession> {
        let opener = Arc::clone(&self.opener);
        let address = address.to_string();
        let password = zeroize::Zeroizing::new(password.to_string());
        let (login, path) = blocking(move || {
            let login = opener.authenticate(&address, &password)?;
            let path = opener.mailbox_path(&login.mailbox_id);
            Ok((login, path))
        })
        .await?;
        let quota_limit = login.quota;
        let mailbox_id = login.mailbox_id.clone();
        let open_already = path.and_then(|path| {
            self.open
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&path)
                .and_then(Weak::upgrade)
        });
        let shared = match open_already {
            // Another session (or a lingering one) has the file open: the password is checked,
            // so share its connection; only mail sealed meanwhile needs folding in (below).
            Some(shared) => shared,
            None => {
                let opener = Arc::clone(&self.opener);
                let mut opened = blocking(move || opener.open(login)).await?;
                let path = (*opened.mailbox).as_mut().path().to_path_buf();
                let (shared, spare) =
                    self.share(&mailbox_id, &path, opened.mailbox, opened.backup_source);
                if let Some(spare) = spare {
                    tokio::task::spawn_blocking(move || drop(spare));
                }
                shared
            }
        };
        // Drain (again, after a fresh open) now that the mailbox is registered as open: an MX
        // that found it closed and sealed a message while the file was being opened either
        // finished writing before this listing, or looks for an open mailbox after it wrote
        // and finds this one (`drain_sealed_if_open`). Either way nothing waits for the next
        // login.
        let opener = Arc::clone(&self.opener);
        let held = Arc::clone(&shared);
        blocking(move || held.drain_sealed(&*opener, &mailbox_id)).await?;
        Ok(LocalSession {
            linger: self.linger,
            id: NEXT_SESSION_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            shared: Some(shared),
            quota_limit,
            holds_maildrop: AtomicBool::new(false),
        })
    }

    async fn deliver_if_open(
        &self,
        mailbox_id: &MailboxId,
        raw: Vec<u8>,
        options: AppendOptions,
    ) -> Result<Option<Appended>> {
        let Some(shared) = self.open_mailbox(mailbox_id) else {
            return Ok(None);
        };
        let answer = shared.enqueue_delivery(Arc::new(raw), options);
        // The last strong reference may be this one (the linger just ended): the file then
        // closes on the blocking thread, never on the reactor.
        blocking(move || {
            shared.commit_deliveries();
            Ok(())
        })
        .await?;
        delivery_outcome(answer.await)
    }

    fn deliver_if_open_blocking(
        &self,
        mailbox_id: &MailboxId,
        raw: Arc<Vec<u8>>,
        options: AppendOptions,
    ) -> Result<Option<Appended>> {
        let Some(shared) = self.open_mailbox(mailbox_id) else {
            return Ok(None);
        };
        let answer = shared.enqueue_delivery(raw, options);
        shared.commit_deliveries();
        // Usually answered by the commit just made; when another thread took this delivery
        // into its own commit, that thread answers once it has released the writer.
        delivery_outcome(answer.blocking_recv())
    }

    fn drain_sealed_if_open_blocking(&self, mailbox_id: &MailboxId) -> Result<Option<usize>> {
        let Some(shared) = self.open_mailbox(mailbox_id) else {
            return Ok(None);
        };
        shared.drain_sealed(&*self.opener, mailbox_id).map(Some)
    }

    async fn drain_sealed_if_open(&self, mailbox_id: &MailboxId) -> Result<Option<usize>> {
        let Some(shared) = self.open_mailbox(mailbox_id) else {
            return Ok(None);
        };
        let opener = Arc::clone(&self.opener);
        let mailbox_id = mailbox_id.clone();
        // On a blocking thread: the last strong reference may be this one, and closing the
        // file must not happen on the reactor.
        blocking(move || shared.drain_sealed(&*opener, &mailbox_id).map(Some)).await
    }
}

impl<O: MailboxOpener> LocalMailStore<O> {
    /// Every mailbox a session (or a lingering one) holds open right now.
    fn alive_mailboxes(&self) -> Vec<Arc<SharedMailbox>> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.values().filter_map(Weak::upgrade).collect()
    }

    /// The shared state of mailbox `mailbox_id` if a session (or a lingering one) holds it.
    fn open_mailbox(&self, mailbox_id: &MailboxId) -> Option<Arc<SharedMailbox>> {
        let path = self.opener.mailbox_path(mailbox_id)?;
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&path).and_then(Weak::upgrade)
    }
}

/// A session of [`LocalMailStore`]: the shared open mailbox, used from blocking threads.
pub struct LocalSession {
    id: u64,
    linger: Duration,
    /// `None` only inside `drop`, which moves it to a blocking thread.
    shared: Option<Arc<SharedMailbox>>,
    quota_limit: Option<u64>,
    /// This session took the maildrop lock and releases it on drop.
    holds_maildrop: AtomicBool,
}

impl LocalSession {
    fn shared(&self) -> &Arc<SharedMailbox> {
        self.shared
            .as_ref()
            .expect("the shared mailbox is present until drop")
    }

    /// Run `work` with the mailbox on a blocking thread.
    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Mailbox) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let shared = Arc::clone(self.shared());
        blocking(move || {
            let mut guard = shared.mailbox.lock().unwrap_or_else(|p| p.into_inner());
            work(guard.as_mut().as_mut())
        })
        .await
    }

    fn publish(&self, folder: &str, modseq: u64, event: ChangeEvent) {
        // No receivers is fine: nobody is watching this mailbox.
        let _ = self.shared().changes.send(Change {
            origin: self.id,
            folder: folder.to_string(),
            modseq,
            event,
        });
    }
}

impl Drop for LocalSession {
    /// Keep the mailbox open for the linger time (a reconnecting client finds it open), then
    /// release it on a blocking thread: closing a SQLite connection may checkpoint the WAL,
    /// which must not happen on the reactor.
    fn drop(&mut self) {
        if *self.holds_maildrop.get_mut()
            && let Some(shared) = &self.shared
        {
            shared.maildrop_locked.store(false, Ordering::Release);
        }
        if let (Ok(runtime), Some(shared)) =
            (tokio::runtime::Handle::try_current(), self.shared.take())
        {
            let linger = self.linger;
            runtime.spawn(async move {
                if !linger.is_zero() {
                    tokio::time::sleep(linger).await;
                }
                let _ = tokio::task::spawn_blocking(move || drop(shared)).await;
            });
        }
    }
}

impl MailSession for LocalSession {
    fn id(&self) -> u64 {
        self.id
    }

    async fn list_folders(&self) -> Result<Vec<FolderInfo>> {
        self.with(|m| m.list_folders()).await
    }

    async fn folder(&self, path: &str) -> Result<FolderInfo> {
        let path = path.to_string();
        self.with(move |m| m.folder(&path)).await
    }

    async fn highest_modseq(&self, path: &str) -> Result<u64> {
        let path = crate::store::normalize_folder_name(path)?;
        self.with(move |m| m.highest_modseq(&path)).await
    }

    async fn create_folder(&self, path: &str, special_use: Option<&str>) -> Result<FolderInfo> {
        let (path, special_use) = (path.to_string(), special_use.map(str::to_string));
        let info = self
            .with(move |m| m.create_folder(&path, special_use.as_deref()))
            .await?;
        self.publish(&info.path, 0, ChangeEvent::FolderCreated);
        Ok(info)
    }

    async fn delete_folder(&self, path: &str) -> Result<()> {
        let owned = path.to_string();
        self.with(move |m| m.delete_folder(&owned)).await?;
        self.publish(path, 0, ChangeEvent::FolderDeleted);
        Ok(())
    }

    async fn rename_folder(&self, from: &str, to: &str) -> Result<()> {
        let (f, t) = (from.to_string(), to.to_string());
        self.with(move |m| m.rename_folder(&f, &t)).await?;
        self.publish(from, 0, ChangeEvent::FolderRenamed { to: to.to_string() });
        Ok(())
    }

    async fn set_subscribed(&self, path: &str, subscribed: bool) -> Result<()> {
        let path = path.to_string();
        self.with(move |m| m.set_subscribed(&path, subscribed))
            .await
    }

    async fn append(
        &self,
        folder: &str,
        messages: Vec<(Vec<u8>, AppendOptions)>,
    ) -> Result<Vec<Appended>> {
        let owned = folder.to_string();
        let appended = self
            .with(move |m| {
                let batch: Vec<(&[u8], AppendOptions)> = messages
                    .iter()
                    .map(|(raw, options)| (raw.as_slice(), options.clone()))
                    .collect();
                m.append_many(&owned, &batch)
            })
            .await?;
        if let Some(last) = appended.last() {
            self.publish(folder, last.modseq, ChangeEvent::MessagesAdded);
        }
        Ok(appended)
    }

    async fn message_states(&self, folder: &str) -> Result<Vec<MessageState>> {
        let folder = folder.to_string();
        self.with(move |m| m.message_states(&folder)).await
    }

    async fn changed_since(&self, folder: &str, modseq: u64) -> Result<Vec<MessageState>> {
        let folder = folder.to_string();
        self.with(move |m| m.changed_since(&folder, modseq)).await
    }

    async fn folder_changes(
        &self,
        folder: &str,
        known_modseq: u64,
        expunged_after: Option<u64>,
    ) -> Result<FolderChanges> {
        let folder = crate::store::normalize_folder_name(folder)?;
        self.with(move |m| {
            let highest_modseq = m.highest_modseq(&folder)?;
            let expunged = match expunged_after {
                Some(after) if highest_modseq > after => Some(m.expunged_since(&folder, after)?),
                _ => None,
            };
            let changed = if highest_modseq > known_modseq {
                m.changed_since(&folder, known_modseq)?
            } else {
                Vec::new()
            };
            Ok(FolderChanges {
                highest_modseq,
                changed,
                expunged,
            })
        })
        .await
    }

    async fn expunged_since(&self, folder: &str, modseq: u64) -> Result<Vec<u32>> {
        let folder = folder.to_string();
        self.with(move |m| m.expunged_since(&folder, modseq)).await
    }

    async fn summaries(&self, folder: &str, uids: UidSet) -> Result<Vec<MessageSummary>> {
        let folder = folder.to_string();
        self.with(move |m| m.summaries(&folder, &uids)).await
    }

    async fn fetch_raw(&self, folder: &str, uids: UidSet) -> Result<Vec<RawMessage>> {
        let folder = folder.to_string();
        self.with(move |m| {
            // A few UIDs (the usual FETCH): look each up; a wide set: list the folder first.
            let requested: u64 = uids
                .ranges()
                .iter()
                .map(|&(a, b)| u64::from(b - a) + 1)
                .sum();
            let candidates: Vec<u32> = if requested <= 4096 {
                uids.ranges().iter().flat_map(|&(a, b)| a..=b).collect()
            } else {
                m.message_states(&folder)?
                    .into_iter()
                    .map(|s| s.uid)
                    .filter(|&uid| uids.contains(uid))
                    .collect()
            };
            let mut out = Vec::new();
            for uid in candidates {
                match m.fetch_raw(&folder, uid) {
                    Ok(bytes) => out.push(RawMessage { uid, bytes }),
                    // Never existed, or expunged by another session meanwhile.
                    Err(Error::NoSuchMessage(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
        .await
    }

    async fn set_flags(
        &self,
        folder: &str,
        uids: UidSet,
        mode: FlagMode,
        flags: Flags,
        unchanged_since: Option<u64>,
    ) -> Result<FlagsChanged> {
        let owned = folder.to_string();
        let changed = self
            .with(move |m| m.set_flags(&owned, &uids, mode, &flags, unchanged_since))
            .await?;
        if let Some(state) = changed.updated.first() {
            self.publish(folder, state.modseq, ChangeEvent::FlagsChanged);
        }
        Ok(changed)
    }

    async fn copy_messages(&self, from: &str, uids: UidSet, to: &str) -> Result<Copied> {
        let (f, t) = (from.to_string(), to.to_string());
        let copied = self.with(move |m| m.copy_messages(&f, &uids, &t)).await?;
        if !copied.pairs.is_empty() {
            self.publish(to, 0, ChangeEvent::MessagesAdded);
        }
        Ok(copied)
    }

    async fn move_messages(&self, from: &str, uids: UidSet, to: &str) -> Result<Copied> {
        let (f, t) = (from.to_string(), to.to_string());
        let moved = self.with(move |m| m.move_messages(&f, &uids, &t)).await?;
        if !moved.pairs.is_empty() {
            self.publish(to, 0, ChangeEvent::MessagesAdded);
            self.publish(from, 0, ChangeEvent::MessagesExpunged);
        }
        Ok(moved)
    }

    async fn expunge(&self, folder: &str, uids: Option<UidSet>) -> Result<Vec<u32>> {
        let owned = folder.to_string();
        let (expunged, modseq) = self
            .with(move |m| {
                let expunged = m.expunge(&owned, uids.as_ref())?;
                // The expunge's MODSEQ (the folder's newest, as the lock is still ours), so
                // the session that expunged knows its view is current.
                let modseq = match expunged.is_empty() {
                    true => 0,
                    false => m.highest_modseq(&owned)?,
                };
                Ok((expunged, modseq))
            })
            .await?;
        if !expunged.is_empty() {
            self.publish(folder, modseq, ChangeEvent::MessagesExpunged);
        }
        Ok(expunged)
    }

    async fn remove_messages(&self, folder: &str, uids: UidSet) -> Result<Vec<u32>> {
        let owned = folder.to_string();
        let removed = self.with(move |m| m.remove_messages(&owned, &uids)).await?;
        if !removed.is_empty() {
            self.publish(folder, 0, ChangeEvent::MessagesExpunged);
        }
        Ok(removed)
    }

    async fn lock_maildrop(&self) -> Result<bool> {
        if self.holds_maildrop.load(Ordering::Acquire) {
            return Ok(true);
        }
        let taken = self
            .shared()
            .maildrop_locked
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if taken {
            self.holds_maildrop.store(true, Ordering::Release);
        }
        Ok(taken)
    }

    async fn search(&self, folder: &str, key: SearchKey) -> Result<Vec<u32>> {
        let folder = folder.to_string();
        self.with(move |m| m.search(&folder, &key)).await
    }

    async fn sort(
        &self,
        folder: &str,
        criteria: Vec<SortCriterion>,
        key: SearchKey,
    ) -> Result<Vec<u32>> {
        let folder = folder.to_string();
        self.with(move |m| m.sort(&folder, &criteria, &key)).await
    }

    async fn thread(
        &self,
        folder: &str,
        algorithm: ThreadAlgorithm,
        key: SearchKey,
    ) -> Result<Threads> {
        let folder = folder.to_string();
        self.with(move |m| m.thread(&folder, algorithm, &key)).await
    }

    async fn quota(&self) -> Result<QuotaUsage> {
        let limit_bytes = self.quota_limit;
        self.with(move |m| {
            Ok(QuotaUsage {
                used_bytes: m.used_bytes()?,
                limit_bytes,
            })
        })
        .await
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.shared().changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{AccountOptions, KdfParams, RegistryOptions};

    /// Argon2id parameters small enough for tests.
    fn cheap_kdf() -> KdfParams {
        KdfParams {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        }
    }

    fn store(dir: &std::path::Path) -> LocalMailStore<Registry> {
        let registry = Registry::open_with(
            dir,
            RegistryOptions {
                create_if_missing: true,
                unknown_address_kdf: cheap_kdf(),
                ..RegistryOptions::default()
            },
        )
        .unwrap();
        registry
            .add_account(
                "a@example.org",
                Some("pw-long-enough"),
                &AccountOptions {
                    quota: Some(1 << 20),
                    with_recovery_code: false,
                    kdf: cheap_kdf(),
                },
            )
            .unwrap();
        LocalMailStore::new(registry)
    }

    /// The server's background indexing takes the bodies appends left for the full-text index
    /// in the mailboxes sessions hold open, in batches of the size asked for.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn index_open_mailboxes_takes_the_backlog_of_open_mailboxes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(store(dir.path()));
        let in_twos = IndexSchedule {
            batch: 2,
            ..IndexSchedule::NOW
        };
        assert_eq!(
            store.index_open_mailboxes(&in_twos).unwrap(),
            0,
            "nothing is open"
        );
        let session = store
            .login("a@example.org", "pw-long-enough")
            .await
            .unwrap();
        session.append("INBOX", notes(0..5)).await.unwrap();
        assert_eq!(backlog(&session).await, 5);
        assert_eq!(index_open(&store, &in_twos).await, 5);
        assert_eq!(backlog(&session).await, 0);

        // Several open mailboxes (indexed side by side): each backlog is taken.
        let mut sessions = vec![session];
        for address in ["b@example.org", "c@example.org"] {
            store
                .opener
                .add_account(
                    address,
                    Some("pw-long-enough"),
                    &AccountOptions {
                        quota: None,
                        with_recovery_code: false,
                        kdf: cheap_kdf(),
                    },
                )
                .unwrap();
            sessions.push(store.login(address, "pw-long-enough").await.unwrap());
        }
        for (i, session) in sessions.iter().enumerate() {
            session.append("INBOX", notes(0..3 + i)).await.unwrap();
        }
        assert_eq!(index_open(&store, &in_twos).await, 3 + 4 + 5);
        for session in &sessions {
            assert_eq!(backlog(session).await, 0);
        }
    }

    /// The background schedule leaves a mailbox whose backlog is still growing alone until it
    /// has been quiet for a while, unless the backlog reached the cap; the store's mailboxes
    /// do not index inline below the raised threshold.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn background_indexing_waits_for_the_burst_to_end_or_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(store(dir.path()));
        let session = store
            .login("a@example.org", "pw-long-enough")
            .await
            .unwrap();
        let while_busy = IndexSchedule {
            batch: 4,
            quiet: Duration::from_secs(3600),
            cap: 10,
        };
        session.append("INBOX", notes(0..6)).await.unwrap();
        assert_eq!(
            index_open(&store, &while_busy).await,
            0,
            "mail is still arriving"
        );
        assert_eq!(backlog(&session).await, 6);
        session.append("INBOX", notes(6..12)).await.unwrap();
        assert_eq!(
            index_open(&store, &while_busy).await,
            12,
            "the cap is reached"
        );
        assert_eq!(backlog(&session).await, 0);

        session.append("INBOX", notes(12..14)).await.unwrap();
        assert_eq!(index_open(&store, &while_busy).await, 0, "below the cap");
        tokio::time::sleep(Duration::from_millis(60)).await;
        let settled = IndexSchedule {
            quiet: Duration::from_millis(50),
            ..while_busy
        };
        assert_eq!(index_open(&store, &settled).await, 2, "quiet since");

        // Inline indexing (the default threshold is 256) waits for the store's threshold.
        let default_threshold = Mailbox::DEFAULT_INLINE_INDEX_THRESHOLD;
        let many = notes(100..100 + default_threshold as usize + 1);
        session.append("INBOX", many).await.unwrap();
        assert_eq!(backlog(&session).await, default_threshold + 1);
    }

    fn notes(range: std::ops::Range<usize>) -> Vec<(Vec<u8>, AppendOptions)> {
        range
            .map(|i| {
                let raw = format!("Subject: note {i}\r\n\r\nplatypus {i}\r\n");
                (raw.into_bytes(), AppendOptions::default())
            })
            .collect()
    }

    async fn index_open(store: &Arc<LocalMailStore<Registry>>, schedule: &IndexSchedule) -> usize {
        let (store, schedule) = (Arc::clone(store), schedule.clone());
        tokio::task::spawn_blocking(move || store.index_open_mailboxes(&schedule))
            .await
            .unwrap()
            .unwrap()
    }

    fn mailbox_id_of(store: &LocalMailStore<Registry>, address: &str) -> MailboxId {
        store.opener.lookup(address).unwrap().unwrap().mailbox_id
    }

    async fn backlog(session: &LocalSession) -> u64 {
        session
            .with(|mailbox| mailbox.index_backlog())
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn login_append_and_change_notification_across_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        assert!(matches!(
            store.login("a@example.org", "wrong").await,
            Err(Error::WrongPassword)
        ));
        assert!(matches!(
            store.login("nobody@example.org", "pw-long-enough").await,
            Err(Error::WrongPassword)
        ));
        let first = store
            .login("a@example.org", "pw-long-enough")
            .await
            .unwrap();
        let second = store
            .login("A@example.org", "pw-long-enough")
            .await
            .unwrap();
        let mut changes = second.subscribe();
        let appended = first
            .append(
                "INBOX",
                vec![(
                    b"Subject: hi\r\n\r\nbody\r\n".to_vec(),
                    AppendOptions::default(),
                )],
            )
            .await
            .unwrap();
        let change = changes.recv().await.unwrap();
        assert_eq!(change.folder, "INBOX");
        assert_eq!(change.event, ChangeEvent::MessagesAdded);
        assert_eq!(change.modseq, appended[0].modseq);
        // The second session reads what the first wrote.
        let states = second.message_states("INBOX").await.unwrap();
        assert_eq!(states.len(), 1);
        assert_eq!(states[0].uid, appended[0].uid);
        let raw = second
            .fetch_raw("INBOX", UidSet::from_uids([appended[0].uid, 999]))
            .await
            .unwrap();
        assert_eq!(raw.len(), 1);
        assert_eq!(raw[0].bytes, b"Subject: hi\r\n\r\nbody\r\n");
        // One maildrop lock per mailbox, released when its holder ends.
        assert!(first.lock_maildrop().await.unwrap());
        assert!(
            first.lock_maildrop().await.unwrap(),
            "re-entrant for its holder"
        );
        assert!(!second.lock_maildrop().await.unwrap());
        drop(first);
        assert!(second.lock_maildrop().await.unwrap());
        let removed = second
            .remove_messages("INBOX", UidSet::from_uids([appended[0].uid]))
            .await
            .unwrap();
        assert_eq!(removed, vec![appended[0].uid], "removed without \\Deleted");
        assert!(second.message_states("INBOX").await.unwrap().is_empty());
        let quota = second.quota().await.unwrap();
        assert_eq!(quota.limit_bytes, Some(1 << 20));
        assert!(quota.used_bytes > 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deliver_if_open_writes_into_an_open_mailbox_and_announces_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).with_linger(Duration::ZERO);
        let mailbox_id = mailbox_id_of(&store, "a@example.org");
        let raw = b"Subject: direct\r\n\r\nbody\r\n".to_vec();
        let offline = store
            .deliver_if_open(&mailbox_id, raw.clone(), AppendOptions::default())
            .await
            .unwrap();
        assert_eq!(offline, None, "nobody holds the mailbox: the caller seals");

        let session = store
            .login("a@example.org", "pw-long-enough")
            .await
            .unwrap();
        let mut changes = session.subscribe();
        // Concurrent deliveries share commits but each gets its own UID.
        let store = Arc::new(store);
        let deliveries: Vec<_> = (0..8)
            .map(|i| {
                let (store, mailbox_id) = (Arc::clone(&store), mailbox_id.clone());
                let raw = format!("Subject: direct {i}\r\n\r\nbody\r\n").into_bytes();
                tokio::spawn(async move {
                    store
                        .deliver_if_open(&mailbox_id, raw, AppendOptions::default())
                        .await
                })
            })
            .collect();
        let mut uids = Vec::new();
        for delivery in deliveries {
            let appended = delivery.await.unwrap().unwrap();
            uids.push(appended.expect("the mailbox is open").uid);
        }
        uids.sort_unstable();
        uids.dedup();
        assert_eq!(uids.len(), 8);
        let change = changes.recv().await.unwrap();
        assert_eq!(change.origin, DELIVERY_ORIGIN);
        assert_eq!(change.folder, "INBOX");
        assert_eq!(change.event, ChangeEvent::MessagesAdded);
        assert_eq!(session.message_states("INBOX").await.unwrap().len(), 8);

        // Too big for the quota: refused, and the mailbox is unchanged.
        let huge = vec![b'x'; 2 << 20];
        let refused = store
            .deliver_if_open(&mailbox_id, huge, AppendOptions::default())
            .await;
        assert!(
            matches!(refused, Err(Error::QuotaExceeded { .. })),
            "{refused:?}"
        );
        assert_eq!(session.message_states("INBOX").await.unwrap().len(), 8);

        // Once the last session is gone and the file closed (on a blocking thread), MX seals
        // again. Polling without delivering: each delivery into the still-open file would
        // count against the small quota.
        drop(session);
        let path = store.opener.mailbox_path(&mailbox_id).unwrap();
        let closed = async {
            while store
                .open
                .lock()
                .unwrap()
                .get(&path)
                .and_then(Weak::upgrade)
                .is_some()
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), closed)
            .await
            .expect("the mailbox closes once its last session ends");
        let after_close = store
            .deliver_if_open(&mailbox_id, raw, AppendOptions::default())
            .await
            .unwrap();
        assert_eq!(after_close, None, "nobody holds the mailbox any more");
    }

    /// The blocking forms answer as the async ones do: `None` while nobody holds the mailbox,
    /// else the message is committed, visible to the session and announced to it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocking_delivery_and_drain_write_into_an_open_mailbox_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(store(dir.path()).with_linger(Duration::ZERO));
        let mailbox_id = mailbox_id_of(&store, "a@example.org");
        let deliver = |subject: &str| {
            let (store, mailbox_id) = (Arc::clone(&store), mailbox_id.clone());
            let raw = Arc::new(format!("Subject: {subject}\r\n\r\nbody\r\n").into_bytes());
            tokio::task::spawn_blocking(move || {
                store.deliver_if_open_blocking(&mailbox_id, raw, AppendOptions::default())
            })
        };
        let drain = || {
            let (store, mailbox_id) = (Arc::clone(&store), mailbox_id.clone());
            tokio::task::spawn_blocking(move || store.drain_sealed_if_open_blocking(&mailbox_id))
        };
        assert_eq!(deliver("offline").await.unwrap().unwrap(), None);
        assert_eq!(drain().await.unwrap().unwrap(), None);

        let session = store
            .login("a@example.org", "pw-long-enough")
            .await
            .unwrap();
        let mut changes = session.subscribe();
        let appended = deliver("online")
            .await
            .unwrap()
            .unwrap()
            .expect("the mailbox is open");
        let change = changes.recv().await.unwrap();
        assert_eq!(change.origin, DELIVERY_ORIGIN);
        assert_eq!(change.event, ChangeEvent::MessagesAdded);
        assert_eq!(change.modseq, appended.modseq);
        let stored = session
            .fetch_raw("INBOX", UidSet::from_uids([appended.uid]))
            .await
            .unwrap();
        assert!(stored[0].bytes.starts_with(b"Subject: online\r\n"));
        assert_eq!(
            drain().await.unwrap().unwrap(),
            Some(0),
            "open, and nothing sealed waits"
        );
    }

    /// Deliveries that arrive while the writer is busy are committed together, and a message
    /// the batch cannot take (over quota) is refused alone: the others of its batch land, each
    /// exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deliveries_queued_behind_a_busy_writer_each_land_once_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(store(dir.path()));
        let mailbox_id = mailbox_id_of(&store, "a@example.org");
        // Room for the good messages committed one by one (the WAL counts as used), not for
        // the big one.
        store
            .opener
            .set_quota("a@example.org", Some(8 << 20))
            .unwrap();
        let session = store
            .login("a@example.org", "pw-long-enough")
            .await
            .unwrap();
        let shared = store.open_mailbox(&mailbox_id).unwrap();
        const GOOD: usize = 12;
        // The writer is busy (a thread holds its lock): every delivery below waits in line.
        let (held, writer_is_busy) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let busy_writer = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                let _busy = shared.mailbox.lock().unwrap();
                held.send(()).unwrap();
                let _ = released.recv();
            })
        };
        writer_is_busy.recv().unwrap();
        let mut deliveries = Vec::new();
        for i in 0..=GOOD {
            let raw = if i == GOOD / 2 {
                vec![b'x'; 9 << 20]
            } else {
                format!("Subject: batch {i}\r\n\r\nbody {i}\r\n").into_bytes()
            };
            let (store, mailbox_id) = (Arc::clone(&store), mailbox_id.clone());
            // Async and blocking callers share the line; a blocking caller whose message
            // another thread commits waits for that thread's answer.
            deliveries.push(if i % 2 == 1 {
                tokio::task::spawn_blocking(move || {
                    store.deliver_if_open_blocking(
                        &mailbox_id,
                        Arc::new(raw),
                        AppendOptions::default(),
                    )
                })
            } else {
                tokio::spawn(async move {
                    store
                        .deliver_if_open(&mailbox_id, raw, AppendOptions::default())
                        .await
                })
            });
        }
        let all_waiting = async {
            while shared.deliveries.lock().unwrap().len() < GOOD + 1 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), all_waiting)
            .await
            .expect("every delivery queues behind the busy writer");
        release.send(()).unwrap();
        busy_writer.join().unwrap();

        let mut uids = Vec::new();
        for (i, delivery) in deliveries.into_iter().enumerate() {
            let result = delivery.await.unwrap();
            if i == GOOD / 2 {
                assert!(
                    matches!(result, Err(Error::QuotaExceeded { .. })),
                    "the over-quota message fails alone: {result:?}"
                );
            } else {
                uids.push(result.unwrap().expect("the mailbox is open").uid);
            }
        }
        let mut distinct = uids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), GOOD, "one UID per delivered message");
        let stored = session
            .fetch_raw("INBOX", UidSet::from_uids(uids.iter().copied()))
            .await
            .unwrap();
        let mut subjects: Vec<String> = stored
            .iter()
            .map(|m| {
                String::from_utf8_lossy(&m.bytes)
                    .lines()
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect();
        subjects.sort();
        let mut expected: Vec<String> = (0..=GOOD)
            .filter(|i| *i != GOOD / 2)
            .map(|i| format!("Subject: batch {i}"))
            .collect();
        expected.sort();
        assert_eq!(subjects, expected, "each message stored exactly once");
        assert_eq!(session.message_states("INBOX").await.unwrap().len(), GOOD);
    }
}

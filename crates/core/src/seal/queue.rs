//! The sealed queue: mail for a mailbox whose key is not in memory, one sealed file per message.
//!
//! Layout: `<data_dir>/queue/<mailbox id>/<item id>.sealed`, temp files `.tmp-<item id>` beside
//! them while being written, and damaged items moved to `quarantine/`. The server can write here
//! but holds no key that reads anything back.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zeroize::Zeroizing;

use super::envelope::{open_with_context, seal_with_context, sealed_key_id};
use super::keys::{SealingPublicKey, SealingSecretKey};
use crate::error::{Error, Result};
use crate::key::random_bytes;

const SEALED_SUFFIX: &str = ".sealed";
const TEMP_PREFIX: &str = ".tmp-";
const QUARANTINE_DIR: &str = "quarantine";
/// A temp file this old belongs to a writer that crashed: no enqueue takes a minute.
const STALE_TEMP_AGE: Duration = Duration::from_secs(60);
/// Mailbox ids are 96 random bits in lowercase hex (see ARCHITECTURE.md).
const MAILBOX_ID_LEN: usize = 24;

/// The on-disk queue of sealed mail, rooted at `<data_dir>/queue`.
#[derive(Debug, Clone)]
pub struct SealedQueue {
    root: PathBuf,
}

/// What a [`SealedQueue::drain`] did.
#[derive(Debug, Default)]
pub struct DrainReport {
    /// Items handed to `deliver` and then removed, in arrival order.
    pub delivered: Vec<ItemId>,
    /// Damaged items moved to the `quarantine/` folder so they no longer block the queue. The
    /// caller should log them: they are mail that was accepted and cannot be delivered.
    pub quarantined: Vec<QuarantinedItem>,
    /// Items whose header names a different recipient key (sealed before a key change, or a
    /// damaged key id). Left in place: a drain with the wrong key must not destroy the queue.
    pub sealed_to_other_key: Vec<ItemId>,
}

/// What waits for one mailbox, as `sealmail queue list` and the metrics show it: counts,
/// sizes and times only, never anything from inside an item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueSummary {
    /// Items waiting for the owner's next login.
    pub pending: usize,
    /// Their bytes on disk (sealed).
    pub bytes: u64,
    /// The oldest waiting item's id (its arrival time is [`ItemId::arrived_at`]).
    pub oldest: Option<ItemId>,
    /// Items a drain set aside as damaged.
    pub quarantined: usize,
}

/// An item set aside by a drain, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedItem {
    pub id: ItemId,
    pub reason: &'static str,
}

impl SealedQueue {
    pub fn new(data_dir: impl AsRef<Path>) -> Self {
        Self {
            root: data_dir.as_ref().join("queue"),
        }
    }

    /// `<data_dir>/queue`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Seal `raw_message` to `recipient` and store it durably. When this returns `Ok`, the item
    /// survives a crash or power loss: it was written under a temp name, fsynced, renamed, and the
    /// directory fsynced. Only then may SMTP answer 250.
    pub fn enqueue(
        &self,
        mailbox_id: &str,
        recipient: &SealingPublicKey,
        raw_message: &[u8],
    ) -> Result<ItemId> {
        let dir = self.mailbox_dir(mailbox_id)?;
        let id = ItemId::generate();
        let sealed = seal_with_context(recipient, id.as_str().as_bytes(), raw_message)?;
        ensure_dir_durable(&dir)?;

        let temp_path = dir.join(format!("{TEMP_PREFIX}{id}"));
        if let Err(error) = write_synced(&temp_path, &sealed) {
            let _ = fs::remove_file(&temp_path);
            return Err(error.into());
        }
        if let Err(error) = fs::rename(&temp_path, item_path(&dir, &id)) {
            let _ = fs::remove_file(&temp_path);
            return Err(error.into());
        }
        // If this last fsync fails the caller answers with a temporary failure although the
        // item may survive: the sender's retry can then duplicate, SMTP's usual trade against loss.
        DirectorySync::for_dir(&dir).rename_done_then_sync()?;
        Ok(id)
    }

    /// The mailbox ids that have a queue directory (items waiting, quarantined, or an empty
    /// directory left by a drain), sorted. Anything else under the root is ignored.
    pub fn mailbox_ids(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error.into()),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str()
                && validate_mailbox_id(name).is_ok()
                && entry.file_type()?.is_dir()
            {
                ids.push(name.to_owned());
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Counts, bytes and the oldest arrival of what waits for `mailbox_id`.
    pub fn summary(&self, mailbox_id: &str) -> Result<QueueSummary> {
        let pending = self.list(mailbox_id)?;
        Ok(QueueSummary {
            pending: pending.len(),
            bytes: self.pending_bytes(mailbox_id)?,
            oldest: pending.into_iter().next(),
            quarantined: self.list_quarantined(mailbox_id)?.len(),
        })
    }

    /// Ids of the items waiting for `mailbox_id`, oldest first. Temp files, quarantined items and
    /// anything else that is not a well-formed item name are ignored.
    pub fn list(&self, mailbox_id: &str) -> Result<Vec<ItemId>> {
        let dir = self.mailbox_dir(mailbox_id)?;
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error.into()),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SEALED_SUFFIX)) else {
                continue;
            };
            if let Ok(id) = ItemId::parse(stem)
                && entry.file_type()?.is_file()
            {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// How many items wait for `mailbox_id`.
    pub fn pending_count(&self, mailbox_id: &str) -> Result<usize> {
        Ok(self.list(mailbox_id)?.len())
    }

    /// Bytes on disk of the items waiting for `mailbox_id`. Quota checks add this to the
    /// mailbox's recorded use, so mail for an owner who stays away cannot grow without bound.
    pub fn pending_bytes(&self, mailbox_id: &str) -> Result<u64> {
        let dir = self.mailbox_dir(mailbox_id)?;
        let mut total = 0u64;
        for id in self.list(mailbox_id)? {
            match fs::metadata(item_path(&dir, &id)) {
                Ok(metadata) => total = total.saturating_add(metadata.len()),
                // Drained between the listing and now: no longer pending.
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(total)
    }

    /// The sealed bytes of one item.
    pub fn read(&self, mailbox_id: &str, id: &ItemId) -> Result<Vec<u8>> {
        let dir = self.mailbox_dir(mailbox_id)?;
        Ok(fs::read(item_path(&dir, id))?)
    }

    /// Read and open one item with the mailbox's secret key.
    pub fn open_item(
        &self,
        mailbox_id: &str,
        secret: &SealingSecretKey,
        id: &ItemId,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let sealed = self.read(mailbox_id, id)?;
        open_with_context(secret, id.as_str().as_bytes(), &sealed)
    }

    /// Remove one item; removing an item that is already gone is not an error.
    pub fn remove(&self, mailbox_id: &str, id: &ItemId) -> Result<()> {
        let dir = self.mailbox_dir(mailbox_id)?;
        if remove_if_present(&item_path(&dir, id))? {
            sync_dir(&dir)?;
        }
        Ok(())
    }

    /// Open every waiting item in arrival order, hand it to `deliver`, then remove it.
    ///
    /// `deliver` must make the message durable in the mailbox and record the [`ItemId`] in the
    /// same transaction, and skip ids it has already recorded: a crash after `deliver` and before
    /// the removal is durable (removals are fsynced once, at the end of the drain) offers the same
    /// item again on the next drain. If `deliver` fails, the drain
    /// stops with that error and the item stays queued. Damaged items go to quarantine and items
    /// for another key stay in place; both are listed in the report.
    pub fn drain<F>(
        &self,
        mailbox_id: &str,
        secret: &SealingSecretKey,
        mut deliver: F,
    ) -> Result<DrainReport>
    where
        F: FnMut(&ItemId, Zeroizing<Vec<u8>>) -> Result<()>,
    {
        let dir = self.mailbox_dir(mailbox_id)?;
        let mut report = DrainReport::default();
        self.clean_stale_temp_files(mailbox_id)?;
        let expected_key_id = secret.public_key().key_id();
        for id in self.list(mailbox_id)? {
            let sealed = match fs::read(item_path(&dir, &id)) {
                Ok(sealed) => sealed,
                // Taken by a concurrent drain between our listing and this read.
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error.into()),
            };
            if let Some(key_id) = sealed_key_id(&sealed)
                && key_id != expected_key_id
            {
                report.sealed_to_other_key.push(id);
                continue;
            }
            match open_with_context(secret, id.as_str().as_bytes(), &sealed) {
                Ok(message) => {
                    if let Err(error) = deliver(&id, message) {
                        if !report.delivered.is_empty() {
                            sync_dir(&dir)?;
                        }
                        return Err(error);
                    }
                    remove_if_present(&item_path(&dir, &id))?;
                    report.delivered.push(id);
                }
                Err(Error::SealedItemCorrupt(reason)) => {
                    self.quarantine(&dir, &id)?;
                    report.quarantined.push(QuarantinedItem { id, reason });
                }
                Err(error) => return Err(error),
            }
        }
        // One directory fsync for all removals instead of one per item: a removal lost in a
        // crash only re-offers an item the store has already recorded, and so skips.
        if !report.delivered.is_empty() {
            sync_dir(&dir)?;
        }
        Ok(report)
    }

    /// Remove temp files left by writers that crashed mid-enqueue (older than a minute, so a
    /// write in progress is never touched). Returns how many were removed.
    pub fn clean_stale_temp_files(&self, mailbox_id: &str) -> Result<usize> {
        let dir = self.mailbox_dir(mailbox_id)?;
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(error) => return Err(error.into()),
        };
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            let is_temp = entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.starts_with(TEMP_PREFIX));
            if !is_temp {
                continue;
            }
            let modified = entry.metadata()?.modified()?;
            let is_stale = now
                .duration_since(modified)
                .is_ok_and(|age| age > STALE_TEMP_AGE);
            if is_stale && remove_if_present(&entry.path())? {
                removed += 1;
            }
        }
        if removed > 0 {
            sync_dir(&dir)?;
        }
        Ok(removed)
    }

    /// Ids of the items in quarantine for `mailbox_id`, oldest first.
    pub fn list_quarantined(&self, mailbox_id: &str) -> Result<Vec<ItemId>> {
        let dir = self.mailbox_dir(mailbox_id)?.join(QUARANTINE_DIR);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error.into()),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let name = entry?.file_name();
            if let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(SEALED_SUFFIX))
                .and_then(|stem| ItemId::parse(stem).ok())
            {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Delete everything queued for `mailbox_id`, quarantine included (account removal).
    pub fn purge(&self, mailbox_id: &str) -> Result<()> {
        let dir = self.mailbox_dir(mailbox_id)?;
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(sync_dir(&self.root)?),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    fn mailbox_dir(&self, mailbox_id: &str) -> Result<PathBuf> {
        validate_mailbox_id(mailbox_id)?;
        Ok(self.root.join(mailbox_id))
    }

    fn quarantine(&self, dir: &Path, id: &ItemId) -> Result<()> {
        let quarantine_dir = dir.join(QUARANTINE_DIR);
        ensure_dir_durable(&quarantine_dir)?;
        fs::rename(item_path(dir, id), item_path(&quarantine_dir, id))?;
        sync_dir(&quarantine_dir)?;
        Ok(sync_dir(dir)?)
    }
}

/// Check that `mailbox_id` is 24 lowercase hex characters, so it can never name anything but
/// one directory under the queue root.
pub fn validate_mailbox_id(mailbox_id: &str) -> Result<()> {
    let well_formed = mailbox_id.len() == MAILBOX_ID_LEN
        && mailbox_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if well_formed {
        Ok(())
    } else {
        Err(Error::InvalidMailboxId(shorten(mailbox_id)))
    }
}

/// The id of a queued item: `<arrival, ns since the Unix epoch, 20 digits>-<16 hex random>`.
///
/// Ids sort in arrival order (ids made by one process are strictly increasing), never contain a
/// path separator, and are bound into the item's seal, so the arrival time they carry is
/// authenticated: a file renamed to another id no longer opens.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ItemId(String);

const ITEM_ID_TIME_DIGITS: usize = 20;
const ITEM_ID_RANDOM_BYTES: usize = 8;

impl ItemId {
    /// Length of every item id in characters.
    pub const LEN: usize = ITEM_ID_TIME_DIGITS + 1 + 2 * ITEM_ID_RANDOM_BYTES;

    /// Validate an id read from a file name, the store, or a client.
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = || Error::InvalidItemId(shorten(text));
        if text.len() != Self::LEN {
            return Err(invalid());
        }
        let (time, rest) = text.split_at(ITEM_ID_TIME_DIGITS);
        let Some(random) = rest.strip_prefix('-') else {
            return Err(invalid());
        };
        let time_ok = time.bytes().all(|b| b.is_ascii_digit()) && time.parse::<u64>().is_ok();
        let random_ok = random
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if time_ok && random_ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(invalid())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// When the item was queued, in nanoseconds since the Unix epoch.
    pub fn arrived_at_unix_nanos(&self) -> u64 {
        self.0[..ITEM_ID_TIME_DIGITS]
            .parse()
            .expect("validated when the id was made")
    }

    /// When the item was queued: the IMAP internal date of the delivered message.
    pub fn arrived_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.arrived_at_unix_nanos())
    }

    fn generate() -> Self {
        // Strictly increasing within the process even if two messages arrive in the same
        // nanosecond or the wall clock steps back, so arrival order is total for one server.
        static LAST_NANOS: AtomicU64 = AtomicU64::new(0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let previous = LAST_NANOS
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(now.max(last.saturating_add(1)))
            })
            .expect("the update closure always returns Some");
        let nanos = now.max(previous.saturating_add(1));
        let random = hex::encode(random_bytes::<ITEM_ID_RANDOM_BYTES>());
        Self(format!("{nanos:0ITEM_ID_TIME_DIGITS$}-{random}"))
    }
}

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ItemId({})", self.0)
    }
}

impl FromStr for ItemId {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        Self::parse(text)
    }
}

impl TryFrom<String> for ItemId {
    type Error = Error;

    fn try_from(text: String) -> Result<Self> {
        Self::parse(&text)
    }
}

impl From<ItemId> for String {
    fn from(id: ItemId) -> Self {
        id.0
    }
}

fn item_path(dir: &Path, id: &ItemId) -> PathBuf {
    dir.join(format!("{id}{SEALED_SUFFIX}"))
}

/// Bad input echoed in an error message, cut short so a hostile client cannot fill the logs.
fn shorten(text: &str) -> String {
    text.chars().take(64).collect()
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Create `dir` (and missing parents) so that the new directory entries survive a crash.
fn ensure_dir_durable(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().expect("queue directories have a parent");
    ensure_dir_durable(parent)?;
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(dir) {
        Ok(()) => sync_dir(parent),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

/// Remove a file; `Ok(false)` if it was already gone (taken by a concurrent drain).
fn remove_if_present(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

/// fsync a directory, making the creations, renames and removals inside it durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Group commit of one queue directory's fsyncs. Concurrent enqueues to one mailbox each
/// rename their item into the directory and then need a directory fsync before their 250; one
/// fsync that starts after a rename finished makes that rename durable, so the enqueues that
/// finish their renames while a directory fsync runs share the next one instead of queueing
/// for one each. The first enqueue to arrive syncs at once: nobody waits for company.
#[derive(Debug)]
struct DirectorySync {
    dir: PathBuf,
    state: Mutex<DirectorySyncState>,
    /// Signalled whenever a directory fsync ends, well or badly.
    sync_ended: Condvar,
}

#[derive(Debug, Default)]
struct DirectorySyncState {
    /// Tickets handed out: one per rename finished in the directory.
    renamed: u64,
    /// Every rename with a ticket up to this one is durable.
    durable: u64,
    /// A failed fsync covered the renames up to this ticket: their enqueues report the error.
    failed_through: u64,
    /// A thread is running a directory fsync now.
    syncing: bool,
}

/// The [`DirectorySync`] of each queue directory some enqueue in this process is using.
static DIRECTORY_SYNCS: LazyLock<Mutex<HashMap<PathBuf, Weak<DirectorySync>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

impl DirectorySync {
    fn for_dir(dir: &Path) -> Arc<DirectorySync> {
        let mut syncs = DIRECTORY_SYNCS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sync) = syncs.get(dir).and_then(Weak::upgrade) {
            return sync;
        }
        syncs.retain(|_, sync| sync.strong_count() > 0);
        let sync = Arc::new(DirectorySync {
            dir: dir.to_path_buf(),
            state: Mutex::new(DirectorySyncState::default()),
            sync_ended: Condvar::new(),
        });
        syncs.insert(dir.to_path_buf(), Arc::downgrade(&sync));
        sync
    }

    /// Call after a rename into the directory finished: returns once a directory fsync that
    /// started after it has succeeded (run here, or by a concurrent enqueue), or with the error
    /// of the fsync that covered it.
    fn rename_done_then_sync(&self) -> io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.renamed += 1;
        let ticket = state.renamed;
        loop {
            if state.durable >= ticket {
                return Ok(());
            }
            if state.failed_through >= ticket {
                return Err(io::Error::other("fsync of the queue directory failed"));
            }
            if !state.syncing {
                break;
            }
            state = self
                .sync_ended
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
        // Every rename ticketed so far has finished, so this fsync covers them all.
        let covers = state.renamed;
        state.syncing = true;
        drop(state);
        let result = sync_dir(&self.dir);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.syncing = false;
        match &result {
            Ok(()) => state.durable = state.durable.max(covers),
            Err(_) => state.failed_through = state.failed_through.max(covers),
        }
        drop(state);
        self.sync_ended.notify_all();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_increase() {
        let ids: Vec<ItemId> = (0..1000).map(|_| ItemId::generate()).collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{:?} !< {:?}", pair[0], pair[1]);
            assert!(pair[0].arrived_at_unix_nanos() < pair[1].arrived_at_unix_nanos());
        }
        for id in &ids {
            assert_eq!(&ItemId::parse(id.as_str()).unwrap(), id);
        }
    }

    #[test]
    fn arrival_time_is_close_to_now() {
        let before = SystemTime::now() - Duration::from_secs(1);
        let id = ItemId::generate();
        let after = SystemTime::now() + Duration::from_secs(1);
        assert!(id.arrived_at() > before && id.arrived_at() < after);
    }

    #[test]
    fn serde_round_trip_validates() {
        let id = ItemId::generate();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<ItemId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<ItemId>("\"../../etc/passwd\"").is_err());
    }
}

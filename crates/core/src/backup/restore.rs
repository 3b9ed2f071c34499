//! Restore a backup version into a data directory, crash-safely.
//!
//! The version is copied beside the mailbox file, its SHA-256 and size are checked against the
//! manifest, it is opened with the key and passes `integrity_check` and the row counts, and only
//! then is it renamed over the live file. Until that rename the live file is untouched (a wrong
//! password or a damaged backup changes nothing); the previous file is kept aside as a hard
//! link until the swap is done. When the backup's key differs from the account's current key
//! (a key rotation happened since), the key is recorded as the account's *pending* key before
//! the swap and promoted after it, so at every instant a key the registry holds opens the file.

use super::manifest::BackupManifest;
use super::snapshot::{ensure_free_space, lock_mailbox, sha256_file, sync_dir, sync_file};
use super::target::{BackupTarget, VersionSelector};
use crate::error::{Error, Result};
use crate::key::MailboxKey;
use crate::registry::{Login, MailboxId, Registry};
use crate::store::{KeyUsed, Mailbox, SCHEMA_VERSION, ignore_missing, open_verified, sibling};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// What to restore, and for whom.
#[derive(Debug, Clone)]
pub struct RestoreRequest<'a> {
    pub address: &'a str,
    /// The account's current password or, for an account not in the registry, the password
    /// that was current when the backup was taken.
    pub password: &'a str,
    pub version: VersionSelector,
    /// Which mailbox at the target, for an address the registry does not know. When `None`,
    /// every mailbox at the target whose manifest the password opens is a candidate, and
    /// exactly one must match.
    pub mailbox_id: Option<MailboxId>,
    /// The caller knows a session has the mailbox open: the restore is refused.
    pub session_open: bool,
}

/// The points between restore steps; a test hook may fail at any of them to simulate a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreStep {
    /// The version is copied beside the mailbox and its hash matches the manifest.
    Downloaded,
    /// The copy opens with the key and passes the integrity check and row counts.
    Verified,
    /// The backup's key (different from the account's) is recorded as the pending key.
    PendingKeyRecorded,
    /// The live file is checkpointed and kept aside under a second name.
    PreviousKeptAside,
    /// The copy replaced the live file.
    Swapped,
    /// The registry points at the restored file (key promoted or account registered).
    Registered,
}

/// What a restore did.
#[derive(Debug)]
pub struct RestoreOutcome {
    pub mailbox_id: MailboxId,
    pub manifest: BackupManifest,
    /// The registry had no account for the address; one was created with the backup's
    /// password wrapping.
    pub account_created: bool,
    /// The backup's key replaced the account's key; the old recovery code wrapped the old key,
    /// so a fresh one was made and must be shown to the owner.
    pub new_recovery_code: Option<Zeroizing<String>>,
}

/// Restore a backup version of `request.address` from `target` into `registry`'s data
/// directory. `hook` runs after each step (tests inject failures to simulate crashes).
pub fn restore(
    registry: &Registry,
    target: &BackupTarget,
    request: &RestoreRequest<'_>,
    mut hook: impl FnMut(RestoreStep) -> Result<()>,
) -> Result<RestoreOutcome> {
    if request.session_open {
        return Err(Error::MailboxInUse(request.address.to_owned()));
    }
    let existing = registry.lookup(request.address)?;
    let (mailbox_id, mut login) = match existing {
        Some(info) => (
            info.mailbox_id,
            Some(registry.login(request.address, request.password)?),
        ),
        None => match &request.mailbox_id {
            Some(id) => (id.clone(), None),
            None => (find_by_password(target, request)?, None),
        },
    };
    if let Some(requested) = &request.mailbox_id
        && *requested != mailbox_id
    {
        return Err(Error::InvalidArgument(format!(
            "{} has mailbox {mailbox_id}, not {requested}",
            request.address
        )));
    }
    let manifest = target.select_version(&mailbox_id, &request.version)?;
    let live = registry.mailbox_path(&mailbox_id);
    let dir = live
        .parent()
        .expect("a mailbox path has a parent directory")
        .to_path_buf();
    let _lock = lock_mailbox(&live, mailbox_id.as_str())?;
    let mut new_recovery_code = None;

    // A rotation interrupted after its swap left the live file keyed with the pending key:
    // finish it first, so the account's current key opens the live file again.
    if let Some(current) = &login
        && let Some(pending) = &current.pending_key
        && live.is_file()
        && Mailbox::open_with_keys(&live, &current.key, Some(pending))?.1 == KeyUsed::Pending
    {
        new_recovery_code = registry.promote_pending_key(&mailbox_id, pending)?;
        login = Some(registry.login(request.address, request.password)?);
    }

    // From here until the swap, no other connection (a running server, another process) may
    // have the live file open: it would keep writing to the file set aside, or see the new one
    // under its feet. Held exclusively, others are refused (and, after their busy timeout,
    // fail to open it) until the swap is done.
    let held = match &login {
        Some(login) if live.exists() => hold_live_file(&live, login, &mailbox_id)?,
        _ => None,
    };

    let restoring = sibling(&live, ".restoring");
    let previous = sibling(&live, ".previous");
    for stale in [&restoring, &previous] {
        std::fs::remove_file(stale).or_else(ignore_missing)?;
    }
    std::fs::create_dir_all(&dir)?;
    ensure_free_space(&dir, manifest.size)?;
    target.fetch_version(&manifest, &restoring)?;
    let (sha256, size) = sha256_file(&restoring)?;
    if sha256 != manifest.sha256 || size != manifest.size {
        std::fs::remove_file(&restoring)?;
        return Err(Error::BackupDamaged {
            mailbox_id: mailbox_id.to_string(),
            version: manifest.version.clone(),
            reason: format!(
                "expected {} bytes with SHA-256 {}, found {size} bytes with {sha256}",
                manifest.size, manifest.sha256
            ),
        });
    }
    hook(RestoreStep::Downloaded)?;

    let key = match backup_key(&restoring, &manifest, login.as_ref(), request.password) {
        Ok(key) => key,
        Err(error) => {
            std::fs::remove_file(&restoring)?;
            return Err(error);
        }
    };
    hook(RestoreStep::Verified)?;

    let key_changes = login
        .as_ref()
        .is_some_and(|current| !bool::from(current.key.as_bytes().ct_eq(key.as_bytes())));
    if let Some(current) = &login
        && key_changes
    {
        if current.pending_key.is_some() {
            // The live file opens with the current key (checked above): the pending key of an
            // abandoned rotation or restore never took effect.
            registry.clear_pending_key(&mailbox_id)?;
        }
        registry.set_pending_key(request.address, request.password, &key)?;
        hook(RestoreStep::PendingKeyRecorded)?;
    }

    if live.exists() {
        set_live_file_aside(&live, &previous, held.as_ref(), &mailbox_id)?;
        hook(RestoreStep::PreviousKeptAside)?;
    }
    sync_file(&restoring)?;
    std::fs::rename(&restoring, &live)?;
    sync_dir(&dir)?;
    // The connection holds the file now named `.previous`; it leaves no WAL to clean up.
    drop(held);
    hook(RestoreStep::Swapped)?;

    let mut account_created = false;
    if key_changes {
        new_recovery_code = registry.promote_pending_key(&mailbox_id, &key)?;
    } else if login.is_none() {
        registry.add_restored_account(request.address, &manifest.credential()?)?;
        account_created = true;
    }
    hook(RestoreStep::Registered)?;

    for leftover in [previous, sibling(&live, ".previous-wal")] {
        std::fs::remove_file(leftover).or_else(ignore_missing)?;
    }
    sync_dir(&dir)?;
    Ok(RestoreOutcome {
        mailbox_id,
        manifest,
        account_created,
        new_recovery_code,
    })
}

/// The key that opens the downloaded copy: the account's current key first (the usual case,
/// and it needs no second Argon2id run), else the key wrapped in the manifest under the same
/// password. The copy must pass the integrity check, hold the rows the manifest promises and
/// not be newer than this build.
fn backup_key(
    copy: &Path,
    manifest: &BackupManifest,
    login: Option<&Login>,
    password: &str,
) -> Result<MailboxKey> {
    if let Some(login) = login
        && let Ok(()) = check_copy(copy, manifest, &login.key)
    {
        return Ok(login.key.clone());
    }
    let key = manifest.unwrap_key(password)?;
    check_copy(copy, manifest, &key)?;
    Ok(key)
}

fn check_copy(copy: &Path, manifest: &BackupManifest, key: &MailboxKey) -> Result<()> {
    let (conn, rows) = open_verified(copy, key)?;
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if rows != manifest.rows {
        return Err(Error::BackupDamaged {
            mailbox_id: manifest.mailbox_id.to_string(),
            version: manifest.version.clone(),
            reason: format!(
                "the manifest lists {:?}, the file holds {rows:?}",
                manifest.rows
            ),
        });
    }
    Ok(())
}

/// Make the live file self-contained and keep it under a second name. When a key opened it
/// (`held`), its WAL is checkpointed into it (TRUNCATE) and the file leaves WAL mode, so the
/// held connection has no WAL to remove when it closes after the swap (it would remove the
/// restored file's, by name); a WAL that cannot be checkpointed (a file no key opens) is moved
/// aside with it, never left to be replayed onto the restored file.
fn set_live_file_aside(
    live: &Path,
    previous: &Path,
    held: Option<&Connection>,
    mailbox_id: &MailboxId,
) -> Result<()> {
    if let Some(conn) = held {
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy != 0 {
            return Err(Error::MailboxInUse(mailbox_id.to_string()));
        }
        let mode: String = conn.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(Error::MailboxInUse(mailbox_id.to_string()));
        }
    }
    std::fs::hard_link(live, previous)?;
    let wal = sibling(live, "-wal");
    if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
        std::fs::rename(&wal, sibling(live, ".previous-wal"))?;
    } else {
        std::fs::remove_file(&wal).or_else(ignore_missing)?;
    }
    std::fs::remove_file(sibling(live, "-shm")).or_else(ignore_missing)?;
    if let Some(dir) = live.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Open the live file with the account's key (or its pending key) in exclusive locking mode:
/// the first read takes an exclusive lock on the file, which fails at once while any other
/// connection, in this process or another, has it open (a WAL connection keeps a shared lock
/// on the file for as long as it is open, idle or not). `Ok(None)` when no key of the account
/// opens the file; [`Error::MailboxInUse`] when another connection has it.
fn hold_live_file(
    path: &Path,
    login: &Login,
    mailbox_id: &MailboxId,
) -> Result<Option<Connection>> {
    for key in std::iter::once(&login.key).chain(login.pending_key.as_ref()) {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        // No busy timeout: an open connection elsewhere is an answer, not something to wait
        // out (a session may keep the mailbox open for hours).
        let exclusive = |conn: &Connection| {
            conn.execute_batch("PRAGMA busy_timeout = 0; PRAGMA locking_mode = EXCLUSIVE;")
        };
        match crate::key::open_keyed(path, flags, key, exclusive) {
            Ok(conn) => return Ok(Some(conn)),
            Err(rusqlite::Error::SqliteFailure(failure, _))
                if matches!(
                    failure.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                return Err(Error::MailboxInUse(mailbox_id.to_string()));
            }
            // This key does not open the file: try the next.
            Err(_) => continue,
        }
    }
    Ok(None)
}

/// The one mailbox at the target whose manifest (of the requested version) the password opens.
fn find_by_password(target: &BackupTarget, request: &RestoreRequest<'_>) -> Result<MailboxId> {
    let mut matches = Vec::new();
    for id in target.list_mailboxes()? {
        let manifest = match target.select_version(&id, &request.version) {
            Ok(manifest) => manifest,
            Err(Error::NoSuchBackup { .. }) => continue,
            Err(e) => return Err(e),
        };
        match manifest.unwrap_key(request.password) {
            Ok(_) => matches.push(id),
            Err(Error::WrongPassword) => {}
            Err(e) => return Err(e),
        }
    }
    match matches.len() {
        0 => Err(Error::WrongPassword),
        1 => Ok(matches.remove(0)),
        n => Err(Error::InvalidArgument(format!(
            "the password opens {n} backups at this target; name the mailbox id"
        ))),
    }
}

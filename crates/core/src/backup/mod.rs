//! Backups that never leave anything readable: encrypted snapshots of a mailbox, verified,
//! fingerprinted and stored only when something changed; restore, export and purge.
//!
//! A backup ([`run`]):
//! 1. takes a per-mailbox lock (one backup or restore of a mailbox at a time);
//! 2. checks there is about the mailbox's size free where the snapshot goes;
//! 3. folds the WAL into the file (`wal_checkpoint(PASSIVE)`), the last frames under the
//!    database's write lock (held for that checkpoint only; readers are never blocked), pins
//!    that state with a read transaction and copies the file's encrypted bytes as they are
//!    into a temporary file beside the target, computing their SHA-256 in the same pass
//!    (`snapshot::write_snapshot` argues why the copy is consistent, and falls back to SQLite's
//!    online backup API when a long reader keeps the WAL from being folded);
//! 4. if the SHA-256 equals the latest stored version's, stops: nothing changed (the bytes of
//!    an unchanged file are the same; any write re-encrypts pages with fresh IVs);
//! 5. opens the copy with the key: `PRAGMA integrity_check` (every page decrypts and
//!    authenticates under the key, b-trees, page accounting and indexes are sound; see
//!    `snapshot::verify_snapshot`), row counts; the copy is flushed to disk meanwhile, on a
//!    second thread;
//! 6. stores the snapshot under `<mailbox_id>/<version>.sqlite` with a [`BackupManifest`]
//!    (`<version>.json`) that records time, size, hash, schema version, row counts and the
//!    password wrapping of the key;
//! 7. applies the retention policy, if one is given.
//!
//! The target's manifests are the record of past backups: the "last recorded" hash is the
//! newest manifest's, so a backup restored or copied elsewhere keeps its history.

mod eml_zip;
mod export;
mod manifest;
mod restore;
mod retention;
#[cfg(feature = "s3")]
mod s3;
mod schedule;
mod snapshot;
mod target;

pub(crate) use eml_zip::read_eml_zip;
pub use eml_zip::{
    EML_ZIP_MANIFEST, EmlZipFolder, EmlZipManifest, EmlZipMessage, write_eml_zip,
    write_eml_zip_to_stream,
};
pub use export::{ExportFormat, ExportReport, export, write_mbox_folder};
pub use manifest::{BackupManifest, MANIFEST_FORMAT, ManifestKey};
pub use restore::{RestoreOutcome, RestoreRequest, RestoreStep, restore};
pub use retention::{RetentionPolicy, apply_retention, versions_to_delete};
#[cfg(feature = "s3")]
pub use s3::{S3Credentials, S3Options, S3Target};
pub use schedule::{BackupSchedule, OpenMailboxSource, backup_open_mailbox};
pub use target::{BackupTarget, VersionSelector};

use crate::error::{Error, Result};
use crate::key::MailboxKey;
use crate::registry::{MailboxId, Registry, WrappedCredential};
use crate::store::Mailbox;
use std::time::{SystemTime, UNIX_EPOCH};

/// Choices for one backup run.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Delete versions the policy does not keep after storing a new one.
    pub retention: Option<RetentionPolicy>,
    /// The time to name the version after; `None` is now. Tests set it to build histories.
    pub now: Option<SystemTime>,
}

/// What a backup run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupOutcome {
    /// A new version was stored; `pruned` lists versions retention deleted.
    Stored {
        manifest: BackupManifest,
        pruned: Vec<String>,
    },
    /// The mailbox has not changed since `latest`; nothing was stored.
    Unchanged { latest: BackupManifest },
}

/// Back up an open mailbox. `key` must be the key the mailbox is open with and `credential`
/// its password wrapping from the registry ([`Registry::wrapped_credential`]); both go into
/// the manifest check and the manifest. Refused while a key rotation is unresolved, because
/// the manifest could then carry a key that does not open the snapshot.
pub fn run(
    mailbox: &Mailbox,
    key: &MailboxKey,
    credential: &WrappedCredential,
    target: &BackupTarget,
    options: &BackupOptions,
) -> Result<BackupOutcome> {
    let mailbox_id = &credential.mailbox_id;
    if credential.has_pending_key {
        return Err(Error::KeyRotationPending(mailbox_id.to_string()));
    }
    let _lock = snapshot::lock_mailbox(mailbox.path(), mailbox_id.as_str())?;
    target.remove_incomplete(mailbox_id)?;
    let mailbox_dir = mailbox.path().parent().unwrap_or(std::path::Path::new("."));
    let staging = target.staging_dir(mailbox_id, mailbox_dir)?;
    snapshot::ensure_free_space(&staging, mailbox.used_bytes()?)?;

    let now = options.now.unwrap_or_else(SystemTime::now);
    let unix_millis = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    // The id in the name: an S3 target stages beside the mailbox, in a directory shared with
    // other mailboxes, and leftovers of a crash are recognized as this mailbox's own.
    let own_prefix = format!("{}{}-", target::TEMPORARY_PREFIX, mailbox_id.as_str());
    snapshot::remove_files_with_prefix(&staging, &own_prefix)?;
    let temporary = staging.join(format!(
        "{own_prefix}{}",
        hex::encode(crate::key::random_bytes::<8>())
    ));
    let stored = (|| {
        let versions = target.list_versions(mailbox_id)?;
        let written = snapshot::write_snapshot(mailbox, key, &temporary)?;
        // An unchanged mailbox gives the same encrypted bytes (the copy is of the file as
        // it is), so the same hash: nothing to store.
        if let Some(latest) = versions.last()
            && latest.sha256 == written.sha256
            && latest.size == written.size
        {
            return Ok(BackupOutcome::Unchanged {
                latest: latest.clone(),
            });
        }
        let checked = snapshot::verify_snapshot(&temporary, key, &written)?;
        // Two backups in one millisecond (or a clock set back) must not overwrite a version.
        let mut version_millis = unix_millis;
        if let Some(latest) = versions.last() {
            while target::version_name(version_millis) <= latest.version {
                version_millis += 1;
            }
        }
        let manifest = BackupManifest {
            format: MANIFEST_FORMAT,
            mailbox_id: mailbox_id.clone(),
            version: target::version_name(version_millis),
            created_at: crate::time::iso8601_utc(version_millis.div_euclid(1000)),
            sha256: checked.sha256,
            size: checked.size,
            content_mac: None,
            schema_version: checked.schema_version,
            rows: checked.rows,
            key: ManifestKey::from_credential(credential),
        };
        target.store_version(&temporary, &manifest)?;
        let pruned = match &options.retention {
            Some(policy) => apply_retention(target, mailbox_id, policy)?,
            None => Vec::new(),
        };
        Ok(BackupOutcome::Stored { manifest, pruned })
    })();
    // The snapshot is encrypted, but a stray copy is still clutter: remove it on every path.
    std::fs::remove_file(&temporary).or_else(crate::store::ignore_missing)?;
    stored
}

/// Log in with the password, open the mailbox and back it up: what `sealmail backup` runs.
pub fn backup_account(
    registry: &Registry,
    address: &str,
    password: &str,
    target: &BackupTarget,
    options: &BackupOptions,
) -> Result<BackupOutcome> {
    let login = registry.login(address, password)?;
    let credential = registry.wrapped_credential(&login.mailbox_id)?;
    let mailbox = Mailbox::open(&registry.mailbox_path(&login.mailbox_id), &login.key)?;
    run(&mailbox, &login.key, &credential, target, options)
}

/// Delete every backup of a mailbox (`sealmail account remove --purge-backups`).
pub fn purge_backups(target: &BackupTarget, mailbox_id: &MailboxId) -> Result<usize> {
    target.delete_all(mailbox_id)
}

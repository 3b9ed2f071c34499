//! The small JSON document stored next to every backup version.
//!
//! It says what the snapshot is (mailbox id, time, size, SHA-256, schema version, row counts)
//! and carries the password wrapping of the mailbox key, so a backup restores into an empty
//! data directory with only the password. Nothing in it opens the mailbox without the
//! password: the key is AEAD-wrapped under an Argon2id-derived key, as in the registry.

use crate::error::{Error, Result};
use crate::key::MailboxKey;
use crate::registry::{KdfParams, MailboxId, WrappedCredential, unwrap_with_password};
use crate::store::RowCounts;
use serde::{Deserialize, Serialize};

/// Format version of [`BackupManifest`]; a newer manifest is refused rather than misread.
pub const MANIFEST_FORMAT: u32 = 1;

/// What a backup version is, and how its key is wrapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupManifest {
    pub format: u32,
    pub mailbox_id: MailboxId,
    /// The version's name, a sortable UTC timestamp such as `20261128T203656.123Z`.
    pub version: String,
    /// ISO-8601 UTC, e.g. `2026-11-28T20:36:56Z`.
    pub created_at: String,
    /// SHA-256 of the encrypted snapshot file, lowercase hex.
    pub sha256: String,
    pub size: u64,
    /// HMAC-SHA256 of the snapshot's decrypted rows, written by earlier versions that copied
    /// a mailbox page by page (each copy then had different encrypted bytes, so this told
    /// whether anything changed). Snapshots are now byte copies whose hash tells that, and this
    /// is no longer computed; it is kept so older manifests still read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_mac: Option<String>,
    /// The mailbox schema version (`PRAGMA user_version`) of the snapshot.
    pub schema_version: i64,
    pub rows: RowCounts,
    pub key: ManifestKey,
}

/// The mailbox key wrapped under the owner's password at the time of the backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestKey {
    /// Argon2id salt, lowercase hex.
    pub kdf_salt: String,
    pub kdf: KdfParams,
    /// The AEAD-wrapped key (format of `registry::wrap`), lowercase hex.
    pub wrapped_key: String,
}

impl ManifestKey {
    pub fn from_credential(credential: &WrappedCredential) -> Self {
        Self {
            kdf_salt: hex::encode(&credential.kdf_salt),
            kdf: credential.kdf,
            wrapped_key: hex::encode(&credential.wrapped_key),
        }
    }
}

impl BackupManifest {
    /// Parse and sanity-check a manifest read from a target.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let manifest: Self = serde_json::from_slice(bytes)
            .map_err(|e| Error::InvalidArgument(format!("backup manifest is not valid: {e}")))?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(Error::InvalidArgument(format!(
                "backup manifest format {} is not supported (expected {MANIFEST_FORMAT})",
                manifest.format
            )));
        }
        Ok(manifest)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest always serializes")
    }

    /// The wrapping as the registry stores it, for registering a restored account.
    pub fn credential(&self) -> Result<WrappedCredential> {
        let bad = |what: &str| Error::InvalidArgument(format!("backup manifest has a bad {what}"));
        Ok(WrappedCredential {
            mailbox_id: self.mailbox_id.clone(),
            kdf_salt: hex::decode(&self.key.kdf_salt).map_err(|_| bad("KDF salt"))?,
            kdf: self.key.kdf,
            wrapped_key: hex::decode(&self.key.wrapped_key).map_err(|_| bad("wrapped key"))?,
            has_pending_key: false,
        })
    }

    /// Unwrap the mailbox key with the password that was current when the backup was taken.
    /// [`Error::WrongPassword`] when it does not open.
    pub fn unwrap_key(&self, password: &str) -> Result<MailboxKey> {
        let credential = self.credential()?;
        unwrap_with_password(
            password,
            &self.mailbox_id,
            &credential.kdf_salt,
            &credential.kdf,
            &credential.wrapped_key,
        )
    }
}

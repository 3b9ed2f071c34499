//! The one error type of `sealmail-core`.

use std::path::PathBuf;

/// Everything that can go wrong in the core, each case with its own variant so callers (IMAP,
/// SMTP, the CLI, the Node binding) can map it to a precise protocol answer or error code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Wrong password, or an address that does not exist: deliberately the same answer.
    #[error("wrong password or unknown address")]
    WrongPassword,
    #[error("address {0:?} is not valid: {1}")]
    InvalidAddress(String, &'static str),
    #[error("address {0} already exists")]
    AddressExists(String),
    /// The mailbox file does not open with the key, is not a database, or fails integrity checks.
    #[error("mailbox file {path} is corrupt or not a sealmail mailbox: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// The file was written by a newer sealmail; opening it could lose data.
    #[error("mailbox schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("quota exceeded: {used} of {limit} bytes used, {needed} more needed")]
    QuotaExceeded { used: u64, limit: u64, needed: u64 },
    #[error("message too large: {size} bytes, limit {limit}")]
    MessageTooLarge { size: u64, limit: u64 },
    #[error("folder {0:?} does not exist")]
    NoSuchFolder(String),
    #[error("folder {0:?} already exists")]
    FolderExists(String),
    #[error("folder {0:?} cannot be {1}")]
    FolderNotAllowed(String, &'static str),
    #[error("invalid folder name {0:?}: {1}")]
    InvalidFolderName(String, &'static str),
    #[error("message uid {0} does not exist")]
    NoSuchMessage(u32),
    #[error("invalid recovery code")]
    WrongRecoveryCode,
    #[error("registry at {0} is missing; create an account first")]
    RegistryMissing(PathBuf),
    /// The registry was written by a newer sealmail; opening it could lose accounts.
    #[error("registry schema version {found} is newer than this build supports ({supported})")]
    RegistryTooNew { found: i64, supported: i64 },
    /// An administrative operation named an address or mailbox id that has no account.
    #[error("no account for {0}")]
    NoSuchAccount(String),
    /// Promoting or using a pending (rotation) key when none is stored.
    #[error("mailbox {0} has no pending key")]
    NoPendingKey(String),
    /// A DEK rotation was started while an earlier one is still unresolved.
    #[error("mailbox {0} already has a pending key; promote or clear it first")]
    KeyRotationPending(String),
    /// The account changed between reading it and writing it back (a concurrent password
    /// change or key rotation); the operation was not applied.
    #[error("account {0} was changed concurrently; try again")]
    ConcurrentUpdate(String),
    /// The target holds no backup (or not the requested version) of this mailbox.
    #[error("no backup of mailbox {mailbox_id} matches {wanted}")]
    NoSuchBackup { mailbox_id: String, wanted: String },
    /// A stored backup does not match its manifest (size or SHA-256): damaged or tampered.
    #[error("backup {version} of mailbox {mailbox_id} is damaged: {reason}")]
    BackupDamaged {
        mailbox_id: String,
        version: String,
        reason: String,
    },
    /// Another backup or restore of the same mailbox is running.
    #[error("a backup or restore of mailbox {0} is already running")]
    BackupInProgress(String),
    /// Restoring over (or re-keying) a mailbox that a session or a running server still has
    /// open would lose its writes.
    #[error(
        "mailbox {0} is in use (an open session or a running server has it open); close it first"
    )]
    MailboxInUse(String),
    /// The backup storage (an S3-compatible service) refused or failed a request.
    #[error("backup storage: {0}")]
    BackupStorage(String),
    /// Not enough free disk space for a snapshot or a restored copy.
    #[error("not enough free space in {path}: {needed} bytes needed, {available} available")]
    InsufficientSpace {
        path: PathBuf,
        needed: u64,
        available: u64,
    },
    /// A backup target this build cannot write to (an `s3://` URL without the `s3` feature).
    #[error("unsupported backup target {0:?}: this build supports {1}")]
    UnsupportedBackupTarget(String, &'static str),
    /// An import archive (eml-zip) that cannot be read.
    #[error("archive {path} cannot be read: {reason}")]
    InvalidArchive { path: PathBuf, reason: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Query(#[from] crate::query::QueryError),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A sealed queue item that does not open: damaged, truncated, renamed, or sealed to another
    /// key (the AEAD cannot tell these apart, deliberately).
    #[error("sealed item is corrupt, truncated, or sealed to another key: {0}")]
    SealedItemCorrupt(&'static str),
    #[error("invalid sealing key: {0}")]
    InvalidSealingKey(String),
    #[error("invalid mailbox id {0:?}: expected 24 lowercase hex characters")]
    InvalidMailboxId(String),
    #[error("invalid queue item id {0:?}")]
    InvalidItemId(String),
    #[error("cryptographic failure: {0}")]
    Crypto(&'static str),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

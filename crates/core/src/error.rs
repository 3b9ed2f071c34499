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
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Query(#[from] crate::query::QueryError),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("cryptographic failure: {0}")]
    Crypto(&'static str),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

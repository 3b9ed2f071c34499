//! Core errors as JS `Error`s with a stable `code`.

use napi::bindgen_prelude::{Env, JsError};
use sealmail_core::Error as CoreError;
use sealmail_core::query::QueryError;

/// Why a call failed, in the form JS sees it: `error.code` and `error.message`.
#[derive(Debug)]
pub struct Failure {
    /// Stable, listed in `types.d.ts` (`ErrorCode`); callers branch on it.
    pub code: &'static str,
    pub message: String,
}

impl Failure {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A handle used after `close()`.
    pub fn closed() -> Self {
        Self::new("CLOSED", "the mailbox is closed")
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new("INVALID_ARGUMENT", message)
    }

    /// Build the JS `Error` object: `code` becomes its `code` property.
    pub fn into_napi(self, env: &Env) -> napi::Error {
        let error = napi::Error::new(self.code, self.message);
        napi::Error::from(JsError::from(error).into_unknown(*env))
    }
}

impl From<CoreError> for Failure {
    fn from(error: CoreError) -> Self {
        let code = match &error {
            CoreError::Query(query) => return Self::from_query(query, error.to_string()),
            CoreError::WrongPassword => "WRONG_PASSWORD",
            CoreError::InvalidAddress(..) => "INVALID_ADDRESS",
            CoreError::AddressExists(_) => "ADDRESS_EXISTS",
            CoreError::Corrupt { .. }
            | CoreError::InvalidMailboxId(_)
            | CoreError::InvalidSealingKey(_) => "CORRUPT",
            CoreError::SealedItemCorrupt(_) | CoreError::InvalidItemId(_) => "SEALED_ITEM_CORRUPT",
            CoreError::SchemaTooNew { .. } | CoreError::RegistryTooNew { .. } => "SCHEMA_TOO_NEW",
            CoreError::QuotaExceeded { .. } => "QUOTA_EXCEEDED",
            CoreError::MessageTooLarge { .. } => "MESSAGE_TOO_LARGE",
            CoreError::NoSuchFolder(_) => "NO_SUCH_FOLDER",
            CoreError::FolderExists(_) => "FOLDER_EXISTS",
            CoreError::FolderNotAllowed(..) => "FOLDER_NOT_ALLOWED",
            CoreError::InvalidFolderName(..) => "INVALID_FOLDER_NAME",
            CoreError::NoSuchMessage(_) => "NO_SUCH_MESSAGE",
            CoreError::WrongRecoveryCode => "WRONG_RECOVERY_CODE",
            CoreError::RegistryMissing(_) => "REGISTRY_MISSING",
            CoreError::NoSuchAccount(_) => "NO_SUCH_ACCOUNT",
            CoreError::NoPendingKey(_) | CoreError::KeyRotationPending(_) => "KEY_ROTATION",
            CoreError::ConcurrentUpdate(_) => "CONCURRENT_UPDATE",
            CoreError::InvalidArgument(_) => "INVALID_ARGUMENT",
            CoreError::Sqlite(_) => "DATABASE",
            CoreError::Io(_) => "IO",
            CoreError::Crypto(_) => "CRYPTO",
            CoreError::NoSuchBackup { .. } => "NO_SUCH_BACKUP",
            CoreError::BackupDamaged { .. } => "BACKUP_DAMAGED",
            CoreError::BackupInProgress(_) => "BACKUP_IN_PROGRESS",
            CoreError::MailboxInUse(_) => "MAILBOX_IN_USE",
            CoreError::InsufficientSpace { .. } => "INSUFFICIENT_SPACE",
            CoreError::BackupStorage(_) => "BACKUP_STORAGE",
            CoreError::UnsupportedBackupTarget(..) => "UNSUPPORTED_TARGET",
            CoreError::InvalidArchive { .. } => "INVALID_ARCHIVE",
        };
        Self::new(code, error.to_string())
    }
}

impl From<QueryError> for Failure {
    fn from(error: QueryError) -> Self {
        let message = error.to_string();
        Self::from_query(&error, message)
    }
}

impl Failure {
    fn from_query(error: &QueryError, message: String) -> Self {
        let code = match error {
            QueryError::UnknownCollection(_) => "UNKNOWN_COLLECTION",
            QueryError::UnknownField(_) => "UNKNOWN_FIELD",
            QueryError::UnknownOperator(_) => "UNKNOWN_OPERATOR",
            QueryError::InvalidValue { .. } | QueryError::InvalidRequest(_) => "INVALID_QUERY",
            QueryError::TooComplex(_) => "QUERY_TOO_COMPLEX",
            QueryError::ReadOnlyCollection(_) => "READ_ONLY_COLLECTION",
            QueryError::DestructiveSchemaChange { .. } => "DESTRUCTIVE_SCHEMA_CHANGE",
            QueryError::DuplicateKey(_) => "DUPLICATE_KEY",
            QueryError::Sqlite(_) => "DATABASE",
        };
        Self::new(code, message)
    }
}

//! The error type of the query layer.

/// Why a query was refused or failed. Every refusal names the offending part so a caller can
/// fix the query; none of them echoes SQL, because callers never see or write SQL.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("unknown collection {0:?}")]
    UnknownCollection(String),
    #[error("unknown field {0:?}")]
    UnknownField(String),
    #[error("unknown operator {0:?}")]
    UnknownOperator(String),
    #[error("invalid value for {context}: {reason}")]
    InvalidValue { context: String, reason: String },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("query too complex: {0}")]
    TooComplex(String),
    #[error("collection {0:?} is read-only through the query layer; use the mailbox API")]
    ReadOnlyCollection(String),
    #[error("destructive schema change refused for collection {collection:?}: {reason}")]
    DestructiveSchemaChange { collection: String, reason: String },
    #[error("duplicate key in collection {0:?}")]
    DuplicateKey(String),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

impl QueryError {
    pub(crate) fn invalid(context: impl Into<String>, reason: impl Into<String>) -> Self {
        QueryError::InvalidValue {
            context: context.into(),
            reason: reason.into(),
        }
    }
}

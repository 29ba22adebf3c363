//! Errors of the object-store layer, one variant per case a user can act on.

use std::time::Duration;

use ostore_status::ErrorCode;

use crate::backend::BackendError;

/// Why an object-store operation failed. Nothing is changed by a failed
/// operation.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("key not found")]
    KeyNotFound,
    #[error("key already exists")]
    KeyAlreadyExists,
    /// The store was deleted (perhaps through another host) after this
    /// handle was opened.
    #[error("store not found: it was deleted")]
    StoreNotFound,
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("value too large: the limit is {limit} bytes")]
    ValueTooLarge { limit: u64 },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("version mismatch: {}", match current {
        Some(v) => format!("the current version is {v}"),
        None => "the key does not exist".to_string(),
    })]
    VersionMismatch { current: Option<u64> },
    #[error("rate limited: retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    #[error("access denied")]
    AccessDenied,
    /// A record failed to authenticate: it was altered at rest or sealed
    /// under another key. No data is returned from such a record.
    #[error("integrity check failed: a stored record was altered or sealed with another key")]
    Integrity,
    /// The data was sealed under another master key than the one given.
    #[error("the master key does not match the one this data was sealed with")]
    WrongMasterKey,
    /// Storage failed; the operation may be retried.
    #[error("store not available: {0}")]
    Storage(#[source] BackendError),
    /// Other writers kept changing the record between this operation's read
    /// and its write, more times than it retries; it may be retried.
    #[error("store not available: {0} changing too fast to update; try again")]
    Contended(&'static str),
    /// A record names an application whose own record is missing.
    #[error("store not available: a record names an unknown application")]
    UnknownApplication,
}

impl From<BackendError> for Error {
    fn from(e: BackendError) -> Self {
        debug_assert!(
            !matches!(e, BackendError::Conflict),
            "conditional commits handle conflicts before converting"
        );
        match e {
            // Damage at rest is an integrity failure whichever layer sees
            // it first: the same answer as a record that does not open.
            BackendError::Damaged(what) => {
                tracing::warn!("{what}");
                Error::Integrity
            }
            e => Error::Storage(e),
        }
    }
}

impl Error {
    /// The answer to a write whose commit task panicked, answering nothing:
    /// whether its batch landed is unknown, as when a writer stops.
    pub(crate) fn unanswered() -> Self {
        Error::Storage(crate::backend::BackendError::WriterStopped)
    }

    /// Whether this is writes failing for a storage fault (a full disk, an
    /// unreachable server...), which the backend's health monitor logs once
    /// per change of state: background tasks meeting it again need not.
    pub(crate) fn is_writes_failing(&self) -> bool {
        matches!(
            self,
            Error::Storage(crate::backend::BackendError::WritesFailing { .. })
        )
    }

    /// The error as the WIT interface and the HTTP front ends name it.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::KeyNotFound | Error::StoreNotFound => ErrorCode::KeyNotFound,
            Error::KeyAlreadyExists => ErrorCode::KeyAlreadyExists,
            Error::InvalidKey(_) => ErrorCode::InvalidKey,
            Error::ValueTooLarge { .. } => ErrorCode::ValueTooLarge,
            Error::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Error::VersionMismatch { .. } => ErrorCode::VersionMismatch,
            Error::RateLimited { .. } => ErrorCode::RateLimited,
            Error::QuotaExceeded(_) => ErrorCode::QuotaExceeded,
            Error::AccessDenied => ErrorCode::AccessDenied,
            Error::Integrity
            | Error::WrongMasterKey
            | Error::Storage(_)
            | Error::Contended(_)
            | Error::UnknownApplication => ErrorCode::StoreNotAvailable,
        }
    }

    /// How long to wait before retrying, when that is known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

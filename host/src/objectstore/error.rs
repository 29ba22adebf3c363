//! Errors of the object-store layer, one variant per case a user can act on.

use std::time::Duration;

use crate::backend::BackendError;
use crate::encryption::EncryptionError;

/// Why an object-store operation failed. Nothing is changed by a failed
/// operation.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("key not found")]
    KeyNotFound,
    #[error("key already exists")]
    KeyAlreadyExists,
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
    Unavailable(String),
}

impl From<BackendError> for Error {
    fn from(e: BackendError) -> Self {
        match e {
            // Callers that expect conflicts handle them before converting.
            BackendError::Conflict => Error::Unavailable("a concurrent write interfered".into()),
            BackendError::Storage(msg) => Error::Unavailable(msg),
        }
    }
}

impl From<EncryptionError> for Error {
    fn from(e: EncryptionError) -> Self {
        match e {
            EncryptionError::Integrity => Error::Integrity,
            other => Error::Unavailable(other.to_string()),
        }
    }
}

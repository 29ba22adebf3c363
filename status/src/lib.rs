//! The one table from an object-store error to an HTTP status.
//!
//! Every HTTP front end answers the same error with the same status: the
//! host's REST API (and so the admin UI, which only talks to it) and the
//! guest SDK's HTTP helpers, which guests use on their own routes. The table
//! lives in this small crate, with no dependencies, so that the host and the
//! `wasm32-wasip2` guests both build it.

#![no_std]
#![warn(missing_docs)]

/// An object-store error, by the name the WIT interface gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The key does not exist or has expired; also a store or partition
    /// that does not exist.
    KeyNotFound,
    /// A write that must not overwrite found the key present.
    KeyAlreadyExists,
    /// A key, store or partition name breaks a rule.
    InvalidKey,
    /// Another argument or input is unusable (malformed body, cursor, TTL).
    InvalidArgument,
    /// The value is larger than the limit.
    ValueTooLarge,
    /// A compare-and-swap found another version.
    VersionMismatch,
    /// Too many requests; retry later.
    RateLimited,
    /// A key-count or byte quota would be exceeded.
    QuotaExceeded,
    /// The caller may not use this store or partition.
    AccessDenied,
    /// The store cannot serve the request (storage failed, a record failed
    /// its integrity check); nothing was changed.
    StoreNotAvailable,
}

/// How the request expressed the condition a write depended on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// As `If-Match` / `If-None-Match` headers (the REST API): a failed one
    /// is `412 Precondition Failed`, as HTTP defines it.
    Headers,
    /// In the request itself (a guest's own route): a failed one is
    /// `409 Conflict`.
    Body,
}

impl ErrorCode {
    /// Every code, for tests and documentation.
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::KeyNotFound,
        ErrorCode::KeyAlreadyExists,
        ErrorCode::InvalidKey,
        ErrorCode::InvalidArgument,
        ErrorCode::ValueTooLarge,
        ErrorCode::VersionMismatch,
        ErrorCode::RateLimited,
        ErrorCode::QuotaExceeded,
        ErrorCode::AccessDenied,
        ErrorCode::StoreNotAvailable,
    ];

    /// The name in the WIT interface, also sent as `error` in REST error
    /// bodies: `key-not-found`, `quota-exceeded`, ...
    pub const fn name(self) -> &'static str {
        match self {
            ErrorCode::KeyNotFound => "key-not-found",
            ErrorCode::KeyAlreadyExists => "key-already-exists",
            ErrorCode::InvalidKey => "invalid-key",
            ErrorCode::InvalidArgument => "invalid-argument",
            ErrorCode::ValueTooLarge => "value-too-large",
            ErrorCode::VersionMismatch => "version-mismatch",
            ErrorCode::RateLimited => "rate-limited",
            ErrorCode::QuotaExceeded => "quota-exceeded",
            ErrorCode::AccessDenied => "access-denied",
            ErrorCode::StoreNotAvailable => "store-not-available",
        }
    }

    /// The HTTP status of a response that reports this error.
    /// `429` answers also carry `Retry-After` when a wait is known.
    pub const fn http_status(self, precondition: Precondition) -> u16 {
        match self {
            ErrorCode::KeyNotFound => 404,
            ErrorCode::InvalidKey | ErrorCode::InvalidArgument => 400,
            ErrorCode::KeyAlreadyExists | ErrorCode::VersionMismatch => match precondition {
                Precondition::Headers => 412,
                Precondition::Body => 409,
            },
            ErrorCode::ValueTooLarge => 413,
            ErrorCode::RateLimited | ErrorCode::QuotaExceeded => 429,
            ErrorCode::AccessDenied => 403,
            ErrorCode::StoreNotAvailable => 503,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_has_its_status_and_only_conditions_depend_on_the_front_end() {
        for code in ErrorCode::ALL {
            let (headers, body) = (
                code.http_status(Precondition::Headers),
                code.http_status(Precondition::Body),
            );
            match code {
                ErrorCode::KeyAlreadyExists | ErrorCode::VersionMismatch => {
                    assert_eq!((headers, body), (412, 409), "{}", code.name())
                }
                _ => assert_eq!(headers, body, "{}", code.name()),
            }
        }
        assert_eq!(
            ErrorCode::QuotaExceeded.http_status(Precondition::Body),
            429
        );
        assert_eq!(
            ErrorCode::StoreNotAvailable.http_status(Precondition::Body),
            503
        );
        assert_eq!(ErrorCode::RateLimited.name(), "rate-limited");
    }
}

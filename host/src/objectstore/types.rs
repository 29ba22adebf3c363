//! The object store's public value types and settings: what callers pass in
//! and get back. Nothing here touches storage.

use crate::clock::{self, SharedClock};

use super::Error;

/// The store every application has; Mule's `_defaultUserObjectStore`.
pub const DEFAULT_STORE: &str = "_defaultUserObjectStore";

/// OSv2's default TTL: 30 days.
pub const DEFAULT_TTL_SECS: u64 = 30 * 24 * 60 * 60;

/// The most keys or entries one page may hold. Pages are built in memory,
/// so a guest-chosen page size is clamped to this.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// The longest TTL: 100 years. Longer ones are surely mistakes, and would
/// put expiry times past what calendars and clients handle.
pub const MAX_TTL_SECS: u64 = 100 * 365 * 24 * 60 * 60;

/// How long a key lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// Never expires.
    Never,
    /// Expires this many seconds after the last write (OSv2 "static").
    Fixed(u64),
    /// Expires this many seconds after the last read or write.
    Rolling(u64),
}

impl Ttl {
    /// The TTL's length; `None` for [`Ttl::Never`].
    pub fn seconds(self) -> Option<u64> {
        match self {
            Ttl::Never => None,
            Ttl::Fixed(s) | Ttl::Rolling(s) => Some(s),
        }
    }

    /// Refuses a TTL of 0 seconds or over [`MAX_TTL_SECS`].
    pub(crate) fn check(self) -> Result<Self, Error> {
        match self.seconds() {
            Some(0) => Err(Error::InvalidArgument(
                "a TTL must be at least 1 second".into(),
            )),
            Some(s) if s > MAX_TTL_SECS => Err(Error::InvalidArgument(format!(
                "a TTL may be at most {MAX_TTL_SECS} seconds (100 years); for longer, let the key never expire"
            ))),
            _ => Ok(self),
        }
    }

    /// When a key written at `now` (milliseconds) expires.
    pub(crate) fn expiry_from(self, now: u64) -> Option<u64> {
        self.seconds()
            .map(|s| now.saturating_add(s.saturating_mul(1000)))
    }
}

/// Limits of one store, on top of its application's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreQuota {
    /// Keys the store may hold; `None`: only the application's limit.
    pub max_keys: Option<u64>,
    /// Bytes the store may take at rest; `None`: only the application's.
    pub max_bytes: Option<u64>,
}

/// What a value holds; kept so that the REST API can show it as OSv2 does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ValueKind {
    Binary = 0,
    String = 1,
    Number = 2,
}

impl ValueKind {
    pub(crate) fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Binary),
            1 => Some(Self::String),
            2 => Some(Self::Number),
            _ => None,
        }
    }

    /// The kind of bytes a guest stored: text if they are UTF-8.
    pub(crate) fn of(value: &[u8]) -> Self {
        if std::str::from_utf8(value).is_ok() {
            Self::String
        } else {
            Self::Binary
        }
    }
}

/// Facts about a stored value; times in milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub created: u64,
    pub updated: u64,
    pub expires: Option<u64>,
    /// The TTL the key was written with (its own, or the one it inherited).
    pub ttl: Ttl,
    pub version: u64,
    pub size: u64,
    pub kind: ValueKind,
}

/// A key with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: Vec<u8>,
    pub metadata: Metadata,
}

/// How [`Partition::store`](super::Partition::store) behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreOptions {
    /// Fail with [`Error::KeyAlreadyExists`] instead of overwriting.
    pub fail_if_present: bool,
    /// The key's own TTL; `None` inherits the partition's, then the store's.
    pub ttl: Option<Ttl>,
    /// What the value holds; `None`: text if it is UTF-8, else binary.
    pub kind: Option<ValueKind>,
}

/// Requests made on one day, and the size of what was stored then.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayStats {
    pub requests: u64,
    pub keys: u64,
    pub bytes: u64,
}

/// What a store or an application holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    pub keys: u64,
    pub bytes: u64,
}

/// One page of a listing; `cursor` is `None` on the last page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub cursor: Option<String>,
}

/// Sizes a guest or client controls, checked on every call.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest key, store or partition name in bytes (OSv2: 1024).
    pub max_key_bytes: usize,
    /// Largest value in bytes (OSv2: 10 MiB).
    pub max_value_bytes: usize,
    /// Object-store requests one application may make per second (OSv2
    /// base: 10); `None`: unlimited.
    pub requests_per_second: Option<u32>,
    /// Keys one application may hold; `None`: unlimited.
    pub max_keys: Option<u64>,
    /// Bytes one application may store at rest; `None`: unlimited.
    pub max_bytes: Option<u64>,
    /// Stores one application may have. Opening a store by a new name makes
    /// it, so this bounds what a guest can create with made-up names.
    pub max_stores: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_key_bytes: 1024,
            max_value_bytes: 10 << 20,
            requests_per_second: None,
            max_keys: None,
            max_bytes: None,
            max_stores: 1000,
        }
    }
}

/// Settings of an [`ObjectStore`](super::ObjectStore).
#[derive(Debug, Clone)]
pub struct Config {
    pub limits: Limits,
    /// The TTL of a newly created store (OSv2: 30 days, static).
    pub default_ttl: Ttl,
    /// Where "now" comes from for TTL, the request rate and statistics.
    pub clock: SharedClock,
    /// No other host writes to the backend while this one has it open: a
    /// redb file, which one process holds. Each store's keys and bytes as
    /// this host knows them are then exact, and the stats flush and the
    /// quota checks need not read every partition's kept counts again to
    /// learn other hosts' changes (see `usage::counts`). Set it only when
    /// that holds; `false` (the default) reads them as for a shared
    /// backend, which is right in every case.
    pub sole_host: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            default_ttl: Ttl::Fixed(DEFAULT_TTL_SECS),
            clock: clock::system(),
            sole_host: false,
        }
    }
}

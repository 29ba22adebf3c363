//! The storage contract: an ordered map of opaque byte keys to opaque byte
//! values with atomic, conditional, durable batches.
//!
//! Backends know nothing of applications, names, TTL or encryption: by the
//! time a key reaches a backend it is an HMAC tag and its value is sealed.
//! That keeps the trait small enough that a new backend (or a
//! fault-injecting one in a test) is a short file.
//!
//! # Shards
//!
//! Every key lives in one *shard*, opaque bytes the caller names with each
//! call (the object store names a partition or an application; see
//! `objectstore::keys`). A batch writes one shard, so a backend that spreads
//! shards over machines (Redis Cluster) can still apply it atomically; a scan
//! reads one shard, or every shard whose name starts with given bytes, and
//! merges them in key order. The caller keeps each key in one shard and
//! scans a prefix only in the shards that hold it; a backend on one machine
//! may then ignore shards altogether, as redb and the memory backend do.

/// Forwards the byte-range locks of a `redb::StorageBackend` to the one in
/// field `$inner`: the wrappers under redb (fault injection, the
/// copy-on-write view of `ostore check`) change reads and writes, never
/// locking.
macro_rules! forward_range_locks {
    ($inner:ident) => {
        fn try_lock_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<bool, redb::BackendError> {
            self.$inner.try_lock_range(start, end)
        }

        fn try_lock_shared_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<bool, redb::BackendError> {
            self.$inner.try_lock_shared_range(start, end)
        }

        fn lock_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<(), redb::BackendError> {
            self.$inner.lock_range(start, end)
        }

        fn lock_shared_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<(), redb::BackendError> {
            self.$inner.lock_shared_range(start, end)
        }

        fn unlock_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<(), redb::BackendError> {
            self.$inner.unlock_range(start, end)
        }

        fn query_lock_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<bool, redb::BackendError> {
            self.$inner.query_lock_range(start, end)
        }
    };
}

pub mod contract;
pub mod crash;
pub mod fault;
mod file;
mod file_check;
mod health;
mod memory;
mod redis;

use std::future::Future;
use std::ops::Bound;
use std::pin::Pin;
use std::sync::Arc;

pub use file::{
    CommitStats, DEFAULT_CACHE_SIZE, DISK_RESERVE, FileBackend, MIN_CACHE_SIZE, RedbConfig,
    ballast_path, journal_path,
};
pub use file_check::{FileIntegrity, FileUsage, check_file, file_usage, repair_file};
pub(crate) use health::HealthMonitor;
pub use health::{Health, StorageFault};
pub use memory::MemoryBackend;
pub use redis::{RedisBackend, RedisConfig, RedisDurability, RedisUrlError};

/// Which backend the object store keeps its records in, as a runtime
/// config file's `[object_store]` table names it (`type = "redb"` with an
/// optional `cache_size`, or `type = "redis"` with `url` and `durability`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum BackendConfig {
    /// One redb file in the host's data directory: one host, nothing else
    /// to install.
    Redb(RedbConfig),
    /// A Redis server or cluster, which several hosts may share.
    Redis(RedisConfig),
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self::redb()
    }
}

impl BackendConfig {
    /// redb with the default [`RedbConfig`].
    pub fn redb() -> Self {
        BackendConfig::Redb(RedbConfig::default())
    }

    /// Whether records are kept in redb (one process holds the file).
    pub fn is_redb(&self) -> bool {
        matches!(self, BackendConfig::Redb(_))
    }

    /// Opens the backend; `redb_file` is where redb keeps its data.
    pub async fn open(
        &self,
        redb_file: &std::path::Path,
    ) -> Result<Arc<dyn Backend>, BackendError> {
        Ok(match self {
            BackendConfig::Redb(config) => Arc::new(config.open(redb_file)?),
            BackendConfig::Redis(config) => Arc::new(RedisBackend::connect(config).await?),
        })
    }
}

impl std::str::FromStr for BackendConfig {
    type Err = RedisUrlError;

    /// `redb`, or a Redis URL.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "redb" => Ok(BackendConfig::redb()),
            url => Ok(BackendConfig::Redis(url.parse()?)),
        }
    }
}

/// A key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// A boxed future, so that [`Backend`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A key-value engine the object store keeps its records in.
pub trait Backend: Send + Sync + 'static {
    /// Returns the value under `key`, which lives in `shard`.
    ///
    /// Sees every batch whose [`commit`](Backend::commit) has returned `Ok`,
    /// on this host or any other sharing the backend.
    fn get<'a>(
        &'a self,
        shard: &'a [u8],
        key: &'a [u8],
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, BackendError>>;

    /// Returns the value under each of `keys`, all of which live in
    /// `shard`, in their order (`None` for a key with none). What each
    /// [`get`](Backend::get) would return, but in one read where the
    /// backend can: one read transaction (redb), one round trip (Redis).
    /// Not a snapshot: a batch may land between two keys' reads.
    fn get_many<'a>(
        &'a self,
        shard: &'a [u8],
        keys: &'a [Vec<u8>],
    ) -> BoxFuture<'a, Result<Vec<Option<Vec<u8>>>, BackendError>> {
        Box::pin(async move {
            let mut values = Vec::with_capacity(keys.len());
            for key in keys {
                values.push(self.get(shard, key).await?);
            }
            Ok(values)
        })
    }

    /// Returns up to `limit` pairs of `shards` whose keys start with
    /// `prefix` and sort strictly after `after` (from the first such key
    /// when `after` is `None`), in ascending key order.
    ///
    /// Within one shard a scan is a consistent snapshot of one moment; a
    /// scan of several shards may read each at a different moment, and
    /// successive scans (pages) may see writes made between them.
    fn scan<'a>(
        &'a self,
        shards: Shards<'a>,
        prefix: &'a [u8],
        after: Option<&'a [u8]>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Pair>, BackendError>>;

    /// Applies every write of `batch` (all of them in its shard), or none.
    ///
    /// If any write's [`Expect`] does not hold at the moment the batch is
    /// applied, nothing is written and the result is
    /// [`BackendError::Conflict`]. `Ok` is returned only once the batch is
    /// as durable as the backend promises (see each backend): for redb, a
    /// crash after it cannot lose the batch.
    fn commit(&self, batch: Batch) -> BoxFuture<'_, Result<(), BackendError>>;

    /// Resolves once every batch that a [`commit`](Backend::commit) handed
    /// on (the file backend does at the commit future's first poll) before
    /// this call has landed or failed, whether or not its caller still
    /// waits: a commit future dropped after it handed its batch on may
    /// still land. A sole host waits for this before it reads
    /// its kept counts after losing track of them (`usage::counts`).
    ///
    /// The default resolves at once: right for a backend whose commit does
    /// its work within its own future (the memory backend). The file
    /// backend hands batches to its writer thread, and waits for it. Redis
    /// keeps the default: hosts that share it read their counts every
    /// second whatever happened. It commits nothing of its own.
    fn settled(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Whether writes work now, as the last commits found, and how many
    /// failed for a storage fault: for `/readyz` and `/metrics`.
    ///
    /// A backend that cannot tell keeps this default: always writable.
    fn health(&self) -> Health {
        Health::default()
    }
}

/// The shards a scan reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shards<'a> {
    /// One shard.
    One(&'a [u8]),
    /// Every shard whose name starts with these bytes (all, if empty).
    StartingWith(&'a [u8]),
}

impl Shards<'_> {
    /// Every shard.
    pub const ALL: Shards<'static> = Shards::StartingWith(b"");
}

/// Where a scan of `prefix` after `after` starts: just past `after` when it
/// lies at or beyond the prefix, else at the prefix.
pub(crate) fn scan_start<'a>(prefix: &'a [u8], after: Option<&'a [u8]>) -> Bound<&'a [u8]> {
    match after {
        Some(a) if a >= prefix => Bound::Excluded(a),
        _ => Bound::Included(prefix),
    }
}

/// What a write requires of the key's current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Nothing: the write always applies.
    Any,
    /// The key must be absent.
    Absent,
    /// The key must hold exactly these bytes.
    Value(Vec<u8>),
}

impl Expect {
    /// Whether `current` satisfies this expectation.
    pub fn holds(&self, current: Option<&[u8]>) -> bool {
        match self {
            Expect::Any => true,
            Expect::Absent => current.is_none(),
            Expect::Value(v) => current == Some(v.as_slice()),
        }
    }
}

/// One write of a [`Batch`]: `value: None` deletes the key.
#[derive(Debug, Clone)]
pub struct Write {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub expect: Expect,
}

/// Writes to one shard, applied together, atomically.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub shard: Vec<u8>,
    pub writes: Vec<Write>,
}

impl Batch {
    /// An empty batch of writes to `shard`.
    pub fn new(shard: impl Into<Vec<u8>>) -> Self {
        Self {
            shard: shard.into(),
            writes: Vec::new(),
        }
    }

    /// Adds a put of `value` under `key`, conditional on `expect`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>, expect: Expect) -> &mut Self {
        self.writes.push(Write {
            key,
            value: Some(value),
            expect,
        });
        self
    }

    /// Adds a delete of `key`, conditional on `expect`.
    pub fn delete(&mut self, key: Vec<u8>, expect: Expect) -> &mut Self {
        self.writes.push(Write {
            key,
            value: None,
            expect,
        });
        self
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// The bytes of keys and values it writes.
    pub fn bytes(&self) -> usize {
        self.writes
            .iter()
            .map(|w| w.key.len() + w.value.as_ref().map_or(0, Vec::len))
            .sum()
    }

    /// Whether every expectation holds, given a way to read current values.
    pub(crate) fn expectations_hold<E>(
        &self,
        mut current: impl FnMut(&[u8]) -> Result<Option<Vec<u8>>, E>,
    ) -> Result<bool, E> {
        for w in &self.writes {
            if w.expect != Expect::Any && !w.expect.holds(current(&w.key)?.as_deref()) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Why a backend operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// A write's [`Expect`] did not hold; nothing was written.
    #[error("a conditional write found the key changed")]
    Conflict,
    /// The engine failed (I/O, corruption it detected, closed database).
    /// Shared, so that every batch of a failed group commit can carry it.
    #[error("storage failed: {0}")]
    Storage(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The backend answered something its contract rules out (keys out of
    /// order, say): its data is damaged at rest. Never retried into a
    /// shorter answer; `ostore check` says where.
    #[error("storage damaged: {0}")]
    Damaged(String),
    /// The database could not be opened; `hint` says what may be wrong.
    #[error("cannot open database {path}: {source}{hint}")]
    Open {
        path: String,
        hint: &'static str,
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// Writes fail for now: the disk is full, the device reported an I/O
    /// error, or the server refuses writes. Nothing of the batch is
    /// acknowledged; the backend keeps trying, and writes succeed again by
    /// themselves once the cause is cleared.
    #[error("writes failing: {fault}: {source}")]
    WritesFailing {
        fault: StorageFault,
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The thread that writes the database has stopped.
    #[error("storage failed: the database writer has stopped")]
    WriterStopped,
    /// The backend could not be reached or refused us at start; `what` says
    /// which and why, in one line.
    #[error("{what}")]
    Connect {
        what: String,
        #[source]
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
}

impl BackendError {
    /// An engine failure.
    pub fn storage(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        BackendError::Storage(Arc::new(e))
    }

    /// The storage fault behind this error, if it is one that clears by
    /// itself (a full disk, an I/O error, an unreachable server).
    pub fn fault(&self) -> Option<StorageFault> {
        match self {
            BackendError::WritesFailing { fault, .. } => Some(*fault),
            _ => None,
        }
    }
}

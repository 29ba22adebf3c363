//! The storage contract: an ordered map of opaque byte keys to opaque byte
//! values with atomic, conditional, durable batches.
//!
//! Backends know nothing of applications, names, TTL or encryption: by the
//! time a key reaches a backend it is an HMAC tag and its value is sealed.
//! That keeps the trait small enough that a new backend (or a
//! fault-injecting one in a test) is a short file.

mod file;
mod memory;

use std::future::Future;
use std::ops::Bound;
use std::pin::Pin;
use std::sync::Arc;

pub use file::{CommitStats, FileBackend};
pub use memory::MemoryBackend;

/// A key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// A boxed future, so that [`Backend`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A key-value engine the object store keeps its records in.
pub trait Backend: Send + Sync + 'static {
    /// Returns the value under `key`.
    ///
    /// Sees every batch whose [`commit`](Backend::commit) has returned `Ok`.
    fn get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Option<Vec<u8>>, BackendError>>;

    /// Returns up to `limit` pairs whose keys start with `prefix` and sort
    /// strictly after `after` (from the first such key when `after` is
    /// `None`), in ascending key order.
    ///
    /// A scan is a consistent snapshot of one moment, but successive scans
    /// (pages) may see writes made between them.
    fn scan<'a>(
        &'a self,
        prefix: &'a [u8],
        after: Option<&'a [u8]>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Pair>, BackendError>>;

    /// Applies every write of `batch`, or none of them.
    ///
    /// If any write's [`Expect`] does not hold at the moment the batch is
    /// applied, nothing is written and the result is
    /// [`BackendError::Conflict`]. `Ok` is returned only once the batch is
    /// durable: a crash after it cannot lose the batch.
    fn commit(&self, batch: Batch) -> BoxFuture<'_, Result<(), BackendError>>;
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

/// Writes applied together, atomically.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub writes: Vec<Write>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
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
    /// The database could not be opened; `hint` says what may be wrong.
    #[error("cannot open database {path}: {source}{hint}")]
    Open {
        path: String,
        hint: &'static str,
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The thread that writes the database has stopped.
    #[error("storage failed: the database writer has stopped")]
    WriterStopped,
}

impl BackendError {
    /// An engine failure.
    pub fn storage(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        BackendError::Storage(Arc::new(e))
    }
}

/// The contract every backend must keep, run against each of them.
#[cfg(test)]
mod contract {
    use super::*;

    async fn put(b: &dyn Backend, k: &[u8], v: &[u8], expect: Expect) -> Result<(), BackendError> {
        let mut batch = Batch::new();
        batch.put(k.to_vec(), v.to_vec(), expect);
        b.commit(batch).await
    }

    async fn keeps_the_contract(b: Arc<dyn Backend>) {
        assert_eq!(b.get(b"a").await.unwrap(), None);
        put(&*b, b"a", b"1", Expect::Absent).await.unwrap();
        assert_eq!(b.get(b"a").await.unwrap().as_deref(), Some(&b"1"[..]));
        // A failed expectation writes nothing of its batch.
        let mut batch = Batch::new();
        batch.put(b"b".to_vec(), b"2".to_vec(), Expect::Any);
        batch.put(b"a".to_vec(), b"x".to_vec(), Expect::Absent);
        assert!(matches!(b.commit(batch).await, Err(BackendError::Conflict)));
        assert_eq!(b.get(b"b").await.unwrap(), None);
        assert_eq!(b.get(b"a").await.unwrap().as_deref(), Some(&b"1"[..]));
        put(&*b, b"a", b"2", Expect::Value(b"1".to_vec()))
            .await
            .unwrap();
        assert!(matches!(
            put(&*b, b"a", b"3", Expect::Value(b"1".to_vec())).await,
            Err(BackendError::Conflict)
        ));
        // Scans are ordered, bounded by prefix, limit and `after`.
        for k in [&b"p/2"[..], b"p/1", b"p/3", b"q/1", b"o/9"] {
            put(&*b, k, k, Expect::Any).await.unwrap();
        }
        let keys = |pairs: Vec<Pair>| pairs.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            keys(b.scan(b"p/", None, 10).await.unwrap()),
            [b"p/1", b"p/2", b"p/3"]
        );
        assert_eq!(
            keys(b.scan(b"p/", None, 2).await.unwrap()),
            [b"p/1", b"p/2"]
        );
        assert_eq!(
            keys(b.scan(b"p/", Some(b"p/1"), 10).await.unwrap()),
            [b"p/2", b"p/3"]
        );
        assert!(b.scan(b"p/", Some(b"p/3"), 10).await.unwrap().is_empty());
        let mut delete = Batch::new();
        delete.delete(b"p/2".to_vec(), Expect::Any);
        b.commit(delete).await.unwrap();
        assert_eq!(
            keys(b.scan(b"p/", None, 10).await.unwrap()),
            [b"p/1", b"p/3"]
        );
        // Concurrent conditional creates of one key: exactly one wins.
        let racers: Vec<_> = (0..50u8)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move { put(&*b, b"race", &[i], Expect::Absent).await.is_ok() })
            })
            .collect();
        let mut winners = 0;
        for r in racers {
            winners += usize::from(r.await.unwrap());
        }
        assert_eq!(winners, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_backend_keeps_the_contract() {
        keeps_the_contract(Arc::new(MemoryBackend::new())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn file_backend_keeps_the_contract_and_its_data() {
        let dir = std::env::temp_dir().join(format!("ostore-contract-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.redb");
        let _ = std::fs::remove_file(&path);
        keeps_the_contract(Arc::new(FileBackend::open(&path).unwrap())).await;
        // Many concurrent writers, grouped into shared commits, all land.
        {
            let file = Arc::new(FileBackend::open(&path).unwrap());
            let b: Arc<dyn Backend> = file.clone();
            let writers: Vec<_> = (0..200u32)
                .map(|i| {
                    let b = b.clone();
                    tokio::spawn(async move {
                        put(&*b, format!("w/{i:03}").as_bytes(), b"v", Expect::Absent).await
                    })
                })
                .collect();
            for w in writers {
                w.await.unwrap().unwrap();
            }
            // Writes that waited while a commit was syncing shared the next
            // transaction: fewer fsyncs than writes.
            let stats = file.commit_stats();
            assert_eq!(stats.batches, 200);
            assert!(
                stats.transactions < 200,
                "{stats:?}: no write shared a commit"
            );
        }
        let reopened = FileBackend::open(&path).unwrap();
        assert_eq!(reopened.scan(b"w/", None, 1000).await.unwrap().len(), 200);
        assert_eq!(
            reopened.get(b"a").await.unwrap().as_deref(),
            Some(&b"2"[..])
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

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
use std::pin::Pin;

pub use file::FileBackend;
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
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// A write's [`Expect`] did not hold; nothing was written.
    #[error("a conditional write found the key changed")]
    Conflict,
    /// The engine failed (I/O, corruption it detected, closed database).
    #[error("storage failed: {0}")]
    Storage(String),
}

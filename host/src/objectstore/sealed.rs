//! Records in and out of the backend: sealed on the way in, opened and
//! checked on the way out, scanned in chunks.
//!
//! A [`SealedTable`] pairs the backend with one set of keys (the master
//! key's, or one application's). Every record it writes is sealed with its
//! backend key as associated data; every record it reads that does not open,
//! or opens to bytes that do not parse, is [`Error::Integrity`]: never data.

use crate::backend::{Backend, BackendError, Batch, Expect, Pair};
use crate::encryption::Sealer;

use super::Error;
use super::keys::{Prefix, RecordKey, ShardSpan};
use super::record::Record;

/// The backend seen through one set of keys.
#[derive(Clone, Copy)]
pub(crate) struct SealedTable<'a> {
    backend: &'a dyn Backend,
    sealer: &'a Sealer,
}

/// A record as read: its plaintext and the sealed bytes it came from (the
/// expectation of a later conditional write).
pub(crate) struct Opened<R> {
    pub record: R,
    pub sealed: Vec<u8>,
}

/// What a conditional commit did.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commit {
    /// Every write was applied.
    Done,
    /// An expectation did not hold; nothing was written.
    Conflict,
}

/// How many pairs a scan reads per backend call.
pub(crate) const SCAN_CHUNK: usize = 256;

impl<'a> SealedTable<'a> {
    pub fn new(backend: &'a dyn Backend, sealer: &'a Sealer) -> Self {
        Self { backend, sealer }
    }

    pub fn backend(&self) -> &'a dyn Backend {
        self.backend
    }

    /// Whether a record is stored under `key` (it is not opened).
    pub async fn exists(&self, key: &RecordKey) -> Result<bool, Error> {
        let shard = key.shard().encode();
        Ok(self.backend.get(&shard, &key.encode()).await?.is_some())
    }

    /// The keys this table seals and opens with.
    pub fn sealer(&self) -> &'a Sealer {
        self.sealer
    }

    /// `record` sealed for the backend key `key`.
    pub fn seal<R: Record>(&self, key: &[u8], record: &R) -> Vec<u8> {
        self.sealer.seal(key, &record.encode())
    }

    /// Opens what [`seal`](Self::seal) made for `key`.
    pub fn open<R: Record>(&self, key: &[u8], sealed: &[u8]) -> Result<R, Error> {
        let plain = self
            .sealer
            .open(key, sealed)
            .map_err(|_| Error::Integrity)?;
        R::decode(&plain).map_err(|_| Error::Integrity)
    }

    /// The record at `key`, if there is one.
    pub async fn get<R: Record>(&self, key: &RecordKey) -> Result<Option<Opened<R>>, Error> {
        let bytes = key.encode();
        match self.backend.get(&key.shard().encode(), &bytes).await? {
            Some(sealed) => Ok(Some(Opened {
                record: self.open(&bytes, &sealed)?,
                sealed,
            })),
            None => Ok(None),
        }
    }

    /// The record at `key`. If there is none, `create` may give one, which
    /// is written only if the key is still absent: of concurrent creators one
    /// wins and the others read its record.
    pub async fn read_or_create<R: Record>(
        &self,
        key: &RecordKey,
        mut create: impl FnMut() -> Option<R>,
    ) -> Result<Option<R>, Error> {
        let bytes = key.encode();
        let shard = key.shard().encode();
        loop {
            if let Some(sealed) = self.backend.get(&shard, &bytes).await? {
                return Ok(Some(self.open(&bytes, &sealed)?));
            }
            let Some(record) = create() else {
                return Ok(None);
            };
            let mut batch = Batch::new(shard.clone());
            batch.put(bytes.clone(), self.seal(&bytes, &record), Expect::Absent);
            match self.commit(batch).await? {
                Commit::Done => return Ok(Some(record)),
                // Another request created it first: read theirs.
                Commit::Conflict => continue,
            }
        }
    }

    /// Writes `record` at `key` whatever is there.
    pub async fn put<R: Record>(&self, key: &RecordKey, record: &R) -> Result<(), Error> {
        let bytes = key.encode();
        let mut batch = Batch::new(key.shard().encode());
        batch.put(bytes.clone(), self.seal(&bytes, record), Expect::Any);
        self.commit_unconditional(batch).await
    }

    /// Applies `batch` (writes of its one shard), or nothing if an
    /// expectation fails.
    pub async fn commit(&self, batch: Batch) -> Result<Commit, Error> {
        debug_assert!(
            in_its_shard(&batch),
            "a write is outside its batch's shard: {batch:?}"
        );
        match self.backend.commit(batch).await {
            Ok(()) => Ok(Commit::Done),
            Err(BackendError::Conflict) => Ok(Commit::Conflict),
            Err(e) => Err(Error::Storage(e)),
        }
    }

    /// Applies a batch whose writes expect nothing, so it cannot conflict.
    pub async fn commit_unconditional(&self, batch: Batch) -> Result<(), Error> {
        debug_assert!(batch.writes.iter().all(|w| w.expect == Expect::Any));
        match self.commit(batch).await? {
            Commit::Done => Ok(()),
            Commit::Conflict => unreachable!("a batch without expectations conflicted"),
        }
    }

    /// The records under `prefix`, in key order.
    pub fn scan(&self, prefix: Prefix) -> Scan<'a> {
        Scan {
            backend: self.backend,
            shards: prefix.shards(),
            prefix: prefix.encode(),
            after: None,
            done: false,
        }
    }
}

/// Whether every write of `batch` is to a record of the batch's shard.
fn in_its_shard(batch: &Batch) -> bool {
    batch
        .writes
        .iter()
        .all(|w| RecordKey::parse(&w.key).is_some_and(|k| k.shard().encode() == batch.shard))
}

/// Checks what a backend answered to a scan: keys under the prefix, in
/// strictly ascending order, after the last key of the previous chunk. A
/// damaged store (a flipped bit in a key of a redb page, say) can answer
/// otherwise; every listing, count and sweep relies on this order to know
/// where a scan ends and where the next chunk starts, so an answer out of
/// order is [`Error::Integrity`], never a short list taken as whole.
fn check_order(prefix: &[u8], after: Option<&[u8]>, chunk: &[Pair]) -> Result<(), Error> {
    let mut previous = after.filter(|a| a.starts_with(prefix));
    for (key, _) in chunk {
        if !key.starts_with(prefix) || previous.is_some_and(|p| key.as_slice() <= p) {
            tracing::warn!(
                "a scan met a key out of order, {}: the backend is damaged",
                crate::encryption::hex(key)
            );
            return Err(Error::Integrity);
        }
        previous = Some(key);
    }
    Ok(())
}

/// A scan in progress: successive chunks of the pairs under a prefix. Each
/// chunk is a consistent snapshot; writes between chunks may or may not be
/// seen, and deleting what was returned does not disturb the scan.
pub(crate) struct Scan<'a> {
    backend: &'a dyn Backend,
    shards: ShardSpan,
    prefix: Vec<u8>,
    after: Option<Vec<u8>>,
    done: bool,
}

impl Scan<'_> {
    /// Up to `limit` more pairs; fewer only at the end, none once ended.
    pub async fn next_chunk_of(&mut self, limit: usize) -> Result<Vec<Pair>, Error> {
        if self.done {
            return Ok(Vec::new());
        }
        let chunk = self
            .backend
            .scan(
                self.shards.as_shards(),
                &self.prefix,
                self.after.as_deref(),
                limit,
            )
            .await?;
        self.done = chunk.len() < limit;
        check_order(&self.prefix, self.after.as_deref(), &chunk)?;
        if let Some((last, _)) = chunk.last() {
            self.after = Some(last.clone());
        }
        Ok(chunk)
    }

    /// The next [`SCAN_CHUNK`] pairs; empty at the end.
    pub async fn next_chunk(&mut self) -> Result<Vec<Pair>, Error> {
        self.next_chunk_of(SCAN_CHUNK).await
    }

    /// Every pair left, for a scan known to be short (an application's
    /// stores, a partition's counts).
    pub async fn all(mut self) -> Result<Vec<Pair>, Error> {
        let mut all = Vec::new();
        loop {
            let chunk = self.next_chunk().await?;
            if chunk.is_empty() {
                return Ok(all);
            }
            all.extend(chunk);
        }
    }
}

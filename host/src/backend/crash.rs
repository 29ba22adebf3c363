//! Crash simulation, for tests that every acknowledged write survives a
//! power cut: [`CrashingBackend`] wraps a backend that stands for the disk
//! (what is durable), holds each commit in a not-yet-durable queue until
//! the test calls a sync point, and acknowledges a commit only once that
//! sync has made it durable in the inner backend, as redb does (a commit
//! returns after its fsync) and as Redis with `appendfsync always` does.
//! [`CrashingBackend::crash`] drops everything not yet durable, as a power
//! cut drops the page cache; the writers of those commits never get an
//! acknowledgement.
//!
//! The model, and why:
//! - Reads see only what is durable. redb's readers see a transaction once
//!   it has committed, and it commits durably; nothing not durable is ever
//!   shown, so nothing shown can vanish in a crash.
//! - The queue is ordered, and each commit's expectations are checked
//!   against what is durable plus the queue before it, as a group commit's
//!   single writer checks each batch inside its one transaction.
//! - A sync makes the whole queue durable at once (a group commit is one
//!   transaction and one fsync: all of it survives, or none).
//!
//! A test lets writers run against the object store, calls
//! [`sync`](CrashingBackend::sync) and [`crash`](CrashingBackend::crash) at
//! points a seed chooses, then opens a fresh object store over the inner
//! backend, as a restarted host does, and checks the acknowledged writes.

use std::sync::Arc;

use tokio::sync::{Mutex, oneshot};

use super::{Backend, BackendError, Batch, BoxFuture, Expect, Pair, Shards, StorageFault};

/// A commit waiting for a sync point, and the writer waiting for its
/// acknowledgement.
struct Queued {
    batch: Batch,
    acknowledge: oneshot::Sender<Result<(), BackendError>>,
}

/// A [`Backend`] whose commits become durable (and acknowledged) only at
/// the sync points a test calls, and which can lose every commit not yet
/// durable; see the module docs.
pub struct CrashingBackend {
    /// What is durable: what a restarted host finds.
    durable: Arc<dyn Backend>,
    /// Commits accepted but not yet durable, oldest first.
    queue: Mutex<Vec<Queued>>,
}

/// What a writer whose commit was lost in a crash is told (in a real crash
/// it is told nothing: its process is gone).
#[derive(Debug, thiserror::Error)]
#[error("the host crashed before the commit was durable")]
pub struct Crashed;

impl CrashingBackend {
    /// Wraps `durable`, the backend that stands for the disk.
    pub fn new(durable: Arc<dyn Backend>) -> Self {
        Self {
            durable,
            queue: Mutex::new(Vec::new()),
        }
    }

    /// The durable backend, to open a "restarted" object store over.
    pub fn durable(&self) -> Arc<dyn Backend> {
        self.durable.clone()
    }

    /// How many commits wait for a sync point.
    pub async fn pending(&self) -> usize {
        self.queue.lock().await.len()
    }

    /// A sync point: makes every queued commit durable, in order, then
    /// acknowledges each; returns how many.
    pub async fn sync(&self) -> usize {
        let mut queue = self.queue.lock().await;
        let synced = queue.len();
        for queued in queue.drain(..) {
            // Each batch's expectations held against what was durable plus
            // the batches before it, so they hold now; the inner backend
            // checks them again.
            let result = self.durable.commit(queued.batch).await;
            let _ = queued.acknowledge.send(result);
        }
        synced
    }

    /// A crash: drops every commit not yet durable (none of them is
    /// acknowledged); returns how many were lost.
    pub async fn crash(&self) -> usize {
        let mut queue = self.queue.lock().await;
        let lost = queue.len();
        for queued in queue.drain(..) {
            let _ = queued.acknowledge.send(Err(crashed()));
        }
        lost
    }

    /// The value `key` of `shard` has once the queue is durable.
    async fn current(
        &self,
        queue: &[Queued],
        shard: &[u8],
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, BackendError> {
        let queued = queue
            .iter()
            .rev()
            .filter(|q| q.batch.shard == shard)
            .find_map(|q| q.batch.writes.iter().rev().find(|w| w.key == key));
        match queued {
            Some(write) => Ok(write.value.clone()),
            None => self.durable.get(shard, key).await,
        }
    }

    async fn enqueue(&self, batch: Batch) -> Result<(), BackendError> {
        if batch.is_empty() {
            return Ok(());
        }
        let acknowledged = {
            let mut queue = self.queue.lock().await;
            for w in &batch.writes {
                if w.expect != Expect::Any {
                    let now = self.current(&queue, &batch.shard, &w.key).await?;
                    if !w.expect.holds(now.as_deref()) {
                        return Err(BackendError::Conflict);
                    }
                }
            }
            let (acknowledge, acknowledged) = oneshot::channel();
            queue.push(Queued { batch, acknowledge });
            acknowledged
        };
        acknowledged.await.unwrap_or_else(|_| Err(crashed()))
    }
}

fn crashed() -> BackendError {
    BackendError::WritesFailing {
        fault: StorageFault::Io,
        source: Arc::new(Crashed),
    }
}

impl Backend for CrashingBackend {
    fn get<'a>(
        &'a self,
        shard: &'a [u8],
        key: &'a [u8],
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, BackendError>> {
        self.durable.get(shard, key)
    }

    fn scan<'a>(
        &'a self,
        shards: Shards<'a>,
        prefix: &'a [u8],
        after: Option<&'a [u8]>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Pair>, BackendError>> {
        self.durable.scan(shards, prefix, after, limit)
    }

    fn commit(&self, batch: Batch) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(self.enqueue(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;

    fn put(key: &str, value: &str, expect: Expect) -> Batch {
        let mut batch = Batch::new(b"s".to_vec());
        batch.put(key.into(), value.into(), expect);
        batch
    }

    #[tokio::test]
    async fn a_commit_is_acknowledged_only_once_durable_and_a_crash_loses_only_the_unacknowledged()
    {
        let disk = Arc::new(MemoryBackend::new());
        let backend = Arc::new(CrashingBackend::new(disk.clone()));
        let writer = {
            let backend = backend.clone();
            tokio::spawn(async move { backend.commit(put("a", "1", Expect::Absent)).await })
        };
        while backend.pending().await == 0 {
            tokio::task::yield_now().await;
        }
        assert!(!writer.is_finished(), "acknowledged before a sync point");
        // Not durable, so not visible either.
        assert_eq!(backend.get(b"s", b"a").await.unwrap(), None);
        // A second writer's expectation sees the queued commit.
        assert!(matches!(
            backend.commit(put("a", "2", Expect::Absent)).await,
            Err(BackendError::Conflict)
        ));
        assert_eq!(backend.sync().await, 1);
        writer.await.unwrap().expect("acknowledged after the sync");
        assert_eq!(disk.get(b"s", b"a").await.unwrap(), Some(b"1".to_vec()));

        let lost = {
            let backend = backend.clone();
            tokio::spawn(async move { backend.commit(put("b", "1", Expect::Any)).await })
        };
        while backend.pending().await == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(backend.crash().await, 1);
        assert!(
            lost.await.unwrap().is_err(),
            "a lost commit was acknowledged"
        );
        assert_eq!(disk.get(b"s", b"b").await.unwrap(), None);
        assert_eq!(disk.get(b"s", b"a").await.unwrap(), Some(b"1".to_vec()));
    }
}

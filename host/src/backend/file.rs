//! The default backend: one redb file, written through a group-commit writer.
//!
//! redb makes a commit durable with an fsync, which costs far more than the
//! writes themselves. [`GroupCommitWriter`] therefore owns all writing: it
//! takes every batch that is waiting, applies them in one transaction, makes
//! that transaction durable with one commit, and only then acknowledges each
//! batch. Under load many writes share one fsync; a lone write still gets its
//! own. No batch is acknowledged before it is durable.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::{Backend, BackendError, Batch, BoxFuture, Pair, Shards, scan_start};

const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");

/// How many batches one transaction takes at most, so that a flood of writes
/// cannot make one commit (and the latency of its first writer) unbounded.
const MAX_GROUP_BATCHES: usize = 1024;
/// How many value bytes one transaction takes at most, for the same reason.
const MAX_GROUP_BYTES: usize = 64 << 20;

/// A [`Backend`] over a redb database file.
pub struct FileBackend {
    db: Arc<Database>,
    writer: GroupCommitWriter,
}

/// What the group-commit writer has done: how many batches it applied in
/// how many durable transactions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    pub batches: u64,
    pub transactions: u64,
}

impl FileBackend {
    /// Opens (or creates) the database at `path`, readable by its owner
    /// only.
    pub fn open(path: &Path) -> Result<Self, BackendError> {
        crate::fs::make_private(path).map_err(|e| BackendError::Open {
            path: path.display().to_string(),
            hint: " (cannot make the file private)",
            source: Arc::new(e),
        })?;
        let db = Database::create(path).map_err(|e| BackendError::Open {
            path: path.display().to_string(),
            hint: match e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    " (is another ostore using this data directory?)"
                }
                _ => "",
            },
            source: Arc::new(e),
        })?;
        let txn = db.begin_write().map_err(storage)?;
        txn.open_table(RECORDS).map_err(storage)?;
        txn.commit().map_err(storage)?;
        let db = Arc::new(db);
        let writer = GroupCommitWriter::start(db.clone())?;
        Ok(Self { db, writer })
    }

    /// Batches applied and transactions committed so far.
    pub fn commit_stats(&self) -> CommitStats {
        CommitStats {
            batches: self.writer.stats.batches.load(Ordering::Relaxed),
            transactions: self.writer.stats.transactions.load(Ordering::Relaxed),
        }
    }
}

fn storage(e: impl Into<redb::Error>) -> BackendError {
    BackendError::storage(e.into())
}

/// A scan met `key` out of key order: the file is damaged.
fn out_of_order(key: &[u8]) -> BackendError {
    BackendError::Damaged(format!(
        "key {} is out of order in the database file",
        crate::encryption::hex(key)
    ))
}

impl Backend for FileBackend {
    fn get<'a>(
        &'a self,
        _shard: &'a [u8],
        key: &'a [u8],
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, BackendError>> {
        Box::pin(async move {
            let txn = self.db.begin_read().map_err(storage)?;
            let table = txn.open_table(RECORDS).map_err(storage)?;
            Ok(table.get(key).map_err(storage)?.map(|v| v.value().to_vec()))
        })
    }

    /// One ordered map holds every shard: a prefix scan reads them all.
    fn scan<'a>(
        &'a self,
        _shards: Shards<'a>,
        prefix: &'a [u8],
        after: Option<&'a [u8]>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Pair>, BackendError>> {
        Box::pin(async move {
            let txn = self.db.begin_read().map_err(storage)?;
            let table = txn.open_table(RECORDS).map_err(storage)?;
            let range = table
                .range::<&[u8]>((scan_start(prefix, after), std::ops::Bound::Unbounded))
                .map_err(storage)?;
            let mut out: Vec<Pair> = Vec::new();
            let mut range = range.peekable();
            while let Some(item) = range.next() {
                if out.len() >= limit {
                    break;
                }
                let (k, v) = item.map_err(storage)?;
                let key = k.value();
                let previous = out.last().map(|(p, _)| p.as_slice());
                if previous.is_some_and(|p| key <= p) {
                    return Err(out_of_order(key));
                }
                if !key.starts_with(prefix) {
                    // The first key past the prefix ends the scan, but only
                    // if it is in its place: a bit flipped in a key of a
                    // page puts it out of order, and stopping there would
                    // silently leave out every key after it.
                    let next = range.peek().map(|n| n.as_ref().map(|(k, _)| k.value()));
                    if key < prefix || matches!(next, Some(Ok(n)) if n <= key) {
                        return Err(out_of_order(key));
                    }
                    break;
                }
                out.push((key.to_vec(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    fn commit(&self, batch: Batch) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(self.writer.commit(batch))
    }
}

type Reply = oneshot::Sender<Result<(), BackendError>>;

/// The single writer of a [`FileBackend`]: a thread that turns whatever
/// batches are waiting into one durable transaction.
struct GroupCommitWriter {
    stats: Arc<Counters>,
    /// `None` only while dropping.
    queue: Option<mpsc::Sender<(Batch, Reply)>>,
    thread: Option<thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    transactions: AtomicU64,
}

impl Drop for GroupCommitWriter {
    /// Closes the queue and waits for the writer to finish what it holds,
    /// so that the database is closed (and may be reopened) once the
    /// backend is dropped.
    fn drop(&mut self) {
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl GroupCommitWriter {
    fn start(db: Arc<Database>) -> Result<Self, BackendError> {
        let (queue, pending) = mpsc::channel();
        let stats = Arc::new(Counters::default());
        let counters = stats.clone();
        let thread = thread::Builder::new()
            .name("ostore-group-commit".into())
            .spawn(move || Self::run(&db, &pending, &counters))
            .map_err(BackendError::storage)?;
        Ok(Self {
            stats,
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    async fn commit(&self, batch: Batch) -> Result<(), BackendError> {
        if batch.is_empty() {
            return Ok(());
        }
        let (reply, done) = oneshot::channel();
        self.queue
            .as_ref()
            .expect("the queue is open until drop")
            .send((batch, reply))
            .map_err(|_| BackendError::WriterStopped)?;
        done.await.map_err(|_| BackendError::WriterStopped)?
    }

    /// Runs until every [`FileBackend`] handle (every queue sender) is gone.
    fn run(db: &Database, pending: &mpsc::Receiver<(Batch, Reply)>, counters: &Counters) {
        while let Ok(first) = pending.recv() {
            let mut group = vec![first];
            let mut bytes = batch_bytes(&group[0].0);
            while group.len() < MAX_GROUP_BATCHES && bytes < MAX_GROUP_BYTES {
                match pending.try_recv() {
                    Ok(next) => {
                        bytes += batch_bytes(&next.0);
                        group.push(next);
                    }
                    Err(_) => break,
                }
            }
            let (batches, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
            let count = batches.len() as u64;
            match apply_group(db, batches) {
                Ok(results) => {
                    counters.transactions.fetch_add(1, Ordering::Relaxed);
                    counters.batches.fetch_add(count, Ordering::Relaxed);
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(result);
                    }
                }
                Err(e) => {
                    tracing::error!("group commit failed: {e}");
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

fn batch_bytes(batch: &Batch) -> usize {
    batch
        .writes
        .iter()
        .map(|w| w.key.len() + w.value.as_ref().map_or(0, Vec::len))
        .sum()
}

/// Applies `batches` in order in one transaction and commits it durably.
/// Returns each batch's own outcome (a failed expectation skips only that
/// batch); an `Err` means the transaction failed and nothing was written.
fn apply_group(
    db: &Database,
    batches: Vec<Batch>,
) -> Result<Vec<Result<(), BackendError>>, BackendError> {
    let txn = db.begin_write().map_err(storage)?;
    let mut results = Vec::with_capacity(batches.len());
    {
        let mut table = txn.open_table(RECORDS).map_err(storage)?;
        for batch in batches {
            let holds = batch.expectations_hold(|k| {
                Ok::<_, BackendError>(table.get(k).map_err(storage)?.map(|v| v.value().to_vec()))
            })?;
            if !holds {
                results.push(Err(BackendError::Conflict));
                continue;
            }
            for w in &batch.writes {
                match &w.value {
                    Some(v) => table.insert(w.key.as_slice(), v.as_slice()).map(drop),
                    None => table.remove(w.key.as_slice()).map(drop),
                }
                .map_err(storage)?;
            }
            results.push(Ok(()));
        }
    }
    // Durability::Immediate is redb's default: commit returns after fsync.
    txn.commit().map_err(storage)?;
    Ok(results)
}

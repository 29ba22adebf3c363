//! The group-commit writer: one thread that takes every batch waiting,
//! applies them in one transaction and acknowledges them once it is
//! durable; and, while writes fail, which batches it still tries (see the
//! parent module's "A full disk, an I/O error" and "Deletes on a full
//! disk").

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableTable};
use tokio::sync::oneshot;

use super::engine::Engine;
use super::journal::{Journal, journal_fault};
use super::reserve::Reserve;
use super::{BackendError, Batch, RECORDS, RETRY_INTERVAL, StorageFault, storage};

/// How many batches one transaction takes at most, so that a flood of writes
/// cannot make one commit (and the latency of its first writer) unbounded.
const MAX_GROUP_BATCHES: usize = 1024;
/// How many value bytes one transaction takes at most, for the same reason.
const MAX_GROUP_BYTES: usize = 64 << 20;

type Reply = oneshot::Sender<Result<(), BackendError>>;

/// The single writer of a [`FileBackend`](super::FileBackend): a thread
/// that turns whatever batches are waiting into one durable transaction.
pub(super) struct GroupCommitWriter {
    pub(super) stats: Arc<Counters>,
    /// `None` only while dropping.
    queue: Option<mpsc::Sender<(Batch, Reply)>>,
    thread: Option<thread::JoinHandle<()>>,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) batches: AtomicU64,
    pub(super) transactions: AtomicU64,
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

/// The last failed commit, while writes fail.
struct Failing {
    error: BackendError,
    /// Until then, groups that store something are refused with `error`
    /// without trying; while reclaiming, when to look at the disk again.
    retry_at: Instant,
    /// The disk is full and the backend has a reserve: only groups that
    /// delete are tried until the disk has room again (see
    /// [`reserve`](super::reserve)).
    reclaiming: bool,
    /// The file space deletes freed while reclaiming since the last
    /// compaction (estimated, see [`footprint`]): what a compaction could
    /// give back to the disk.
    deleted: u64,
}

impl Failing {
    /// Whether a group that deletes nothing is refused now.
    fn refuses_growth(&self, now: Instant) -> bool {
        self.reclaiming || now < self.retry_at
    }
}

/// How often the writer tries to take a reserve it could not take before
/// (no room when the backend opened), while writes succeed.
const RESERVE_RETRY: Duration = Duration::from_secs(10);

impl GroupCommitWriter {
    pub(super) fn start(engine: Arc<Engine>, reserve: Reserve) -> Result<Self, BackendError> {
        let (queue, pending) = mpsc::channel();
        let stats = Arc::new(Counters::default());
        let counters = stats.clone();
        let thread = thread::Builder::new()
            .name("ostore-group-commit".into())
            .spawn(move || Self::run(&engine, &pending, &counters, reserve))
            .map_err(BackendError::storage)?;
        Ok(Self {
            stats,
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    pub(super) async fn commit(&self, batch: Batch) -> Result<(), BackendError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.send(batch).await
    }

    /// Resolves once every batch queued before it has been committed or
    /// has failed: an empty batch, a marker, goes through the queue behind
    /// them and is answered once its group is (with no transaction of its
    /// own).
    pub(super) async fn settled(&self) {
        let _ = self.send(Batch::new(Vec::new())).await;
    }

    async fn send(&self, batch: Batch) -> Result<(), BackendError> {
        let (reply, done) = oneshot::channel();
        self.queue
            .as_ref()
            .expect("the queue is open until drop")
            .send((batch, reply))
            .map_err(|_| BackendError::WriterStopped)?;
        done.await.map_err(|_| BackendError::WriterStopped)?
    }

    /// Runs until every [`FileBackend`](super::FileBackend) handle (every
    /// queue sender) is gone.
    fn run(
        engine: &Engine,
        pending: &mpsc::Receiver<(Batch, Reply)>,
        counters: &Counters,
        mut reserve: Reserve,
    ) {
        let mut failing: Option<Failing> = None;
        let mut reserve_retry_at = Instant::now() + RESERVE_RETRY;
        loop {
            // While reclaiming, the writer wakes by itself to look at the
            // disk, so that writes (and `/readyz`) recover without a client
            // write once space returns; and while the journal holds groups,
            // to checkpoint them in time when no write comes.
            let reclaim_at = failing
                .as_ref()
                .filter(|f| f.reclaiming)
                .map(|f| f.retry_at);
            // While writes fail, a checkpoint is tried at most once per
            // RETRY_INTERVAL, as groups are.
            let checkpoint_at = engine
                .journal()
                .and_then(|j| j.checkpoint_at())
                .map(|at| failing.as_ref().map_or(at, |f| at.max(f.retry_at)));
            let wake_at = reclaim_at.into_iter().chain(checkpoint_at).min();
            let first = match wake_at {
                Some(at) => {
                    match pending.recv_timeout(at.saturating_duration_since(Instant::now())) {
                        Ok(first) => first,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            if reclaim_at.is_some_and(|at| Instant::now() >= at) {
                                Self::reclaim(engine, &mut reserve, &mut failing);
                            }
                            Self::checkpoint(engine, &mut reserve, &mut failing, Instant::now());
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => {
                            Self::checkpoint(
                                engine,
                                &mut reserve,
                                &mut failing,
                                Instant::now() + CLOSING,
                            );
                            return;
                        }
                    }
                }
                None => match pending.recv() {
                    Ok(first) => first,
                    Err(_) => return,
                },
            };
            let mut group = vec![first];
            let mut bytes = group[0].0.bytes();
            while group.len() < MAX_GROUP_BATCHES && bytes < MAX_GROUP_BYTES {
                match pending.try_recv() {
                    Ok(next) => {
                        bytes += next.0.bytes();
                        group.push(next);
                    }
                    Err(_) => break,
                }
            }
            // Markers (see `settled`) are answered once the rest of their
            // group is: each batch queued before them is then done.
            let (markers, mut group): (Vec<_>, Vec<_>) =
                group.into_iter().partition(|(b, _)| b.is_empty());
            let _answer_markers = AnswerOnDrop(markers);
            if group.is_empty() {
                continue;
            }
            let now = Instant::now();
            if failing
                .as_ref()
                .is_some_and(|f| f.reclaiming && now >= f.retry_at)
            {
                Self::reclaim(engine, &mut reserve, &mut failing);
            }
            if failing.is_none()
                && reserve.configured()
                && !reserve.held()
                && now >= reserve_retry_at
            {
                reserve_retry_at = now + RESERVE_RETRY;
                if reserve.space_returned() {
                    let _ = reserve.take();
                }
            }
            if let Some(f) = &failing
                && f.refuses_growth(now)
            {
                // Only what frees space is tried while writes fail.
                let (tried, refused): (Vec<_>, Vec<_>) =
                    group.into_iter().partition(|(b, _)| deletes(b));
                for (_, reply) in refused {
                    let _ = reply.send(Err(f.error.clone()));
                }
                group = tried;
                if group.is_empty() {
                    continue;
                }
            }
            let (batches, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
            let count = batches.len() as u64;
            // An append that failed leaves redb as it was (its transaction
            // is dropped): there is nothing to reopen.
            let journal_failed = Cell::new(false);
            let (outcome, generation) = engine.once(&|db| {
                let mut journal = engine.journal();
                let durable = match journal.as_deref_mut() {
                    // While writes fail, groups are committed durably: a
                    // reopen then has no journal to apply, which would
                    // need room too.
                    Some(journal) if failing.is_none() && journaled(&batches) => {
                        Durable::Journal(journal)
                    }
                    journal => Durable::Commit(journal),
                };
                apply_group(db, durable, &batches, &journal_failed)
            });
            match outcome {
                Ok((results, deleted)) => {
                    match &mut failing {
                        // Deletes went through, but growing writes are
                        // still refused: the state stays "disk full".
                        Some(f) if f.reclaiming => f.deleted += deleted,
                        _ => {
                            engine.health.succeeded();
                            failing = None;
                        }
                    }
                    counters.transactions.fetch_add(1, Ordering::Relaxed);
                    counters.batches.fetch_add(count, Ordering::Relaxed);
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(result);
                    }
                    Self::checkpoint(engine, &mut reserve, &mut failing, Instant::now());
                }
                Err(e) => {
                    let reopen = (!journal_failed.get()).then_some(generation);
                    Self::failed(engine, &mut reserve, &mut failing, &e, reopen);
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// A commit or a checkpoint failed with `e`. For a storage fault,
    /// writes fail from now on (see the parent module): the health monitor
    /// hears of it, the reserve is let go on a full disk, and, if the
    /// failure came from redb (which latches it: every later read and write
    /// would fail until it is reopened), the database opened on
    /// `reopen` is reopened.
    fn failed(
        engine: &Engine,
        reserve: &mut Reserve,
        failing: &mut Option<Failing>,
        e: &BackendError,
        reopen: Option<u64>,
    ) {
        let Some(fault) = e.fault() else {
            tracing::error!("group commit failed: {e}");
            return;
        };
        engine.health.failed(fault, e);
        let reclaiming = fault == StorageFault::DiskFull && reserve.configured();
        if reclaiming && reserve.held() {
            // Before the reopen, whose repair may need room too.
            reserve.release();
        }
        if let Some(generation) = reopen {
            engine.reopen(generation);
        }
        let deleted = match failing {
            Some(f) if f.reclaiming && reclaiming => f.deleted,
            _ => 0,
        };
        *failing = Some(Failing {
            error: e.clone(),
            retry_at: Instant::now() + RETRY_INTERVAL,
            reclaiming,
            deleted,
        });
    }

    /// Checkpoints the journal if one is due by `now` (see
    /// [`journal`](super::journal)). A failed checkpoint is a failed
    /// commit: the database is reopened, which applies the journal again,
    /// and writes fail until that works.
    fn checkpoint(
        engine: &Engine,
        reserve: &mut Reserve,
        failing: &mut Option<Failing>,
        now: Instant,
    ) {
        let (outcome, generation) = engine.once(&|db| match engine.journal() {
            Some(mut journal) if journal.checkpoint_due(now) => journal.checkpoint(db),
            _ => Ok(()),
        });
        match outcome {
            Ok(()) => {}
            Err(e) if e.fault().is_none() => {
                // Not a storage fault (redb refusing for a reason of its
                // own): writes go on, committed durably, and the
                // checkpoint is tried again after the interval.
                tracing::error!("checkpoint failed: {e}");
                let retry_at = Instant::now() + RETRY_INTERVAL;
                match failing {
                    // A full disk stays what it was.
                    Some(f) => f.retry_at = retry_at,
                    None => {
                        *failing = Some(Failing {
                            error: e,
                            retry_at,
                            reclaiming: false,
                            deleted: 0,
                        })
                    }
                }
            }
            Err(e) => Self::failed(engine, reserve, failing, &e, Some(generation)),
        }
    }

    /// While reclaiming, at most once per [`RETRY_INTERVAL`]: compacts the
    /// file if the bytes deleted since the last compaction would make room
    /// for the reserve and its margin, then, if the disk has that room,
    /// takes the reserve again and lets every write through.
    fn reclaim(engine: &Engine, reserve: &mut Reserve, failing: &mut Option<Failing>) {
        let Some(f) = failing.as_mut() else {
            return;
        };
        f.retry_at = Instant::now() + RETRY_INTERVAL;
        let target = reserve.target();
        let free = reserve.free_space().unwrap_or(0);
        if free < target && f.deleted > 0 && free + f.deleted >= target {
            // Pages that deletes freed are free in the file, not on the
            // disk, until a compaction moves the pages after them forward
            // and shortens the file.
            engine.compact();
            f.deleted = 0;
        }
        // Where the free space cannot be asked (statvfs failed), writing
        // the reserve is the test: it fails on a full disk.
        if reserve.free_space().is_some_and(|free| free < target) {
            return;
        }
        match reserve.take() {
            Ok(()) => {
                *failing = None;
                engine.health.succeeded();
            }
            Err(e) => tracing::debug!("taking the reserve again failed: {e}"),
        }
    }
}

/// Whether `batch` deletes a key: what frees space (a delete of a record
/// comes with small updates of its indexes and counters).
fn deletes(batch: &Batch) -> bool {
    batch.writes.iter().any(|w| w.value.is_none())
}

/// About how much of the file an entry of `len` key and value bytes holds:
/// small entries share 4 KiB leaf pages; one larger than half a page gets
/// a leaf of its own, of a power of two pages (redb's buddy allocator), so
/// deleting it frees that much. An estimate, for deciding when a compaction
/// is worth its cost; the disk's free space decides the rest.
fn footprint(len: usize) -> u64 {
    const PAGE: usize = 4096;
    /// A leaf's header and the entry's offsets, generously.
    const OVERHEAD: usize = 64;
    if len + OVERHEAD <= PAGE / 2 {
        len as u64
    } else {
        (len + OVERHEAD).next_power_of_two().max(PAGE) as u64
    }
}

/// Each batch's own outcome in a group, and the key and value bytes the
/// group deleted.
type GroupOutcome = (Vec<Result<(), BackendError>>, u64);

/// Markers of [`GroupCommitWriter::settled`], answered when dropped: at
/// the end of their group's turn, however it ends.
struct AnswerOnDrop(Vec<(Batch, Reply)>);

impl Drop for AnswerOnDrop {
    fn drop(&mut self) {
        for (_, reply) in self.0.drain(..) {
            let _ = reply.send(Ok(()));
        }
    }
}

/// The most writes a group may hold to be made durable by the journal:
/// more, and it is committed durably by redb itself.
///
/// The journal makes a lone write's commit cheaper (an append and its
/// fdatasync instead of redb's page writes and fsync), but each checkpoint
/// then writes every page that the groups since the last one changed, and
/// holds the writer meanwhile. Under load, when many changes share each
/// commit anyway (the object store's own group commit puts a partition's
/// waiting changes in one batch), those pauses cost more than the journal
/// saves (docs/BENCHMARKS.md, "The journal"). A lone key's creation is a
/// handful of writes (its entry, its expiry entry, an index page, the
/// partition's counts).
const JOURNALED_WRITES: usize = 16;

/// The most key and value bytes a group may hold to be made durable by the
/// journal: a larger value would be written twice (to the journal, then
/// by the checkpoint) for little gain, and the journal stays small.
const JOURNALED_BYTES: usize = 256 << 10;

/// Whether `batches` are few and small enough to be journaled.
fn journaled(batches: &[Batch]) -> bool {
    batches.iter().map(|b| b.writes.len()).sum::<usize>() <= JOURNALED_WRITES
        && batches.iter().map(Batch::bytes).sum::<usize>() <= JOURNALED_BYTES
}

/// When the writer closes, how far ahead it looks for a due checkpoint:
/// far enough that any group still in the journal is checkpointed, so that
/// the next start has nothing to replay.
const CLOSING: Duration = Duration::from_secs(3600);

/// How a group becomes durable.
enum Durable<'a> {
    /// Its writes are appended to the journal, then redb commits without
    /// an fsync of its own.
    Journal(&'a mut Journal),
    /// redb commits it durably; with a journal, the commit stamps a new
    /// epoch, and the journal begins anew (see [`journal`](super::journal)).
    Commit(Option<&'a mut Journal>),
}

/// Applies `batches` in order in one transaction and makes it durable as
/// `durable` says. Returns each batch's own outcome (a failed expectation
/// skips only that batch) and the bytes deleted; an `Err` means the
/// transaction failed and nothing was written (`journal_failed` is set
/// when the failure was the journal's, and redb is as it was).
fn apply_group(
    db: &Database,
    durable: Durable<'_>,
    batches: &[Batch],
    journal_failed: &Cell<bool>,
) -> Result<GroupOutcome, BackendError> {
    let mut txn = db.begin_write().map_err(storage)?;
    if matches!(durable, Durable::Journal(_)) {
        txn.set_durability(Durability::None).map_err(storage)?;
    }
    let mut results = Vec::with_capacity(batches.len());
    let mut deleted = 0u64;
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
                    Some(v) => {
                        table
                            .insert(w.key.as_slice(), v.as_slice())
                            .map_err(storage)?;
                    }
                    None => {
                        if let Some(old) = table.remove(w.key.as_slice()).map_err(storage)? {
                            deleted += footprint(w.key.len() + old.value().len());
                        }
                    }
                }
            }
            results.push(Ok(()));
        }
    }
    let journal = match durable {
        Durable::Commit(Some(journal)) => {
            journal.commit(txn)?;
            return Ok((results, deleted));
        }
        Durable::Commit(None) => {
            // Durability::Immediate is redb's default: commit returns after
            // fsync.
            txn.commit().map_err(storage)?;
            return Ok((results, deleted));
        }
        Durable::Journal(journal) => journal,
    };
    let appended = results.iter().any(Result::is_ok);
    if appended {
        let applied = batches
            .iter()
            .zip(&results)
            .filter(|(_, result)| result.is_ok())
            .flat_map(|(batch, _)| &batch.writes);
        if let Err(e) = journal.append(applied) {
            let _ = txn.abort();
            journal_failed.set(true);
            return Err(journal_fault(journal.path(), e));
        }
    }
    if let Err(e) = txn.commit() {
        // Not applied, so not to be replayed either.
        if appended {
            journal.retract();
        }
        return Err(storage(e));
    }
    Ok((results, deleted))
}

//! The default backend: one redb file, written through a group-commit writer.
//!
//! redb makes a commit durable with an fsync, which costs far more than the
//! writes themselves. [`GroupCommitWriter`] therefore owns all writing: it
//! takes every batch that is waiting, applies them in one transaction, makes
//! that transaction durable with one commit, and only then acknowledges each
//! batch. Under load many writes share one fsync; a lone write still gets its
//! own. No batch is acknowledged before it is durable.
//!
//! # A full disk, an I/O error
//!
//! redb latches an I/O error: once a commit of a `Database` has failed (a
//! full disk, say), every later operation of that `Database` fails with
//! "Previous I/O error occurred. Please close and re-open the database", even
//! after the cause is gone. So after a commit fails for an I/O error the
//! writer does what the message says: it waits for the reads in flight,
//! drops the database and opens it again (see [`Engine`]). Reopening rolls
//! the file back to its last durable commit, which loses nothing
//! acknowledged (only durable commits are acknowledged), and runs redb's
//! repair, which reads the whole file: its cost grows with the database.
//!
//! While writes fail, the writer does not try every batch anew: for
//! [`RETRY_INTERVAL`] after a failure, batches that delete nothing are
//! refused at once with the same fault, so that a disk that stays full costs
//! one repair per interval, not one per request. Batches that delete a key
//! are always tried, since deleting is how an operator frees space through
//! the API.
//!
//! # Deletes on a full disk: the reserve
//!
//! redb writes a delete copy-on-write too, so on a disk filled by the
//! database alone (a file that only grew, with no free page in it) a delete
//! needs new space and fails like a store. The backend therefore keeps a
//! ballast file beside the database ([`reserve`]): when a commit fails
//! because the disk is full, the writer deletes the ballast and then tries
//! only batches that delete (whatever the interval), so that deletes have
//! the ballast's room. Growing writes stay refused, and the health monitor
//! keeps reporting the disk full, until the disk has room for the ballast
//! and as much again: freed outside ostore, or by deletes, whose pages redb
//! hands back to the disk when the writer compacts the file (once the bytes
//! deleted would make room). Then the writer writes the ballast again and
//! all writes resume ("writes recovered").

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use crate::size::ByteSize;

use super::{
    Backend, BackendError, Batch, BoxFuture, Health, HealthMonitor, Pair, Shards, StorageFault,
    scan_start,
};

mod reserve;

use reserve::Reserve;
pub use reserve::{DISK_RESERVE, ballast_path};

const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");

/// How many batches one transaction takes at most, so that a flood of writes
/// cannot make one commit (and the latency of its first writer) unbounded.
const MAX_GROUP_BATCHES: usize = 1024;
/// How many value bytes one transaction takes at most, for the same reason.
const MAX_GROUP_BYTES: usize = 64 << 20;
/// How long after a failed commit groups that store something are refused
/// without trying: each failure costs a reopen, which reads the whole file.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// The default of [`RedbConfig::cache_size`]: 64 MiB.
///
/// redb's own default is 1 GiB, and redb fills its cache with every page it
/// reads until the cache is full: a host that had read a large database
/// once (a full listing, a recount) kept most of a gigabyte resident. Past
/// the B-tree's upper levels, which a few MiB hold even at millions of
/// keys, a page missing from redb's cache is read again from the kernel's
/// page cache, which the kernel may reclaim under pressure and a process's
/// RSS does not count. The scale bench measures both (docs/BENCHMARKS.md,
/// "Memory against keys held").
pub const DEFAULT_CACHE_SIZE: ByteSize = ByteSize(64 << 20);

/// The smallest cache accepted: below it redb would reread the upper levels
/// of the B-tree on nearly every operation.
pub const MIN_CACHE_SIZE: ByteSize = ByteSize(1 << 20);

/// How the redb backend opens its file: the `[object_store]` table of a
/// runtime config file with `type = "redb"`, or `ostore up --cache-size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedbConfig {
    /// Memory redb may use to cache pages of the file (and to buffer a
    /// commit's writes): the part of the host's memory that grows with the
    /// data read. At least [`MIN_CACHE_SIZE`].
    pub cache_size: ByteSize,
}

impl Default for RedbConfig {
    fn default() -> Self {
        Self {
            cache_size: DEFAULT_CACHE_SIZE,
        }
    }
}

impl RedbConfig {
    /// Whether the settings are usable, and if not, why.
    pub fn check(&self) -> Result<(), String> {
        if self.cache_size < MIN_CACHE_SIZE {
            return Err(format!(
                "the redb cache size must be at least {MIN_CACHE_SIZE}, not {}",
                self.cache_size
            ));
        }
        Ok(())
    }

    /// Opens (or creates) the database at `path` with this configuration,
    /// readable by its owner only.
    pub fn open(&self, path: &Path) -> Result<FileBackend, BackendError> {
        if let Err(why) = self.check() {
            return Err(BackendError::Open {
                path: path.display().to_string(),
                hint: "",
                source: Arc::new(std::io::Error::new(std::io::ErrorKind::InvalidInput, why)),
            });
        }
        crate::fs::make_private(path).map_err(|e| BackendError::Open {
            path: path.display().to_string(),
            hint: " (cannot make the file private)",
            source: Arc::new(e),
        })?;
        let file = path.to_path_buf();
        // Saturates on 32-bit targets, where no cache can be that large.
        let cache = usize::try_from(self.cache_size.0).unwrap_or(usize::MAX);
        let mut reserve = Reserve::beside(path, DISK_RESERVE);
        if let Err(e) = reserve.take() {
            // Not fatal: the host serves, and the writer takes the reserve
            // once the disk has room for it.
            tracing::warn!(
                "cannot keep a {} reserve beside {} ({e}); until there is room for it, \
                 deletes on a full disk may fail",
                ByteSize(DISK_RESERVE),
                path.display()
            );
        }
        FileBackend::start(
            &path.display().to_string(),
            Box::new(move || redb::Builder::new().set_cache_size(cache).create(&file)),
            reserve,
        )
    }
}

/// A [`Backend`] over a redb database file.
pub struct FileBackend {
    engine: Arc<Engine>,
    writer: GroupCommitWriter,
}

/// What the group-commit writer has done: how many batches it applied in
/// how many durable transactions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    pub batches: u64,
    pub transactions: u64,
}

/// How a [`FileBackend`] opens its database, at start and after an I/O
/// error.
type Opener = Box<dyn Fn() -> Result<Database, redb::DatabaseError> + Send + Sync>;

impl FileBackend {
    /// Opens (or creates) the database at `path` with the default
    /// [`RedbConfig`], readable by its owner only.
    pub fn open(path: &Path) -> Result<Self, BackendError> {
        RedbConfig::default().open(path)
    }

    /// Opens the database that `open` opens, and opens it with `open` again
    /// whenever an I/O error makes redb ask for a reopen; `place` names it
    /// in messages.
    ///
    /// Tests give a database over a fault-injecting redb storage here (see
    /// [`FaultyStorage`](super::fault::FaultyStorage)).
    ///
    /// Such a database has no file of its own to keep a reserve beside
    /// (see [`DISK_RESERVE`]): on a full disk, deletes work where redb's file
    /// has free pages.
    pub fn open_with(
        place: &str,
        open: impl Fn() -> Result<Database, redb::DatabaseError> + Send + Sync + 'static,
    ) -> Result<Self, BackendError> {
        Self::start(place, Box::new(open), Reserve::none())
    }

    /// Opens the database with `open` and starts its writer, which keeps
    /// `reserve` (taken already, if there was room).
    fn start(place: &str, open: Opener, reserve: Reserve) -> Result<Self, BackendError> {
        let db = open().map_err(|e| BackendError::Open {
            path: place.to_string(),
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
        let engine = Arc::new(Engine {
            db: RwLock::new(Opened {
                db: Some(db),
                generation: 0,
            }),
            open,
            health: HealthMonitor::new("redb"),
        });
        let writer = GroupCommitWriter::start(engine.clone(), reserve)?;
        Ok(Self { engine, writer })
    }

    /// Batches applied and transactions committed so far.
    pub fn commit_stats(&self) -> CommitStats {
        CommitStats {
            batches: self.writer.stats.batches.load(Ordering::Relaxed),
            transactions: self.writer.stats.transactions.load(Ordering::Relaxed),
        }
    }
}

/// A redb error as a backend error: an I/O error, or redb's refusal after
/// one, is a [`StorageFault`] that clears by itself.
fn storage(e: impl Into<redb::Error>) -> BackendError {
    match e.into() {
        redb::Error::Io(io) => BackendError::WritesFailing {
            fault: StorageFault::of_io(&io),
            source: Arc::new(io),
        },
        e @ (redb::Error::PreviousIo | redb::Error::DatabaseClosed) => {
            BackendError::WritesFailing {
                fault: StorageFault::Io,
                source: Arc::new(e),
            }
        }
        e => BackendError::storage(e),
    }
}

/// The database of a [`FileBackend`], and how to open it again.
///
/// Readers and the writer use the database under a read lock; a reopen takes
/// the write lock, so it waits for the reads and the commit in flight, and
/// they wait for it. redb locks the file while a `Database` is open, so the
/// old one is dropped (closing the file) before the new one opens.
struct Engine {
    db: RwLock<Opened>,
    open: Opener,
    health: HealthMonitor,
}

/// The database as last opened.
struct Opened {
    /// `None` only after a reopen failed; the next operation tries again.
    db: Option<Database>,
    /// Counts opens, so that of several operations that met the same
    /// latched error only the first reopens.
    generation: u64,
}

impl Engine {
    /// Runs `f` on the open database. An operation that meets a latched I/O
    /// error (a commit failed since it began) reopens and tries once more.
    fn read<T>(&self, f: impl Fn(&Database) -> Result<T, BackendError>) -> Result<T, BackendError> {
        match self.once(&f) {
            (Err(e), generation) if e.fault().is_some() => {
                self.reopen(generation);
                self.once(&f).0
            }
            (result, _) => result,
        }
    }

    /// Runs `f` once on the open database (opening it if a reopen failed
    /// before); also returns which opening of the database it ran on.
    fn once<T>(
        &self,
        f: &impl Fn(&Database) -> Result<T, BackendError>,
    ) -> (Result<T, BackendError>, u64) {
        let generation = {
            let opened = self.db.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(db) = opened.db.as_ref() {
                return (f(db), opened.generation);
            }
            opened.generation
        };
        self.reopen(generation);
        let opened = self.db.read().unwrap_or_else(PoisonError::into_inner);
        match opened.db.as_ref() {
            Some(db) => (f(db), opened.generation),
            None => (Err(closed()), opened.generation),
        }
    }

    /// Closes the database and opens it again, which clears redb's latched
    /// I/O error and rolls back to the last durable commit; unless it was
    /// reopened since `generation`, which `failed_on` ran on.
    fn reopen(&self, failed_on: u64) {
        let mut opened = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if opened.generation != failed_on {
            return;
        }
        self.reopen_locked(&mut opened);
    }

    fn reopen_locked(&self, opened: &mut Opened) {
        // The file stays locked until the old database is dropped.
        drop(opened.db.take());
        opened.generation += 1;
        match (self.open)() {
            Ok(db) => opened.db = Some(db),
            // Logged at debug only: the health monitor has logged the
            // failing state, and the next operation tries again.
            Err(e) => tracing::debug!("reopening the database failed: {e}"),
        }
    }

    /// Compacts the file, which moves its pages to the front and gives the
    /// free ones at its end back to the disk. Reads wait for it (redb
    /// compacts only with no transaction open), and it reads the whole
    /// file: the writer calls it only on a full disk, once deletes would
    /// make room.
    fn compact(&self) {
        let mut opened = self.db.write().unwrap_or_else(PoisonError::into_inner);
        let Some(db) = opened.db.as_mut() else {
            return;
        };
        match db.compact() {
            Ok(_) => tracing::info!(
                "compacted the database file to give space deletes freed back to the disk"
            ),
            Err(e) => {
                tracing::warn!("compacting the database failed: {e}");
                // A commit that failed inside the compaction latches the
                // database, as any failed commit does.
                self.reopen_locked(&mut opened);
            }
        }
    }
}

/// The error of an operation that found the database closed, its reopen
/// having failed.
fn closed() -> BackendError {
    storage(redb::Error::DatabaseClosed)
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
        let value = self.engine.read(|db| {
            let txn = db.begin_read().map_err(storage)?;
            let table = txn.open_table(RECORDS).map_err(storage)?;
            Ok(table.get(key).map_err(storage)?.map(|v| v.value().to_vec()))
        });
        Box::pin(async move { value })
    }

    /// One ordered map holds every shard: a prefix scan reads them all.
    fn scan<'a>(
        &'a self,
        _shards: Shards<'a>,
        prefix: &'a [u8],
        after: Option<&'a [u8]>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Pair>, BackendError>> {
        let pairs = self.engine.read(|db| {
            let txn = db.begin_read().map_err(storage)?;
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
        });
        Box::pin(async move { pairs })
    }

    fn commit(&self, batch: Batch) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(self.writer.commit(batch))
    }

    fn health(&self) -> Health {
        self.engine.health.health()
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

/// The last failed commit, while writes fail.
struct Failing {
    error: BackendError,
    /// Until then, groups that store something are refused with `error`
    /// without trying; while reclaiming, when to look at the disk again.
    retry_at: Instant,
    /// The disk is full and the backend has a reserve: only groups that
    /// delete are tried until the disk has room again (see [`reserve`]).
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
    fn start(engine: Arc<Engine>, reserve: Reserve) -> Result<Self, BackendError> {
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
            // write once space returns.
            let first = match failing.as_ref().filter(|f| f.reclaiming) {
                Some(f) => {
                    let wait = f.retry_at.saturating_duration_since(Instant::now());
                    match pending.recv_timeout(wait) {
                        Ok(first) => first,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            Self::reclaim(engine, &mut reserve, &mut failing);
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
                None => match pending.recv() {
                    Ok(first) => first,
                    Err(_) => return,
                },
            };
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
            let (outcome, generation) = engine.once(&|db| apply_group(db, &batches));
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
                }
                Err(e) => {
                    match e.fault() {
                        Some(fault) => {
                            engine.health.failed(fault, &e);
                            let reclaiming =
                                fault == StorageFault::DiskFull && reserve.configured();
                            if reclaiming && reserve.held() {
                                // Before the reopen, whose repair may
                                // need room too.
                                reserve.release();
                            }
                            // A failed commit latches the database: every
                            // later read and write would fail until it is
                            // reopened.
                            engine.reopen(generation);
                            let deleted = match &failing {
                                Some(f) if f.reclaiming && reclaiming => f.deleted,
                                _ => 0,
                            };
                            failing = Some(Failing {
                                error: e.clone(),
                                retry_at: Instant::now() + RETRY_INTERVAL,
                                reclaiming,
                                deleted,
                            });
                        }
                        None => tracing::error!("group commit failed: {e}"),
                    }
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
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

fn batch_bytes(batch: &Batch) -> usize {
    batch
        .writes
        .iter()
        .map(|w| w.key.len() + w.value.as_ref().map_or(0, Vec::len))
        .sum()
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

/// Applies `batches` in order in one transaction and commits it durably.
/// Returns each batch's own outcome (a failed expectation skips only that
/// batch) and the bytes deleted; an `Err` means the transaction failed and
/// nothing was written.
fn apply_group(db: &Database, batches: &[Batch]) -> Result<GroupOutcome, BackendError> {
    let txn = db.begin_write().map_err(storage)?;
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
    // Durability::Immediate is redb's default: commit returns after fsync.
    txn.commit().map_err(storage)?;
    Ok((results, deleted))
}

#[cfg(test)]
mod tests;

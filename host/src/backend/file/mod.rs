//! The default backend: one redb file, written through a group-commit writer.
//!
//! redb makes a commit durable with an fsync, which costs far more than the
//! writes themselves. [`GroupCommitWriter`] therefore owns all writing: it
//! takes every batch that is waiting, applies them in one transaction, makes
//! that transaction durable with one commit, and only then acknowledges each
//! batch. Under load many writes share one fsync. A lone write (a group of
//! a few writes) is made durable by the [`journal`] instead, an append and
//! an fdatasync, and redb commits it without an fsync of its own; a
//! checkpoint makes redb durable within a quarter of a second. No batch is
//! acknowledged before it is durable.
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
//!
//! # Layout
//!
//! | module | holds |
//! |---|---|
//! | `config` | [`RedbConfig`]: the cache size, and opening a file with it and its reserve |
//! | `engine` | [`Engine`]: the open database, and reopening it after an I/O error |
//! | `writer` | [`GroupCommitWriter`]: grouping batches into durable transactions, and refusing or reclaiming while writes fail |
//! | `journal` | where a lone write's group becomes durable, and applying it again after a crash |
//! | `reserve` | the ballast file that gives deletes room on a full disk |

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use redb::{Database, ReadOnlyTable, ReadableDatabase, TableDefinition};

use super::{
    Backend, BackendError, Batch, BoxFuture, Health, HealthMonitor, Pair, Shards, StorageFault,
    scan_start,
};

mod config;
mod engine;
mod journal;
mod reserve;
mod writer;

use engine::{Engine, Opened};
use journal::Journal;
use reserve::Reserve;
use writer::GroupCommitWriter;

pub use config::{DEFAULT_CACHE_SIZE, MIN_CACHE_SIZE, RedbConfig};
pub(crate) use journal::EPOCH as JOURNAL_EPOCH;
pub use journal::journal_path;
pub use reserve::{DISK_RESERVE, ballast_path};

const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");

/// How long after a failed commit groups that store something are refused
/// without trying: each failure costs a reopen, which reads the whole file.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);

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
        Self::start(place, Box::new(open), None, Reserve::none())
    }

    /// Opens the database with `open`, applies `journal` to it if it has
    /// one (see [`journal`]), and starts its writer, which keeps `reserve`
    /// (taken already, if there was room).
    fn start(
        place: &str,
        open: Opener,
        journal: Option<Journal>,
        reserve: Reserve,
    ) -> Result<Self, BackendError> {
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
                db: None,
                generation: 0,
            }),
            open,
            journal: journal.map(std::sync::Mutex::new),
            health: HealthMonitor::new("redb"),
        });
        let replayed = engine.replay(&db).map_err(|e| BackendError::Open {
            path: place.to_string(),
            hint: " (applying its journal)",
            source: Arc::new(e),
        })?;
        if replayed > 0 {
            tracing::info!("{place}: applied {replayed} groups of writes from the journal");
        }
        engine.db.write().unwrap_or_else(PoisonError::into_inner).db = Some(db);
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

/// Keys that one thread of [`read_many`] reads at least: for fewer, starting
/// a thread costs about what it would save.
const KEYS_PER_READER: usize = 64;

/// The values of `keys` in `table`, in order. Each is a point lookup in a
/// tree far larger than redb's cache, so a large batch spends its time in
/// cache misses and in copying pages out of the page cache; split across
/// the machine's cores (every part in the same read transaction, so one
/// snapshot), a listing's page of 1,000 took a quarter to two fifths less
/// time on 2 cores (docs/BENCHMARKS.md). Where a thread cannot be started,
/// the calling thread reads that part too.
fn read_many(
    table: &ReadOnlyTable<&'static [u8], &'static [u8]>,
    keys: &[Vec<u8>],
) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
    let read = |part: &[Vec<u8>]| -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        part.iter()
            .map(|key| {
                Ok(table
                    .get(&key[..])
                    .map_err(storage)?
                    .map(|v| v.value().to_vec()))
            })
            .collect()
    };
    let readers = cores().min(keys.len() / KEYS_PER_READER);
    if readers < 2 {
        return read(keys);
    }
    let mut parts = keys.chunks(keys.len().div_ceil(readers));
    let own = parts.next().unwrap_or_default();
    std::thread::scope(|scope| {
        let others: Vec<_> = parts
            .map(|part| {
                std::thread::Builder::new()
                    .name("ostore-read".into())
                    .spawn_scoped(scope, move || read(part))
                    .map_err(|_| part)
            })
            .collect();
        let mut values = read(own)?;
        for other in others {
            values.extend(match other {
                Ok(thread) => thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?,
                Err(part) => read(part)?,
            });
        }
        Ok(values)
    })
}

/// The cores this process may run on, asked once.
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
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

    /// One read transaction for all of them; a large batch (a listing's
    /// page) is read by several threads at once (see `read_many`).
    fn get_many<'a>(
        &'a self,
        _shard: &'a [u8],
        keys: &'a [Vec<u8>],
    ) -> BoxFuture<'a, Result<Vec<Option<Vec<u8>>>, BackendError>> {
        let values = self.engine.read(|db| {
            let txn = db.begin_read().map_err(storage)?;
            let table = txn.open_table(RECORDS).map_err(storage)?;
            read_many(&table, keys)
        });
        Box::pin(async move { values })
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

    fn settled(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.writer.settled())
    }

    fn health(&self) -> Health {
        self.engine.health.health()
    }
}

#[cfg(test)]
mod tests;

//! The open redb database of a [`FileBackend`](super::FileBackend), shared
//! by readers and the writer, and reopening it when redb latches an I/O
//! error (see the parent module's "A full disk, an I/O error").

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use redb::Database;

use super::journal::Journal;
use super::{BackendError, HealthMonitor, Opener, storage};

/// The database of a [`FileBackend`](super::FileBackend), and how to open
/// it again.
///
/// Readers and the writer use the database under a read lock; a reopen takes
/// the write lock, so it waits for the reads and the commit in flight, and
/// they wait for it. redb locks the file while a `Database` is open, so the
/// old one is dropped (closing the file) before the new one opens.
pub(super) struct Engine {
    pub(super) db: RwLock<Opened>,
    pub(super) open: Opener,
    /// Where groups become durable, if the database has a journal (see
    /// [`journal`](super::journal)); without one, each group's commit is
    /// durable by itself.
    pub(super) journal: Option<Mutex<Journal>>,
    pub(super) health: HealthMonitor,
}

/// The database as last opened.
pub(super) struct Opened {
    /// `None` only after a reopen failed; the next operation tries again.
    pub(super) db: Option<Database>,
    /// Counts opens, so that of several operations that met the same
    /// latched error only the first reopens.
    pub(super) generation: u64,
}

impl Engine {
    /// Runs `f` on the open database. An operation that meets a latched I/O
    /// error (a commit failed since it began) reopens and tries once more.
    pub(super) fn read<T>(
        &self,
        f: impl Fn(&Database) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
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
    pub(super) fn once<T>(
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
    pub(super) fn reopen(&self, failed_on: u64) {
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
        // Reopening rolls redb back to its last durable commit: the groups
        // acknowledged since are in the journal, and come back from it.
        let reopened = (self.open)()
            .map_err(storage)
            .and_then(|db| self.replay(&db).map(|_| db));
        match reopened {
            Ok(db) => opened.db = Some(db),
            // Logged at debug only: the health monitor has logged the
            // failing state, and the next operation tries again.
            Err(e) => tracing::debug!("reopening the database failed: {e}"),
        }
    }

    /// The journal, if the database has one.
    pub(super) fn journal(&self) -> Option<MutexGuard<'_, Journal>> {
        self.journal
            .as_ref()
            .map(|j| j.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Applies the journal to `db`, just opened, and empties it (see
    /// [`Journal::replay`]); returns how many groups it held.
    pub(super) fn replay(&self, db: &Database) -> Result<usize, BackendError> {
        match self.journal() {
            Some(mut journal) => journal.replay(db),
            None => Ok(0),
        }
    }

    /// Compacts the file, which moves its pages to the front and gives the
    /// free ones at its end back to the disk. Reads wait for it (redb
    /// compacts only with no transaction open), and it reads the whole
    /// file: the writer calls it only on a full disk, once deletes would
    /// make room.
    pub(super) fn compact(&self) {
        let mut opened = self.db.write().unwrap_or_else(PoisonError::into_inner);
        let Some(db) = opened.db.as_mut() else {
            return;
        };
        // A compaction rewrites what is durable: the journal's groups are
        // made so first.
        let checkpoint = self.journal().map(|mut journal| journal.checkpoint(db));
        if let Some(Err(e)) = checkpoint {
            tracing::warn!("a checkpoint before compacting the database failed: {e}");
            self.reopen_locked(&mut opened);
            return;
        }
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

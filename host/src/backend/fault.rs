//! Fault injection, for tests of what a full disk or a failing device does
//! to the store: a [`Faults`] plan says when operations fail and with what,
//! and two wrappers apply it.
//!
//! - [`FaultyBackend`] wraps any [`Backend`]: its commits fail with a
//!   [`BackendError::WritesFailing`] either before they reach the backend
//!   (nothing written, as when ENOSPC stops the writing of pages) or after
//!   (the batch applied, yet reported failed, as when the fsync after the
//!   write fails).
//! - [`FaultyStorage`] goes under redb itself, as its
//!   [`StorageBackend`](redb::StorageBackend): the real file backend then
//!   meets ENOSPC or EIO from the file, exactly where redb meets them on a
//!   full or failing disk.
//!
//! A plan fails operations from the N-th on, or at random from a seed (so a
//! failing run can be replayed), and [`Faults::heal`] ends it, as freeing
//! space on the disk does.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{
    Backend, BackendError, Batch, BoxFuture, Health, HealthMonitor, Pair, Shards, StorageFault,
};

/// When operations fail, shared by the wrappers that obey it and the test
/// that steers it.
#[derive(Debug)]
pub struct Faults {
    plan: Mutex<Plan>,
    /// The fault every read of [`FaultyStorage`] meets, until healed.
    /// Apart from the plan, so that a test can fail reads alone (a
    /// device that cannot read some blocks) or writes alone.
    reads: Mutex<Option<StorageFault>>,
}

#[derive(Debug, Clone, Copy)]
enum Plan {
    Healthy,
    /// Let `ops` more operations through, then fail every one with `fault`
    /// until healed.
    After {
        ops: u64,
        fault: StorageFault,
    },
    /// Fail each operation with `fault`, one in `one_in` on average, as a
    /// generator seeded by the test decides.
    Random {
        state: u64,
        one_in: u64,
        fault: StorageFault,
    },
}

impl Faults {
    /// A plan that fails nothing (yet).
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            plan: Mutex::new(Plan::Healthy),
            reads: Mutex::new(None),
        })
    }

    /// Every operation from now on fails with `fault`, until healed.
    pub fn fail_now(&self, fault: StorageFault) {
        self.fail_after(0, fault);
    }

    /// `ops` more operations succeed; every one after them fails with
    /// `fault`, until healed.
    pub fn fail_after(&self, ops: u64, fault: StorageFault) {
        *self.lock() = Plan::After { ops, fault };
    }

    /// Each operation fails with `fault` with probability `1 / one_in`; the
    /// same `seed` fails the same operations.
    pub fn fail_randomly(&self, seed: u64, one_in: u64, fault: StorageFault) {
        *self.lock() = Plan::Random {
            state: seed,
            one_in: one_in.max(1),
            fault,
        };
    }

    /// Every read of the file fails with `fault` (an I/O error), until
    /// healed.
    pub fn fail_reads(&self, fault: StorageFault) {
        *self
            .reads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(fault);
    }

    /// Nothing fails any more, as once space is freed.
    pub fn heal(&self) {
        *self.lock() = Plan::Healthy;
        *self
            .reads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// The fault a read meets now, if any.
    pub fn read_fault(&self) -> Option<StorageFault> {
        *self
            .reads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one operation; the fault it meets, if any.
    pub fn next(&self) -> Option<StorageFault> {
        let mut plan = self.lock();
        match &mut *plan {
            Plan::Healthy => None,
            Plan::After { ops: 0, fault } => Some(*fault),
            Plan::After { ops, .. } => {
                *ops -= 1;
                None
            }
            Plan::Random {
                state,
                one_in,
                fault,
            } => splitmix64(state).is_multiple_of(*one_in).then_some(*fault),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Plan> {
        // A test that panicked while holding the plan left a whole plan.
        self.plan
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The next number of a SplitMix64 sequence: small, seedable, and good
/// enough to spread faults.
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The error the operating system gives for `fault`.
pub fn io_error(fault: StorageFault) -> std::io::Error {
    std::io::Error::from_raw_os_error(match fault {
        StorageFault::DiskFull => libc::ENOSPC,
        StorageFault::OutOfMemory => libc::ENOMEM,
        StorageFault::Unreachable => libc::ECONNREFUSED,
        StorageFault::Failover | StorageFault::NoReplica => libc::EAGAIN,
        StorageFault::Io => libc::EIO,
    })
}

/// Where a [`FaultyBackend`] fails a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before the batch reaches the backend: nothing is written.
    BeforeCommit,
    /// After the backend applied the batch: the caller is told it failed,
    /// though it may be there (an fsync that failed after the write). A
    /// failed write's outcome is unknown; only acknowledged writes are
    /// promised.
    AfterCommit,
}

/// A [`Backend`] whose commits fail as its [`Faults`] plan says; reads pass
/// through.
pub struct FaultyBackend {
    inner: Arc<dyn Backend>,
    faults: Arc<Faults>,
    stage: Stage,
    health: HealthMonitor,
}

impl FaultyBackend {
    pub fn new(inner: Arc<dyn Backend>, faults: Arc<Faults>, stage: Stage) -> Self {
        Self {
            inner,
            faults,
            stage,
            health: HealthMonitor::new("faulty"),
        }
    }

    async fn commit_or_fail(&self, batch: Batch) -> Result<(), BackendError> {
        let fault = self.faults.next();
        let result = match (fault, self.stage) {
            (Some(fault), Stage::BeforeCommit) => Err(fault),
            (Some(fault), Stage::AfterCommit) => match self.inner.commit(batch).await {
                Ok(()) => Err(fault),
                Err(e) => return self.observe(Err(e)),
            },
            (None, _) => return self.observe(self.inner.commit(batch).await),
        };
        self.observe(result.map_err(|fault| BackendError::WritesFailing {
            fault,
            source: Arc::new(io_error(fault)),
        }))
    }

    fn observe(&self, result: Result<(), BackendError>) -> Result<(), BackendError> {
        match &result {
            Ok(()) => self.health.succeeded(),
            Err(e) => {
                if let Some(fault) = e.fault() {
                    self.health.failed(fault, e);
                }
            }
        }
        result
    }
}

impl Backend for FaultyBackend {
    fn get<'a>(
        &'a self,
        shard: &'a [u8],
        key: &'a [u8],
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, BackendError>> {
        self.inner.get(shard, key)
    }

    fn scan<'a>(
        &'a self,
        shards: Shards<'a>,
        prefix: &'a [u8],
        after: Option<&'a [u8]>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Pair>, BackendError>> {
        self.inner.scan(shards, prefix, after, limit)
    }

    fn commit(&self, batch: Batch) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(self.commit_or_fail(batch))
    }

    fn settled(&self) -> BoxFuture<'_, ()> {
        self.inner.settled()
    }

    fn health(&self) -> Health {
        self.health.health()
    }
}

/// redb's own file storage with faults injected, to put under a real
/// [`FileBackend`](super::FileBackend) with
/// [`FileBackend::open_with`](super::FileBackend::open_with).
///
/// While the plan says [`StorageFault::DiskFull`], the disk is full: a
/// write into bytes the file already held succeeds (those blocks are
/// allocated), a write that reaches past them fails with ENOSPC, and
/// growing the file's length succeeds (as `ftruncate` does on a full disk:
/// the new bytes are a hole). Any other fault fails writes and syncs alike,
/// as a failing device does. Each write and each sync counts as one
/// operation of the plan. Reads fail while [`Faults::fail_reads`] says so.
#[derive(Debug)]
pub struct FaultyStorage {
    file: redb::backends::FileBackend,
    faults: Arc<Faults>,
    /// The end of the bytes written so far: the space the file holds.
    written: AtomicU64,
}

impl FaultyStorage {
    /// Opens (or creates) the file at `path`.
    pub fn open(path: &Path, faults: Arc<Faults>) -> Result<Self, redb::DatabaseError> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len();
        Ok(Self {
            file: redb::backends::FileBackend::new(file)?,
            faults,
            written: AtomicU64::new(len),
        })
    }
}

impl redb::StorageBackend for FaultyStorage {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        match self.faults.read_fault() {
            Some(fault) => Err(io_error(fault)),
            None => self.file.read(offset, out),
        }
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.file.set_len(len)
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        match self.faults.next() {
            None | Some(StorageFault::DiskFull) => self.file.sync_data(),
            Some(fault) => Err(io_error(fault)),
        }
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        let end = offset.saturating_add(data.len() as u64);
        match self.faults.next() {
            Some(StorageFault::DiskFull) if end > self.written.load(Ordering::Relaxed) => {
                Err(io_error(StorageFault::DiskFull))
            }
            None | Some(StorageFault::DiskFull) => {
                self.file.write(offset, data)?;
                self.written.fetch_max(end, Ordering::Relaxed);
                Ok(())
            }
            Some(fault) => Err(io_error(fault)),
        }
    }

    fn close(&self) -> Result<(), std::io::Error> {
        self.file.close()
    }

    forward_range_locks!(file);
}

//! Whether a backend can take writes now, as its last commits found, and
//! the one place that logs a change of that state.
//!
//! A full disk (or a Redis out of memory) fails every write until it is
//! cleared, often for minutes. Logging every failed request buries the one
//! line that matters, and a host whose reads still work looks healthy to a
//! liveness probe. So a backend reports each commit's outcome to a
//! [`HealthMonitor`], which logs only when the state changes ("writes
//! failing: disk full", "writes recovered"), counts the failed commits, and
//! answers [`Backend::health`](super::Backend::health) for `/readyz` and
//! `/metrics`.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// Why writes fail, in words an operator acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StorageFault {
    /// No space left on the device (ENOSPC).
    DiskFull,
    /// The storage reported an I/O error (EIO and the like).
    Io,
    /// The server refuses writes for lack of memory (Redis `OOM`).
    OutOfMemory,
    /// The server cannot be reached.
    Unreachable,
    /// The servers are moving a shard to another machine (a Redis Cluster
    /// failover: `CLUSTERDOWN`, `TRYAGAIN`, `MOVED` and the like), or one is
    /// still loading its data after a restart.
    Failover,
    /// Writes must reach a replica (the Redis replica durability) and none
    /// confirmed one in time: the shard's master has no working replica,
    /// as after a failover promoted its only one.
    NoReplica,
}

impl StorageFault {
    const ALL: [StorageFault; 6] = [
        StorageFault::DiskFull,
        StorageFault::Io,
        StorageFault::OutOfMemory,
        StorageFault::Unreachable,
        StorageFault::Failover,
        StorageFault::NoReplica,
    ];

    /// The fault an I/O error stands for: a full disk, or any other I/O
    /// error.
    pub fn of_io(e: &std::io::Error) -> StorageFault {
        if e.kind() == std::io::ErrorKind::StorageFull
            || e.raw_os_error() == Some(libc::ENOSPC)
            || e.kind() == std::io::ErrorKind::QuotaExceeded
        {
            StorageFault::DiskFull
        } else {
            StorageFault::Io
        }
    }

    /// A short word for metrics labels and `/readyz`.
    pub fn name(self) -> &'static str {
        match self {
            StorageFault::DiskFull => "disk full",
            StorageFault::Io => "I/O error",
            StorageFault::OutOfMemory => "out of memory",
            StorageFault::Unreachable => "unreachable",
            StorageFault::Failover => "failover in progress",
            StorageFault::NoReplica => "no replica",
        }
    }

    fn code(self) -> u8 {
        match self {
            StorageFault::DiskFull => 1,
            StorageFault::Io => 2,
            StorageFault::OutOfMemory => 3,
            StorageFault::Unreachable => 4,
            StorageFault::Failover => 5,
            StorageFault::NoReplica => 6,
        }
    }

    fn from_code(code: u8) -> Option<StorageFault> {
        StorageFault::ALL.into_iter().find(|f| f.code() == code)
    }
}

impl std::fmt::Display for StorageFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What [`Backend::health`](super::Backend::health) reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Health {
    /// Why the last commit failed, while writes fail; `None` once a commit
    /// succeeds again (and before any commit failed).
    pub failing: Option<StorageFault>,
    /// Commits that failed for a storage fault since the backend opened
    /// (conflicts, which are answers, not faults, are not counted).
    pub failed_commits: u64,
}

impl Health {
    /// Whether the backend takes writes, as far as its last commit knows.
    pub fn writable(&self) -> bool {
        self.failing.is_none()
    }
}

/// Tracks one backend's [`Health`] from the outcomes of its commits, and
/// logs its changes, once each.
#[derive(Debug)]
pub(crate) struct HealthMonitor {
    /// Which backend, for the log lines.
    backend: &'static str,
    /// 0 while writes succeed, else the failing fault's code: one atomic, so
    /// that two commits failing at once log the change once.
    state: AtomicU8,
    failed_commits: AtomicU64,
}

impl HealthMonitor {
    pub(crate) fn new(backend: &'static str) -> Self {
        Self {
            backend,
            state: AtomicU8::new(0),
            failed_commits: AtomicU64::new(0),
        }
    }

    /// A commit succeeded: writes work (again).
    pub(crate) fn succeeded(&self) {
        // A load first keeps the common case (already healthy) a read.
        if self.state.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Some(was) = StorageFault::from_code(self.state.swap(0, Ordering::Relaxed)) {
            tracing::info!(
                backend = self.backend,
                "writes recovered (they were failing: {was})"
            );
        }
    }

    /// A commit failed for `fault`; `error` says how, for the log line
    /// written when the state changes.
    pub(crate) fn failed(&self, fault: StorageFault, error: &dyn std::fmt::Display) {
        self.failed_commits.fetch_add(1, Ordering::Relaxed);
        self.failing(fault, error);
    }

    /// Writes fail for `fault`, as an operation other than a commit found
    /// (a read that could not reach the server): the state changes, no
    /// failed commit is counted.
    pub(crate) fn failing(&self, fault: StorageFault, error: &dyn std::fmt::Display) {
        let before = self.state.swap(fault.code(), Ordering::Relaxed);
        if before != fault.code() {
            tracing::error!(
                backend = self.backend,
                "writes failing: {fault} ({error}); reads still work, and writes resume by \
                 themselves once the cause is cleared"
            );
        }
    }

    pub(crate) fn health(&self) -> Health {
        Health {
            failing: StorageFault::from_code(self.state.load(Ordering::Relaxed)),
            failed_commits: self.failed_commits.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_and_a_recovery_change_the_state_once_each() {
        let monitor = HealthMonitor::new("test");
        assert_eq!(monitor.health(), Health::default());
        assert!(monitor.health().writable());
        monitor.failed(StorageFault::DiskFull, &"no space");
        monitor.failed(StorageFault::DiskFull, &"no space");
        let health = monitor.health();
        assert_eq!(health.failing, Some(StorageFault::DiskFull));
        assert_eq!(health.failed_commits, 2);
        assert!(!health.writable());
        monitor.succeeded();
        assert_eq!(monitor.health().failing, None);
        // The count is of the whole life of the backend.
        assert_eq!(monitor.health().failed_commits, 2);
    }

    #[test]
    fn enospc_is_a_full_disk_and_eio_an_io_error() {
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let eio = std::io::Error::from_raw_os_error(libc::EIO);
        assert_eq!(StorageFault::of_io(&full), StorageFault::DiskFull);
        assert_eq!(StorageFault::of_io(&eio), StorageFault::Io);
    }
}

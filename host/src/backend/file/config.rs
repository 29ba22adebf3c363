//! How the redb backend is configured (its page cache), and opening a
//! database file with that configuration and a reserve beside it.

use std::path::Path;
use std::sync::Arc;

use crate::size::ByteSize;

use super::journal::{Journal, journal_path};
use super::reserve::Reserve;
use super::{BackendError, DISK_RESERVE, FileBackend};

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
        let journal = Journal::open(&journal_path(path)).map_err(|e| BackendError::Open {
            path: path.display().to_string(),
            hint: " (cannot open its journal)",
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
            Some(journal),
            reserve,
        )
    }
}

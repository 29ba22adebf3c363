//! The object store itself: applications, stores, partitions, keys, TTL and
//! limits, over any [`Backend`], with every record sealed.
//!
//! Every front end (WIT guests, Spin guests, REST and the admin UI) goes
//! through this module, so each rule is written once.
//!
//! | module | job |
//! |---|---|
//! | [`types`] | the public value types and settings ([`Ttl`], [`Metadata`], [`Page`], [`Config`], ...) |
//! | `application`, `store`, `partition` | the rules of each level: names, TTL, quotas, compare-and-swap |
//! | `write` | how one key changes: per-key locks, conditional commits, the expiry index, usage; bulk deletion |
//! | `many` | several keys of a partition at once: batch reads, and batch writes that land whole or not at all |
//! | `sweep` | reclaiming expired keys |
//! | `stats` | request counts per store and day |
//! | `credentials` | the client credentials of the REST and Stats APIs, host-wide and sealed ([`CredentialRecords`]) |
//! | `usage` | the request rate and key and byte counts of an application |
//! | `index` | the ordered index of a partition's key names: a B+tree of sealed pages |
//! | `keys` | the physical layout: typed backend keys and their shards |
//! | `sealed` | sealing, opening and scanning records |
//! | `record` | the plaintext encoding of records |
//! | `paging` | pages and cursors; a listing that meets damage fails, never comes back short |
//! | [`integrity`] | `ostore check` and `ostore repair`: find damage, rebuild what is derived, set aside what does not open |
//! | `fuzz` | what the fuzzers drive: every decoder of stored or client bytes |
//!
//! # Several hosts on one backend
//!
//! Any number of hosts may open one backend at once. Nothing that must agree
//! between them lives only in one host's memory:
//!
//! - **Settings** (a store's existence, default TTL and quota; a partition's
//!   existence and TTL) are cached per host for at most one second of the
//!   [`Clock`] (`SETTINGS_CACHE_MS`): a write reads them again once its
//!   host's copy is older. So a store created, configured or deleted, or a
//!   partition TTL set, through one host applies on every host within one
//!   second; a store deleted through one host refuses writes on the others
//!   ([`Error::StoreNotFound`]) within one second of the deletion.
//! - **Writes** are conditional commits that expect the bytes they read,
//!   retried on conflict; the per-key lock of a host only spares its own
//!   writers the retries. Bulk deletions (clearing a partition, deleting a
//!   store) expect what they scanned too, so each key is deleted and
//!   counted once whatever other hosts do meanwhile.
//! - **The request rate, key and byte quotas, request counts** are kept in
//!   the backend; see `usage` for how, and for the quotas' overshoot bound
//!   (with `N` hosts, at most `(N-1)·max(Q/16, the growth one host has under
//!   way at once)` over a quota `Q`).
//! - **The expiry sweep** may run on every host at once: a key is deleted
//!   only if it still holds the bytes the sweep read, so at most once, and
//!   only the host whose delete landed counts it.

mod application;
mod credentials;
mod error;
#[doc(hidden)]
pub mod fuzz;
mod index;
pub mod integrity;
mod keys;
mod many;
mod paging;
mod partition;
mod record;
mod sealed;
mod stats;
mod store;
mod sweep;
pub mod types;
mod usage;
mod write;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use application::Application;
pub use credentials::CredentialRecords;
pub use error::Error;
pub use many::{MAX_BATCH_BYTES, MAX_BATCH_KEYS};
pub use partition::Partition;
pub use store::Store;
pub use types::{
    Config, DEFAULT_STORE, DEFAULT_TTL_SECS, DayStats, Entry, Footprint, Limits, MAX_PAGE_SIZE,
    MAX_TTL_SECS, Metadata, Page, StoreOptions, StoreQuota, Ttl, ValueKind,
};

use crate::backend::Backend;
use crate::clock::Clock;
use crate::encryption::{MasterKey, Sealer, Tag};

use application::AppState;
use keys::{Prefix, RecordKey};
use record::{AppRecord, MasterCheck};
use sealed::SealedTable;

/// How many times a conditional write (of a key, or of a day's request
/// count) retries after another writer, on this host or another, changed
/// the record between the read and the commit.
const MAX_CONFLICT_RETRIES: usize = 64;

/// The object store service: one per host process, shared by all
/// applications. Cheap to clone.
#[derive(Clone)]
pub struct ObjectStore {
    inner: Arc<Inner>,
}

/// What every handle of one object store shares.
struct Inner {
    backend: Arc<dyn Backend>,
    /// Seals the applications' records (their data keys) and the master
    /// check; makes application tags.
    master: Sealer,
    config: Config,
    /// Applications this host has used, by tag. An application's record
    /// (its name and data keys) never changes once made, so it may be
    /// cached for good.
    apps: Mutex<HashMap<Tag, Arc<AppState>>>,
    key_locks: write::KeyLocks,
    /// Queues the index changes of one partition within this host.
    index_locks: index::IndexLocks,
    /// Set once a sweep found no expiry index entry of the old layout
    /// (which this version never writes): later sweeps scan only the new
    /// one.
    legacy_expiries_gone: std::sync::atomic::AtomicBool,
}

impl ObjectStore {
    /// Opens the object store kept in `backend`, sealed under `master`.
    ///
    /// Fails with [`Error::WrongMasterKey`] when the backend holds data that
    /// was sealed with another master key.
    pub async fn open(
        backend: Arc<dyn Backend>,
        master: &MasterKey,
        config: Config,
    ) -> Result<Self, Error> {
        let master = master.sealer();
        let check = SealedTable::new(&*backend, &master)
            .read_or_create(&RecordKey::MasterCheck, || Some(MasterCheck))
            .await;
        match check {
            Ok(_) => {}
            Err(Error::Integrity) => return Err(Error::WrongMasterKey),
            Err(e) => return Err(e),
        }
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                master,
                config,
                apps: Mutex::new(HashMap::new()),
                key_locks: write::KeyLocks::new(),
                legacy_expiries_gone: Default::default(),
                index_locks: index::IndexLocks::new(),
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Whether the backend takes writes now, for `/readyz` and `/metrics`.
    pub fn storage_health(&self) -> crate::backend::Health {
        self.inner.backend.health()
    }

    /// The clock that TTL, the request rate and statistics follow.
    pub fn clock(&self) -> &dyn Clock {
        &*self.inner.config.clock
    }

    /// Waits (at most `patience`) until this is the last handle of the object
    /// store, so that dropping it closes the backend (and the database file
    /// can be opened again at once). Returns whether it was the last.
    pub async fn close(self, patience: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        while Arc::strong_count(&self.inner) > 1 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        true
    }

    /// Runs `job` on this store every `interval` until the returned task is
    /// stopped.
    fn every<F, Fut>(&self, interval: std::time::Duration, job: F) -> Periodic
    where
        F: Fn(ObjectStore) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let store = self.clone();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                // A stop waits for the job under way: it is never cut off
                // half-way (a flush, say, with counts taken but not saved).
                tokio::select! {
                    _ = ticker.tick() => job(store.clone()).await,
                    _ = &mut stopped => return,
                }
            }
        });
        Periodic {
            stop: Some(stop),
            task,
        }
    }

    /// The application called `name`, created with fresh data keys on first
    /// use. Applications never see each other's data.
    pub async fn application(&self, name: &str) -> Result<Application, Error> {
        self.inner.check_name(name, "application name")?;
        let tag = self.inner.master.tag(b"app", b"", name.as_bytes());
        let state = self.inner.app_state(tag, Some(name)).await?;
        Ok(Application::new(self.inner.clone(), state))
    }

    /// The client credentials kept in the backend, for the
    /// [`auth`](crate::auth) layer: every host sharing the backend sees the
    /// same ones, at once.
    pub fn credentials(&self) -> CredentialRecords {
        CredentialRecords::new(self.inner.clone())
    }

    /// The names of every application this data has seen (a host records
    /// each of its applications when it starts), in name order.
    pub async fn application_names(&self) -> Result<Vec<String>, Error> {
        let table = self.inner.master_table();
        let mut scan = table.scan(Prefix::Apps);
        let mut names = Vec::new();
        loop {
            let chunk = scan.next_chunk().await?;
            if chunk.is_empty() {
                break;
            }
            for (key, sealed) in chunk {
                let record: AppRecord = table.open(&key, &sealed)?;
                names.push(record.name);
            }
        }
        names.sort();
        Ok(names)
    }
}

impl Inner {
    fn now_ms(&self) -> u64 {
        self.config.clock.now_ms()
    }

    /// The backend seen through the master key.
    fn master_table(&self) -> SealedTable<'_> {
        SealedTable::new(&*self.backend, &self.master)
    }

    /// Checks a key, store, partition or application name.
    fn check_name(&self, name: &str, what: &str) -> Result<(), Error> {
        let max = self.config.limits.max_key_bytes;
        if name.is_empty() {
            return Err(Error::InvalidKey(format!("{what} is empty")));
        }
        if name.len() > max {
            return Err(Error::InvalidKey(format!(
                "{what} is {} bytes long; the limit is {max}",
                name.len()
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(Error::InvalidKey(format!(
                "{what} contains a control character"
            )));
        }
        Ok(())
    }
}

/// A job the object store runs periodically (the sweep, the stats flush).
/// Dropping it aborts the job; [`stop`](Self::stop) lets a run under way
/// finish first.
pub struct Periodic {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Periodic {
    /// Stops the job once its current run, if any, has finished.
    pub async fn stop(mut self) {
        self.stop.take();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Periodic {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests;

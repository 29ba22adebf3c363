//! Usage of one application: its request rate, its keys and bytes, and its
//! request counts by store and day. Several hosts may serve one application
//! from one backend, so every figure that must agree between them is kept in
//! the backend, in sealed records of the application's shard.
//!
//! - [`rate`]: the request rate, a token bucket shared by every host;
//! - [`kept`]: each partition's keys and bytes, kept in its shard and
//!   changed in the batches that change its keys;
//! - [`counts`]: each store's keys and bytes as this host knows them (read
//!   from the kept counts), and the quotas checked against them;
//! - request counts, here.
//!
//! # Request counts
//!
//! Kept in memory and added to sealed per-day records by the stats flusher,
//! with a conditional write: each host adds only its own counts, so the
//! stored counts are the sum over hosts. Queries add what this host has not
//! flushed yet, so once every host has flushed (each does every second and
//! at a clean stop) the counts are exact.

mod counts;
pub(crate) mod kept;
mod rate;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::clock::day_of;
use crate::encryption::Tag;

pub(crate) use counts::Counts;
use counts::Known;
pub(crate) use kept::{Counter, Slots};
use rate::Lease;

/// Usage counters of one application on this host.
#[derive(Default)]
pub(crate) struct AppUsage {
    lease: Mutex<Option<Lease>>,
    /// One lease request to the backend at a time: requests that arrive
    /// meanwhile wait for its tokens instead of contending for the record.
    leasing: tokio::sync::Mutex<()>,
    known: Mutex<Known>,
    /// One read of the kept counts at a time.
    syncing: tokio::sync::Mutex<()>,
    /// Held while request counts move from `pending` to the backend, and
    /// while a query reads both: otherwise a query between the two steps
    /// finds the counts in neither.
    pub(super) flushing: tokio::sync::Mutex<()>,
    /// Reads begun, and the number of the last one that succeeded.
    syncs_begun: AtomicU64,
    last_synced: AtomicU64,
    /// The kept counts changed in a way this host's view does not follow
    /// by itself: a base written over keys or slots, a store's counts
    /// deleted, or a counted batch whose outcome was not learnt. A sole
    /// host reads them again at its next flush (see `counts`).
    unfollowed: AtomicBool,
    /// Request counts by (store, day) not yet flushed.
    pending: Mutex<HashMap<(Tag, u32), u64>>,
}

impl AppUsage {
    /// Counts one admitted request against `store`.
    fn count_request(&self, store: Tag, now_ms: u64) {
        *self
            .pending
            .lock()
            .expect("pending lock")
            .entry((store, day_of(now_ms)))
            .or_default() += 1;
    }

    /// Takes the counts not yet flushed.
    pub(crate) fn take_pending(&self) -> HashMap<(Tag, u32), u64> {
        std::mem::take(&mut *self.pending.lock().expect("pending lock"))
    }

    /// Puts back counts whose flush failed, so none is lost.
    pub(crate) fn restore_pending(&self, counts: HashMap<(Tag, u32), u64>) {
        let mut pending = self.pending.lock().expect("pending lock");
        for (k, n) in counts {
            *pending.entry(k).or_default() += n;
        }
    }

    /// Notes that the kept counts changed in a way the view does not follow
    /// (see `unfollowed`).
    pub(crate) fn lost_track(&self) {
        self.unfollowed.store(true, Ordering::SeqCst);
    }

    /// How many reads of the kept counts this host began.
    #[cfg(test)]
    pub(crate) fn reads(&self) -> u64 {
        self.syncs_begun.load(Ordering::SeqCst)
    }

    /// Counts not yet flushed, by (store, day).
    pub(crate) fn pending(&self) -> HashMap<(Tag, u32), u64> {
        self.pending.lock().expect("pending lock").clone()
    }
}

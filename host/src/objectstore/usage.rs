//! Usage of one application: its request rate, its keys and bytes, and its
//! request counts by store and day.
//!
//! - The request rate is a token bucket per application: a burst of one
//!   second's worth of requests, refilled continuously.
//! - Keys and bytes are counted from the data itself when the application is
//!   first used by this host, then kept up to date by every write, delete
//!   and sweep. Bytes are what the records take at rest (sealed size). A
//!   quota is checked before a write, so a write that would exceed it is
//!   refused whole; concurrent writes may overshoot it by the writes in
//!   flight.
//! - Request counts are kept in memory and added to sealed per-day records
//!   by the stats flusher ([`stats`](super::stats)), which the host runs
//!   every second and at shutdown. Queries add what is not yet flushed, so
//!   counts are exact while the host runs, and survive a clean restart.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::clock::day_of;
use crate::encryption::Tag;

use super::Error;
use super::types::{Footprint, Limits, StoreQuota};

/// Usage counters of one application on this host.
#[derive(Default)]
pub(crate) struct AppUsage {
    bucket: Mutex<Option<Bucket>>,
    stores: Mutex<HashMap<Tag, Footprint>>,
    /// Request counts by (store, day) not yet flushed.
    pending: Mutex<HashMap<(Tag, u32), u64>>,
}

struct Bucket {
    tokens: f64,
    /// When the bucket was last refilled, in milliseconds.
    at_ms: u64,
}

impl AppUsage {
    /// Counts one request against `store`, or refuses it if the application
    /// is over its request rate.
    pub(crate) fn admit(&self, store: Tag, limits: &Limits, now_ms: u64) -> Result<(), Error> {
        if let Some(rate) = limits.requests_per_second.filter(|&r| r > 0) {
            let rate = f64::from(rate);
            let mut bucket = self.bucket.lock().expect("bucket lock");
            let b = bucket.get_or_insert(Bucket {
                tokens: rate,
                at_ms: now_ms,
            });
            // A clock that steps back refills nothing and counts on from its
            // new reading, rather than waiting to catch up.
            let elapsed = now_ms.saturating_sub(b.at_ms) as f64 / 1000.0;
            b.tokens = (b.tokens + elapsed * rate).min(rate);
            b.at_ms = now_ms;
            if b.tokens < 1.0 {
                let wait = (1.0 - b.tokens) / rate;
                return Err(Error::RateLimited {
                    retry_after: Duration::from_secs_f64(wait),
                });
            }
            b.tokens -= 1.0;
        }
        *self
            .pending
            .lock()
            .expect("pending lock")
            .entry((store, day_of(now_ms)))
            .or_default() += 1;
        Ok(())
    }

    /// Fails if adding `keys` and `bytes` would exceed a quota.
    pub(crate) fn check_quota(&self, keys: i64, bytes: i64, limits: &Limits) -> Result<(), Error> {
        let total = self.total();
        if let Some(max) = limits.max_keys
            && keys > 0
            && total.keys.saturating_add(keys as u64) > max
        {
            return Err(Error::QuotaExceeded(format!(
                "the application may hold at most {}",
                counted(max, "key")
            )));
        }
        if let Some(max) = limits.max_bytes
            && bytes > 0
            && total.bytes.saturating_add(bytes as u64) > max
        {
            return Err(Error::QuotaExceeded(format!(
                "the application may store at most {}",
                counted(max, "byte")
            )));
        }
        Ok(())
    }

    /// Fails if adding `keys` and `bytes` to `store` would exceed its quota.
    pub(crate) fn check_store_quota(
        &self,
        store: Tag,
        keys: i64,
        bytes: i64,
        quota: &StoreQuota,
    ) -> Result<(), Error> {
        let now = self.footprint(store);
        if let Some(max) = quota.max_keys
            && keys > 0
            && now.keys.saturating_add(keys as u64) > max
        {
            return Err(Error::QuotaExceeded(format!(
                "the store may hold at most {}",
                counted(max, "key")
            )));
        }
        if let Some(max) = quota.max_bytes
            && bytes > 0
            && now.bytes.saturating_add(bytes as u64) > max
        {
            return Err(Error::QuotaExceeded(format!(
                "the store may take at most {}",
                counted(max, "byte")
            )));
        }
        Ok(())
    }

    /// Records that `store` gained (or lost) keys and bytes.
    pub(crate) fn apply(&self, store: Tag, keys: i64, bytes: i64) {
        let mut stores = self.stores.lock().expect("stores lock");
        let f = stores.entry(store).or_default();
        f.keys = f.keys.saturating_add_signed(keys);
        f.bytes = f.bytes.saturating_add_signed(bytes);
    }

    /// Replaces the footprint of every store (after counting the data).
    pub(crate) fn reset(&self, footprints: HashMap<Tag, Footprint>) {
        *self.stores.lock().expect("stores lock") = footprints;
    }

    pub(crate) fn forget_store(&self, store: Tag) {
        self.stores.lock().expect("stores lock").remove(&store);
    }

    pub(crate) fn footprint(&self, store: Tag) -> Footprint {
        self.stores
            .lock()
            .expect("stores lock")
            .get(&store)
            .copied()
            .unwrap_or_default()
    }

    pub(crate) fn total(&self) -> Footprint {
        self.stores
            .lock()
            .expect("stores lock")
            .values()
            .fold(Footprint::default(), |a, f| Footprint {
                keys: a.keys + f.keys,
                bytes: a.bytes + f.bytes,
            })
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

    /// Counts not yet flushed, by (store, day).
    pub(crate) fn pending(&self) -> HashMap<(Tag, u32), u64> {
        self.pending.lock().expect("pending lock").clone()
    }
}

/// `1 key`, `2 keys`.
fn counted(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_refuses_with_a_wait() {
        let usage = AppUsage::default();
        let limits = Limits {
            requests_per_second: Some(5),
            ..Limits::default()
        };
        for _ in 0..5 {
            usage.admit([0; 16], &limits, 0).unwrap();
        }
        match usage.admit([0; 16], &limits, 0) {
            Err(Error::RateLimited { retry_after }) => {
                assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_millis(200))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            usage.pending()[&([0; 16], 0)],
            5,
            "refused requests are not counted"
        );
    }

    #[test]
    fn the_bucket_refills_with_time_and_survives_a_clock_stepping_back() {
        let usage = AppUsage::default();
        let limits = Limits {
            requests_per_second: Some(2),
            ..Limits::default()
        };
        let admit = |at: u64| usage.admit([0; 16], &limits, at).is_ok();
        let start = 10_000_000;
        assert!(admit(start) && admit(start) && !admit(start));
        assert!(admit(start + 500), "half a second brings one token back");
        // The clock steps back an hour: the bucket counts on from there.
        let back = start + 500 - 3_600_000;
        assert!(!admit(back));
        assert!(admit(back + 500));
    }

    #[test]
    fn quotas_refuse_growth_but_not_shrinking() {
        let usage = AppUsage::default();
        let limits = Limits {
            max_keys: Some(2),
            max_bytes: Some(100),
            ..Limits::default()
        };
        usage.apply([1; 16], 2, 60);
        assert!(matches!(
            usage.check_quota(1, 10, &limits),
            Err(Error::QuotaExceeded(_))
        ));
        assert!(matches!(
            usage.check_quota(0, 50, &limits),
            Err(Error::QuotaExceeded(_))
        ));
        assert!(usage.check_quota(0, 40, &limits).is_ok());
        assert!(usage.check_quota(-1, -60, &limits).is_ok());
    }
}

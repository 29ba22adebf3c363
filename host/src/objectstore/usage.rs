//! Usage of one application: its request rate, its keys and bytes, and its
//! request counts by store and day. Several hosts may serve one application
//! from one backend, so every figure that must agree between them is kept in
//! the backend, in sealed records of the application's shard.
//!
//! # The request rate
//!
//! A token bucket per application, shared by every host: `R` tokens at
//! most, refilled at `R` per second, kept in one record. A host takes tokens
//! from it a few at a time (a lease of a twentieth of a second's worth, at
//! least one) with a conditional write, and admits requests from its lease
//! with no round trip to the backend. A lease is good for [`LEASE_MS`] of
//! the clock; tokens unused by then are lost, never given back. The tokens
//! a running lease may still give out (all but the one its request used at
//! once) count against the bucket's capacity, so over any `t` seconds all
//! hosts together admit at most `R + R·t` requests. The
//! hosts' clocks are assumed to agree (NTP); a host whose clock runs `d`
//! ahead of the others can make the bucket refill up to `R·d` early.
//!
//! # Keys and bytes
//!
//! Each store's keys and bytes (what its records take at rest, sealed) are
//! kept in a counter record. A host counts its own changes in memory and
//! adds them to the counters with a conditional write, then reads every
//! host's totals: at every stats flush (every second, and at shutdown; see
//! [`stats`](super::stats)). A host's view of a store is the totals as last
//! read plus its own changes since. The first host to use an application
//! creates its counters (counting the data, if there is data from before
//! counters existed); every later host reads them and counts nothing.
//!
//! A quota is checked against this view before a write, and the growth of
//! the writes under way on this host is reserved, so one host never goes
//! past a quota. What it cannot see is the growth other hosts have not
//! added yet. A host therefore adds its changes and reads the totals before
//! a growing write once its growth not yet added would pass a sixteenth of
//! the room it last saw under the quota, and before refusing a write. So
//! **with `N` hosts, a quota `Q` is overshot by at most `(N-1)·max(Q/16,
//! w)`**, where `w` is the growth one host has under way at once (one write,
//! times its concurrent writers). Far from a quota a host adds its changes
//! once a second; close to it, every growing write does, so only writes
//! near a quota wait on the counter record. Shrinking writes are never
//! refused.
//!
//! A host that crashes loses the changes it had not added (at most one
//! flush interval's worth): the counters then differ from the data by that
//! much. A write racing the deletion of its store on another host may
//! survive it (see `write`), and is counted.
//!
//! # Request counts
//!
//! Kept in memory and added to sealed per-day records by the stats flusher,
//! with a conditional write: each host adds only its own counts, so the
//! stored counts are the sum over hosts. Queries add what this host has not
//! flushed yet, so once every host has flushed (each does every second and
//! at a clean stop) the counts are exact.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::backend::{Batch, Expect};
use crate::clock::day_of;
use crate::encryption::Tag;

use super::application::{AppState, Application};
use super::keys::{Prefix, RecordKey, Shard};
use super::record::{RateLease, RateRecord, UsageRecord};
use super::sealed::Commit;
use super::types::{DEFAULT_STORE, Footprint, Limits, StoreQuota};
use super::{Error, Inner, MAX_CONFLICT_RETRIES};

/// How long a lease of request tokens lasts, in milliseconds of the clock.
/// Long enough that a busy host asks the backend a few times a second,
/// short enough that tokens a host leased but does not need soon come back
/// to the bucket (and so to the other hosts) quickly.
pub(super) const LEASE_MS: u64 = 250;

/// A lease holds this fraction of a second's tokens (at least one).
const LEASES_PER_SECOND: u32 = 20;

/// A host adds its growth to the shared counters before it passes this
/// fraction of the room it last saw under a quota: the overshoot bound of
/// the module doc.
const SHARE_OF_ROOM: i64 = 16;

/// A clock that steps back further than this (an operator's correction) is
/// taken as the new time at once. A smaller step back is another host's
/// clock running a little behind: it refills nothing and does not move the
/// bucket's time back, so that the same interval is never refilled twice.
const CLOCK_STEP_MS: u64 = 10_000;

/// Keys and bytes, signed: changes, and totals that may dip below zero for
/// a moment (a host may add the deletion of keys another host created but
/// has not added yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub keys: i64,
    pub bytes: i64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.keys = self.keys.saturating_add(other.keys);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }

    fn sub(&mut self, other: Counts) {
        self.keys = self.keys.saturating_sub(other.keys);
        self.bytes = self.bytes.saturating_sub(other.bytes);
    }

    fn is_zero(&self) -> bool {
        *self == Counts::default()
    }

    fn footprint(self) -> Footprint {
        Footprint {
            keys: self.keys.max(0) as u64,
            bytes: self.bytes.max(0) as u64,
        }
    }
}

impl From<UsageRecord> for Counts {
    fn from(r: UsageRecord) -> Self {
        Counts {
            keys: r.keys,
            bytes: r.bytes,
        }
    }
}

/// What this host knows of one store's keys and bytes.
#[derive(Debug, Clone, Copy, Default)]
struct StoreUsage {
    /// The shared totals as last read.
    shared: Counts,
    /// This host's committed changes not yet added to the shared totals.
    unshared: Counts,
    /// The growth of this host's writes under way, reserved before their
    /// commit.
    in_flight: Counts,
}

impl StoreUsage {
    /// What the store holds as far as this host knows.
    fn view(&self) -> Counts {
        let mut view = self.shared;
        view.add(self.unshared);
        view
    }
}

/// Request tokens this host took from the shared bucket.
struct Lease {
    tokens: u64,
    at_ms: u64,
}

/// Usage counters of one application on this host.
#[derive(Default)]
pub(crate) struct AppUsage {
    lease: Mutex<Option<Lease>>,
    /// One lease request to the backend at a time: requests that arrive
    /// meanwhile wait for its tokens instead of contending for the record.
    leasing: tokio::sync::Mutex<()>,
    stores: Mutex<HashMap<Tag, StoreUsage>>,
    /// One exchange with the shared counters at a time.
    syncing: tokio::sync::Mutex<()>,
    /// Exchanges begun, and the number of the last one that succeeded.
    syncs_begun: AtomicU64,
    last_synced: AtomicU64,
    /// Request counts by (store, day) not yet flushed.
    pending: Mutex<HashMap<(Tag, u32), u64>>,
}

/// Why a growing write may not go ahead as things stand.
pub(crate) enum Refusal {
    /// Over a quota even with the latest totals.
    Quota(Error),
    /// Decide after adding this host's changes and reading the totals.
    SyncFirst,
}

/// Growth reserved for a write under way; given back if the write does not
/// land, turned into a change by [`settle`](Self::settle) if it does.
pub(crate) struct Reservation<'a> {
    usage: &'a AppUsage,
    store: Tag,
    growth: Counts,
}

impl Reservation<'_> {
    /// The write landed, changing its store by `keys` and `bytes`.
    pub fn settle(mut self, keys: i64, bytes: i64) {
        let mut stores = self.usage.stores.lock().expect("stores lock");
        let usage = stores.entry(self.store).or_default();
        usage.in_flight.sub(self.growth);
        usage.unshared.add(Counts { keys, bytes });
        self.growth = Counts::default();
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.growth.is_zero() {
            let mut stores = self.usage.stores.lock().expect("stores lock");
            stores
                .entry(self.store)
                .or_default()
                .in_flight
                .sub(self.growth);
        }
    }
}

/// Checks growth `growth` against `limit`, given the shared total as last
/// read and this host's growth not yet added (`local`).
fn check_limit(
    limit: Option<u64>,
    shared: i64,
    local: i64,
    growth: i64,
    synced: bool,
    refusal: impl FnOnce(u64) -> String,
) -> Result<(), Refusal> {
    let Some(max) = limit else {
        return Ok(());
    };
    if growth <= 0 {
        return Ok(());
    }
    let limit = i64::try_from(max).unwrap_or(i64::MAX);
    if shared.saturating_add(local).saturating_add(growth) > limit {
        // Another host may have freed room since the totals were read.
        return Err(if synced {
            Refusal::Quota(Error::QuotaExceeded(refusal(max)))
        } else {
            Refusal::SyncFirst
        });
    }
    // What other hosts cannot see yet stays under a share of the room.
    let room = limit.saturating_sub(shared).max(0);
    if !synced && local.saturating_add(growth) > room / SHARE_OF_ROOM {
        return Err(Refusal::SyncFirst);
    }
    Ok(())
}

impl AppUsage {
    /// Takes one token of this host's lease, if it has one good at `now`.
    fn take_leased(&self, now: u64) -> bool {
        let mut lease = self.lease.lock().expect("lease lock");
        match lease.as_mut() {
            Some(l) if l.tokens > 0 && lease_is_running(l.at_ms, now) => {
                l.tokens -= 1;
                true
            }
            _ => false,
        }
    }

    fn keep_lease(&self, tokens: u64, at_ms: u64) {
        *self.lease.lock().expect("lease lock") = Some(Lease { tokens, at_ms });
    }

    /// Counts one admitted request against `store`.
    fn count_request(&self, store: Tag, now_ms: u64) {
        *self
            .pending
            .lock()
            .expect("pending lock")
            .entry((store, day_of(now_ms)))
            .or_default() += 1;
    }

    /// Reserves the growth of a write that changes `store` by `keys` and
    /// `bytes`, or refuses it (see the module doc). `synced`: the totals
    /// were just read, so decide now.
    pub(crate) fn reserve(
        &self,
        store: Tag,
        keys: i64,
        bytes: i64,
        quota: &StoreQuota,
        limits: &Limits,
        synced: bool,
    ) -> Result<Reservation<'_>, Refusal> {
        let growth = Counts {
            keys: keys.max(0),
            bytes: bytes.max(0),
        };
        let mut stores = self.stores.lock().expect("stores lock");
        if !growth.is_zero() {
            let this = stores.get(&store).copied().unwrap_or_default();
            let mut local = this.unshared;
            local.add(this.in_flight);
            check_limit(
                quota.max_keys,
                this.shared.keys,
                local.keys,
                growth.keys,
                synced,
                |max| format!("the store may hold at most {}", counted(max, "key")),
            )?;
            check_limit(
                quota.max_bytes,
                this.shared.bytes,
                local.bytes,
                growth.bytes,
                synced,
                |max| format!("the store may take at most {}", counted(max, "byte")),
            )?;
            if limits.max_keys.is_some() || limits.max_bytes.is_some() {
                let (mut shared, mut local) = (Counts::default(), Counts::default());
                for usage in stores.values() {
                    shared.add(usage.shared);
                    local.add(usage.unshared);
                    local.add(usage.in_flight);
                }
                check_limit(
                    limits.max_keys,
                    shared.keys,
                    local.keys,
                    growth.keys,
                    synced,
                    |max| format!("the application may hold at most {}", counted(max, "key")),
                )?;
                check_limit(
                    limits.max_bytes,
                    shared.bytes,
                    local.bytes,
                    growth.bytes,
                    synced,
                    |max| format!("the application may store at most {}", counted(max, "byte")),
                )?;
            }
            stores.entry(store).or_default().in_flight.add(growth);
        }
        Ok(Reservation {
            usage: self,
            store,
            growth,
        })
    }

    /// Records that `store` lost (or gained) keys and bytes.
    pub(crate) fn apply(&self, store: Tag, keys: i64, bytes: i64) {
        let mut stores = self.stores.lock().expect("stores lock");
        stores
            .entry(store)
            .or_default()
            .unshared
            .add(Counts { keys, bytes });
    }

    /// This host's changes not yet added to the shared counters.
    fn unshared(&self) -> Vec<(Tag, Counts)> {
        let stores = self.stores.lock().expect("stores lock");
        stores
            .iter()
            .filter(|(_, u)| !u.unshared.is_zero())
            .map(|(s, u)| (*s, u.unshared))
            .collect()
    }

    /// Records that `added` is now part of the shared counters, and, when
    /// they were read, that `totals` are the shared totals (stores absent
    /// from them hold nothing).
    fn shared_now(&self, added: &[(Tag, Counts)], totals: Option<HashMap<Tag, Counts>>) {
        let mut stores = self.stores.lock().expect("stores lock");
        for (store, counts) in added {
            let usage = stores.entry(*store).or_default();
            usage.unshared.sub(*counts);
            usage.shared.add(*counts);
        }
        if let Some(mut totals) = totals {
            for (store, usage) in stores.iter_mut() {
                usage.shared = totals.remove(store).unwrap_or_default();
            }
            for (store, shared) in totals {
                stores.insert(
                    store,
                    StoreUsage {
                        shared,
                        ..StoreUsage::default()
                    },
                );
            }
        }
    }

    pub(crate) fn footprint(&self, store: Tag) -> Footprint {
        self.stores
            .lock()
            .expect("stores lock")
            .get(&store)
            .map(|u| u.view().footprint())
            .unwrap_or_default()
    }

    pub(crate) fn total(&self) -> Footprint {
        self.stores
            .lock()
            .expect("stores lock")
            .values()
            .map(|u| u.view().footprint())
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

/// Whether a lease taken at `at_ms` may be used at `now`.
fn lease_is_running(at_ms: u64, now: u64) -> bool {
    now >= at_ms && now - at_ms < LEASE_MS
}

/// How many tokens a host asks for at a time.
fn lease_size(rate: u32) -> u64 {
    u64::from(rate / LEASES_PER_SECOND).max(1)
}

/// A full bucket of `rate` tokens, as of `now`.
fn full_bucket(rate: u32, now: u64) -> RateRecord {
    RateRecord {
        level_milli: u64::from(rate) * 1000,
        at_ms: now,
        leases: Vec::new(),
    }
}

/// Brings `bucket` (of `rate` tokens, refilled at `rate` per second) up to
/// `now` and takes up to `want` tokens from it: how many it took, or how
/// long to wait for one.
///
/// The tokens a running lease may still give out count against the
/// capacity: the bucket's level plus what running leases hold never exceeds
/// it, at any moment between two calls. That is what keeps tokens leased
/// before a moment and used after it from adding to a full bucket, and so
/// gives the bound `R + R·t` over every interval. A lease's first token is
/// not held: the request that took the lease used it at once (so with
/// leases of one token, under 40 requests a second, this is exactly a token
/// bucket).
fn take_tokens(bucket: &mut RateRecord, rate: u32, now: u64, want: u64) -> Result<u64, Duration> {
    let rate = u64::from(rate);
    let capacity = rate * 1000;
    let lease_end = |l: &RateLease| l.at_ms.saturating_add(LEASE_MS);
    // Leases from a clock far ahead (stepped back since) are over: their
    // host no longer uses them.
    bucket
        .leases
        .retain(|l| l.at_ms <= now.saturating_add(CLOCK_STEP_MS));
    bucket.leases.sort_by_key(lease_end);
    let held = |l: &RateLease| l.tokens.saturating_sub(1).saturating_mul(1000);
    let mut leased: u64 = bucket.leases.iter().map(held).sum();
    let mut level = bucket.level_milli.min(capacity.saturating_sub(leased));
    if now >= bucket.at_ms {
        // Refill piece by piece, the room growing as leases end. `rate`
        // tokens a second are `rate` thousandths a millisecond.
        let mut at = bucket.at_ms;
        for lease in bucket.leases.iter().filter(|l| lease_end(l) <= now) {
            let end = lease_end(lease);
            if end > at {
                let refilled = level.saturating_add((end - at).saturating_mul(rate));
                level = refilled.min(capacity.saturating_sub(leased));
                at = end;
            }
            leased = leased.saturating_sub(held(lease));
        }
        let refilled = level.saturating_add((now - at).saturating_mul(rate));
        level = refilled.min(capacity.saturating_sub(leased));
        bucket.at_ms = now;
    } else if bucket.at_ms - now > CLOCK_STEP_MS {
        bucket.at_ms = now;
    }
    bucket.leases.retain(|l| now < lease_end(l));
    bucket.level_milli = level;
    let tokens = (level / 1000).min(want);
    if tokens == 0 {
        let refill_ms = (1000 - level).div_ceil(rate);
        let room = capacity.saturating_sub(leased);
        let lease_end_ms = match bucket.leases.first() {
            Some(first) if room < 1000 => lease_end(first).saturating_sub(now),
            _ => 0,
        };
        return Err(Duration::from_millis(refill_ms.max(lease_end_ms).max(1)));
    }
    bucket.level_milli -= tokens * 1000;
    bucket.leases.push(RateLease { at_ms: now, tokens });
    Ok(tokens)
}

impl Application {
    /// Counts one request against `store`, or refuses it when the
    /// application is over its request rate (summed over every host).
    pub(super) async fn admit(&self, store: Tag) -> Result<(), Error> {
        let usage = &self.state.usage;
        if let Some(rate) = self
            .inner
            .config
            .limits
            .requests_per_second
            .filter(|&r| r > 0)
            && !usage.take_leased(self.inner.now_ms())
        {
            let _one = usage.leasing.lock().await;
            // The lease request before this one may have brought tokens.
            let now = self.inner.now_ms();
            if !usage.take_leased(now) {
                let tokens = self.inner.lease_tokens(&self.state, rate, now).await?;
                usage.keep_lease(tokens - 1, now);
            }
        }
        usage.count_request(store, self.inner.now_ms());
        Ok(())
    }
}

impl Inner {
    /// Takes a lease of request tokens from the application's shared
    /// bucket: how many (at least one), or `RateLimited`.
    async fn lease_tokens(&self, app: &AppState, rate: u32, now: u64) -> Result<u64, Error> {
        let key = RecordKey::RateBucket(app.tag);
        let bytes = key.encode();
        let table = self.table(app);
        for _ in 0..MAX_CONFLICT_RETRIES {
            let (mut bucket, expect) = match table.get::<RateRecord>(&key).await? {
                Some(opened) => (opened.record, Expect::Value(opened.sealed)),
                None => (full_bucket(rate, now), Expect::Absent),
            };
            let tokens = take_tokens(&mut bucket, rate, now, lease_size(rate))
                .map_err(|retry_after| Error::RateLimited { retry_after })?;
            let mut batch = Batch::new(key.shard().encode());
            batch.put(bytes.clone(), table.seal(&bytes, &bucket), expect);
            if table.commit(batch).await? == Commit::Done {
                return Ok(tokens);
            }
        }
        Err(Error::Contended("the request rate is"))
    }

    /// Reserves the growth of a write to `store` against the quotas,
    /// exchanging counts with the other hosts first when the module doc's
    /// bound requires it.
    pub(super) async fn reserve<'a>(
        &self,
        app: &'a AppState,
        store: Tag,
        (keys, bytes): (i64, i64),
        quota: &StoreQuota,
    ) -> Result<Reservation<'a>, Error> {
        let limits = &self.config.limits;
        match app.usage.reserve(store, keys, bytes, quota, limits, false) {
            Ok(reservation) => return Ok(reservation),
            Err(Refusal::Quota(e)) => return Err(e),
            Err(Refusal::SyncFirst) => {}
        }
        self.sync_usage(app).await?;
        match app.usage.reserve(store, keys, bytes, quota, limits, true) {
            Ok(reservation) => Ok(reservation),
            Err(Refusal::Quota(e)) => Err(e),
            Err(Refusal::SyncFirst) => unreachable!("a reservation after a sync is decided"),
        }
    }

    /// Adds this host's key and byte changes of `app` to the shared
    /// counters and reads every host's totals. If an exchange begun after
    /// this call succeeds meanwhile, that one serves.
    pub(super) async fn sync_usage(&self, app: &AppState) -> Result<(), Error> {
        let usage = &app.usage;
        let asked = usage.syncs_begun.load(Ordering::SeqCst);
        let _one = usage.syncing.lock().await;
        if usage.last_synced.load(Ordering::SeqCst) > asked {
            return Ok(());
        }
        let number = usage.syncs_begun.fetch_add(1, Ordering::SeqCst) + 1;
        let mut added = Vec::new();
        let mut failure = None;
        for (store, counts) in usage.unshared() {
            match self.add_usage(app, store, counts).await {
                Ok(()) => added.push((store, counts)),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let totals = match &failure {
            None => match self.read_usage(app).await {
                Ok(totals) => Some(totals),
                Err(e) => {
                    failure = Some(e);
                    None
                }
            },
            Some(_) => None,
        };
        usage.shared_now(&added, totals);
        match failure {
            Some(e) => Err(e),
            None => {
                usage.last_synced.store(number, Ordering::SeqCst);
                Ok(())
            }
        }
    }

    /// Adds `counts` to the shared counters of `store`.
    async fn add_usage(&self, app: &AppState, store: Tag, counts: Counts) -> Result<(), Error> {
        let key = RecordKey::Usage {
            app: app.tag,
            store,
        };
        let bytes = key.encode();
        let table = self.table(app);
        for _ in 0..MAX_CONFLICT_RETRIES {
            let (mut record, expect) = match table.get::<UsageRecord>(&key).await? {
                Some(opened) => (opened.record, Expect::Value(opened.sealed)),
                None => (UsageRecord::default(), Expect::Absent),
            };
            record.keys = record.keys.saturating_add(counts.keys);
            record.bytes = record.bytes.saturating_add(counts.bytes);
            let mut batch = Batch::new(key.shard().encode());
            batch.put(bytes.clone(), table.seal(&bytes, &record), expect);
            if table.commit(batch).await? == Commit::Done {
                return Ok(());
            }
        }
        Err(Error::Contended("usage counts are"))
    }

    /// Every store's shared totals.
    async fn read_usage(&self, app: &AppState) -> Result<HashMap<Tag, Counts>, Error> {
        let table = self.table(app);
        let mut scan = table.scan(Prefix::Usage(app.tag));
        let mut totals = HashMap::new();
        loop {
            let chunk = scan.next_chunk().await?;
            if chunk.is_empty() {
                return Ok(totals);
            }
            for (key, sealed) in chunk {
                let Some(RecordKey::Usage { store, .. }) = RecordKey::parse(&key) else {
                    return Err(Error::Integrity);
                };
                let record: UsageRecord = table.open(&key, &sealed)?;
                totals.insert(store, Counts::from(record));
            }
        }
    }

    /// Reads an application's shared counters, creating them (from a count
    /// of its data) if no host has yet.
    pub(super) async fn start_usage(&self, app: &AppState) -> Result<(), Error> {
        let totals = self.read_usage(app).await?;
        if !totals.is_empty() {
            app.usage.shared_now(&[], Some(totals));
            return Ok(());
        }
        let mut measured: HashMap<Tag, Counts> = self
            .measure(app)
            .await?
            .into_iter()
            .map(|(store, f)| {
                let counts = Counts {
                    keys: f.keys as i64,
                    bytes: f.bytes as i64,
                };
                (store, counts)
            })
            .collect();
        // The default store's counters are made even when it is empty:
        // that counters exist tells later hosts not to count.
        measured.entry(app.store_tag(DEFAULT_STORE)).or_default();
        let table = self.table(app);
        let mut batch = Batch::new(Shard::App(app.tag).encode());
        for (store, counts) in &measured {
            let key = RecordKey::Usage {
                app: app.tag,
                store: *store,
            }
            .encode();
            let record = UsageRecord {
                keys: counts.keys,
                bytes: counts.bytes,
            };
            let sealed = table.seal(&key, &record);
            batch.put(key, sealed, Expect::Absent);
        }
        let totals = match table.commit(batch).await? {
            Commit::Done => measured,
            // Another host counted first: its counters hold.
            Commit::Conflict => self.read_usage(app).await?,
        };
        app.usage.shared_now(&[], Some(totals));
        Ok(())
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
        let mut bucket = full_bucket(5, 0);
        let mut taken = 0;
        while let Ok(n) = take_tokens(&mut bucket, 5, 0, 1) {
            taken += n;
        }
        assert_eq!(taken, 5);
        match take_tokens(&mut bucket, 5, 0, 1) {
            Err(wait) => assert!(wait > Duration::ZERO && wait <= Duration::from_millis(250)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_bucket_refills_with_time_and_survives_a_clock_stepping_back() {
        let start = 10_000_000;
        let mut bucket = full_bucket(2, start);
        let mut take = |at: u64| take_tokens(&mut bucket, 2, at, 1).is_ok();
        assert!(take(start) && take(start) && !take(start));
        // The two tokens leased at `start` fill the capacity until their
        // leases end; then half a second's refill brings one back.
        assert!(!take(start + LEASE_MS - 1));
        assert!(take(start + LEASE_MS + 500));
        assert!(!take(start + LEASE_MS + 500));
        // The clock steps back an hour: the bucket counts on from there.
        let back = start - 3_600_000;
        assert!(!take(back));
        assert!(take(back + 500));
    }

    #[test]
    fn leased_tokens_count_against_the_capacity_until_their_lease_ends() {
        // A host leases the whole bucket and uses one token at once: the
        // nine it holds leave room for one more while its lease runs.
        let mut bucket = full_bucket(10, 0);
        assert_eq!(take_tokens(&mut bucket, 10, 0, 10), Ok(10));
        assert!(take_tokens(&mut bucket, 10, 99, 10).is_err());
        assert_eq!(take_tokens(&mut bucket, 10, 200, 10), Ok(1));
        // Once the lease ends (at 250), the bucket refills freely: 50 ms
        // capped beside the nine, then 300 ms more.
        assert_eq!(take_tokens(&mut bucket, 10, LEASE_MS + 300, 10), Ok(3));
    }

    #[test]
    fn quotas_refuse_growth_but_not_shrinking() {
        let usage = AppUsage::default();
        let limits = Limits {
            max_keys: Some(2),
            max_bytes: Some(100),
            ..Limits::default()
        };
        let none = StoreQuota::default();
        let refused = |keys, bytes| {
            matches!(
                usage.reserve([1; 16], keys, bytes, &none, &limits, true),
                Err(Refusal::Quota(Error::QuotaExceeded(_)))
            )
        };
        usage.apply([1; 16], 2, 60);
        assert!(refused(1, 10));
        assert!(refused(0, 50));
        assert!(!refused(0, 40));
        assert!(!refused(-1, -60));
        // Growth under way is reserved: a second write cannot take the
        // same room.
        let first = usage.reserve([1; 16], 0, 40, &none, &limits, true);
        assert!(first.is_ok());
        assert!(refused(0, 1));
        drop(first);
        assert!(!refused(0, 40));
    }

    #[test]
    fn growth_other_hosts_cannot_see_stays_under_a_share_of_the_room() {
        let usage = AppUsage::default();
        let limits = Limits {
            max_keys: Some(160),
            ..Limits::default()
        };
        let none = StoreQuota::default();
        for _ in 0..10 {
            usage
                .reserve([1; 16], 1, 0, &none, &limits, false)
                .ok()
                .expect("within a sixteenth of the room")
                .settle(1, 0);
        }
        assert!(matches!(
            usage.reserve([1; 16], 1, 0, &none, &limits, false),
            Err(Refusal::SyncFirst)
        ));
    }
}

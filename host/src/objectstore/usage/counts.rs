//! Each store's keys and bytes, shared by every host, and the quotas
//! checked against them.
//!
//! Each store's keys and bytes (what its records take at rest, sealed) are
//! kept in a counter record. A host counts its own changes in memory and
//! adds them to the counters with a conditional write, then reads every
//! host's totals: at every stats flush (every second, and at shutdown; see
//! [`stats`](crate::objectstore::stats)). A host's view of a store is the totals as last
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

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use crate::backend::{Batch, Expect};
use crate::encryption::Tag;

use super::AppUsage;
use crate::objectstore::application::AppState;
use crate::objectstore::keys::{Prefix, RecordKey, Shard};
use crate::objectstore::record::UsageRecord;
use crate::objectstore::sealed::Commit;
use crate::objectstore::types::{DEFAULT_STORE, Footprint, Limits, StoreQuota};
use crate::objectstore::{Error, Inner, MAX_CONFLICT_RETRIES};

/// A host adds its growth to the shared counters before it passes this
/// fraction of the room it last saw under a quota: the overshoot bound of
/// the module doc.
const SHARE_OF_ROOM: i64 = 16;

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
pub(super) struct StoreUsage {
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

/// Why a growing write may not go ahead as things stand.
pub(crate) enum Refusal {
    /// Over a quota even with the latest totals.
    Quota(Error),
    /// Decide after adding this host's changes and reading the totals.
    SyncFirst,
}

/// Growth reserved for a write under way, given back when dropped, once the
/// write has landed or not: whoever commits it counts what lands
/// ([`AppUsage::apply`]), even after its writer gave up waiting.
pub(crate) struct Reservation<'a> {
    usage: &'a AppUsage,
    store: Tag,
    growth: Counts,
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
}

impl Inner {
    /// Reserves the growth of a write to `store` against the quotas,
    /// exchanging counts with the other hosts first when the module doc's
    /// bound requires it.
    pub(in crate::objectstore) async fn reserve<'a>(
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
    pub(in crate::objectstore) async fn sync_usage(&self, app: &AppState) -> Result<(), Error> {
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
    pub(in crate::objectstore) async fn start_usage(&self, app: &AppState) -> Result<(), Error> {
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
            let reservation = usage
                .reserve([1; 16], 1, 0, &none, &limits, false)
                .ok()
                .expect("within a sixteenth of the room");
            // The write lands: its committer counts it, then the
            // reservation is given back.
            usage.apply([1; 16], 1, 0);
            drop(reservation);
        }
        assert!(matches!(
            usage.reserve([1; 16], 1, 0, &none, &limits, false),
            Err(Refusal::SyncFirst)
        ));
    }
}

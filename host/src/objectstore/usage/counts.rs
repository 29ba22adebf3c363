//! Each store's keys and bytes as this host knows them, and the quotas
//! checked against them.
//!
//! The keys and bytes are kept in the data (see [`kept`]): every batch
//! that changes a partition's keys changes its counts, so every host's
//! changes are there as soon as they land, and a host that stops, even by
//! kill -9, loses none. A host reads the counts of all an application's
//! partitions when it starts using the application, and again at every
//! stats flush (every second; see [`stats`](crate::objectstore::stats)). Its
//! view of a store is the totals as last read plus its own changes since:
//! each change it commits carries its slot's sequence number, so a change
//! that the last read already held is not added twice.
//!
//! A quota is checked against this view before a write, and the growth of
//! the writes under way on this host is reserved, so one host never goes
//! past a quota. What it cannot see is the growth of other hosts since its
//! last read. A host therefore reads the counts again before a growing
//! write once its own growth since its last read would pass a sixteenth of
//! the room it then saw under the quota, and before refusing a write. So
//! **with `N` hosts, a quota `Q` is overshot by at most `(N-1)·max(Q/16,
//! w)`**, where `w` is the growth one host has under way at once (one write,
//! times its concurrent writers). Far from a quota a host reads the counts
//! once a second; close to it, before every growing write, so only writes
//! near a quota wait on the read. Shrinking writes are never refused.
//!
//! A write racing the deletion of its store on another host may survive it
//! (see `write`), and is counted.
//!
//! # A sole host
//!
//! A host that no other shares its backend with (a redb file:
//! [`Config::sole_host`](crate::objectstore::Config::sole_host)) knows
//! every change as it lands, so its view is exact without reading: where a
//! shared host reads every partition's counts (at each flush, and before a
//! growing write near a quota), a sole host *settles* instead, taking its
//! own changes as read, which is what the read would find. It still reads
//! them when its view may not follow (`AppUsage::lost_track`): after a base
//! was written over keys or slots already there (data from before the
//! counts were kept), after a store's counts were deleted (a read running
//! then would keep the deletion's changes, their slots gone), or after a
//! counted batch whose outcome it did not learn (an error, or its writer
//! dropped while it committed: the batch may land later, so the read waits
//! for the backend to have [`settled`](crate::backend::Backend::settled)
//! first). So an
//! application with many partitions costs a sole host no reading of them
//! once a second.
//!
//! A read runs while this host writes: a change told while it ran, to a
//! slot the read did not find, may have made the slot after the read
//! passed it, and stays unread (a base that emptied the slot meanwhile, or
//! the deletion of its store's counts, makes the host lose track, so the
//! next flush reads again).
//!
//! [`kept`]: super::kept

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use crate::backend::{Batch, Expect};
use crate::encryption::Tag;

use super::AppUsage;
use crate::objectstore::application::AppState;
use crate::objectstore::index::{self, Need};
use crate::objectstore::keys::{PartitionId, Prefix, RecordKey, Shard};
use crate::objectstore::record::CountsRecord;
use crate::objectstore::types::{Footprint, Limits, StoreQuota};
use crate::objectstore::{Error, Inner};

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
    pub(crate) fn add(&mut self, other: Counts) {
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

impl From<CountsRecord> for Counts {
    fn from(r: CountsRecord) -> Self {
        Counts {
            keys: r.keys,
            bytes: r.bytes,
        }
    }
}

/// What this host knows of one store's keys and bytes.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct StoreUsage {
    /// The totals as last read.
    shared: Counts,
    /// This host's committed changes that the last read did not hold.
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

/// What this host knows of an application's keys and bytes.
#[derive(Debug, Default)]
pub(crate) struct Known {
    stores: HashMap<Tag, StoreUsage>,
    /// The sequence number of this host's slot of each partition, as last
    /// read (absent: no slot record then).
    seen: HashMap<PartitionId, u64>,
    /// This host's changes since, by partition: their sequence numbers,
    /// and what they changed.
    unread: Vec<(PartitionId, u64, Counts)>,
}

/// The kept counts of an application as read: each store's totals, and the
/// sequence number of this host's slot of each partition.
#[derive(Debug, Default)]
pub(crate) struct Read {
    totals: HashMap<Tag, Counts>,
    seen: HashMap<PartitionId, u64>,
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
            let mut known = self.usage.known.lock().expect("usage lock");
            known
                .stores
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
        let mut known = self.known.lock().expect("usage lock");
        let stores = &mut known.stores;
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

    /// Records that a batch this host committed changed `partition` by
    /// `change`, bringing its slot to sequence number `seq`.
    pub(crate) fn apply(&self, partition: PartitionId, seq: u64, change: Counts) {
        let mut known = self.known.lock().expect("usage lock");
        if known.seen.get(&partition).is_some_and(|&read| seq <= read) {
            // The last read held it already.
            return;
        }
        known.unread.push((partition, seq, change));
        known
            .stores
            .entry(partition.store)
            .or_default()
            .unshared
            .add(change);
    }

    /// Takes this host's changes since the last read or settling as read:
    /// what a read of the kept counts would find if no other host changed
    /// them (a sole host's, see the module doc).
    fn settle(&self) {
        let mut known = self.known.lock().expect("usage lock");
        let known = &mut *known;
        for (partition, seq, _) in known.unread.drain(..) {
            let seen = known.seen.entry(partition).or_default();
            *seen = (*seen).max(seq);
        }
        for usage in known.stores.values_mut() {
            let unshared = std::mem::take(&mut usage.unshared);
            usage.shared.add(unshared);
        }
    }

    /// The highest sequence number of this host's slot of `partition` that
    /// this host read or committed since its last read (0 if none).
    pub(crate) fn last_seq(&self, partition: PartitionId) -> u64 {
        let known = self.known.lock().expect("usage lock");
        let read = known.seen.get(&partition).copied().unwrap_or(0);
        (known.unread.iter())
            .filter(|(p, _, _)| *p == partition)
            .map(|(_, seq, _)| *seq)
            .fold(read, u64::max)
    }

    /// How many of this host's changes are unread: those after it are
    /// applied while a read runs (reads and settling take turns).
    fn unread_len(&self) -> usize {
        self.known.lock().expect("usage lock").unread.len()
    }

    /// Takes `read` as the totals: of this host's changes, only those the
    /// read did not hold stay unshared (stores absent from it hold
    /// nothing). The first `before` changes were applied before the read
    /// began.
    fn read_now(&self, read: Read, before: usize) {
        let Read { mut totals, seen } = read;
        let mut known = self.known.lock().expect("usage lock");
        let known = &mut *known;
        // A change to a slot the read did not find was held by a base that
        // replaced the slot, or deleted with it: either way, not unread.
        // Unless it was applied while the read ran: its slot may have been
        // made after the read passed it. (A base written meanwhile makes
        // the host read again: `lost_track`.)
        let mut index = 0;
        known.unread.retain(|(partition, seq, _)| {
            let during = index >= before;
            index += 1;
            match seen.get(partition) {
                Some(read) => seq > read,
                None => during,
            }
        });
        known.seen = seen;
        for usage in known.stores.values_mut() {
            usage.unshared = Counts::default();
        }
        for (partition, _, change) in &known.unread {
            known
                .stores
                .entry(partition.store)
                .or_default()
                .unshared
                .add(*change);
        }
        for (store, usage) in known.stores.iter_mut() {
            usage.shared = totals.remove(store).unwrap_or_default();
        }
        for (store, shared) in totals {
            known.stores.insert(
                store,
                StoreUsage {
                    shared,
                    ..StoreUsage::default()
                },
            );
        }
    }

    pub(crate) fn footprint(&self, store: Tag) -> Footprint {
        self.known
            .lock()
            .expect("usage lock")
            .stores
            .get(&store)
            .map(|u| u.view().footprint())
            .unwrap_or_default()
    }

    pub(crate) fn total(&self) -> Footprint {
        self.known
            .lock()
            .expect("usage lock")
            .stores
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
        self.refresh_usage(app).await?;
        match app.usage.reserve(store, keys, bytes, quota, limits, true) {
            Ok(reservation) => Ok(reservation),
            Err(Refusal::Quota(e)) => Err(e),
            Err(Refusal::SyncFirst) => unreachable!("a reservation after a sync is decided"),
        }
    }

    /// Brings this host's view of `app`'s counts up to date: on a sole host
    /// that has not lost track, by settling its own changes; else by
    /// reading the kept counts (see the module doc).
    pub(in crate::objectstore) async fn refresh_usage(&self, app: &AppState) -> Result<(), Error> {
        let usage = &app.usage;
        if self.config.sole_host {
            if !usage.unfollowed.swap(false, Ordering::SeqCst) {
                let _one = usage.syncing.lock().await;
                usage.settle();
                return Ok(());
            }
            // A batch whose writer was dropped may still be on its way.
            self.backend.settled().await;
        }
        let read = self.sync_usage(app).await;
        if read.is_err() {
            usage.lost_track();
        }
        read
    }

    /// Reads the kept counts of `app`. If a read begun after this call
    /// succeeds meanwhile, that one serves.
    pub(in crate::objectstore) async fn sync_usage(&self, app: &AppState) -> Result<(), Error> {
        let usage = &app.usage;
        let asked = usage.syncs_begun.load(Ordering::SeqCst);
        let _one = usage.syncing.lock().await;
        if usage.last_synced.load(Ordering::SeqCst) > asked {
            return Ok(());
        }
        let number = usage.syncs_begun.fetch_add(1, Ordering::SeqCst) + 1;
        let before = usage.unread_len();
        let read = self.read_counts(app).await?;
        usage.read_now(read, before);
        usage.last_synced.store(number, Ordering::SeqCst);
        Ok(())
    }

    /// Every partition's kept counts, summed by store.
    async fn read_counts(&self, app: &AppState) -> Result<Read, Error> {
        let table = self.table(app);
        let mine = self.index_locks.slot();
        let mut scan = table.scan(Prefix::Counts(app.tag));
        let mut read = Read::default();
        loop {
            let chunk = scan.next_chunk().await?;
            if chunk.is_empty() {
                return Ok(read);
            }
            for (key, sealed) in chunk {
                let Some(RecordKey::Counts { partition, slot }) = RecordKey::parse(&key) else {
                    return Err(Error::Integrity);
                };
                let record: CountsRecord = table.open(&key, &sealed)?;
                read.totals
                    .entry(partition.store)
                    .or_default()
                    .add(Counts::from(record));
                if slot == mine {
                    read.seen.insert(partition, record.seq);
                }
            }
        }
    }

    /// Reads an application's kept counts when this host starts using it.
    /// Data from before they were kept (an earlier version's store
    /// counters, or none and no kept counts) has every partition counted
    /// first, and the earlier counters deleted.
    pub(in crate::objectstore) async fn start_usage(&self, app: &AppState) -> Result<(), Error> {
        let table = self.table(app);
        let legacy = table.scan(Prefix::Usage(app.tag)).all().await?;
        let kept = table.scan(Prefix::Counts(app.tag)).next_chunk_of(1).await?;
        if !legacy.is_empty() || kept.is_empty() {
            for store in table.scan(Prefix::Stores(app.tag)).all().await? {
                let Some(RecordKey::Store { store, .. }) = RecordKey::parse(&store.0) else {
                    continue;
                };
                let partitions = Prefix::Partitions {
                    app: app.tag,
                    store,
                };
                for (key, _) in table.scan(partitions).all().await? {
                    if let Some(RecordKey::Partition(partition)) = RecordKey::parse(&key) {
                        let locks = &self.index_locks;
                        let usage = &app.usage;
                        index::ensure_built(table, locks, usage, partition, Need::Counts).await?;
                    }
                }
            }
            if !legacy.is_empty() {
                let mut batch = Batch::new(Shard::App(app.tag).encode());
                for (key, _) in legacy {
                    batch.delete(key, Expect::Any);
                }
                table.commit_unconditional(batch).await?;
                tracing::info!("counts of keys and bytes are now kept per partition");
            }
        }
        self.sync_usage(app).await
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

    /// A partition of store `[1; 16]`.
    fn partition() -> PartitionId {
        PartitionId {
            app: [0; 16],
            store: [1; 16],
            partition: [2; 16],
        }
    }

    #[test]
    fn a_change_the_last_read_held_is_not_counted_twice() {
        let usage = AppUsage::default();
        let one = Counts { keys: 1, bytes: 10 };
        usage.apply(partition(), 1, one);
        usage.apply(partition(), 2, one);
        // A read that held the first change of this host's slot, not the
        // second: the store's total then was 1 key.
        usage.read_now(
            Read {
                totals: HashMap::from([([1; 16], one)]),
                seen: HashMap::from([(partition(), 1)]),
            },
            usage.unread_len(),
        );
        assert_eq!(usage.footprint([1; 16]).keys, 2);
        // A change that landed before the read but is told after it.
        usage.apply(partition(), 1, one);
        assert_eq!(usage.footprint([1; 16]).keys, 2);
        usage.apply(partition(), 3, one);
        assert_eq!(usage.footprint([1; 16]).keys, 3);
        // A read that found no slot of this host: its changes were held by
        // a base that replaced the slot.
        usage.read_now(
            Read {
                totals: HashMap::from([([1; 16], Counts { keys: 3, bytes: 30 })]),
                seen: HashMap::new(),
            },
            usage.unread_len(),
        );
        assert_eq!(usage.footprint([1; 16]).keys, 3);
    }

    #[test]
    fn a_change_to_a_slot_made_while_a_read_ran_is_kept() {
        let usage = AppUsage::default();
        let one = Counts { keys: 1, bytes: 10 };
        let before = usage.unread_len();
        // The read passes the partition before this host's first change to
        // it lands, and the change is told before the read ends.
        usage.apply(partition(), 1, one);
        usage.read_now(
            Read {
                totals: HashMap::from([([1; 16], Counts::default())]),
                seen: HashMap::new(),
            },
            before,
        );
        assert_eq!(usage.footprint([1; 16]).keys, 1);
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
        usage.apply(partition(), 1, Counts { keys: 2, bytes: 60 });
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
        for seq in 1..=10 {
            let reservation = usage
                .reserve([1; 16], 1, 0, &none, &limits, false)
                .ok()
                .expect("within a sixteenth of the room");
            // The write lands: its committer counts it, then the
            // reservation is given back.
            usage.apply(partition(), seq, Counts { keys: 1, bytes: 0 });
            drop(reservation);
        }
        assert!(matches!(
            usage.reserve([1; 16], 1, 0, &none, &limits, false),
            Err(Refusal::SyncFirst)
        ));
    }
}

//! Kept counts: each partition's keys and bytes, changed in the very
//! batches that change its keys.
//!
//! A batch writes one shard, and a partition is one, so a partition's
//! counts live in its shard as records of their own, in *slots*: slot 0,
//! the base, holds the keys and bytes measured when the counts began to be
//! kept; every host draws one of slots 1 to [`SLOTS`] when it starts and
//! adds each change it commits to that slot, in the batch that makes the
//! change. Whatever lands is counted, and nothing else is: a kill -9 loses
//! no count, and neither does a writer that gives up.
//!
//! Why slots: a single record per partition would be written by every
//! batch, so two hosts writing one partition would fail each other's
//! batches (each expects the bytes it read) at every commit. With slots
//! they meet only when they drew the same one. Within a host, a
//! partition's counted writes hold its lock in [`IndexLocks`], so the host
//! never races itself on its slot; the group commit writes the slot once
//! for every change it carries.
//!
//! A partition's keys and bytes are the sum of its slots; a store's, of its
//! partitions'; an application's, of its stores'. Reading them is one scan
//! of the application's count records: O(partitions × slots in use), done
//! at start and at each exchange of the quotas (see `counts`).
//!
//! # The base
//!
//! The base says the counts are kept: a partition without one is counted
//! (its entries scanned) before its first counted write, under its lock,
//! with the index of names built from the same scan (see `index`). The
//! batch that writes the base empties every host slot, each expecting what
//! was read before the scan (or to be absent), so a write counted during
//! the scan fails it and the count starts again: the base never counts a
//! key twice or misses one.
//!
//! [`IndexLocks`]: crate::objectstore::index::IndexLocks

use std::collections::HashMap;
use std::sync::Mutex;

use crate::backend::{Batch, Expect};
use crate::encryption::random_array;

use super::AppUsage;
use super::counts::Counts;
use crate::objectstore::Error;
use crate::objectstore::keys::{PartitionId, Prefix, RecordKey, Shard};
use crate::objectstore::record::CountsRecord;
use crate::objectstore::sealed::{Commit, SealedTable};

/// The slot measured when counts began to be kept.
pub(crate) const BASE: u16 = 0;

/// How many slots hosts draw from: two hosts writing one partition share a
/// slot (and fail some of each other's batches) one time in this many.
pub(crate) const SLOTS: u16 = 16;

/// A slot for this host, from 1 to [`SLOTS`].
pub(crate) fn draw_slot() -> u16 {
    1 + u16::from_be_bytes(random_array()) % SLOTS
}

fn slot_key(partition: PartitionId, slot: u16) -> Vec<u8> {
    RecordKey::Counts { partition, slot }.encode()
}

/// Whether the partition's counts are kept (its base exists).
pub(crate) async fn is_kept(table: SealedTable<'_>, partition: PartitionId) -> Result<bool, Error> {
    let base = RecordKey::Counts {
        partition,
        slot: BASE,
    };
    table.exists(&base).await
}

/// This host's slot of one partition's counts as its last batch wrote it.
struct Written {
    partition: PartitionId,
    record: CountsRecord,
    sealed: Vec<u8>,
}

/// A copy of what this host last wrote to its slot of the counts of one
/// partition (the last written of those sharing a lock stripe): the next
/// batch that counts there expects it without reading it again. Only the
/// holder of the partition's lock uses it, so this host never races it.
/// It is wrong only if another writer changed the slot (a host that drew
/// the same one, a recount, the deletion of a store's counts): that batch
/// then fails, the copy is gone, and the retry reads the slot.
#[derive(Default)]
pub(crate) struct LastWritten(Mutex<Option<Written>>);

/// This host's slot, and its copy of what it last wrote to a partition's
/// (see [`LastWritten`]).
#[derive(Clone, Copy)]
pub(crate) struct Counter<'a> {
    pub slot: u16,
    pub last: &'a LastWritten,
}

impl Counter<'_> {
    /// Whether this host's last counted batch of the partition's stripe
    /// was the partition's and landed: its counts were kept then (see
    /// `index::ensure_countable`).
    pub fn counted_last(&self, partition: PartitionId) -> bool {
        let last = self.last.0.lock().expect("last written lock");
        last.as_ref().is_some_and(|w| w.partition == partition)
    }
}

/// Commits `batch` (of the partition's shard) with `change` added to this
/// host's slot of the partition's counts, by the holder of the partition's
/// lock; if it lands, `usage` learns the change. The slot is expected as
/// this host last wrote it, or else as read now; nothing is counted for no
/// change. The copy of the slot is taken: unless the batch lands, the next
/// batch reads the slot again.
pub(crate) async fn commit_counted(
    table: SealedTable<'_>,
    usage: &AppUsage,
    partition: PartitionId,
    counter: Counter<'_>,
    change: Counts,
    mut batch: Batch,
) -> Result<Commit, Error> {
    let counted = count(table, usage, partition, counter, change, &mut batch).await?;
    // Until the outcome is known, the batch may land unseen: by an error
    // after it was sent, or by this future's being dropped meanwhile (a
    // request cut off at its deadline).
    let unknown = Unfollowed(usage);
    let outcome = table.commit(batch).await?;
    std::mem::forget(unknown);
    if let (Commit::Done, Some(written)) = (outcome, counted) {
        let seq = written.record.seq;
        *counter.last.0.lock().expect("last written lock") = Some(written);
        usage.apply(partition, seq, change);
    }
    Ok(outcome)
}

/// Tells `usage` it lost track of the kept counts when dropped (see
/// `AppUsage::lost_track`), unless forgotten first.
pub(crate) struct Unfollowed<'a>(pub &'a AppUsage);

impl Drop for Unfollowed<'_> {
    fn drop(&mut self) {
        self.0.lost_track();
    }
}

/// Adds `change` to this host's slot in `batch` (see [`commit_counted`]).
async fn count(
    table: SealedTable<'_>,
    usage: &AppUsage,
    partition: PartitionId,
    counter: Counter<'_>,
    change: Counts,
    batch: &mut Batch,
) -> Result<Option<Written>, Error> {
    if change == Counts::default() {
        return Ok(None);
    }
    let key = RecordKey::Counts {
        partition,
        slot: counter.slot,
    };
    let known = counter.last.0.lock().expect("last written lock").take();
    let (mut record, expect) = match known.filter(|w| w.partition == partition) {
        Some(w) => (w.record, Expect::Value(w.sealed)),
        None => match table.get::<CountsRecord>(&key).await? {
            Some(opened) => (opened.record, Expect::Value(opened.sealed)),
            // A slot made again (its partition's counts were deleted with
            // its store, or replaced by a base) goes on from the sequence
            // numbers this host used before, never below: `usage` takes a
            // change numbered at or below what it last read for the slot
            // as held by that read.
            None => (
                CountsRecord {
                    seq: usage.last_seq(partition),
                    ..CountsRecord::default()
                },
                Expect::Absent,
            ),
        },
    };
    record.keys = record.keys.saturating_add(change.keys);
    record.bytes = record.bytes.saturating_add(change.bytes);
    record.seq += 1;
    let bytes = key.encode();
    let sealed = table.seal(&bytes, &record);
    batch.put(bytes, sealed.clone(), expect);
    Ok(Some(Written {
        partition,
        record,
        sealed,
    }))
}

/// The host slots of a partition as read now, to be emptied by the batch
/// that writes its base: read before its entries are scanned.
pub(crate) struct Slots(Vec<(Vec<u8>, Expect)>);

impl Slots {
    pub async fn read(table: SealedTable<'_>, partition: PartitionId) -> Result<Self, Error> {
        let scan = table.scan(Prefix::PartitionCounts(partition));
        let mut found: HashMap<Vec<u8>, Vec<u8>> = scan.all().await?.into_iter().collect();
        let slots = (1..=SLOTS)
            .map(|slot| {
                let key = slot_key(partition, slot);
                let expect = match found.remove(&key) {
                    Some(sealed) => Expect::Value(sealed),
                    None => Expect::Absent,
                };
                (key, expect)
            })
            .collect();
        Ok(Self(slots))
    }

    /// Whether any slot holds a record: a base written over it changes
    /// what this host's view follows (see `AppUsage::lost_track`).
    pub fn any(&self) -> bool {
        self.0
            .iter()
            .any(|(_, expect)| !matches!(expect, Expect::Absent))
    }

    /// Adds to `batch` the base holding `measured` (expected absent) and
    /// the emptying of every slot as read.
    pub fn reset(
        self,
        table: SealedTable<'_>,
        partition: PartitionId,
        measured: Counts,
        batch: &mut Batch,
    ) {
        let key = slot_key(partition, BASE);
        let base = CountsRecord {
            keys: measured.keys,
            bytes: measured.bytes,
            seq: 0,
        };
        batch.put(key.clone(), table.seal(&key, &base), Expect::Absent);
        for (key, expect) in self.0 {
            batch.delete(key, expect);
        }
    }
}

/// Deletes the kept counts of the partitions under `prefix` (a deleted
/// store's) that sum to nothing, each partition's in one batch expecting
/// every slot as read. A write that survived the store's deletion (see
/// `write`) keeps its partition's counts, as it keeps its key; a write
/// counted after the deletion finds no base and counts the partition again
/// before it lands.
pub(crate) async fn delete_empty(table: SealedTable<'_>, prefix: Prefix) -> Result<(), Error> {
    let mut by_partition: HashMap<PartitionId, (Counts, Batch)> = HashMap::new();
    for (key, sealed) in table.scan(prefix).all().await? {
        let Some(RecordKey::Counts { partition, .. }) = RecordKey::parse(&key) else {
            continue;
        };
        let record: CountsRecord = table.open(&key, &sealed)?;
        let (sum, batch) = by_partition.entry(partition).or_insert_with(|| {
            let shard = Shard::Partition(partition);
            (Counts::default(), Batch::new(shard.encode()))
        });
        sum.add(Counts::from(record));
        batch.delete(key, Expect::Value(sealed));
    }
    for (_, (sum, batch)) in by_partition {
        if sum == Counts::default() {
            // A conflict: a write landed meanwhile, and the counts stay.
            let _ = table.commit(batch).await?;
        }
    }
    Ok(())
}

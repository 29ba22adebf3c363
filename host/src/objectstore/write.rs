//! How a key changes. Every write is a read-modify-write cycle: under this
//! host's lock for the key, read the current record, decide the new one,
//! and commit it conditionally on what was read, with the key's expiry index
//! entry and the usage counts in step; if another writer (on this host or
//! another) got there first, read again. Also the bulk deletion behind
//! clearing a partition and deleting a store.

use std::collections::BTreeMap;

use crate::backend::{Batch, Expect};
use crate::encryption::Tag;

use super::application::AppState;
use super::index::{self, IndexEdit, IndexLocks, NameChange, Scope};
use super::keys::{EntryId, PartitionId, Prefix, RecordKey, Shard};
use super::partition::Partition;
use super::record::EntryRecord;
use super::sealed::{Commit, SealedTable};
use super::usage::{AppUsage, Counts, kept};
use super::{Error, MAX_CONFLICT_RETRIES};

/// Serialises read-modify-write cycles on one key within this host, so that
/// concurrent increments of a hot counter queue up instead of failing each
/// other's conditional commits. Only an optimisation: correctness comes from
/// the conditional commits alone (every write expects the bytes it read,
/// and the usage change it counts is the difference from those bytes), as
/// it must with writers on other hosts, which this lock does not see.
/// Striped: two keys may share a lock, which only costs a little
/// concurrency.
pub(super) struct KeyLocks(Vec<tokio::sync::Mutex<()>>);

impl KeyLocks {
    pub fn new() -> Self {
        Self((0..1024).map(|_| tokio::sync::Mutex::new(())).collect())
    }

    pub async fn lock(&self, entry: &EntryId) -> tokio::sync::MutexGuard<'_, ()> {
        self.0[stripe_of(&entry.key, self.0.len())].lock().await
    }

    /// The locks of every key in `entries`, for a write of several keys.
    /// Stripes are taken in ascending order and each once (two keys may
    /// share one), so two callers locking overlapping sets cannot deadlock,
    /// nor one lock a stripe it already holds.
    pub async fn lock_many(&self, entries: &[EntryId]) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> = entries
            .iter()
            .map(|entry| stripe_of(&entry.key, self.0.len()))
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            guards.push(self.0[stripe].lock().await);
        }
        guards
    }
}

/// Which of `stripes` locks serves `tag`: tags are uniformly distributed,
/// so their first bytes spread over the stripes evenly.
pub(super) fn stripe_of(tag: &Tag, stripes: usize) -> usize {
    u64::from_le_bytes(tag[..8].try_into().expect("8 bytes")) as usize % stripes
}

/// A record as read from the backend.
pub(super) struct Stored {
    /// `None` when the record failed its integrity check.
    pub record: Option<EntryRecord>,
    pub sealed: Vec<u8>,
    /// Intact and not expired.
    pub live: bool,
}

impl Stored {
    pub fn live_record(&self) -> Option<&EntryRecord> {
        self.record.as_ref().filter(|_| self.live)
    }

    /// Whether a write may skip this: an intact but expired record, which
    /// the sweep reclaims.
    pub fn is_dead(&self) -> bool {
        self.record.is_some() && !self.live
    }
}

/// What a read-modify-write does with a record that fails its integrity
/// check.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Damaged {
    /// Fail with `Integrity`: the operation needs the old value.
    Refuse,
    /// Treat it as absent and replace or delete it: the old value does not
    /// matter, and the key must not stay unusable forever.
    Replace,
}

impl Partition {
    /// Reads what is stored for `entry`: the record, its sealed bytes (the
    /// expectation for a conditional write) and whether it is live.
    pub(super) async fn load(&self, entry: &EntryId) -> Result<Option<Stored>, Error> {
        let record_key = RecordKey::Entry(*entry);
        let key = record_key.encode();
        let shard = record_key.shard().encode();
        let sealed = self.table().backend().get(&shard, &key).await?;
        sealed.map(|sealed| self.stored(&key, sealed)).transpose()
    }

    /// [`load`](Self::load) of several entries of this partition, read at
    /// once, in their order.
    pub(super) async fn load_many(
        &self,
        entries: &[EntryId],
    ) -> Result<Vec<Option<Stored>>, Error> {
        let keys: Vec<Vec<u8>> = entries
            .iter()
            .map(|entry| RecordKey::Entry(*entry).encode())
            .collect();
        let shard = Shard::Partition(self.id).encode();
        let values = self.table().backend().get_many(&shard, &keys).await?;
        keys.iter()
            .zip(values)
            .map(|(key, sealed)| sealed.map(|sealed| self.stored(key, sealed)).transpose())
            .collect()
    }

    /// What `sealed`, read under `key`, holds.
    fn stored(&self, key: &[u8], sealed: Vec<u8>) -> Result<Stored, Error> {
        let record = match self.table().open::<EntryRecord>(key, &sealed) {
            Ok(record) => Some(record),
            Err(Error::Integrity) => None,
            Err(e) => return Err(e),
        };
        let now = self.inner().now_ms();
        let live = record.as_ref().is_some_and(|r| r.is_live_at(now));
        Ok(Stored {
            record,
            sealed,
            live,
        })
    }

    /// Writes `record` in place of `previous` (what was last read) under the
    /// key called `name`: [`commit_entries`](Self::commit_entries) of one.
    pub(super) async fn commit_entry(
        &self,
        entry: &EntryId,
        name: &str,
        previous: Option<&Stored>,
        record: Option<&EntryRecord>,
    ) -> Result<Commit, Error> {
        let change = EntryChange {
            entry: *entry,
            name,
            previous,
            record,
        };
        self.commit_entries(&[change]).await
    }

    /// Writes each change's record in place of what was read, as one
    /// conditional batch of the partition's shard, keeping the expiry index,
    /// the index of names and the kept counts in step (one reservation for
    /// the summed change): all land or none. Returns [`Commit::Conflict`],
    /// writing nothing, if a key or index page changed since it was read;
    /// fails with `QuotaExceeded` if the writes would grow the application
    /// or store past a quota. Changes to the index of names are committed
    /// through the partition's queue, with the others queued there
    /// ([`IndexLocks::commit`]).
    pub(super) async fn commit_entries(
        &self,
        changes: &[EntryChange<'_>],
    ) -> Result<Commit, Error> {
        let app = self.app();
        let table = self.table();
        let mut batch = Batch::new(Shard::Partition(self.id).encode());
        let (mut keys, mut bytes) = (0, 0);
        for change in changes {
            let (k, b) = entry_writes(table, change, &mut batch);
            keys += k;
            bytes += b;
        }
        let reservation = self
            .inner()
            .reserve(app, self.store.tag, (keys, bytes), &self.store.quota())
            .await?;
        if changes.iter().any(|c| c.record.is_some()) {
            self.ensure_record().await?;
        }
        let names: Vec<(String, bool)> = changes
            .iter()
            .filter_map(|c| name_change(c).map(|insert| (c.name.to_string(), insert)))
            .collect();
        // Committed, and counted once it lands, by the partition's queue:
        // a change whose writer gives up (its request dropped) while it
        // commits is counted all the same. The reservation only holds its
        // growth until then.
        let change = NameChange {
            names,
            batch,
            counts: Counts { keys, bytes },
        };
        let locks = &self.inner().index_locks;
        let outcome = locks.commit(&self.store.app, self.id, change).await;
        drop(reservation);
        outcome
    }

    /// The read-modify-write cycle behind every write: check that the store
    /// still exists and bring the store's and partition's settings up to
    /// date (within the cache bound), then under this host's lock for the
    /// key, read the current record, let `change` decide the new one, and
    /// commit it conditionally, retrying if another host got there first.
    /// Also says whether a damaged record was replaced or deleted.
    pub(super) async fn modify<T>(
        &self,
        key: &str,
        damaged: Damaged,
        mut change: impl FnMut(Option<&EntryRecord>, u64) -> Result<(Option<EntryRecord>, T), Error>,
    ) -> Result<(T, bool), Error> {
        self.admit().await?;
        let entry = self.entry_id(key)?;
        self.store.refresh().await?;
        self.refresh().await?;
        let _guard = self.inner().key_locks.lock(&entry).await;
        for _ in 0..MAX_CONFLICT_RETRIES {
            let stored = self.load(&entry).await?;
            let was_damaged = stored.as_ref().is_some_and(|s| s.record.is_none());
            if damaged == Damaged::Refuse && was_damaged {
                return Err(Error::Integrity);
            }
            let live = stored.as_ref().and_then(Stored::live_record);
            let (next, out) = change(live, self.inner().now_ms())?;
            if next.is_none() && stored.as_ref().is_none_or(Stored::is_dead) {
                return Ok((out, false));
            }
            match self
                .commit_entry(&entry, key, stored.as_ref(), next.as_ref())
                .await?
            {
                Commit::Done => return Ok((out, was_damaged)),
                // Let the writer that got there first (on this host or in
                // this process as another host) finish before reading
                // again, rather than meeting it again at once.
                Commit::Conflict => tokio::task::yield_now().await,
            }
        }
        Err(Error::Contended("the key is"))
    }
}

/// One key's part in a commit: what was read, and what replaces it.
pub(super) struct EntryChange<'a> {
    pub entry: EntryId,
    pub name: &'a str,
    /// What was read (`None`: nothing is stored).
    pub previous: Option<&'a Stored>,
    /// `None`: the key goes.
    pub record: Option<&'a EntryRecord>,
}

/// Adds to `batch` (of the entry's partition shard) the writes of `change`,
/// each conditional on what was read, with the entry's expiry index entry
/// in step; returns the change in keys and bytes at rest.
fn entry_writes(table: SealedTable<'_>, change: &EntryChange<'_>, batch: &mut Batch) -> (i64, i64) {
    let EntryChange {
        entry,
        previous,
        record,
        ..
    } = *change;
    let key = RecordKey::Entry(entry).encode();
    let expect = match previous {
        Some(stored) => Expect::Value(stored.sealed.clone()),
        None => Expect::Absent,
    };
    if let Some(at) = previous
        .and_then(|p| p.record.as_ref())
        .and_then(|r| r.expires)
    {
        for expiry in RecordKey::expiries(at, entry) {
            batch.delete(expiry.encode(), Expect::Any);
        }
    }
    let footprint = |sealed: &[u8]| (key.len() + sealed.len()) as i64;
    let old_bytes = previous.map_or(0, |p| footprint(&p.sealed));
    match record {
        Some(record) => {
            let sealed = table.seal(&key, record);
            let delta = (
                i64::from(previous.is_none()),
                footprint(&sealed) - old_bytes,
            );
            batch.put(key, sealed, expect);
            if let Some(at) = record.expires {
                let expiry = RecordKey::expiry(at, entry);
                batch.put(expiry.encode(), Vec::new(), Expect::Any);
            }
            delta
        }
        None => {
            batch.delete(key, expect);
            (-1, -old_bytes)
        }
    }
}

/// How a change alters the index of names: `Some(true)` inserts its name
/// (a key comes), `Some(false)` removes it (a key goes). An overwrite (even
/// of a damaged or expired record, whose name is still indexed) changes
/// nothing.
fn name_change(change: &EntryChange<'_>) -> Option<bool> {
    match (change.previous, change.record) {
        (None, Some(_)) => Some(true),
        (Some(_), None) => Some(false),
        _ => None,
    }
}

/// Deletes every entry under `prefix` with its expiry index entry, for as
/// long as `only` holds; returns how many were live at `now`. Writes racing
/// with it may survive or not.
/// Each chunk is committed as one batch per partition (its shard), each
/// delete expecting the bytes the scan read, with the partition's kept
/// counts in the same batch; a partition's batch that meets a concurrent write
/// (from any host) is done again key by key from what is there now. So each
/// key is deleted and counted once, as the counters shared by hosts need.
pub(super) async fn delete_entries(
    table: SealedTable<'_>,
    locks: &IndexLocks,
    app: &AppState,
    now: u64,
    prefix: Prefix,
    only: &While,
) -> Result<u64, Error> {
    /// The deletions of one partition, and the keys and bytes they free.
    struct Deletions {
        batch: Batch,
        entries: Vec<EntryId>,
        /// The names of those that open, to remove from the index.
        names: Vec<String>,
        live: u64,
        freed: Counts,
    }
    let mut removed = 0;
    let mut scan = table.scan(prefix);
    loop {
        let chunk = scan.next_chunk().await?;
        // Checked after the scan: whatever the chunk holds was written
        // before the condition could stop holding.
        if chunk.is_empty() || !only.holds(table).await? {
            return Ok(removed);
        }
        let mut by_partition: BTreeMap<PartitionId, Deletions> = BTreeMap::new();
        // Damage at rest: not a key of this layout, and so of no shard; such
        // keys go in a batch of their own, in no shard.
        let mut malformed = Batch::new(Vec::new());
        for (key, sealed) in chunk {
            let Some(RecordKey::Entry(entry)) = RecordKey::parse(&key) else {
                tracing::warn!("deleting a malformed entry key");
                malformed.delete(key, Expect::Any);
                continue;
            };
            let deletions = by_partition
                .entry(entry.partition)
                .or_insert_with(|| Deletions {
                    batch: Batch::new(Shard::Partition(entry.partition).encode()),
                    entries: Vec::new(),
                    names: Vec::new(),
                    live: 0,
                    freed: Counts::default(),
                });
            let (counts, name) =
                deletion_of(table, &entry, &key, &sealed, now, &mut deletions.batch)?;
            if counts {
                deletions.live += 1;
            }
            deletions.names.extend(name);
            deletions.entries.push(entry);
            deletions.freed.add(freed_by(&key, &sealed));
        }
        for (partition, deletions) in by_partition {
            let deletion = Deletion {
                partition,
                names: &deletions.names,
                freed: deletions.freed,
            };
            let outcome =
                commit_deletion(table, locks, &app.usage, deletion, deletions.batch).await?;
            match outcome {
                Commit::Done => removed += deletions.live,
                Commit::Conflict if only.holds(table).await? => {
                    for entry in &deletions.entries {
                        removed += delete_current(table, locks, app, now, entry).await?;
                    }
                }
                Commit::Conflict => return Ok(removed),
            }
        }
        if !malformed.is_empty() {
            table.backend().commit(malformed).await?;
        }
    }
}

/// How long a bulk deletion goes on.
pub(super) enum While {
    /// To the end: the deletion is the whole operation (clearing or deleting
    /// a partition).
    Always,
    /// While this record stands: the tombstone of a store being deleted.
    /// Once another host has finished that deletion, a new store of the
    /// name may hold keys of the same tags, which are not this deletion's.
    Present(RecordKey),
}

impl While {
    pub async fn holds(&self, table: SealedTable<'_>) -> Result<bool, Error> {
        match self {
            While::Always => Ok(true),
            While::Present(key) => table.exists(key).await,
        }
    }
}

/// Adds to `batch` the deletion of an entry record holding `sealed` (only
/// if it still does) and of its expiry index entry; returns whether it
/// counts as a key that was there at `now`, and its name if it opens (for
/// the caller to remove from the index of names).
fn deletion_of(
    table: SealedTable<'_>,
    entry: &EntryId,
    key: &[u8],
    sealed: &[u8],
    now: u64,
    batch: &mut Batch,
) -> Result<(bool, Option<String>), Error> {
    let (counts, name) = match table.open::<EntryRecord>(key, sealed) {
        Ok(record) => {
            if let Some(at) = record.expires {
                for expiry in RecordKey::expiries(at, *entry) {
                    batch.delete(expiry.encode(), Expect::Any);
                }
            }
            (record.is_live_at(now), Some(record.key))
        }
        // A damaged record goes too (its index entry, if any, is dropped by
        // the sweep; its name, if indexed, stays until `ostore repair`
        // rebuilds the index, and listings skip it); it counts as a key that
        // was there.
        Err(Error::Integrity) => (true, None),
        Err(e) => return Err(e),
    };
    batch.delete(key.to_vec(), Expect::Value(sealed.to_vec()));
    Ok((counts, name))
}

/// Deletes whatever `entry` holds now, if anything; returns 1 if that was a
/// key there at `now`.
async fn delete_current(
    table: SealedTable<'_>,
    locks: &IndexLocks,
    app: &AppState,
    now: u64,
    entry: &EntryId,
) -> Result<u64, Error> {
    let record = RecordKey::Entry(*entry);
    let (key, shard) = (record.encode(), record.shard().encode());
    for _ in 0..MAX_CONFLICT_RETRIES {
        let Some(sealed) = table.backend().get(&shard, &key).await? else {
            return Ok(0);
        };
        let mut batch = Batch::new(shard.clone());
        let (counts, name) = deletion_of(table, entry, &key, &sealed, now, &mut batch)?;
        let deletion = Deletion {
            partition: entry.partition,
            names: name.as_slice(),
            freed: freed_by(&key, &sealed),
        };
        if commit_deletion(table, locks, &app.usage, deletion, batch).await? == Commit::Done {
            return Ok(u64::from(counts));
        }
    }
    Err(Error::Contended("the key is"))
}

/// What deleting one entry frees: a key, and its record key's and sealed
/// record's bytes.
pub(super) fn freed_by(key: &[u8], sealed: &[u8]) -> Counts {
    Counts {
        keys: -1,
        bytes: -((key.len() + sealed.len()) as i64),
    }
}

/// Entries of one partition that a batch deletes.
pub(super) struct Deletion<'a> {
    pub partition: PartitionId,
    /// The names to leave the index of names (those of the entries that
    /// open: a damaged one has none).
    pub names: &'a [String],
    /// The keys and bytes they free.
    pub freed: Counts,
}

/// Commits `batch`, which deletes entries of one partition, with their
/// names' removal from the index and the change to the partition's counts,
/// under the partition's lock; `usage` learns what landed.
/// [`Commit::Conflict`] if the index or an entry changed meanwhile.
pub(super) async fn commit_deletion(
    table: SealedTable<'_>,
    locks: &IndexLocks,
    usage: &AppUsage,
    deletion: Deletion<'_>,
    mut batch: Batch,
) -> Result<Commit, Error> {
    let partition = deletion.partition;
    let _guard = locks.lock(&partition).await;
    let counter = locks.counter(&partition);
    index::ensure_countable(table, partition, counter, usage).await?;
    let mut edit = IndexEdit::new(table, Scope::Keys(partition));
    for name in deletion.names {
        if edit.remove(name).await? == Commit::Conflict {
            return Ok(Commit::Conflict);
        }
    }
    edit.finish(&mut batch);
    kept::commit_counted(table, usage, partition, counter, deletion.freed, batch).await
}

//! Group commit of the changes to one partition's index of names.
//!
//! A key that comes or goes changes the leaf of its partition's index that
//! covers its name, and every key of that range shares the leaf: two writers
//! changing it at once would fail each other's conditional batches. So,
//! within a host, a partition's index changes queue on a lock. Committed
//! one at a time, with the lock held across each commit and its fsync,
//! creating keys in one partition would run at the rate of one commit after
//! another, about a tenth of the rate without the index (docs/INDEX.md).
//!
//! Instead the changes that queue while one commit runs go in the next one
//! together. The writer that takes the lock takes every change queued by
//! then, applies them all to one edit of each partition's index, and
//! commits each partition's changes with their entries' writes in one
//! batch: its leaf is written once for all of them, and one commit (one
//! fsync) answers them all.
//!
//! A batch of many is all or nothing. If it meets a conflict (another host
//! changed one of its entries or pages) or an error that is not a storage
//! fault, each change is tried again alone, as it would have been without
//! the grouping, and gets its own answer. Changes of two partitions never
//! share a batch: their shards may live on different Redis nodes.
//!
//! Every write of a partition's entries goes through its queue, an
//! overwrite that changes no name too: each batch also changes the
//! partition's kept counts of keys and bytes (`usage::kept`), in this
//! host's slot, written once for the whole group.
//!
//! A group is committed by a task of its own, so that a writer whose
//! request is dropped while its group commits cannot leave the answers of
//! the others unsent; and the task adds what lands to this host's view of
//! the counts, so that a change whose writer gave up is counted all the
//! same.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot::{self, error::TryRecvError};

use crate::backend::Batch;
use crate::encryption::Tag;
use crate::objectstore::Error;
use crate::objectstore::application::Application;
use crate::objectstore::keys::{PartitionId, Shard};
use crate::objectstore::sealed::{Commit, SealedTable};
use crate::objectstore::usage::{AppUsage, Counts, kept};
use crate::objectstore::write::stripe_of;

use super::{IndexEdit, Scope, ensure_countable};

/// The most changes one batch holds; a longer queue is committed as several
/// batches, one after another.
const MAX_GROUP: usize = 256;

/// The most bytes of entry writes one batch holds (one change alone may
/// hold more).
const MAX_GROUP_BYTES: usize = 4 << 20;

/// How many stripes the partitions' locks and queues are spread over.
const STRIPES: usize = 256;

/// Queues the index changes of one partition within this host (see the
/// module doc). Striped by partition tag: two partitions may share a lock,
/// which only costs a little concurrency. Every batch that changes a
/// partition's kept counts holds its lock, so this host's slot of them is
/// written by one batch at a time.
pub(crate) struct IndexLocks {
    stripes: Vec<Stripe>,
    /// This host's slot of the kept counts (see `usage::kept`).
    slot: u16,
}

struct Stripe {
    lock: Arc<tokio::sync::Mutex<()>>,
    /// What this host last wrote to its slot of the kept counts of a
    /// partition of the stripe.
    last_written: kept::LastWritten,
    /// Changes waiting for the lock's holder to commit them.
    queued: Mutex<Vec<Queued>>,
}

/// Changes to a partition's index of names, with the writes of the entries
/// they go with: committed together, or not at all.
pub(crate) struct NameChange {
    /// Each name, and whether it is inserted (its key comes) or removed.
    pub names: Vec<(String, bool)>,
    /// The entries' writes, in the partition's shard.
    pub batch: Batch,
    /// How many keys and bytes they add to the partition: counted in its
    /// kept counts in the same batch, and in this host's view once they
    /// land, by whoever commits them (the writer may have given up waiting,
    /// its request dropped, by then).
    pub counts: Counts,
}

struct Queued {
    /// Whose keys seal the partition's records.
    app: Application,
    partition: PartitionId,
    change: NameChange,
    reply: oneshot::Sender<Result<Commit, Error>>,
}

impl IndexLocks {
    pub fn new() -> Self {
        Self {
            stripes: (0..STRIPES)
                .map(|_| Stripe {
                    lock: Arc::new(tokio::sync::Mutex::new(())),
                    last_written: kept::LastWritten::default(),
                    queued: Mutex::new(Vec::new()),
                })
                .collect(),
            slot: kept::draw_slot(),
        }
    }

    /// This host's slot of the kept counts.
    pub fn slot(&self) -> u16 {
        self.slot
    }

    /// How this host counts the partition's changes (by the holder of its
    /// lock only).
    pub fn counter(&self, partition: &PartitionId) -> kept::Counter<'_> {
        kept::Counter {
            slot: self.slot,
            last: &self.stripe(partition).last_written,
        }
    }

    fn stripe(&self, partition: &PartitionId) -> &Stripe {
        self.stripe_of_tag(&partition.partition)
    }

    fn stripe_of_tag(&self, tag: &Tag) -> &Stripe {
        &self.stripes[stripe_of(tag, self.stripes.len())]
    }

    /// Holds off every other change to the index of `scope` on this host.
    /// The index of a partition's keys is locked by [`lock`](Self::lock)
    /// (the same stripe); the indexes of store and partition names, changed
    /// once per store or partition created or deleted, only with this.
    pub async fn lock_scope(&self, scope: &Scope) -> tokio::sync::MutexGuard<'_, ()> {
        self.stripe_of_tag(scope.stripe_tag()).lock.lock().await
    }

    /// Holds off every other change to the partition's index on this host
    /// (for a change that reads or writes more than one name's leaf).
    pub async fn lock(&self, partition: &PartitionId) -> tokio::sync::MutexGuard<'_, ()> {
        self.stripe(partition).lock.lock().await
    }

    /// Commits `change` to the partition of `app`, together with the other
    /// changes queued with it (see the module doc). [`Commit::Conflict`]:
    /// its entry or the index changed since they were read, and nothing of
    /// it was written.
    pub async fn commit(
        &self,
        app: &Application,
        partition: PartitionId,
        change: NameChange,
    ) -> Result<Commit, Error> {
        let stripe = self.stripe(&partition);
        let (reply, mut answer) = oneshot::channel();
        stripe.queued.lock().expect("queue lock").push(Queued {
            app: app.clone(),
            partition,
            change,
            reply,
        });
        let guard = stripe.lock.clone().lock_owned().await;
        // The holder before this one answers every change it took before it
        // lets go of the lock: one not answered yet is still queued.
        match answer.try_recv() {
            Ok(outcome) => return outcome,
            Err(TryRecvError::Empty) => {
                let queued = std::mem::take(&mut *stripe.queued.lock().expect("queue lock"));
                tokio::spawn(async move {
                    commit_queued(queued).await;
                    drop(guard);
                });
            }
            Err(TryRecvError::Closed) => return Err(Error::unanswered()),
        }
        answer.await.unwrap_or_else(|_| Err(Error::unanswered()))
    }
}

/// Commits `queued`, grouped by partition, and answers each change.
async fn commit_queued(queued: Vec<Queued>) {
    let mut by_partition: BTreeMap<PartitionId, Vec<Queued>> = BTreeMap::new();
    for q in queued {
        by_partition.entry(q.partition).or_default().push(q);
    }
    for (_, mut changes) in by_partition {
        while !changes.is_empty() {
            let mut bytes = 0;
            let mut end = 0;
            while end < changes.len() && end < MAX_GROUP && (end == 0 || bytes < MAX_GROUP_BYTES) {
                bytes += changes[end].change.batch.bytes();
                end += 1;
            }
            let rest = changes.split_off(end);
            commit_group(changes).await;
            changes = rest;
        }
    }
}

/// Commits the changes of one partition in one batch, or each alone if
/// that batch cannot land as a whole; counts what lands and answers each.
async fn commit_group(group: Vec<Queued>) {
    let app = group[0].app.clone();
    let table = app.table();
    let partition = group[0].partition;
    let counter = app.inner.index_locks.counter(&partition);
    let usage = &app.state.usage;
    if group.len() > 1 {
        let changes: Vec<&NameChange> = group.iter().map(|q| &q.change).collect();
        match commit_changes(table, usage, partition, counter, &changes).await {
            Ok(Commit::Conflict) => {}
            // Not the storage failing: perhaps only one change's pages.
            Err(e) if !matches!(e, Error::Storage(_)) => {}
            outcome => {
                for q in group {
                    let _ = q.reply.send(outcome.clone());
                }
                return;
            }
        }
    }
    for q in group {
        let outcome = commit_changes(table, usage, partition, counter, &[&q.change]).await;
        let _ = q.reply.send(outcome);
    }
}

/// What `changes` add to their partition's keys and bytes together.
fn sum(changes: &[&NameChange]) -> Counts {
    let mut total = Counts::default();
    for change in changes {
        total.add(change.counts);
    }
    total
}

/// Commits `changes` (of one partition), the edit of its index they make
/// and their change to its kept counts (in this host's slot) in one
/// conditional batch, and tells `usage` what landed. [`Commit::Conflict`]
/// also when two of them write one key: a batch checks every expectation
/// before it writes, so both would pass against what was there before
/// either (two creations of one key, say). The key locks keep such changes
/// apart only while their writers wait: one whose writer gave up may still
/// be queued.
async fn commit_changes(
    table: SealedTable<'_>,
    usage: &AppUsage,
    partition: PartitionId,
    counter: kept::Counter<'_>,
    changes: &[&NameChange],
) -> Result<Commit, Error> {
    if changes.len() > 1 {
        let mut keys = HashSet::new();
        for change in changes {
            let own: HashSet<&[u8]> = change.batch.writes.iter().map(|w| &w.key[..]).collect();
            if own.iter().any(|k| keys.contains(k)) {
                return Ok(Commit::Conflict);
            }
            keys.extend(own);
        }
    }
    ensure_countable(table, partition, counter, usage).await?;
    let mut edit = IndexEdit::new(table, Scope::Keys(partition));
    let mut batch = Batch::new(Shard::Partition(partition).encode());
    for change in changes {
        for (name, insert) in &change.names {
            let step = if *insert {
                edit.insert(name).await?
            } else {
                edit.remove(name).await?
            };
            if step == Commit::Conflict {
                return Ok(Commit::Conflict);
            }
        }
        batch.writes.extend(change.batch.writes.iter().cloned());
    }
    edit.finish(&mut batch);
    kept::commit_counted(table, usage, partition, counter, sum(changes), batch).await
}

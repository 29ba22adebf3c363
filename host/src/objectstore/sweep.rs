//! The sweep: deletes keys whose expiry has passed, by the tick they
//! expired in, from the expiry index (expired keys are invisible at once;
//! the sweep only reclaims their space), and finishes store deletions cut
//! off half-way.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::backend::{Batch, Expect};

use super::keys::{Prefix, RecordKey, Shard, tick_of, tick_start};
use super::record::EntryRecord;
use super::sealed::Commit;
use super::write::{Deletion, commit_deletion, freed_by};
use super::{Error, ObjectStore, Periodic};

impl ObjectStore {
    /// Deletes every key whose expiry has passed and returns how many were
    /// deleted.
    pub async fn sweep_expired(&self) -> Result<u64, Error> {
        let now = self.inner.now_ms();
        let mut deleted = 0;
        // The entries earlier versions wrote, then this version's: the
        // former drain as their keys expire or change, and once none is
        // left (this version writes none) they are not looked for again.
        let legacy_gone = &self.inner.legacy_expiries_gone;
        if !legacy_gone.load(Ordering::Relaxed) {
            let (swept, left) = self.sweep_index(Prefix::LegacyExpiries, now).await?;
            deleted += swept;
            legacy_gone.store(!left, Ordering::Relaxed);
        }
        Ok(deleted + self.sweep_index(Prefix::Expiries, now).await?.0)
    }

    /// Sweeps one layout of the expiry index: every tick that has begun by
    /// `now`, in order. A key that expires later within the tick that holds
    /// `now` is left for a later sweep. Returns how many keys it deleted,
    /// and whether it left any entry in the index.
    async fn sweep_index(&self, prefix: Prefix, now: u64) -> Result<(u64, bool), Error> {
        let inner = &self.inner;
        let index = inner.master_table();
        let (mut deleted, mut left) = (0, false);
        let mut scan = index.scan(prefix);
        loop {
            let due = scan.next_chunk().await?;
            if due.is_empty() {
                return Ok((deleted, left));
            }
            for (index_key, _) in due {
                let Some((tick, entry)) = RecordKey::parse(&index_key).and_then(|k| k.expiring())
                else {
                    tracing::warn!("dropping a malformed expiry index entry");
                    // A malformed key has no shard; it is deleted alone.
                    let mut batch = Batch::new(Vec::new());
                    batch.delete(index_key, Expect::Any);
                    inner.backend.commit(batch).await?;
                    continue;
                };
                if tick_start(tick) > now {
                    return Ok((deleted, true));
                }
                let shard = Shard::Partition(entry.partition).encode();
                let entry_key = RecordKey::Entry(entry).encode();
                let _guard = inner.key_locks.lock(&entry).await;
                let mut batch = Batch::new(shard.clone());
                batch.delete(index_key, Expect::Any);
                let mut expired = None;
                if let Some(sealed) = inner.backend.get(&shard, &entry_key).await? {
                    let app = inner.app_state(entry.partition.app, None).await?;
                    match inner.table(&app).open::<EntryRecord>(&entry_key, &sealed) {
                        Ok(record) => match record.expires {
                            Some(at) if tick_of(at) == tick && at <= now => {
                                expired = Some((app, record.key, sealed));
                            }
                            // Later in this tick: its index entry stays.
                            Some(at) if tick_of(at) == tick => {
                                left = true;
                                continue;
                            }
                            // Rewritten since: only the index entry is stale.
                            _ => {}
                        },
                        // A damaged record must not stop the sweep of all
                        // others; it stays for an operator to see.
                        Err(e) => tracing::warn!("expiry sweep skips a damaged record: {e}"),
                    }
                }
                let Some((app, name, sealed)) = expired else {
                    // Only the index entry was stale.
                    index.commit_unconditional(batch).await?;
                    continue;
                };
                // The name leaves the index, and the key its partition's
                // counts, in the same batch.
                let freed = freed_by(&entry_key, &sealed);
                batch.delete(entry_key, Expect::Value(sealed));
                let gone = Deletion {
                    partition: entry.partition,
                    names: std::slice::from_ref(&name),
                    freed,
                };
                let table = inner.table(&app);
                // A conflict: the entry was changed since it was read (the
                // write that changed it also replaced its expiry index
                // entry), or another host changed the index meanwhile. A
                // later sweep sees the key again.
                let outcome =
                    commit_deletion(table, &inner.index_locks, &app.usage, gone, batch).await?;
                if outcome == Commit::Done {
                    deleted += 1;
                } else {
                    left = true;
                }
            }
        }
    }

    /// Finishes every store deletion that a host began and did not finish
    /// (it stopped half-way, or is still at it: the steps are safe to run
    /// twice). Returns how many stores it found being deleted.
    pub async fn finish_deletions(&self) -> Result<u64, Error> {
        let inner = &self.inner;
        let mut scan = inner.master_table().scan(Prefix::StoreTombstones);
        let mut found = 0;
        loop {
            let chunk = scan.next_chunk().await?;
            if chunk.is_empty() {
                return Ok(found);
            }
            for (key, _) in chunk {
                let Some(RecordKey::StoreTombstone { app, store }) = RecordKey::parse(&key) else {
                    tracing::warn!("skipping a malformed store tombstone key");
                    continue;
                };
                let app = inner.app_state(app, None).await?;
                inner.finish_store_deletion(&app, store).await?;
                found += 1;
            }
        }
    }

    /// Runs [`sweep_expired`](Self::sweep_expired) and
    /// [`finish_deletions`](Self::finish_deletions) every `interval` until
    /// stopped.
    pub fn spawn_sweeper(&self, interval: Duration) -> Periodic {
        self.every(interval, |store| async move {
            match store.sweep_expired().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(deleted = n, "swept expired keys"),
                // Logged by the health monitor; the next sweep tries again.
                Err(e) if e.is_writes_failing() => tracing::debug!("expiry sweep failed: {e}"),
                Err(e) => tracing::warn!("expiry sweep failed: {e}"),
            }
            match store.finish_deletions().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(stores = n, "finished deleting stores"),
                Err(e) if e.is_writes_failing() => {
                    tracing::debug!("finishing store deletions failed: {e}")
                }
                Err(e) => tracing::warn!("finishing store deletions failed: {e}"),
            }
        })
    }
}

//! `ostore repair`'s writes: each remedy a walk decided on, carried out
//! batch by batch so that a repair cut short can be run again.

use crate::backend::{Backend, Batch, Expect};

use super::walk::Walk;
use crate::objectstore::Error;
use crate::objectstore::index;
use crate::objectstore::keys::{RecordKey, probable_shards, quarantine};
use crate::objectstore::record::{CountsRecord, MasterCheck};
use crate::objectstore::sealed::SealedTable;
use crate::objectstore::usage::kept;

impl Walk<'_> {
    /// Carries out every remedy, each batch in its own shard.
    pub(super) async fn apply(&self, backend: &dyn Backend) -> Result<(), Error> {
        for (key, sealed) in &self.set_aside {
            set_aside(backend, key, sealed).await?;
        }
        let master = SealedTable::new(backend, self.master);
        if self.master_check_missing {
            master.put(&RecordKey::MasterCheck, &MasterCheck).await?;
        }
        for (key, sealed) in &self.rate_buckets {
            delete_if_unchanged(backend, key, sealed).await?;
        }
        if !self.complete {
            // Nothing derived is written from part of the data (see
            // `Walk::complete`).
            return Ok(());
        }
        for &(tick, entry) in &self.missing_expiries {
            let key = RecordKey::Expiry { tick, entry };
            let mut batch = Batch::new(key.shard().encode());
            batch.put(key.encode(), Vec::new(), Expect::Any);
            backend.commit(batch).await?;
        }
        for key in &self.stale_expiries {
            let mut batch = Batch::new(key.shard().encode());
            batch.delete(key.encode(), Expect::Any);
            backend.commit(batch).await?;
        }
        // After the set-asides: an index holds the entries that stay.
        for partition in &self.rebuild_index {
            if let Some(keys) = self.apps.get(&partition.app) {
                index::rebuild(SealedTable::new(backend, &keys.sealer), *partition).await?;
            }
        }
        for scope in &self.rebuild_names {
            let app = match *scope {
                index::Scope::Stores(app) | index::Scope::Partitions { app, .. } => app,
                index::Scope::Keys(partition) => partition.app,
            };
            if let Some(keys) = self.apps.get(&app) {
                index::rebuild_names(SealedTable::new(backend, &keys.sealer), *scope).await?;
            }
        }
        // Every partition of an application with kept counts whose counts
        // differ from the recount gets it as its base, every host slot
        // emptied; the recount leaves out what was set aside.
        let partitions = self.counted_partitions().into_iter();
        for partition in partitions.filter(|p| self.apps.contains_key(&p.app)) {
            let kept_now = self
                .counted_kept
                .get(&partition)
                .copied()
                .unwrap_or_default();
            if self.counts.get(&partition) == Some(&Some(kept_now)) {
                continue;
            }
            let table = SealedTable::new(backend, &self.apps[&partition.app].sealer);
            let base = RecordKey::Counts {
                partition,
                slot: kept::BASE,
            };
            let record = CountsRecord {
                keys: kept_now.keys,
                bytes: kept_now.bytes,
                seq: 0,
            };
            let mut batch = Batch::new(base.shard().encode());
            let key = base.encode();
            batch.put(key.clone(), table.seal(&key, &record), Expect::Any);
            for slot in 1..=kept::SLOTS {
                let key = RecordKey::Counts { partition, slot }.encode();
                batch.delete(key, Expect::Any);
            }
            table.commit_unconditional(batch).await?;
        }
        Ok(())
    }
}

/// Moves a record, as it is, under the quarantine prefix: first the copy,
/// then the original (only if unchanged), so that a repair cut short loses
/// nothing and can be run again.
async fn set_aside(backend: &dyn Backend, key: &[u8], sealed: &[u8]) -> Result<(), Error> {
    let (shard, aside) = quarantine(key);
    let mut batch = Batch::new(shard);
    batch.put(aside, sealed.to_vec(), Expect::Any);
    backend.commit(batch).await?;
    delete_if_unchanged(backend, key, sealed).await
}

/// Deletes `key` if it still holds `sealed`. A damaged key may be of no
/// shard, or of a shard its own bytes no longer name: each shard it may be
/// in is tried until it is gone.
async fn delete_if_unchanged(
    backend: &dyn Backend,
    key: &[u8],
    sealed: &[u8],
) -> Result<(), Error> {
    let shards = match RecordKey::parse(key) {
        Some(record) => vec![record.shard().encode()],
        None => probable_shards(key),
    };
    for shard in &shards {
        if backend.get(shard, key).await?.as_deref() != Some(sealed) {
            continue;
        }
        let mut batch = Batch::new(shard.clone());
        batch.delete(key.to_vec(), Expect::Value(sealed.to_vec()));
        match backend.commit(batch).await {
            Ok(()) | Err(crate::backend::BackendError::Conflict) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

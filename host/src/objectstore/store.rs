//! Stores: named groups of partitions with a default TTL and a quota.

use std::sync::Arc;

use crate::backend::{Batch, Expect};
use crate::encryption::Tag;

use super::application::Application;
use super::index::{self, Scope};
use super::keys::{PartitionId, Prefix, RecordKey};
use super::partition::Partition;
use super::record::{PartitionRecord, StoreRecord};
use super::sealed::Commit;
use super::types::{DEFAULT_STORE, Footprint, Page, StoreQuota, Ttl};
use super::write;
use super::{Error, MAX_CONFLICT_RETRIES};

/// A store of one application.
#[derive(Clone)]
pub struct Store {
    pub(super) app: Application,
    pub(super) tag: Tag,
    name: Arc<str>,
    default_ttl: Ttl,
    quota: StoreQuota,
}

impl Store {
    pub(super) fn new(app: Application, tag: Tag, record: StoreRecord) -> Self {
        Self {
            app,
            tag,
            name: record.name.into(),
            default_ttl: record.default_ttl,
            quota: record.quota,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The TTL of keys that neither they nor their partition give one, as
    /// this host last read it (a write reads it again once this host's copy
    /// is a second old).
    pub fn default_ttl(&self) -> Ttl {
        self.app
            .state
            .latest_store(self.tag)
            .map_or(self.default_ttl, |r| r.default_ttl)
    }

    /// The store's own limits, as this host last read them.
    pub fn quota(&self) -> StoreQuota {
        self.app
            .state
            .latest_store(self.tag)
            .map_or(self.quota, |r| r.quota)
    }

    /// Checks that the store still exists, reading its settings again if
    /// this host's copy is older than `SETTINGS_CACHE_MS` (one second): what
    /// bounds how long a store deleted or reconfigured through another host
    /// goes on being written here as it was. The default store always
    /// exists: it is made again.
    pub(super) async fn refresh(&self) -> Result<(), Error> {
        let app = &self.app.state;
        let now = self.app.inner.now_ms();
        let exists = match app.fresh_store(self.tag, now) {
            Some(record) => record.is_some(),
            None => {
                let key = RecordKey::Store {
                    app: app.tag,
                    store: self.tag,
                };
                let record = self.app.table().get::<StoreRecord>(&key).await?;
                let record = record.map(|opened| opened.record);
                let exists = record.is_some();
                app.cache_store(self.tag, record, now);
                exists
            }
        };
        if exists {
            Ok(())
        } else if &*self.name == DEFAULT_STORE {
            self.app.default_store().await.map(drop)
        } else {
            Err(Error::StoreNotFound)
        }
    }

    /// How much the store holds.
    pub fn footprint(&self) -> Footprint {
        self.app.state.usage.footprint(self.tag)
    }

    fn partition_id(&self, partition: Tag) -> PartitionId {
        PartitionId {
            app: self.app.state.tag,
            store: self.tag,
            partition,
        }
    }

    /// Opens the partition called `name` (it exists once it holds a key or a
    /// TTL setting).
    pub async fn partition(&self, name: &str) -> Result<Partition, Error> {
        self.app.inner.check_name(name, "partition name")?;
        let app = &self.app.state;
        let id = self.partition_id(app.sealer.tag(b"partition", &self.tag, name.as_bytes()));
        let partition = Partition::new(self.clone(), name.into(), id, None);
        let ttl = partition.refresh().await?.and_then(|r| r.ttl);
        Ok(Partition::new(self.clone(), name.into(), id, ttl))
    }

    /// One page of the names of this store's partitions, in byte order
    /// (through the index of partition names, see `index::names`).
    pub async fn list_partitions(
        &self,
        cursor: Option<&str>,
        page_size: u32,
    ) -> Result<Page<String>, Error> {
        self.app.admit(self.tag).await?;
        let table = self.app.table();
        let app = &self.app.state;
        let scope = Scope::Partitions {
            app: app.tag,
            store: self.tag,
        };
        let locks = &self.app.inner.index_locks;
        index::page_of_names(
            table,
            locks,
            &app.sealer,
            scope,
            cursor,
            page_size,
            |name| async move {
                let id =
                    self.partition_id(app.sealer.tag(b"partition", &self.tag, name.as_bytes()));
                let record = table
                    .get::<PartitionRecord>(&RecordKey::Partition(id))
                    .await?;
                Ok(record.map(|r| r.record.name))
            },
        )
        .await
    }

    /// Deletes the partition `name` with all its keys and settings; returns
    /// how many live keys it held.
    pub async fn delete_partition(&self, name: &str) -> Result<u64, Error> {
        let partition = self.partition(name).await?;
        self.app.admit(self.tag).await?;
        let table = self.app.table();
        let removed = write::delete_entries(
            table,
            &self.app.inner.index_locks,
            &self.app.state,
            self.app.inner.now_ms(),
            partition.id().entries(),
            &write::While::Always,
        )
        .await?;
        index::delete_pages(table, Prefix::PartitionIndex(partition.id())).await?;
        // The record goes with its name in the index of the store's
        // partition names, in one batch; a record that does not open goes
        // too (its name is the one asked for).
        let record = RecordKey::Partition(partition.id());
        let shard = record.shard().encode();
        let scope = Scope::Partitions {
            app: self.app.state.tag,
            store: self.tag,
        };
        let mut deleted = false;
        for _ in 0..MAX_CONFLICT_RETRIES {
            let Some(sealed) = table.backend().get(&shard, &record.encode()).await? else {
                deleted = true;
                break;
            };
            let mut batch = Batch::new(shard.clone());
            batch.delete(record.encode(), Expect::Value(sealed));
            let names = [(name, false)];
            let locks = &self.app.inner.index_locks;
            if index::commit_named(table, locks, scope, &names, batch).await? == Commit::Done {
                deleted = true;
                break;
            }
        }
        if !deleted {
            return Err(Error::Contended("the partition is"));
        }
        let now = self.app.inner.now_ms();
        self.app
            .state
            .cache_partition(self.tag, partition.id().partition, None, now);
        Ok(removed)
    }
}

//! Applications: each has its own data keys, stores and usage, and sees no
//! other application's data.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::backend::{Batch, Expect};
use crate::encryption::{Sealer, TAG_LEN, Tag, random_array};

use super::keys::{Prefix, RecordKey, Shard};
use super::record::{AppRecord, PartitionRecord, StoreRecord};
use super::sealed::SealedTable;
use super::store::Store;
use super::types::{DEFAULT_STORE, Footprint, Page, StoreQuota, Ttl};
use super::usage::AppUsage;
use super::{Error, Inner, paging, write};

/// How long a host trusts what it cached of a store's or a partition's
/// settings (that it exists, its TTL, its quota), in milliseconds of the
/// object store's clock. A change made through one host (creating,
/// configuring or deleting a store or partition, a partition TTL) is seen by
/// every host within this bound: a write reads the settings again once its
/// host's copy is older.
pub(super) const SETTINGS_CACHE_MS: u64 = 1000;

/// A record as this host last read (or wrote) it; `None`: absent then.
struct Cached<R> {
    record: Option<R>,
    read_at_ms: u64,
}

impl<R: Clone> Cached<R> {
    /// The record, if read within [`SETTINGS_CACHE_MS`] before `now`. A
    /// clock that stepped back makes every copy stale.
    fn fresh(&self, now: u64) -> Option<Option<R>> {
        now.checked_sub(self.read_at_ms)
            .is_some_and(|age| age < SETTINGS_CACHE_MS)
            .then(|| self.record.clone())
    }
}

/// One application's keys and what this host caches of it.
pub(super) struct AppState {
    pub name: String,
    pub tag: Tag,
    /// Seals the application's records and makes its tags.
    pub sealer: Sealer,
    /// Store settings by store tag, as last read or written here.
    stores: Mutex<HashMap<Tag, Cached<StoreRecord>>>,
    /// Partition settings by (store, partition) tag, as last read or
    /// written here.
    partitions: Mutex<HashMap<(Tag, Tag), Cached<PartitionRecord>>>,
    pub usage: AppUsage,
}

impl AppState {
    /// The tag of the store called `name`.
    pub fn store_tag(&self, name: &str) -> Tag {
        self.sealer.tag(b"store", b"", name.as_bytes())
    }

    /// The store's settings if this host read them within the bound
    /// (`Some(None)`: it was absent).
    pub fn fresh_store(&self, store: Tag, now: u64) -> Option<Option<StoreRecord>> {
        let stores = self.stores.lock().expect("stores lock");
        stores.get(&store).and_then(|c| c.fresh(now))
    }

    /// The store's settings as this host last saw them, however long ago.
    pub fn latest_store(&self, store: Tag) -> Option<StoreRecord> {
        let stores = self.stores.lock().expect("stores lock");
        stores.get(&store).and_then(|c| c.record.clone())
    }

    pub fn cache_store(&self, store: Tag, record: Option<StoreRecord>, now: u64) {
        self.stores.lock().expect("stores lock").insert(
            store,
            Cached {
                record,
                read_at_ms: now,
            },
        );
    }

    /// The partition's settings if this host read them within the bound
    /// (`Some(None)`: it was absent).
    pub fn fresh_partition(
        &self,
        store: Tag,
        partition: Tag,
        now: u64,
    ) -> Option<Option<PartitionRecord>> {
        let partitions = self.partitions.lock().expect("partitions lock");
        partitions
            .get(&(store, partition))
            .and_then(|c| c.fresh(now))
    }

    /// The TTL setting of a partition as this host last saw it (`Some(None)`:
    /// the store's), if it saw the partition's record.
    pub fn cached_ttl(&self, store: Tag, partition: Tag) -> Option<Option<Ttl>> {
        self.partitions
            .lock()
            .expect("partitions lock")
            .get(&(store, partition))
            .and_then(|c| c.record.as_ref())
            .map(|r| r.ttl)
    }

    pub fn cache_partition(
        &self,
        store: Tag,
        partition: Tag,
        record: Option<PartitionRecord>,
        now: u64,
    ) {
        self.partitions.lock().expect("partitions lock").insert(
            (store, partition),
            Cached {
                record,
                read_at_ms: now,
            },
        );
    }

    /// Forgets the settings of a store's partitions (after deleting it).
    fn forget_partitions_of(&self, store: Tag) {
        self.partitions
            .lock()
            .expect("partitions lock")
            .retain(|(s, _), _| *s != store);
    }
}

impl Inner {
    /// The backend seen through an application's keys.
    pub(super) fn table<'a>(&'a self, app: &'a AppState) -> SealedTable<'a> {
        SealedTable::new(&*self.backend, &app.sealer)
    }

    /// Loads (or, given its name, creates) an application's keys, and reads
    /// (or, if no host has made them yet, makes) its usage counters.
    pub(super) async fn app_state(
        &self,
        tag: Tag,
        create_as: Option<&str>,
    ) -> Result<Arc<AppState>, Error> {
        if let Some(state) = self.apps.lock().expect("apps lock").get(&tag) {
            return Ok(state.clone());
        }
        let new_app = || {
            create_as.map(|name| AppRecord {
                name: name.to_string(),
                seal_key: random_array(),
                tag_key: random_array(),
            })
        };
        let record = self
            .master_table()
            .read_or_create(&RecordKey::App(tag), new_app)
            .await?
            .ok_or(Error::UnknownApplication)?;
        let state = Arc::new(AppState {
            sealer: Sealer::new(&record.seal_key, &record.tag_key),
            name: record.name,
            tag,
            stores: Mutex::new(HashMap::new()),
            partitions: Mutex::new(HashMap::new()),
            usage: AppUsage::default(),
        });
        self.start_usage(&state).await?;
        Ok(self
            .apps
            .lock()
            .expect("apps lock")
            .entry(tag)
            .or_insert(state)
            .clone())
    }

    /// Counts the keys and bytes of every store of an application.
    pub(super) async fn measure(&self, app: &AppState) -> Result<HashMap<Tag, Footprint>, Error> {
        let mut footprints: HashMap<Tag, Footprint> = HashMap::new();
        let mut scan = self.table(app).scan(Prefix::AppEntries(app.tag));
        loop {
            let chunk = scan.next_chunk_of(1024).await?;
            if chunk.is_empty() {
                return Ok(footprints);
            }
            for (key, sealed) in &chunk {
                // A count that leaves records out would look whole: a
                // malformed key is reported instead (`ostore check` finds
                // it, `ostore repair` sets it aside).
                let Some(store) = write::store_of(key) else {
                    tracing::warn!("cannot count a malformed entry key");
                    return Err(Error::Integrity);
                };
                let f = footprints.entry(store).or_default();
                f.keys += 1;
                f.bytes += (key.len() + sealed.len()) as u64;
            }
        }
    }
}

/// One application's view of the object store. Cheap to clone.
#[derive(Clone)]
pub struct Application {
    pub(super) inner: Arc<Inner>,
    pub(super) state: Arc<AppState>,
}

impl Application {
    pub(super) fn new(inner: Arc<Inner>, state: Arc<AppState>) -> Self {
        Self { inner, state }
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    pub(super) fn table(&self) -> SealedTable<'_> {
        self.inner.table(&self.state)
    }

    /// Opens the store called `name`, creating it with the configured
    /// default TTL on first use.
    pub async fn store(&self, name: &str) -> Result<Store, Error> {
        let created = StoreRecord {
            name: name.to_string(),
            default_ttl: self.inner.config.default_ttl,
            quota: StoreQuota::default(),
        };
        Ok(self
            .load_store(name, Some(created))
            .await?
            .expect("created if absent"))
    }

    /// The store called `name` if it exists; never creates it.
    pub async fn find_store(&self, name: &str) -> Result<Option<Store>, Error> {
        self.load_store(name, None).await
    }

    /// Opens `_defaultUserObjectStore`.
    pub async fn default_store(&self) -> Result<Store, Error> {
        self.store(DEFAULT_STORE).await
    }

    /// Creates the store `name`, or changes its default TTL and quota. Keys
    /// already stored keep their expiry; later writes get the new TTL, and
    /// the quota applies to later writes.
    pub async fn configure_store(
        &self,
        name: &str,
        default_ttl: Ttl,
        quota: StoreQuota,
    ) -> Result<Store, Error> {
        self.inner.check_name(name, "store name")?;
        let default_ttl = default_ttl.check()?;
        let app = &self.state;
        let tag = app.store_tag(name);
        self.admit(tag).await?;
        let record = StoreRecord {
            name: name.to_string(),
            default_ttl,
            quota,
        };
        let key = RecordKey::Store {
            app: app.tag,
            store: tag,
        };
        self.table().put(&key, &record).await?;
        app.cache_store(tag, Some(record.clone()), self.inner.now_ms());
        Ok(Store::new(self.clone(), tag, record))
    }

    /// One page of the application's stores.
    pub async fn list_stores(
        &self,
        cursor: Option<&str>,
        page_size: u32,
    ) -> Result<Page<Store>, Error> {
        // Listing stores concerns no one store: it counts against the
        // application only.
        self.admit([0; TAG_LEN]).await?;
        let table = self.table();
        let scan = table.scan(Prefix::Stores(self.state.tag));
        paging::page(
            &self.state.sealer,
            scan,
            cursor,
            page_size,
            |key, sealed| {
                let record: StoreRecord = table.open(key, sealed)?;
                let Some(RecordKey::Store { store, .. }) = RecordKey::parse(key) else {
                    return Err(Error::Integrity);
                };
                Ok(Some(Store::new(self.clone(), store, record)))
            },
        )
        .await
    }

    /// Deletes the store `name` with all its partitions and keys. Returns
    /// whether it existed. Other hosts refuse writes through their handles
    /// of the store within `SETTINGS_CACHE_MS` (one second) of its return; a write
    /// racing the deletion may survive it.
    pub async fn delete_store(&self, name: &str) -> Result<bool, Error> {
        let Some(store) = self.find_store(name).await? else {
            return Ok(false);
        };
        self.admit(store.tag).await?;
        let app = &self.state;
        let table = self.table();
        write::delete_entries(
            table,
            app,
            self.inner.now_ms(),
            Prefix::StoreEntries {
                app: app.tag,
                store: store.tag,
            },
        )
        .await?;
        let mut partitions = table.scan(Prefix::Partitions {
            app: app.tag,
            store: store.tag,
        });
        loop {
            let chunk = partitions.next_chunk().await?;
            if chunk.is_empty() {
                break;
            }
            let mut batch = Batch::new(Shard::App(app.tag).encode());
            for (key, _) in chunk {
                batch.delete(key, Expect::Any);
            }
            table.commit_unconditional(batch).await?;
        }
        let mut batch = Batch::new(Shard::App(app.tag).encode());
        batch.delete(
            RecordKey::Store {
                app: app.tag,
                store: store.tag,
            }
            .encode(),
            Expect::Any,
        );
        table.commit_unconditional(batch).await?;
        // The usage counters stay: the deletions above are counted as
        // changes like any other, so the other hosts' changes not added yet
        // still add up to what is left.
        app.cache_store(store.tag, None, self.inner.now_ms());
        app.forget_partitions_of(store.tag);
        Ok(true)
    }

    /// Loads the store record of `name`, creating it as `create` if absent.
    async fn load_store(
        &self,
        name: &str,
        create: Option<StoreRecord>,
    ) -> Result<Option<Store>, Error> {
        self.inner.check_name(name, "store name")?;
        let app = &self.state;
        let tag = app.store_tag(name);
        match app.fresh_store(tag, self.inner.now_ms()) {
            Some(Some(record)) => return Ok(Some(Store::new(self.clone(), tag, record))),
            Some(None) if create.is_none() => return Ok(None),
            _ => {}
        }
        let key = RecordKey::Store {
            app: app.tag,
            store: tag,
        };
        let table = self.table();
        let now = self.inner.now_ms();
        let record = match table.read_or_create(&key, || None).await? {
            Some(record) => record,
            None => {
                let Some(record) = create else {
                    app.cache_store(tag, None, now);
                    return Ok(None);
                };
                let max = self.inner.config.limits.max_stores;
                if self.store_count().await? >= max {
                    return Err(Error::QuotaExceeded(format!(
                        "the application may have {max} stores"
                    )));
                }
                table
                    .read_or_create(&key, || Some(record.clone()))
                    .await?
                    .expect("created if absent")
            }
        };
        app.cache_store(tag, Some(record.clone()), now);
        Ok(Some(Store::new(self.clone(), tag, record)))
    }

    /// How many stores the application has, counting at most one past its
    /// limit.
    pub async fn store_count(&self) -> Result<usize, Error> {
        let limit = self.inner.config.limits.max_stores.saturating_add(1);
        let mut scan = self.table().scan(Prefix::Stores(self.state.tag));
        Ok(scan.next_chunk_of(limit).await?.len())
    }

    /// How much the application holds, in all its stores.
    pub fn footprint(&self) -> Footprint {
        self.state.usage.total()
    }
}

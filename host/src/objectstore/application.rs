//! Applications: each has its own data keys, stores and usage, and sees no
//! other application's data.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::backend::{Batch, Expect};
use crate::encryption::{Sealer, TAG_LEN, Tag, random_array};

use super::index::{self, Scope};
use super::keys::{Prefix, RecordKey, Shard};
use super::record::{AppRecord, PartitionRecord, StoreRecord, StoreTombstone};
use super::sealed::{Commit, SealedTable};
use super::store::Store;
use super::types::{DEFAULT_STORE, Footprint, Page, StoreQuota, Ttl};
use super::usage::{AppUsage, kept};
use super::{Error, Inner, MAX_CONFLICT_RETRIES, write};

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
    /// its kept counts of keys and bytes (counting data from before they
    /// were kept).
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

    /// Finishes the deletion of a store whose record a tombstone replaced:
    /// deletes its keys, partition by partition, then its partitions'
    /// settings, then the tombstone. Each step may be cut off and done again,
    /// by this host or another; a step that finds the tombstone gone (a host
    /// finished the job, and a new store of the name may be in use) stops
    /// without touching anything more.
    pub(super) async fn finish_store_deletion(
        &self,
        app: &AppState,
        store: Tag,
    ) -> Result<(), Error> {
        let table = self.table(app);
        let key = RecordKey::StoreTombstone {
            app: app.tag,
            store,
        };
        let Some(tombstone) = table.get::<StoreTombstone>(&key).await? else {
            return Ok(());
        };
        let entries = Prefix::StoreEntries {
            app: app.tag,
            store,
        };
        let standing = write::While::Present(key);
        write::delete_entries(
            table,
            &self.index_locks,
            app,
            self.now_ms(),
            entries,
            &standing,
        )
        .await?;
        if standing.holds(table).await? {
            let pages = Prefix::StoreIndex {
                app: app.tag,
                store,
            };
            index::delete_pages(table, pages).await?;
            let counts = Prefix::StoreCounts {
                app: app.tag,
                store,
            };
            // A read running now may have noted this host's changes to
            // these partitions and find their slots gone: it would keep
            // them (see `usage::counts`), so the next flush reads again.
            let _unfollowed = kept::Unfollowed(&app.usage);
            kept::delete_empty(table, counts).await?;
        }
        // Each round reads the first partitions left, so a batch that meets
        // a partition set anew through a handle of the old store (a
        // conflict) is done again from what is there now.
        let partitions = Prefix::Partitions {
            app: app.tag,
            store,
        };
        let mut conflicts = 0;
        loop {
            let chunk = table.scan(partitions).next_chunk().await?;
            if chunk.is_empty() || !standing.holds(table).await? {
                break;
            }
            // Their names leave the index of the store's partition names in
            // the same batch (a record that does not open leaves its name
            // behind: the index goes with the store below).
            let mut batch = Batch::new(Shard::App(app.tag).encode());
            let mut names = Vec::new();
            for (key, sealed) in chunk {
                if let Ok(record) = table.open::<PartitionRecord>(&key, &sealed) {
                    names.push(record.name);
                }
                batch.delete(key, Expect::Value(sealed));
            }
            let names: Vec<(&str, bool)> = names.iter().map(|n| (n.as_str(), false)).collect();
            let scope = Scope::Partitions {
                app: app.tag,
                store,
            };
            if index::commit_named(table, &self.index_locks, scope, &names, batch).await?
                == Commit::Conflict
            {
                conflicts += 1;
                if conflicts == MAX_CONFLICT_RETRIES {
                    return Err(Error::Contended("the store's partitions are"));
                }
            }
        }
        if standing.holds(table).await? {
            let scope = Scope::Partitions {
                app: app.tag,
                store,
            };
            index::delete_names(table, scope).await?;
        }
        let mut batch = Batch::new(Shard::App(app.tag).encode());
        batch.delete(key.encode(), Expect::Value(tombstone.sealed));
        if table.commit(batch).await? == Commit::Done {
            tracing::debug!(store = %tombstone.record.name, "store deleted");
        }
        Ok(())
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
        let table = self.table();
        let mut written = false;
        for _ in 0..MAX_CONFLICT_RETRIES {
            // A new store's name goes into the index with its record; a
            // store that exists keeps its name and gets the new settings,
            // unless it was deleted or configured meanwhile (read again).
            written = match table.get::<StoreRecord>(&key).await? {
                None => self.try_create_store(tag, &record).await?,
                Some(old) => {
                    let bytes = key.encode();
                    let mut batch = Batch::new(Shard::App(app.tag).encode());
                    let sealed = table.seal(&bytes, &record);
                    batch.put(bytes, sealed, Expect::Value(old.sealed));
                    table.commit(batch).await? == Commit::Done
                }
            };
            if written {
                break;
            }
        }
        if !written {
            return Err(Error::Contended("the store is"));
        }
        app.cache_store(tag, Some(record.clone()), self.inner.now_ms());
        Ok(Store::new(self.clone(), tag, record))
    }

    /// One page of the application's stores, in byte order of their names
    /// (through the index of store names, see `index::names`).
    pub async fn list_stores(
        &self,
        cursor: Option<&str>,
        page_size: u32,
    ) -> Result<Page<Store>, Error> {
        // Listing stores concerns no one store: it counts against the
        // application only.
        self.admit([0; TAG_LEN]).await?;
        let table = self.table();
        let app = &self.state;
        let scope = Scope::Stores(app.tag);
        let locks = &self.inner.index_locks;
        index::page_of_names(
            table,
            locks,
            &app.sealer,
            scope,
            cursor,
            page_size,
            |name| async move {
                let store = app.store_tag(&name);
                let key = RecordKey::Store {
                    app: app.tag,
                    store,
                };
                let record = table.get::<StoreRecord>(&key).await?;
                Ok(record.map(|r| Store::new(self.clone(), store, r.record)))
            },
        )
        .await
    }

    /// Deletes the store `name` with all its partitions and keys. Returns
    /// whether it existed.
    ///
    /// The store's records live in many shards (its partitions'), so no one
    /// batch can delete them all. The first batch swaps the store's record
    /// for a tombstone: from then on the store is absent on every host (other
    /// hosts refuse writes through their handles of it within
    /// `SETTINGS_CACHE_MS`, one second). The partitions' keys and settings
    /// are then deleted shard by shard, and the tombstone last. If this host
    /// stops half-way, the next host that creates a store of that name, or
    /// any host's sweep, finishes the job; nothing of the old store is seen
    /// again. (A write racing the deletion, through a handle opened less
    /// than a second before it, may survive it.)
    pub async fn delete_store(&self, name: &str) -> Result<bool, Error> {
        self.inner.check_name(name, "store name")?;
        let app = &self.state;
        let tag = app.store_tag(name);
        let key = RecordKey::Store {
            app: app.tag,
            store: tag,
        };
        let table = self.table();
        let tombstone_key = RecordKey::StoreTombstone {
            app: app.tag,
            store: tag,
        }
        .encode();
        let mut admitted = false;
        for _ in 0..MAX_CONFLICT_RETRIES {
            let Some(store) = table.get::<StoreRecord>(&key).await? else {
                app.cache_store(tag, None, self.inner.now_ms());
                return Ok(false);
            };
            if !admitted {
                self.admit(tag).await?;
                admitted = true;
            }
            let tombstone = StoreTombstone {
                name: name.to_string(),
                since_ms: self.inner.now_ms(),
            };
            let mut batch = Batch::new(Shard::App(app.tag).encode());
            batch.delete(key.encode(), Expect::Value(store.sealed));
            let sealed = table.seal(&tombstone_key, &tombstone);
            batch.put(tombstone_key.clone(), sealed, Expect::Any);
            // A conflict: deleted, or configured anew, through another host
            // meanwhile (or its name's leaf changed); decide again on what
            // is there now.
            let scope = Scope::Stores(app.tag);
            let names = [(name, false)];
            let locks = &self.inner.index_locks;
            if index::commit_named(table, locks, scope, &names, batch).await? == Commit::Done {
                app.cache_store(tag, None, self.inner.now_ms());
                app.forget_partitions_of(tag);
                self.inner.finish_store_deletion(app, tag).await?;
                return Ok(true);
            }
        }
        Err(Error::Contended("the store is"))
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
                self.create_store(tag, record).await?
            }
        };
        app.cache_store(tag, Some(record.clone()), now);
        Ok(Some(Store::new(self.clone(), tag, record)))
    }

    /// Writes the record of a new store, once no deletion of a store of that
    /// name is under way (finishing such a deletion first, so that none of
    /// the old store's keys shows in the new one); of concurrent creators
    /// one wins and the others read its record.
    async fn create_store(&self, tag: Tag, record: StoreRecord) -> Result<StoreRecord, Error> {
        let key = RecordKey::Store {
            app: self.state.tag,
            store: tag,
        };
        for _ in 0..MAX_CONFLICT_RETRIES {
            if self.try_create_store(tag, &record).await? {
                return Ok(record);
            }
            if let Some(theirs) = self.table().get::<StoreRecord>(&key).await? {
                return Ok(theirs.record);
            }
        }
        Err(Error::Contended("the store is"))
    }

    /// One attempt of [`create_store`](Self::create_store): writes the
    /// record, and its name in the index of store names, if the store is
    /// absent and no deletion of it is under way. `false`: a store of the
    /// name exists, or something changed meanwhile; read again.
    async fn try_create_store(&self, tag: Tag, record: &StoreRecord) -> Result<bool, Error> {
        let app = &self.state;
        let table = self.table();
        let key = RecordKey::Store {
            app: app.tag,
            store: tag,
        };
        let tombstone = RecordKey::StoreTombstone {
            app: app.tag,
            store: tag,
        };
        self.inner.finish_store_deletion(app, tag).await?;
        let bytes = key.encode();
        let mut batch = Batch::new(Shard::App(app.tag).encode());
        batch.put(bytes.clone(), table.seal(&bytes, record), Expect::Absent);
        // Deleting an absent key changes nothing: this only checks that
        // no deletion began since the one finished above.
        batch.delete(tombstone.encode(), Expect::Absent);
        let scope = Scope::Stores(app.tag);
        let names = [(record.name.as_str(), true)];
        let locks = &self.inner.index_locks;
        Ok(index::commit_named(table, locks, scope, &names, batch).await? == Commit::Done)
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

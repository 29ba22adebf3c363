//! Partitions and their keys: store, retrieve, increment, compare-and-swap,
//! TTL, listing and clearing. How one write is carried out (locks,
//! conditional commits, the expiry index, usage) is in `write`.

use std::sync::Arc;

use super::application::AppState;
use super::index::{Listed, NameWalk, Need, Scope};
use super::keys::{EntryId, PartitionId, RecordKey, Shard};
use super::record::{EntryRecord, PartitionRecord};
use super::sealed::{Commit, SealedTable};
use super::store::Store;
use super::types::{Entry, Metadata, Page, StoreOptions, Ttl, ValueKind};
use super::write::{Damaged, Stored, While, delete_entries};
use super::{Error, Inner, MAX_CONFLICT_RETRIES, index, paging};
use crate::backend::{Batch, Expect};

/// A partition of a store: the unit most operations work on.
#[derive(Clone)]
pub struct Partition {
    pub(super) store: Store,
    name: Arc<str>,
    pub(super) id: PartitionId,
    ttl: Option<Ttl>,
}

impl Partition {
    pub(super) fn new(store: Store, name: Arc<str>, id: PartitionId, ttl: Option<Ttl>) -> Self {
        Self {
            store,
            name,
            id,
            ttl,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The store this partition belongs to.
    pub fn parent(&self) -> &Store {
        &self.store
    }

    pub(super) fn id(&self) -> PartitionId {
        self.id
    }

    pub(super) fn inner(&self) -> &Inner {
        &self.store.app.inner
    }

    pub(super) fn app(&self) -> &AppState {
        &self.store.app.state
    }

    pub(super) fn table(&self) -> SealedTable<'_> {
        self.store.app.table()
    }

    pub(super) async fn admit(&self) -> Result<(), Error> {
        self.store.app.admit(self.store.tag).await
    }

    /// The partition's settings (`None`: it has no record), read again if
    /// this host's copy is older than `SETTINGS_CACHE_MS` (one second), so
    /// that a TTL set or a partition deleted through another host applies
    /// here within that bound.
    pub(super) async fn refresh(&self) -> Result<Option<PartitionRecord>, Error> {
        let app = self.app();
        let now = self.inner().now_ms();
        if let Some(record) = app.fresh_partition(self.store.tag, self.id.partition, now) {
            return Ok(record);
        }
        let stored = self
            .table()
            .get::<PartitionRecord>(&RecordKey::Partition(self.id))
            .await?;
        let record = stored.map(|opened| opened.record);
        app.cache_partition(self.store.tag, self.id.partition, record.clone(), now);
        Ok(record)
    }

    /// The TTL for keys without their own: the partition's or the store's.
    /// The application's view of the partition (as this host last read it,
    /// which every write does once its copy is a second old) wins over this
    /// handle's, so that a TTL set through another handle or host applies.
    pub fn effective_ttl(&self) -> Ttl {
        self.app()
            .cached_ttl(self.store.tag, self.id.partition)
            .unwrap_or(self.ttl)
            .unwrap_or(self.store.default_ttl())
    }

    /// Sets the TTL for keys stored here without their own (`None`: the
    /// store's). Applies to later writes.
    pub async fn set_ttl(&mut self, ttl: Option<Ttl>) -> Result<(), Error> {
        self.admit().await?;
        let ttl = ttl.map(Ttl::check).transpose()?;
        let record = PartitionRecord {
            name: self.name.to_string(),
            ttl,
        };
        // A partition that gets its record here gets its name indexed too.
        let key = RecordKey::Partition(self.id);
        let bytes = key.encode();
        let table = self.table();
        let mut written = false;
        for _ in 0..MAX_CONFLICT_RETRIES {
            let mut batch = Batch::new(key.shard().encode());
            let sealed = table.seal(&bytes, &record);
            written = match table.backend().get(&batch.shard, &bytes).await? {
                Some(old) => {
                    batch.put(bytes.clone(), sealed, Expect::Value(old));
                    table.commit(batch).await? == Commit::Done
                }
                None => {
                    batch.put(bytes.clone(), sealed, Expect::Absent);
                    self.commit_named(batch).await? == Commit::Done
                }
            };
            if written {
                break;
            }
        }
        if !written {
            return Err(Error::Contended("the partition is"));
        }
        let now = self.inner().now_ms();
        self.app()
            .cache_partition(self.store.tag, self.id.partition, Some(record), now);
        self.ttl = ttl;
        Ok(())
    }

    /// Makes the partition record unless this host saw it within
    /// `SETTINGS_CACHE_MS` (one second): on its first write, and again after
    /// the partition was deleted (through any host). Never overwrites a
    /// record (and so its TTL).
    pub(super) async fn ensure_record(&self) -> Result<(), Error> {
        let app = self.app();
        let now = self.inner().now_ms();
        if let Some(Some(_)) = app.fresh_partition(self.store.tag, self.id.partition, now) {
            return Ok(());
        }
        let mine = PartitionRecord {
            name: self.name.to_string(),
            ttl: self.ttl,
        };
        // If someone made it first, theirs holds the settings. A record
        // made here gets its name indexed in the same batch.
        let key = RecordKey::Partition(self.id);
        let table = self.table();
        let mut record = None;
        for _ in 0..MAX_CONFLICT_RETRIES {
            if let Some(theirs) = table.get::<PartitionRecord>(&key).await? {
                record = Some(theirs.record);
                break;
            }
            let bytes = key.encode();
            let mut batch = Batch::new(key.shard().encode());
            batch.put(bytes.clone(), table.seal(&bytes, &mine), Expect::Absent);
            if self.commit_named(batch).await? == Commit::Done {
                record = Some(mine);
                break;
            }
        }
        let record = record.ok_or(Error::Contended("the partition is"))?;
        app.cache_partition(self.store.tag, self.id.partition, Some(record), now);
        Ok(())
    }

    /// Commits `batch` (which creates the partition's record) with the
    /// partition's name inserted into its store's index of partition names.
    async fn commit_named(&self, batch: Batch) -> Result<Commit, Error> {
        let scope = Scope::Partitions {
            app: self.id.app,
            store: self.id.store,
        };
        let locks = &self.inner().index_locks;
        let names = [(&*self.name, true)];
        index::commit_named(self.table(), locks, scope, &names, batch).await
    }

    /// The entry of `key`, after checking the name.
    pub(super) fn entry_id(&self, key: &str) -> Result<EntryId, Error> {
        self.inner().check_name(key, "key")?;
        Ok(self.id.entry(&self.app().sealer, key))
    }

    fn check_value(&self, value: &[u8]) -> Result<(), Error> {
        let limit = self.inner().config.limits.max_value_bytes;
        if value.len() > limit {
            return Err(Error::ValueTooLarge {
                limit: limit as u64,
            });
        }
        Ok(())
    }

    /// A new record for `key` holding `value`, succeeding `previous`.
    pub(super) fn next_record(
        &self,
        key: &str,
        previous: Option<&EntryRecord>,
        value: Vec<u8>,
        kind: ValueKind,
        ttl: Option<Ttl>,
        now: u64,
    ) -> EntryRecord {
        let ttl = ttl.unwrap_or_else(|| self.effective_ttl());
        EntryRecord {
            key: key.to_string(),
            created: previous.map_or(now, |p| p.created),
            updated: now,
            expires: ttl.expiry_from(now),
            version: previous.map_or(1, |p| p.version + 1),
            ttl,
            kind,
            value,
        }
    }

    /// Checks a value and its options before a write: the size, the TTL,
    /// and what kind of value it is.
    pub(super) fn checked_write(
        &self,
        value: &[u8],
        options: StoreOptions,
    ) -> Result<(Option<Ttl>, ValueKind), Error> {
        self.check_value(value)?;
        let ttl = options.ttl.map(Ttl::check).transpose()?;
        Ok((ttl, options.kind.unwrap_or_else(|| ValueKind::of(value))))
    }

    /// Stores `value` under `key`; returns its metadata once durable.
    pub async fn store(
        &self,
        key: &str,
        value: Vec<u8>,
        options: StoreOptions,
    ) -> Result<Metadata, Error> {
        let (ttl, kind) = self.checked_write(&value, options)?;
        let change = |previous: Option<&EntryRecord>, now| {
            if options.fail_if_present && previous.is_some() {
                return Err(Error::KeyAlreadyExists);
            }
            let record = self.next_record(key, previous, value.clone(), kind, ttl, now);
            let meta = record.metadata();
            Ok((Some(record), meta))
        };
        Ok(self.modify(key, Damaged::Replace, change).await?.0)
    }

    /// Writes `value` only if the key's version is `expected` (`None`: only
    /// if the key is absent).
    pub async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<u64>,
        value: Vec<u8>,
        options: StoreOptions,
    ) -> Result<Metadata, Error> {
        let (ttl, kind) = self.checked_write(&value, options)?;
        let change = |previous: Option<&EntryRecord>, now| {
            let current = previous.map(|p| p.version);
            if current != expected {
                return Err(Error::VersionMismatch { current });
            }
            let record = self.next_record(key, previous, value.clone(), kind, ttl, now);
            let meta = record.metadata();
            Ok((Some(record), meta))
        };
        Ok(self.modify(key, Damaged::Refuse, change).await?.0)
    }

    /// Adds `delta` to the decimal counter under `key` (absent counts as 0)
    /// and returns the new value.
    pub async fn increment(&self, key: &str, delta: i64) -> Result<i64, Error> {
        let change = |previous: Option<&EntryRecord>, now| {
            let current = match previous {
                None => 0,
                Some(p) => std::str::from_utf8(&p.value)
                    .ok()
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "the value of {key:?} is not a decimal integer"
                        ))
                    })?,
            };
            let next = current.checked_add(delta).ok_or_else(|| {
                Error::InvalidArgument(format!("incrementing {key:?} by {delta} overflows"))
            })?;
            // A counter keeps the TTL it was written with (a new one gets
            // the partition's).
            let record = self.next_record(
                key,
                previous,
                next.to_string().into_bytes(),
                ValueKind::Number,
                previous.map(|p| p.ttl),
                now,
            );
            Ok((Some(record), next))
        };
        Ok(self.modify(key, Damaged::Refuse, change).await?.0)
    }

    /// Counts a read of `key` and loads it; fails unless it is there, live
    /// and intact. The returned [`Stored`] holds the record.
    async fn load_live(&self, key: &str) -> Result<(EntryId, Stored), Error> {
        self.admit().await?;
        let entry = self.entry_id(key)?;
        let stored = self.load(&entry).await?.ok_or(Error::KeyNotFound)?;
        match (&stored.record, stored.live) {
            (None, _) => Err(Error::Integrity),
            (Some(_), false) => Err(Error::KeyNotFound),
            (Some(_), true) => Ok((entry, stored)),
        }
    }

    /// Reads `key` without extending a rolling TTL: a look at the key, as
    /// an administrator takes, rather than a use of it.
    pub async fn peek(&self, key: &str) -> Result<Entry, Error> {
        let (_, stored) = self.load_live(key).await?;
        Ok(stored
            .record
            .expect("load_live holds a record")
            .into_entry())
    }

    /// Reads `key`, extending a rolling TTL.
    pub async fn retrieve(&self, key: &str) -> Result<Entry, Error> {
        let (entry, stored) = self.load_live(key).await?;
        let record = stored.record.as_ref().expect("load_live holds a record");
        if let Some(refreshed) = rolling_extension(record, self.inner().now_ms()) {
            let _guard = self.inner().key_locks.lock(&entry).await;
            match self
                .commit_entry(&entry, key, Some(&stored), Some(&refreshed))
                .await
            {
                Ok(Commit::Done) => return Ok(refreshed.into_entry()),
                // A concurrent write replaced the key and set its
                // expiry; or the store is at its byte quota, which must
                // not make reads fail.
                Ok(Commit::Conflict) | Err(Error::QuotaExceeded(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(stored
            .record
            .expect("load_live holds a record")
            .into_entry())
    }

    /// Whether `key` exists; does not extend a rolling TTL.
    pub async fn contains(&self, key: &str) -> Result<bool, Error> {
        self.admit().await?;
        let entry = self.entry_id(key)?;
        match self.load(&entry).await? {
            Some(stored) if stored.record.is_none() => Err(Error::Integrity),
            stored => Ok(stored.is_some_and(|s| s.live)),
        }
    }

    /// Removes `key` and returns what it held.
    pub async fn remove(&self, key: &str) -> Result<Entry, Error> {
        let change = |previous: Option<&EntryRecord>, _| match previous {
            Some(p) => Ok((None, p.clone().into_entry())),
            None => Err(Error::KeyNotFound),
        };
        Ok(self.modify(key, Damaged::Refuse, change).await?.0)
    }

    /// Deletes `key` if it is there, even if its record is damaged; returns
    /// whether it was.
    pub async fn delete(&self, key: &str) -> Result<bool, Error> {
        let change = |previous: Option<&EntryRecord>, _| Ok((None, previous.is_some()));
        let (live, damaged) = self.modify(key, Damaged::Replace, change).await?;
        Ok(live || damaged)
    }

    /// One page of key names, in byte order of the names.
    pub async fn list_keys(
        &self,
        cursor: Option<&str>,
        page_size: u32,
    ) -> Result<Page<String>, Error> {
        self.list(None, cursor, page_size, |r| r.key).await
    }

    /// One page of the names of the keys that start with `prefix`, in byte
    /// order; an empty prefix lists every key. A cursor resumes only the
    /// listing of the same prefix.
    pub async fn list_keys_with_prefix(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        page_size: u32,
    ) -> Result<Page<String>, Error> {
        self.list(Some(prefix), cursor, page_size, |r| r.key).await
    }

    /// One page of the keys (starting with `prefix`, if given) with what
    /// the admin UI shows of each: size, kind, times. Does not extend a
    /// rolling TTL.
    pub async fn list_key_metadata(
        &self,
        prefix: Option<&str>,
        cursor: Option<&str>,
        page_size: u32,
    ) -> Result<Page<(String, Metadata)>, Error> {
        self.list(prefix, cursor, page_size, |r| {
            let meta = r.metadata();
            (r.key, meta)
        })
        .await
    }

    /// One page of entries.
    pub async fn list_entries(
        &self,
        cursor: Option<&str>,
        page_size: u32,
    ) -> Result<Page<Entry>, Error> {
        self.list(None, cursor, page_size, |r| r.into_entry()).await
    }

    /// One page of the entries whose keys start with `prefix`, like
    /// [`list_keys_with_prefix`](Self::list_keys_with_prefix).
    pub async fn list_entries_with_prefix(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        page_size: u32,
    ) -> Result<Page<Entry>, Error> {
        self.list(Some(prefix), cursor, page_size, |r| r.into_entry())
            .await
    }

    /// One page of the live keys whose names start with `prefix`, in byte
    /// order of the names, from the index of names: the names the page
    /// still needs, from the leaf where the prefix (or the cursor) starts
    /// and the leaves after it, then their records in one read; again if
    /// some were expired. A page costs O(log N + page) reads however large
    /// the partition.
    async fn list<T>(
        &self,
        prefix: Option<&str>,
        cursor: Option<&str>,
        page_size: u32,
        map: impl Fn(EntryRecord) -> T,
    ) -> Result<Page<T>, Error> {
        self.admit().await?;
        let now = self.inner().now_ms();
        let table = self.table();
        let sealer = &self.app().sealer;
        let prefix = prefix.unwrap_or("");
        let after = cursor
            .map(|c| index::decode_cursor(sealer, Scope::Keys(self.id), prefix, c))
            .transpose()?;
        let locks = &self.inner().index_locks;
        index::ensure_built(table, locks, &self.app().usage, self.id, Need::Listing).await?;
        let map = &map;
        let mut walk = NameWalk::new(table, Scope::Keys(self.id), prefix, after);
        let (items, last) = walk
            .page(paging::clamp_page_size(page_size), |names| async move {
                let records = self.listed(names.iter()).await?;
                Ok(records
                    .into_iter()
                    .map(|record| match record {
                        Some(record) if record.is_live_at(now) => Listed::Item(map(record)),
                        Some(_) => Listed::Skipped,
                        None => Listed::Missing,
                    })
                    .collect())
            })
            .await?;
        let cursor =
            last.map(|last| index::encode_cursor(sealer, Scope::Keys(self.id), prefix, &last));
        Ok(Page { items, cursor })
    }

    /// The records of names the index lists, read at once, in their order;
    /// `None` for a name that has none.
    async fn listed(
        &self,
        names: impl Iterator<Item = &String>,
    ) -> Result<Vec<Option<EntryRecord>>, Error> {
        let table = self.table();
        let keys: Vec<Vec<u8>> = names
            .map(|name| {
                let key = self
                    .app()
                    .sealer
                    .tag(b"key", &self.id.partition, name.as_bytes());
                RecordKey::Entry(EntryId {
                    partition: self.id,
                    key,
                })
                .encode()
            })
            .collect();
        let shard = Shard::Partition(self.id).encode();
        let values = table.backend().get_many(&shard, &keys).await?;
        keys.iter()
            .zip(values)
            .map(|(key, sealed)| match sealed {
                None => Ok(None),
                // A listing that meets damage fails (see `paging`).
                Some(sealed) => table.open::<EntryRecord>(key, &sealed).map(Some),
            })
            .collect()
    }

    /// Removes every key; returns how many live keys there were.
    pub async fn clear(&self) -> Result<u64, Error> {
        self.admit().await?;
        delete_entries(
            self.table(),
            &self.inner().index_locks,
            self.app(),
            self.inner().now_ms(),
            self.id.entries(),
            &While::Always,
        )
        .await
    }
}

/// `record` with its rolling TTL extended from `now`, if a read at `now`
/// extends it: only once a quarter of the window has passed since the last
/// extension, so that a hot key costs a write per quarter window, not one
/// per read. `None` for a record without a rolling TTL.
pub(super) fn rolling_extension(record: &EntryRecord, now: u64) -> Option<EntryRecord> {
    let Ttl::Rolling(secs) = record.ttl else {
        return None;
    };
    let window = secs.saturating_mul(1000);
    let extended_at = record.expires.unwrap_or(now).saturating_sub(window);
    if now.saturating_sub(extended_at) < window / 4 {
        return None;
    }
    let mut refreshed = record.clone();
    refreshed.expires = Some(now.saturating_add(window));
    Some(refreshed)
}

//! Partitions and their keys: store, retrieve, increment, compare-and-swap,
//! TTL, listing and clearing.
//!
//! Every write is a read-modify-write cycle committed conditionally on what
//! was read, so that concurrent writers (on this host or another) never
//! overwrite each other unseen; the key's expiry index entry and the usage
//! counts change with it.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::backend::{Batch, Expect};
use crate::encryption::Tag;

use super::application::AppState;
use super::keys::{EntryId, PartitionId, Prefix, RecordKey, Shard};
use super::record::{EntryRecord, PartitionRecord};
use super::sealed::{Commit, SealedTable};
use super::store::Store;
use super::types::{Entry, Metadata, Page, StoreOptions, Ttl, ValueKind};
use super::{Error, Inner, paging};

/// How many times a write retries after another host changed the same key
/// between its read and its commit.
const MAX_CONFLICT_RETRIES: usize = 64;

/// Serialises read-modify-write cycles on one key within this host, so that
/// concurrent increments of a hot counter queue up instead of failing each
/// other's conditional commits. Conditional commits still guard against
/// writers on other hosts. Striped: two keys may share a lock, which only
/// costs a little concurrency.
pub(super) struct KeyLocks(Vec<tokio::sync::Mutex<()>>);

impl KeyLocks {
    pub fn new() -> Self {
        Self((0..1024).map(|_| tokio::sync::Mutex::new(())).collect())
    }

    pub async fn lock(&self, entry: &EntryId) -> tokio::sync::MutexGuard<'_, ()> {
        // Key tags are uniformly distributed.
        let stripe = u64::from_le_bytes(entry.key[..8].try_into().expect("8 bytes")) as usize;
        self.0[stripe % self.0.len()].lock().await
    }
}

/// The store tag inside an entry's backend key.
pub(super) fn store_of(entry_key: &[u8]) -> Tag {
    match RecordKey::parse(entry_key) {
        Some(RecordKey::Entry(id)) => id.partition.store,
        _ => unreachable!("entry scans return entry keys"),
    }
}

/// A partition of a store: the unit most operations work on.
#[derive(Clone)]
pub struct Partition {
    store: Store,
    name: Arc<str>,
    id: PartitionId,
    ttl: Option<Ttl>,
}

/// A record as read from the backend.
struct Stored {
    /// `None` when the record failed its integrity check.
    record: Option<EntryRecord>,
    sealed: Vec<u8>,
    /// Intact and not expired.
    live: bool,
}

impl Stored {
    fn live_record(&self) -> Option<&EntryRecord> {
        self.record.as_ref().filter(|_| self.live)
    }

    /// Whether a write may skip this: an intact but expired record, which
    /// the sweep reclaims.
    fn is_dead(&self) -> bool {
        self.record.is_some() && !self.live
    }
}

/// What a read-modify-write does with a record that fails its integrity
/// check.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Damaged {
    /// Fail with `Integrity`: the operation needs the old value.
    Refuse,
    /// Treat it as absent and replace or delete it: the old value does not
    /// matter, and the key must not stay unusable forever.
    Replace,
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

    fn inner(&self) -> &Inner {
        &self.store.app.inner
    }

    fn app(&self) -> &AppState {
        &self.store.app.state
    }

    fn table(&self) -> SealedTable<'_> {
        self.store.app.table()
    }

    fn admit(&self) -> Result<(), Error> {
        self.store.app.admit(self.store.tag)
    }

    /// The TTL for keys without their own: the partition's or the store's.
    /// The application's view of the partition wins over this handle's, so
    /// that a TTL set through another handle applies at once.
    pub fn effective_ttl(&self) -> Ttl {
        let cached = self
            .app()
            .cached_partition(self.store.tag, self.id.partition)
            .map(|r| r.ttl);
        cached
            .unwrap_or(self.ttl)
            .unwrap_or(self.store.default_ttl())
    }

    /// Sets the TTL for keys stored here without their own (`None`: the
    /// store's). Applies to later writes.
    pub async fn set_ttl(&mut self, ttl: Option<Ttl>) -> Result<(), Error> {
        self.admit()?;
        let ttl = ttl.map(Ttl::check).transpose()?;
        let record = PartitionRecord {
            name: self.name.to_string(),
            ttl,
        };
        self.table()
            .put(&RecordKey::Partition(self.id), &record)
            .await?;
        self.app()
            .cache_partition(self.store.tag, self.id.partition, record);
        self.ttl = ttl;
        Ok(())
    }

    /// Makes the partition record if this application does not know it
    /// exists: on its first write, and again after the partition was
    /// deleted. Never overwrites a record (and so its TTL).
    async fn ensure_record(&self) -> Result<(), Error> {
        let app = self.app();
        if app
            .cached_partition(self.store.tag, self.id.partition)
            .is_some()
        {
            return Ok(());
        }
        let mine = PartitionRecord {
            name: self.name.to_string(),
            ttl: self.ttl,
        };
        // If someone made it first, theirs holds the settings.
        let record = self
            .table()
            .read_or_create(&RecordKey::Partition(self.id), || Some(mine.clone()))
            .await?
            .expect("created if absent");
        app.cache_partition(self.store.tag, self.id.partition, record);
        Ok(())
    }

    /// The entry of `key`, after checking the name.
    fn entry_id(&self, key: &str) -> Result<EntryId, Error> {
        self.inner().check_name(key, "key")?;
        Ok(EntryId {
            partition: self.id,
            key: self
                .app()
                .sealer
                .tag(b"key", &self.id.partition, key.as_bytes()),
        })
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

    /// Reads what is stored for `entry`: the record, its sealed bytes (the
    /// expectation for a conditional write) and whether it is live.
    async fn load(&self, entry: &EntryId) -> Result<Option<Stored>, Error> {
        let table = self.table();
        let key = RecordKey::Entry(*entry).encode();
        let Some(sealed) = table.backend().get(&key).await? else {
            return Ok(None);
        };
        let record = match table.open::<EntryRecord>(&key, &sealed) {
            Ok(record) => Some(record),
            Err(Error::Integrity) => None,
            Err(e) => return Err(e),
        };
        let now = self.inner().now_ms();
        let live = record.as_ref().is_some_and(|r| r.is_live_at(now));
        Ok(Some(Stored {
            record,
            sealed,
            live,
        }))
    }

    /// Writes `record` in place of `previous` (what was last read), keeping
    /// the expiry index and the usage counts in step. Returns
    /// [`Commit::Conflict`], writing nothing, if the key changed since it
    /// was read; fails with `QuotaExceeded` if the write would grow the
    /// application or store past a quota.
    async fn commit_entry(
        &self,
        entry: &EntryId,
        previous: Option<&Stored>,
        record: Option<&EntryRecord>,
    ) -> Result<Commit, Error> {
        let app = self.app();
        let table = self.table();
        let key = RecordKey::Entry(*entry).encode();
        let mut batch = Batch::new();
        let expect = match previous {
            Some(stored) => Expect::Value(stored.sealed.clone()),
            None => Expect::Absent,
        };
        if let Some(at) = previous
            .and_then(|p| p.record.as_ref())
            .and_then(|r| r.expires)
        {
            let expiry = RecordKey::Expiry { at, entry: *entry };
            batch.delete(expiry.encode(), Expect::Any);
        }
        let footprint = |sealed: &[u8]| (key.len() + sealed.len()) as i64;
        let old_bytes = previous.map_or(0, |p| footprint(&p.sealed));
        let (keys, bytes) = match record {
            Some(record) => {
                let sealed = table.seal(&key, record);
                let delta = (
                    i64::from(previous.is_none()),
                    footprint(&sealed) - old_bytes,
                );
                batch.put(key, sealed, expect);
                if let Some(at) = record.expires {
                    let expiry = RecordKey::Expiry { at, entry: *entry };
                    batch.put(expiry.encode(), Vec::new(), Expect::Any);
                }
                delta
            }
            None => {
                batch.delete(key, expect);
                (-1, -old_bytes)
            }
        };
        app.usage
            .check_quota(keys, bytes, &self.inner().config.limits)?;
        app.usage
            .check_store_quota(self.store.tag, keys, bytes, &self.store.quota())?;
        if record.is_some() {
            self.ensure_record().await?;
        }
        let outcome = table.commit(batch).await?;
        if outcome == Commit::Done {
            app.usage.apply(self.store.tag, keys, bytes);
        }
        Ok(outcome)
    }

    /// The read-modify-write cycle behind every write: under this host's
    /// lock for the key, read the current record, let `change` decide the
    /// new one, and commit it conditionally, retrying if another host got
    /// there first. Also says whether a damaged record was replaced or
    /// deleted.
    async fn modify<T>(
        &self,
        key: &str,
        damaged: Damaged,
        mut change: impl FnMut(Option<&EntryRecord>, u64) -> Result<(Option<EntryRecord>, T), Error>,
    ) -> Result<(T, bool), Error> {
        self.admit()?;
        let entry = self.entry_id(key)?;
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
                .commit_entry(&entry, stored.as_ref(), next.as_ref())
                .await?
            {
                Commit::Done => return Ok((out, was_damaged)),
                Commit::Conflict => continue,
            }
        }
        Err(Error::Contended("the key is"))
    }

    /// A new record for `key` holding `value`, succeeding `previous`.
    fn next_record(
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
    fn checked_write(
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
    /// and intact.
    async fn load_live(&self, key: &str) -> Result<(EntryId, Stored, EntryRecord), Error> {
        self.admit()?;
        let entry = self.entry_id(key)?;
        let stored = self.load(&entry).await?.ok_or(Error::KeyNotFound)?;
        match (stored.record.clone(), stored.live) {
            (None, _) => Err(Error::Integrity),
            (Some(_), false) => Err(Error::KeyNotFound),
            (Some(record), true) => Ok((entry, stored, record)),
        }
    }

    /// Reads `key` without extending a rolling TTL: a look at the key, as
    /// an administrator takes, rather than a use of it.
    pub async fn peek(&self, key: &str) -> Result<Entry, Error> {
        let (_, _, record) = self.load_live(key).await?;
        Ok(record.into_entry())
    }

    /// Reads `key`, extending a rolling TTL.
    pub async fn retrieve(&self, key: &str) -> Result<Entry, Error> {
        let (entry, stored, mut record) = self.load_live(key).await?;
        if let Ttl::Rolling(secs) = record.ttl {
            let now = self.inner().now_ms();
            let window = secs.saturating_mul(1000);
            let extended_at = record.expires.unwrap_or(now).saturating_sub(window);
            // Extend only once a quarter of the window has passed, so that a
            // hot key costs a write per quarter window, not one per read.
            if now.saturating_sub(extended_at) >= window / 4 {
                let mut refreshed = record.clone();
                refreshed.expires = Some(now.saturating_add(window));
                let _guard = self.inner().key_locks.lock(&entry).await;
                match self
                    .commit_entry(&entry, Some(&stored), Some(&refreshed))
                    .await
                {
                    Ok(Commit::Done) => record = refreshed,
                    // A concurrent write replaced the key and set its
                    // expiry; or the store is at its byte quota, which must
                    // not make reads fail.
                    Ok(Commit::Conflict) | Err(Error::QuotaExceeded(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(record.into_entry())
    }

    /// Whether `key` exists; does not extend a rolling TTL.
    pub async fn contains(&self, key: &str) -> Result<bool, Error> {
        self.admit()?;
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

    /// One page of key names.
    pub async fn list_keys(
        &self,
        cursor: Option<&str>,
        page_size: u32,
    ) -> Result<Page<String>, Error> {
        self.list(cursor, page_size, |r| Some(r.key)).await
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
        self.list(cursor, page_size, |r| {
            if !prefix.is_none_or(|p| r.key.starts_with(p)) {
                return None;
            }
            let meta = r.metadata();
            Some((r.key, meta))
        })
        .await
    }

    /// One page of entries.
    pub async fn list_entries(
        &self,
        cursor: Option<&str>,
        page_size: u32,
    ) -> Result<Page<Entry>, Error> {
        self.list(cursor, page_size, |r| Some(r.into_entry())).await
    }

    async fn list<T>(
        &self,
        cursor: Option<&str>,
        page_size: u32,
        map: impl Fn(EntryRecord) -> Option<T>,
    ) -> Result<Page<T>, Error> {
        self.admit()?;
        let now = self.inner().now_ms();
        let table = self.table();
        let scan = table.scan(self.id.entries());
        paging::page(
            &self.app().sealer,
            scan,
            cursor,
            page_size,
            |key, sealed| {
                let record: EntryRecord = table.open(key, sealed)?;
                Ok(record.is_live_at(now).then(|| map(record)).flatten())
            },
        )
        .await
    }

    /// Removes every key; returns how many live keys there were.
    pub async fn clear(&self) -> Result<u64, Error> {
        self.admit()?;
        delete_entries(
            self.table(),
            self.app(),
            self.inner().now_ms(),
            self.id.entries(),
        )
        .await
    }
}

/// Deletes every entry under `prefix` with its expiry index entry; returns
/// how many were live at `now`. Writes racing with it may survive or not.
/// Each chunk is committed as one batch per partition (shard).
pub(super) async fn delete_entries(
    table: SealedTable<'_>,
    app: &AppState,
    now: u64,
    prefix: Prefix,
) -> Result<u64, Error> {
    let mut removed = 0;
    let mut scan = table.scan(prefix);
    loop {
        let chunk = scan.next_chunk().await?;
        if chunk.is_empty() {
            return Ok(removed);
        }
        let mut batches: BTreeMap<Shard, Batch> = BTreeMap::new();
        let mut freed: BTreeMap<Tag, (i64, i64)> = BTreeMap::new();
        for (key, sealed) in chunk {
            let Some(RecordKey::Entry(entry)) = RecordKey::parse(&key) else {
                unreachable!("entry scans return entry keys");
            };
            let batch = batches
                .entry(Shard::Partition(entry.partition))
                .or_default();
            match table.open::<EntryRecord>(&key, &sealed) {
                Ok(record) => {
                    if record.is_live_at(now) {
                        removed += 1;
                    }
                    if let Some(at) = record.expires {
                        batch.delete(RecordKey::Expiry { at, entry }.encode(), Expect::Any);
                    }
                }
                // A damaged record goes too (its index entry, if any, is
                // dropped by the sweep); it counts as a key that was there.
                Err(Error::Integrity) => removed += 1,
                Err(e) => return Err(e),
            }
            let f = freed.entry(entry.partition.store).or_default();
            f.0 -= 1;
            f.1 -= (key.len() + sealed.len()) as i64;
            batch.delete(key, Expect::Any);
        }
        for batch in batches.into_values() {
            table.commit_unconditional(batch).await?;
        }
        for (store, (keys, bytes)) in freed {
            app.usage.apply(store, keys, bytes);
        }
    }
}

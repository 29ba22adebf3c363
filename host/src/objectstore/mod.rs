//! The object store itself: applications, stores, partitions, keys, TTL and
//! limits, over any [`Backend`], with every record sealed.
//!
//! Every front end (WIT guests, later Spin guests, REST and the admin UI)
//! goes through this module, so each rule is written once.
//!
//! # Records at rest
//!
//! | backend key | record |
//! |---|---|
//! | `a` app | the application's name and data keys, sealed by the master key |
//! | `s` app store | a store's name and default TTL |
//! | `p` app store partition | a partition's name and TTL |
//! | `e` app store partition key | a key's name, value and metadata |
//! | `x` expiry app store partition key | expiry index for the sweep, empty |
//! | `c` app store day | requests to a store on a day, and its size then |
//! | `m` check | proves the master key matches the data |
//!
//! Each name is replaced by its 16-byte tag. The expiry index stores the
//! expiry time (big-endian milliseconds) in clear so the sweep can find due
//! keys in order without opening every record; it reveals when keys expire,
//! never what they are.

mod error;
mod record;
mod usage;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub use error::Error;
use record::{AppRecord, EntryRecord, PartitionRecord, StatsRecord, StoreRecord};
pub use usage::Footprint;
use usage::{AppUsage, day_of};

use crate::backend::{Backend, BackendError, Batch, Expect};
use crate::encryption::{MasterKey, Sealer, TAG_LEN, Tag, random_array};

/// The store every application has; Mule's `_defaultUserObjectStore`.
pub const DEFAULT_STORE: &str = "_defaultUserObjectStore";

/// OSv2's default TTL: 30 days.
pub const DEFAULT_TTL_SECS: u64 = 30 * 24 * 60 * 60;

/// The most keys or entries one page may hold. Pages are built in memory,
/// so a guest-chosen page size is clamped to this.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// How many times a write retries after another host changed the same key
/// between its read and its commit.
const MAX_CONFLICT_RETRIES: usize = 64;

/// The longest TTL: 100 years. Longer ones are surely mistakes, and would
/// put expiry times past what calendars and clients handle.
pub const MAX_TTL_SECS: u64 = 100 * 365 * 24 * 60 * 60;

/// How long a key lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// Never expires.
    Never,
    /// Expires this many seconds after the last write (OSv2 "static").
    Fixed(u64),
    /// Expires this many seconds after the last read or write.
    Rolling(u64),
}

impl Ttl {
    fn seconds(self) -> Option<u64> {
        match self {
            Ttl::Never => None,
            Ttl::Fixed(s) | Ttl::Rolling(s) => Some(s),
        }
    }

    fn check(self) -> Result<Self, Error> {
        match self.seconds() {
            Some(0) => Err(Error::InvalidArgument(
                "a TTL must be at least 1 second".into(),
            )),
            Some(s) if s > MAX_TTL_SECS => Err(Error::InvalidArgument(format!(
                "a TTL may be at most {MAX_TTL_SECS} seconds (100 years); for longer, let the key never expire"
            ))),
            _ => Ok(self),
        }
    }

    /// When a key written at `now` expires.
    fn expiry_from(self, now: u64) -> Option<u64> {
        self.seconds()
            .map(|s| now.saturating_add(s.saturating_mul(1000)))
    }
}

/// Limits of one store, on top of its application's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreQuota {
    /// Keys the store may hold; `None`: only the application's limit.
    pub max_keys: Option<u64>,
    /// Bytes the store may take at rest; `None`: only the application's.
    pub max_bytes: Option<u64>,
}

/// What a value holds; kept so that the REST API can show it as OSv2 does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ValueKind {
    Binary = 0,
    String = 1,
    Number = 2,
}

impl ValueKind {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Binary),
            1 => Some(Self::String),
            2 => Some(Self::Number),
            _ => None,
        }
    }

    /// The kind of bytes a guest stored: text if they are UTF-8.
    fn of(value: &[u8]) -> Self {
        if std::str::from_utf8(value).is_ok() {
            Self::String
        } else {
            Self::Binary
        }
    }
}

/// Facts about a stored value; times in milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub created: u64,
    pub updated: u64,
    pub expires: Option<u64>,
    /// The TTL the key was written with (its own, or the one it inherited).
    pub ttl: Ttl,
    pub version: u64,
    pub size: u64,
    pub kind: ValueKind,
}

/// A key with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: Vec<u8>,
    pub metadata: Metadata,
}

/// How [`Partition::store`] behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreOptions {
    /// Fail with [`Error::KeyAlreadyExists`] instead of overwriting.
    pub fail_if_present: bool,
    /// The key's own TTL; `None` inherits the partition's, then the store's.
    pub ttl: Option<Ttl>,
    /// What the value holds; `None`: text if it is UTF-8, else binary.
    pub kind: Option<ValueKind>,
}

/// Requests made on one day, and the size of what was stored then.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayStats {
    pub requests: u64,
    pub keys: u64,
    pub bytes: u64,
}

/// One page of a listing; `cursor` is `None` on the last page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub cursor: Option<String>,
}

/// Sizes a guest or client controls, checked on every call.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest key, store or partition name in bytes (OSv2: 1024).
    pub max_key_bytes: usize,
    /// Largest value in bytes (OSv2: 10 MiB).
    pub max_value_bytes: usize,
    /// Object-store requests one application may make per second (OSv2
    /// base: 10); `None`: unlimited.
    pub requests_per_second: Option<u32>,
    /// Keys one application may hold; `None`: unlimited.
    pub max_keys: Option<u64>,
    /// Bytes one application may store at rest; `None`: unlimited.
    pub max_bytes: Option<u64>,
    /// Stores one application may have. Opening a store by a new name makes
    /// it, so this bounds what a guest can create with made-up names.
    pub max_stores: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_key_bytes: 1024,
            max_value_bytes: 10 << 20,
            requests_per_second: None,
            max_keys: None,
            max_bytes: None,
            max_stores: 1000,
        }
    }
}

/// Settings of an [`ObjectStore`].
#[derive(Debug, Clone)]
pub struct Config {
    pub limits: Limits,
    /// The TTL of a newly created store (OSv2: 30 days, static).
    pub default_ttl: Ttl,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            default_ttl: Ttl::Fixed(DEFAULT_TTL_SECS),
        }
    }
}

/// The object store service: one per host process, shared by all
/// applications. Cheap to clone.
#[derive(Clone)]
pub struct ObjectStore {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn Backend>,
    master: Sealer,
    config: Config,
    apps: Mutex<HashMap<Tag, Arc<AppState>>>,
    key_locks: KeyLocks,
}

/// One application's keys and caches.
struct AppState {
    name: String,
    tag: Tag,
    sealer: Sealer,
    /// Store settings by store tag. A host caches what it wrote or read;
    /// settings change only through this host's object store.
    stores: Mutex<HashMap<Tag, StoreRecord>>,
    /// Partition settings by (store, partition) tag; absent partitions are
    /// not cached.
    partitions: Mutex<HashMap<(Tag, Tag), PartitionRecord>>,
    usage: AppUsage,
}

/// Serialises read-modify-write cycles on one key within this host, so that
/// concurrent increments of a hot counter queue up instead of failing each
/// other's conditional commits. Conditional commits still guard against
/// writers on other hosts. Striped: two keys may share a lock, which only
/// costs a little concurrency.
struct KeyLocks(Vec<tokio::sync::Mutex<()>>);

impl KeyLocks {
    fn new() -> Self {
        Self((0..1024).map(|_| tokio::sync::Mutex::new(())).collect())
    }

    async fn lock(&self, entry_key: &[u8]) -> tokio::sync::MutexGuard<'_, ()> {
        // Backend keys end in a key tag, which is uniformly distributed.
        let tail: [u8; 8] = entry_key[entry_key.len() - 8..]
            .try_into()
            .expect("8 bytes");
        let stripe = u64::from_le_bytes(tail) as usize % self.0.len();
        self.0[stripe].lock().await
    }
}

const MASTER_CHECK_KEY: &[u8] = b"m/master-check";
const MASTER_CHECK_TEXT: &[u8] = b"ostore master key check v1";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn backend_key(kind: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    key.push(kind);
    for p in parts {
        key.extend_from_slice(p);
    }
    key
}

/// Bytes of a cursor's check: it binds the cursor to its listing, so that
/// a cursor of one partition is refused by another instead of silently
/// skipping part of it.
const CURSOR_CHECK_LEN: usize = 8;

fn cursor_check(sealer: &Sealer, prefix: &[u8], tag: &[u8]) -> [u8; CURSOR_CHECK_LEN] {
    let full = sealer.tag(b"cursor", prefix, tag);
    full[..CURSOR_CHECK_LEN].try_into().expect("check length")
}

/// A cursor: the last tag of the page and its check, base64url.
fn encode_cursor(sealer: &Sealer, prefix: &[u8], tag: &[u8]) -> String {
    let mut bytes = tag.to_vec();
    bytes.extend_from_slice(&cursor_check(sealer, prefix, tag));
    URL_SAFE_NO_PAD.encode(bytes)
}

fn decode_cursor(
    sealer: &Sealer,
    prefix: &[u8],
    cursor: Option<&str>,
) -> Result<Option<Tag>, Error> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    let malformed = || Error::InvalidArgument("malformed cursor, or one of another listing".into());
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| malformed())?;
    if bytes.len() != TAG_LEN + CURSOR_CHECK_LEN {
        return Err(malformed());
    }
    let (tag, check) = bytes.split_at(TAG_LEN);
    if check != cursor_check(sealer, prefix, tag) {
        return Err(malformed());
    }
    Ok(Some(tag.try_into().expect("tag length")))
}

fn clamp_page_size(page_size: u32) -> usize {
    page_size.clamp(1, MAX_PAGE_SIZE) as usize
}

impl ObjectStore {
    /// Opens the object store kept in `backend`, sealed under `master`.
    ///
    /// Fails with [`Error::WrongMasterKey`] when the backend holds data that
    /// was sealed with another master key.
    pub async fn open(
        backend: Arc<dyn Backend>,
        master: &MasterKey,
        config: Config,
    ) -> Result<Self, Error> {
        let master = master.sealer();
        match backend.get(MASTER_CHECK_KEY).await? {
            Some(sealed) => match master.open(MASTER_CHECK_KEY, &sealed) {
                Ok(text) if text == MASTER_CHECK_TEXT => {}
                _ => return Err(Error::WrongMasterKey),
            },
            None => {
                let mut batch = Batch::new();
                batch.put(
                    MASTER_CHECK_KEY.to_vec(),
                    master.seal(MASTER_CHECK_KEY, MASTER_CHECK_TEXT),
                    Expect::Absent,
                );
                backend.commit(batch).await?;
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                master,
                config,
                apps: Mutex::new(HashMap::new()),
                key_locks: KeyLocks::new(),
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The application called `name`, created with fresh data keys on first
    /// use. Applications never see each other's data.
    pub async fn application(&self, name: &str) -> Result<Application, Error> {
        self.inner.check_name(name, "application name")?;
        let tag = self.inner.master.tag(b"app", b"", name.as_bytes());
        let state = self.inner.app_state(tag, Some(name)).await?;
        Ok(Application {
            inner: self.inner.clone(),
            state,
        })
    }

    /// Deletes every key whose expiry has passed and returns how many were
    /// deleted. Expired keys are already invisible; this reclaims space.
    pub async fn sweep_expired(&self) -> Result<u64, Error> {
        let inner = &self.inner;
        let now = now_ms();
        let mut deleted = 0;
        loop {
            let due = inner.backend.scan(b"x", None, 256).await?;
            let mut progressed = false;
            for (index_key, _) in &due {
                // x | expires(8) | app | store | partition | key
                if index_key.len() != EXPIRY_KEY_LEN {
                    tracing::warn!("dropping a malformed expiry index entry");
                    let mut batch = Batch::new();
                    batch.delete(index_key.clone(), Expect::Any);
                    inner.backend.commit(batch).await?;
                    progressed = true;
                    continue;
                }
                let expires = u64::from_be_bytes(index_key[1..9].try_into().expect("8 bytes"));
                if expires > now {
                    return Ok(deleted);
                }
                progressed = true;
                let entry_key = backend_key(b'e', &[&index_key[9..]]);
                let app_tag: Tag = index_key[9..9 + TAG_LEN].try_into().expect("tag");
                let _guard = inner.key_locks.lock(&entry_key).await;
                let mut batch = Batch::new();
                batch.delete(index_key.clone(), Expect::Any);
                let mut freed = None;
                if let Some(sealed) = inner.backend.get(&entry_key).await? {
                    let app = inner.app_state(app_tag, None).await?;
                    match app.open_entry(&entry_key, &sealed) {
                        Ok(record) if record.expires == Some(expires) => {
                            freed = Some((app, (entry_key.len() + sealed.len()) as i64));
                            batch.delete(entry_key.clone(), Expect::Value(sealed));
                        }
                        // Rewritten since: only the index entry is stale.
                        Ok(_) => {}
                        // A damaged record must not stop the sweep of all
                        // others; it stays for an operator to see.
                        Err(e) => tracing::warn!("expiry sweep skips a damaged record: {e}"),
                    }
                }
                match inner.backend.commit(batch).await {
                    Ok(()) => {
                        if let Some((app, bytes)) = freed {
                            app.usage.apply(store_tag_of(&entry_key), -1, -bytes);
                            deleted += 1;
                        }
                    }
                    Err(BackendError::Conflict) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if !progressed || due.len() < 256 {
                return Ok(deleted);
            }
        }
    }

    /// Adds the request counts gathered since the last flush to the stored
    /// per-day counts, with each store's current size. Counts whose write
    /// fails are kept for the next flush.
    pub async fn flush_stats(&self) -> Result<(), Error> {
        let apps: Vec<Arc<AppState>> = self
            .inner
            .apps
            .lock()
            .expect("apps lock")
            .values()
            .cloned()
            .collect();
        for app in apps {
            let pending = app.usage.take_pending();
            let mut unflushed = HashMap::new();
            let mut failure = None;
            for ((store, day), requests) in pending {
                if failure.is_some() {
                    unflushed.insert((store, day), requests);
                    continue;
                }
                if let Err(e) = self.inner.add_requests(&app, store, day, requests).await {
                    unflushed.insert((store, day), requests);
                    failure = Some(e);
                }
            }
            app.usage.restore_pending(unflushed);
            if let Some(e) = failure {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Runs [`flush_stats`](Self::flush_stats) every `interval` until the
    /// returned task is aborted.
    pub fn spawn_stats_flusher(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(e) = store.flush_stats().await {
                    tracing::warn!("flushing request counts failed: {e}");
                }
            }
        })
    }

    /// Runs [`sweep_expired`](Self::sweep_expired) every `interval` until
    /// the returned task is aborted.
    pub fn spawn_sweeper(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                match store.sweep_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(deleted = n, "swept expired keys"),
                    Err(e) => tracing::warn!("expiry sweep failed: {e}"),
                }
            }
        })
    }
}

impl Inner {
    fn check_name(&self, name: &str, what: &str) -> Result<(), Error> {
        let max = self.config.limits.max_key_bytes;
        if name.is_empty() {
            return Err(Error::InvalidKey(format!("{what} is empty")));
        }
        if name.len() > max {
            return Err(Error::InvalidKey(format!(
                "{what} is {} bytes long; the limit is {max}",
                name.len()
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(Error::InvalidKey(format!(
                "{what} contains a control character"
            )));
        }
        Ok(())
    }

    /// The plaintext of the record at `key`, sealed by `sealer`. If there is
    /// none, `create` may give one, which is written only if the key is
    /// still absent: of concurrent creators one wins and the others read
    /// its record.
    async fn read_or_create(
        &self,
        sealer: &Sealer,
        key: &[u8],
        mut create: impl FnMut() -> Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, Error> {
        loop {
            if let Some(sealed) = self.backend.get(key).await? {
                return Ok(Some(sealer.open(key, &sealed)?));
            }
            let Some(plain) = create() else {
                return Ok(None);
            };
            let mut batch = Batch::new();
            batch.put(key.to_vec(), sealer.seal(key, &plain), Expect::Absent);
            match self.backend.commit(batch).await {
                Ok(()) => return Ok(Some(plain)),
                // Another request created it first: read theirs.
                Err(BackendError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Loads (or, given its name, creates) an application's keys.
    async fn app_state(&self, tag: Tag, create_as: Option<&str>) -> Result<Arc<AppState>, Error> {
        if let Some(state) = self.apps.lock().expect("apps lock").get(&tag) {
            return Ok(state.clone());
        }
        let key = backend_key(b'a', &[&tag]);
        let new_app = || {
            create_as.map(|name| {
                AppRecord {
                    name: name.to_string(),
                    seal_key: random_array(),
                    tag_key: random_array(),
                }
                .encode()
            })
        };
        let plain = self
            .read_or_create(&self.master, &key, new_app)
            .await?
            .ok_or_else(|| Error::Unavailable("a record names an unknown application".into()))?;
        let record = AppRecord::decode(&plain).map_err(|_| Error::Integrity)?;
        let state = Arc::new(AppState {
            sealer: Sealer::new(&record.seal_key, &record.tag_key),
            name: record.name,
            tag,
            stores: Mutex::new(HashMap::new()),
            partitions: Mutex::new(HashMap::new()),
            usage: AppUsage::default(),
        });
        state.usage.reset(self.measure(&tag).await?);
        Ok(self
            .apps
            .lock()
            .expect("apps lock")
            .entry(tag)
            .or_insert(state)
            .clone())
    }
}

impl Inner {
    /// Adds `requests` to the count of `store` on `day`.
    async fn add_requests(
        &self,
        app: &AppState,
        store: Tag,
        day: u32,
        requests: u64,
    ) -> Result<(), Error> {
        let key = backend_key(b'c', &[&app.tag, &store, &day.to_be_bytes()]);
        let size = app.usage.footprint(store);
        for _ in 0..MAX_CONFLICT_RETRIES {
            let current = self.backend.get(&key).await?;
            let mut record = match &current {
                Some(sealed) => StatsRecord::decode(&app.sealer.open(&key, sealed)?)
                    .map_err(|_| Error::Integrity)?,
                None => StatsRecord::default(),
            };
            record.requests += requests;
            record.keys = size.keys;
            record.bytes = size.bytes;
            let mut batch = Batch::new();
            let expect = current.map_or(Expect::Absent, Expect::Value);
            batch.put(key.clone(), app.sealer.seal(&key, &record.encode()), expect);
            match self.backend.commit(batch).await {
                Ok(()) => return Ok(()),
                Err(BackendError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Unavailable(
            "request counts are changing too fast to update".into(),
        ))
    }

    /// Counts the keys and bytes of every store of an application.
    async fn measure(&self, app: &Tag) -> Result<HashMap<Tag, Footprint>, Error> {
        let prefix = backend_key(b'e', &[app]);
        let mut footprints: HashMap<Tag, Footprint> = HashMap::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let chunk = self.backend.scan(&prefix, after.as_deref(), 1024).await?;
            let done = chunk.len() < 1024;
            for (key, sealed) in &chunk {
                let f = footprints.entry(store_tag_of(key)).or_default();
                f.keys += 1;
                f.bytes += (key.len() + sealed.len()) as u64;
            }
            after = chunk.into_iter().last().map(|(k, _)| k);
            if done {
                return Ok(footprints);
            }
        }
    }
}

/// The store tag inside an entry's backend key (`e` app store ...).
fn store_tag_of(entry_key: &[u8]) -> Tag {
    entry_key[1 + TAG_LEN..1 + 2 * TAG_LEN]
        .try_into()
        .expect("tag")
}

impl AppState {
    fn open_entry(&self, key: &[u8], sealed: &[u8]) -> Result<EntryRecord, Error> {
        let plain = self.sealer.open(key, sealed)?;
        EntryRecord::decode(&plain).map_err(|_| Error::Integrity)
    }
}

/// One application's view of the object store. Cheap to clone.
#[derive(Clone)]
pub struct Application {
    inner: Arc<Inner>,
    state: Arc<AppState>,
}

impl Application {
    pub fn name(&self) -> &str {
        &self.state.name
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
        let tag = app.sealer.tag(b"store", b"", name.as_bytes());
        self.admit(tag)?;
        let key = backend_key(b's', &[&app.tag, &tag]);
        let record = StoreRecord {
            name: name.to_string(),
            default_ttl,
            quota,
        };
        let mut batch = Batch::new();
        batch.put(
            key.clone(),
            app.sealer.seal(&key, &record.encode()),
            Expect::Any,
        );
        self.inner.backend.commit(batch).await?;
        app.stores
            .lock()
            .expect("stores lock")
            .insert(tag, record.clone());
        Ok(self.store_handle(tag, record))
    }

    /// One page of the application's stores.
    pub async fn list_stores(
        &self,
        cursor: Option<&str>,
        page_size: u32,
    ) -> Result<Page<Store>, Error> {
        self.admit([0; TAG_LEN])?;
        let app = &self.state;
        let prefix = backend_key(b's', &[&app.tag]);
        scan_page(
            &*self.inner.backend,
            &app.sealer,
            &prefix,
            cursor,
            page_size,
            |key, sealed| {
                let plain = app.sealer.open(key, sealed)?;
                let record = StoreRecord::decode(&plain).map_err(|_| Error::Integrity)?;
                let tag: Tag = key[key.len() - TAG_LEN..].try_into().expect("tag");
                Ok(Some(self.store_handle(tag, record)))
            },
        )
        .await
    }

    /// Deletes the store `name` with all its partitions and keys. Returns
    /// whether it existed.
    pub async fn delete_store(&self, name: &str) -> Result<bool, Error> {
        let Some(store) = self.find_store(name).await? else {
            return Ok(false);
        };
        self.admit(store.tag)?;
        let app = &self.state;
        let entries = backend_key(b'e', &[&app.tag, &store.tag]);
        delete_entries(&*self.inner.backend, app, &entries).await?;
        let partitions = store.partition_prefix();
        loop {
            let chunk = self.inner.backend.scan(&partitions, None, 256).await?;
            if chunk.is_empty() {
                break;
            }
            let mut batch = Batch::new();
            for (key, _) in chunk {
                batch.delete(key, Expect::Any);
            }
            self.inner.backend.commit(batch).await?;
        }
        let mut batch = Batch::new();
        batch.delete(backend_key(b's', &[&app.tag, &store.tag]), Expect::Any);
        self.inner.backend.commit(batch).await?;
        app.stores.lock().expect("stores lock").remove(&store.tag);
        app.usage.forget_store(store.tag);
        app.partitions
            .lock()
            .expect("partitions lock")
            .retain(|(s, _), _| *s != store.tag);
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
        let tag = app.sealer.tag(b"store", b"", name.as_bytes());
        if let Some(record) = app.stores.lock().expect("stores lock").get(&tag) {
            return Ok(Some(self.store_handle(tag, record.clone())));
        }
        let key = backend_key(b's', &[&app.tag, &tag]);
        let inner = &self.inner;
        let plain = match inner.read_or_create(&app.sealer, &key, || None).await? {
            Some(plain) => plain,
            None => {
                let Some(record) = create else {
                    return Ok(None);
                };
                let max = inner.config.limits.max_stores;
                if self.store_count().await? >= max {
                    return Err(Error::QuotaExceeded(format!(
                        "the application may have {max} stores"
                    )));
                }
                inner
                    .read_or_create(&app.sealer, &key, || Some(record.encode()))
                    .await?
                    .expect("created if absent")
            }
        };
        let record = StoreRecord::decode(&plain).map_err(|_| Error::Integrity)?;
        app.stores
            .lock()
            .expect("stores lock")
            .insert(tag, record.clone());
        Ok(Some(self.store_handle(tag, record)))
    }

    /// Counts one request against `store`, or refuses it when the
    /// application is over its request rate.
    fn admit(&self, store: Tag) -> Result<(), Error> {
        self.state
            .usage
            .admit(store, &self.inner.config.limits, now_ms())
    }

    /// Requests per day from `first_day` to `last_day` (days since the
    /// epoch), of one store or (`None`) of all the application's stores,
    /// with the size at each day's last count. Includes requests not yet
    /// flushed; today's size is the current one.
    pub async fn daily_stats(
        &self,
        store: Option<&str>,
        first_day: u32,
        last_day: u32,
    ) -> Result<std::collections::BTreeMap<u32, DayStats>, Error> {
        let app = &self.state;
        let store_tag = match store {
            Some(name) => {
                self.inner.check_name(name, "store name")?;
                Some(app.sealer.tag(b"store", b"", name.as_bytes()))
            }
            None => None,
        };
        let prefix = match &store_tag {
            Some(tag) => backend_key(b'c', &[&app.tag, tag]),
            None => backend_key(b'c', &[&app.tag]),
        };
        let mut days: std::collections::BTreeMap<u32, DayStats> = Default::default();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let chunk = self
                .inner
                .backend
                .scan(&prefix, after.as_deref(), 1024)
                .await?;
            let done = chunk.len() < 1024;
            for (key, sealed) in &chunk {
                let day = u32::from_be_bytes(key[key.len() - 4..].try_into().expect("4 bytes"));
                if !(first_day..=last_day).contains(&day) {
                    continue;
                }
                let record = StatsRecord::decode(&app.sealer.open(key, sealed)?)
                    .map_err(|_| Error::Integrity)?;
                let d = days.entry(day).or_default();
                d.requests += record.requests;
                d.keys += record.keys;
                d.bytes += record.bytes;
            }
            after = chunk.into_iter().last().map(|(k, _)| k);
            if done {
                break;
            }
        }
        for ((tag, day), n) in app.usage.pending() {
            if store_tag.is_none_or(|s| s == tag) && (first_day..=last_day).contains(&day) {
                days.entry(day).or_default().requests += n;
            }
        }
        let today = day_of(now_ms());
        if let Some(d) = days.get_mut(&today) {
            let now = match store_tag {
                Some(tag) => app.usage.footprint(tag),
                None => app.usage.total(),
            };
            (d.keys, d.bytes) = (now.keys, now.bytes);
        }
        Ok(days)
    }

    /// How many stores the application has, counting at most one past its
    /// limit.
    pub async fn store_count(&self) -> Result<usize, Error> {
        let prefix = backend_key(b's', &[&self.state.tag]);
        let limit = self.inner.config.limits.max_stores.saturating_add(1);
        Ok(self.inner.backend.scan(&prefix, None, limit).await?.len())
    }

    /// How much the application holds, in all its stores.
    pub fn footprint(&self) -> Footprint {
        self.state.usage.total()
    }

    /// Opens `_defaultUserObjectStore`.
    pub async fn default_store(&self) -> Result<Store, Error> {
        self.store(DEFAULT_STORE).await
    }

    fn store_handle(&self, tag: Tag, record: StoreRecord) -> Store {
        Store {
            app: self.clone(),
            tag,
            name: record.name.into(),
            default_ttl: record.default_ttl,
            quota: record.quota,
        }
    }
}

/// A store of one application.
#[derive(Clone)]
pub struct Store {
    app: Application,
    tag: Tag,
    name: Arc<str>,
    default_ttl: Ttl,
    quota: StoreQuota,
}

impl Store {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The TTL of keys that neither they nor their partition give one.
    pub fn default_ttl(&self) -> Ttl {
        self.default_ttl
    }

    /// The store's own limits.
    pub fn quota(&self) -> StoreQuota {
        self.quota
    }

    /// How much the store holds.
    pub fn footprint(&self) -> Footprint {
        self.app.state.usage.footprint(self.tag)
    }

    fn partition_prefix(&self) -> Vec<u8> {
        backend_key(b'p', &[&self.app.state.tag, &self.tag])
    }

    /// Opens the partition called `name` (it exists once it holds a key or a
    /// TTL setting).
    pub async fn partition(&self, name: &str) -> Result<Partition, Error> {
        let inner = &self.app.inner;
        inner.check_name(name, "partition name")?;
        let app = &self.app.state;
        let tag = app.sealer.tag(b"partition", &self.tag, name.as_bytes());
        let cached = app
            .partitions
            .lock()
            .expect("partitions lock")
            .get(&(self.tag, tag))
            .cloned();
        let key = backend_key(b'p', &[&app.tag, &self.tag, &tag]);
        let record = match cached {
            Some(record) => Some(record),
            None => match inner.backend.get(&key).await? {
                Some(sealed) => {
                    let plain = app.sealer.open(&key, &sealed)?;
                    let record = PartitionRecord::decode(&plain).map_err(|_| Error::Integrity)?;
                    app.partitions
                        .lock()
                        .expect("partitions lock")
                        .insert((self.tag, tag), record.clone());
                    Some(record)
                }
                None => None,
            },
        };
        Ok(Partition {
            store: self.clone(),
            name: name.into(),
            tag,
            record_key: key,
            ttl: record.as_ref().and_then(|r| r.ttl),
        })
    }

    /// One page of the names of this store's partitions.
    pub async fn list_partitions(
        &self,
        cursor: Option<&str>,
        page_size: u32,
    ) -> Result<Page<String>, Error> {
        self.app.admit(self.tag)?;
        let prefix = self.partition_prefix();
        let sealer = &self.app.state.sealer;
        let page = scan_page(
            &*self.app.inner.backend,
            sealer,
            &prefix,
            cursor,
            page_size,
            |key, sealed| {
                let plain = sealer.open(key, sealed)?;
                Ok(Some(
                    PartitionRecord::decode(&plain)
                        .map_err(|_| Error::Integrity)?
                        .name,
                ))
            },
        )
        .await?;
        Ok(page)
    }

    /// Deletes the partition `name` with all its keys and settings; returns
    /// how many live keys it held.
    pub async fn delete_partition(&self, name: &str) -> Result<u64, Error> {
        let partition = self.partition(name).await?;
        self.app.admit(self.tag)?;
        let removed = delete_entries(
            &*self.app.inner.backend,
            &self.app.state,
            &partition.entry_prefix(),
        )
        .await?;
        let mut batch = Batch::new();
        batch.delete(partition.record_key.clone(), Expect::Any);
        self.app.inner.backend.commit(batch).await?;
        self.app
            .state
            .partitions
            .lock()
            .expect("partitions lock")
            .remove(&(self.tag, partition.tag));
        Ok(removed)
    }
}

/// Collects one page from a prefix scan, decoding each record with `decode`
/// (which returns `None` for records to skip, such as expired keys).
async fn scan_page<T>(
    backend: &dyn Backend,
    sealer: &Sealer,
    prefix: &[u8],
    cursor: Option<&str>,
    page_size: u32,
    mut decode: impl FnMut(&[u8], &[u8]) -> Result<Option<T>, Error>,
) -> Result<Page<T>, Error> {
    let want = clamp_page_size(page_size);
    let mut after = decode_cursor(sealer, prefix, cursor)?.map(|tag| {
        let mut key = prefix.to_vec();
        key.extend_from_slice(&tag);
        key
    });
    let mut items = Vec::with_capacity(want.min(64));
    loop {
        // Ask for one more than needed to learn whether another page exists.
        let ask = want - items.len() + 1;
        let batch = backend.scan(prefix, after.as_deref(), ask).await?;
        let exhausted = batch.len() < ask;
        for (key, sealed) in batch {
            if items.len() == want {
                let last = after.as_deref().expect("a full page has a last key");
                return Ok(Page {
                    items,
                    cursor: Some(encode_cursor(sealer, prefix, &last[last.len() - TAG_LEN..])),
                });
            }
            if let Some(item) = decode(&key, &sealed)? {
                items.push(item);
            }
            after = Some(key);
        }
        if exhausted {
            return Ok(Page {
                items,
                cursor: None,
            });
        }
    }
}

/// A partition of a store: the unit most operations work on.
#[derive(Clone)]
pub struct Partition {
    store: Store,
    name: Arc<str>,
    tag: Tag,
    record_key: Vec<u8>,
    ttl: Option<Ttl>,
}

impl Partition {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The store this partition belongs to.
    pub fn parent(&self) -> &Store {
        &self.store
    }

    /// The TTL for keys without their own: the partition's or the store's.
    /// The application's view of the partition wins over this handle's, so
    /// that a TTL set through another handle applies at once.
    pub fn effective_ttl(&self) -> Ttl {
        let cached = self
            .app()
            .partitions
            .lock()
            .expect("partitions lock")
            .get(&(self.store.tag, self.tag))
            .map(|r| r.ttl);
        cached.unwrap_or(self.ttl).unwrap_or(self.store.default_ttl)
    }

    /// Makes the partition record if this application does not know it
    /// exists: on its first write, and again after the partition was
    /// deleted. Never overwrites a record (and so its TTL).
    async fn ensure_record(&self) -> Result<(), Error> {
        let id = (self.store.tag, self.tag);
        let app = self.app();
        if app
            .partitions
            .lock()
            .expect("partitions lock")
            .contains_key(&id)
        {
            return Ok(());
        }
        let mine = PartitionRecord {
            name: self.name.to_string(),
            ttl: self.ttl,
        };
        // If someone made it first, theirs holds the settings.
        let plain = self
            .inner()
            .read_or_create(&app.sealer, &self.record_key, || Some(mine.encode()))
            .await?
            .expect("created if absent");
        let record = PartitionRecord::decode(&plain).map_err(|_| Error::Integrity)?;
        app.partitions
            .lock()
            .expect("partitions lock")
            .insert(id, record);
        Ok(())
    }

    fn inner(&self) -> &Inner {
        &self.store.app.inner
    }

    fn app(&self) -> &AppState {
        &self.store.app.state
    }

    fn entry_prefix(&self) -> Vec<u8> {
        backend_key(b'e', &[&self.app().tag, &self.store.tag, &self.tag])
    }

    fn entry_key(&self, key: &str) -> Result<Vec<u8>, Error> {
        self.inner().check_name(key, "key")?;
        let key_tag = self.app().sealer.tag(b"key", &self.tag, key.as_bytes());
        let mut full = self.entry_prefix();
        full.extend_from_slice(&key_tag);
        Ok(full)
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

    /// Sets the TTL for keys stored here without their own (`None`: the
    /// store's). Applies to later writes.
    pub async fn set_ttl(&mut self, ttl: Option<Ttl>) -> Result<(), Error> {
        self.store.app.admit(self.store.tag)?;
        let ttl = ttl.map(Ttl::check).transpose()?;
        let record = PartitionRecord {
            name: self.name.to_string(),
            ttl,
        };
        let app = self.app();
        let mut batch = Batch::new();
        batch.put(
            self.record_key.clone(),
            app.sealer.seal(&self.record_key, &record.encode()),
            Expect::Any,
        );
        self.inner().backend.commit(batch).await?;
        app.partitions
            .lock()
            .expect("partitions lock")
            .insert((self.store.tag, self.tag), record);
        self.ttl = ttl;
        Ok(())
    }

    /// Reads what is stored under `entry_key`: the record, its sealed bytes
    /// (the expectation for a conditional write) and whether it is live
    /// (not expired).
    async fn load(&self, entry_key: &[u8]) -> Result<Option<Stored>, Error> {
        let Some(sealed) = self.inner().backend.get(entry_key).await? else {
            return Ok(None);
        };
        let record = match self.app().open_entry(entry_key, &sealed) {
            Ok(record) => Some(record),
            Err(Error::Integrity) => None,
            Err(e) => return Err(e),
        };
        let live = record
            .as_ref()
            .is_some_and(|r| r.expires.is_none_or(|e| e > now_ms()));
        Ok(Some(Stored {
            record,
            sealed,
            live,
        }))
    }

    /// Writes `record` in place of `previous` (what was last read),
    /// keeping the expiry index and the usage counts in step. Returns
    /// `false`, writing nothing, if the key changed since it was read; fails
    /// with `QuotaExceeded` if the write would grow the application past a
    /// quota.
    async fn commit_entry(
        &self,
        entry_key: &[u8],
        previous: Option<&Stored>,
        record: Option<&EntryRecord>,
    ) -> Result<bool, Error> {
        let app = self.app();
        let mut batch = Batch::new();
        let expect = match previous {
            Some(stored) => Expect::Value(stored.sealed.clone()),
            None => Expect::Absent,
        };
        let tags = &entry_key[1..];
        if let Some(expires) = previous
            .and_then(|p| p.record.as_ref())
            .and_then(|r| r.expires)
        {
            batch.delete(expiry_key(expires, tags), Expect::Any);
        }
        let footprint = |sealed: &[u8]| (entry_key.len() + sealed.len()) as i64;
        let old_bytes = previous.map_or(0, |p| footprint(&p.sealed));
        let (keys, bytes) = match record {
            Some(record) => {
                let sealed = app.sealer.seal(entry_key, &record.encode());
                let delta = (
                    i64::from(previous.is_none()),
                    footprint(&sealed) - old_bytes,
                );
                batch.put(entry_key.to_vec(), sealed, expect);
                if let Some(expires) = record.expires {
                    batch.put(expiry_key(expires, tags), Vec::new(), Expect::Any);
                }
                delta
            }
            None => {
                batch.delete(entry_key.to_vec(), expect);
                (-1, -old_bytes)
            }
        };
        app.usage
            .check_quota(keys, bytes, &self.inner().config.limits)?;
        app.usage
            .check_store_quota(self.store.tag, keys, bytes, &self.store.quota)?;
        if record.is_some() {
            self.ensure_record().await?;
        }
        match self.inner().backend.commit(batch).await {
            Ok(()) => {}
            Err(BackendError::Conflict) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        app.usage.apply(self.store.tag, keys, bytes);
        Ok(true)
    }

    /// The read-modify-write cycle behind every write: under this host's
    /// lock for the key, read the current record, let `change` decide the
    /// new one, and commit it conditionally, retrying if another host got
    /// there first.
    async fn modify<T>(
        &self,
        key: &str,
        damaged: Damaged,
        change: impl FnMut(Option<&EntryRecord>, u64) -> Result<(Option<EntryRecord>, T), Error>,
    ) -> Result<T, Error> {
        Ok(self.modify_reporting_damage(key, damaged, change).await?.0)
    }

    /// [`modify`](Self::modify), also saying whether a damaged record was
    /// replaced or deleted.
    async fn modify_reporting_damage<T>(
        &self,
        key: &str,
        damaged: Damaged,
        mut change: impl FnMut(Option<&EntryRecord>, u64) -> Result<(Option<EntryRecord>, T), Error>,
    ) -> Result<(T, bool), Error> {
        self.store.app.admit(self.store.tag)?;
        let entry_key = self.entry_key(key)?;
        let _guard = self.inner().key_locks.lock(&entry_key).await;
        for _ in 0..MAX_CONFLICT_RETRIES {
            let stored = self.load(&entry_key).await?;
            if damaged == Damaged::Refuse && stored.as_ref().is_some_and(|s| s.record.is_none()) {
                return Err(Error::Integrity);
            }
            let live = stored.as_ref().and_then(Stored::live_record);
            let was_damaged = stored.as_ref().is_some_and(|s| s.record.is_none());
            let (next, out) = change(live, now_ms())?;
            if next.is_none() && stored.as_ref().is_none_or(Stored::is_dead) {
                return Ok((out, false));
            }
            if self
                .commit_entry(&entry_key, stored.as_ref(), next.as_ref())
                .await?
            {
                return Ok((out, was_damaged));
            }
        }
        Err(Error::Unavailable(
            "the key is changing too fast to update; try again".into(),
        ))
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

    /// Stores `value` under `key`; returns its metadata once durable.
    pub async fn store(
        &self,
        key: &str,
        value: Vec<u8>,
        options: StoreOptions,
    ) -> Result<Metadata, Error> {
        self.check_value(&value)?;
        let ttl = options.ttl.map(Ttl::check).transpose()?;
        let kind = options.kind.unwrap_or_else(|| ValueKind::of(&value));
        self.modify(key, Damaged::Replace, |previous, now| {
            if options.fail_if_present && previous.is_some() {
                return Err(Error::KeyAlreadyExists);
            }
            let record = self.next_record(key, previous, value.clone(), kind, ttl, now);
            let meta = record.metadata();
            Ok((Some(record), meta))
        })
        .await
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
        self.check_value(&value)?;
        let ttl = options.ttl.map(Ttl::check).transpose()?;
        let kind = options.kind.unwrap_or_else(|| ValueKind::of(&value));
        self.modify(key, Damaged::Refuse, |previous, now| {
            let current = previous.map(|p| p.version);
            if current != expected {
                return Err(Error::VersionMismatch { current });
            }
            let record = self.next_record(key, previous, value.clone(), kind, ttl, now);
            let meta = record.metadata();
            Ok((Some(record), meta))
        })
        .await
    }

    /// Adds `delta` to the decimal counter under `key` (absent counts as 0)
    /// and returns the new value.
    pub async fn increment(&self, key: &str, delta: i64) -> Result<i64, Error> {
        self.modify(key, Damaged::Refuse, |previous, now| {
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
        })
        .await
    }

    /// Counts a read of `key` and loads it; fails unless it is there, live
    /// and intact. The returned [`Stored`] always holds a record.
    async fn load_live(&self, key: &str) -> Result<(Vec<u8>, Stored), Error> {
        self.store.app.admit(self.store.tag)?;
        let entry_key = self.entry_key(key)?;
        let stored = self.load(&entry_key).await?.ok_or(Error::KeyNotFound)?;
        match (&stored.record, stored.live) {
            (None, _) => Err(Error::Integrity),
            (Some(_), false) => Err(Error::KeyNotFound),
            (Some(_), true) => Ok((entry_key, stored)),
        }
    }

    /// Reads `key` without extending a rolling TTL: a look at the key, as
    /// an administrator takes, rather than a use of it.
    pub async fn peek(&self, key: &str) -> Result<Entry, Error> {
        let (_, stored) = self.load_live(key).await?;
        let record = stored.record.expect("load_live returns a record");
        Ok(record.into_entry())
    }

    /// Reads `key`, extending a rolling TTL.
    pub async fn retrieve(&self, key: &str) -> Result<Entry, Error> {
        let (entry_key, stored) = self.load_live(key).await?;
        let mut record = stored.record.clone().expect("load_live returns a record");
        if let Ttl::Rolling(secs) = record.ttl {
            let now = now_ms();
            let window = secs.saturating_mul(1000);
            let extended_at = record.expires.unwrap_or(now).saturating_sub(window);
            // Extend only once a quarter of the window has passed, so that a
            // hot key costs a write per quarter window, not one per read.
            if now.saturating_sub(extended_at) >= window / 4 {
                let mut refreshed = record.clone();
                refreshed.expires = Some(now.saturating_add(window));
                let _guard = self.inner().key_locks.lock(&entry_key).await;
                match self
                    .commit_entry(&entry_key, Some(&stored), Some(&refreshed))
                    .await
                {
                    Ok(true) => record = refreshed,
                    // A concurrent write replaced the key and set its
                    // expiry; or the store is at its byte quota, which must
                    // not make reads fail.
                    Ok(false) | Err(Error::QuotaExceeded(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(record.into_entry())
    }

    /// Whether `key` exists; does not extend a rolling TTL.
    pub async fn contains(&self, key: &str) -> Result<bool, Error> {
        self.store.app.admit(self.store.tag)?;
        let entry_key = self.entry_key(key)?;
        match self.load(&entry_key).await? {
            Some(stored) if stored.record.is_none() => Err(Error::Integrity),
            stored => Ok(stored.is_some_and(|s| s.live)),
        }
    }

    /// Removes `key` and returns what it held.
    pub async fn remove(&self, key: &str) -> Result<Entry, Error> {
        self.modify(key, Damaged::Refuse, |previous, _| match previous {
            Some(p) => Ok((None, p.clone().into_entry())),
            None => Err(Error::KeyNotFound),
        })
        .await
    }

    /// Deletes `key` if it is there, even if its record is damaged; returns
    /// whether it was.
    pub async fn delete(&self, key: &str) -> Result<bool, Error> {
        let (live, damaged) = self
            .modify_reporting_damage(key, Damaged::Replace, |previous, _| {
                Ok((None, previous.is_some()))
            })
            .await?;
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
        self.store.app.admit(self.store.tag)?;
        let now = now_ms();
        let app = self.app();
        scan_page(
            &*self.inner().backend,
            &app.sealer,
            &self.entry_prefix(),
            cursor,
            page_size,
            |key, sealed| {
                let record = app.open_entry(key, sealed)?;
                Ok(record
                    .expires
                    .is_none_or(|e| e > now)
                    .then(|| map(record))
                    .flatten())
            },
        )
        .await
    }

    /// Removes every key; returns how many live keys there were.
    pub async fn clear(&self) -> Result<u64, Error> {
        self.store.app.admit(self.store.tag)?;
        delete_entries(&*self.inner().backend, self.app(), &self.entry_prefix()).await
    }
}

/// Deletes every entry under `prefix` with its expiry index entry; returns
/// how many were live. Writes racing with it may survive or not.
async fn delete_entries(
    backend: &dyn Backend,
    app: &AppState,
    prefix: &[u8],
) -> Result<u64, Error> {
    let now = now_ms();
    let mut removed = 0;
    loop {
        let chunk = backend.scan(prefix, None, 256).await?;
        if chunk.is_empty() {
            return Ok(removed);
        }
        let mut batch = Batch::new();
        let mut freed: HashMap<Tag, (i64, i64)> = HashMap::new();
        for (key, sealed) in &chunk {
            match app.open_entry(key, sealed) {
                Ok(record) => {
                    if record.expires.is_none_or(|e| e > now) {
                        removed += 1;
                    }
                    if let Some(expires) = record.expires {
                        batch.delete(expiry_key(expires, &key[1..]), Expect::Any);
                    }
                }
                // A damaged record goes too (its index entry, if any, is
                // dropped by the sweep); it counts as a key that was there.
                Err(Error::Integrity) => removed += 1,
                Err(e) => return Err(e),
            }
            batch.delete(key.clone(), Expect::Any);
            let f = freed.entry(store_tag_of(key)).or_default();
            f.0 -= 1;
            f.1 -= (key.len() + sealed.len()) as i64;
        }
        backend.commit(batch).await?;
        for (store, (keys, bytes)) in freed {
            app.usage.apply(store, keys, bytes);
        }
    }
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

/// Length of an expiry index key: `x`, the expiry, four tags.
const EXPIRY_KEY_LEN: usize = 1 + 8 + 4 * TAG_LEN;

fn expiry_key(expires: u64, tags: &[u8]) -> Vec<u8> {
    backend_key(b'x', &[&expires.to_be_bytes(), tags])
}

impl EntryRecord {
    fn metadata(&self) -> Metadata {
        Metadata {
            created: self.created,
            updated: self.updated,
            expires: self.expires,
            ttl: self.ttl,
            version: self.version,
            size: self.value.len() as u64,
            kind: self.kind,
        }
    }

    fn into_entry(self) -> Entry {
        Entry {
            metadata: self.metadata(),
            key: self.key,
            value: self.value,
        }
    }
}

#[cfg(test)]
mod tests;

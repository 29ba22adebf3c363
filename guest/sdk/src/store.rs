//! Idiomatic wrappers over the `ostore:objectstore/store` resources.

use std::fmt;

use ostore_status::ErrorCode;

use crate::bindings::ostore::objectstore::{store as raw, types};
use crate::{Entry, EntryPage, KeyPage, KeyValue, Metadata, PartitionPage, StoreOptions, Ttl};

/// The page size the iterators ask for: the largest the host accepts.
const ITER_PAGE_SIZE: u32 = 1000;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an object-store operation failed.
///
/// The cases are those of the WIT `error` variant; each operation documents
/// which ones it returns. [`Display`](fmt::Display) gives a short English
/// sentence suitable for logs or an HTTP error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The key does not exist, or has expired.
    KeyNotFound,
    /// `fail_if_present` was set and the key already exists.
    KeyAlreadyExists,
    /// A key, store name or partition name is empty, too long or contains a
    /// control character; the string says which rule was broken.
    InvalidKey(String),
    /// The value is larger than the host's limit, given in bytes.
    ValueTooLarge(u64),
    /// An argument other than a key is unusable (malformed cursor, zero TTL,
    /// `increment` on a non-integer value or overflowing it).
    InvalidArgument(String),
    /// `compare_and_swap` found another version: the current one, or `None`
    /// if the key is absent.
    VersionMismatch(Option<u64>),
    /// The store cannot serve the request; nothing was changed.
    StoreNotAvailable(String),
    /// Too many requests; retry after this many milliseconds.
    RateLimited(u64),
    /// A key-count or byte quota would be exceeded; the string names it.
    QuotaExceeded(String),
    /// The application may not use this store or partition.
    AccessDenied,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::KeyNotFound => f.write_str("key not found"),
            Error::KeyAlreadyExists => f.write_str("key already exists"),
            Error::InvalidKey(why) => write!(f, "invalid key: {why}"),
            Error::ValueTooLarge(limit) => {
                write!(f, "value too large: the limit is {limit} bytes")
            }
            Error::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
            Error::VersionMismatch(Some(v)) => {
                write!(f, "version mismatch: the current version is {v}")
            }
            Error::VersionMismatch(None) => f.write_str("version mismatch: the key does not exist"),
            Error::StoreNotAvailable(why) => write!(f, "store not available: {why}"),
            Error::RateLimited(ms) => write!(f, "rate limited: retry in {ms} ms"),
            Error::QuotaExceeded(quota) => write!(f, "quota exceeded: {quota}"),
            Error::AccessDenied => f.write_str("access denied"),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// The error as the WIT interface names it; its HTTP status comes from
    /// [`ErrorCode::http_status`], the table every front end shares.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::KeyNotFound => ErrorCode::KeyNotFound,
            Error::KeyAlreadyExists => ErrorCode::KeyAlreadyExists,
            Error::InvalidKey(_) => ErrorCode::InvalidKey,
            Error::ValueTooLarge(_) => ErrorCode::ValueTooLarge,
            Error::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Error::VersionMismatch(_) => ErrorCode::VersionMismatch,
            Error::StoreNotAvailable(_) => ErrorCode::StoreNotAvailable,
            Error::RateLimited(_) => ErrorCode::RateLimited,
            Error::QuotaExceeded(_) => ErrorCode::QuotaExceeded,
            Error::AccessDenied => ErrorCode::AccessDenied,
        }
    }
}

impl From<types::Error> for Error {
    fn from(e: types::Error) -> Self {
        match e {
            types::Error::KeyNotFound => Error::KeyNotFound,
            types::Error::KeyAlreadyExists => Error::KeyAlreadyExists,
            types::Error::InvalidKey(s) => Error::InvalidKey(s),
            types::Error::ValueTooLarge(n) => Error::ValueTooLarge(n),
            types::Error::InvalidArgument(s) => Error::InvalidArgument(s),
            types::Error::VersionMismatch(v) => Error::VersionMismatch(v),
            types::Error::StoreNotAvailable(s) => Error::StoreNotAvailable(s),
            types::Error::RateLimited(ms) => Error::RateLimited(ms),
            types::Error::QuotaExceeded(s) => Error::QuotaExceeded(s),
            types::Error::AccessDenied => Error::AccessDenied,
        }
    }
}

impl Default for StoreOptions {
    /// Overwrite existing keys; use the partition's (or store's) TTL.
    fn default() -> Self {
        StoreOptions {
            fail_if_present: false,
            ttl: None,
        }
    }
}

impl StoreOptions {
    /// The default options: overwrite, inherit the TTL.
    pub fn new() -> Self {
        Self::default()
    }

    /// Give the key its own TTL instead of the partition's.
    pub fn with_ttl(mut self, ttl: Ttl) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Fail with [`Error::KeyAlreadyExists`] instead of overwriting.
    pub fn with_fail_if_present(mut self, fail_if_present: bool) -> Self {
        self.fail_if_present = fail_if_present;
        self
    }
}

/// A named store of the application: a set of partitions with a default TTL.
#[derive(Debug)]
pub struct Store {
    inner: raw::Store,
}

impl Store {
    /// Opens the store called `name`, creating it on first use.
    ///
    /// Errors: [`Error::InvalidKey`], [`Error::StoreNotAvailable`].
    pub fn open(name: &str) -> Result<Store> {
        Ok(Store {
            inner: raw::Store::open(name)?,
        })
    }

    /// Opens `_defaultUserObjectStore`, the store every application has.
    ///
    /// Errors: [`Error::StoreNotAvailable`].
    pub fn open_default() -> Result<Store> {
        Ok(Store {
            inner: raw::Store::open_default()?,
        })
    }

    /// The store's name.
    pub fn name(&self) -> String {
        self.inner.name()
    }

    /// The TTL keys get when neither they nor their partition set one.
    pub fn default_ttl(&self) -> Result<Ttl> {
        Ok(self.inner.default_ttl()?)
    }

    /// Opens the partition called `name`; it comes into being with its first
    /// key.
    ///
    /// Errors: [`Error::InvalidKey`].
    pub fn partition(&self, name: &str) -> Result<Partition> {
        Ok(Partition {
            inner: self.inner.partition(name)?,
        })
    }

    /// One page of partition names; pass the previous page's cursor (or
    /// `None` for the first page). The host clamps `page_size` to 1..=1000.
    pub fn list_partitions(&self, cursor: Option<&str>, page_size: u32) -> Result<PartitionPage> {
        Ok(self.inner.list_partitions(cursor, page_size)?)
    }

    /// All partition names, fetched page by page as the iterator advances.
    pub fn partitions(&self) -> Partitions<'_> {
        Partitions {
            pages: Pager::new(),
            store: self,
        }
    }

    /// Deletes a partition with all its keys; returns how many keys it held.
    pub fn delete_partition(&self, name: &str) -> Result<u64> {
        Ok(self.inner.delete_partition(name)?)
    }

    /// The underlying generated resource.
    pub fn as_raw(&self) -> &raw::Store {
        &self.inner
    }
}

/// A named group of keys inside a [`Store`].
#[derive(Debug)]
pub struct Partition {
    inner: raw::Partition,
}

impl Partition {
    /// The partition's name.
    pub fn name(&self) -> String {
        self.inner.name()
    }

    /// Sets the TTL of keys stored here without one of their own; `None`
    /// goes back to the store's default. Applies to later writes.
    pub fn set_ttl(&self, ttl: Option<Ttl>) -> Result<()> {
        Ok(self.inner.set_ttl(ttl)?)
    }

    /// Stores `value` under `key`, overwriting any previous value, with the
    /// partition's TTL. Returns the new metadata once the write is durable.
    pub fn store(&self, key: &str, value: impl AsRef<[u8]>) -> Result<Metadata> {
        self.store_with(key, value, StoreOptions::default())
    }

    /// Stores `value` under `key` with explicit [`StoreOptions`].
    pub fn store_with(
        &self,
        key: &str,
        value: impl AsRef<[u8]>,
        options: StoreOptions,
    ) -> Result<Metadata> {
        Ok(self.inner.store(key, value.as_ref(), options)?)
    }

    /// Reads the entry under `key` (extending a rolling TTL).
    ///
    /// Errors: [`Error::KeyNotFound`] among others; see [`Partition::get`]
    /// for a variant that answers `None` instead.
    pub fn retrieve(&self, key: &str) -> Result<Entry> {
        Ok(self.inner.retrieve(key)?)
    }

    /// Reads the value under `key`, or `None` if there is none.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match self.inner.retrieve(key) {
            Ok(entry) => Ok(Some(entry.value)),
            Err(types::Error::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `key` exists (without extending a rolling TTL).
    pub fn contains(&self, key: &str) -> Result<bool> {
        Ok(self.inner.contains(key)?)
    }

    /// Removes `key` and returns what it held.
    ///
    /// Errors: [`Error::KeyNotFound`] among others.
    pub fn remove(&self, key: &str) -> Result<Entry> {
        Ok(self.inner.remove(key)?)
    }

    /// Removes every key and returns how many there were.
    pub fn clear(&self) -> Result<u64> {
        Ok(self.inner.clear()?)
    }

    /// One page of key names; pass the previous page's cursor (or `None` for
    /// the first page). The host clamps `page_size` to 1..=1000.
    pub fn retrieve_all_keys(&self, cursor: Option<&str>, page_size: u32) -> Result<KeyPage> {
        Ok(self.inner.retrieve_all_keys(cursor, page_size)?)
    }

    /// One page of entries (keys with values), like
    /// [`Partition::retrieve_all_keys`].
    pub fn retrieve_all(&self, cursor: Option<&str>, page_size: u32) -> Result<EntryPage> {
        Ok(self.inner.retrieve_all(cursor, page_size)?)
    }

    /// One page of the key names that start with `prefix`, in byte order;
    /// an empty prefix lists every key. A cursor resumes only the listing of
    /// the same prefix (another gives [`Error::InvalidArgument`]).
    pub fn retrieve_all_keys_with_prefix(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        page_size: u32,
    ) -> Result<KeyPage> {
        Ok(self
            .inner
            .retrieve_all_keys_with_prefix(prefix, cursor, page_size)?)
    }

    /// One page of the entries whose keys start with `prefix`, like
    /// [`Partition::retrieve_all_keys_with_prefix`].
    pub fn retrieve_all_with_prefix(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        page_size: u32,
    ) -> Result<EntryPage> {
        Ok(self
            .inner
            .retrieve_all_with_prefix(prefix, cursor, page_size)?)
    }

    /// All key names, fetched page by page as the iterator advances. After
    /// yielding an error the iterator ends.
    pub fn keys(&self) -> Keys<'_> {
        Keys {
            pages: Pager::new(),
            partition: self,
            prefix: None,
        }
    }

    /// The key names that start with `prefix`, in byte order, fetched page
    /// by page as the iterator advances; the host reads only the matching
    /// keys, however many others the partition holds.
    pub fn keys_with_prefix(&self, prefix: &str) -> Keys<'_> {
        Keys {
            pages: Pager::new(),
            partition: self,
            prefix: Some(prefix.to_owned()),
        }
    }

    /// All entries, fetched page by page as the iterator advances. After
    /// yielding an error the iterator ends.
    pub fn entries(&self) -> Entries<'_> {
        Entries {
            pages: Pager::new(),
            partition: self,
            prefix: None,
        }
    }

    /// The entries whose keys start with `prefix`, like
    /// [`Partition::keys_with_prefix`].
    pub fn entries_with_prefix(&self, prefix: &str) -> Entries<'_> {
        Entries {
            pages: Pager::new(),
            partition: self,
            prefix: Some(prefix.to_owned()),
        }
    }

    /// Reads several keys in one call: for each key, in the order given, its
    /// entry or `None` if it does not exist. Rolling TTLs are extended as
    /// [`Partition::retrieve`] extends them.
    ///
    /// At most 1000 keys, each once, and at most 16 MiB of values found;
    /// more gives [`Error::InvalidArgument`].
    pub fn retrieve_many<K: AsRef<str>>(&self, keys: &[K]) -> Result<Vec<Option<Entry>>> {
        let keys: Vec<String> = keys.iter().map(|k| k.as_ref().to_owned()).collect();
        Ok(self.inner.retrieve_many(&keys)?)
    }

    /// Stores several keys in one atomic write: all of them or, on any
    /// error, none. Returns each key's new metadata in the order given.
    /// With [`StoreOptions::with_fail_if_present`], one existing key fails
    /// the whole call with [`Error::KeyAlreadyExists`]; a quota the batch as
    /// a whole would exceed fails it with [`Error::QuotaExceeded`].
    ///
    /// At most 1000 keys, each once, and at most 16 MiB of keys and values
    /// together; more gives [`Error::InvalidArgument`].
    pub fn store_many<K: AsRef<str>, V: AsRef<[u8]>>(
        &self,
        entries: impl IntoIterator<Item = (K, V)>,
        options: StoreOptions,
    ) -> Result<Vec<Metadata>> {
        let entries: Vec<KeyValue> = entries
            .into_iter()
            .map(|(key, value)| KeyValue {
                key: key.as_ref().to_owned(),
                value: value.as_ref().to_vec(),
            })
            .collect();
        Ok(self.inner.store_many(&entries, options)?)
    }

    /// Removes several keys in one atomic write; says for each key, in the
    /// order given, whether it was there (a missing key is no error).
    ///
    /// At most 1000 keys, each once; more gives [`Error::InvalidArgument`].
    pub fn remove_many<K: AsRef<str>>(&self, keys: &[K]) -> Result<Vec<bool>> {
        let keys: Vec<String> = keys.iter().map(|k| k.as_ref().to_owned()).collect();
        Ok(self.inner.remove_many(&keys)?)
    }

    /// Atomically adds `delta` to the decimal counter under `key` (a missing
    /// key counts as 0) and returns the new value.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64> {
        Ok(self.inner.increment(key, delta)?)
    }

    /// Writes `value` only if the key's current version is `expected`
    /// (`None`: only if the key does not exist).
    ///
    /// Errors: [`Error::VersionMismatch`] with the current version, among
    /// others.
    pub fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<u64>,
        value: impl AsRef<[u8]>,
        options: StoreOptions,
    ) -> Result<Metadata> {
        Ok(self
            .inner
            .compare_and_swap(key, expected, value.as_ref(), options)?)
    }

    /// The underlying generated resource.
    pub fn as_raw(&self) -> &raw::Partition {
        &self.inner
    }
}

/// Walks a paginated listing: holds the current page's items and the cursor
/// of the next one.
#[derive(Debug)]
struct Pager<T> {
    items: std::vec::IntoIter<T>,
    /// `Some(None)` before the first fetch, `Some(Some(c))` when another page
    /// follows, `None` once the listing (or an error) ended it.
    next: Option<Option<String>>,
}

impl<T> Pager<T> {
    fn new() -> Self {
        Pager {
            items: Vec::new().into_iter(),
            next: Some(None),
        }
    }

    /// The next item, fetching pages with `fetch(cursor)` as needed. Pages
    /// may be empty without the listing having ended.
    fn next_with(
        &mut self,
        mut fetch: impl FnMut(Option<&str>) -> Result<(Vec<T>, Option<String>)>,
    ) -> Option<Result<T>> {
        loop {
            if let Some(item) = self.items.next() {
                return Some(Ok(item));
            }
            let cursor = self.next.take()?;
            match fetch(cursor.as_deref()) {
                Ok((items, next)) => {
                    self.items = items.into_iter();
                    self.next = next.map(Some);
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Iterator over a partition's key names; see [`Partition::keys`].
#[derive(Debug)]
pub struct Keys<'a> {
    pages: Pager<String>,
    partition: &'a Partition,
    prefix: Option<String>,
}

impl Iterator for Keys<'_> {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Self::Item> {
        let (partition, prefix) = (self.partition, self.prefix.as_deref());
        self.pages.next_with(|cursor| {
            let page = match prefix {
                Some(prefix) => {
                    partition.retrieve_all_keys_with_prefix(prefix, cursor, ITER_PAGE_SIZE)?
                }
                None => partition.retrieve_all_keys(cursor, ITER_PAGE_SIZE)?,
            };
            Ok((page.keys, page.cursor))
        })
    }
}

/// Iterator over a partition's entries; see [`Partition::entries`].
#[derive(Debug)]
pub struct Entries<'a> {
    pages: Pager<Entry>,
    partition: &'a Partition,
    prefix: Option<String>,
}

impl Iterator for Entries<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        let (partition, prefix) = (self.partition, self.prefix.as_deref());
        self.pages.next_with(|cursor| {
            let page = match prefix {
                Some(prefix) => {
                    partition.retrieve_all_with_prefix(prefix, cursor, ITER_PAGE_SIZE)?
                }
                None => partition.retrieve_all(cursor, ITER_PAGE_SIZE)?,
            };
            Ok((page.entries, page.cursor))
        })
    }
}

/// Iterator over a store's partition names; see [`Store::partitions`].
#[derive(Debug)]
pub struct Partitions<'a> {
    pages: Pager<String>,
    store: &'a Store,
}

impl Iterator for Partitions<'_> {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Self::Item> {
        let store = self.store;
        self.pages.next_with(|cursor| {
            let page = store.list_partitions(cursor, ITER_PAGE_SIZE)?;
            Ok((page.partitions, page.cursor))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pager over fixed pages, counting fetches and recording cursors.
    fn walk(
        pages: &[(&[u32], Option<&str>)],
        fail_at: Option<usize>,
    ) -> (Vec<Result<u32>>, Vec<Option<String>>) {
        let mut pager = Pager::new();
        let mut cursors = Vec::new();
        let mut out = Vec::new();
        while let Some(item) = pager.next_with(|cursor| {
            let n = cursors.len();
            cursors.push(cursor.map(str::to_owned));
            if fail_at == Some(n) {
                return Err(Error::RateLimited(5));
            }
            let (items, next) = pages[n];
            Ok((items.to_vec(), next.map(str::to_owned)))
        }) {
            out.push(item);
        }
        (out, cursors)
    }

    #[test]
    fn pager_follows_cursors_and_skips_empty_pages() {
        let (items, cursors) = walk(
            &[(&[1, 2], Some("c1")), (&[], Some("c2")), (&[3], None)],
            None,
        );
        assert_eq!(items, vec![Ok(1), Ok(2), Ok(3)]);
        assert_eq!(
            cursors,
            vec![None, Some("c1".to_owned()), Some("c2".to_owned())]
        );
    }

    #[test]
    fn pager_ends_after_an_error() {
        let (items, cursors) = walk(&[(&[1], Some("c1"))], Some(1));
        assert_eq!(items, vec![Ok(1), Err(Error::RateLimited(5))]);
        assert_eq!(cursors.len(), 2);
    }

    #[test]
    fn empty_listing() {
        let (items, cursors) = walk(&[(&[], None)], None);
        assert!(items.is_empty());
        assert_eq!(cursors, vec![None]);
    }

    #[test]
    fn errors_convert_and_display() {
        let e: Error = types::Error::ValueTooLarge(10).into();
        assert_eq!(e, Error::ValueTooLarge(10));
        assert_eq!(e.to_string(), "value too large: the limit is 10 bytes");
        assert_eq!(
            Error::from(types::Error::KeyNotFound).to_string(),
            "key not found"
        );
    }

    #[test]
    fn store_options_builder() {
        let o = StoreOptions::new()
            .with_ttl(Ttl::Rolling(60))
            .with_fail_if_present(true);
        assert!(o.fail_if_present);
        assert_eq!(o.ttl, Some(Ttl::Rolling(60)));
        assert_eq!(StoreOptions::default().ttl, None);
    }
}

//! The object store as a component import: what a guest calls through
//! `ostore:objectstore/store`, and what an embedder adds to a linker.
//!
//! The shape follows wasmtime's WASI crates: an [`ObjectStoreCtx`] lives in
//! the store data, an [`ObjectStoreView`] implementation lends it out
//! together with the resource table as an [`ObjectStoreCtxView`], and
//! [`add_to_linker`] links the interface.

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::bindings::ostore::objectstore::{store, types};
use crate::objectstore::{self, Application, Metadata, Partition, Store, StoreOptions, Ttl};

/// Per-instance state: which application the instance belongs to. Every
/// store it opens is that application's.
pub struct ObjectStoreCtx {
    app: Application,
}

impl ObjectStoreCtx {
    /// A context through which a component reaches `app`'s data only.
    pub fn new(app: Application) -> Self {
        Self { app }
    }

    pub fn application(&self) -> &Application {
        &self.app
    }
}

/// A borrow of an [`ObjectStoreCtx`] and the instance's resource table; the
/// generated `Host` traits are implemented on it.
pub struct ObjectStoreCtxView<'a> {
    pub ctx: &'a mut ObjectStoreCtx,
    pub table: &'a mut ResourceTable,
}

/// Implemented by an embedder's store data to lend out the object store.
pub trait ObjectStoreView: Send {
    fn objectstore(&mut self) -> ObjectStoreCtxView<'_>;
}

struct ObjectStoreBinding;

impl HasData for ObjectStoreBinding {
    type Data<'a> = ObjectStoreCtxView<'a>;
}

/// Adds `ostore:objectstore/store` (and its types) to `linker`.
pub fn add_to_linker<T: ObjectStoreView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    crate::bindings::Objectstore::add_to_linker::<T, ObjectStoreBinding>(linker, T::objectstore)
}

/// An error of a host call: either the guest's own (returned to it as the
/// WIT `error`) or a host failure (a trap).
#[derive(Debug)]
pub struct HostError(HostErrorKind);

#[derive(Debug)]
enum HostErrorKind {
    Store(objectstore::Error),
    Trap(wasmtime::Error),
}

impl From<objectstore::Error> for HostError {
    fn from(e: objectstore::Error) -> Self {
        Self(HostErrorKind::Store(e))
    }
}

impl From<wasmtime::component::ResourceTableError> for HostError {
    fn from(e: wasmtime::component::ResourceTableError) -> Self {
        Self(HostErrorKind::Trap(e.into()))
    }
}

/// How an object-store error reads to a guest.
pub fn to_wit_error(e: objectstore::Error) -> types::Error {
    use objectstore::Error as E;
    match e {
        E::KeyNotFound | E::StoreNotFound => types::Error::KeyNotFound,
        E::KeyAlreadyExists => types::Error::KeyAlreadyExists,
        E::InvalidKey(why) => types::Error::InvalidKey(why),
        E::ValueTooLarge { limit } => types::Error::ValueTooLarge(limit),
        E::InvalidArgument(why) => types::Error::InvalidArgument(why),
        E::VersionMismatch { current } => types::Error::VersionMismatch(current),
        E::RateLimited { retry_after } => {
            types::Error::RateLimited(retry_after.as_millis().try_into().unwrap_or(u64::MAX))
        }
        E::QuotaExceeded(which) => types::Error::QuotaExceeded(which),
        E::AccessDenied => types::Error::AccessDenied,
        other @ (E::Integrity
        | E::WrongMasterKey
        | E::Storage(_)
        | E::Contended(_)
        | E::UnknownApplication) => types::Error::StoreNotAvailable(other.to_string()),
    }
}

impl types::Host for ObjectStoreCtxView<'_> {
    fn convert_error(&mut self, err: HostError) -> wasmtime::Result<types::Error> {
        match err.0 {
            HostErrorKind::Store(e) => Ok(to_wit_error(e)),
            HostErrorKind::Trap(e) => Err(e),
        }
    }
}

impl From<types::Ttl> for Ttl {
    fn from(ttl: types::Ttl) -> Self {
        match ttl {
            types::Ttl::Never => Ttl::Never,
            types::Ttl::Fixed(s) => Ttl::Fixed(s),
            types::Ttl::Rolling(s) => Ttl::Rolling(s),
        }
    }
}

impl From<Ttl> for types::Ttl {
    fn from(ttl: Ttl) -> Self {
        match ttl {
            Ttl::Never => types::Ttl::Never,
            Ttl::Fixed(s) => types::Ttl::Fixed(s),
            Ttl::Rolling(s) => types::Ttl::Rolling(s),
        }
    }
}

impl From<Metadata> for types::Metadata {
    fn from(m: Metadata) -> Self {
        Self {
            created: m.created,
            updated: m.updated,
            expires: m.expires,
            version: m.version,
            size: m.size,
        }
    }
}

impl From<objectstore::Entry> for types::Entry {
    fn from(e: objectstore::Entry) -> Self {
        Self {
            key: e.key,
            value: e.value,
            metadata: e.metadata.into(),
        }
    }
}

impl From<objectstore::Page<objectstore::Entry>> for types::EntryPage {
    fn from(page: objectstore::Page<objectstore::Entry>) -> Self {
        Self {
            entries: page.items.into_iter().map(Into::into).collect(),
            cursor: page.cursor,
        }
    }
}

impl From<objectstore::Page<String>> for types::KeyPage {
    fn from(page: objectstore::Page<String>) -> Self {
        Self {
            keys: page.items,
            cursor: page.cursor,
        }
    }
}

impl From<types::StoreOptions> for StoreOptions {
    fn from(o: types::StoreOptions) -> Self {
        Self {
            fail_if_present: o.fail_if_present,
            ttl: o.ttl.map(Ttl::from),
            kind: None,
        }
    }
}

impl store::Host for ObjectStoreCtxView<'_> {}

impl store::HostStore for ObjectStoreCtxView<'_> {
    async fn open(&mut self, name: String) -> Result<Resource<Store>, HostError> {
        let store = self.ctx.app.store(&name).await?;
        Ok(self.table.push(store)?)
    }

    async fn open_default(&mut self) -> Result<Resource<Store>, HostError> {
        let store = self.ctx.app.default_store().await?;
        Ok(self.table.push(store)?)
    }

    async fn name(&mut self, this: Resource<Store>) -> wasmtime::Result<String> {
        Ok(self.table.get(&this)?.name().to_string())
    }

    async fn default_ttl(&mut self, this: Resource<Store>) -> Result<types::Ttl, HostError> {
        Ok(self.table.get(&this)?.default_ttl().into())
    }

    async fn partition(
        &mut self,
        this: Resource<Store>,
        name: String,
    ) -> Result<Resource<Partition>, HostError> {
        let partition = self.table.get(&this)?.partition(&name).await?;
        Ok(self.table.push(partition)?)
    }

    async fn list_partitions(
        &mut self,
        this: Resource<Store>,
        cursor: Option<String>,
        page_size: u32,
    ) -> Result<types::PartitionPage, HostError> {
        let page = self
            .table
            .get(&this)?
            .list_partitions(cursor.as_deref(), page_size)
            .await?;
        Ok(types::PartitionPage {
            partitions: page.items,
            cursor: page.cursor,
        })
    }

    async fn delete_partition(
        &mut self,
        this: Resource<Store>,
        name: String,
    ) -> Result<u64, HostError> {
        Ok(self.table.get(&this)?.delete_partition(&name).await?)
    }

    async fn drop(&mut self, this: Resource<Store>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl store::HostPartition for ObjectStoreCtxView<'_> {
    async fn name(&mut self, this: Resource<Partition>) -> wasmtime::Result<String> {
        Ok(self.table.get(&this)?.name().to_string())
    }

    async fn set_ttl(
        &mut self,
        this: Resource<Partition>,
        ttl: Option<types::Ttl>,
    ) -> Result<(), HostError> {
        Ok(self
            .table
            .get_mut(&this)?
            .set_ttl(ttl.map(Ttl::from))
            .await?)
    }

    async fn store(
        &mut self,
        this: Resource<Partition>,
        key: String,
        value: Vec<u8>,
        options: types::StoreOptions,
    ) -> Result<types::Metadata, HostError> {
        let partition = self.table.get(&this)?;
        Ok(partition.store(&key, value, options.into()).await?.into())
    }

    async fn retrieve(
        &mut self,
        this: Resource<Partition>,
        key: String,
    ) -> Result<types::Entry, HostError> {
        Ok(self.table.get(&this)?.retrieve(&key).await?.into())
    }

    async fn contains(
        &mut self,
        this: Resource<Partition>,
        key: String,
    ) -> Result<bool, HostError> {
        Ok(self.table.get(&this)?.contains(&key).await?)
    }

    async fn remove(
        &mut self,
        this: Resource<Partition>,
        key: String,
    ) -> Result<types::Entry, HostError> {
        Ok(self.table.get(&this)?.remove(&key).await?.into())
    }

    async fn retrieve_all(
        &mut self,
        this: Resource<Partition>,
        cursor: Option<String>,
        page_size: u32,
    ) -> Result<types::EntryPage, HostError> {
        let partition = self.table.get(&this)?;
        Ok(partition
            .list_entries(cursor.as_deref(), page_size)
            .await?
            .into())
    }

    async fn retrieve_all_keys(
        &mut self,
        this: Resource<Partition>,
        cursor: Option<String>,
        page_size: u32,
    ) -> Result<types::KeyPage, HostError> {
        let partition = self.table.get(&this)?;
        Ok(partition
            .list_keys(cursor.as_deref(), page_size)
            .await?
            .into())
    }

    async fn clear(&mut self, this: Resource<Partition>) -> Result<u64, HostError> {
        Ok(self.table.get(&this)?.clear().await?)
    }

    async fn increment(
        &mut self,
        this: Resource<Partition>,
        key: String,
        delta: i64,
    ) -> Result<i64, HostError> {
        Ok(self.table.get(&this)?.increment(&key, delta).await?)
    }

    async fn compare_and_swap(
        &mut self,
        this: Resource<Partition>,
        key: String,
        expected: Option<u64>,
        value: Vec<u8>,
        options: types::StoreOptions,
    ) -> Result<types::Metadata, HostError> {
        let partition = self.table.get(&this)?;
        Ok(partition
            .compare_and_swap(&key, expected, value, options.into())
            .await?
            .into())
    }

    async fn retrieve_all_with_prefix(
        &mut self,
        this: Resource<Partition>,
        prefix: String,
        cursor: Option<String>,
        page_size: u32,
    ) -> Result<types::EntryPage, HostError> {
        let partition = self.table.get(&this)?;
        Ok(partition
            .list_entries_with_prefix(&prefix, cursor.as_deref(), page_size)
            .await?
            .into())
    }

    async fn retrieve_all_keys_with_prefix(
        &mut self,
        this: Resource<Partition>,
        prefix: String,
        cursor: Option<String>,
        page_size: u32,
    ) -> Result<types::KeyPage, HostError> {
        let partition = self.table.get(&this)?;
        Ok(partition
            .list_keys_with_prefix(&prefix, cursor.as_deref(), page_size)
            .await?
            .into())
    }

    async fn retrieve_many(
        &mut self,
        this: Resource<Partition>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<types::Entry>>, HostError> {
        let found = self.table.get(&this)?.retrieve_many(&keys).await?;
        Ok(found.into_iter().map(|e| e.map(Into::into)).collect())
    }

    async fn store_many(
        &mut self,
        this: Resource<Partition>,
        entries: Vec<types::KeyValue>,
        options: types::StoreOptions,
    ) -> Result<Vec<types::Metadata>, HostError> {
        let entries: Vec<(String, Vec<u8>)> =
            entries.into_iter().map(|kv| (kv.key, kv.value)).collect();
        let partition = self.table.get(&this)?;
        let stored = partition.store_many(&entries, options.into()).await?;
        Ok(stored.into_iter().map(Into::into).collect())
    }

    async fn remove_many(
        &mut self,
        this: Resource<Partition>,
        keys: Vec<String>,
    ) -> Result<Vec<bool>, HostError> {
        Ok(self.table.get(&this)?.remove_many(&keys).await?)
    }

    async fn drop(&mut self, this: Resource<Partition>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

//! Spin apps on ostore: Spin's key-value interface and wasi:keyvalue, over
//! the same object-store layer as ostore's own interface, so that limits,
//! TTL, stats, encryption and isolation apply to Spin data too.
//!
//! A Spin store *label* is a partition: by default partition `<label>` of
//! the application's default store, which never expires (Spin has no TTL,
//! and Spin users must not lose data after 30 days). A runtime config file
//! (`[key_value_store.<label>]`, the shape Spin uses) can map a label to
//! another store or partition and give it a TTL. Labels are checked twice,
//! as in Spin: at load, every label a component lists must be known
//! (`default`, or one in the runtime config); at open, a label the component
//! was not granted is `access-denied`.
//!
//! | module | job |
//! |---|---|
//! | `config` | the runtime config file and the labels granted to each component |
//! | `key_value_v2` | `fermyon:spin/key-value@2.0.0` (spin-sdk 5.x) |
//! | `key_value_v3` | `spin:key-value/key-value@3.0.0` (spin-sdk 7, async) |
//! | `wasi_keyvalue` | `wasi:keyvalue@0.2.0-draft2`: store, atomics, batch |
//! | [`variables`] | Spin's application variables |

mod bindings;
mod bindings_v3;
mod bindings_variables;
mod config;
mod key_value_v2;
mod key_value_v3;
pub mod variables;
mod wasi_keyvalue;

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::component::{HasData, Linker, ResourceTable};

pub use config::{LabelTarget, RuntimeConfig, RuntimeConfigError, UnknownLabel};
pub use wasi_keyvalue::Cas;

use crate::objectstore::{self, Application, Partition, StoreOptions};

/// The labels one component may open, and where they lead.
#[derive(Debug, Clone, Default)]
pub struct Grants(Arc<HashMap<String, LabelTarget>>);

impl Grants {
    /// Gives every granted label's partition its TTL, so that keys written
    /// through Spin (which has no TTL) get the label's, by default none.
    pub async fn prepare(&self, app: &Application) -> Result<(), objectstore::Error> {
        for target in self.0.values() {
            let mut partition = app
                .store(&target.store)
                .await?
                .partition(&target.partition)
                .await?;
            if partition.effective_ttl() != target.ttl {
                partition.set_ttl(Some(target.ttl)).await?;
            }
        }
        Ok(())
    }
}

/// Sets each `(key, value)` of `pairs` in application `app`'s `default`
/// label (as `config` maps it), as `spin up --key-value` sets them in the
/// application's default store: over any value the key had.
pub async fn set_default_keys(
    app: &Application,
    config: &RuntimeConfig,
    pairs: &[(String, String)],
) -> Result<(), objectstore::Error> {
    if pairs.is_empty() {
        return Ok(());
    }
    let grants = config
        .grant("", &["default".to_string()])
        .expect("the default label always resolves");
    grants.prepare(app).await?;
    let target = &grants.0["default"];
    let partition = app
        .store(&target.store)
        .await?
        .partition(&target.partition)
        .await?;
    for (key, value) in pairs {
        set(&partition, key, value.clone().into_bytes()).await?;
    }
    Ok(())
}

/// Per-instance state of the Spin key-value interfaces.
pub struct SpinKvCtx {
    app: Application,
    grants: Grants,
}

impl SpinKvCtx {
    pub fn new(app: Application, grants: Grants) -> Self {
        Self { app, grants }
    }

    async fn open(&self, label: &str) -> Result<Partition, KvError> {
        let Some(target) = self.grants.0.get(label) else {
            return Err(KvError::AccessDenied);
        };
        Ok(self
            .app
            .store(&target.store)
            .await?
            .partition(&target.partition)
            .await?)
    }
}

/// A borrow of [`SpinKvCtx`] and the resource table; the generated host
/// traits are implemented on it.
pub struct SpinKvCtxView<'a> {
    pub ctx: &'a mut SpinKvCtx,
    pub table: &'a mut ResourceTable,
}

/// Implemented by store data that lends out a [`SpinKvCtx`].
pub trait SpinKvView: Send {
    fn spin_kv(&mut self) -> SpinKvCtxView<'_>;
}

struct SpinKvBinding;

impl HasData for SpinKvBinding {
    type Data<'a> = SpinKvCtxView<'a>;
}

/// Adds `fermyon:spin/key-value@2.0.0` and `wasi:keyvalue` store, atomics
/// and batch to `linker`.
pub fn add_to_linker<T: SpinKvView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    bindings::SpinKeyValue::add_to_linker::<T, SpinKvBinding>(linker, T::spin_kv)
}

/// An error of a key-value call: one the guest sees, or a trap.
#[derive(Debug)]
pub enum KvError {
    AccessDenied,
    Store(objectstore::Error),
    Trap(wasmtime::Error),
}

impl From<objectstore::Error> for KvError {
    fn from(e: objectstore::Error) -> Self {
        match e {
            objectstore::Error::AccessDenied => KvError::AccessDenied,
            e => KvError::Store(e),
        }
    }
}

impl From<wasmtime::component::ResourceTableError> for KvError {
    fn from(e: wasmtime::component::ResourceTableError) -> Self {
        KvError::Trap(e.into())
    }
}

/// Reads `key`, absent as `None`.
async fn get(
    partition: &Partition,
    key: &str,
) -> Result<Option<objectstore::Entry>, objectstore::Error> {
    match partition.retrieve(key).await {
        Ok(entry) => Ok(Some(entry)),
        Err(objectstore::Error::KeyNotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The value under `key`, absent as `None`.
async fn get_value(
    partition: &Partition,
    key: &str,
) -> Result<Option<Vec<u8>>, objectstore::Error> {
    Ok(get(partition, key).await?.map(|e| e.value))
}

/// Stores `value` under `key` with the label's TTL, as Spin's `set` does.
async fn set(partition: &Partition, key: &str, value: Vec<u8>) -> Result<(), objectstore::Error> {
    partition
        .store(key, value, StoreOptions::default())
        .await
        .map(drop)
}

/// Deletes `key`; an absent key is fine, as in Spin.
async fn delete(partition: &Partition, key: &str) -> Result<(), objectstore::Error> {
    partition.delete(key).await.map(drop)
}

/// Every key of a partition (Spin's get-keys has no cursor).
async fn all_keys(partition: &Partition) -> Result<Vec<String>, objectstore::Error> {
    let mut keys = Vec::new();
    let mut cursor = None;
    loop {
        let page = partition
            .list_keys(cursor.as_deref(), objectstore::MAX_PAGE_SIZE)
            .await?;
        keys.extend(page.items);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(keys),
        }
    }
}

/// Adds `spin:key-value/key-value@3.0.0` (async; spin-sdk 7) to `linker`.
pub fn add_async_to_linker<T: SpinKvView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    bindings_v3::spin::key_value::key_value::add_to_linker::<T, SpinKvBinding>(linker, T::spin_kv)
}

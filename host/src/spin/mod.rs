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

mod bindings;
mod bindings_v3;
mod bindings_variables;
pub mod variables;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::objectstore::{self, Application, DEFAULT_STORE, Partition, StoreOptions, Ttl};
use bindings::fermyon::spin::key_value as spin_kv;
use bindings::wasi::keyvalue::{atomics, batch, store as wasi_kv};

/// Where a label's data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelTarget {
    pub store: String,
    pub partition: String,
    /// The partition's TTL; `Ttl::Never` unless configured.
    pub ttl: Ttl,
}

/// The `[key_value_store.<label>]` tables of a runtime config file.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    labels: BTreeMap<String, LabelTarget>,
    /// Settings ostore does not support, named for a warning.
    pub warnings: Vec<String>,
}

#[derive(Deserialize)]
struct RawRuntimeConfig {
    #[serde(default)]
    key_value_store: BTreeMap<String, RawLabel>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
struct RawLabel {
    #[serde(rename = "type")]
    kind: String,
    store: Option<String>,
    partition: Option<String>,
    ttl_seconds: Option<u64>,
    #[serde(default)]
    rolling: bool,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

impl RuntimeConfig {
    /// Reads a runtime config file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read runtime config {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("runtime config {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let raw: RawRuntimeConfig =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
        let mut config = RuntimeConfig::default();
        for table in raw.other.keys() {
            config
                .warnings
                .push(format!("unsupported table `{table}` is ignored"));
        }
        for (label, raw) in raw.key_value_store {
            match raw.kind.as_str() {
                // "spin" is Spin's own local store: here, the object store.
                "ostore" | "spin" => {}
                other => config.warnings.push(format!(
                    "key_value_store.{label}: type {other:?} is served by ostore's own store"
                )),
            }
            for field in raw.other.keys() {
                config.warnings.push(format!(
                    "key_value_store.{label}: unsupported field `{field}` is ignored"
                ));
            }
            let ttl = match raw.ttl_seconds {
                None => Ttl::Never,
                Some(0) => anyhow::bail!("key_value_store.{label}: ttl_seconds must be above 0"),
                Some(s) if raw.rolling => Ttl::Rolling(s),
                Some(s) => Ttl::Fixed(s),
            };
            config.labels.insert(
                label.clone(),
                LabelTarget {
                    store: raw.store.unwrap_or_else(|| DEFAULT_STORE.to_string()),
                    partition: raw.partition.unwrap_or_else(|| label.clone()),
                    ttl,
                },
            );
        }
        Ok(config)
    }

    /// Resolves the labels a component lists in `key_value_stores`. An
    /// unknown label is an error naming the component and the label.
    pub fn grant(&self, component: &str, labels: &[String]) -> anyhow::Result<Grants> {
        let mut granted = HashMap::new();
        for label in labels {
            let target = match self.labels.get(label) {
                Some(target) => target.clone(),
                None if label == "default" => LabelTarget {
                    store: DEFAULT_STORE.to_string(),
                    partition: label.clone(),
                    ttl: Ttl::Never,
                },
                None => anyhow::bail!(
                    "component `{component}` uses key-value store label {label:?}, which is not \
                     defined: only \"default\" is predefined; define others in a runtime config \
                     file ([key_value_store.{label}], --runtime-config-file)"
                ),
            };
            granted.insert(label.clone(), target);
        }
        Ok(Grants(Arc::new(granted)))
    }
}

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

/// A compare-and-swap in progress: the value and version seen at `new`.
pub struct Cas {
    partition: Partition,
    key: String,
    version: Option<u64>,
    current: Option<Vec<u8>>,
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

impl spin_kv::Host for SpinKvCtxView<'_> {
    fn convert_error(&mut self, err: KvError) -> wasmtime::Result<spin_kv::Error> {
        Ok(match err {
            KvError::AccessDenied => spin_kv::Error::AccessDenied,
            KvError::Store(objectstore::Error::QuotaExceeded(_)) => spin_kv::Error::StoreTableFull,
            KvError::Store(e) => spin_kv::Error::Other(e.to_string()),
            KvError::Trap(e) => return Err(e),
        })
    }
}

impl spin_kv::HostStore for SpinKvCtxView<'_> {
    async fn open(&mut self, label: String) -> Result<Resource<Partition>, KvError> {
        let partition = self.ctx.open(&label).await?;
        Ok(self.table.push(partition)?)
    }

    async fn get(
        &mut self,
        this: Resource<Partition>,
        key: String,
    ) -> Result<Option<Vec<u8>>, KvError> {
        Ok(get_value(self.table.get(&this)?, &key).await?)
    }

    async fn set(
        &mut self,
        this: Resource<Partition>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), KvError> {
        Ok(set(self.table.get(&this)?, &key, value).await?)
    }

    async fn delete(&mut self, this: Resource<Partition>, key: String) -> Result<(), KvError> {
        Ok(delete(self.table.get(&this)?, &key).await?)
    }

    async fn exists(&mut self, this: Resource<Partition>, key: String) -> Result<bool, KvError> {
        Ok(self.table.get(&this)?.contains(&key).await?)
    }

    async fn get_keys(&mut self, this: Resource<Partition>) -> Result<Vec<String>, KvError> {
        Ok(all_keys(self.table.get(&this)?).await?)
    }

    async fn drop(&mut self, this: Resource<Partition>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl wasi_kv::Host for SpinKvCtxView<'_> {
    fn convert_error(&mut self, err: KvError) -> wasmtime::Result<wasi_kv::Error> {
        Ok(match err {
            KvError::AccessDenied => wasi_kv::Error::AccessDenied,
            KvError::Store(e) => wasi_kv::Error::Other(e.to_string()),
            KvError::Trap(e) => return Err(e),
        })
    }

    async fn open(&mut self, identifier: String) -> Result<Resource<Partition>, KvError> {
        let partition = self.ctx.open(&identifier).await?;
        Ok(self.table.push(partition)?)
    }
}

impl wasi_kv::HostBucket for SpinKvCtxView<'_> {
    async fn get(
        &mut self,
        this: Resource<Partition>,
        key: String,
    ) -> Result<Option<Vec<u8>>, KvError> {
        Ok(get_value(self.table.get(&this)?, &key).await?)
    }

    async fn set(
        &mut self,
        this: Resource<Partition>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), KvError> {
        Ok(set(self.table.get(&this)?, &key, value).await?)
    }

    async fn delete(&mut self, this: Resource<Partition>, key: String) -> Result<(), KvError> {
        Ok(delete(self.table.get(&this)?, &key).await?)
    }

    async fn exists(&mut self, this: Resource<Partition>, key: String) -> Result<bool, KvError> {
        Ok(self.table.get(&this)?.contains(&key).await?)
    }

    async fn list_keys(
        &mut self,
        this: Resource<Partition>,
        cursor: Option<String>,
    ) -> Result<wasi_kv::KeyResponse, KvError> {
        let page = self
            .table
            .get(&this)?
            .list_keys(cursor.as_deref(), objectstore::MAX_PAGE_SIZE)
            .await?;
        Ok(wasi_kv::KeyResponse {
            keys: page.items,
            cursor: page.cursor,
        })
    }

    async fn drop(&mut self, this: Resource<Partition>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl atomics::Host for SpinKvCtxView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Partition>,
        key: String,
        delta: i64,
    ) -> Result<i64, KvError> {
        Ok(self.table.get(&bucket)?.increment(&key, delta).await?)
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let cas = self.table.delete(cas)?;
        let result = cas
            .partition
            .compare_and_swap(&cas.key, cas.version, value, StoreOptions::default())
            .await;
        match result {
            Ok(_) => Ok(Ok(())),
            Err(objectstore::Error::VersionMismatch { .. }) => {
                // The value changed since `new`: hand back a fresh cas
                // holding what is there now, so the guest can retry.
                match Cas::read(cas.partition, cas.key).await {
                    Ok(fresh) => Ok(Err(atomics::CasError::CasFailed(self.table.push(fresh)?))),
                    Err(e) => Ok(Err(atomics::CasError::StoreError(wasi_kv::Error::Other(
                        e.to_string(),
                    )))),
                }
            }
            Err(e) => Ok(Err(atomics::CasError::StoreError(wasi_kv::Error::Other(
                e.to_string(),
            )))),
        }
    }
}

impl Cas {
    async fn read(partition: Partition, key: String) -> Result<Self, objectstore::Error> {
        let entry = get(&partition, &key).await?;
        Ok(Self {
            version: entry.as_ref().map(|e| e.metadata.version),
            current: entry.map(|e| e.value),
            partition,
            key,
        })
    }
}

impl atomics::HostCas for SpinKvCtxView<'_> {
    async fn new(
        &mut self,
        bucket: Resource<Partition>,
        key: String,
    ) -> Result<Resource<Cas>, KvError> {
        let partition = self.table.get(&bucket)?.clone();
        let cas = Cas::read(partition, key).await?;
        Ok(self.table.push(cas)?)
    }

    async fn current(&mut self, this: Resource<Cas>) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.table.get(&this)?.current.clone())
    }

    async fn drop(&mut self, this: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl batch::Host for SpinKvCtxView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Partition>,
        keys: Vec<String>,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, KvError> {
        let partition = self.table.get(&bucket)?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let value = get_value(partition, &key).await?;
            out.push((key, value));
        }
        Ok(out)
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Partition>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), KvError> {
        let partition = self.table.get(&bucket)?;
        for (key, value) in key_values {
            set(partition, &key, value).await?;
        }
        Ok(())
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Partition>,
        keys: Vec<String>,
    ) -> Result<(), KvError> {
        let partition = self.table.get(&bucket)?;
        for key in keys {
            delete(partition, &key).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_default_and_from_runtime_config() {
        let config = RuntimeConfig::parse(
            r#"
[key_value_store.cache]
type = "spin"
ttl_seconds = 60
rolling = true

[key_value_store.orders]
type = "ostore"
store = "Orders"
partition = "open"

[key_value_store.remote]
type = "redis"
url = "redis://localhost"
"#,
        )
        .unwrap();
        let grants = config
            .grant("web", &["default".into(), "cache".into(), "orders".into()])
            .unwrap();
        assert_eq!(
            grants.0["default"],
            LabelTarget {
                store: DEFAULT_STORE.into(),
                partition: "default".into(),
                ttl: Ttl::Never
            }
        );
        assert_eq!(grants.0["cache"].ttl, Ttl::Rolling(60));
        assert_eq!(
            (
                grants.0["orders"].store.as_str(),
                grants.0["orders"].partition.as_str()
            ),
            ("Orders", "open")
        );
        assert_eq!(config.warnings.len(), 2, "{:?}", config.warnings);
        let err = config
            .grant("web", &["missing".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`web`") && err.contains("\"missing\""),
            "{err}"
        );
        assert!(RuntimeConfig::parse("[key_value_store.x]\ntype='spin'\nttl_seconds=0").is_err());
    }
}

/// Spin's async key-value interface (`spin:key-value/key-value@3.0.0`,
/// spin-sdk 7): the same operations, with `get-keys` as a stream.
mod v3 {
    use wasmtime::component::{Accessor, FutureReader, Resource, StreamReader};

    use super::bindings_v3::spin::key_value::key_value as kv;
    use super::{KvError, SpinKvBinding, SpinKvCtxView, all_keys, delete, get_value, set};
    use crate::objectstore::{self, Partition};

    /// The partition behind a store handle, cloned out of the table so that
    /// no borrow of the instance is held across the await.
    fn partition<T>(
        accessor: &Accessor<T, SpinKvBinding>,
        this: &Resource<Partition>,
    ) -> Result<Partition, KvError> {
        accessor.with(|mut access| Ok(access.get().table.get(this)?.clone()))
    }

    impl kv::Host for SpinKvCtxView<'_> {
        fn convert_error(&mut self, err: KvError) -> wasmtime::Result<kv::Error> {
            Ok(match err {
                KvError::AccessDenied => kv::Error::AccessDenied,
                KvError::Store(objectstore::Error::QuotaExceeded(_)) => kv::Error::StoreTableFull,
                KvError::Store(e) => kv::Error::Other(e.to_string()),
                KvError::Trap(e) => return Err(e),
            })
        }
    }

    impl kv::HostStore for SpinKvCtxView<'_> {}

    impl<T: Send> kv::HostStoreWithStore<T> for SpinKvBinding {
        async fn open(
            accessor: &Accessor<T, Self>,
            label: String,
        ) -> Result<Resource<Partition>, KvError> {
            let (app, target) = accessor.with(|mut access| {
                let view = access.get();
                (view.ctx.app.clone(), view.ctx.grants.0.get(&label).cloned())
            });
            let target = target.ok_or(KvError::AccessDenied)?;
            let partition = app
                .store(&target.store)
                .await?
                .partition(&target.partition)
                .await?;
            accessor.with(|mut access| Ok(access.get().table.push(partition)?))
        }

        async fn get(
            accessor: &Accessor<T, Self>,
            this: Resource<Partition>,
            key: String,
        ) -> Result<Option<Vec<u8>>, KvError> {
            let partition = partition(accessor, &this)?;
            Ok(get_value(&partition, &key).await?)
        }

        async fn set(
            accessor: &Accessor<T, Self>,
            this: Resource<Partition>,
            key: String,
            value: Vec<u8>,
        ) -> Result<(), KvError> {
            let partition = partition(accessor, &this)?;
            Ok(set(&partition, &key, value).await?)
        }

        async fn delete(
            accessor: &Accessor<T, Self>,
            this: Resource<Partition>,
            key: String,
        ) -> Result<(), KvError> {
            let partition = partition(accessor, &this)?;
            Ok(delete(&partition, &key).await?)
        }

        async fn exists(
            accessor: &Accessor<T, Self>,
            this: Resource<Partition>,
            key: String,
        ) -> Result<bool, KvError> {
            let partition = partition(accessor, &this)?;
            Ok(partition.contains(&key).await?)
        }

        async fn get_keys(
            accessor: &Accessor<T, Self>,
            this: Resource<Partition>,
        ) -> wasmtime::Result<(StreamReader<String>, FutureReader<Result<(), kv::Error>>)> {
            let partition = accessor.with(|mut access| access.get().table.get(&this).cloned())?;
            // Listing failures reach the guest through the future, as the
            // interface intends; the stream then ends early (here: empty).
            let (keys, outcome) = match all_keys(&partition).await {
                Ok(keys) => (keys, Ok(())),
                Err(e) => (Vec::new(), Err(kv::Error::Other(e.to_string()))),
            };
            accessor.with(|mut access| {
                let stream = StreamReader::new(&mut access, keys)?;
                let done =
                    FutureReader::new(
                        &mut access,
                        async move { Ok::<_, wasmtime::Error>(outcome) },
                    )?;
                Ok((stream, done))
            })
        }

        async fn drop(
            accessor: &Accessor<T, Self>,
            this: Resource<Partition>,
        ) -> wasmtime::Result<()> {
            accessor.with(|mut access| access.get().table.delete(this))?;
            Ok(())
        }
    }
}

/// Adds `spin:key-value/key-value@3.0.0` (async; spin-sdk 7) to `linker`.
pub fn add_async_to_linker<T: SpinKvView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    bindings_v3::spin::key_value::key_value::add_to_linker::<T, SpinKvBinding>(linker, T::spin_kv)
}

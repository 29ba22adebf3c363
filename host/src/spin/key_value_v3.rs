//! `spin:key-value/key-value@3.0.0`, the async interface of spin-sdk 7: the
//! same operations as 2.0.0, with `get-keys` as a stream.

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
            let done = FutureReader::new(
                &mut access,
                async move { Ok::<_, wasmtime::Error>(outcome) },
            )?;
            Ok((stream, done))
        })
    }

    async fn drop(accessor: &Accessor<T, Self>, this: Resource<Partition>) -> wasmtime::Result<()> {
        accessor.with(|mut access| access.get().table.delete(this))?;
        Ok(())
    }
}

//! `wasi:keyvalue@0.2.0-draft2`: store, atomics (increment and
//! compare-and-swap) and batch.

use wasmtime::component::Resource;

use super::bindings::wasi::keyvalue::{atomics, batch, store as wasi_kv};
use super::{KvError, SpinKvCtxView, delete, get, get_value, set};
use crate::objectstore::{self, Partition, StoreOptions};

/// A compare-and-swap in progress: the value and version seen at `new`.
pub struct Cas {
    partition: Partition,
    key: String,
    version: Option<u64>,
    current: Option<Vec<u8>>,
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

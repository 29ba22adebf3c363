//! `fermyon:spin/key-value@2.0.0`, the interface of spin-sdk 5.x.

use wasmtime::component::Resource;

use super::bindings::fermyon::spin::key_value as spin_kv;
use super::{KvError, SpinKvCtxView, all_keys, delete, get_value, set};
use crate::objectstore::{self, Partition};

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

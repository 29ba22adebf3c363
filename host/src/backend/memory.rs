//! An in-memory backend for tests and for embedders that want no files.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::RwLock;

use super::{Backend, BackendError, Batch, BoxFuture, Pair, Shards, scan_start};

/// A [`Backend`] over a `BTreeMap`, for one process; nothing survives it.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }
}

fn scan_map<'m>(
    map: impl IntoIterator<Item = (&'m Vec<u8>, &'m Vec<u8>)>,
    prefix: &[u8],
    limit: usize,
) -> Vec<Pair> {
    map.into_iter()
        .take_while(|(k, _)| k.starts_with(prefix))
        .take(limit)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl Backend for MemoryBackend {
    fn get<'a>(
        &'a self,
        _shard: &'a [u8],
        key: &'a [u8],
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, BackendError>> {
        let value = self
            .map
            .read()
            .expect("memory backend lock")
            .get(key)
            .cloned();
        Box::pin(async move { Ok(value) })
    }

    /// One ordered map holds every shard: a prefix scan reads them all.
    fn scan<'a>(
        &'a self,
        _shards: Shards<'a>,
        prefix: &'a [u8],
        after: Option<&'a [u8]>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Pair>, BackendError>> {
        let map = self.map.read().expect("memory backend lock");
        let start = scan_start(prefix, after);
        let pairs = scan_map(
            map.range::<[u8], _>((start, Bound::Unbounded)),
            prefix,
            limit,
        );
        Box::pin(async move { Ok(pairs) })
    }

    fn commit(&self, batch: Batch) -> BoxFuture<'_, Result<(), BackendError>> {
        let mut map = self.map.write().expect("memory backend lock");
        let result = match batch.expectations_hold(|k| Ok::<_, BackendError>(map.get(k).cloned())) {
            Ok(true) => {
                for w in batch.writes {
                    match w.value {
                        Some(v) => map.insert(w.key, v),
                        None => map.remove(&w.key),
                    };
                }
                Ok(())
            }
            Ok(false) => Err(BackendError::Conflict),
            Err(e) => Err(e),
        };
        Box::pin(async move { result })
    }
}

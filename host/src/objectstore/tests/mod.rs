//! Tests of the object-store layer against the in-memory backend, with a
//! manual clock wherever time must pass.

mod crash;
mod damage;
mod data;
mod deletion;
mod faults;
mod formats;
mod hosts;
mod index;
mod index_repair;
mod kept;
mod limits;
mod many;
mod names;
mod sole;
mod ttl;

use std::sync::Arc;

use super::*;
use crate::backend::{Backend, Batch, Expect, MemoryBackend, Shards};
use crate::clock::ManualClock;
use crate::encryption::MasterKey;

async fn open_with(backend: Arc<dyn Backend>, master: &MasterKey) -> ObjectStore {
    ObjectStore::open(backend, master, Config::default())
        .await
        .unwrap()
}

/// An object store whose time is `clock`'s.
async fn open_at(
    backend: Arc<dyn Backend>,
    master: &MasterKey,
    clock: &Arc<ManualClock>,
) -> ObjectStore {
    let config = Config {
        clock: clock.clone(),
        ..Config::default()
    };
    ObjectStore::open(backend, master, config).await.unwrap()
}

/// An object store told that no other host shares `backend`.
async fn open_sole(
    backend: Arc<dyn Backend>,
    master: &MasterKey,
    clock: &Arc<ManualClock>,
) -> ObjectStore {
    let config = Config {
        clock: clock.clone(),
        sole_host: true,
        ..Config::default()
    };
    ObjectStore::open(backend, master, config).await.unwrap()
}

/// The shard of a record's backend key, to write it directly.
fn shard_of(key: &[u8]) -> Vec<u8> {
    keys::RecordKey::parse(key)
        .expect("a record key")
        .shard()
        .encode()
}

fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::starting_now())
}

async fn partition(os: &ObjectStore, app: &str, name: &str) -> Partition {
    let app = os.application(app).await.unwrap();
    app.default_store()
        .await
        .unwrap()
        .partition(name)
        .await
        .unwrap()
}

/// Every item of a listing, read page by page as a client would, each
/// page checked to hold at most `page_size` items.
async fn every_page<T, F, Fut>(page_size: u32, mut page: F) -> Vec<T>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<T>, Error>>,
{
    let mut items = Vec::new();
    let mut cursor = None;
    loop {
        let page = page(cursor).await.unwrap();
        assert!(page.items.len() <= page_size as usize);
        // Only a full page says that more may follow.
        if page.cursor.is_some() {
            assert_eq!(page.items.len(), page_size as usize, "a page with a cursor");
        }
        items.extend(page.items);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return items,
        }
    }
}

fn fresh() -> (Arc<MemoryBackend>, MasterKey) {
    (Arc::new(MemoryBackend::new()), MasterKey::generate())
}

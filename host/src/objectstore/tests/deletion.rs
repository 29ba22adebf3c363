//! Deleting a store spans many shards: a host cut off half-way leaves
//! nothing of the store visible, and any host finishes the job.

use super::*;
use crate::backend::StorageFault;
use crate::backend::fault::{Faults, FaultyBackend, Stage};

/// A host that stops writing after `commits` more commits, as one that
/// crashed would: every later commit fails, and nothing of it applies.
fn cut_off_after(inner: &Arc<MemoryBackend>, commits: u64) -> Arc<dyn Backend> {
    let faults = Faults::new();
    faults.fail_after(commits, StorageFault::Io);
    Arc::new(FaultyBackend::new(
        inner.clone(),
        faults,
        Stage::BeforeCommit,
    ))
}

/// How many records of a kind (by the first byte of their backend key) the
/// backend holds.
async fn records(backend: &MemoryBackend, kind: &[u8]) -> usize {
    backend
        .scan(Shards::ALL, kind, None, 100_000)
        .await
        .unwrap()
        .len()
}

/// Fills store `S` of application `app` with 4 partitions (each its own
/// shard) of 5 keys, one with a TTL setting; returns how many keys.
async fn fill(os: &ObjectStore) -> usize {
    let store = os
        .application("app")
        .await
        .unwrap()
        .store("S")
        .await
        .unwrap();
    for p in 0..4 {
        let mut partition = store.partition(&format!("P{p}")).await.unwrap();
        if p == 0 {
            partition.set_ttl(Some(Ttl::Fixed(3600))).await.unwrap();
        }
        for k in 0..5 {
            partition
                .store(&format!("k{k}"), b"old".to_vec(), StoreOptions::default())
                .await
                .unwrap();
        }
    }
    20
}

#[tokio::test]
async fn a_store_deletion_cut_off_half_way_shows_nothing_and_the_sweep_finishes_it() {
    let (backend, master) = fresh();
    let keys = fill(&open_with(backend.clone(), &master).await).await;
    assert_eq!(records(&backend, b"e").await, keys);

    // Host 1 commits the tombstone and one partition's deletions, then stops.
    let host1 = open_with(cut_off_after(&backend, 2), &master).await;
    let err = host1
        .application("app")
        .await
        .unwrap()
        .delete_store("S")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Storage(_)), "{err:?}");
    let left = records(&backend, b"e").await;
    assert!(
        0 < left && left < keys,
        "the deletion stopped half-way: {left} of {keys} keys left"
    );
    assert_eq!(records(&backend, b"t").await, 1, "the tombstone stands");

    // Host 2 sees no store S, in any listing or lookup.
    let host2 = open_with(backend.clone(), &master).await;
    let app = host2.application("app").await.unwrap();
    assert!(app.find_store("S").await.unwrap().is_none());
    let stores = app.list_stores(None, 100).await.unwrap();
    assert!(stores.items.iter().all(|s| s.name() != "S"));

    // Its sweep finishes the job: nothing of the store is left.
    assert_eq!(host2.finish_deletions().await.unwrap(), 1);
    for kind in [b"e", b"y", b"x", b"p", b"t"] {
        assert_eq!(
            records(&backend, kind).await,
            0,
            "records of kind {:?} left",
            kind[0] as char
        );
    }
    assert_eq!(host2.finish_deletions().await.unwrap(), 0);
}

#[tokio::test]
async fn a_store_made_again_after_a_cut_off_deletion_starts_empty() {
    let (backend, master) = fresh();
    fill(&open_with(backend.clone(), &master).await).await;
    let host1 = open_with(cut_off_after(&backend, 1), &master).await;
    let app1 = host1.application("app").await.unwrap();
    assert!(app1.delete_store("S").await.is_err());
    assert_eq!(
        records(&backend, b"e").await,
        20,
        "only the tombstone landed"
    );

    // No sweep has run: making the store again finishes the deletion first,
    // so none of the old keys or partition settings shows in the new store.
    let host2 = open_with(backend.clone(), &master).await;
    let store = host2
        .application("app")
        .await
        .unwrap()
        .store("S")
        .await
        .unwrap();
    let page = store.list_partitions(None, 100).await.unwrap();
    assert!(page.items.is_empty(), "{:?}", page.items);
    let p0 = store.partition("P0").await.unwrap();
    assert!(matches!(p0.retrieve("k0").await, Err(Error::KeyNotFound)));
    assert_eq!(
        p0.effective_ttl(),
        store.default_ttl(),
        "the old TTL setting is gone"
    );
    assert_eq!(records(&backend, b"e").await, 0);
    assert_eq!(records(&backend, b"t").await, 0);
    p0.store("k0", b"new".to_vec(), StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(p0.retrieve("k0").await.unwrap().value, b"new");
}

#[tokio::test]
async fn hosts_deleting_one_store_at_once_delete_it_once() {
    let hosts = hosts::Hosts::start(Limits::default()).await;
    fill(&hosts.all[0]).await;
    let deletions = (0..3).map(|h| {
        let os = hosts.all[h].clone();
        tokio::spawn(async move {
            os.application("app")
                .await
                .unwrap()
                .delete_store("S")
                .await
                .unwrap()
        })
    });
    let mut deleted = 0;
    for d in deletions {
        deleted += usize::from(d.await.unwrap());
    }
    assert_eq!(
        deleted, 1,
        "one host deleted the store, the others found none"
    );
    assert_eq!(hosts.stored_keys().await, 0);
    assert_eq!(records(&hosts.backend, b"t").await, 0);
    // The default store, made when each host opened the application, is
    // all the application holds.
    hosts.exchange_all().await;
    for h in 0..3 {
        let app = hosts.app(h).await;
        assert_eq!(app.footprint(), Footprint::default(), "host {h}");
    }
}

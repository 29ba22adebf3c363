//! An index of names and its damage: data written before the index is
//! indexed on first use, and `ostore check` reports an index that differs
//! from its entries (or whose pages are gone), which `ostore repair`
//! rebuilds.

use super::index::{keys_of, list_all, store_keys};
use super::*;
use integrity::DamageKind;

/// Deletes every index page and every kept count, as data written before
/// the index has neither.
async fn drop_index(backend: &MemoryBackend) {
    let pages = backend
        .scan(Shards::ALL, b"n", None, 100_000)
        .await
        .unwrap();
    assert!(!pages.is_empty());
    let counts = backend
        .scan(Shards::ALL, b"k", None, 100_000)
        .await
        .unwrap();
    for (key, _) in pages.into_iter().chain(counts) {
        let mut batch = Batch::new(shard_of(&key));
        batch.delete(key, Expect::Any);
        backend.commit(batch).await.unwrap();
    }
}

#[tokio::test]
async fn data_written_before_the_index_is_indexed_on_first_use() {
    let (backend, master) = fresh();
    let os = open_with(backend.clone(), &master).await;
    let p = partition(&os, "app", "p").await;
    for i in (0..300).rev() {
        p.store(
            &format!("key-{i:04}"),
            b"v".to_vec(),
            StoreOptions::default(),
        )
        .await
        .unwrap();
    }
    drop_index(&backend).await;
    os.flush_stats().await.unwrap();
    // Not damage: the index is built when the partition is next used.
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
    let names = list_all(&p, Some("key-01"), 7).await;
    let expected: Vec<_> = (100..200).map(|i| format!("key-{i:04}")).collect();
    assert_eq!(names, expected);
    // And a write that creates a key keeps the built index whole.
    p.store("key-0100a", b"v".to_vec(), StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(list_all(&p, None, 1000).await.len(), 301);
    os.flush_stats().await.unwrap();
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
}

#[tokio::test]
async fn check_reports_an_index_that_differs_from_the_entries_and_repair_rebuilds_it() {
    let (backend, master) = fresh();
    let os = open_with(backend.clone(), &master).await;
    let p = partition(&os, "app", "p").await;
    store_keys(&p, 50).await;
    // An entry lost behind the index's back: its name stays indexed.
    let entries = backend.scan(Shards::ALL, b"e", None, 1000).await.unwrap();
    let (lost, _) = entries[10].clone();
    let mut batch = Batch::new(shard_of(&lost));
    batch.delete(lost, Expect::Any);
    backend.commit(batch).await.unwrap();
    // A listing does not answer short as if whole.
    assert!(matches!(
        p.list_keys(None, 1000).await,
        Err(Error::Integrity)
    ));

    let report = integrity::check(&*backend, &master).await.unwrap();
    let kinds: Vec<_> = report.damage.iter().map(|d| d.kind.clone()).collect();
    assert!(
        kinds.contains(&DamageKind::IndexMismatch {
            missing: 0,
            extra: 1
        }),
        "{kinds:?}"
    );
    let repaired = integrity::repair(&*backend, &master).await.unwrap();
    assert!(!repaired.is_clean());
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
    assert_eq!(list_all(&p, None, 1000).await.len(), 49);

    // An index page lost: the entries it held are missing from the index.
    let pages = backend.scan(Shards::ALL, b"n", None, 1000).await.unwrap();
    let (root, sealed) = pages
        .iter()
        .find(|(k, _)| k.ends_with(&0u64.to_be_bytes()))
        .cloned()
        .unwrap();
    let mut batch = Batch::new(shard_of(&root));
    batch.put(
        root.clone(),
        sealed[..sealed.len() - 1].to_vec(),
        Expect::Any,
    );
    backend.commit(batch).await.unwrap();
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(!report.is_clean());
    integrity::repair(&*backend, &master).await.unwrap();
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
    // The 49 keys left, the lost one (any of the 50) excepted, by prefix.
    let all = list_all(&p, None, 1000).await;
    assert_eq!(all.len(), 49);
    let want: Vec<_> = all.into_iter().filter(|n| n.starts_with("key-1")).collect();
    assert!((9..=10).contains(&want.len()), "{want:?}");
    assert_eq!(list_all(&p, Some("key-1"), 3).await, want);
}

/// A partition whose counts say its index is built, but with no page left
/// while it holds keys: `ostore check` reports the keys missing from the
/// index (a missing root reads as an empty index), and repair rebuilds it.
#[tokio::test]
async fn check_reports_a_built_index_whose_pages_are_all_gone() {
    let (backend, master) = fresh();
    let os = open_with(backend.clone(), &master).await;
    let p = partition(&os, "app", "p").await;
    store_keys(&p, 30).await;
    let pages = backend.scan(Shards::ALL, b"n", None, 1000).await.unwrap();
    for (key, _) in pages {
        let mut batch = Batch::new(shard_of(&key));
        batch.delete(key, Expect::Any);
        backend.commit(batch).await.unwrap();
    }
    os.flush_stats().await.unwrap();
    let report = integrity::check(&*backend, &master).await.unwrap();
    let kinds: Vec<_> = report.damage.iter().map(|d| d.kind.clone()).collect();
    let missing = DamageKind::IndexMismatch {
        missing: 30,
        extra: 0,
    };
    assert_eq!(kinds, [missing]);
    integrity::repair(&*backend, &master).await.unwrap();
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
    assert_eq!(keys_of(&p).await.len(), 30);
}

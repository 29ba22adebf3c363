use std::time::Duration;

use super::*;

#[tokio::test]
async fn store_retrieve_remove_with_metadata() {
    let (backend, master) = fresh();
    let os = open_with(backend, &master).await;
    let p = partition(&os, "app", "P1").await;
    let m1 = p
        .store("k", b"v1".to_vec(), StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(m1.version, 1);
    let m2 = p
        .store("k", b"v2".to_vec(), StoreOptions::default())
        .await
        .unwrap();
    assert_eq!((m2.version, m2.created), (2, m1.created));
    assert!(m2.expires.unwrap() >= m2.updated + DEFAULT_TTL_SECS * 1000);
    let entry = p.retrieve("k").await.unwrap();
    assert_eq!(entry.value, b"v2");
    assert!(p.contains("k").await.unwrap());
    let fail = StoreOptions {
        fail_if_present: true,
        ..Default::default()
    };
    assert!(matches!(
        p.store("k", b"x".to_vec(), fail).await,
        Err(Error::KeyAlreadyExists)
    ));
    assert_eq!(
        p.retrieve("k").await.unwrap().value,
        b"v2",
        "a failed store changes nothing"
    );
    assert_eq!(p.remove("k").await.unwrap().value, b"v2");
    assert!(matches!(p.retrieve("k").await, Err(Error::KeyNotFound)));
    assert!(matches!(p.remove("k").await, Err(Error::KeyNotFound)));
    assert!(!p.contains("k").await.unwrap());
}

#[tokio::test]
async fn keys_and_values_are_checked_against_the_limits() {
    let (backend, master) = fresh();
    let os = open_with(backend.clone(), &master).await;
    let p = partition(&os, "app", "P").await;
    let long = "k".repeat(1025);
    for bad in ["", long.as_str(), "line\nbreak", "nul\0"] {
        let err = p
            .store(bad, b"v".to_vec(), StoreOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidKey(_)), "{bad:?} gave {err:?}");
    }
    assert!(
        p.store(&"k".repeat(1024), b"v".to_vec(), StoreOptions::default())
            .await
            .is_ok()
    );
    let big = vec![0u8; (10 << 20) + 1];
    let err = p
        .store("big", big, StoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ValueTooLarge { limit } if limit == 10 << 20));
    assert!(!p.contains("big").await.unwrap());
    let zero = StoreOptions {
        ttl: Some(Ttl::Fixed(0)),
        ..Default::default()
    };
    assert!(matches!(
        p.store("z", b"v".to_vec(), zero).await,
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn applications_stores_and_partitions_are_isolated() {
    let (backend, master) = fresh();
    let os = open_with(backend, &master).await;
    let a = partition(&os, "app-a", "P").await;
    let b = partition(&os, "app-b", "P").await;
    a.store("shared-name", b"a's".to_vec(), StoreOptions::default())
        .await
        .unwrap();
    assert!(matches!(
        b.retrieve("shared-name").await,
        Err(Error::KeyNotFound)
    ));
    let other_partition = partition(&os, "app-a", "Q").await;
    assert!(!other_partition.contains("shared-name").await.unwrap());
    let other_store = os
        .application("app-a")
        .await
        .unwrap()
        .store("S2")
        .await
        .unwrap();
    let p = other_store.partition("P").await.unwrap();
    assert!(!p.contains("shared-name").await.unwrap());
}

#[tokio::test]
async fn data_survives_reopening_and_a_wrong_master_key_is_refused() {
    let (backend, master) = fresh();
    {
        let os = open_with(backend.clone(), &master).await;
        let p = partition(&os, "app", "P").await;
        p.store("k", b"v".to_vec(), StoreOptions::default())
            .await
            .unwrap();
    }
    let os = open_with(backend.clone(), &master).await;
    assert_eq!(
        partition(&os, "app", "P")
            .await
            .retrieve("k")
            .await
            .unwrap()
            .value,
        b"v"
    );
    let wrong = ObjectStore::open(backend, &MasterKey::generate(), Config::default()).await;
    assert!(matches!(wrong, Err(Error::WrongMasterKey)));
}

#[tokio::test]
async fn nothing_is_plaintext_in_the_backend_and_a_flipped_byte_is_an_integrity_error() {
    let (backend, master) = fresh();
    let os = open_with(backend.clone(), &master).await;
    let p = partition(&os, "plaintext-app", "PlainPartition").await;
    p.store("PlainKey", b"PlainValue".to_vec(), StoreOptions::default())
        .await
        .unwrap();
    let all = backend
        .scan(Shards::ALL, b"", None, usize::MAX)
        .await
        .unwrap();
    for needle in [
        &b"plaintext-app"[..],
        b"PlainPartition",
        b"PlainKey",
        b"PlainValue",
        DEFAULT_STORE.as_bytes(),
    ] {
        for (k, v) in &all {
            assert!(!k.windows(needle.len()).any(|w| w == needle));
            assert!(!v.windows(needle.len()).any(|w| w == needle));
        }
    }
    let (key, mut sealed) = all.into_iter().find(|(k, _)| k[0] == b'e').unwrap();
    let middle = sealed.len() / 2;
    sealed[middle] ^= 0x40;
    let mut batch = Batch::new(shard_of(&key));
    batch.put(key, sealed, Expect::Any);
    backend.commit(batch).await.unwrap();
    assert!(matches!(
        p.retrieve("PlainKey").await,
        Err(Error::Integrity)
    ));
}

#[tokio::test]
async fn paging_returns_every_key_once() {
    let (backend, master) = fresh();
    let os = open_with(backend, &master).await;
    let p = partition(&os, "app", "P").await;
    for i in 0..57 {
        p.store(&format!("key-{i}"), vec![b'v'], StoreOptions::default())
            .await
            .unwrap();
    }
    for page_size in [1, 10, 56, 57, 1000, 0] {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = p.list_keys(cursor.as_deref(), page_size).await.unwrap();
            assert!(page.items.len() <= page_size.max(1) as usize);
            seen.extend(page.items);
            match page.cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        seen.sort();
        let mut want: Vec<_> = (0..57).map(|i| format!("key-{i}")).collect();
        want.sort();
        assert_eq!(seen, want, "page size {page_size}");
    }
    assert!(matches!(
        p.list_keys(Some("not a cursor!"), 10).await,
        Err(Error::InvalidArgument(_))
    ));
    // A cursor belongs to its listing: another partition refuses it.
    let cursor = p.list_keys(None, 5).await.unwrap().cursor.unwrap();
    let other = partition(&os, "app", "Other").await;
    other
        .store("x", b"v".to_vec(), StoreOptions::default())
        .await
        .unwrap();
    assert!(matches!(
        other.list_keys(Some(&cursor), 5).await,
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(p.list_keys(Some(&cursor), 5).await.unwrap().items.len(), 5);
}

#[tokio::test]
async fn partitions_are_listed_cleared_and_deleted() {
    let (backend, master) = fresh();
    let os = open_with(backend, &master).await;
    let store = os
        .application("app")
        .await
        .unwrap()
        .default_store()
        .await
        .unwrap();
    for name in ["A", "B"] {
        let p = store.partition(name).await.unwrap();
        for i in 0..3 {
            p.store(&i.to_string(), b"v".to_vec(), StoreOptions::default())
                .await
                .unwrap();
        }
    }
    let mut names = store.list_partitions(None, 10).await.unwrap().items;
    names.sort();
    assert_eq!(names, ["A", "B"]);
    assert_eq!(
        store.partition("A").await.unwrap().clear().await.unwrap(),
        3
    );
    assert!(
        store
            .partition("A")
            .await
            .unwrap()
            .list_keys(None, 10)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(store.delete_partition("B").await.unwrap(), 3);
    assert_eq!(store.list_partitions(None, 10).await.unwrap().items, ["A"]);
}

#[tokio::test]
async fn increment_and_compare_and_swap() {
    let (backend, master) = fresh();
    let os = open_with(backend, &master).await;
    let p = partition(&os, "app", "P").await;
    assert_eq!(p.increment("c", 5).await.unwrap(), 5);
    assert_eq!(p.increment("c", -2).await.unwrap(), 3);
    assert_eq!(p.retrieve("c").await.unwrap().value, b"3");
    p.store("text", b"abc".to_vec(), StoreOptions::default())
        .await
        .unwrap();
    assert!(matches!(
        p.increment("text", 1).await,
        Err(Error::InvalidArgument(_))
    ));
    p.store(
        "max",
        i64::MAX.to_string().into_bytes(),
        StoreOptions::default(),
    )
    .await
    .unwrap();
    assert!(matches!(
        p.increment("max", 1).await,
        Err(Error::InvalidArgument(_))
    ));

    let opts = StoreOptions::default();
    let m = p
        .compare_and_swap("cas", None, b"1".to_vec(), opts)
        .await
        .unwrap();
    assert_eq!(m.version, 1);
    let err = p
        .compare_and_swap("cas", None, b"x".to_vec(), opts)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::VersionMismatch { current: Some(1) }));
    p.compare_and_swap("cas", Some(1), b"2".to_vec(), opts)
        .await
        .unwrap();
    let err = p
        .compare_and_swap("cas", Some(1), b"x".to_vec(), opts)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::VersionMismatch { current: Some(2) }));
    assert_eq!(p.retrieve("cas").await.unwrap().value, b"2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_are_exact() {
    let (backend, master) = fresh();
    let os = open_with(backend, &master).await;
    let p = partition(&os, "app", "P").await;
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move { p.increment("n", 1).await.unwrap() })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(p.retrieve("n").await.unwrap().value, b"100");
}

#[tokio::test]
async fn keys_are_listed_by_prefix_with_their_metadata() {
    let (backend, master) = fresh();
    let os = open_with(backend, &master).await;
    let p = partition(&os, "app", "P").await;
    for k in ["order-1", "order-2", "user-1", "order-3"] {
        p.store(k, k.as_bytes().repeat(2), StoreOptions::default())
            .await
            .unwrap();
    }
    p.increment("order-9", 5).await.unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = p
            .list_key_metadata(Some("order-"), cursor.as_deref(), 1)
            .await
            .unwrap();
        seen.extend(page.items);
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let summary: Vec<_> = seen
        .iter()
        .map(|(k, m)| (k.as_str(), m.size, m.kind, m.expires.is_some()))
        .collect();
    assert_eq!(
        summary,
        [
            ("order-1", 14, ValueKind::String, true),
            ("order-2", 14, ValueKind::String, true),
            ("order-3", 14, ValueKind::String, true),
            ("order-9", 1, ValueKind::Number, true),
        ]
    );
    let all = p.list_key_metadata(None, None, 10).await.unwrap();
    assert_eq!(all.items.len(), 5);
}

/// Flips a byte in the middle of the one stored entry.
async fn damage_the_entry(backend: &MemoryBackend) {
    let (key, mut sealed) = backend
        .scan(Shards::ALL, b"e", None, 10)
        .await
        .unwrap()
        .into_iter()
        .next()
        .unwrap();
    let middle = sealed.len() / 2;
    sealed[middle] ^= 0x01;
    let mut batch = Batch::new(shard_of(&key));
    batch.put(key, sealed, Expect::Any);
    backend.commit(batch).await.unwrap();
}

#[tokio::test]
async fn a_damaged_record_is_reported_but_can_be_replaced_or_deleted_and_does_not_stop_the_sweep() {
    let (backend, master) = fresh();
    let clock = manual_clock();
    let os = open_at(backend.clone(), &master, &clock).await;
    let p = partition(&os, "app", "P").await;
    p.store("bad", b"v".to_vec(), StoreOptions::default())
        .await
        .unwrap();
    damage_the_entry(&backend).await;
    assert!(matches!(p.retrieve("bad").await, Err(Error::Integrity)));
    assert!(matches!(p.contains("bad").await, Err(Error::Integrity)));
    assert!(
        matches!(p.increment("bad", 1).await, Err(Error::Integrity)),
        "needs the old value"
    );
    assert!(
        matches!(p.remove("bad").await, Err(Error::Integrity)),
        "cannot return the old value"
    );
    // Overwriting replaces it; deleting removes it.
    p.store("bad", b"fresh".to_vec(), StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(p.retrieve("bad").await.unwrap().value, b"fresh");
    damage_the_entry(&backend).await;
    assert!(p.delete("bad").await.unwrap());
    assert!(!p.delete("bad").await.unwrap());
    assert!(!p.contains("bad").await.unwrap());

    // The sweep passes over a damaged record and reclaims the others.
    let short = StoreOptions {
        ttl: Some(Ttl::Fixed(1)),
        ..Default::default()
    };
    p.store("broken", b"v".to_vec(), short).await.unwrap();
    damage_the_entry(&backend).await;
    let q = partition(&os, "app", "Q").await;
    q.store("expiring", b"v".to_vec(), short).await.unwrap();
    clock.advance(Duration::from_millis(1100));
    assert_eq!(
        os.sweep_expired().await.unwrap(),
        1,
        "the intact expired key is reclaimed"
    );
    assert!(!q.contains("expiring").await.unwrap());
    assert!(
        matches!(p.contains("broken").await, Err(Error::Integrity)),
        "the damaged one is left"
    );
    assert_eq!(
        os.sweep_expired().await.unwrap(),
        0,
        "and does not stop later sweeps"
    );
    // Clearing removes the damaged record too.
    assert_eq!(p.clear().await.unwrap(), 1);
    assert!(
        backend
            .scan(Shards::ALL, b"e", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn partition_settings_hold_across_handles_and_deletion() {
    let (backend, master) = fresh();
    let os = open_with(backend.clone(), &master).await;
    let old = partition(&os, "app", "P").await;
    let mut setter = partition(&os, "app", "P").await;
    setter.set_ttl(Some(Ttl::Never)).await.unwrap();
    // An older handle writes with the new setting and does not undo it.
    assert_eq!(
        old.store("k", b"v".to_vec(), StoreOptions::default())
            .await
            .unwrap()
            .expires,
        None
    );
    let reopened = open_with(backend.clone(), &master).await;
    assert_eq!(
        partition(&reopened, "app", "P").await.effective_ttl(),
        Ttl::Never
    );

    // After the partition is deleted, a write through an old handle brings
    // it back as a listed partition.
    let store = os
        .application("app")
        .await
        .unwrap()
        .default_store()
        .await
        .unwrap();
    store.delete_partition("P").await.unwrap();
    old.store("k2", b"v".to_vec(), StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(store.list_partitions(None, 10).await.unwrap().items, ["P"]);
}

#[tokio::test]
async fn stores_are_listed_configured_and_deleted_with_their_data() {
    let (backend, master) = fresh();
    let os = open_with(backend.clone(), &master).await;
    let app = os.application("app").await.unwrap();
    assert!(
        app.find_store("S").await.unwrap().is_none(),
        "finding does not create"
    );
    let s = app
        .configure_store("S", Ttl::Rolling(60), StoreQuota::default())
        .await
        .unwrap();
    assert_eq!(s.default_ttl(), Ttl::Rolling(60));
    let p = s.partition("P").await.unwrap();
    p.store("k", b"v".to_vec(), StoreOptions::default())
        .await
        .unwrap();
    app.default_store().await.unwrap();
    let mut names: Vec<_> = app
        .list_stores(None, 10)
        .await
        .unwrap()
        .items
        .iter()
        .map(|s| s.name().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["S", DEFAULT_STORE]);

    let other = os.application("other").await.unwrap();
    assert!(
        !other.delete_store("S").await.unwrap(),
        "another application's store is not found"
    );
    assert!(app.delete_store("S").await.unwrap());
    assert!(app.find_store("S").await.unwrap().is_none());
    assert_eq!(app.list_stores(None, 10).await.unwrap().items.len(), 1);
    // Nothing of the store is left in the backend but the default store,
    // the application and the master check.
    assert!(
        backend
            .scan(Shards::ALL, b"e", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        backend
            .scan(Shards::ALL, b"p", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        backend
            .scan(Shards::ALL, b"y", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let recreated = app.store("S").await.unwrap().partition("P").await.unwrap();
    assert!(!recreated.contains("k").await.unwrap());
}

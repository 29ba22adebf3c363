use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::backend::MemoryBackend;

async fn open_with(backend: Arc<dyn Backend>, master: &MasterKey) -> ObjectStore {
    ObjectStore::open(backend, master, Config::default())
        .await
        .unwrap()
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

fn fresh() -> (Arc<MemoryBackend>, MasterKey) {
    (Arc::new(MemoryBackend::new()), MasterKey::generate())
}

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
    let all = backend.scan(b"", None, usize::MAX).await.unwrap();
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
    let mut batch = Batch::new();
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
async fn expired_keys_vanish_and_are_swept() {
    let (backend, master) = fresh();
    let os = open_with(backend.clone(), &master).await;
    let p = partition(&os, "app", "P").await;
    let one_second = StoreOptions {
        ttl: Some(Ttl::Fixed(1)),
        ..Default::default()
    };
    p.store("short", b"v".to_vec(), one_second).await.unwrap();
    p.store("long", b"v".to_vec(), StoreOptions::default())
        .await
        .unwrap();
    assert!(p.contains("short").await.unwrap());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(!p.contains("short").await.unwrap());
    assert!(matches!(p.retrieve("short").await, Err(Error::KeyNotFound)));
    assert_eq!(p.list_keys(None, 10).await.unwrap().items, ["long"]);
    // The record is still there until the sweep reclaims it.
    assert_eq!(backend.scan(b"e", None, 10).await.unwrap().len(), 2);
    assert_eq!(os.sweep_expired().await.unwrap(), 1);
    assert_eq!(backend.scan(b"e", None, 10).await.unwrap().len(), 1);
    assert_eq!(
        backend.scan(b"x", None, 10).await.unwrap().len(),
        1,
        "only long's index entry is left"
    );
    // An expired key can be stored again as a new key.
    let fail = StoreOptions {
        fail_if_present: true,
        ..one_second
    };
    p.store("short", b"again".to_vec(), fail).await.unwrap();
}

#[tokio::test]
async fn static_ttl_ignores_reads_and_rolling_ttl_is_extended_by_them() {
    let (backend, master) = fresh();
    let os = open_with(backend, &master).await;
    let p = partition(&os, "app", "P").await;
    let fixed = StoreOptions {
        ttl: Some(Ttl::Fixed(2)),
        ..Default::default()
    };
    let rolling = StoreOptions {
        ttl: Some(Ttl::Rolling(2)),
        ..Default::default()
    };
    p.store("fixed", b"v".to_vec(), fixed).await.unwrap();
    p.store("rolling", b"v".to_vec(), rolling).await.unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        p.retrieve("rolling").await.unwrap();
        let _ = p.retrieve("fixed").await;
    }
    // 2.4 s after being stored: the static key expired despite the reads,
    // the rolling key lives on because of them.
    assert!(!p.contains("fixed").await.unwrap());
    assert!(p.contains("rolling").await.unwrap());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(
        !p.contains("rolling").await.unwrap(),
        "unread, the rolling key expires"
    );
}

#[tokio::test]
async fn a_ttl_past_a_hundred_years_is_refused_and_nothing_is_stored() {
    let (backend, master) = fresh();
    let os = open_with(backend, &master).await;
    let p = partition(&os, "app", "P").await;
    let options = StoreOptions {
        ttl: Some(Ttl::Rolling(MAX_TTL_SECS + 1)),
        ..Default::default()
    };
    let refused = p.store("k", b"v".to_vec(), options).await;
    assert!(
        matches!(refused, Err(Error::InvalidArgument(_))),
        "{refused:?}"
    );
    assert!(!p.contains("k").await.unwrap());
    let longest = StoreOptions {
        ttl: Some(Ttl::Fixed(MAX_TTL_SECS)),
        ..Default::default()
    };
    assert!(p.store("k", b"v".to_vec(), longest).await.is_ok());
}

#[tokio::test]
async fn a_peek_reads_without_extending_a_rolling_ttl() {
    let (backend, master) = fresh();
    let os = open_with(backend, &master).await;
    let p = partition(&os, "app", "P").await;
    let rolling = StoreOptions {
        ttl: Some(Ttl::Rolling(4)),
        ..Default::default()
    };
    let written = p.store("k", b"v".to_vec(), rolling).await.unwrap();
    // Past a quarter of the window, a retrieve would move the expiry.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let peeked = p.peek("k").await.unwrap();
    assert_eq!(peeked.value, b"v");
    assert_eq!(peeked.metadata.expires, written.expires);
    assert_eq!(p.peek("k").await.unwrap().metadata.expires, written.expires);
    let read = p.retrieve("k").await.unwrap();
    assert!(read.metadata.expires > written.expires);
    assert!(matches!(p.peek("absent").await, Err(Error::KeyNotFound)));
}

#[tokio::test]
async fn partition_ttl_applies_to_keys_without_their_own() {
    let (backend, master) = fresh();
    let os = open_with(backend, &master).await;
    let mut p = partition(&os, "app", "P").await;
    p.set_ttl(Some(Ttl::Never)).await.unwrap();
    let m = p
        .store("forever", b"v".to_vec(), StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(m.expires, None);
    let reopened = partition(&os, "app", "P").await;
    assert_eq!(reopened.effective_ttl(), Ttl::Never);
    let own = StoreOptions {
        ttl: Some(Ttl::Fixed(60)),
        ..Default::default()
    };
    assert!(
        reopened
            .store("own", b"v".to_vec(), own)
            .await
            .unwrap()
            .expires
            .is_some()
    );
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
    assert!(backend.scan(b"e", None, 10).await.unwrap().is_empty());
    assert!(backend.scan(b"p", None, 10).await.unwrap().is_empty());
    assert!(backend.scan(b"x", None, 10).await.unwrap().is_empty());
    let recreated = app.store("S").await.unwrap().partition("P").await.unwrap();
    assert!(!recreated.contains("k").await.unwrap());
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

async fn open_limited(
    backend: Arc<dyn Backend>,
    master: &MasterKey,
    limits: Limits,
) -> ObjectStore {
    let config = Config {
        limits,
        ..Config::default()
    };
    ObjectStore::open(backend, master, config).await.unwrap()
}

#[tokio::test]
async fn an_application_may_have_at_most_max_stores_stores() {
    let (backend, master) = fresh();
    let limits = Limits {
        max_stores: 2,
        ..Limits::default()
    };
    let os = open_limited(backend, &master, limits).await;
    let app = os.application("app").await.unwrap();
    app.store("a").await.unwrap();
    app.store("b").await.unwrap();
    assert_eq!(app.store_count().await.unwrap(), 2);
    assert!(matches!(app.store("c").await, Err(Error::QuotaExceeded(_))));
    assert!(app.find_store("c").await.unwrap().is_none());
    // The stores it has stay usable.
    app.store("a").await.unwrap();
    assert!(app.delete_store("b").await.unwrap());
    app.store("c").await.unwrap();
    assert_eq!(app.store_count().await.unwrap(), 2);
}

#[tokio::test]
async fn quotas_refuse_whole_writes_and_usage_follows_the_data() {
    let (backend, master) = fresh();
    let limits = Limits {
        max_keys: Some(3),
        ..Limits::default()
    };
    let os = open_limited(backend.clone(), &master, limits.clone()).await;
    let p = partition(&os, "app", "P").await;
    for k in ["a", "b", "c"] {
        p.store(k, b"v".to_vec(), StoreOptions::default())
            .await
            .unwrap();
    }
    let err = p
        .store("d", b"v".to_vec(), StoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::QuotaExceeded(_)));
    assert!(
        !p.contains("d").await.unwrap(),
        "nothing of the refused write is stored"
    );
    assert!(matches!(
        p.increment("n", 1).await,
        Err(Error::QuotaExceeded(_))
    ));
    // Overwriting an existing key does not add a key.
    p.store("a", b"w".to_vec(), StoreOptions::default())
        .await
        .unwrap();
    p.remove("c").await.unwrap();
    p.store("d", b"v".to_vec(), StoreOptions::default())
        .await
        .unwrap();
    let app = os.application("app").await.unwrap();
    assert_eq!(app.footprint().keys, 3);
    let bytes = app.footprint().bytes;
    assert!(bytes > 0);
    // A restarted host counts the same from the data.
    let reopened = open_limited(backend, &master, limits).await;
    let again = reopened.application("app").await.unwrap();
    assert_eq!(again.footprint(), Footprint { keys: 3, bytes });
    partition(&reopened, "app", "P")
        .await
        .clear()
        .await
        .unwrap();
    assert_eq!(again.footprint(), Footprint::default());
}

#[tokio::test]
async fn the_request_rate_is_limited_per_application() {
    let (backend, master) = fresh();
    let limits = Limits {
        requests_per_second: Some(5),
        ..Limits::default()
    };
    let os = open_limited(backend, &master, limits).await;
    let p = partition(&os, "app", "P").await;
    let mut limited = 0;
    for i in 0..10 {
        match p
            .store(&i.to_string(), b"v".to_vec(), StoreOptions::default())
            .await
        {
            Ok(_) => {}
            Err(Error::RateLimited { retry_after }) => {
                assert!(retry_after <= Duration::from_secs(1));
                limited += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        limited >= 4,
        "only {limited} of 10 rapid requests were limited"
    );
    // Another application has its own budget.
    let other = partition(&os, "other", "P").await;
    other
        .store("k", b"v".to_vec(), StoreOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn request_counts_are_exact_and_survive_reopening() {
    let (backend, master) = fresh();
    let os = open_with(backend.clone(), &master).await;
    let p = partition(&os, "app", "P").await;
    for i in 0..7 {
        p.store(&i.to_string(), b"v".to_vec(), StoreOptions::default())
            .await
            .unwrap();
    }
    p.retrieve("1").await.unwrap();
    let other_store = os
        .application("app")
        .await
        .unwrap()
        .store("S2")
        .await
        .unwrap();
    other_store
        .partition("Q")
        .await
        .unwrap()
        .contains("x")
        .await
        .unwrap();
    let app = os.application("app").await.unwrap();
    let today = usage::day_of(now_ms());
    let days = app.daily_stats(None, 0, u32::MAX).await.unwrap();
    assert_eq!(days[&today].requests, 9, "before any flush");
    assert_eq!(days[&today].keys, 7);
    os.flush_stats().await.unwrap();
    os.flush_stats().await.unwrap();
    let days = app
        .daily_stats(Some(DEFAULT_STORE), today, today)
        .await
        .unwrap();
    assert_eq!(days[&today].requests, 8);
    let reopened = open_with(backend, &master).await;
    let app = reopened.application("app").await.unwrap();
    assert_eq!(
        app.daily_stats(None, today, today).await.unwrap()[&today].requests,
        9
    );
    assert_eq!(
        app.daily_stats(Some("S2"), today, today).await.unwrap()[&today].requests,
        1
    );
    assert!(
        app.daily_stats(None, 0, today - 1)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Flips a byte in the middle of the one stored entry.
async fn damage_the_entry(backend: &MemoryBackend) {
    let (key, mut sealed) = backend
        .scan(b"e", None, 10)
        .await
        .unwrap()
        .into_iter()
        .next()
        .unwrap();
    let middle = sealed.len() / 2;
    sealed[middle] ^= 0x01;
    let mut batch = Batch::new();
    batch.put(key, sealed, Expect::Any);
    backend.commit(batch).await.unwrap();
}

#[tokio::test]
async fn a_damaged_record_is_reported_but_can_be_replaced_or_deleted_and_does_not_stop_the_sweep() {
    let (backend, master) = fresh();
    let os = open_with(backend.clone(), &master).await;
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
    tokio::time::sleep(Duration::from_millis(1100)).await;
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
    assert!(backend.scan(b"e", None, 10).await.unwrap().is_empty());
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
async fn a_counter_keeps_its_own_ttl() {
    let (backend, master) = fresh();
    let os = open_with(backend, &master).await;
    let p = partition(&os, "app", "P").await;
    let forever = StoreOptions {
        ttl: Some(Ttl::Never),
        ..Default::default()
    };
    p.store("n", b"1".to_vec(), forever).await.unwrap();
    p.increment("n", 1).await.unwrap();
    assert_eq!(p.retrieve("n").await.unwrap().metadata.expires, None);
}

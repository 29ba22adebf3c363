use std::time::Duration;

use super::*;

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
    let today = os.clock().today();
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

/// A backend whose commits wait at a gate while it is shut.
struct Gated {
    inner: Arc<MemoryBackend>,
    shut: std::sync::atomic::AtomicBool,
    open: tokio::sync::Semaphore,
}

impl Backend for Gated {
    fn get<'a>(
        &'a self,
        shard: &'a [u8],
        key: &'a [u8],
    ) -> crate::backend::BoxFuture<'a, Result<Option<Vec<u8>>, crate::backend::BackendError>> {
        self.inner.get(shard, key)
    }

    fn scan<'a>(
        &'a self,
        shards: Shards<'a>,
        prefix: &'a [u8],
        after: Option<&'a [u8]>,
        limit: usize,
    ) -> crate::backend::BoxFuture<
        'a,
        Result<Vec<crate::backend::Pair>, crate::backend::BackendError>,
    > {
        self.inner.scan(shards, prefix, after, limit)
    }

    fn commit(
        &self,
        batch: Batch,
    ) -> crate::backend::BoxFuture<'_, Result<(), crate::backend::BackendError>> {
        Box::pin(async move {
            if self.shut.load(std::sync::atomic::Ordering::SeqCst) {
                self.open.acquire().await.expect("the gate").forget();
            }
            self.inner.commit(batch).await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stats_query_during_a_flush_counts_every_request_once() {
    let backend = Arc::new(Gated {
        inner: Arc::new(MemoryBackend::new()),
        shut: false.into(),
        open: tokio::sync::Semaphore::new(0),
    });
    let os = open_with(backend.clone(), &MasterKey::generate()).await;
    let p = partition(&os, "app", "P").await;
    p.store("k", b"v".to_vec(), StoreOptions::default())
        .await
        .unwrap();
    os.flush_stats().await.unwrap();
    // Reads: counted requests that change no usage, so the next flush
    // commits the request counts and nothing else.
    for _ in 0..3 {
        p.retrieve("k").await.unwrap();
    }
    let app = os.application("app").await.unwrap();
    let today = os.clock().today();
    backend
        .shut
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let flush = tokio::spawn({
        let os = os.clone();
        async move { os.flush_stats().await }
    });
    // The flush has taken the counts from memory and waits to store them.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let query = tokio::spawn(async move { app.daily_stats(None, today, today).await });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    backend
        .shut
        .store(false, std::sync::atomic::Ordering::SeqCst);
    backend.open.add_permits(100);
    flush.await.unwrap().unwrap();
    let days = query.await.unwrap().unwrap();
    assert_eq!(days[&today].requests, 4, "the store and three reads");
}

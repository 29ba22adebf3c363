//! Three hosts (three `ObjectStore`s) on one backend and one manual clock:
//! what one host changes, the others see within the stated bounds, and the
//! limits and counts hold for all of them together.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::task::JoinSet;

use super::*;
use crate::backend::{BackendError, BoxFuture, Pair};

/// The shared memory backend as a networked one behaves: every call yields
/// to other tasks before it runs, so the hosts' requests interleave between
/// a read and the commit that depends on it.
struct Interleaving(Arc<MemoryBackend>);

impl Backend for Interleaving {
    fn get<'a>(
        &'a self,
        shard: &'a [u8],
        key: &'a [u8],
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, BackendError>> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            self.0.get(shard, key).await
        })
    }

    fn scan<'a>(
        &'a self,
        shards: Shards<'a>,
        prefix: &'a [u8],
        after: Option<&'a [u8]>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Pair>, BackendError>> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            self.0.scan(shards, prefix, after, limit).await
        })
    }

    fn commit(&self, batch: Batch) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            self.0.commit(batch).await
        })
    }
}

/// Three hosts on one memory backend, with one clock and the same limits.
pub(super) struct Hosts {
    pub backend: Arc<MemoryBackend>,
    master: MasterKey,
    clock: Arc<ManualClock>,
    limits: Limits,
    pub all: [ObjectStore; 3],
}

impl Hosts {
    pub(super) async fn start(limits: Limits) -> Self {
        let (backend, master) = fresh();
        let clock = manual_clock();
        let mut all = Vec::new();
        for _ in 0..3 {
            all.push(open_host(&backend, &master, &clock, &limits).await);
        }
        Self {
            all: all.try_into().ok().expect("three hosts"),
            backend,
            master,
            clock,
            limits,
        }
    }

    /// A fourth host started now.
    async fn another(&self) -> ObjectStore {
        open_host(&self.backend, &self.master, &self.clock, &self.limits).await
    }

    pub(super) async fn app(&self, host: usize) -> Application {
        self.all[host].application("app").await.unwrap()
    }

    /// Flushes every host once: each reads the kept counts then.
    pub(super) async fn flush_all(&self) {
        for host in &self.all {
            host.flush_stats().await.unwrap();
        }
    }

    /// Two rounds of flushes: every host has seen every other's changes.
    pub(super) async fn exchange_all(&self) {
        self.flush_all().await;
        self.flush_all().await;
    }

    /// How many entry records the backend holds.
    pub(super) async fn stored_keys(&self) -> u64 {
        self.backend
            .scan(Shards::ALL, b"e", None, 100_000)
            .await
            .unwrap()
            .len() as u64
    }
}

async fn open_host(
    backend: &Arc<MemoryBackend>,
    master: &MasterKey,
    clock: &Arc<ManualClock>,
    limits: &Limits,
) -> ObjectStore {
    let config = Config {
        limits: limits.clone(),
        clock: clock.clone(),
        ..Config::default()
    };
    let backend = Arc::new(Interleaving(backend.clone()));
    ObjectStore::open(backend, master, config).await.unwrap()
}

async fn partition_of(os: &ObjectStore, store: &str, name: &str) -> Partition {
    let app = os.application("app").await.unwrap();
    app.store(store)
        .await
        .unwrap()
        .partition(name)
        .await
        .unwrap()
}

fn plain() -> StoreOptions {
    StoreOptions::default()
}

/// Past the bound within which every host sees another's settings.
const PAST_THE_CACHE_BOUND: Duration = Duration::from_millis(1000);

#[tokio::test]
async fn settings_changed_on_one_host_apply_on_every_host_within_a_second() {
    let hosts = Hosts::start(Limits::default()).await;
    let app0 = hosts.app(0).await;
    app0.configure_store("S", Ttl::Fixed(60), StoreQuota::default())
        .await
        .unwrap();
    let on1 = partition_of(&hosts.all[1], "S", "P").await;
    let mut on2 = partition_of(&hosts.all[2], "S", "P").await;
    let now = || hosts.clock.now_ms();
    let expiry = |m: Metadata| m.expires.map(|e| e - now());
    assert_eq!(
        expiry(on1.store("a", b"v".to_vec(), plain()).await.unwrap()),
        Some(60_000)
    );

    // A store's default TTL, changed on host 0.
    app0.configure_store("S", Ttl::Fixed(600), StoreQuota::default())
        .await
        .unwrap();
    hosts.clock.advance(PAST_THE_CACHE_BOUND);
    assert_eq!(
        expiry(on1.store("b", b"v".to_vec(), plain()).await.unwrap()),
        Some(600_000),
        "host 1 writes with the TTL host 0 set"
    );

    // A partition's TTL, set on host 2.
    on2.set_ttl(Some(Ttl::Fixed(5))).await.unwrap();
    hosts.clock.advance(PAST_THE_CACHE_BOUND);
    assert_eq!(
        expiry(on1.store("c", b"v".to_vec(), plain()).await.unwrap()),
        Some(5_000)
    );

    // A store's quota, set on host 0.
    let quota = StoreQuota {
        max_keys: Some(3),
        max_bytes: None,
    };
    app0.configure_store("S", Ttl::Fixed(600), quota)
        .await
        .unwrap();
    hosts.clock.advance(PAST_THE_CACHE_BOUND);
    assert!(matches!(
        on1.store("d", b"v".to_vec(), plain()).await,
        Err(Error::QuotaExceeded(_))
    ));

    // The store, deleted on host 0: the others' handles stop writing.
    assert!(app0.delete_store("S").await.unwrap());
    hosts.clock.advance(PAST_THE_CACHE_BOUND);
    for p in [&on1, &on2] {
        assert!(matches!(
            p.store("e", b"v".to_vec(), plain()).await,
            Err(Error::StoreNotFound)
        ));
        assert!(matches!(
            p.increment("n", 1).await,
            Err(Error::StoreNotFound)
        ));
    }
    assert!(hosts.app(2).await.find_store("S").await.unwrap().is_none());
    assert_eq!(
        hosts.stored_keys().await,
        0,
        "nothing was written after the deletion"
    );
    assert_eq!(
        hosts
            .app(1)
            .await
            .list_stores(None, 10)
            .await
            .unwrap()
            .items
            .len(),
        0
    );
}

#[tokio::test]
async fn concurrent_increments_spread_over_three_hosts_are_exact() {
    let hosts = Hosts::start(Limits::default()).await;
    let mut tasks = JoinSet::new();
    for host in &hosts.all {
        let p = partition_of(host, DEFAULT_STORE, "P").await;
        for _ in 0..64 {
            let p = p.clone();
            tasks.spawn(async move { p.increment("n", 1).await.unwrap() });
        }
    }
    let seen: BTreeSet<i64> = tasks.join_all().await.into_iter().collect();
    assert_eq!(seen, (1..=192).collect(), "each value is seen once");
    let p = partition_of(&hosts.all[0], DEFAULT_STORE, "P").await;
    assert_eq!(p.retrieve("n").await.unwrap().value, b"192");
}

#[tokio::test]
async fn the_request_rate_holds_for_all_hosts_together() {
    const RATE: u64 = 20;
    let hosts = Hosts::start(Limits {
        requests_per_second: Some(RATE as u32),
        ..Limits::default()
    })
    .await;
    let mut partitions = Vec::new();
    for host in &hosts.all {
        partitions.push(partition_of(host, DEFAULT_STORE, "P").await);
    }
    let step = Duration::from_millis(50);
    let mut admitted = 0;
    // Every host tries more than the rate allows, at every step.
    for tick in 0..=60u64 {
        for p in &partitions {
            for _ in 0..10 {
                match p.contains("k").await {
                    Ok(_) => admitted += 1,
                    Err(Error::RateLimited { retry_after }) => {
                        assert!(
                            retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1)
                        )
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
        let elapsed_ms = tick * step.as_millis() as u64;
        let bound = RATE + RATE * elapsed_ms / 1000;
        assert!(
            admitted <= bound,
            "{admitted} requests admitted within {elapsed_ms} ms; at most {bound} may be"
        );
        hosts.clock.advance(step);
    }
    // And the hosts together get (nearly) the whole rate: no host's unused
    // share is lost for long.
    assert!(
        admitted >= RATE * 3,
        "only {admitted} requests admitted in 3 s"
    );
}

/// Writes new keys through `p` until a quota refuses one; returns how many
/// were stored.
async fn fill(p: Partition, writer: usize) -> u64 {
    let mut stored = 0;
    for i in 0.. {
        match p
            .store(&format!("{writer}-{i}"), b"v".to_vec(), plain())
            .await
        {
            Ok(_) => stored += 1,
            Err(Error::QuotaExceeded(_)) => return stored,
            Err(e) => panic!("{e}"),
        }
    }
    unreachable!()
}

#[tokio::test]
async fn quotas_hold_within_the_documented_bound_under_writers_on_three_hosts() {
    const APP_MAX_KEYS: u64 = 64;
    const STORE_MAX_KEYS: u64 = 24;
    const WRITERS_PER_HOST: u64 = 4;
    let hosts = Hosts::start(Limits {
        max_keys: Some(APP_MAX_KEYS),
        ..Limits::default()
    })
    .await;
    let quota = StoreQuota {
        max_keys: Some(STORE_MAX_KEYS),
        max_bytes: None,
    };
    hosts
        .app(0)
        .await
        .configure_store("S", Ttl::Never, quota)
        .await
        .unwrap();
    // The module doc's bound: with N hosts, at most (N-1)·max(Q/16, what
    // one host has under way) over a quota Q.
    let overshoot = |q: u64| 2 * (q / 16).max(WRITERS_PER_HOST);

    // First a store's quota, then the application's (over both stores).
    for (store, max) in [("S", STORE_MAX_KEYS), (DEFAULT_STORE, APP_MAX_KEYS)] {
        let before = hosts.stored_keys().await;
        let mut writers = JoinSet::new();
        for (h, host) in hosts.all.iter().enumerate() {
            let p = partition_of(host, store, "P").await;
            for w in 0..WRITERS_PER_HOST as usize {
                writers.spawn(fill(p.clone(), h * 100 + w));
            }
        }
        let accepted: u64 = writers.join_all().await.into_iter().sum();
        let held = hosts.stored_keys().await;
        assert_eq!(accepted, held - before);
        assert!(
            held >= max && held <= max + overshoot(max),
            "{store}: {held} keys held under a quota of {max}"
        );
        // Every host refuses one more.
        hosts.flush_all().await;
        for host in &hosts.all {
            let p = partition_of(host, store, "P").await;
            assert!(matches!(
                p.store("one-more", b"v".to_vec(), plain()).await,
                Err(Error::QuotaExceeded(_))
            ));
        }
    }
    // Every host's view is what is stored.
    hosts.exchange_all().await;
    let total = hosts.stored_keys().await;
    for h in 0..3 {
        assert_eq!(hosts.app(h).await.footprint().keys, total, "host {h}");
    }
}

#[tokio::test]
async fn a_host_that_starts_reads_the_counters_instead_of_counting() {
    let hosts = Hosts::start(Limits::default()).await;
    let p = partition_of(&hosts.all[0], DEFAULT_STORE, "P").await;
    for k in ["a", "b", "c"] {
        p.store(k, b"v".to_vec(), plain()).await.unwrap();
    }
    hosts.flush_all().await;
    let counted = hosts.app(0).await.footprint();
    assert_eq!(counted.keys, 3);
    // A record the counters do not know of (as one left by a host that
    // crashed before adding its changes): a host that counted the data
    // would see four keys.
    let (key, value) = hosts
        .backend
        .scan(Shards::ALL, b"e", None, 1)
        .await
        .unwrap()
        .remove(0);
    let mut stray = key.clone();
    *stray.last_mut().unwrap() ^= 1;
    let mut batch = Batch::new(shard_of(&stray));
    batch.put(stray, value, Expect::Absent);
    hosts.backend.commit(batch).await.unwrap();
    let fourth = hosts.another().await;
    assert_eq!(
        fourth.application("app").await.unwrap().footprint(),
        counted
    );
}

#[tokio::test]
async fn request_counts_and_sizes_are_the_sum_over_hosts() {
    let hosts = Hosts::start(Limits::default()).await;
    let mut requests = 0;
    for (h, host) in hosts.all.iter().enumerate() {
        let p = partition_of(host, DEFAULT_STORE, "P").await;
        for i in 0..=h {
            p.store(&format!("{h}-{i}"), b"v".to_vec(), plain())
                .await
                .unwrap();
            p.retrieve(&format!("{h}-{i}")).await.unwrap();
            requests += 2;
        }
    }
    let today = hosts.clock.today();
    hosts.exchange_all().await;
    let keys = hosts.stored_keys().await;
    assert_eq!(keys, 6);
    for h in 0..3 {
        let app = hosts.app(h).await;
        let days = app.daily_stats(None, today, today).await.unwrap();
        assert_eq!(days[&today].requests, requests, "host {h}");
        assert_eq!(days[&today].keys, keys, "host {h}");
        assert_eq!(app.footprint().keys, keys, "host {h}");
    }
    // The stored size is the shared total too, not one host's view.
    let fourth = hosts.another().await;
    let days = fourth
        .application("app")
        .await
        .unwrap()
        .daily_stats(Some(DEFAULT_STORE), today, today)
        .await
        .unwrap();
    assert_eq!(days[&today].keys, keys);

    // A host that stops cleanly (the host's shutdown flushes) loses
    // nothing; the others count it.
    let p = partition_of(&hosts.all[2], DEFAULT_STORE, "P").await;
    p.store("late", b"v".to_vec(), plain()).await.unwrap();
    hosts.all[2].flush_stats().await.unwrap();
    let app0 = hosts.app(0).await;
    let days = app0.daily_stats(None, today, today).await.unwrap();
    assert_eq!(days[&today].requests, requests + 1);
    hosts.all[0].flush_stats().await.unwrap();
    assert_eq!(app0.footprint().keys, keys + 1);
}

#[tokio::test]
async fn two_hosts_sweeping_at_once_delete_each_expired_key_once() {
    const EXPIRING: u64 = 40;
    let hosts = Hosts::start(Limits::default()).await;
    let p = partition_of(&hosts.all[0], DEFAULT_STORE, "P").await;
    let one_second = StoreOptions {
        ttl: Some(Ttl::Fixed(1)),
        ..plain()
    };
    for i in 0..EXPIRING {
        p.store(&format!("short-{i}"), b"v".to_vec(), one_second)
            .await
            .unwrap();
    }
    for i in 0..5 {
        p.store(&format!("long-{i}"), b"v".to_vec(), plain())
            .await
            .unwrap();
    }
    hosts.flush_all().await;
    assert_eq!(hosts.app(1).await.footprint().keys, EXPIRING + 5);
    hosts.clock.advance(Duration::from_secs(2));
    // Both hosts read every due key before either deletes it: the one that
    // commits second finds the key changed.
    let mut sweeps = JoinSet::new();
    for host in &hosts.all[1..] {
        let host = host.clone();
        sweeps.spawn(async move { host.sweep_expired().await.unwrap() });
    }
    let swept: Vec<u64> = sweeps.join_all().await;
    assert_eq!(
        swept.iter().sum::<u64>(),
        EXPIRING,
        "swept per host: {swept:?}"
    );
    assert_eq!(hosts.stored_keys().await, 5);
    hosts.exchange_all().await;
    for h in 0..3 {
        assert_eq!(hosts.app(h).await.footprint().keys, 5, "host {h}");
    }
}

#[tokio::test]
async fn a_clear_racing_deletes_on_another_host_counts_each_key_once() {
    const KEYS: u64 = 50;
    let hosts = Hosts::start(Limits::default()).await;
    let clearer = partition_of(&hosts.all[0], DEFAULT_STORE, "P").await;
    let deleter = partition_of(&hosts.all[1], DEFAULT_STORE, "P").await;
    for i in 0..KEYS {
        clearer
            .store(&format!("k{i}"), b"v".to_vec(), plain())
            .await
            .unwrap();
    }
    hosts.exchange_all().await;
    // The deleter starts first: its first delete lands between the clear's
    // scan and its commit.
    let mut tasks = JoinSet::new();
    tasks.spawn(async move {
        let mut deleted = 0;
        for i in 0..KEYS {
            deleted += u64::from(deleter.delete(&format!("k{i}")).await.unwrap());
        }
        deleted
    });
    tasks.spawn(async move { clearer.clear().await.unwrap() });
    let removed: Vec<u64> = tasks.join_all().await;
    assert_eq!(removed.iter().sum::<u64>(), KEYS, "removed: {removed:?}");
    assert_eq!(hosts.stored_keys().await, 0);
    // The counters are back at zero, not below: new keys count from there.
    let p = partition_of(&hosts.all[2], DEFAULT_STORE, "P").await;
    for k in ["a", "b", "c"] {
        p.store(k, b"v".to_vec(), plain()).await.unwrap();
    }
    hosts.exchange_all().await;
    for h in 0..3 {
        assert_eq!(hosts.app(h).await.footprint().keys, 3, "host {h}");
    }
}

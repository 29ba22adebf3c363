//! Kept counts: what a host reads at start equals a recount of the data,
//! however the hosts before it stopped, and what a host knows while it runs
//! follows the data.

use std::collections::HashMap;
use std::time::Duration;

use super::damage::raw;
use super::*;
use crate::encryption::Tag;
use crate::objectstore::record::UsageRecord;

pub(super) const STORES: [&str; 3] = [DEFAULT_STORE, "s1", "s2"];

/// A small seeded generator (xorshift), so a failure can be replayed.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Keys and bytes at rest of each store of application `app`, recounted
/// from the backend's entries.
pub(super) async fn recount(backend: &dyn Backend, app: Tag) -> HashMap<Tag, Footprint> {
    let prefix = [&b"e"[..], &app].concat();
    let mut counts: HashMap<Tag, Footprint> = HashMap::new();
    for (key, sealed) in raw(backend, &prefix).await {
        let Some(keys::RecordKey::Entry(id)) = keys::RecordKey::parse(&key) else {
            panic!("a malformed entry key");
        };
        let f = counts.entry(id.partition.store).or_default();
        f.keys += 1;
        f.bytes += (key.len() + sealed.len()) as u64;
    }
    counts
}

/// What a host starting now reads for each store, next to a recount.
async fn read_at_start(
    backend: &Arc<MemoryBackend>,
    master: &MasterKey,
) -> (HashMap<Tag, Footprint>, HashMap<Tag, Footprint>) {
    let os = open_with(backend.clone(), master).await;
    let app = os.application("app").await.unwrap();
    view_and_recount(&**backend, &app).await
}

/// Each store's keys and bytes as `app`'s host knows them, next to a
/// recount.
pub(super) async fn view_and_recount(
    backend: &dyn Backend,
    app: &Application,
) -> (HashMap<Tag, Footprint>, HashMap<Tag, Footprint>) {
    let recounted = recount(backend, app.state.tag).await;
    let view = STORES
        .iter()
        .map(|name| app.state.store_tag(name))
        .map(|tag| (tag, app.state.usage.footprint(tag)))
        .filter(|(tag, f)| *f != Footprint::default() || recounted.contains_key(tag))
        .collect();
    (view, recounted)
}

/// One random operation of `rng`'s choosing through `os`; whether it
/// succeeded. Some fail by design (a key absent, a store deleted a moment
/// before); what matters is what lands. Without `delete_stores`, a store's
/// deletion gives way to clearing a partition.
pub(super) async fn random_op(
    os: &ObjectStore,
    clock: &ManualClock,
    rng: &mut Rng,
    delete_stores: bool,
) -> bool {
    let app = os.application("app").await.unwrap();
    let store = STORES[rng.below(3) as usize];
    let Ok(store) = app.store(store).await else {
        return false;
    };
    let Ok(p) = store.partition(&format!("p{}", rng.below(3))).await else {
        return false;
    };
    let key = format!("key-{}", rng.below(40));
    let value = vec![b'v'; rng.below(300) as usize];
    match rng.below(100) {
        0..40 => p.store(&key, value, StoreOptions::default()).await.is_ok(),
        40..50 => {
            let ttl = Some(Ttl::Fixed(1 + rng.below(3)));
            let options = StoreOptions {
                ttl,
                ..StoreOptions::default()
            };
            p.store(&key, value, options).await.is_ok()
        }
        50..65 => p.delete(&key).await.is_ok(),
        65..75 => p.increment("counter", rng.below(1000) as i64).await.is_ok(),
        75..82 => {
            let entries: Vec<(String, Vec<u8>)> = (0..3)
                .map(|_| (format!("key-{}", rng.below(40)), vec![b'm'; 50]))
                .collect();
            p.store_many(&entries, StoreOptions::default())
                .await
                .is_ok()
        }
        82..88 => {
            let keys: Vec<String> = (0..3).map(|_| format!("key-{}", rng.below(40))).collect();
            p.remove_many(&keys).await.is_ok()
        }
        88..96 => {
            clock.advance(Duration::from_millis(700));
            os.sweep_expired().await.is_ok()
        }
        96..98 => p.clear().await.is_ok(),
        _ if store.name() == DEFAULT_STORE || !delete_stores => p.clear().await.is_ok(),
        _ => app.delete_store(store.name()).await.is_ok(),
    }
}

/// 10,000 random operations (creations, overwrites, TTLs and sweeps,
/// deletions, increments, batches, clearing partitions, deleting stores)
/// by four writers on two hosts at once; then both hosts stop without a
/// word, as kill -9 stops them: no flush, no clean stop. A host started
/// after them reads counts equal to a recount, and `ostore check` finds
/// them right, partition by partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_read_at_start_equal_a_recount_after_10000_random_operations_and_a_kill() {
    let (backend, master) = fresh();
    let clock = manual_clock();
    let hosts = [
        open_at(backend.clone(), &master, &clock).await,
        open_at(backend.clone(), &master, &clock).await,
    ];
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let os = hosts[(w % 2) as usize].clone();
        let clock = clock.clone();
        writers.push(tokio::spawn(async move {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (w + 1));
            let mut landed = 0;
            for _ in 0..2_500 {
                landed += u32::from(random_op(&os, &clock, &mut rng, true).await);
            }
            landed
        }));
    }
    let mut landed = 0;
    for writer in writers {
        landed += writer.await.unwrap();
    }
    assert!(landed > 8_000, "only {landed} of 10,000 operations landed");
    drop(hosts);

    let (read, recounted) = read_at_start(&backend, &master).await;
    assert!(!recounted.is_empty(), "the operations left keys");
    assert_eq!(read, recounted);
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
}

/// Data from a version that kept one counter per store (flushed once a
/// second, so perhaps wrong) and no kept counts: the first host of this
/// version counts every partition, deletes the old counters, and reads
/// the recount.
#[tokio::test]
async fn data_from_before_kept_counts_is_counted_at_start() {
    let (backend, master) = fresh();
    let os = open_with(backend.clone(), &master).await;
    let app = os.application("app").await.unwrap();
    for store in STORES {
        let store = app.store(store).await.unwrap();
        for p in 0..2 {
            let p = store.partition(&format!("p{p}")).await.unwrap();
            for i in 0..(20 + p.name().len() * 3) {
                p.store(&format!("k{i}"), vec![b'x'; i], StoreOptions::default())
                    .await
                    .unwrap();
            }
        }
    }
    // As the earlier version left it: no kept counts, and a store counter
    // a flush behind.
    for (key, _) in raw(&*backend, b"k").await {
        let mut batch = Batch::new(shard_of(&key));
        batch.delete(key, Expect::Any);
        backend.commit(batch).await.unwrap();
    }
    let legacy = keys::RecordKey::Usage {
        app: app.state.tag,
        store: app.state.store_tag(DEFAULT_STORE),
    };
    let stale = UsageRecord { keys: 3, bytes: 9 };
    os.inner
        .table(&app.state)
        .put(&legacy, &stale)
        .await
        .unwrap();
    drop(app);
    drop(os);

    let (read, recounted) = read_at_start(&backend, &master).await;
    assert_eq!(recounted.len(), 3);
    assert_eq!(read, recounted);
    assert!(
        raw(&*backend, b"u").await.is_empty(),
        "old counters deleted"
    );
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
}

/// A host expects its slot of a partition's counts as its last batch wrote
/// it, without reading it. When another writer emptied the slot meanwhile
/// (here a host recounting the partition, as one does for data without a
/// base), the next batch fails on it, reads the slot again and lands: the
/// write is not refused, and the counts stay equal to a recount.
#[tokio::test]
async fn a_slot_emptied_behind_a_hosts_back_is_read_again() {
    let (backend, master) = fresh();
    let os = open_with(backend.clone(), &master).await;
    let p = partition(&os, "app", "p").await;
    for i in 0..5 {
        p.store(&format!("k{i}"), vec![b'x'; 10], StoreOptions::default())
            .await
            .unwrap();
    }
    let slot = os.inner.index_locks.slot();
    let slot_key = keys::RecordKey::Counts {
        partition: p.id(),
        slot,
    }
    .encode();
    let shard = shard_of(&slot_key);
    assert!(backend.get(&shard, &slot_key).await.unwrap().is_some());
    // The base gone, as in data from before kept counts: the next host to
    // write counts the partition and empties every slot.
    let base = keys::RecordKey::Counts {
        partition: p.id(),
        slot: 0,
    }
    .encode();
    let mut batch = Batch::new(shard.clone());
    batch.delete(base, Expect::Any);
    backend.commit(batch).await.unwrap();
    let other = open_with(backend.clone(), &master).await;
    partition(&other, "app", "p")
        .await
        .store("from-the-other", vec![b'y'; 10], StoreOptions::default())
        .await
        .unwrap();
    let emptied = backend.get(&shard, &slot_key).await.unwrap();
    assert!(emptied.is_none() || other.inner.index_locks.slot() == slot);

    for i in 5..10 {
        p.store(&format!("k{i}"), vec![b'x'; 10], StoreOptions::default())
            .await
            .unwrap();
    }
    p.delete("k0").await.unwrap();
    drop((p, os, other));
    let (read, recounted) = read_at_start(&backend, &master).await;
    assert_eq!(read, recounted);
    let keys: u64 = recounted.values().map(|f| f.keys).sum();
    assert_eq!(keys, 10);
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
}

/// A store deleted and made again, with keys written before a flush: the
/// deletion took the partition's counts, this host's slot among them, and
/// the slot made again goes on from the sequence numbers the host used
/// before. The host's view then equals a recount at once (before, a view
/// counted the deletion and not the new keys until the slot's numbers
/// caught up), and after the next flush, on a sole host and a shared one.
#[tokio::test]
async fn a_hosts_view_follows_a_store_deleted_and_made_again() {
    for sole_host in [true, false] {
        let (backend, master) = fresh();
        let config = Config {
            sole_host,
            ..Config::default()
        };
        let os = ObjectStore::open(backend.clone(), &master, config)
            .await
            .unwrap();
        let app = os.application("app").await.unwrap();
        fill_s1(&app, 8).await;
        os.flush_stats().await.unwrap();
        assert!(app.delete_store("s1").await.unwrap());
        fill_s1(&app, 3).await;
        let (view, recounted) = view_and_recount(&*backend, &app).await;
        assert_eq!(recounted[&app.state.store_tag("s1")].keys, 3);
        assert_eq!(view, recounted, "sole host: {sole_host}");
        let reads = app.state.usage.reads();
        os.flush_stats().await.unwrap();
        // A sole host too: the deletion of the store's counts makes it
        // read again.
        assert_eq!(app.state.usage.reads(), reads + 1, "sole host: {sole_host}");
        let (view, recounted) = view_and_recount(&*backend, &app).await;
        assert_eq!(view, recounted, "sole host: {sole_host}, after a flush");
    }
}

/// Creates keys `k0`.. `k{n-1}` (20-byte values) in partition `p` of store
/// `s1`, making the store if it is not there.
pub(super) async fn fill_s1(app: &Application, n: usize) {
    let p = app.store("s1").await.unwrap().partition("p").await.unwrap();
    for i in 0..n {
        p.store(&format!("k{i}"), vec![b'x'; 20], StoreOptions::default())
            .await
            .unwrap();
    }
}

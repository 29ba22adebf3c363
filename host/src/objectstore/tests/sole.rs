//! A sole host (a redb file's: `Config::sole_host`) knows its kept counts
//! without reading them: its view equals a recount after settling, and it
//! reads them again, once what it waits for has landed, where it cannot
//! follow them by itself.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::damage::raw;
use super::kept::{Rng, fill_s1, random_op, view_and_recount};
use super::*;
use crate::backend::{BackendError, BoxFuture, Pair};

/// A host whose backend no other shares (a redb file's) with four writers
/// doing 10,000 random operations, in rounds with a stats flush after
/// each: no flush reads the kept counts (each settles what the host
/// committed), and after each the host's own view equals a recount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sole_hosts_view_equals_a_recount_without_reading_the_counts() {
    let (backend, master) = fresh();
    let clock = manual_clock();
    let os = open_sole(backend.clone(), &master, &clock).await;
    let app = os.application("app").await.unwrap();
    let reads = app.state.usage.reads();
    let mut landed = 0;
    for round in 0..10u64 {
        let mut writers = Vec::new();
        for w in 0..4u64 {
            let (os, clock) = (os.clone(), clock.clone());
            writers.push(tokio::spawn(async move {
                let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ (round * 4 + w + 1));
                let mut landed = 0;
                for _ in 0..250 {
                    landed += u32::from(random_op(&os, &clock, &mut rng, false).await);
                }
                landed
            }));
        }
        for writer in writers {
            landed += writer.await.unwrap();
        }
        os.flush_stats().await.unwrap();
        let (view, recounted) = view_and_recount(&*backend, &app).await;
        assert!(!recounted.is_empty(), "round {round} left keys");
        assert_eq!(view, recounted, "after round {round}");
    }
    assert!(landed > 8_000, "only {landed} of 10,000 operations landed");
    assert_eq!(app.state.usage.reads(), reads, "a flush read the counts");
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
}

/// A partition from before kept counts (here: its counts deleted) beside
/// one with them: the host's start reads the counted one only, and the
/// partition's first write counts it, writing its base. That changes the
/// counts behind the view, so a sole host's next flush reads them, and its
/// view equals a recount.
#[tokio::test]
async fn a_sole_host_reads_its_counts_again_after_counting_a_partition_from_before() {
    let (backend, master) = fresh();
    let clock = manual_clock();
    with_a_partition_from_before(backend.clone(), &backend, &master).await;

    let os = open_sole(backend.clone(), &master, &clock).await;
    let app = os.application("app").await.unwrap();
    let p = partition(&os, "app", "from-before").await;
    p.store("one-more", vec![b'y'; 30], StoreOptions::default())
        .await
        .unwrap();
    os.flush_stats().await.unwrap();
    let (view, recounted) = view_and_recount(&*backend, &app).await;
    assert_eq!(recounted[&app.state.store_tag(DEFAULT_STORE)].keys, 11);
    assert_eq!(view, recounted);
}

/// A write whose commit failed after the backend applied it (an fsync that
/// failed after the write): a sole host does not know whether it landed,
/// so its next flush reads the counts, and its view equals a recount.
#[tokio::test]
async fn a_sole_host_reads_its_counts_again_after_a_write_of_unknown_outcome() {
    use crate::backend::StorageFault;
    use crate::backend::fault::{Faults, FaultyBackend, Stage};

    let (memory, master) = fresh();
    let faults = Faults::new();
    let backend = Arc::new(FaultyBackend::new(
        memory.clone(),
        faults.clone(),
        Stage::AfterCommit,
    ));
    let os = open_sole(backend, &master, &manual_clock()).await;
    let p = partition(&os, "app", "p").await;
    p.store("landed", vec![b'x'; 20], StoreOptions::default())
        .await
        .unwrap();
    faults.fail_now(StorageFault::Io);
    let unknown = p.store("unknown", vec![b'y'; 20], StoreOptions::default());
    assert!(unknown.await.is_err(), "the write is reported failed");
    faults.heal();
    os.flush_stats().await.unwrap();
    let app = os.application("app").await.unwrap();
    let (view, recounted) = view_and_recount(&*memory, &app).await;
    assert_eq!(recounted[&app.state.store_tag(DEFAULT_STORE)].keys, 2);
    assert_eq!(view, recounted);
}

/// Which batch a [`Gate`] holds back.
type Pick = fn(&Batch) -> bool;

/// When a [`Gate`] holds a scan back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// Before it reads: it finds what was written while held.
    BeforeReading,
    /// After it read: it returns what was there before.
    AfterReading,
}

/// A backend over memory that can hold back, once each, the first scan of
/// an application's kept counts (after it read them) and the first commit
/// that a test's predicate picks. A held commit has its batch handed on
/// at once and applied when released, whether or not its caller still
/// waits, as the file backend's writer thread does; `settled` waits for
/// it, as the file backend's does.
struct Gate {
    memory: Arc<MemoryBackend>,
    /// The prefix of the scan to hold, and when.
    hold_scan: Mutex<Option<(Vec<u8>, Hold)>>,
    /// The prefix of a scan to fail, once.
    fail_scan: Mutex<Option<Vec<u8>>>,
    hold_commit: Mutex<Option<Pick>>,
    /// Told when a scan or a commit is held.
    held: Notify,
    /// Releases what is held.
    release: Arc<Notify>,
    /// Commits handed on and not yet applied.
    in_flight: watch::Sender<usize>,
}

impl Gate {
    fn new() -> (Arc<MemoryBackend>, Arc<Gate>) {
        let memory = Arc::new(MemoryBackend::new());
        let gate = Arc::new(Gate {
            memory: memory.clone(),
            hold_scan: Mutex::new(None),
            fail_scan: Mutex::new(None),
            hold_commit: Mutex::new(None),
            held: Notify::new(),
            release: Arc::new(Notify::new()),
            in_flight: watch::Sender::new(0),
        });
        (memory, gate)
    }
}

impl Backend for Gate {
    fn get<'a>(
        &'a self,
        shard: &'a [u8],
        key: &'a [u8],
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, BackendError>> {
        self.memory.get(shard, key)
    }

    fn scan<'a>(
        &'a self,
        shards: Shards<'a>,
        prefix: &'a [u8],
        after: Option<&'a [u8]>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Pair>, BackendError>> {
        Box::pin(async move {
            if (self.fail_scan.lock().unwrap())
                .take_if(|p| p == prefix)
                .is_some()
            {
                return Err(BackendError::WritesFailing {
                    fault: crate::backend::StorageFault::Io,
                    source: Arc::new(std::io::Error::other("a scan failed on purpose")),
                });
            }
            let hold = |when: Hold| {
                (self.hold_scan.lock().unwrap()).take_if(|(p, w)| p == prefix && *w == when)
            };
            if hold(Hold::BeforeReading).is_some() {
                self.held.notify_one();
                self.release.notified().await;
            }
            let pairs = self.memory.scan(shards, prefix, after, limit).await;
            if hold(Hold::AfterReading).is_some() {
                self.held.notify_one();
                self.release.notified().await;
            }
            pairs
        })
    }

    fn commit(&self, batch: Batch) -> BoxFuture<'_, Result<(), BackendError>> {
        let picked = self
            .hold_commit
            .lock()
            .unwrap()
            .take_if(|pick| pick(&batch));
        if picked.is_none() {
            return self.memory.commit(batch);
        }
        self.in_flight.send_modify(|n| *n += 1);
        self.held.notify_one();
        let (memory, release) = (self.memory.clone(), self.release.clone());
        let in_flight = self.in_flight.clone();
        let (answer, answered) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            release.notified().await;
            let _ = answer.send(memory.commit(batch).await);
            in_flight.send_modify(|n| *n -= 1);
        });
        Box::pin(async move { answered.await.expect("the commit answers") })
    }

    fn settled(&self) -> BoxFuture<'_, ()> {
        let mut in_flight = self.in_flight.subscribe();
        Box::pin(async move {
            let _ = in_flight.wait_for(|n| *n == 0).await;
        })
    }
}

/// Keys of the default store as `app`'s host knows them, and recounted.
async fn default_store_keys(memory: &MemoryBackend, app: &Application) -> (u64, u64) {
    let (view, recounted) = view_and_recount(memory, app).await;
    let store = app.state.store_tag(DEFAULT_STORE);
    let keys = |counts: &HashMap<Tag, Footprint>| counts.get(&store).map_or(0, |f| f.keys);
    (keys(&view), keys(&recounted))
}

/// A read of the counts (a sole host that lost track) passes a partition
/// before this host's first write to it lands, and the write is told
/// before the read ends: the read found no slot of this host there, yet
/// the change is not dropped as one a base held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_to_a_slot_made_while_a_read_runs_is_kept() {
    let (memory, gate) = Gate::new();
    let master = MasterKey::generate();
    let os = open_sole(gate.clone(), &master, &manual_clock()).await;
    let app = os.application("app").await.unwrap();
    let new = partition(&os, "app", "new").await;
    app.state.usage.lost_track();
    let counts = Prefix::Counts(app.state.tag).encode();
    *gate.hold_scan.lock().unwrap() = Some((counts, Hold::AfterReading));
    let flush = flush_in_background(&os);
    gate.held.notified().await;
    new.store("k", vec![b'x'; 10], StoreOptions::default())
        .await
        .unwrap();
    gate.release.notify_one();
    flush.await.unwrap().unwrap();
    os.flush_stats().await.unwrap();
    assert_eq!(default_store_keys(&memory, &app).await, (1, 1));
}

/// Whether `batch` writes a partition's base of kept counts.
fn writes_a_base(batch: &Batch) -> bool {
    batch.writes.iter().any(|w| {
        w.value.is_some()
            && matches!(
                keys::RecordKey::parse(&w.key),
                Some(keys::RecordKey::Counts { slot: 0, .. })
            )
    })
}

/// A partition from before kept counts is counted by its first write; a
/// flush runs while that base is on its way. The flush could not see the
/// base, so the host reads again once it has landed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_that_lands_after_a_flush_is_read_at_the_next() {
    let (memory, gate) = Gate::new();
    let master = MasterKey::generate();
    with_a_partition_from_before(gate.clone(), &memory, &master).await;

    let os = open_sole(gate.clone(), &master, &manual_clock()).await;
    let app = os.application("app").await.unwrap();
    let p = partition(&os, "app", "from-before").await;
    *gate.hold_commit.lock().unwrap() = Some(writes_a_base);
    let write =
        tokio::spawn(async move { p.store("k5", vec![b'x'; 10], StoreOptions::default()).await });
    gate.held.notified().await;
    os.flush_stats().await.unwrap();
    gate.release.notify_one();
    write.await.unwrap().unwrap();
    os.flush_stats().await.unwrap();
    assert_eq!(default_store_keys(&memory, &app).await, (11, 11));
}

/// Whether `batch` deletes entries and counts them.
fn counts_a_deletion(batch: &Batch) -> bool {
    let deletes_an_entry = batch.writes.iter().any(|w| {
        w.value.is_none()
            && matches!(
                keys::RecordKey::parse(&w.key),
                Some(keys::RecordKey::Entry(_))
            )
    });
    let counts = (batch.writes.iter()).any(|w| {
        matches!(
            keys::RecordKey::parse(&w.key),
            Some(keys::RecordKey::Counts { .. })
        )
    });
    deletes_an_entry && counts
}

/// A partition's clearing dropped by its caller (a request cut off at its
/// deadline) after its counted batch was handed on: the batch lands
/// later, and the host reads its counts once it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counted_batch_that_lands_after_its_writer_is_dropped_is_read() {
    let (memory, gate) = Gate::new();
    let master = MasterKey::generate();
    let os = open_sole(gate.clone(), &master, &manual_clock()).await;
    let app = os.application("app").await.unwrap();
    let p = partition(&os, "app", "p").await;
    for i in 0..3 {
        p.store(&format!("k{i}"), vec![b'x'; 10], StoreOptions::default())
            .await
            .unwrap();
    }
    os.flush_stats().await.unwrap();
    *gate.hold_commit.lock().unwrap() = Some(counts_a_deletion);
    tokio::select! {
        _ = p.clear() => panic!("the clearing ended while its batch was held"),
        _ = gate.held.notified() => {}
    }
    // The flush waits for the batch to land before it reads: one that read
    // now would miss it, and the flushes after it would settle.
    let flush = flush_in_background(&os);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!flush.is_finished(), "the flush waits for the held batch");
    gate.release.notify_one();
    flush.await.unwrap().unwrap();
    os.flush_stats().await.unwrap();
    assert_eq!(default_store_keys(&memory, &app).await, (0, 0));
}

/// Data of application `app` in two partitions of five keys each through
/// `backend` (over `memory`): `counted`, and `from-before`, whose kept
/// counts are then deleted, as data from before them has none.
async fn with_a_partition_from_before(
    backend: Arc<dyn Backend>,
    memory: &MemoryBackend,
    master: &MasterKey,
) {
    let os = open_with(backend, master).await;
    for name in ["counted", "from-before"] {
        let p = partition(&os, "app", name).await;
        for i in 0..5 {
            p.store(&format!("k{i}"), vec![b'x'; 10], StoreOptions::default())
                .await
                .unwrap();
        }
    }
    let from_before = partition(&os, "app", "from-before").await.id();
    for (key, _) in raw(memory, b"k").await {
        if let Some(keys::RecordKey::Counts { partition, .. }) = keys::RecordKey::parse(&key)
            && partition == from_before
        {
            let mut batch = Batch::new(shard_of(&key));
            batch.delete(key, Expect::Any);
            memory.commit(batch).await.unwrap();
        }
    }
}

/// A store deleted while a read of the counts runs, its counts deleted
/// before the read reaches them: the read keeps the deletion's changes as
/// told while it ran (their slots are gone), so the host reads again, and
/// after the store is made again and written its view equals a recount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_deleted_while_a_read_runs_is_read_again() {
    let (memory, gate) = Gate::new();
    let master = MasterKey::generate();
    let os = open_sole(gate.clone(), &master, &manual_clock()).await;
    let app = os.application("app").await.unwrap();
    fill_s1(&app, 8).await;
    os.flush_stats().await.unwrap();
    app.state.usage.lost_track();
    let counts = Prefix::Counts(app.state.tag).encode();
    *gate.hold_scan.lock().unwrap() = Some((counts, Hold::BeforeReading));
    let flush = flush_in_background(&os);
    gate.held.notified().await;
    assert!(app.delete_store("s1").await.unwrap());
    gate.release.notify_one();
    flush.await.unwrap().unwrap();
    os.flush_stats().await.unwrap();
    fill_s1(&app, 3).await;
    os.flush_stats().await.unwrap();
    let (view, recounted) = view_and_recount(&*memory, &app).await;
    assert_eq!(recounted[&app.state.store_tag("s1")].keys, 3);
    assert_eq!(view, recounted);
}

/// A stats flush run by a task of its own, to be held or waited for.
fn flush_in_background(os: &ObjectStore) -> tokio::task::JoinHandle<Result<(), Error>> {
    let os = os.clone();
    tokio::spawn(async move { os.flush_stats().await })
}

/// A sole host that lost track (a partition from before kept counts,
/// counted at its first write) and whose read then fails: the flush says
/// so, and the next one reads, so the view equals a recount.
#[tokio::test]
async fn a_sole_host_whose_read_failed_reads_at_the_next_flush() {
    let (memory, gate) = Gate::new();
    let master = MasterKey::generate();
    with_a_partition_from_before(gate.clone(), &memory, &master).await;

    let os = open_sole(gate.clone(), &master, &manual_clock()).await;
    let app = os.application("app").await.unwrap();
    partition(&os, "app", "from-before")
        .await
        .store("k5", vec![b'x'; 10], StoreOptions::default())
        .await
        .unwrap();
    *gate.fail_scan.lock().unwrap() = Some(Prefix::Counts(app.state.tag).encode());
    assert!(os.flush_stats().await.is_err(), "the failed read is told");
    os.flush_stats().await.unwrap();
    assert_eq!(default_store_keys(&memory, &app).await, (11, 11));
}

//! The object store against a plain model: random sequences of store,
//! compare-and-swap, increment, retrieve, remove, time passing (a manual
//! clock) with TTL expiry and sweeps, listing and clearing, run on every
//! backend, each answer compared with what a `BTreeMap` says it must be.
//! Once more over a backend that refuses one commit in four (a full disk):
//! a refused write must be a typed `writes failing` error that changed
//! nothing, every later answer still agrees with the model, and once the
//! fault clears every write lands again. And once over a backend whose
//! commits fail one in four *after* they were applied (a failed fsync): the
//! caller cannot know the outcome, so after each such failure the test
//! reads the keys the write touched back, and the model takes whichever of
//! the two states (before the write, or after it) the store shows; any
//! third state, or any later answer that disagrees, is a failure.
//!
//! `OSTORE_DIFF_SEQUENCES=N` multiplies the sequences run on each backend
//! (default 1: 10,000 on memory, 600 on redb, 600 on Redis); `OSTORE_DIFF_SEED`
//! picks another seed. A failure prints the seed, backend and sequence that
//! reproduce it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ostore::backend::fault::{Faults, FaultyBackend, Stage};
use ostore::backend::{
    Backend, BackendError, FileBackend, MemoryBackend, RedisBackend, StorageFault,
};
use ostore::clock::ManualClock;
use ostore::encryption::MasterKey;
use ostore::objectstore::{
    Config, Error, ObjectStore, Partition, Store, StoreOptions, StoreQuota, Ttl,
};
use ostore_tests::redis::{RedisOptions, RedisServer};

/// A small, fast, seeded generator (SplitMix64): the same seed gives the
/// same sequences on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// What the model keeps of a key.
#[derive(Debug, Clone)]
struct Modelled {
    value: Vec<u8>,
    version: u64,
    ttl: Ttl,
    expires: Option<u64>,
}

/// One partition as it must behave: keys live until their expiry.
#[derive(Default, Clone)]
struct Model {
    keys: BTreeMap<String, Modelled>,
}

impl Model {
    fn live(&self, key: &str, now: u64) -> Option<&Modelled> {
        self.keys
            .get(key)
            .filter(|k| k.expires.is_none_or(|e| e > now))
    }

    fn live_keys(&self, now: u64) -> Vec<String> {
        self.keys
            .iter()
            .filter(|(_, k)| k.expires.is_none_or(|e| e > now))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Writes `value` as the next version of `key` (version 1 if it is not
    /// live), expiring `ttl` from `now`.
    fn write(&mut self, key: &str, value: Vec<u8>, ttl: Ttl, now: u64) -> u64 {
        let version = self.live(key, now).map_or(1, |k| k.version + 1);
        self.keys.insert(
            key.to_string(),
            Modelled {
                value,
                version,
                ttl,
                expires: ttl.seconds().map(|s| now + s * 1000),
            },
        );
        version
    }
}

const KEYS: [&str; 6] = ["a", "b", "c", "k/1", "k/2", "ключ"];
const COUNTERS: [&str; 3] = ["n0", "n1", "n2"];
/// Prefixes a listing may ask for (empty: none): of several keys, of one,
/// of none, and of a multi-byte name.
const PREFIXES: [&str; 6] = ["", "k/", "n", "c", "x", "кл"];

/// A key to read or remove: a counter one time in four.
fn any_key(rng: &mut Rng) -> &'static str {
    if rng.below(4) == 0 {
        rng.pick(&COUNTERS)
    } else {
        rng.pick(&KEYS)
    }
}

/// What a write that failed for a storage fault may have done.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum FaultMode {
    /// No write may fail: a failure is for the model to judge.
    #[default]
    None,
    /// Refused before the commit: it changed nothing.
    Refused,
    /// Failed after the commit: it may or may not have landed.
    Unknown,
}

/// Whether a write may fail for a storage fault, and how many did.
#[derive(Default)]
struct Refusals {
    mode: FaultMode,
    seen: u64,
    /// In [`FaultMode::Unknown`]: keys read back after a failure that
    /// showed the write (`landed`) or the state before it (`not_landed`).
    landed: u64,
    not_landed: u64,
}

impl Refusals {
    /// What the run allows of `got` if it is a typed full disk; `None` if
    /// it is anything else (for the model to judge) or the run allows no
    /// failure.
    fn failed<T>(&mut self, got: &Result<T, Error>) -> Option<FaultMode> {
        let failed = matches!(
            got,
            Err(Error::Storage(e @ BackendError::WritesFailing { .. }))
                if e.fault() == Some(StorageFault::DiskFull)
        );
        if !failed || self.mode == FaultMode::None {
            return None;
        }
        self.seen += 1;
        Some(self.mode)
    }
}

/// What `model` says a read of `key` answers.
fn view(model: &Model, key: &str, now: u64) -> Option<(Vec<u8>, u64)> {
    model.live(key, now).map(|k| (k.value.clone(), k.version))
}

/// After a write whose outcome is unknown: each of `keys` must read as
/// `model` has it (the write did not land) or as `landed` has it (it did),
/// and the model takes whichever the store shows, key by key (a clear is
/// several commits, and may stop part way).
async fn settle(
    p: &Partition,
    model: &mut Model,
    landed: Model,
    keys: &[String],
    now: u64,
    refusals: &mut Refusals,
) -> Result<(), String> {
    for key in keys {
        let got = match p.retrieve(key).await {
            Ok(e) => Some((e.value, e.metadata.version)),
            Err(Error::KeyNotFound) => None,
            Err(e) => return Err(format!("reading {key:?} back after the fault: {e}")),
        };
        let (before, after) = (view(model, key, now), view(&landed, key, now));
        if got == after {
            refusals.landed += 1;
            match landed.keys.get(key.as_str()) {
                Some(k) => model.keys.insert(key.clone(), k.clone()),
                None => model.keys.remove(key.as_str()),
            };
        } else if got == before {
            refusals.not_landed += 1;
        } else {
            return Err(format!(
                "{key:?} after a write that failed after its commit: got {got:?}, neither \
                 the state before it {before:?} nor after it {after:?}"
            ));
        }
    }
    Ok(())
}

/// Runs sequence `seq` of `seed` on a fresh partition of `store`, checking
/// each answer against the model. Returns a description of the first
/// difference.
async fn run_sequence(
    os: &ObjectStore,
    store: &Store,
    clock: &ManualClock,
    seed: u64,
    seq: u64,
    refusals: &mut Refusals,
) -> Result<(), String> {
    let mut rng = Rng(seed ^ seq.wrapping_mul(0xA076_1D64_78BD_642F));
    let partition = store
        .partition(&format!("seq-{seq}"))
        .await
        .map_err(|e| format!("opening the partition: {e}"))?;
    let mut model = Model::default();
    let steps = 8 + rng.below(17);
    let mut trace = Vec::new();
    for step in 0..steps {
        let op = rng.below(100);
        let now = os.clock().now_ms();
        let outcome = step_once(
            os, &partition, clock, &mut model, &mut rng, op, now, &mut trace, refusals,
        )
        .await;
        if let Err(difference) = outcome {
            return Err(format!(
                "step {step}: {difference}\nsteps so far:\n  {}",
                trace.join("\n  ")
            ));
        }
    }
    Ok(())
}

fn expect_eq<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, the model says {want:?}"))
    }
}

#[allow(clippy::too_many_arguments)]
async fn step_once(
    os: &ObjectStore,
    p: &Partition,
    clock: &ManualClock,
    model: &mut Model,
    rng: &mut Rng,
    op: u64,
    now: u64,
    trace: &mut Vec<String>,
    refusals: &mut Refusals,
) -> Result<(), String> {
    // A write refused for a storage fault changed nothing: the model
    // stays. One that failed after its commit changed `$keys` as `$write`
    // changes the model, or nothing: the store is read back to see which.
    macro_rules! unless_failed {
        ($got:expr, $keys:expr, $write:expr) => {{
            let got = $got;
            match refusals.failed(&got) {
                None => got,
                Some(FaultMode::Unknown) => {
                    trace.push("  failed after the commit: outcome unknown".into());
                    let mut landed = model.clone();
                    let write: &dyn Fn(&mut Model) = &$write;
                    write(&mut landed);
                    let keys: Vec<String> = $keys;
                    return settle(p, model, landed, &keys, now, refusals).await;
                }
                Some(_) => {
                    trace.push("  refused: writes failing".into());
                    return Ok(());
                }
            }
        }};
    }
    match op {
        // Store, with the partition's TTL (never) or a key's own of 1-4 s,
        // sometimes only if absent.
        0..=24 => {
            let key = rng.pick(&KEYS);
            let value = format!("v{}", rng.below(1000)).into_bytes();
            let ttl = match rng.below(3) {
                0 => Some(Ttl::Fixed(1 + rng.below(4))),
                _ => None,
            };
            let fail_if_present = rng.below(4) == 0;
            trace.push(format!(
                "store {key:?} ttl {ttl:?} fail_if_present {fail_if_present}"
            ));
            let options = StoreOptions {
                fail_if_present,
                ttl,
                kind: None,
            };
            let refused = fail_if_present && model.live(key, now).is_some();
            let got = unless_failed!(
                p.store(key, value.clone(), options).await,
                vec![key.to_string()],
                |m: &mut Model| {
                    if !refused {
                        m.write(key, value.clone(), ttl.unwrap_or(Ttl::Never), now);
                    }
                }
            );
            if refused {
                return expect_eq(
                    "store if absent of a live key",
                    got.map(|m| m.version).map_err(|e| e.to_string()),
                    Err(Error::KeyAlreadyExists.to_string()),
                );
            }
            let version = model.write(key, value, ttl.unwrap_or(Ttl::Never), now);
            expect_eq(
                "store",
                got.map(|m| m.version).map_err(|e| e.to_string()),
                Ok(version),
            )
        }
        // Compare-and-swap against the current version, a stale one, or
        // absence.
        25..=39 => {
            let key = rng.pick(&KEYS);
            let current = model.live(key, now).map(|k| k.version);
            let expected = match rng.below(3) {
                0 => current,
                1 => current.map(|v| v + 1).or(Some(1)),
                _ => None,
            };
            let value = format!("cas{}", rng.below(1000)).into_bytes();
            trace.push(format!("cas {key:?} expecting {expected:?}"));
            let got = unless_failed!(
                p.compare_and_swap(key, expected, value.clone(), StoreOptions::default())
                    .await,
                vec![key.to_string()],
                |m: &mut Model| {
                    if expected == current {
                        m.write(key, value.clone(), Ttl::Never, now);
                    }
                }
            )
            .map(|m| m.version)
            .map_err(|e| e.to_string());
            if expected != current {
                return expect_eq(
                    "stale compare-and-swap",
                    got,
                    Err(Error::VersionMismatch { current }.to_string()),
                );
            }
            let version = model.write(key, value, Ttl::Never, now);
            expect_eq("compare-and-swap", got, Ok(version))
        }
        // Increment a counter (keeping the TTL it was written with).
        40..=51 => {
            let key = rng.pick(&COUNTERS);
            let delta = rng.below(21) as i64 - 10;
            trace.push(format!("increment {key:?} by {delta}"));
            let (before, ttl) = match model.live(key, now) {
                Some(k) => (
                    std::str::from_utf8(&k.value)
                        .unwrap()
                        .parse::<i64>()
                        .unwrap(),
                    k.ttl,
                ),
                None => (0, Ttl::Never),
            };
            let after = before + delta;
            let got = unless_failed!(
                p.increment(key, delta).await,
                vec![key.to_string()],
                |m: &mut Model| {
                    m.write(key, after.to_string().into_bytes(), ttl, now);
                }
            )
            .map_err(|e| e.to_string());
            model.write(key, after.to_string().into_bytes(), ttl, now);
            expect_eq("increment", got, Ok(after))
        }
        // Store a counter with a short TTL, so that counters expire too.
        52..=54 => {
            let key = rng.pick(&COUNTERS);
            let value = rng.below(100).to_string().into_bytes();
            let ttl = Ttl::Fixed(1 + rng.below(3));
            trace.push(format!("store counter {key:?} ttl {ttl:?}"));
            let options = StoreOptions {
                ttl: Some(ttl),
                ..StoreOptions::default()
            };
            let got = unless_failed!(
                p.store(key, value.clone(), options).await,
                vec![key.to_string()],
                |m: &mut Model| {
                    m.write(key, value.clone(), ttl, now);
                }
            );
            let version = model.write(key, value, ttl, now);
            expect_eq(
                "store counter",
                got.map(|m| m.version).map_err(|e| e.to_string()),
                Ok(version),
            )
        }
        // Read a key.
        55..=69 => {
            let key = any_key(rng);
            trace.push(format!("retrieve {key:?}"));
            let got = p
                .retrieve(key)
                .await
                .map(|e| (e.value, e.metadata.version))
                .map_err(|e| e.to_string());
            let want = model
                .live(key, now)
                .map(|k| (k.value.clone(), k.version))
                .ok_or_else(|| Error::KeyNotFound.to_string());
            expect_eq("retrieve", got, want)
        }
        // Remove a key.
        70..=77 => {
            let key = any_key(rng);
            trace.push(format!("remove {key:?}"));
            let got = unless_failed!(
                p.remove(key).await,
                vec![key.to_string()],
                |m: &mut Model| {
                    m.keys.remove(key);
                }
            )
            .map(|e| e.value)
            .map_err(|e| e.to_string());
            let want = match model.live(key, now) {
                Some(k) => Ok(k.value.clone()),
                None => Err(Error::KeyNotFound.to_string()),
            };
            model.keys.remove(key);
            expect_eq("remove", got, want)
        }
        // Time passes: 0 to 2.5 s.
        78..=87 => {
            let by = rng.below(2501);
            trace.push(format!("advance {by} ms"));
            clock.advance(Duration::from_millis(by));
            Ok(())
        }
        // The sweep runs: nothing visible changes.
        88..=90 => {
            trace.push("sweep".into());
            unless_failed!(os.sweep_expired().await, Vec::new(), |_: &mut Model| {})
                .map(drop)
                .map_err(|e| format!("sweep: {e}"))
        }
        // List every key, or those under a prefix, a page of 1 to 4 at a
        // time, in byte order of the names (the model's order).
        91..=97 => {
            let size = 1 + rng.below(4) as u32;
            let prefix = rng.pick(&PREFIXES);
            trace.push(format!("list {prefix:?} by {size}"));
            let mut listed = Vec::new();
            let mut cursor: Option<String> = None;
            for _ in 0..=KEYS.len() + COUNTERS.len() {
                let page = if prefix.is_empty() {
                    p.list_keys(cursor.as_deref(), size).await
                } else {
                    p.list_key_metadata(Some(prefix), cursor.as_deref(), size)
                        .await
                        .map(|page| ostore::objectstore::Page {
                            items: page.items.into_iter().map(|(name, _)| name).collect(),
                            cursor: page.cursor,
                        })
                }
                .map_err(|e| format!("list: {e}"))?;
                // Only a full page says that more may follow.
                if page.cursor.is_some() && page.items.len() != size as usize {
                    return Err(format!("a page of {} with a cursor", page.items.len()));
                }
                listed.extend(page.items);
                cursor = page.cursor;
                if cursor.is_none() {
                    break;
                }
            }
            if cursor.is_some() {
                return Err("listing did not end".into());
            }
            let mut want = model.live_keys(now);
            want.retain(|name| name.starts_with(prefix));
            expect_eq("listed keys", listed, want)
        }
        // Clear the partition.
        _ => {
            trace.push("clear".into());
            let got = unless_failed!(p.clear().await, model.live_keys(now), |m: &mut Model| {
                m.keys.clear();
            })
            .map_err(|e| e.to_string());
            let want = model.live_keys(now).len() as u64;
            model.keys.clear();
            expect_eq("clear", got, Ok(want))
        }
    }
}

fn seed() -> u64 {
    std::env::var("OSTORE_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x05EE_D0F0_B1EC_7570)
}

fn scale() -> u64 {
    std::env::var("OSTORE_DIFF_SEQUENCES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// Runs `sequences` sequences on `backend`, one after the other (they share
/// the clock), and fails with the first difference found.
async fn differential(name: &str, backend: Arc<dyn Backend>, sequences: u64) {
    let os = open(backend).await;
    run_all(name, &os, 0, sequences, &mut Refusals::default()).await;
}

/// An object store over `backend`, with a manual clock and the store the
/// sequences run in.
async fn open(backend: Arc<dyn Backend>) -> (ObjectStore, Store, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::starting_now());
    let config = Config {
        clock: clock.clone(),
        ..Config::default()
    };
    let os = ObjectStore::open(backend, &MasterKey::generate(), config)
        .await
        .expect("opening the object store");
    let store = os
        .application("differential")
        .await
        .unwrap()
        .configure_store("model", Ttl::Never, StoreQuota::default())
        .await
        .unwrap();
    (os, store, clock)
}

/// Runs sequences `first..first + count`, and fails with the first
/// difference found.
async fn run_all(
    name: &str,
    (os, store, clock): &(ObjectStore, Store, Arc<ManualClock>),
    first: u64,
    count: u64,
    refusals: &mut Refusals,
) {
    let seed = seed();
    let started = std::time::Instant::now();
    for seq in first..first + count {
        if let Err(difference) = run_sequence(os, store, clock, seed, seq, refusals).await {
            panic!("{name}, OSTORE_DIFF_SEED={seed}, sequence {seq}: {difference}");
        }
    }
    let read_back = match refusals.mode {
        FaultMode::Unknown => format!(
            "; read back after a failure: {} keys landed, {} not",
            refusals.landed, refusals.not_landed
        ),
        _ => String::new(),
    };
    println!(
        "{name}: {count} sequences agree with the model (seed {seed}, {} writes failed, \
         {:.1} s{read_back})",
        refusals.seen,
        started.elapsed().as_secs_f64(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_backend_agrees_with_the_model() {
    differential("memory", Arc::new(MemoryBackend::new()), 10_000 * scale()).await;
}

/// The store over a backend that refuses one commit in four before it
/// reaches the engine, then heals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_refused_by_a_full_disk_change_nothing_and_land_again_once_healed() {
    let faults = Faults::new();
    let backend = FaultyBackend::new(
        Arc::new(MemoryBackend::new()),
        faults.clone(),
        Stage::BeforeCommit,
    );
    // Opened healthy: opening writes the store's records.
    let opened = open(Arc::new(backend)).await;
    faults.fail_randomly(seed(), 4, StorageFault::DiskFull);
    let mut refusals = Refusals {
        mode: FaultMode::Refused,
        ..Refusals::default()
    };
    let sequences = 2_000 * scale();
    run_all(
        "memory, 1 commit in 4 refused",
        &opened,
        0,
        sequences,
        &mut refusals,
    )
    .await;
    assert!(
        refusals.seen > sequences,
        "only {} writes refused in {sequences} sequences: the fault plan did not bite",
        refusals.seen
    );
    // Healed: no write may be refused any more.
    faults.heal();
    let mut none = Refusals::default();
    run_all("memory, healed", &opened, sequences, 1_000, &mut none).await;
}

/// The store over a backend whose commits fail one in four after they
/// were applied (a failed fsync), then heals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_failing_after_their_commit_either_landed_or_not_and_nothing_else() {
    let faults = Faults::new();
    let backend = FaultyBackend::new(
        Arc::new(MemoryBackend::new()),
        faults.clone(),
        Stage::AfterCommit,
    );
    let opened = open(Arc::new(backend)).await;
    faults.fail_randomly(seed() ^ 0xAF7E, 4, StorageFault::DiskFull);
    let mut failures = Refusals {
        mode: FaultMode::Unknown,
        ..Refusals::default()
    };
    let sequences = 2_000 * scale();
    run_all(
        "memory, 1 commit in 4 failed after it was applied",
        &opened,
        0,
        sequences,
        &mut failures,
    )
    .await;
    assert!(
        failures.seen > sequences,
        "only {} writes failed in {sequences} sequences: the fault plan did not bite",
        failures.seen
    );
    assert!(
        failures.landed > 0,
        "no failed write was seen to have landed"
    );
    faults.heal();
    let mut none = Refusals::default();
    run_all("memory, healed", &opened, sequences, 1_000, &mut none).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_backend_agrees_with_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FileBackend::open(&dir.path().join("data.redb")).expect("opening redb");
    differential("redb", Arc::new(backend), 600 * scale()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_backend_agrees_with_the_model() {
    let server = RedisServer::start(&RedisOptions::default());
    let config = server.url().parse().expect("a Redis URL");
    let backend = RedisBackend::connect(&config)
        .await
        .expect("connecting to Redis");
    differential("redis", Arc::new(backend), 600 * scale()).await;
}

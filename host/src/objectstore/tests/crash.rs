//! The object store over a backend that crashes at random points (see
//! `backend::crash`): writers store keys and increment a counter, sync
//! points make their commits durable, and at a point a seed chooses the
//! host "crashes", losing everything not yet durable. A fresh object store
//! over what is durable, as a restarted host opens, must hold every
//! acknowledged store with its value, list every acknowledged key, and
//! keep the counter at or above its highest acknowledged value.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::*;
use crate::backend::crash::CrashingBackend;

/// Seeded runs per test run, each crashing once, unless
/// `OSTORE_SIM_CRASHES` asks for more (a longer run).
const RUNS: u64 = 60;
const WRITERS: usize = 4;
/// The most sync points before the crash.
const MAX_SYNCS: u64 = 40;

/// SplitMix64, so that a failing seed can be replayed.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What writers were told.
#[derive(Default)]
struct Acknowledged {
    stored: BTreeMap<String, Vec<u8>>,
    highest: i64,
    attempted: i64,
}

/// Lets the other tasks run `times` times.
async fn pause(times: u64) {
    for _ in 0..times {
        tokio::task::yield_now().await;
    }
}

/// One run: returns how many stores were acknowledged and how many
/// commits the crash dropped.
async fn crash_once(seed: u64) -> (usize, usize) {
    let mut rng = seed;
    let disk: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let master = MasterKey::generate();
    let backend = Arc::new(CrashingBackend::new(disk.clone()));
    // Until the writers start, every commit is made durable at once.
    let syncing = {
        let backend = backend.clone();
        tokio::spawn(async move {
            loop {
                backend.sync().await;
                tokio::task::yield_now().await;
            }
        })
    };
    let os = open_with(backend.clone(), &master).await;
    let p = partition(&os, "app", "P").await;
    syncing.abort();
    backend.sync().await;

    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let p = p.clone();
            let acknowledged = acknowledged.clone();
            tokio::spawn(async move {
                for n in 0.. {
                    if n % 3 == 2 {
                        acknowledged.lock().unwrap().attempted += 1;
                        if let Ok(value) = p.increment("counter", 1).await {
                            let mut a = acknowledged.lock().unwrap();
                            a.highest = a.highest.max(value);
                        }
                    } else {
                        let key = format!("w{w}-{n}");
                        let value = format!("value of {key}").into_bytes();
                        if p.store(&key, value.clone(), StoreOptions::default())
                            .await
                            .is_ok()
                        {
                            acknowledged.lock().unwrap().stored.insert(key, value);
                        }
                    }
                }
            })
        })
        .collect();
    for _ in 0..next(&mut rng) % MAX_SYNCS {
        pause(next(&mut rng) % 8).await;
        backend.sync().await;
    }
    pause(next(&mut rng) % 8).await;
    let lost = backend.crash().await;
    // The process is gone: nothing of it runs on.
    for w in writers {
        w.abort();
    }
    drop(p);
    drop(os);

    let restarted = open_with(disk, &master).await;
    let p = partition(&restarted, "app", "P").await;
    let a = std::mem::take(&mut *acknowledged.lock().unwrap());
    for (key, value) in &a.stored {
        match p.retrieve(key).await {
            Ok(entry) => assert_eq!(&entry.value, value, "seed {seed}: {key} changed"),
            Err(e) => panic!("seed {seed}: acknowledged {key} lost in the crash: {e}"),
        }
    }
    let mut listed = Vec::new();
    let mut cursor = None;
    loop {
        let page = p.list_keys(cursor.as_deref(), 100).await.unwrap();
        listed.extend(page.items);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    for key in a.stored.keys() {
        assert!(
            listed.contains(key),
            "seed {seed}: acknowledged {key} missing from the listing"
        );
    }
    let counter = match p.retrieve("counter").await {
        Ok(entry) => String::from_utf8(entry.value)
            .unwrap()
            .parse::<i64>()
            .unwrap(),
        Err(Error::KeyNotFound) => 0,
        Err(e) => panic!("seed {seed}: the counter: {e}"),
    };
    assert!(
        (a.highest..=a.attempted).contains(&counter),
        "seed {seed}: counter {counter}, acknowledged up to {}, {} increments tried",
        a.highest,
        a.attempted
    );
    (a.stored.len(), lost)
}

#[tokio::test]
async fn every_acknowledged_write_survives_a_crash_at_a_random_point() {
    let runs = std::env::var("OSTORE_SIM_CRASHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RUNS);
    let (mut stored, mut lost) = (0, 0);
    for seed in 0..runs {
        let (s, l) = crash_once(seed).await;
        stored += s;
        lost += l;
    }
    println!(
        "{runs} crashes: {stored} acknowledged stores survived, {lost} unacknowledged commits lost"
    );
    assert!(
        stored > 0,
        "no store was acknowledged: the test proved nothing"
    );
    assert!(lost > 0, "no crash lost a commit: the test crashed nowhere");
}

//! What the stats flush costs against the partitions an application holds.
//!
//! Each second a host flushes its request counts and brings its view of
//! each store's keys and bytes up to date. A host that shares its backend
//! (Redis) reads every partition's kept counts for that; a sole host (a
//! redb file, which one process holds) knows them already and settles its
//! own changes. This bench fills one redb file with `--partitions`
//! partitions of one key each, opens two object stores over it, one told
//! that it is the sole host and one not, and times `--flushes` flushes of
//! each, alternating, so both see the same machine load.
//!
//! ```sh
//! cargo bench -p ostore-tests --bench flush -- [--partitions N] [--flushes N]
//! ```
//!
//! Defaults: 10,000 partitions, 50 flushes each. Prints figures; asserts
//! nothing about them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ostore::backend::{Backend, BackendConfig};
use ostore::encryption::MasterKey;
use ostore::objectstore::{Config, ObjectStore, StoreOptions};
use ostore_tests::load::{latency_cells, numeric_flags};

/// Concurrent writers of the (untimed) fill.
const FILLERS: usize = 64;

struct Args {
    partitions: usize,
    flushes: usize,
}

fn args() -> Args {
    let [partitions, flushes] = numeric_flags([("--partitions", 10_000), ("--flushes", 50)]);
    Args {
        partitions,
        flushes,
    }
}

/// Percentiles of one row, in milliseconds.
fn row(name: &str, times: Vec<Duration>) {
    println!("| {name} | {} |", latency_cells(times));
}

async fn open(backend: &Arc<dyn Backend>, master: &MasterKey, sole_host: bool) -> ObjectStore {
    let config = Config {
        sole_host,
        ..Config::default()
    };
    ObjectStore::open(backend.clone(), master, config)
        .await
        .expect("the object store opens")
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    tokio::spawn(run(args())).await.unwrap();
}

async fn run(args: Args) {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let backend = BackendConfig::redb()
        .open(&dir.path().join("store.redb"))
        .await
        .expect("the redb file opens");
    let master = MasterKey::generate();
    let sole = open(&backend, &master, true).await;
    let fill = Instant::now();
    let fillers: Vec<_> = (0..FILLERS)
        .map(|t| {
            let sole = sole.clone();
            tokio::spawn(async move {
                let store = sole
                    .application("bench")
                    .await
                    .unwrap()
                    .default_store()
                    .await
                    .unwrap();
                for i in (t..args.partitions).step_by(FILLERS) {
                    let p = store.partition(&format!("p{i:07}")).await.unwrap();
                    p.store("k", vec![b'v'; 100], StoreOptions::default())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for filler in fillers {
        filler.await.unwrap();
    }
    eprintln!(
        "filled {} partitions in {:.1?}",
        args.partitions,
        fill.elapsed()
    );
    // The shared host starts now, reading the counts as any host does.
    let shared = open(&backend, &master, false).await;
    let footprint = shared.application("bench").await.unwrap().footprint();
    assert_eq!(footprint.keys, args.partitions as u64, "every key counted");

    println!(
        "stats flush of one application of {} partitions (one key each), {} flushes per row",
        args.partitions, args.flushes
    );
    println!();
    println!("| host | n | p50 ms | p90 ms | p99 ms |");
    println!("|---|---|---|---|---|");
    let (mut reading, mut settling) = (Vec::new(), Vec::new());
    for _ in 0..args.flushes {
        let start = Instant::now();
        shared.flush_stats().await.unwrap();
        reading.push(start.elapsed());
        let start = Instant::now();
        sole.flush_stats().await.unwrap();
        settling.push(start.elapsed());
    }
    row("shared backend: reads every partition's counts", reading);
    row("sole host (redb): settles its own changes", settling);
}

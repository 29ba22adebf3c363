//! Where the time of a lone durable write goes, layer by layer, in one run
//! on one file system: an fdatasync'd append (the floor), one redb commit
//! of one record, one redb commit of the records a creation writes, then a
//! creation, an overwrite and a read through the object store (sealing, the
//! index of names, the kept counts, the group-commit queue and writer), and
//! the pages of a listing. No HTTP, no guest: those are the `http` and
//! `scale` benches.
//!
//! ```sh
//! cargo bench -p ostore-tests --bench lone -- [--keys N] [--writes N]
//! ```
//!
//! `--keys` (default 10,000) fills the partition first, with 64 writers at
//! once, so that the index has depth (and the bytes per key at rest printed
//! last mean something); `--writes` (default 2,000) is how many are timed
//! per row.
//! Prints figures; asserts nothing about them.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ostore::backend::{Backend, BackendConfig, Batch, Expect};
use ostore::encryption::MasterKey;
use ostore::objectstore::{Config, ObjectStore, StoreOptions};
use ostore_tests::load::{latency_cells, numeric_flags};

/// 100-byte values, as the issue's figures use.
const VALUE: [u8; 100] = [b'v'; 100];

/// Concurrent writers of the (untimed) fill.
const FILLERS: usize = 64;

#[derive(Clone, Copy)]
struct Args {
    keys: usize,
    writes: usize,
}

fn args() -> Args {
    let [keys, writes] = numeric_flags([("--keys", 10_000), ("--writes", 2_000)]);
    Args { keys, writes }
}

/// Latency percentiles of one row, in milliseconds, and operations per
/// second one after another.
fn row(name: &str, times: Vec<Duration>) {
    let total: Duration = times.iter().sum();
    let per_second = times.len() as f64 / total.as_secs_f64();
    println!("| {name} | {} | {per_second:.0} |", latency_cells(times));
}

/// The `i`th key of a series, spread over the names (so that creations
/// land all over the index of names, not at its end).
fn scattered(series: &str, i: usize) -> String {
    format!(
        "{series}-{:08}",
        i.wrapping_mul(2_654_435_761) % 100_000_000
    )
}

async fn timed<F: Future<Output = ()>>(n: usize, mut op: impl FnMut(usize) -> F) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        op(i).await;
        times.push(start.elapsed());
    }
    times
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // On a worker thread, as a request's task runs in `ostore up`: the main
    // thread's `block_on` would add a hand-off between threads to every
    // task the writes spawn.
    tokio::spawn(run(args())).await.unwrap();
}

async fn run(args: Args) {
    let dir = tempfile::tempdir().expect("a scratch directory");
    println!(
        "lone durable writes, {} timed per row, partition filled to {} keys, in {}",
        args.writes,
        args.keys,
        dir.path().display()
    );
    println!();
    println!("| row | n | p50 ms | p90 ms | p99 ms | ops/s |");
    println!("|---|---|---|---|---|---|");

    // The floor: what the disk takes to make 160 bytes durable.
    let mut file = std::fs::File::create(dir.path().join("append")).unwrap();
    let times = timed(args.writes, |_| {
        file.write_all(&[0u8; 160]).unwrap();
        file.sync_data().unwrap();
        std::future::ready(())
    })
    .await;
    row("append 160 B + fdatasync (floor)", times);

    // redb through the backend: its group-commit writer and one durable
    // transaction per commit.
    let backend: Arc<dyn Backend> = BackendConfig::redb()
        .open(&dir.path().join("raw.redb"))
        .await
        .unwrap();
    let times = timed(args.writes, |i| {
        let backend = backend.clone();
        async move {
            let mut batch = Batch::new(b"s".to_vec());
            batch.put(
                format!("k{i:08}").into_bytes(),
                vec![7; 200],
                Expect::Absent,
            );
            backend.commit(batch).await.unwrap();
        }
    })
    .await;
    row("backend: 1 put of 200 B", times);
    // What a creation writes: its entry, its index leaf (rewritten whole),
    // its host's count slot.
    let times = timed(args.writes, |i| {
        let backend = backend.clone();
        async move {
            let mut batch = Batch::new(b"s".to_vec());
            batch.put(
                format!("e{i:08}").into_bytes(),
                vec![7; 200],
                Expect::Absent,
            );
            batch.put(b"leaf".to_vec(), vec![7; 4096], Expect::Any);
            batch.put(b"slot".to_vec(), vec![7; 60], Expect::Any);
            backend.commit(batch).await.unwrap();
        }
    })
    .await;
    row("backend: 3 puts (200 B, 4 KiB, 60 B)", times);
    drop(backend);

    let backend = BackendConfig::redb()
        .open(&dir.path().join("store.redb"))
        .await
        .unwrap();
    let os = ObjectStore::open(backend, &MasterKey::generate(), Config::default())
        .await
        .unwrap();
    let app = os.application("bench").await.unwrap();
    let store = app.default_store().await.unwrap();
    let p = store.partition("p").await.unwrap();
    let p = &p;
    let write = |series: &'static str| {
        move |i| async move {
            p.store(
                &scattered(series, i),
                VALUE.to_vec(),
                StoreOptions::default(),
            )
            .await
            .unwrap();
        }
    };
    // The fill is untimed and concurrent, so that its writes share group
    // commits and a large partition fills in minutes.
    let fill = Instant::now();
    let fillers: Vec<_> = (0..FILLERS)
        .map(|t| {
            let p = p.clone();
            tokio::spawn(async move {
                for i in (t..args.keys).step_by(FILLERS) {
                    let value = VALUE.to_vec();
                    let key = scattered("fill", i);
                    p.store(&key, value, StoreOptions::default()).await.unwrap();
                }
            })
        })
        .collect();
    for filler in fillers {
        filler.await.unwrap();
    }
    eprintln!("filled {} keys in {:.1?}", args.keys, fill.elapsed());
    // The first round creates the keys, the second overwrites them.
    let times = timed(args.writes, write("new")).await;
    row("object store: create a key", times);
    let times = timed(args.writes, write("new")).await;
    row("object store: overwrite a key", times);
    let times = timed(args.writes, |i| async move {
        p.retrieve(&scattered("new", i)).await.unwrap();
    })
    .await;
    row("object store: read a key", times);

    // A listing page of 1,000 keys with their metadata, as the REST API's
    // listing reads it, walked from the first page to the last: the store's
    // part of a listing, without HTTP and JSON.
    let mut times = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let start = Instant::now();
        let page = p
            .list_key_metadata(None, cursor.as_deref(), 1000)
            .await
            .unwrap();
        times.push(start.elapsed());
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    row("object store: listing page of 1,000 with metadata", times);

    // What the keys take at rest: the redb file against its entries alone
    // (each key's record key and sealed record, as the Stats API counts
    // them), the rest being the index of names, redb's pages and slack.
    let keys = (args.keys + args.writes) as f64;
    let file = std::fs::metadata(dir.path().join("store.redb"))
        .unwrap()
        .len();
    let entries = app.footprint().bytes;
    println!();
    println!(
        "redb file {:.0} bytes per key; entries (record keys and sealed records) {:.0} bytes per key",
        file as f64 / keys,
        entries as f64 / keys
    );
}

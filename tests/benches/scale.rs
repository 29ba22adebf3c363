//! Scale benchmark: one partition filled to N keys on one `ostore up`.
//!
//! Starts the host (release build under `cargo bench`) with the hello-world
//! guest (the floor) and the tutorial guest, fills the tutorial's partition
//! with N keys of 100-byte values through `POST /store` at 64 connections,
//! and prints, in one run:
//!
//! - the fill rate;
//! - the host's RSS and the data's bytes on disk, per key;
//! - the time from starting the host again to its first answer, and its
//!   RSS then;
//! - the time of a REST listing page of 1,000 keys at the start and at the
//!   end of the partition (walking every page in between), and the p50 and
//!   p99 of all those pages;
//! - the time of a prefix listing with 0, 10 and 10,000 matches (all pages);
//! - GET and durable POST at 1 and 64 connections next to the hello-world
//!   floor.
//!
//! Nothing here asserts a timing.
//!
//! ```text
//! cargo bench -p ostore-tests --bench scale -- [--keys N] [--seconds S] [--cache-size SIZE] [--keep DIR]
//! ```
//! Defaults: 10,000,000 keys, 5 seconds per load run, the host's default
//! cache size, the data in a temporary directory deleted at the end
//! (`--keep DIR`: in DIR, which must be empty, and left there). Keys are
//! `k` and nine digits, so that `k00000012` matches 10 keys and `k00001`
//! 10,000 (given at least 20,000 keys).

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use ostore_tests::load::{connect, drive, ms};
use ostore_tests::{OstoreProcess, Serves, create_credential, guest, write_manifest};

const APP: &str = "scale";
const KEYS: &str = "/api/v1/organizations/default/environments/scale/stores/\
                    _defaultUserObjectStore/partitions/ObjectStoreTutorial/keys";
/// Connections that fill the partition.
const FILL_CONNECTIONS: usize = 64;

/// The `n`th request of connection `conn`, for [`drive`].
type MakeRequest = Box<dyn Fn(usize, u64) -> hyper::Request<Full<Bytes>> + Send + Sync>;

struct Args {
    keys: u64,
    seconds: u64,
    cache_size: Option<String>,
    /// Where to fill, and leave, the data (default: a temporary directory,
    /// deleted at the end).
    keep: Option<PathBuf>,
}

fn args() -> Args {
    let mut args = Args {
        keys: 10_000_000,
        seconds: 5,
        cache_size: None,
        keep: None,
    };
    let given = ostore_tests::load::bench_args();
    let mut given = given.iter();
    while let Some(flag) = given.next() {
        let value = given
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--keys" => args.keys = value.parse().expect("--keys: a number"),
            "--seconds" => args.seconds = value.parse().expect("--seconds: a number"),
            "--cache-size" => args.cache_size = Some(value.clone()),
            "--keep" => args.keep = Some(PathBuf::from(value)),
            other => panic!(
                "unknown flag {other} (--keys N, --seconds S, --cache-size SIZE, --keep DIR)"
            ),
        }
    }
    args
}

fn key(i: u64) -> String {
    format!("k{i:09}")
}

fn store_body(key: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"key":"{key}","value":"{}"}}"#,
        "v".repeat(100)
    ))
}

fn post(addr: SocketAddr, key: &str) -> hyper::Request<Full<Bytes>> {
    hyper::Request::builder()
        .method("POST")
        .uri("/store")
        .header("host", addr.to_string())
        .body(Full::new(store_body(key)))
        .expect("a valid request")
}

fn get(addr: SocketAddr, path: &str) -> hyper::Request<Full<Bytes>> {
    ostore_tests::load::get(addr, path)
}

/// Stores keys `0..keys` over [`FILL_CONNECTIONS`] connections; returns
/// the time it took. Every write is acknowledged durable.
async fn fill(addr: SocketAddr, keys: u64) -> Duration {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..FILL_CONNECTIONS)
        .map(|_| {
            let next = next.clone();
            tokio::spawn(async move {
                let mut sender = connect(addr).await.expect("a connection");
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= keys {
                        break;
                    }
                    let res = sender
                        .send_request(post(addr, &key(i)))
                        .await
                        .expect("an answer");
                    let status = res.status();
                    let body = res.into_body().collect().await.expect("a body");
                    assert!(status.is_success(), "storing {}: {status} {body:?}", key(i));
                    if i > 0 && i.is_multiple_of(1_000_000) {
                        eprintln!("filled {i} keys in {:.0} s", start.elapsed().as_secs_f64());
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a fill task");
    }
    start.elapsed()
}

/// The process's resident set, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS in kB")
        * 1024
}

/// Bytes the files under `dir` take on disk (allocated blocks).
fn disk_bytes(dir: &Path) -> u64 {
    ostore_tests::files_under(dir)
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// Lists `query` (a keys URL's query string) through every page; returns
/// the time of each page and the keys seen.
async fn list(host: &OstoreProcess, token: &str, query: &str) -> (Vec<Duration>, u64) {
    let mut pages = Vec::new();
    let mut seen = 0;
    let mut next = String::new();
    loop {
        let path = format!("{KEYS}?{query}{next}");
        let start = Instant::now();
        let r = host.call(token, "GET", &path, "").await;
        pages.push(start.elapsed());
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let page: serde_json::Value = r.json();
        seen += page["values"].as_array().map_or(0, Vec::len) as u64;
        match page["nextPageToken"].as_str() {
            Some(token) => next = format!("&nextPageToken={token}"),
            None => return (pages, seen),
        }
    }
}

#[tokio::main]
async fn main() {
    let args = args();
    let temporary;
    let dir = match &args.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir).expect("the --keep directory");
            let empty = std::fs::read_dir(dir).map(|mut d| d.next().is_none());
            assert!(
                empty.unwrap_or(false),
                "--keep {}: not an empty directory",
                dir.display()
            );
            dir.as_path()
        }
        None => {
            temporary = tempfile::tempdir().expect("a temporary directory");
            temporary.path()
        }
    };
    let hello = guest("hello");
    let flow = guest("store-flow");
    let manifest = write_manifest(
        dir,
        APP,
        &[("/hello", "hello", &hello), ("/store/...", "flow", &flow)],
    );
    let data = dir.join("data");
    let mut up = vec![
        "-f".to_string(),
        manifest.display().to_string(),
        "--data-dir".to_string(),
        data.display().to_string(),
    ];
    if let Some(size) = &args.cache_size {
        up.extend(["--cache-size".to_string(), size.clone()]);
    }
    let up: Vec<&str> = up.iter().map(String::as_str).collect();
    println!(
        "ostore scale benchmark: {} keys of 100-byte values in one partition, cache size {}, host = {}",
        args.keys,
        args.cache_size.as_deref().unwrap_or("default"),
        ostore_tests::ostore_bin().display()
    );

    let host = OstoreProcess::start(&up);
    let took = fill(host.addr, args.keys).await;
    let rss = rss_bytes(host.pid());
    let disk = disk_bytes(&data);
    println!("| figure | value |\n|---|---|");
    println!(
        "| fill: {} keys at {FILL_CONNECTIONS} connections | {:.1} s, {:.0} writes/s |",
        args.keys,
        took.as_secs_f64(),
        args.keys as f64 / took.as_secs_f64()
    );
    println!(
        "| RSS after the fill | {} ({:.0} bytes per key) |",
        mib(rss),
        rss as f64 / args.keys as f64
    );
    println!(
        "| bytes on disk | {} ({:.0} bytes per key) |",
        mib(disk),
        disk as f64 / args.keys as f64
    );
    host.stop();

    let started = Instant::now();
    let host = OstoreProcess::start(&up);
    let probe = format!("/store/{}", key(args.keys / 2));
    let r = host.get(&probe).await;
    let first = started.elapsed();
    assert_eq!(r.status, 200, "{probe}: {}", r.text());
    println!(
        "| restart to first answer (a GET of a stored key) | {} |",
        ms(first)
    );
    println!(
        "| RSS right after the restart | {} |",
        mib(rss_bytes(host.pid()))
    );

    let credential = create_credential(&data, &["--app", APP], &[]);
    let token = host.token(&credential).await;
    let (pages, seen) = list(&host, &token, "pageSize=1000").await;
    assert_eq!(seen, args.keys, "a full listing sees every key");
    println!(
        "| listing page of 1,000: first / last of {} pages | {} / {} |",
        pages.len(),
        ms(pages[0]),
        ms(*pages.last().expect("a page"))
    );
    let mut sorted = pages.clone();
    sorted.sort();
    let at = |q: f64| ms(sorted[((sorted.len() - 1) as f64 * q) as usize]);
    println!(
        "| listing page of 1,000: p50 / p99 of all {} pages | {} / {} |",
        pages.len(),
        at(0.5),
        at(0.99)
    );
    for prefix in ["zzz", "k00000012", "k00001"] {
        let (pages, seen) = list(&host, &token, &format!("prefix={prefix}&pageSize=1000")).await;
        println!(
            "| prefix `{prefix}`: {seen} matches, {} page(s) | {} |",
            pages.len(),
            ms(pages.iter().sum())
        );
    }
    println!(
        "| RSS after the listings | {} |",
        mib(rss_bytes(host.pid()))
    );

    println!(
        "\n| workload | connections | requests/s | p50 | p99 | errors |\n|---|---|---|---|---|---|"
    );
    let addr = host.addr;
    let keys = args.keys;
    for connections in [1, 64] {
        let runs: [(&str, MakeRequest); 3] = [
            (
                "hello-world GET (floor)",
                Box::new(move |_, _| get(addr, "/hello")),
            ),
            (
                "GET /store/<key>",
                Box::new(move |conn, n| {
                    let i = (conn as u64 * 7919 + n * 104_729) % keys;
                    get(addr, &format!("/store/{}", key(i)))
                }),
            ),
            (
                "durable POST /store",
                Box::new(move |conn, n| post(addr, &format!("post-{connections}-{conn}-{n}"))),
            ),
        ];
        for (name, request) in runs {
            let f = drive(
                addr,
                connections,
                Duration::from_secs(args.seconds),
                request,
            )
            .await;
            println!(
                "| {name} | {connections} | {:.0} | {} | {} | {} |",
                f.requests_per_second(),
                ms(f.percentile(0.50)),
                ms(f.percentile(0.99)),
                f.errors
            );
        }
    }
    println!("\nRSS at the end: {}", mib(rss_bytes(host.pid())));
    host.stop();
    if args.keep.is_some() {
        println!(
            "the data is kept: `ostore check --data-dir {}` says what it takes",
            data.display()
        );
    }
}

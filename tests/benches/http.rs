//! HTTP benchmark of the tutorial flow against a real `ostore up`.
//!
//! Starts the host (release build under `cargo bench`) with the hello-world
//! guest as the floor and the store-flow guest, then for each connection
//! count drives each workload with keep-alive connections for a fixed time
//! and prints requests/s and latency percentiles. Nothing here asserts a
//! timing.
//!
//! ```text
//! cargo bench -p ostore-tests --bench http -- [SECONDS] [CONNECTIONS...]
//! ```
//! Defaults: 10 seconds per workload, 1 and 64 connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use ostore_tests::{OstoreProcess, Serves, guest, write_manifest};

#[derive(Clone, Copy)]
enum Workload {
    Hello,
    Store,
    Retrieve,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Hello => "hello-world GET (floor)",
            Workload::Store => "store: POST /store",
            Workload::Retrieve => "retrieve: GET /store/<key>",
        }
    }

    /// The `n`th request of connection `conn`.
    fn request(self, addr: SocketAddr, conn: usize, n: u64) -> hyper::Request<Full<Bytes>> {
        let builder = hyper::Request::builder().header("host", addr.to_string());
        let value = "v".repeat(100);
        match self {
            Workload::Hello => builder.uri("/hello").body(Full::default()),
            Workload::Store => builder
                .method("POST")
                .uri("/store")
                .body(Full::new(Bytes::from(format!(
                    r#"{{"key":"bench-{conn}-{n}","value":"{value}"}}"#
                )))),
            Workload::Retrieve => builder
                .uri(format!("/store/seed-{}", (conn as u64 * 7919 + n) % SEEDED))
                .body(Full::default()),
        }
        .expect("a valid request")
    }
}

/// Keys stored before the retrieve workload.
const SEEDED: u64 = 1000;

struct Figures {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

async fn drive(
    addr: SocketAddr,
    workload: Workload,
    connections: usize,
    time: Duration,
) -> Figures {
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + time;
    let tasks: Vec<_> = (0..connections)
        .map(|conn| {
            let errors = errors.clone();
            tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                stream.set_nodelay(true).expect("nodelay");
                let (mut sender, c) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                        .expect("handshake");
                tokio::spawn(c);
                let mut latencies = Vec::new();
                let mut n = 0;
                while Instant::now() < deadline {
                    let req = workload.request(addr, conn, n);
                    n += 1;
                    let sent = Instant::now();
                    let res = sender.send_request(req).await.expect("request");
                    let ok = res.status().is_success();
                    res.into_body().collect().await.expect("body");
                    latencies.push(sent.elapsed());
                    if !ok {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("connection task"));
    }
    let elapsed = start.elapsed();
    latencies.sort();
    Figures {
        requests: latencies.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        latencies,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let seconds: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(10);
    let mut counts: Vec<usize> = args.iter().skip(1).filter_map(|a| a.parse().ok()).collect();
    if counts.is_empty() {
        counts = vec![1, 64];
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let hello = guest("hello");
    let flow = guest("store-flow");
    let manifest = write_manifest(
        dir.path(),
        "bench",
        &[("/hello", "hello", &hello), ("/store/...", "flow", &flow)],
    );
    let data = dir.path().join("data");
    let host = OstoreProcess::start(&[
        "-f",
        manifest.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    for i in 0..SEEDED {
        let body = format!(r#"{{"key":"seed-{i}","value":"{}"}}"#, "v".repeat(100));
        let r = host.request("POST", "/store", body).await;
        assert_eq!(r.status, 200, "seeding: {}", r.text());
    }
    // Warm up: first requests pay for lazy initialisation.
    drive(host.addr, Workload::Hello, 4, Duration::from_secs(1)).await;

    println!(
        "ostore HTTP benchmark: {seconds} s per run, 100-byte values, host = {}",
        ostore_tests::ostore_bin().display()
    );
    println!(
        "| workload | connections | requests/s | p50 | p99 | errors |\n|---|---|---|---|---|---|"
    );
    for &connections in &counts {
        for workload in [Workload::Hello, Workload::Store, Workload::Retrieve] {
            let f = drive(
                host.addr,
                workload,
                connections,
                Duration::from_secs(seconds),
            )
            .await;
            println!(
                "| {} | {connections} | {:.0} | {} | {} | {} |",
                workload.name(),
                f.requests as f64 / f.elapsed.as_secs_f64(),
                ms(percentile(&f.latencies, 0.50)),
                ms(percentile(&f.latencies, 0.99)),
                f.errors
            );
        }
    }
    host.stop();
}

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
//!
//! With `OSTORE_BIN_BEFORE=/path/to/another/ostore` it also starts that
//! build on a data directory of its own and drives the two in turn, each
//! workload on one and then the other, so that a change is measured before
//! and after in one run, under the same machine load. `OSTORE_ENV_BEFORE`
//! (`NAME=VALUE` pairs separated by spaces) gives the "before" host
//! environment variables of its own; with it alone, the "before" host is
//! this build too.
//!
//! With `WASMTIME=/path/to/wasmtime` it also starts `wasmtime serve -Scli`
//! with the same hello-world component and drives it in turn with the
//! floor, for the issue's comparison with wasmtime's own server
//! (`cargo install wasmtime-cli --version 48.0.8 --locked`).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use ostore_tests::load::{drive, ms};
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

/// `wasmtime serve -Scli` serving one component on a loopback port; ended
/// by its pid when dropped.
struct WasmtimeServe {
    child: Child,
    addr: SocketAddr,
}

impl WasmtimeServe {
    fn start(wasmtime: &Path, component: &Path) -> Self {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let mut child = Command::new(wasmtime)
            .args(["serve", "-Scli", "--addr", &addr.to_string()])
            .arg(component)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", wasmtime.display()));
        let start = Instant::now();
        while TcpStream::connect(addr).is_err() {
            if let Some(status) = child.try_wait().expect("wasmtime's status") {
                panic!("wasmtime serve exited with {status}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "wasmtime serve did not listen on {addr} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, addr }
    }
}

impl Drop for WasmtimeServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A second of hello-world requests: the first ones pay for lazy
/// initialisation.
async fn warm_up(addr: SocketAddr) {
    drive(addr, 4, Duration::from_secs(1), move |conn, n| {
        Workload::Hello.request(addr, conn, n)
    })
    .await;
}

#[tokio::main]
async fn main() {
    let (seconds, counts) = ostore_tests::load::seconds_and_connections(10);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let hello = guest("hello");
    let flow = guest("store-flow");
    let manifest = write_manifest(
        dir.path(),
        "bench",
        &[("/hello", "hello", &hello), ("/store/...", "flow", &flow)],
    );
    let this = ostore_tests::ostore_bin();
    let before_env = std::env::var("OSTORE_ENV_BEFORE").unwrap_or_default();
    let before_env: Vec<(&str, &str)> = before_env
        .split_whitespace()
        .map(|pair| {
            pair.split_once('=')
                .expect("OSTORE_ENV_BEFORE: NAME=VALUE pairs")
        })
        .collect();
    let before_bin = std::env::var_os("OSTORE_BIN_BEFORE").map(PathBuf::from);
    let mut builds = vec![("this build".to_string(), this.clone(), Vec::new())];
    if before_bin.is_some() || !before_env.is_empty() {
        builds[0].0 = "after".to_string();
        let bin = before_bin.unwrap_or(this);
        builds.insert(0, ("before".to_string(), bin, before_env));
    }
    let mut hosts = Vec::new();
    for (i, (label, bin, env)) in builds.iter().enumerate() {
        let data = dir.path().join(format!("data-{i}"));
        let host = OstoreProcess::start_binary_with_env(
            bin,
            &[
                "-f",
                manifest.to_str().unwrap(),
                "--data-dir",
                data.to_str().unwrap(),
            ],
            env,
        );
        for i in 0..SEEDED {
            let body = format!(r#"{{"key":"seed-{i}","value":"{}"}}"#, "v".repeat(100));
            let r = host.request("POST", "/store", body).await;
            assert_eq!(r.status, 200, "seeding: {}", r.text());
        }
        warm_up(host.addr).await;
        println!("{label}: {} {env:?}", bin.display());
        hosts.push((label.clone(), host));
    }

    let wasmtime = std::env::var_os("WASMTIME").map(|bin| {
        let serve = WasmtimeServe::start(Path::new(&bin), &hello);
        let version = Command::new(&bin)
            .arg("--version")
            .output()
            .expect("wasmtime --version");
        println!(
            "wasmtime serve -Scli: {}",
            String::from_utf8_lossy(&version.stdout).trim()
        );
        serve
    });
    if let Some(serve) = &wasmtime {
        warm_up(serve.addr).await;
    }

    println!("ostore HTTP benchmark: {seconds} s per run, 100-byte values");
    println!(
        "| build | workload | connections | requests/s | p50 | p99 | errors |\n|---|---|---|---|---|---|---|"
    );
    for &connections in &counts {
        for workload in [Workload::Hello, Workload::Store, Workload::Retrieve] {
            let mut targets: Vec<(&str, SocketAddr)> = hosts
                .iter()
                .map(|(label, host)| (&label[..], host.addr))
                .collect();
            if let (Workload::Hello, Some(serve)) = (workload, &wasmtime) {
                targets.push(("wasmtime serve -Scli", serve.addr));
            }
            for (label, addr) in targets {
                let f = drive(
                    addr,
                    connections,
                    Duration::from_secs(seconds),
                    move |conn, n| workload.request(addr, conn, n),
                )
                .await;
                println!(
                    "| {label} | {} | {connections} | {:.0} | {} | {} | {} |",
                    workload.name(),
                    f.requests_per_second(),
                    ms(f.percentile(0.50)),
                    ms(f.percentile(0.99)),
                    f.errors
                );
            }
        }
    }
    for (_, host) in hosts {
        host.stop();
    }
}

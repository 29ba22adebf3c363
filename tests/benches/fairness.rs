//! Fairness soak benchmark: one application's well-behaved route under
//! load while another application misbehaves, against a real `ostore up`.
//!
//! The host serves two applications: `good` (the hello-world guest at
//! `/hello`) and `bad` (the misbehave guest). For each scenario the bench
//! drives `/hello` over keep-alive connections for a fixed time and prints
//! requests/s and latency percentiles, and what the misbehaving requests
//! got. Nothing here asserts a timing.
//!
//! Scenarios, in this order:
//! - **alone**: nothing else runs (the baseline);
//! - **traps**: 16 connections, half asking `/misbehave/grow` (grow memory
//!   to the limit), half `/misbehave/recurse` (overflow the stack), each
//!   asking again as soon as answered;
//! - **spin**: 8 requests to `/misbehave/loop`, which spins until its
//!   deadline (30 s, past the end of the run; so this scenario comes last).
//!
//! ```text
//! cargo bench -p ostore-tests --bench fairness -- [SECONDS] [CONNECTIONS]
//! ```
//! Defaults: 10 seconds per scenario, 16 connections. With `OSTORE_BIN`
//! set, the bench runs that build of `ostore` instead of this one, so that
//! two builds can be compared in one session.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use ostore_tests::load::{Figures, connect, drive, get, ms};
use ostore_tests::{OstoreProcess, guest, write_manifest};

/// Answers the misbehaving requests got, by status (0: no answer).
type Statuses = Arc<Mutex<BTreeMap<u16, u64>>>;

/// Keeps `connections` connections asking `paths` (round robin over the
/// connections) until aborted, counting the answers.
fn attack(
    addr: SocketAddr,
    paths: &'static [&'static str],
    connections: usize,
) -> (Vec<tokio::task::JoinHandle<()>>, Statuses) {
    let statuses = Statuses::default();
    let tasks = (0..connections)
        .map(|conn| {
            let statuses = statuses.clone();
            let path = paths[conn % paths.len()];
            tokio::spawn(async move {
                loop {
                    let Ok(mut sender) = connect(addr).await else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    while let Ok(res) = sender.send_request(get(addr, path)).await {
                        let status = res.status().as_u16();
                        let _ = res.into_body().collect().await;
                        *statuses.lock().unwrap().entry(status).or_default() += 1;
                    }
                    *statuses.lock().unwrap().entry(0).or_default() += 1;
                }
            })
        })
        .collect();
    (tasks, statuses)
}

fn row(scenario: &str, f: &Figures, statuses: &Statuses) {
    let statuses = statuses.lock().unwrap();
    let attack = if statuses.is_empty() {
        "-".to_string()
    } else {
        statuses
            .iter()
            .map(|(status, n)| format!("{n}× {status}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "| {scenario} | {:.0} | {} | {} | {} | {attack} |",
        f.requests_per_second(),
        ms(f.percentile(0.50)),
        ms(f.percentile(0.99)),
        f.errors,
    );
}

#[tokio::main]
async fn main() {
    let args = ostore_tests::load::bench_args();
    let seconds: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(10);
    let connections: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(16);
    let time = Duration::from_secs(seconds);

    let dir = tempfile::tempdir().expect("a temporary directory");
    let good = write_manifest(dir.path(), "good", &[("/hello", "hello", &guest("hello"))]);
    let bad = write_manifest(
        dir.path(),
        "bad",
        &[("/misbehave/...", "misbehave", &guest("misbehave"))],
    );
    let data = dir.path().join("data");
    let args = [
        "-f",
        good.to_str().unwrap(),
        "-f",
        bad.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let bin = std::env::var_os("OSTORE_BIN").map_or_else(ostore_tests::ostore_bin, PathBuf::from);
    // The host's log (every trap) goes to a pipe the bench drains, as a
    // terminal or a log collector would.
    let host = OstoreProcess::start_binary(&bin, &args);
    let addr = host.addr;
    let hello = move |_, _| get(addr, "/hello");
    // Warm up: first requests pay for lazy initialisation.
    drive(addr, 4, Duration::from_secs(1), hello).await;

    println!(
        "ostore fairness benchmark: {seconds} s per scenario, {connections} connections to \
         /hello of application `good`, host = {}",
        bin.display()
    );
    println!(
        "| scenario | requests/s | p50 | p99 | errors | misbehaving requests' answers |\n\
         |---|---|---|---|---|---|"
    );
    let f = drive(addr, connections, time, hello).await;
    row("alone", &f, &Statuses::default());

    let (tasks, statuses) = attack(addr, &["/misbehave/grow", "/misbehave/recurse"], 16);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let f = drive(addr, connections, time, hello).await;
    tasks.iter().for_each(|t| t.abort());
    row(
        "traps: 16 connections growing memory or overflowing the stack",
        &f,
        &statuses,
    );
    // Let the last trapping instances go.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (tasks, statuses) = attack(addr, &["/misbehave/loop"], 8);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let f = drive(addr, connections, time, hello).await;
    row(
        "spin: 8 requests spinning until their 30 s deadline",
        &f,
        &statuses,
    );
    tasks.iter().for_each(|t| t.abort());
    drop(host);
}

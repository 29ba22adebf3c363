//! Scale-out benchmark: the tutorial flow on one host on redb, then on 1, 2
//! and 3 hosts sharing one Redis Cluster, in one run.
//!
//! Starts a cluster of 3 masters with one replica each (every server with
//! `appendonly yes`, `appendfsync always`), then, one scenario after the
//! other, `ostore up` processes (release build under `cargo bench`) with
//! one manifest (the hello guest at `/hello`, for warming up, and the
//! store-flow guest at `/store/...`), one data directory and one master
//! key:
//!
//! - one host on redb (the baseline);
//! - 1, 2 and 3 hosts on the cluster with `--redis-durability master`;
//! - 1, 2 and 3 hosts with `--redis-durability replica`.
//!
//! In each scenario it drives the tutorial's GET (`/store/<seeded key>`)
//! and durable POST (`/store` with a 100-byte value) over keep-alive
//! connections for a fixed time, the connections spread round robin over
//! the hosts, and prints the aggregate requests/s and latency percentiles,
//! and the CPU time (user + system, from `/proc/<pid>/stat`) per request of
//! the ostore processes, the Redis masters and replicas, and this process
//! (the load generator). Nothing here asserts a timing.
//!
//! ```text
//! cargo bench -p ostore-tests --bench scaleout -- [SECONDS] [CONNECTIONS...]
//! ```
//! Defaults: 5 seconds per cell, 1 and 64 connections.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use ostore_tests::load::{Figures, drive_round_robin, ms};
use ostore_tests::redis::{RedisCluster, RedisOptions};
use ostore_tests::{OstoreProcess, Serves, guest, write_manifest};

/// Keys stored before the GET workload.
const SEEDED: u64 = 1000;

/// The one master key of every host: hosts sharing Redis must share it.
const MASTER_KEY: &str = "5ca1e0075ca1e0075ca1e0075ca1e0075ca1e0075ca1e0075ca1e0075ca1e007";

#[derive(Clone, Copy)]
enum Workload {
    Retrieve,
    Store,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Retrieve => "GET /store/<key>",
            Workload::Store => "POST /store",
        }
    }

    /// The `n`th request of connection `conn` to `addr`; stored keys are
    /// unique to the cell `cell`, so that no cell overwrites another's.
    fn request(
        self,
        addr: SocketAddr,
        cell: usize,
        conn: usize,
        n: u64,
    ) -> hyper::Request<Full<Bytes>> {
        let builder = hyper::Request::builder().header("host", addr.to_string());
        match self {
            Workload::Store => builder
                .method("POST")
                .uri("/store")
                .body(Full::new(Bytes::from(format!(
                    r#"{{"key":"bench-{cell}-{conn}-{n}","value":"{}"}}"#,
                    "v".repeat(100)
                )))),
            Workload::Retrieve => builder
                .uri(format!("/store/seed-{}", (conn as u64 * 7919 + n) % SEEDED))
                .body(Full::default()),
        }
        .expect("a valid request")
    }
}

/// Where one scenario's hosts keep their records.
#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Redb,
    Redis { durability: &'static str },
}

impl Backend {
    fn name(self) -> String {
        match self {
            Backend::Redb => "redb".into(),
            Backend::Redis { durability } => format!("Redis, {durability}"),
        }
    }
}

/// CPU time (user + system, in clock ticks) of every process that takes
/// part, and of the whole machine, at one moment.
#[derive(Clone, Copy, Default)]
struct CpuSample {
    ostore: u64,
    masters: u64,
    replicas: u64,
    load_generator: u64,
    machine_busy: u64,
    machine_total: u64,
}

/// The processes whose CPU time is counted.
struct Pids {
    ostore: Vec<u32>,
    masters: Vec<u32>,
    replicas: Vec<u32>,
}

/// utime + stime of process `pid` (all its threads), in clock ticks.
fn process_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/stat: {e}"));
    // The command name, in parentheses, may hold spaces: count the fields
    // after its closing parenthesis (field 3, the state, is the first).
    let after = &stat[stat.rfind(')').expect("a stat line") + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| fields[i].parse::<u64>().expect("a number of ticks");
    field(11) + field(12)
}

/// (busy, total) clock ticks of all cores, from the first line of
/// /proc/stat: busy is all but idle and iowait.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").expect("reading /proc/stat");
    let line = stat.lines().next().expect("a cpu line");
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse().expect("a number of ticks"))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is in
    // user already).
    let total: u64 = ticks.iter().take(8).sum();
    (total - ticks[3] - ticks[4], total)
}

impl CpuSample {
    fn now(pids: &Pids) -> CpuSample {
        let sum = |pids: &[u32]| pids.iter().map(|p| process_ticks(&p.to_string())).sum();
        let (machine_busy, machine_total) = machine_ticks();
        CpuSample {
            ostore: sum(&pids.ostore),
            masters: sum(&pids.masters),
            replicas: sum(&pids.replicas),
            load_generator: process_ticks("self"),
            machine_busy,
            machine_total,
        }
    }

    fn since(self, before: CpuSample) -> CpuSample {
        CpuSample {
            ostore: self.ostore - before.ostore,
            masters: self.masters - before.masters,
            replicas: self.replicas - before.replicas,
            load_generator: self.load_generator - before.load_generator,
            machine_busy: self.machine_busy - before.machine_busy,
            machine_total: self.machine_total - before.machine_total,
        }
    }
}

/// One measured cell: a scenario, a workload, a number of connections.
struct Cell {
    backend: Backend,
    hosts: usize,
    workload: Workload,
    connections: usize,
    figures: Figures,
    cpu: CpuSample,
}

/// Clock ticks per second of /proc's CPU times.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

impl Cell {
    /// Microseconds of CPU per request for `ticks`.
    fn per_request(&self, ticks: u64) -> f64 {
        let requests = self.figures.latencies.len().max(1) as f64;
        ticks as f64 / clock_ticks() * 1e6 / requests
    }

    fn redis(&self) -> u64 {
        self.cpu.masters + self.cpu.replicas
    }

    /// The share of all cores that was busy (with anything, other builds
    /// included).
    fn machine_busy(&self) -> f64 {
        self.cpu.machine_busy as f64 / self.cpu.machine_total.max(1) as f64
    }

    /// Which process is the limit. One connection has one request in
    /// flight: its rate is one over the latency, whatever the CPU. With
    /// more, the machine is the limit when its cores are busy (90 % and
    /// more), and among the processes of the benchmark, the one that
    /// spends most CPU per request; else the requests wait on something
    /// other than CPU (fsync, a replica).
    fn limit(&self) -> String {
        if self.connections == 1 {
            return "latency (1 in flight)".into();
        }
        let candidates = [
            ("ostore", self.cpu.ostore),
            ("redis-server", self.redis()),
            ("load generator", self.cpu.load_generator),
        ];
        let (largest, _) = candidates
            .iter()
            .max_by_key(|(_, ticks)| *ticks)
            .expect("three candidates");
        if self.machine_busy() >= 0.9 {
            format!("CPU: {largest}")
        } else {
            format!("waits (CPU {:.0} %)", self.machine_busy() * 100.0)
        }
    }

    fn row(&self) -> String {
        let f = &self.figures;
        format!(
            "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {:.0} | {:.0} + {:.0} | {:.0} | {:.0} % | {} |",
            self.backend.name(),
            self.hosts,
            self.workload.name(),
            self.connections,
            f.requests_per_second(),
            ms(f.percentile(0.50)),
            ms(f.percentile(0.99)),
            f.errors,
            self.per_request(self.cpu.ostore),
            self.per_request(self.cpu.masters),
            self.per_request(self.cpu.replicas),
            self.per_request(self.cpu.load_generator),
            self.machine_busy() * 100.0,
            self.limit(),
        )
    }
}

/// Starts `hosts` hosts of `manifest` on `data` with `backend`.
fn start_hosts(
    manifest: &Path,
    data: &Path,
    backend: Backend,
    redis_url: &str,
    hosts: usize,
) -> Vec<OstoreProcess> {
    let mut args = vec![
        "-f".to_string(),
        manifest.display().to_string(),
        "--data-dir".to_string(),
        data.display().to_string(),
    ];
    if let Backend::Redis { durability } = backend {
        args.extend([
            "--backend".to_string(),
            redis_url.to_string(),
            "--redis-durability".to_string(),
            durability.to_string(),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (0..hosts)
        .map(|_| OstoreProcess::start_with_env(&args, &[("OSTORE_MASTER_KEY", MASTER_KEY)]))
        .collect()
}

/// Stores the keys the GET workload reads, 16 at a time.
async fn seed(host: &OstoreProcess) {
    let addr = host.addr();
    let writers: Vec<_> = (0..16)
        .map(|w| {
            tokio::spawn(async move {
                for i in (w..SEEDED).step_by(16) {
                    let body = format!(r#"{{"key":"seed-{i}","value":"{}"}}"#, "v".repeat(100));
                    let r = ostore_tests::request(addr, "POST", "/store", body.into()).await;
                    assert_eq!(r.status, 200, "seeding: {}", r.text());
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("a seeding task");
    }
}

/// First requests pay for lazy initialisation (instances, connections to
/// every master, scripts): one second of each workload on every host,
/// not measured.
async fn warm_up(addrs: &[SocketAddr]) {
    let hello = addrs.to_vec();
    drive_round_robin(
        addrs,
        4 * addrs.len(),
        Duration::from_secs(1),
        move |c, _| ostore_tests::load::get(hello[c % hello.len()], "/hello"),
    )
    .await;
    for workload in [Workload::Retrieve, Workload::Store] {
        let to = addrs.to_vec();
        drive_round_robin(
            addrs,
            4 * addrs.len(),
            Duration::from_secs(1),
            move |c, n| workload.request(to[c % to.len()], usize::MAX, c, n),
        )
        .await;
    }
}

fn redis_version() -> String {
    std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

#[tokio::main]
async fn main() {
    let (seconds, counts) = ostore_tests::load::seconds_and_connections(5);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let hello = guest("hello");
    let flow = guest("store-flow");
    let manifest = write_manifest(
        dir.path(),
        "bench",
        &[("/hello", "hello", &hello), ("/store/...", "flow", &flow)],
    );
    let data = dir.path().join("data");

    let mut cluster = RedisCluster::start(3, &RedisOptions::default());
    let masters = cluster.masters();
    let pid = |i: usize| cluster.nodes[i].pid().expect("a running redis-server");
    let master_pids: Vec<u32> = masters.iter().map(|&i| pid(i)).collect();
    let replica_pids: Vec<u32> = (0..cluster.nodes.len())
        .filter(|i| !masters.contains(i))
        .map(pid)
        .collect();
    let url = cluster.url();

    let mut scenarios = vec![(Backend::Redb, 1)];
    for durability in ["master", "replica"] {
        for hosts in 1..=3 {
            scenarios.push((Backend::Redis { durability }, hosts));
        }
    }

    println!(
        "ostore scale-out benchmark: {seconds} s per cell, 100-byte values, {} cores, \
         {} clock ticks/s, host = {}, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        clock_ticks(),
        ostore_tests::ostore_bin().display(),
        redis_version(),
    );
    println!(
        "Redis: 3 masters + 1 replica each, appendonly yes, appendfsync always. \
         CPU columns: user + system time per request, in µs."
    );
    println!(
        "| backend | hosts | workload | connections | requests/s | p50 | p99 | errors \
         | ostore CPU/req | redis CPU/req (masters + replicas) | load generator CPU/req \
         | machine busy | limit |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let mut cells = Vec::new();
    let mut redis_seeded = false;
    for (backend, hosts) in scenarios {
        let running = start_hosts(&manifest, &data, backend, &url, hosts);
        let seeded = match backend {
            Backend::Redb => false,
            Backend::Redis { .. } => std::mem::replace(&mut redis_seeded, true),
        };
        if !seeded {
            seed(&running[0]).await;
        }
        let addrs: Vec<SocketAddr> = running.iter().map(|h| h.addr()).collect();
        warm_up(&addrs).await;
        let pids = Pids {
            ostore: running.iter().map(OstoreProcess::pid).collect(),
            masters: match backend {
                Backend::Redb => Vec::new(),
                Backend::Redis { .. } => master_pids.clone(),
            },
            replicas: match backend {
                Backend::Redb => Vec::new(),
                Backend::Redis { .. } => replica_pids.clone(),
            },
        };
        for &connections in &counts {
            for workload in [Workload::Retrieve, Workload::Store] {
                let id = cells.len();
                let to = addrs.clone();
                let before = CpuSample::now(&pids);
                let figures = drive_round_robin(
                    &addrs,
                    connections,
                    Duration::from_secs(seconds),
                    move |conn, n| workload.request(to[conn % to.len()], id, conn, n),
                )
                .await;
                let cpu = CpuSample::now(&pids).since(before);
                let cell = Cell {
                    backend,
                    hosts,
                    workload,
                    connections,
                    figures,
                    cpu,
                };
                println!("{}", cell.row());
                cells.push(cell);
            }
        }
        for host in running {
            host.stop();
        }
    }

    // What N machines would serve, from the CPU per request: each ostore
    // core serves 1 / (its CPU per request); the cluster, with each master
    // on a core of its own and the slots spread evenly over the three,
    // 3 / (the masters' CPU per request). Fsync and network waits are not
    // CPU: these are ceilings, reached only with enough connections.
    println!(
        "\nCPU ceilings at {} connections (1 s / CPU per request):\n\
         | backend | hosts | workload | ostore req/s per core | cluster req/s (3 master cores) |\n\
         |---|---|---|---|---|",
        counts.iter().max().expect("a connection count")
    );
    let most = *counts.iter().max().expect("a connection count");
    for cell in cells.iter().filter(|c| c.connections == most) {
        let ostore = 1e6 / cell.per_request(cell.cpu.ostore).max(f64::MIN_POSITIVE);
        let cluster = match cell.backend {
            Backend::Redb => "-".to_string(),
            Backend::Redis { .. } => format!(
                "{:.0}",
                3e6 / cell.per_request(cell.cpu.masters).max(f64::MIN_POSITIVE)
            ),
        };
        println!(
            "| {} | {} | {} | {ostore:.0} | {cluster} |",
            cell.backend.name(),
            cell.hosts,
            cell.workload.name(),
        );
    }
    drop(cluster);
}

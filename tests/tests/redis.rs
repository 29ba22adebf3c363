//! The Redis backend against real `redis-server` processes: the backend
//! contract on a standalone server and on a cluster, clear errors for bad
//! configuration, and several hosts sharing one cluster with the semantics
//! of one host, with nothing plaintext in Redis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ostore::backend::{BackendConfig, RedisBackend, RedisConfig, RedisDurability, contract};
use ostore::clock::ManualClock;
use ostore::encryption::MasterKey;
use ostore::host::HostConfig;
use ostore::objectstore::{self, ObjectStore};
use ostore_tests::redis::{RedisCluster, RedisOptions, RedisServer, free_port_pair};
use ostore_tests::{Serves, Setup, TestHost, app};

fn config(url: &str) -> RedisConfig {
    url.parse().expect("a valid Redis URL")
}

async fn connect(url: &str) -> RedisBackend {
    RedisBackend::connect(&config(url))
        .await
        .expect("connecting to Redis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_server_keeps_the_backend_contract() {
    let server = RedisServer::start(&RedisOptions::default());
    contract::keeps_the_contract(Arc::new(connect(&server.url()).await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_keeps_the_backend_contract_with_shards_on_every_master() {
    let mut cluster = RedisCluster::start(3, &RedisOptions::default());
    contract::keeps_the_contract(Arc::new(connect(&cluster.url()).await)).await;
    // The contract's shards hash to slots on more than one master: the
    // batches and merged scans above crossed machines.
    let holding: Vec<usize> = cluster
        .masters()
        .into_iter()
        .filter(|&i| cluster.nodes[i].cli(&["DBSIZE"]).trim() != "0")
        .collect();
    assert!(holding.len() >= 2, "only masters {holding:?} hold keys");
}

/// The first line of what `connect` says, which must be all of it.
async fn refusal(url: &str) -> String {
    let e = RedisBackend::connect(&config(url))
        .await
        .expect_err("connecting should fail")
        .to_string();
    assert!(!e.contains('\n'), "not one line: {e}");
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_gets_one_clear_line() {
    // Nothing listens on a free port.
    let port = free_port_pair();
    let e = refusal(&format!("redis://127.0.0.1:{port}")).await;
    assert!(
        e.contains(&format!("cannot reach Redis at 127.0.0.1:{port}")),
        "{e}"
    );

    let guarded = RedisServer::start(&RedisOptions {
        password: Some("right horse".into()),
        ..RedisOptions::default()
    });
    let at = format!("127.0.0.1:{}", guarded.port);
    let e = refusal(&format!("redis://:wrong@{at}")).await;
    assert!(
        e.contains(&format!("Redis at {at} refused the credentials")),
        "{e}"
    );
    let e = refusal(&format!("redis://{at}")).await;
    assert!(
        e.contains(&format!("Redis at {at} refused the credentials")),
        "{e}"
    );
    connect(&format!("redis://:right%20horse@{at}")).await;

    let plain = RedisServer::start(&RedisOptions::default());
    let e = refusal(&format!("redis+cluster://127.0.0.1:{}", plain.port)).await;
    assert!(e.contains("is not a cluster"), "{e}");

    let node = RedisServer::start(&RedisOptions {
        cluster: true,
        ..RedisOptions::default()
    });
    let e = refusal(&node.url()).await;
    assert!(e.contains("is a cluster node"), "{e}");

    // Data sealed under one master key is refused under another.
    let backend: Arc<dyn ostore::backend::Backend> = Arc::new(connect(&plain.url()).await);
    let first = MasterKey::from_bytes([1; 32]);
    ObjectStore::open(backend.clone(), &first, objectstore::Config::default())
        .await
        .expect("a first open");
    let other = MasterKey::from_bytes([2; 32]);
    let e = ObjectStore::open(backend, &other, objectstore::Config::default())
        .await
        .err()
        .expect("another master key is refused");
    assert!(matches!(e, objectstore::Error::WrongMasterKey), "{e}");
}

/// Three hosts of `setup` (which names their backend).
async fn three_hosts(setup: &Setup) -> Vec<TestHost> {
    let mut hosts = Vec::new();
    for _ in 0..3 {
        hosts.push(setup.start().await);
    }
    hosts
}

fn on(url: &str) -> BackendConfig {
    BackendConfig::Redis(config(url))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_on_one_cluster_behave_as_one_and_leave_no_plaintext() {
    let cluster = RedisCluster::start(3, &RedisOptions::default());
    let setup = Setup::new()
        .app("shared-app", &[("/store/...", "flow", "store-flow")])
        .app("other-app", &[("/other/...", "flow", "store-flow")])
        .backend(on(&cluster.url()));
    let writer = setup.credential(app("shared-app"), &[]);
    let hosts = three_hosts(&setup).await;

    // The tutorial call made on host 1 is read on hosts 2 and 3.
    let r = hosts[0]
        .request(
            "POST",
            "/store",
            r#"{"key": "PlaintextKeyName", "value": "PlaintextValue"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    for host in &hosts[1..] {
        assert_eq!(
            host.get("/store/PlaintextKeyName").await.text(),
            "PlaintextValue"
        );
    }

    // 3 × 64 concurrent increments spread over the hosts: exactly 192, each
    // value seen once.
    let mut tasks = Vec::new();
    for i in 0..192 {
        let addr = hosts[i % 3].addr;
        tasks.push(tokio::spawn(async move {
            ostore_tests::request(addr, "POST", "/store/counter/increment", Default::default())
                .await
        }));
    }
    let mut seen = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        seen.push(r.text().parse::<i64>().expect("a count"));
    }
    seen.sort();
    assert_eq!(seen, (1..=192).collect::<Vec<_>>());
    for host in &hosts {
        assert_eq!(host.get("/store/counter").await.text(), "192");
    }

    // A compare-and-swap conflict across hosts is a conflict.
    let path = "/api/v1/organizations/default/environments/shared-app/stores\
                /_defaultUserObjectStore/partitions/ObjectStoreTutorial/keys/cas";
    let token = hosts[0].token(&writer).await;
    let put = |host: &TestHost, condition: (&'static str, &'static str), value: &str| {
        let body = format!(r#"{{"valueType":"STRING","stringValue":"{value}"}}"#);
        let auth = format!("Bearer {token}");
        let addr = host.addr;
        async move {
            ostore_tests::request_with(
                addr,
                "PUT",
                path,
                &[("authorization", auth.as_str()), condition],
                body.into(),
            )
            .await
        }
    };
    let r = put(&hosts[0], ("if-none-match", "*"), "v1").await;
    assert_eq!(
        (r.status, r.header("etag")),
        (200, Some("\"1\"")),
        "{}",
        r.text()
    );
    assert_eq!(
        put(&hosts[1], ("if-none-match", "*"), "again").await.status,
        412
    );
    assert_eq!(
        put(&hosts[1], ("if-match", "\"1\""), "v2").await.status,
        200
    );
    assert_eq!(
        put(&hosts[2], ("if-match", "\"1\""), "lost").await.status,
        412
    );

    // A key with a 2 s TTL disappears on all three hosts. (Each host has a
    // manual clock started when it was; they are a few seconds apart, as
    // real hosts' clocks are a few milliseconds apart: expiry is as exact
    // as the hosts' clocks agree.)
    let r = hosts[2]
        .request(
            "POST",
            "/store",
            r#"{"key": "brief", "value": "soon gone", "ttlSeconds": 2}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    for host in &hosts {
        assert_eq!(host.get("/store/brief").await.text(), "soon gone");
        host.advance(Duration::from_secs(30));
    }
    for host in &hosts {
        assert_eq!(host.get("/store/brief").await.status, 404);
    }

    // Another application sees none of it, through any host.
    for host in &hosts {
        assert_eq!(host.get("/other/PlaintextKeyName").await.status, 404);
        assert_eq!(host.get("/other/counter").await.status, 404);
        assert_eq!(host.get("/other").await.text(), "");
    }

    // Nothing plaintext in Redis: not in its append-only files (every
    // write, keys and values, as sent), nor in a fresh RDB snapshot.
    for node in &cluster.nodes {
        assert!(node.cli(&["SAVE"]).contains("OK"));
    }
    // Not a name, nor a prefix of one (the index of names keeps names and
    // separators, all sealed), down to six bytes.
    let prefixes = (6..16).map(|n| &b"PlaintextKeyName"[..n]);
    for needle in [
        &b"PlaintextKeyName"[..],
        b"PlaintextValue",
        b"shared-app",
        b"ObjectStoreTutorial",
        b"_defaultUserObjectStore",
        b"soon gone",
        b"counter",
    ]
    .into_iter()
    .chain(prefixes)
    {
        for node in &cluster.nodes {
            for (path, bytes) in node.files() {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{} holds {:?}",
                    path.display(),
                    String::from_utf8_lossy(needle)
                );
            }
        }
    }
    // The files were read: they hold the records, sealed.
    let aof_bytes: usize = cluster
        .nodes
        .iter()
        .flat_map(|n| n.files())
        .filter(|(p, _)| p.display().to_string().contains("appendonly"))
        .map(|(_, b)| b.len())
        .sum();
    assert!(
        aof_bytes > 10_000,
        "only {aof_bytes} bytes of append-only files"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_ostore_processes_share_a_cluster_and_survive_losing_one() {
    let cluster = RedisCluster::start(3, &RedisOptions::default());
    let setup = Setup::new().app("tutorial", &[("/store/...", "flow", "store-flow")]);
    let url = cluster.url();
    let args = ["--backend", url.as_str()];
    let mut hosts: Vec<_> = (0..3).map(|_| setup.start_process(&args)).collect();
    let r = hosts[0]
        .request(
            "POST",
            "/store",
            r#"{"key": "TestKey01", "value": "This is an object store test"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    for host in &hosts[1..] {
        let r = host.get("/store/TestKey01").await;
        assert_eq!(r.text(), "This is an object store test");
    }
    // Killing one host (SIGKILL) leaves the others serving with all data.
    hosts.remove(0).kill();
    for host in &hosts {
        assert_eq!(
            host.get("/store/TestKey01").await.text(),
            "This is an object store test"
        );
        let r = host.request("POST", "/store/counter/increment", "").await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(hosts[1].get("/store/counter").await.text(), "2");
}

/// What a failover cost the writers.
struct Failover {
    acknowledged: usize,
    failed: usize,
    /// From the first failed request to the last.
    failing_for: Duration,
    /// The longest a write took (those that waited out the failover).
    slowest: Duration,
    /// How long after the cluster was ok again every host served writes.
    recovered_in: Duration,
    lost: usize,
}

impl std::fmt::Display for Failover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} writes acknowledged, {} failed (for {:.1} s), slowest {:.1} s, \
             all hosts writing {:.1} s after the cluster was ok, {} lost",
            self.acknowledged,
            self.failed,
            self.failing_for.as_secs_f64(),
            self.slowest.as_secs_f64(),
            self.recovered_in.as_secs_f64(),
            self.lost
        )
    }
}

/// Three hosts under 64 concurrent writers; one Redis master is killed
/// (SIGKILL) a few seconds in. Every acknowledged write is then read back.
/// Each master has two replicas: with one, the replica promoted in the
/// failover has none left, and the replica durability rightly refuses
/// every later write of that master's shards (`writes failing: no
/// replica`) until a replica joins; this was why the test failed in some
/// runs (those whose killed master held the writers' shards).
async fn fail_over(durability: RedisDurability) -> Failover {
    let mut cluster = RedisCluster::start_with_replicas(3, 2, &RedisOptions::default());
    let mut redis = config(&cluster.url());
    redis.durability = durability;
    let setup = Setup::new()
        .app("writers", &[("/store/...", "flow", "store-flow")])
        .backend(BackendConfig::Redis(redis));
    let hosts = three_hosts(&setup).await;
    let addrs: Vec<_> = hosts.iter().map(|h| h.addr).collect();
    let started = Instant::now();
    let until = started + Duration::from_secs(14);
    let writers: Vec<_> = (0..64)
        .map(|w| {
            let addrs = addrs.clone();
            tokio::spawn(async move {
                let (mut acked, mut failures) = (Vec::new(), Vec::new());
                let mut slowest = Duration::ZERO;
                let mut n = 0;
                while Instant::now() < until {
                    let key = format!("w{w}-{n}");
                    let body = format!(r#"{{"key": "{key}", "value": "v{n}"}}"#);
                    let addr = addrs[(w + n) % 3];
                    let sent = Instant::now();
                    let r = ostore_tests::request(addr, "POST", "/store", body.into()).await;
                    slowest = slowest.max(sent.elapsed());
                    if r.status == 200 {
                        acked.push((key, format!("v{n}")));
                    } else {
                        failures.push(Instant::now());
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    n += 1;
                }
                (acked, failures, slowest)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let master = cluster.masters()[0];
    cluster.nodes[master].kill();
    let mut acknowledged = Vec::new();
    let mut failures = Vec::new();
    let mut slowest = Duration::ZERO;
    for w in writers {
        let (a, f, s) = w.await.unwrap();
        acknowledged.extend(a);
        failures.extend(f);
        slowest = slowest.max(s);
    }
    cluster.wait_until_ok(Duration::from_secs(30));
    // Every host serves writes again within 30 s of the cluster being ok
    // (a client notices the new master when a request to the old one
    // fails), and every acknowledged write is there, or counted as lost.
    let healed = Instant::now();
    for (i, host) in hosts.iter().enumerate() {
        loop {
            let body = format!(r#"{{"key": "after-{i}", "value": "ok"}}"#);
            let r = host.request("POST", "/store", body).await;
            if r.status == 200 {
                break;
            }
            assert!(
                healed.elapsed() < Duration::from_secs(30),
                "host {i} does not serve 30 s after the failover: {}",
                r.text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let recovered_in = healed.elapsed();
    let mut lost = 0;
    for (i, (key, value)) in acknowledged.iter().enumerate() {
        let r = hosts[i % 3].get(&format!("/store/{key}")).await;
        if r.status != 200 || r.text() != *value {
            lost += 1;
        }
    }
    failures.sort();
    Failover {
        acknowledged: acknowledged.len(),
        failed: failures.len(),
        failing_for: match (failures.first(), failures.last()) {
            (Some(a), Some(b)) => *b - *a,
            _ => Duration::ZERO,
        },
        slowest,
        recovered_in,
        lost,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_master_dies_the_hosts_recover_and_the_replica_mode_loses_nothing() {
    for durability in [RedisDurability::Replica, RedisDurability::Master] {
        let report = fail_over(durability).await;
        // The figures, for docs/BENCHMARKS.md; not asserted but for loss.
        println!("failover with durability {durability:?}: {report}");
        assert!(report.acknowledged > 100, "{report}");
        if durability == RedisDurability::Replica {
            assert_eq!(report.lost, 0, "{report}");
        }
    }
}

/// The REST path of `key` in partition `partition` of the application
/// `writers`.
fn writers_key(partition: &str, key: &str) -> String {
    format!(
        "/api/v1/organizations/default/environments/writers/stores\
         /_defaultUserObjectStore/partitions/{partition}/keys/{key}"
    )
}

/// Puts `value` at `key` of `partition` through `addr` with `token`; the
/// response.
async fn put_key(
    addr: std::net::SocketAddr,
    token: &str,
    partition: &str,
    key: &str,
    value: &str,
) -> ostore_tests::Response {
    let body = format!(r#"{{"valueType":"STRING","stringValue":"{value}"}}"#);
    let auth = format!("Bearer {token}");
    ostore_tests::request_with(
        addr,
        "PUT",
        &writers_key(partition, key),
        &[("authorization", auth.as_str())],
        body.into(),
    )
    .await
}

/// A refused write must say why, as a typed 503 a client retries on.
fn assert_typed_refusal(r: &ostore_tests::Response) {
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("writes failing: "), "{}", r.text());
}

/// Partitions spread over the cluster's masters (a partition is a shard,
/// a shard one hash slot): with 12, each of 3 masters holds some.
const PARTITIONS: usize = 12;

/// Two `ostore up` processes on a 3-master cluster (two replicas each),
/// under writers spread over 12 partitions, in the replica durability. One
/// master is killed (SIGKILL, by pid). While writes to its partitions fail,
/// each gets a typed 503 and `/readyz` says not ready, even though writes
/// to the other masters succeed meanwhile; whenever `/readyz` says ready,
/// every partition takes a write. Once the cluster has promoted a replica,
/// `/readyz` turns 200 by itself within 30 s (no client writes), writes
/// succeed on both hosts, and every acknowledged write is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_failover_keeps_readyz_unready_until_the_dead_masters_slots_take_writes() {
    // Redis's default node timeout (15 s): the failover outlasts the
    // client's own retries, so writes meeting the dead master fail.
    let options = RedisOptions {
        cluster_node_timeout: Some(15_000),
        ..RedisOptions::default()
    };
    let mut cluster = RedisCluster::start_with_replicas(3, 2, &options);
    let url = cluster.url();
    let setup = Setup::new()
        .app("writers", &[("/store/...", "flow", "store-flow")])
        .backend(on(&url));
    let credential = setup.credential(app("writers"), &[]);
    let args = ["--backend", url.as_str(), "--redis-durability", "replica"];
    let hosts: Vec<_> = (0..2).map(|_| setup.start_process(&args)).collect();
    let addrs: Vec<_> = hosts.iter().map(|h| h.addr).collect();
    let mut tokens = Vec::new();
    for host in &hosts {
        tokens.push(host.token(&credential).await);
    }
    let partitions: Vec<String> = (0..PARTITIONS).map(|p| format!("p{p}")).collect();
    for p in &partitions {
        let r = put_key(addrs[0], &tokens[0], p, "first", "v").await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    for host in &hosts {
        assert_eq!(host.get("/readyz").await.status, 200);
    }

    // Each master's key count before the writers, to tell below which
    // masters hold partitions: a write of a new key adds keys only there.
    let masters = cluster.masters();
    let keys = |i: usize| -> usize {
        cluster.nodes[i]
            .cli(&["DBSIZE"])
            .trim()
            .parse()
            .unwrap_or(0)
    };
    let before: Vec<usize> = masters.iter().map(|&i| keys(i)).collect();

    // Writers on both hosts, over every partition, until told to stop.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (addrs, tokens, partitions) = (addrs.clone(), tokens.clone(), partitions.clone());
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (h, p) = ((w + n) % 2, &partitions[(w * 5 + n) % PARTITIONS]);
                    let (key, value) = (format!("w{w}-{n}"), format!("v{n}"));
                    let r = put_key(addrs[h], &tokens[h], p, &key, &value).await;
                    if r.status == 200 {
                        acked.push((p.clone(), key, value));
                    } else {
                        assert_typed_refusal(&r);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    n += 1;
                }
                acked
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Kill the master that gained the fewest keys while still gaining some,
    // so one holding partitions (one holding none, as happens about once
    // in forty runs, would fail no write): the application's own shard
    // (its request-rate bucket, which every few requests draw on) is then
    // likely on another master, so that writes to the other masters'
    // partitions go on meanwhile.
    let gained: Vec<(usize, usize)> = masters
        .iter()
        .zip(&before)
        .map(|(&i, &b)| (i, keys(i).saturating_sub(b)))
        .collect();
    let (victim, _) = *gained
        .iter()
        .filter(|&&(_, g)| g >= 10)
        .min_by_key(|&&(_, g)| g)
        .unwrap_or_else(|| panic!("no master gained keys from the writers: {gained:?}"));
    let pid = cluster.nodes[victim].pid().expect("a running master");
    cluster.nodes[victim].kill();
    let killed = Instant::now();

    // Host 0, round after round: one write per partition, then /readyz.
    let mut acknowledged: Vec<(String, String, String)> = Vec::new();
    let mut failed: std::collections::BTreeSet<usize> = Default::default();
    let mut unready_while_failing = 0;
    let mut round = 0;
    loop {
        round += 1;
        let mut failed_now = false;
        // At once: a write meeting the dead master may wait for the
        // client's retries.
        let round_writes: Vec<_> = partitions
            .iter()
            .map(|p| {
                let (addr, token, p) = (addrs[0], tokens[0].clone(), p.clone());
                let key = format!("fg-{round}");
                tokio::spawn(async move { put_key(addr, &token, &p, &key, "fg").await })
            })
            .collect();
        for (i, w) in round_writes.into_iter().enumerate() {
            let r = w.await.expect("a write");
            if r.status == 200 {
                acknowledged.push((partitions[i].clone(), format!("fg-{round}"), "fg".into()));
            } else {
                assert_typed_refusal(&r);
                failed.insert(i);
                failed_now = true;
            }
        }
        // A write that succeeds elsewhere, after those that failed.
        let healthy = (0..PARTITIONS).find(|i| !failed.contains(i));
        if let Some(i) = healthy.filter(|_| failed_now) {
            let r = put_key(addrs[0], &tokens[0], &partitions[i], "healthy", "h").await;
            if r.status == 200 {
                acknowledged.push((partitions[i].clone(), "healthy".into(), "h".into()));
            }
        }
        let ready = hosts[0].get("/readyz").await;
        if ready.status == 200 {
            // Ready means writes work: every partition that failed takes
            // one now (before the per-slot health, a commit on a healthy
            // master made the host ready while the dead master's failed).
            for &i in &failed {
                let r = put_key(addrs[0], &tokens[0], &partitions[i], "ready", "r").await;
                assert_eq!(
                    r.status,
                    200,
                    "/readyz said ready while partition {i} fails (master pid {pid} killed \
                     {:.1} s ago, round {round}): {}",
                    killed.elapsed().as_secs_f64(),
                    r.text()
                );
                acknowledged.push((partitions[i].clone(), "ready".into(), "r".into()));
            }
            if !failed.is_empty() {
                break;
            }
        } else {
            assert_eq!(ready.status, 503, "{}", ready.text());
            assert!(
                ready.text().starts_with("not ready: writes failing: "),
                "{}",
                ready.text()
            );
            if failed_now {
                unready_while_failing += 1;
            }
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "host 0 not ready with working writes 60 s after the master died \
             (partitions failing: {failed:?}): {}",
            ready.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !failed.is_empty() && unready_while_failing > 0,
        "writes meeting the dead master must fail typed while /readyz says not ready"
    );

    // The cluster is ok again; the writers stop. Both hosts turn ready by
    // themselves (their probes), within 30 s, and then take writes.
    cluster.wait_until_ok(Duration::from_secs(30));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        acknowledged.extend(w.await.expect("a writer"));
    }
    let ok = Instant::now();
    for (h, host) in hosts.iter().enumerate() {
        loop {
            let ready = host.get("/readyz").await;
            if ready.status == 200 {
                break;
            }
            assert!(
                ok.elapsed() < Duration::from_secs(30),
                "host {h} not ready 30 s after the cluster was ok: {}",
                ready.text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for p in &partitions {
            let r = put_key(addrs[h], &tokens[h], p, "after", "a").await;
            assert_eq!(r.status, 200, "host {h}, partition {p}: {}", r.text());
            acknowledged.push((p.clone(), "after".into(), "a".into()));
        }
    }
    println!(
        "master {victim} killed (keys gained by master: {gained:?}); {} of {PARTITIONS} partitions \
         failed on host 0; ready 200 on both hosts {:.1} s after the cluster was ok ({:.1} s after \
         the kill); {} acknowledged writes",
        failed.len(),
        ok.elapsed().as_secs_f64(),
        killed.elapsed().as_secs_f64(),
        acknowledged.len()
    );

    // Nothing acknowledged is lost (the last write of a key wins: the
    // foreground keys repeat per round only with the same value).
    let mut lost = Vec::new();
    for (i, (p, key, value)) in acknowledged.iter().enumerate() {
        let h = i % 2;
        let r = ostore_tests::request_with(
            addrs[h],
            "GET",
            &writers_key(p, key),
            &[("authorization", &format!("Bearer {}", tokens[h]))],
            Default::default(),
        )
        .await;
        let got = if r.status == 200 {
            r.json::<serde_json::Value>()["stringValue"].clone()
        } else {
            serde_json::Value::Null
        };
        if got != serde_json::Value::String(value.clone()) {
            lost.push(format!("{p}/{key}: {} {}", r.status, r.text()));
        }
    }
    assert!(lost.is_empty(), "{} lost: {lost:?}", lost.len());
}

/// Three hosts of `setup` sharing one manual clock (their clocks agree
/// exactly), after `edit`.
async fn three_hosts_at(
    setup: &Setup,
    clock: &Arc<ManualClock>,
    edit: impl Fn(&mut HostConfig),
) -> Vec<TestHost> {
    let mut hosts = Vec::new();
    for _ in 0..3 {
        let clock = clock.clone();
        hosts.push(
            setup
                .start_with(|c| {
                    c.clock = clock;
                    edit(c);
                })
                .await,
        );
    }
    hosts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_rate_and_a_key_quota_hold_for_three_hosts_together() {
    let cluster = RedisCluster::start(3, &RedisOptions::default());
    let setup = Setup::new()
        .app("limited", &[("/store/...", "flow", "store-flow")])
        .app("quota", &[("/quota/...", "flow", "store-flow")])
        .backend(on(&cluster.url()));
    let clock = Arc::new(ManualClock::starting_now());
    let hosts = three_hosts_at(&setup, &clock, |c| {
        c.limits.requests_per_second = Some(20);
    })
    .await;
    // A flood on all three at once, while 4.5 s pass: at most 20 + 20 · 4.5
    // requests are served by the three together.
    let mut served = 0;
    let mut limited = 0;
    for step in 0..10 {
        if step > 0 {
            clock.advance(Duration::from_millis(500));
        }
        let mut flood = Vec::new();
        for i in 0..60 {
            let addr = hosts[i % 3].addr;
            flood.push(tokio::spawn(async move {
                ostore_tests::request(addr, "GET", "/store/absent", Default::default()).await
            }));
        }
        for r in flood {
            match r.await.unwrap().status {
                404 => served += 1,
                429 => limited += 1,
                other => panic!("unexpected status {other}"),
            }
        }
    }
    println!("rate 20/s over 4.5 s on 3 hosts: {served} served, {limited} limited");
    assert!(served <= 20 + 90, "{served} served over 4.5 s at 20/s");
    assert!(
        served >= 40,
        "only {served} served: the limit refuses too much"
    );
    assert!(limited > 0);
    drop(hosts);

    // A quota of 50 keys, 3 × 40 concurrent writers: the overshoot stays
    // within the documented bound, (hosts - 1) · max(50/16, writes in
    // flight on one host) = 80, and once the hosts have exchanged their
    // counts (every second) every host refuses a new key.
    let hosts = three_hosts_at(&setup, &clock, |c| {
        c.limits.max_keys = Some(50);
    })
    .await;
    let mut writes = Vec::new();
    for i in 0..120 {
        let addr = hosts[i % 3].addr;
        writes.push(tokio::spawn(async move {
            let body = format!(r#"{{"key": "k{i}", "value": "v"}}"#);
            ostore_tests::request(addr, "POST", "/quota", body.into()).await
        }));
    }
    let mut stored = 0;
    for w in writes {
        let r = w.await.unwrap();
        match r.status {
            200 => stored += 1,
            429 => assert!(r.text().contains("quota"), "{}", r.text()),
            other => panic!("unexpected status {other}: {}", r.text()),
        }
    }
    println!("quota 50 keys, 120 concurrent writes on 3 hosts: {stored} stored");
    assert!((50..=50 + 80).contains(&stored), "{stored} keys stored");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for (i, host) in hosts.iter().enumerate() {
        let body = format!(r#"{{"key": "late-{i}", "value": "v"}}"#);
        let r = host.request("POST", "/quota", body).await;
        assert_eq!(
            r.status,
            429,
            "host {i} stored past the quota: {}",
            r.text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_made_on_one_host_works_on_all_and_deleted_on_another_stops_on_all() {
    let server = RedisServer::start(&RedisOptions::default());
    let setup = Setup::new()
        .app("tutorial", &[("/store/...", "flow", "store-flow")])
        .backend(on(&server.url()));
    let hosts = three_hosts(&setup).await;
    // Made as `ostore credentials create --backend redis://...` makes it,
    // with the hosts running.
    let credential = setup.credential(app("tutorial"), &[]);
    let token = hosts[2].token(&credential).await;
    let stores = "/api/v1/organizations/default/environments/tutorial/stores";
    for host in &hosts {
        assert_eq!(
            host.call(&token, "GET", stores, String::new()).await.status,
            200
        );
    }
    let url = server.url();
    let deleted = ostore_tests::run_ostore(
        &[
            "credentials",
            "delete",
            &credential.id,
            "--backend",
            &url,
            "--data-dir",
            &setup.data.display().to_string(),
        ],
        &[],
    );
    assert!(deleted.success, "{}", deleted.stderr);
    for host in &hosts {
        let r = host.call(&token, "GET", stores, String::new()).await;
        assert_eq!(r.status, 401, "{}", r.text());
    }
}

/// Deleting a store touches a shard per partition, spread over the
/// cluster's masters: a host whose commits stop half-way leaves no trace of
/// the store visible, and another host's sweep finishes the deletion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_deletion_cut_off_half_way_on_a_cluster_is_finished_by_another_host() {
    use ostore::backend::fault::{Faults, FaultyBackend, Stage};
    use ostore::backend::{Backend, Shards, StorageFault};

    let cluster = RedisCluster::start(3, &RedisOptions::default());
    let redis: Arc<dyn Backend> = Arc::new(connect(&cluster.url()).await);
    let master = MasterKey::generate();
    let open = |backend: Arc<dyn Backend>| {
        let master = &master;
        async move {
            ObjectStore::open(backend, master, objectstore::Config::default())
                .await
                .unwrap()
        }
    };
    let records = |kind: &'static [u8]| {
        let redis = redis.clone();
        async move {
            redis
                .scan(Shards::ALL, kind, None, 10_000)
                .await
                .unwrap()
                .len()
        }
    };

    let host0 = open(redis.clone()).await;
    let store = host0
        .application("app")
        .await
        .unwrap()
        .store("S")
        .await
        .unwrap();
    for p in 0..6 {
        let partition = store.partition(&format!("P{p}")).await.unwrap();
        for k in 0..5 {
            partition
                .store(&format!("k{k}"), b"v".to_vec(), Default::default())
                .await
                .unwrap();
        }
    }
    assert_eq!(records(b"e").await, 30);

    // Host 1 commits the tombstone and two partitions' deletions, then its
    // commits fail.
    let faults = Faults::new();
    let host1 = open(Arc::new(FaultyBackend::new(
        redis.clone(),
        faults.clone(),
        Stage::BeforeCommit,
    )))
    .await;
    let app1 = host1.application("app").await.unwrap();
    faults.fail_after(3, StorageFault::Unreachable);
    assert!(app1.delete_store("S").await.is_err());
    let left = records(b"e").await;
    assert!(0 < left && left < 30, "{left} of 30 keys left");

    // Through any host, the store is gone.
    let host2 = open(redis.clone()).await;
    let app2 = host2.application("app").await.unwrap();
    assert!(app2.find_store("S").await.unwrap().is_none());
    let names: Vec<String> = app2
        .list_stores(None, 100)
        .await
        .unwrap()
        .items
        .iter()
        .map(|s| s.name().to_string())
        .collect();
    assert!(!names.contains(&"S".to_string()), "{names:?}");

    // Host 2's sweep finishes the job on every master.
    assert_eq!(host2.finish_deletions().await.unwrap(), 1);
    for kind in [&b"e"[..], b"y", b"x", b"p", b"t"] {
        assert_eq!(records(kind).await, 0, "records {:?} left", kind[0] as char);
    }
}

/// Posts stores of `key` until one is acknowledged (at most `patience`),
/// as a client retrying on 503 does; the last refusal on failure.
async fn store_until_acknowledged(host: &TestHost, key: &str, patience: Duration) {
    let deadline = Instant::now() + patience;
    loop {
        let body = format!(r#"{{"key": "{key}", "value": "kept"}}"#);
        let r = host.request("POST", "/store", body).await;
        if r.status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "writes did not recover within {patience:?}: {} {}",
            r.status,
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many times the hosts of this process logged `line`.
fn logged(line: &str) -> usize {
    ostore_tests::host_log().matches(line).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_out_of_memory_fails_writes_clearly_and_they_recover_once_memory_is_raised() {
    let server = RedisServer::start(&RedisOptions::default());
    let setup = Setup::new()
        .app("tutorial", &[("/store/...", "flow", "store-flow")])
        .backend(on(&server.url()));
    let host = setup.start().await;
    store_until_acknowledged(&host, "before", Duration::ZERO).await;
    assert_eq!(host.get("/readyz").await.status, 200);

    // Any write that grows memory is refused from now on.
    assert!(
        server
            .cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"])
            .contains("OK")
    );
    assert!(
        server
            .cli(&["CONFIG", "SET", "maxmemory", "1"])
            .contains("OK")
    );
    let logged_before = logged("writes failing: out of memory (");
    for i in 0..3 {
        let body = format!(r#"{{"key": "refused-{i}", "value": "v"}}"#);
        let r = host.request("POST", "/store", body).await;
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(
            r.text().contains("writes failing: out of memory"),
            "{}",
            r.text()
        );
        assert!(r.text().contains("OOM"), "{}", r.text());
    }
    let ready = host.get("/readyz").await;
    assert_eq!(
        (ready.status, ready.text().trim()),
        (503, "not ready: writes failing: out of memory")
    );
    // Reads keep working, and three failed writes are one log line; the
    // request counts the stats flusher cannot save meanwhile (it tries
    // every second) add no warning of their own.
    assert_eq!(host.get("/store/before").await.text(), "kept");
    let warned = || {
        ostore_tests::host_log()
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("flushing request counts failed"))
            .count()
    };
    let warned_before = warned();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(logged("writes failing: out of memory (") - logged_before, 1);
    assert_eq!(warned() - warned_before, 0, "{}", ostore_tests::host_log());

    assert!(
        server
            .cli(&["CONFIG", "SET", "maxmemory", "0"])
            .contains("OK")
    );
    store_until_acknowledged(&host, "after", Duration::from_secs(10)).await;
    assert_eq!(host.get("/readyz").await.status, 200);
    assert_eq!(host.get("/store/after").await.text(), "kept");
    assert!(logged("writes recovered (they were failing: out of memory)") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_redis_server_makes_the_host_unready_until_it_is_back() {
    let mut server = RedisServer::start(&RedisOptions::default());
    let setup = Setup::new()
        .app("tutorial", &[("/store/...", "flow", "store-flow")])
        .backend(on(&server.url()));
    let host = setup.start().await;
    store_until_acknowledged(&host, "before", Duration::ZERO).await;

    server.kill();
    let r = host
        .request("POST", "/store", r#"{"key": "refused", "value": "v"}"#)
        .await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text().contains("writes failing: unreachable"),
        "{}",
        r.text()
    );
    let ready = host.get("/readyz").await;
    assert_eq!(
        (ready.status, ready.text().trim()),
        (503, "not ready: writes failing: unreachable")
    );
    assert_eq!(host.get("/healthz").await.status, 200);

    // Back on the same port, from its append-only file: the host turns
    // ready by itself (its probe), and keeps every acknowledged write.
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = host.get("/readyz").await;
        if ready.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready 30 s after Redis came back: {}",
            ready.text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    store_until_acknowledged(&host, "after", Duration::from_secs(10)).await;
    assert_eq!(host.get("/store/before").await.text(), "kept");
    assert_eq!(host.get("/store/after").await.text(), "kept");
}

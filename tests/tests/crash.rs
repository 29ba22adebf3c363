//! kill -9 under load: a real `ostore up` process takes durable writes
//! from 32 concurrent clients over HTTP, is killed with SIGKILL at a
//! random (seeded) moment, and is started again on the same data (the
//! same redb file, or the same Redis). Every write it acknowledged must be
//! there with its value, and every counter at least at the highest value
//! an increment acknowledged, after every cycle. Before each restart,
//! `ostore check` must find the data whole: in particular every
//! partition's kept counts of keys and bytes equal to a recount.
//!
//! The writers use the tutorial application's routes: `POST /store`
//! (a store, acknowledged once durable) and `POST /store/<key>/increment`.
//!
//! On redb, a lone writer's groups are made durable by the backend's
//! journal rather than by redb's own commit, and a start after a kill
//! applies what the journal holds: a third test kills a host under one
//! writer, where the journal almost always holds groups at the kill, and
//! asserts that some cycle had groups to apply.
//!
//! CI runs 5 cycles per backend (3 for the lone writer). A longer soak:
//!
//! ```text
//! OSTORE_CRASH_CYCLES=50 OSTORE_CRASH_SEED=7 \
//!     cargo test --release -p ostore-tests --test crash -- --nocapture
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use ostore_tests::redis::{RedisOptions, RedisServer};
use ostore_tests::{Serves, Setup, run_ostore, try_request_with};

/// Concurrent writers, each with its own connection per request.
const WRITERS: usize = 32;
/// Counters the writers increment, shared between them, so that
/// increments of one counter race.
const COUNTERS: usize = 4;
/// One operation in this many is an increment; the others store a key.
const INCREMENT_EVERY: usize = 4;
/// Cycles in CI, unless `OSTORE_CRASH_CYCLES` says otherwise.
const CYCLES: usize = 5;
/// The kill comes this long after the writers start, plus up to
/// `KILL_SPREAD` more, as the seed decides.
const KILL_AFTER: Duration = Duration::from_millis(500);
const KILL_SPREAD_MS: u64 = 2_500;
/// A writer stops after this many operations even if the host is still up
/// (it is not: the kill comes much sooner), so that no loop is unbounded.
const MAX_OPS_PER_WRITER: usize = 100_000;

/// SplitMix64: small and seedable, so a failing run can be replayed with
/// `OSTORE_CRASH_SEED`.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

/// What the writers were told, over every cycle so far.
#[derive(Default)]
struct Ledger {
    /// Keys whose store was acknowledged, with the value stored. Each key
    /// is written once, so this is exactly what it must hold.
    stored: Vec<(String, String)>,
    /// Per counter, the highest value an acknowledged increment returned:
    /// the counter may never be found below it.
    highest: [i64; COUNTERS],
    /// Per counter, the increments sent (acknowledged or not): the counter
    /// may never be found above it.
    attempted: [i64; COUNTERS],
    acknowledged_increments: usize,
}

/// What one writer saw before the host died.
#[derive(Default)]
struct WriterReport {
    stored: Vec<(String, String)>,
    highest: [i64; COUNTERS],
    attempted: [i64; COUNTERS],
    acknowledged_increments: usize,
    /// Answers other than 200 from a live host: there should be none.
    unexpected: Vec<String>,
}

async fn post(
    addr: SocketAddr,
    path: &str,
    body: String,
) -> Result<ostore_tests::Response, String> {
    try_request_with(addr, "POST", path, &[], body.into()).await
}

/// Writes until the host stops answering (it was killed).
async fn writer(addr: SocketAddr, cycle: usize, w: usize) -> WriterReport {
    let mut report = WriterReport::default();
    for n in 0..MAX_OPS_PER_WRITER {
        if n % INCREMENT_EVERY == INCREMENT_EVERY - 1 {
            let c = (w + n) % COUNTERS;
            report.attempted[c] += 1;
            match post(
                addr,
                &format!("/store/counter-{c}/increment"),
                String::new(),
            )
            .await
            {
                Ok(r) if r.status == 200 => {
                    let value: i64 = r.text().trim().parse().unwrap_or_else(|_| {
                        panic!("increment answered 200 without a count: {}", r.text())
                    });
                    report.highest[c] = report.highest[c].max(value);
                    report.acknowledged_increments += 1;
                }
                Ok(r) => report
                    .unexpected
                    .push(format!("increment: {} {}", r.status, r.text())),
                Err(_) => return report,
            }
        } else {
            let key = format!("c{cycle}-w{w}-{n}");
            let value = format!("value of {key}");
            let body = format!(r#"{{"key": "{key}", "value": "{value}"}}"#);
            match post(addr, "/store", body).await {
                Ok(r) if r.status == 200 => report.stored.push((key, value)),
                Ok(r) => report
                    .unexpected
                    .push(format!("store {key}: {} {}", r.status, r.text())),
                Err(_) => return report,
            }
        }
    }
    report
}

/// Checks that the host at `addr` holds every acknowledged store in
/// `stored`, and every counter within its bounds; returns what was wrong.
async fn missing(addr: SocketAddr, stored: &[(String, String)], ledger: &Ledger) -> Vec<String> {
    let chunks: Vec<Vec<(String, String)>> = stored
        .chunks(stored.len().div_ceil(WRITERS).max(1))
        .map(<[_]>::to_vec)
        .collect();
    let checks: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            tokio::spawn(async move {
                let mut wrong = Vec::new();
                for (key, value) in chunk {
                    let r = try_request_with(
                        addr,
                        "GET",
                        &format!("/store/{key}"),
                        &[],
                        Default::default(),
                    )
                    .await
                    .expect("the restarted host answers");
                    if r.status != 200 || r.text() != value {
                        wrong.push(format!("{key}: {} {:?}", r.status, r.text()));
                    }
                }
                wrong
            })
        })
        .collect();
    let mut wrong = Vec::new();
    for check in checks {
        wrong.extend(check.await.expect("a checking task"));
    }
    for c in 0..COUNTERS {
        let r = try_request_with(
            addr,
            "GET",
            &format!("/store/counter-{c}"),
            &[],
            Default::default(),
        )
        .await
        .expect("the restarted host answers");
        let value = match r.status {
            200 => r.text().trim().parse::<i64>().unwrap_or(i64::MIN),
            404 => 0,
            other => {
                wrong.push(format!("counter-{c}: {other} {}", r.text()));
                continue;
            }
        };
        if value < ledger.highest[c] || value > ledger.attempted[c] {
            wrong.push(format!(
                "counter-{c} is {value}: acknowledged up to {}, {} increments sent",
                ledger.highest[c], ledger.attempted[c]
            ));
        }
    }
    wrong
}

/// Runs the cycles against hosts started with `args` on `setup`'s data,
/// under `writers` concurrent writers; `label` names the backend in the
/// figures. Returns in how many cycles the check after the kill applied
/// groups from redb's journal.
async fn kill_cycles(
    setup: &Setup,
    args: &[&str],
    label: &str,
    seed: u64,
    writers: usize,
    cycles: usize,
) -> usize {
    let cycles: usize = env_or("OSTORE_CRASH_CYCLES", cycles);
    let mut replayed = 0;
    let mut rng = seed;
    let mut ledger = Ledger::default();
    let mut host = setup.start_process(args);
    for cycle in 0..cycles {
        let addr = host.addr();
        let writers: Vec<_> = (0..writers)
            .map(|w| tokio::spawn(writer(addr, cycle, w)))
            .collect();
        let delay = KILL_AFTER + Duration::from_millis(next(&mut rng) % KILL_SPREAD_MS);
        tokio::time::sleep(delay).await;
        host.kill();
        let mut this_cycle = Vec::new();
        let mut increments = 0;
        let mut unexpected = Vec::new();
        for w in writers {
            let report = w.await.expect("a writer task");
            this_cycle.extend(report.stored);
            increments += report.acknowledged_increments;
            unexpected.extend(report.unexpected);
            for c in 0..COUNTERS {
                ledger.highest[c] = ledger.highest[c].max(report.highest[c]);
                ledger.attempted[c] += report.attempted[c];
            }
        }
        assert!(
            unexpected.is_empty(),
            "{label}, cycle {cycle}: the live host refused {} writes, first: {}",
            unexpected.len(),
            unexpected[0]
        );
        ledger.acknowledged_increments += increments;
        println!(
            "{label} cycle {cycle}: killed after {} ms; {} stores and {increments} increments \
             acknowledged",
            delay.as_millis(),
            this_cycle.len()
        );
        if check_whole(setup, args, &format!("{label}, cycle {cycle}")) {
            replayed += 1;
        }
        host = setup.start_process(args);
        let wrong = missing(host.addr(), &this_cycle, &ledger).await;
        assert!(
            wrong.is_empty(),
            "{label}, cycle {cycle} (seed {seed}): {} acknowledged writes lost or wrong \
             after kill -9, first: {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        );
        ledger.stored.extend(this_cycle);
    }
    // Earlier cycles' writes survived every later kill too.
    let wrong = missing(host.addr(), &ledger.stored, &ledger).await;
    assert!(
        wrong.is_empty(),
        "{label} (seed {seed}): {} acknowledged writes lost or wrong after {cycles} kills, \
         first: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    host.stop();
    println!(
        "{label}: {cycles} kill -9 cycles under {writers} writers (seed {seed}): {} stores and \
         {} increments acknowledged, 0 lost; increments sent per counter {:?}, highest \
         acknowledged {:?}; {replayed} checks applied groups from the journal",
        ledger.stored.len(),
        ledger.acknowledged_increments,
        ledger.attempted,
        ledger.highest
    );
    assert!(
        !ledger.stored.is_empty() && ledger.acknowledged_increments > 0,
        "{label}: no write was acknowledged before the kills; the test proved nothing"
    );
    replayed
}

/// Runs `ostore check` on the data of a killed host: it must find no
/// damage, and so every partition's kept counts equal to a recount.
/// Returns whether it applied groups from redb's journal first (as any
/// start after a crash does).
fn check_whole(setup: &Setup, args: &[&str], when: &str) -> bool {
    let data = setup.data_path().display().to_string();
    let mut check = vec!["check", "--data-dir", data.as_str()];
    check.extend(args);
    let run = run_ostore(&check, &[]);
    assert!(
        run.success && run.stdout.contains("0 problems"),
        "{when}: ostore check after kill -9:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    run.stderr.contains("groups of writes from the journal")
}

fn seed(backend: u64) -> u64 {
    env_or("OSTORE_CRASH_SEED", 0x5eed_c4a5_u64) ^ backend
}

fn tutorial() -> Setup {
    Setup::new().app("tutorial", &[("/store/...", "flow", "store-flow")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_kill_9_on_redb() {
    let setup = tutorial();
    kill_cycles(&setup, &[], "redb", seed(1), WRITERS, CYCLES).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_writers_acknowledged_writes_survive_kill_9_through_redbs_journal() {
    let setup = tutorial();
    let replayed = kill_cycles(&setup, &[], "redb, one writer", seed(3), 1, 3).await;
    assert!(
        replayed > 0,
        "no kill left groups in the journal to apply: the test proved nothing of it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_kill_9_on_redis() {
    // The server fsyncs every write (appendfsync always); only the ostore
    // process is killed, and it is started again on the same server.
    let server = RedisServer::start(&RedisOptions::default());
    let setup = tutorial();
    let url = server.url();
    kill_cycles(
        &setup,
        &["--backend", url.as_str()],
        "redis",
        seed(2),
        WRITERS,
        CYCLES,
    )
    .await;
}

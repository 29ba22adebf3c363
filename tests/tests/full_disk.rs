//! A real full disk: `ostore up` (redb) with its data directory on a 16 MiB
//! tmpfs of its own, mounted in an unprivileged user and mount namespace
//! (`unshare -rm`), so that the test needs no root and the filesystem goes
//! away with the process.
//!
//! The tutorial application's `POST /store` fills it until a store is
//! refused with 503 `writes failing: disk full`. Then deletes through the
//! API must succeed: redb writes even a delete copy-on-write, and on a disk
//! filled by the database alone only the reserve the backend keeps beside
//! the file (`ostore.redb.reserve`) gives them room. Once the deletes have
//! freed enough, stores must resume by themselves, and every acknowledged
//! key not deleted must still read with its value.
//!
//! A second test fills the disk with a file of its own beside the data,
//! and removes that file (through `/proc/<pid>/root`, the process's view of
//! its mounts) once stores are refused: writes, and `/readyz`, must recover
//! by themselves, without a client write.
//!
//! If `unshare` or the mount fails here, the test fails saying so: it is
//! never skipped.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ostore_tests::{OstoreProcess, Response, Serves, Setup};

/// The filesystem's size: room for the 4 MiB reserve and some 12 MiB of
/// records.
const TMPFS_SIZE: &str = "16m";
/// Each store's value: large enough that the disk fills in a few hundred
/// requests, small enough that the last one leaves little unused.
const VALUE_BYTES: usize = 32 << 10;
/// More stores than 16 MiB can hold: the fill must meet a full disk first.
const MAX_STORES: usize = 1_000;
/// How long stores may take to resume after the deletes (the writer looks
/// at the disk once a second, and compacts the file once).
const RESUME_WITHIN: Duration = Duration::from_secs(60);

/// The `sh -c` script that mounts a tmpfs on `dir`, runs `then` (more
/// shell, ending in `&&`), and runs the rest of its arguments (the ostore
/// binary and its flags) in its place.
fn mount_script(dir: &Path, then: &str) -> String {
    format!(
        "mount -t tmpfs -o size={TMPFS_SIZE},mode=0700 tmpfs '{}' && {then} exec \"$0\" \"$@\"",
        dir.display()
    )
}

/// `ostore up` serving the tutorial application of `setup`, its data
/// directory a fresh tmpfs on which `then` ran first.
fn start_on_tmpfs(setup: &Setup, then: &str) -> OstoreProcess {
    std::fs::create_dir_all(&setup.data).unwrap();
    assert_unshare_works(&setup.data);
    let args = setup.up_args(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let script = mount_script(&setup.data, then);
    OstoreProcess::start_under(&["unshare", "-rm", "sh", "-c", &script], &args, &[])
}

/// Stores keys `k0000`, `k0001`, ... until one is refused, which must be
/// for a full disk; returns the keys acknowledged.
async fn fill(host: &OstoreProcess) -> Vec<String> {
    let mut stored: Vec<String> = Vec::new();
    let refusal = loop {
        assert!(
            stored.len() < MAX_STORES,
            "{MAX_STORES} stores of {VALUE_BYTES} bytes fit on a {TMPFS_SIZE} tmpfs"
        );
        let key = format!("k{:04}", stored.len());
        let r = store(host, &key).await;
        if r.status != 200 {
            break r;
        }
        stored.push(key);
    };
    assert!(
        is_disk_full(&refusal),
        "after {} stores: {} {}",
        stored.len(),
        refusal.status,
        refusal.text()
    );
    stored
}

/// Fails unless every key of `keys` reads with its value.
async fn assert_all_read(host: &OstoreProcess, keys: &[String]) {
    let mut wrong = Vec::new();
    for key in keys {
        let r = host.get(&format!("/store/{key}")).await;
        if r.status != 200 || r.text() != value_of(key) {
            wrong.push(format!("{key}: {}", r.status));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} acknowledged keys lost or wrong, first: {:?}",
        wrong.len(),
        keys.len(),
        &wrong[..wrong.len().min(5)]
    );
}

/// Fails unless the host logged writes failing once and recovering once.
fn assert_one_log_line_each_way(host: &OstoreProcess) {
    let log = host.stderr();
    let lines = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    let (failing, recovered) = (
        lines("writes failing: disk full"),
        lines("writes recovered"),
    );
    assert_eq!((failing, recovered), (1, 1), "{log}");
}

/// Fails, with what `unshare` said, unless this machine lets an
/// unprivileged user mount a tmpfs in namespaces of its own.
fn assert_unshare_works(dir: &Path) {
    let out = Command::new("unshare")
        .args(["-rm", "sh", "-c", &mount_script(dir, ""), "true"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run unshare (util-linux) for the tmpfs: {e}"));
    assert!(
        out.status.success(),
        "this test needs `unshare -rm` (unprivileged user and mount namespaces) to mount a \
         tmpfs; it failed with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn value_of(key: &str) -> String {
    let mut value = format!("{key}:");
    value.extend(std::iter::repeat_n('v', VALUE_BYTES - value.len()));
    value
}

async fn store(host: &OstoreProcess, key: &str) -> Response {
    let body = format!(r#"{{"key": "{key}", "value": "{}"}}"#, value_of(key));
    host.request("POST", "/store", body).await
}

fn is_disk_full(r: &Response) -> bool {
    r.status == 503 && r.text().contains("writes failing: disk full")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_free_a_disk_filled_by_stores_and_stores_resume_by_themselves() {
    let setup = Setup::new().app("tutorial", &[("/store/...", "flow", "store-flow")]);
    let host = start_on_tmpfs(&setup, "");
    let stored = fill(&host).await;
    let ready = host.get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert!(
        ready.text().contains("writes failing: disk full"),
        "{}",
        ready.text()
    );
    assert_eq!(host.get("/healthz").await.status, 200);
    // Reads keep working.
    let first = host.get(&format!("/store/{}", stored[0])).await;
    assert_eq!(first.status, 200, "{}", first.text());
    // The disk stays full: a store is still refused, and so is the probe.
    assert!(is_disk_full(&store(&host, "still-full").await));
    assert_eq!(host.get("/readyz").await.status, 503);

    // Delete the older half through the API: every delete must succeed.
    let (deleted, kept) = stored.split_at(stored.len() / 2);
    let mut refused = Vec::new();
    for key in deleted {
        let r = host.request("DELETE", &format!("/store/{key}"), "").await;
        if r.status != 200 {
            refused.push(format!("{key}: {} {}", r.status, r.text()));
        }
    }
    assert!(
        refused.is_empty(),
        "{} of {} deletes refused on the full disk, first: {}",
        refused.len(),
        deleted.len(),
        refused[0]
    );

    // Stores resume by themselves (no restart, nothing freed outside).
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < RESUME_WITHIN {
        let r = store(&host, "after-deletes").await;
        if r.status == 200 {
            last = None;
            break;
        }
        assert!(is_disk_full(&r), "{} {}", r.status, r.text());
        last = Some(r);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Some(r) = last {
        panic!(
            "stores did not resume within {RESUME_WITHIN:?} of deleting {} of {} keys: {} {}",
            deleted.len(),
            stored.len(),
            r.status,
            r.text()
        );
    }
    println!(
        "{} stores of {VALUE_BYTES} bytes filled the {TMPFS_SIZE} tmpfs; {} deletes \
         succeeded; stores resumed {:.1} s after the last delete",
        stored.len(),
        deleted.len(),
        start.elapsed().as_secs_f64()
    );
    let ready = host.get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    for i in 0..10 {
        let r = store(&host, &format!("again{i}")).await;
        assert_eq!(r.status, 200, "store {i} after the recovery: {}", r.text());
    }

    // Nothing acknowledged and not deleted is lost.
    let mut acknowledged = kept.to_vec();
    acknowledged.push("after-deletes".into());
    acknowledged.extend((0..10).map(|i| format!("again{i}")));
    assert_all_read(&host, &acknowledged).await;
    for key in deleted {
        let r = host.get(&format!("/store/{key}")).await;
        assert_eq!(r.status, 404, "{key}");
    }

    // One log line when writes started failing, one when they recovered;
    // between them the reserve was released and the file compacted, which
    // is what gave the deleted space back to the disk.
    assert_one_log_line_each_way(&host);
    let log = host.stderr();
    assert!(log.contains("released the 4MiB reserve"), "{log}");
    assert!(log.contains("compacted the database file"), "{log}");
    host.kill();
}

/// What the second test puts beside the data: with the reserve released,
/// removing it leaves room for the reserve and as much again.
const FILLER_BYTES: u64 = 6 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn space_freed_outside_ostore_brings_writes_and_readiness_back_by_themselves() {
    let setup = Setup::new().app("tutorial", &[("/store/...", "flow", "store-flow")]);
    let filler = setup.data.join("filler");
    let then = format!(
        "head -c {FILLER_BYTES} /dev/zero > '{}' &&",
        filler.display()
    );
    let host = start_on_tmpfs(&setup, &then);
    let stored = fill(&host).await;
    assert_eq!(host.get("/readyz").await.status, 503);

    // The filler as the host sees it: its tmpfs is in its own mount
    // namespace, which /proc/<pid>/root shows.
    let relative = filler.strip_prefix("/").expect("an absolute path");
    let seen = Path::new(&format!("/proc/{}/root", host.pid())).join(relative);
    std::fs::remove_file(&seen)
        .unwrap_or_else(|e| panic!("removing the filler {}: {e}", seen.display()));

    // No write asks: the backend notices the room by itself.
    let start = Instant::now();
    loop {
        let ready = host.get("/readyz").await;
        if ready.status == 200 {
            break;
        }
        assert!(
            start.elapsed() < RESUME_WITHIN,
            "/readyz still {} {} {RESUME_WITHIN:?} after the filler was removed",
            ready.status,
            ready.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{} stores filled the disk beside a {FILLER_BYTES}-byte filler; /readyz 200 {:.1} s \
         after removing it",
        stored.len(),
        start.elapsed().as_secs_f64()
    );
    let again: Vec<String> = (0..10).map(|i| format!("again{i}")).collect();
    for key in &again {
        let r = store(&host, key).await;
        assert_eq!(r.status, 200, "{key} after the filler went: {}", r.text());
    }
    for key in &stored[..10] {
        let r = host.request("DELETE", &format!("/store/{key}"), "").await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let mut acknowledged = stored[10..].to_vec();
    acknowledged.extend(again);
    assert_all_read(&host, &acknowledged).await;
    assert_one_log_line_each_way(&host);
    host.kill();
}

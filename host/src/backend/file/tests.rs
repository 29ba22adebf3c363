//! The file backend on a full or failing disk: redb's own storage, and its
//! journal's file, with faults injected under a real [`FileBackend`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::journal::Journal;
use super::reserve::Reserve;
use super::*;
use crate::backend::fault::{Faults, FaultyStorage};
use crate::backend::{Expect, StorageFault};

/// A directory of one test's own, removed when the test ends (the
/// journal's tests use it too).
pub(super) struct TempDir(pub(super) PathBuf);

impl TempDir {
    pub(super) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ostore-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Opens the database at `path` over a file that obeys `faults`, at
/// start and at each reopen.
fn faulty_opener(path: &Path, faults: &Arc<Faults>) -> Opener {
    let (path, faults) = (path.to_path_buf(), faults.clone());
    Box::new(move || {
        redb::Builder::new().create_with_backend(FaultyStorage::open(&path, faults.clone())?)
    })
}

/// A file backend at `path` whose file obeys `faults`.
fn open_faulty(path: &Path, faults: &Arc<Faults>) -> FileBackend {
    FileBackend::open_with("test database", faulty_opener(path, faults)).unwrap()
}

async fn put(b: &FileBackend, key: &str, value: &[u8]) -> Result<(), BackendError> {
    let mut batch = Batch::new(&b"s"[..]);
    batch.put(key.as_bytes().to_vec(), value.to_vec(), Expect::Any);
    b.commit(batch).await
}

async fn delete(b: &FileBackend, key: &str) -> Result<(), BackendError> {
    let mut batch = Batch::new(&b"s"[..]);
    batch.delete(key.as_bytes().to_vec(), Expect::Any);
    b.commit(batch).await
}

async fn value(b: &FileBackend, key: &str) -> Option<Vec<u8>> {
    b.get(b"s", key.as_bytes()).await.unwrap()
}

/// Puts `value` under `key`, retrying (a bounded number of times) while
/// the backend still refuses writes as it did before the fault cleared;
/// panics with the last error if it never takes it.
async fn put_once_writable(b: &FileBackend, key: &str, value: &[u8]) {
    let mut last = None;
    for _ in 0..100 {
        match put(b, key, value).await {
            Ok(()) => return,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("writes never succeeded again: {}", last.expect("an error"));
}

fn small(i: usize) -> Vec<u8> {
    format!("value {i}").into_bytes()
}

/// More than the file holds, so that writing it needs new space.
const BIG: usize = 4 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_succeed_again_once_a_full_disk_has_space() {
    let dir = TempDir::new("disk-full-heals");
    let path = dir.0.join("db.redb");
    let faults = Faults::new();
    let backend = open_faulty(&path, &faults);
    for i in 0..10 {
        put(&backend, &format!("k{i}"), &small(i)).await.unwrap();
    }

    faults.fail_now(StorageFault::DiskFull);
    let full = put(&backend, "big", &vec![7; BIG]).await.unwrap_err();
    assert!(
        full.to_string().contains("No space left on device"),
        "{full}"
    );

    // Space returns: writes succeed again, without a restart.
    faults.heal();
    put_once_writable(&backend, "after", b"space returned").await;

    // Nothing acknowledged was lost; the failed write left nothing.
    for i in 0..10 {
        assert_eq!(value(&backend, &format!("k{i}")).await, Some(small(i)));
    }
    assert_eq!(value(&backend, "big").await, None);
    assert_eq!(
        value(&backend, "after").await.as_deref(),
        Some(&b"space returned"[..])
    );

    // The failure is typed, and the backend says writes fail until one
    // succeeds again. (The file grew for the first big value: this one is
    // larger than all of it.)
    faults.fail_now(StorageFault::DiskFull);
    let larger = std::fs::metadata(&path).unwrap().len() as usize + BIG;
    let full = put(&backend, "big", &vec![7; larger]).await.unwrap_err();
    assert_eq!(full.fault(), Some(StorageFault::DiskFull), "{full}");
    assert_eq!(backend.health().failing, Some(StorageFault::DiskFull));
    assert_eq!(backend.health().failed_commits, 2);
    faults.heal();
    put_once_writable(&backend, "again", b"2").await;
    assert!(backend.health().writable());

    // And all of it is on disk, for the next open.
    drop(backend);
    let reopened = FileBackend::open(&path).unwrap();
    for i in 0..10 {
        assert_eq!(value(&reopened, &format!("k{i}")).await, Some(small(i)));
    }
    assert_eq!(value(&reopened, "again").await.as_deref(), Some(&b"2"[..]));
    assert_eq!(value(&reopened, "big").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_free_space_on_a_full_disk() {
    let dir = TempDir::new("disk-full-deletes");
    let path = dir.0.join("db.redb");
    let faults = Faults::new();
    let backend = open_faulty(&path, &faults);
    for i in 0..50 {
        put(&backend, &format!("k{i}"), &vec![1; 16 << 10])
            .await
            .unwrap();
    }
    faults.fail_now(StorageFault::DiskFull);
    let full = put(&backend, "big", &vec![7; BIG]).await.unwrap_err();
    assert_eq!(full.fault(), Some(StorageFault::DiskFull), "{full}");
    // The disk is still full, and deletes go through at once: redb writes
    // them into pages the file already holds.
    for i in 0..25 {
        delete(&backend, &format!("k{i}")).await.unwrap();
    }
    assert_eq!(value(&backend, "k0").await, None);
    assert_eq!(value(&backend, "k30").await, Some(vec![1; 16 << 10]));
    faults.heal();
    put_once_writable(&backend, "after", b"1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_io_error_on_sync_fails_the_commit_and_heals_the_same_way() {
    let dir = TempDir::new("eio-sync");
    let path = dir.0.join("db.redb");
    let faults = Faults::new();
    let backend = open_faulty(&path, &faults);
    put(&backend, "k", b"1").await.unwrap();
    faults.fail_now(StorageFault::Io);
    let failed = put(&backend, "k", b"2").await.unwrap_err();
    assert_eq!(failed.fault(), Some(StorageFault::Io), "{failed}");
    faults.heal();
    // Reads work once the fault clears, whatever the failed write left.
    assert!(value(&backend, "k").await.is_some());
    put_once_writable(&backend, "k", b"3").await;
    assert_eq!(value(&backend, "k").await.as_deref(), Some(&b"3"[..]));
    assert!(backend.health().writable());
}

/// A value of a page's size: 200 of them span far more pages than a fresh
/// open reads.
fn page(i: usize) -> Vec<u8> {
    vec![i as u8; 4096]
}

/// A device that cannot read (EIO on every read of the file): a read that
/// needs a page not in memory fails with a typed I/O error (503), never
/// with wrong data and without a panic; once the device heals, every read
/// answers right again and writes go on, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_error_fails_reads_typed_and_they_work_again_once_healed() {
    let dir = TempDir::new("read-eio");
    let path = dir.0.join("db.redb");
    let faults = Faults::new();
    {
        let b = open_faulty(&path, &faults);
        for i in 0..200 {
            put(&b, &format!("k{i:03}"), &page(i)).await.unwrap();
        }
    }
    // Opened afresh without a page cache, so that reads reach the file.
    let b = {
        let (path, faults) = (path.clone(), faults.clone());
        FileBackend::open_with("test database", move || {
            redb::Builder::new()
                .set_cache_size(0)
                .create_with_backend(FaultyStorage::open(&path, faults.clone())?)
        })
        .unwrap()
    };
    faults.fail_reads(StorageFault::Io);
    let mut failed = 0;
    for i in 0..200 {
        match b.get(b"s", format!("k{i:03}").as_bytes()).await {
            // A page redb still holds in memory: the right value or none.
            Ok(v) => assert_eq!(v, Some(page(i)), "k{i:03}"),
            Err(e) => {
                assert_eq!(e.fault(), Some(StorageFault::Io), "{e}");
                failed += 1;
            }
        }
    }
    assert!(failed > 0, "no read met the fault");
    match b
        .scan(crate::backend::Shards::One(b"s"), b"k", None, 1000)
        .await
    {
        Ok(pairs) => assert_eq!(pairs.len(), 200, "a listing cut short"),
        Err(e) => assert_eq!(e.fault(), Some(StorageFault::Io), "{e}"),
    }

    faults.heal();
    for i in 0..200 {
        assert_eq!(value(&b, &format!("k{i:03}")).await, Some(page(i)));
    }
    let pairs = b
        .scan(crate::backend::Shards::One(b"s"), b"k", None, 1000)
        .await
        .unwrap();
    assert_eq!(pairs.len(), 200);
    put_once_writable(&b, "after", b"v").await;
    assert_eq!(value(&b, "after").await, Some(b"v".to_vec()));
}

/// A file backend over a faulty storage with a reserve of `size` bytes
/// beside `path`, taken as [`RedbConfig::open`] takes it.
fn open_faulty_with_reserve(path: &Path, faults: &Arc<Faults>, size: u64) -> FileBackend {
    let mut reserve = Reserve::beside(path, size);
    reserve.take().unwrap();
    FileBackend::start("test database", faulty_opener(path, faults), None, reserve).unwrap()
}

/// Waits (a bounded time) until `done` holds; panics naming `what` if it
/// never does.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    for _ in 0..100 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{what} never happened");
}

/// The reserve's life on a full disk: released by the first commit that
/// meets it; while the redb file stays full, deletes go through but stores
/// are refused and the state stays "disk full" (a successful delete does
/// not report writes as recovered); once the disk has room for the reserve
/// and as much again (here the real disk under the test, which has it),
/// the writer takes the reserve back by itself, without a client write,
/// and reports writes recovered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_releases_the_reserve_and_takes_it_back_once_there_is_room() {
    let dir = TempDir::new("disk-full-reserve");
    let path = dir.0.join("db.redb");
    let ballast = ballast_path(&path);
    let faults = Faults::new();
    let backend = open_faulty_with_reserve(&path, &faults, 64 << 10);
    assert_eq!(std::fs::metadata(&ballast).unwrap().len(), 64 << 10);
    for i in 0..20 {
        put(&backend, &format!("k{i}"), &vec![1; 16 << 10])
            .await
            .unwrap();
    }

    faults.fail_now(StorageFault::DiskFull);
    let full = put(&backend, "big", &vec![7; BIG]).await.unwrap_err();
    assert_eq!(full.fault(), Some(StorageFault::DiskFull), "{full}");
    assert!(!ballast.exists(), "the reserve was not released");
    delete(&backend, "k0").await.unwrap();
    assert_eq!(backend.health().failing, Some(StorageFault::DiskFull));
    let refused = put(&backend, "small", b"v").await.unwrap_err();
    assert_eq!(refused.fault(), Some(StorageFault::DiskFull), "{refused}");

    // The disk under the test has room: the writer takes the reserve back
    // within about a RETRY_INTERVAL, with no write asking.
    eventually("taking the reserve back", || {
        ballast.exists() && backend.health().writable()
    })
    .await;
    assert_eq!(std::fs::metadata(&ballast).unwrap().len(), 64 << 10);
    faults.heal();
    put(&backend, "small", b"v").await.unwrap();
    assert_eq!(value(&backend, "k0").await, None);
    assert_eq!(value(&backend, "k1").await, Some(vec![1; 16 << 10]));
    assert_eq!(value(&backend, "big").await, None);
}

/// A commit whose caller stops waiting once its batch is handed to the
/// writer thread still lands; `settled` resolves only after it has, so a
/// read after it finds the batch.
#[tokio::test]
async fn settled_waits_for_a_batch_whose_caller_stopped_waiting() {
    let dir = TempDir::new("settled");
    let backend = open_faulty(&dir.0.join("db.redb"), &Faults::new());
    for i in 0..200 {
        let mut batch = Batch::new(&b"s"[..]);
        batch.put(format!("k{i}").into_bytes(), vec![1; 2048], Expect::Any);
        // Polled once (the batch is queued), then dropped.
        let mut commit = backend.commit(batch);
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        let _ = commit.as_mut().poll(&mut context);
    }
    backend.settled().await;
    for i in 0..200 {
        assert!(value(&backend, &format!("k{i}")).await.is_some(), "k{i}");
    }
}

/// `settled` runs no transaction of its own: alone, or while writes fail,
/// where one would fail again (and reopen the file) or end the writer's
/// backoff early.
#[tokio::test]
async fn settled_commits_nothing_of_its_own() {
    let dir = TempDir::new("settled-alone");
    let faults = Faults::new();
    let backend = open_faulty(&dir.0.join("db.redb"), &faults);
    put(&backend, "k", b"v").await.unwrap();
    let before = backend.commit_stats();
    backend.settled().await;
    assert_eq!(backend.commit_stats(), before);

    faults.fail_now(StorageFault::Io);
    put(&backend, "k2", b"v").await.unwrap_err();
    let failing = backend.health();
    assert!(!failing.writable());
    backend.settled().await;
    assert_eq!(backend.health(), failing, "no commit tried, none failed");
}

/// A file backend at `path` with its journal beside it: redb's file obeys
/// `faults`, the journal's `journal_faults`.
fn open_faulty_journaled(
    path: &Path,
    faults: &Arc<Faults>,
    journal_faults: &Arc<Faults>,
) -> FileBackend {
    let journal = Journal::open_faulty(&journal_path(path), journal_faults.clone()).unwrap();
    FileBackend::start(
        "test database",
        faulty_opener(path, faults),
        Some(journal),
        Reserve::none(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_that_cannot_be_written_fails_its_group_and_redb_commits_the_next_durably() {
    // The journal's write fails, or the write lands and its fdatasync
    // fails (a cut of the file, which fails too, leaves the record there).
    for (what, ops) in [("write", 0), ("fdatasync", 1)] {
        let dir = TempDir::new(&format!("journal-fails-{what}"));
        let path = dir.0.join("db.redb");
        let (faults, journal_faults) = (Faults::new(), Faults::new());
        let backend = open_faulty_journaled(&path, &faults, &journal_faults);
        let journal_len = || std::fs::metadata(journal_path(&path)).unwrap().len();
        put(&backend, "a", b"1").await.unwrap();
        let one_record = journal_len();
        assert!(one_record > 0, "a lone write goes through the journal");
        journal_faults.fail_after(ops, StorageFault::DiskFull);
        let refused = put(&backend, "b", b"2").await.unwrap_err();
        assert_eq!(
            refused.fault(),
            Some(StorageFault::DiskFull),
            "{what}: {refused}"
        );
        assert!(refused.to_string().contains("journal"), "{what}: {refused}");
        assert_eq!(value(&backend, "b").await, None, "{what}");
        assert_eq!(journal_len() > one_record, ops == 1, "{what}: b's record");
        // The journal still fails (nor can it be emptied): once the retry
        // interval is over, redb commits a group durably itself.
        put_once_writable(&backend, "a", b"3").await;
        drop(backend);

        // a's first record (and b's, if its write landed) are still in
        // the journal, of an epoch that a's durable overwrite ended: they
        // are not applied over it.
        assert!(journal_len() >= one_record, "{what}");
        journal_faults.heal();
        let reopened = open_faulty_journaled(&path, &faults, &journal_faults);
        assert_eq!(
            value(&reopened, "a").await.as_deref(),
            Some(&b"3"[..]),
            "{what}"
        );
        assert_eq!(value(&reopened, "b").await, None, "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_that_fails_on_eio_keeps_the_journals_groups_for_a_restart() {
    use super::journal::CHECKPOINT_INTERVAL;
    use std::time::Duration;

    let dir = TempDir::new("checkpoint-eio");
    let path = dir.0.join("db.redb");
    let (faults, journal_faults) = (Faults::new(), Faults::new());
    let backend = open_faulty_journaled(&path, &faults, &journal_faults);
    // Journaled: redb holds it in memory only, until a checkpoint.
    put(&backend, "a", b"1").await.unwrap();
    faults.fail_now(StorageFault::Io);
    // The checkpoint falls due and fails, and so does the reopen after it
    // (its replay must commit).
    tokio::time::sleep(CHECKPOINT_INTERVAL + Duration::from_millis(500)).await;
    let refused = put(&backend, "b", b"2").await.unwrap_err();
    assert_eq!(refused.fault(), Some(StorageFault::Io), "{refused}");

    // A crash now leaves the files as they are: the database alone lacks
    // a, and its journal brings it back.
    let copy = dir.0.join("copy.redb");
    std::fs::copy(journal_path(&path), journal_path(&copy)).unwrap();
    std::fs::copy(&path, &copy).unwrap();
    let bare = dir.0.join("bare.redb");
    std::fs::copy(&copy, &bare).unwrap();
    {
        let bare = Database::create(&bare).unwrap();
        let txn = bare.begin_read().unwrap();
        let table = txn.open_table(RECORDS).unwrap();
        assert!(
            table.get(&b"a"[..]).unwrap().is_none(),
            "a is in the journal only"
        );
    }
    let restarted = FileBackend::open(&copy).unwrap();
    assert_eq!(value(&restarted, "a").await.as_deref(), Some(&b"1"[..]));
    assert_eq!(value(&restarted, "b").await, None);
    drop(restarted);

    // Or the disk heals: the running backend applies its journal and
    // writes again.
    faults.heal();
    put_once_writable(&backend, "c", b"3").await;
    assert_eq!(value(&backend, "a").await.as_deref(), Some(&b"1"[..]));
    assert_eq!(value(&backend, "b").await, None);
    drop(backend);
    let reopened = open_faulty_journaled(&path, &faults, &journal_faults);
    for (key, expected) in [("a", Some("1")), ("b", None), ("c", Some("3"))] {
        assert_eq!(
            value(&reopened, key).await.as_deref(),
            expected.map(str::as_bytes),
            "{key}"
        );
    }
}

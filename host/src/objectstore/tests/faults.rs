//! The object store over a backend whose commits fail (a full disk, an I/O
//! error): failures are typed, nothing acknowledged is lost, and writes
//! work again once the fault clears.

use std::collections::BTreeMap;

use ostore_status::Precondition;

use super::*;
use crate::backend::fault::{Faults, FaultyBackend, Stage};
use crate::backend::{BackendError, StorageFault};

/// An object store over `inner`, whose commits fail as `faults` says.
async fn faulty(stage: Stage) -> (ObjectStore, Arc<Faults>, Arc<FaultyBackend>) {
    let faults = Faults::new();
    let backend = Arc::new(FaultyBackend::new(
        Arc::new(MemoryBackend::new()),
        faults.clone(),
        stage,
    ));
    let os = open_with(backend.clone(), &MasterKey::generate()).await;
    (os, faults, backend)
}

/// Asserts that `e` is the storage fault `fault`, answered as 503.
fn assert_fault(e: &Error, fault: StorageFault) {
    match e {
        Error::Storage(b @ BackendError::WritesFailing { .. }) => {
            assert_eq!(b.fault(), Some(fault), "{e}");
        }
        other => panic!("not a storage fault: {other:?}"),
    }
    assert_eq!(e.code().http_status(Precondition::Headers), 503, "{e}");
}

/// What a key may hold: exactly the last acknowledged value, or (after
/// writes whose outcome is unknown) one of several.
type Model = BTreeMap<String, Vec<Option<Vec<u8>>>>;

/// Random stores and removes of a few keys while one commit in three fails
/// at `stage`; returns the model of what each key may hold, and how many
/// operations failed.
async fn churn(p: &Partition, faults: &Faults, seed: u64, stage: Stage) -> (Model, usize) {
    faults.fail_randomly(seed, 3, StorageFault::DiskFull);
    let mut model: Model = BTreeMap::new();
    let mut failed = 0;
    for i in 0..300u32 {
        let key = format!("k{}", i % 7);
        let previous = model.get(&key).cloned().unwrap_or_else(|| vec![None]);
        let (wrote, outcome) = if i % 5 == 4 {
            (None, p.delete(&key).await.map(drop))
        } else {
            let value = format!("v{i}").into_bytes();
            let stored = p.store(&key, value.clone(), StoreOptions::default()).await;
            (Some(value), stored.map(drop))
        };
        match outcome {
            Ok(()) => {
                model.insert(key, vec![wrote]);
            }
            Err(e) => {
                assert_fault(&e, StorageFault::DiskFull);
                failed += 1;
                // Refused before the commit: nothing changed. Failed after
                // it: the write may or may not be there.
                let mut may = previous;
                if stage == Stage::AfterCommit {
                    may.push(wrote);
                }
                model.insert(key, may);
            }
        }
    }
    (model, failed)
}

async fn assert_holds(p: &Partition, model: &Model) {
    for (key, may) in model {
        let now = match p.retrieve(key).await {
            Ok(entry) => Some(entry.value),
            Err(Error::KeyNotFound) => None,
            Err(e) => panic!("{key}: {e}"),
        };
        assert!(
            may.contains(&now),
            "{key} holds {now:?}, not one of {may:?}"
        );
    }
}

#[tokio::test]
async fn refused_commits_are_typed_change_nothing_and_writes_resume_when_healed() {
    let (os, faults, backend) = faulty(Stage::BeforeCommit).await;
    let p = partition(&os, "app", "P").await;
    let (model, failed) = churn(&p, &faults, 7, Stage::BeforeCommit).await;
    assert!(failed > 0, "the plan failed no commit");
    assert!(backend.health().failed_commits >= failed as u64);
    // Reads keep working while writes fail.
    assert_holds(&p, &model).await;

    // A disk that stays full fails every write, removes and clears too
    // (this backend refuses every commit), and changes nothing.
    faults.fail_now(StorageFault::DiskFull);
    let e = p
        .store("new", b"x".to_vec(), StoreOptions::default())
        .await
        .unwrap_err();
    assert_fault(&e, StorageFault::DiskFull);
    assert_fault(
        &p.increment("n", 1).await.unwrap_err(),
        StorageFault::DiskFull,
    );
    assert_fault(&p.clear().await.unwrap_err(), StorageFault::DiskFull);
    assert!(!backend.health().writable());
    assert_holds(&p, &model).await;

    faults.heal();
    p.store("new", b"x".to_vec(), StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(p.increment("n", 2).await.unwrap(), 2);
    assert!(backend.health().writable());
    assert_holds(&p, &model).await;
    p.clear().await.unwrap();
    assert!(p.list_keys(None, 100).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn writes_that_fail_after_their_commit_lose_nothing_acknowledged() {
    let (os, faults, _backend) = faulty(Stage::AfterCommit).await;
    let p = partition(&os, "app", "P").await;
    let (model, failed) = churn(&p, &faults, 11, Stage::AfterCommit).await;
    assert!(failed > 0, "the plan failed no commit");
    faults.heal();
    assert_holds(&p, &model).await;
}

#[tokio::test]
async fn a_counter_never_falls_below_its_acknowledged_increments() {
    let (os, faults, _backend) = faulty(Stage::AfterCommit).await;
    let p = partition(&os, "app", "P").await;
    faults.fail_randomly(3, 2, StorageFault::Io);
    let (mut acknowledged, mut attempted) = (0i64, 0i64);
    for _ in 0..200 {
        attempted += 1;
        match p.increment("counter", 1).await {
            Ok(n) => {
                acknowledged += 1;
                assert!(n >= acknowledged, "{n} after {acknowledged} acknowledged");
            }
            Err(e) => assert_fault(&e, StorageFault::Io),
        }
    }
    assert!(acknowledged > 0 && acknowledged < attempted);
    faults.heal();
    let stored = p.retrieve("counter").await.unwrap().value;
    let n: i64 = String::from_utf8(stored).unwrap().parse().unwrap();
    assert!(
        (acknowledged..=attempted).contains(&n),
        "{n}: {acknowledged} acknowledged of {attempted}"
    );
}

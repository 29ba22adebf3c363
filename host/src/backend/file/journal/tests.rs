//! The journal's records: what a replay applies, and where it stops.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase};

use super::*;
use crate::backend::{Batch, Expect};

/// A directory of one test's own, removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("ostore-journal-{name}-{}", std::process::id()));
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

fn database(dir: &Path, name: &str) -> Database {
    let db = Database::create(dir.join(name)).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(RECORDS).unwrap();
    txn.commit().unwrap();
    db
}

fn value(db: &Database, key: &str) -> Option<Vec<u8>> {
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(RECORDS).unwrap();
    table
        .get(key.as_bytes())
        .unwrap()
        .map(|v| v.value().to_vec())
}

/// The writes of one group: `(key, Some(value))` puts, `(key, None)`
/// removes.
fn group(writes: &[(&str, Option<&str>)]) -> Batch {
    let mut batch = Batch::new(&b"s"[..]);
    for (key, value) in writes {
        match value {
            Some(v) => batch.put(key.as_bytes().to_vec(), v.as_bytes().to_vec(), Expect::Any),
            None => batch.delete(key.as_bytes().to_vec(), Expect::Any),
        };
    }
    batch
}

/// Three groups: `a` is put, then overwritten; `b` put then removed; `c`
/// put last.
fn three_groups() -> Vec<Batch> {
    vec![
        group(&[("a", Some("1")), ("b", Some("2"))]),
        group(&[("a", Some("3")), ("b", None)]),
        group(&[("c", Some("4"))]),
    ]
}

fn append_all(journal: &mut Journal, groups: &[Batch]) -> Vec<u64> {
    let mut ends = Vec::new();
    for g in groups {
        journal.append(g.writes.iter()).unwrap();
        ends.push(journal.len);
    }
    ends
}

#[test]
fn a_replay_applies_every_group_in_order_and_empties_the_journal() {
    let dir = TempDir::new("order");
    let path = journal_path(&dir.0.join("db"));
    let mut journal = Journal::open(&path).unwrap();
    append_all(&mut journal, &three_groups());
    assert!(journal.checkpoint_at().is_some());
    drop(journal);

    let db = database(&dir.0, "db");
    let mut journal = Journal::open(&path).unwrap();
    assert_eq!(journal.replay(&db).unwrap(), 3);
    assert_eq!(value(&db, "a").as_deref(), Some(&b"3"[..]));
    assert_eq!(value(&db, "b"), None);
    assert_eq!(value(&db, "c").as_deref(), Some(&b"4"[..]));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    assert_eq!(journal.checkpoint_at(), None);

    // Replayed again over what it already applied: nothing changes, and
    // an empty journal applies nothing.
    assert_eq!(journal.replay(&db).unwrap(), 0);
    assert_eq!(value(&db, "a").as_deref(), Some(&b"3"[..]));
}

#[test]
fn replaying_groups_that_the_database_already_holds_leaves_each_key_at_its_last_write() {
    // A crash between a checkpoint's commit and the journal's emptying:
    // the database holds the first two groups already, and has a later
    // write of its own to none of their keys.
    let dir = TempDir::new("again");
    let path = journal_path(&dir.0.join("db"));
    let mut journal = Journal::open(&path).unwrap();
    append_all(&mut journal, &three_groups());
    let db = database(&dir.0, "db");
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(RECORDS).unwrap();
        table.insert(&b"a"[..], &b"3"[..]).unwrap();
        table.insert(&b"z"[..], &b"9"[..]).unwrap();
    }
    txn.commit().unwrap();
    let mut journal = Journal::open(&path).unwrap();
    assert_eq!(journal.replay(&db).unwrap(), 3);
    assert_eq!(value(&db, "a").as_deref(), Some(&b"3"[..]));
    assert_eq!(value(&db, "b"), None);
    assert_eq!(value(&db, "c").as_deref(), Some(&b"4"[..]));
    assert_eq!(value(&db, "z").as_deref(), Some(&b"9"[..]));
}

#[test]
fn a_record_cut_off_anywhere_is_dropped_and_those_before_it_are_applied() {
    let dir = TempDir::new("torn");
    let path = journal_path(&dir.0.join("db"));
    let mut journal = Journal::open(&path).unwrap();
    let ends = append_all(&mut journal, &three_groups());
    drop(journal);
    let whole = std::fs::read(&path).unwrap();
    let (before, last) = (ends[1] as usize, ends[2] as usize);
    assert_eq!(whole.len(), last);
    for cut in before..last {
        std::fs::write(&path, &whole[..cut]).unwrap();
        let db = database(&dir.0, &format!("db-{cut}"));
        let mut journal = Journal::open(&path).unwrap();
        assert_eq!(journal.replay(&db).unwrap(), 2, "cut at {cut}");
        assert_eq!(value(&db, "a").as_deref(), Some(&b"3"[..]));
        assert_eq!(
            value(&db, "c"),
            None,
            "cut at {cut}: the torn group was applied"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }
}

#[test]
fn a_replay_stops_at_a_record_that_fails_its_crc_or_is_out_of_sequence() {
    let dir = TempDir::new("crc");
    let path = journal_path(&dir.0.join("db"));
    let mut journal = Journal::open(&path).unwrap();
    let ends = append_all(&mut journal, &three_groups());
    drop(journal);
    let whole = std::fs::read(&path).unwrap();

    // A bit flipped in the second record's value.
    let mut flipped = whole.clone();
    flipped[ends[1] as usize - 1] ^= 1;
    std::fs::write(&path, &flipped).unwrap();
    let db = database(&dir.0, "db-flipped");
    assert_eq!(Journal::open(&path).unwrap().replay(&db).unwrap(), 1);
    assert_eq!(value(&db, "a").as_deref(), Some(&b"1"[..]));
    assert_eq!(value(&db, "c"), None);

    // The third record where the second should be: whole, its CRC good,
    // but out of sequence.
    let mut skipped = whole[..ends[0] as usize].to_vec();
    skipped.extend_from_slice(&whole[ends[1] as usize..]);
    std::fs::write(&path, &skipped).unwrap();
    let db = database(&dir.0, "db-skipped");
    assert_eq!(Journal::open(&path).unwrap().replay(&db).unwrap(), 1);
    assert_eq!(value(&db, "c"), None);
}

#[test]
fn a_retracted_group_is_not_replayed_and_the_next_one_takes_its_place() {
    let dir = TempDir::new("retract");
    let path = journal_path(&dir.0.join("db"));
    let mut journal = Journal::open(&path).unwrap();
    let groups = three_groups();
    append_all(&mut journal, &groups[..2]);
    journal.retract();
    journal.append(groups[2].writes.iter()).unwrap();
    drop(journal);
    let db = database(&dir.0, "db");
    assert_eq!(Journal::open(&path).unwrap().replay(&db).unwrap(), 2);
    assert_eq!(value(&db, "a").as_deref(), Some(&b"1"[..]));
    assert_eq!(value(&db, "b").as_deref(), Some(&b"2"[..]));
    assert_eq!(value(&db, "c").as_deref(), Some(&b"4"[..]));
}

#[test]
fn a_checkpoint_is_due_by_size_or_by_the_age_of_the_oldest_group() {
    let dir = TempDir::new("due");
    let path = journal_path(&dir.0.join("db"));
    let mut journal = Journal::open(&path).unwrap();
    let now = Instant::now();
    assert!(!journal.checkpoint_due(now + CHECKPOINT_INTERVAL * 10));
    assert_eq!(journal.checkpoint_at(), None);
    journal
        .append(group(&[("a", Some("1"))]).writes.iter())
        .unwrap();
    let at = journal.checkpoint_at().expect("a group waits");
    assert!(!journal.checkpoint_due(at - Duration::from_millis(1)));
    assert!(journal.checkpoint_due(at));
    let big = "x".repeat(CHECKPOINT_BYTES as usize);
    journal
        .append(group(&[("b", Some(&big))]).writes.iter())
        .unwrap();
    assert!(journal.checkpoint_due(Instant::now()));
    let db = database(&dir.0, "db");
    journal.checkpoint(&db).unwrap();
    assert_eq!(journal.checkpoint_at(), None);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

/// Through a real backend: the database file as a crash would leave it
/// (copied while the host runs, before a checkpoint) lacks the groups
/// acknowledged since the last checkpoint, and its journal brings them back.
#[tokio::test]
async fn acknowledged_groups_survive_a_copy_of_the_files_taken_before_a_checkpoint() {
    use crate::backend::{Backend, FileBackend};
    let dir = TempDir::new("copy");
    let db = dir.0.join("ostore.redb");
    let backend = FileBackend::open(&db).unwrap();
    // A first group and its checkpoint, once the interval has passed.
    backend.commit(group(&[("old", Some("0"))])).await.unwrap();
    tokio::time::sleep(CHECKPOINT_INTERVAL + Duration::from_millis(500)).await;
    assert_eq!(
        std::fs::metadata(journal_path(&db)).unwrap().len(),
        0,
        "an idle writer checkpoints within the interval"
    );
    for g in three_groups() {
        backend.commit(g).await.unwrap();
    }
    let copy = dir.0.join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(&db, copy.join("ostore.redb")).unwrap();
    std::fs::copy(journal_path(&db), journal_path(&copy.join("ostore.redb"))).unwrap();
    drop(backend);

    // Without its journal, the copy is at the checkpoint.
    let bare = dir.0.join("bare.redb");
    std::fs::copy(copy.join("ostore.redb"), &bare).unwrap();
    let bare = Database::create(&bare).unwrap();
    assert_eq!(value(&bare, "old").as_deref(), Some(&b"0"[..]));
    assert_eq!(
        value(&bare, "c"),
        None,
        "the groups were durable without the journal"
    );
    drop(bare);

    let restarted = FileBackend::open(&copy.join("ostore.redb")).unwrap();
    for (key, expected) in [
        ("old", Some("0")),
        ("a", Some("3")),
        ("b", None),
        ("c", Some("4")),
    ] {
        assert_eq!(
            restarted
                .get(b"s", key.as_bytes())
                .await
                .unwrap()
                .as_deref(),
            expected.map(str::as_bytes),
            "{key}"
        );
    }
}

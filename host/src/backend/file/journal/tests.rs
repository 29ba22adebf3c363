//! The journal's records: what a replay applies, and where it stops.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase};

use super::*;
use crate::backend::file::tests::TempDir;
use crate::backend::{Batch, Expect};

fn database(path: &Path) -> Database {
    let db = Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(RECORDS).unwrap();
    txn.commit().unwrap();
    db
}

/// A database at `dir/db` and its journal, the database stamped with the
/// journal's epoch as an open does (a replay of the empty journal).
fn stamped(dir: &Path) -> (Database, Journal, PathBuf) {
    let db = database(&dir.join("db"));
    let path = journal_path(&dir.join("db"));
    let mut journal = Journal::open(&path).unwrap();
    assert_eq!(journal.replay(&db).unwrap(), 0);
    (db, journal, path)
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

/// The three groups appended under a stamped database, both closed: the
/// database file (which holds none of them) and the journal's bytes.
fn journaled_three(dir: &Path) -> (PathBuf, Vec<u8>, Vec<u64>) {
    let (db, mut journal, path) = stamped(dir);
    let ends = append_all(&mut journal, &three_groups());
    drop((db, journal));
    (dir.join("db"), std::fs::read(&path).unwrap(), ends)
}

/// Replays `bytes` as the journal of a copy of the database at `db`;
/// returns the copy (open) and how many groups were applied.
fn replay_copy(db: &Path, bytes: &[u8], name: &str) -> (Database, usize) {
    let copy = db.with_file_name(name);
    std::fs::copy(db, &copy).unwrap();
    std::fs::write(journal_path(&copy), bytes).unwrap();
    let copy_db = Database::create(&copy).unwrap();
    let applied = Journal::open(&journal_path(&copy))
        .unwrap()
        .replay(&copy_db)
        .unwrap();
    assert_eq!(std::fs::metadata(journal_path(&copy)).unwrap().len(), 0);
    (copy_db, applied)
}

#[test]
fn a_replay_applies_every_group_in_order_and_begins_the_journal_anew() {
    let dir = TempDir::new("journal-order");
    let (db, mut journal, path) = stamped(&dir.0);
    append_all(&mut journal, &three_groups());
    assert!(journal.checkpoint_at().is_some());
    drop(journal);

    let mut journal = Journal::open(&path).unwrap();
    assert_eq!(journal.replay(&db).unwrap(), 3);
    assert_eq!(value(&db, "a").as_deref(), Some(&b"3"[..]));
    assert_eq!(value(&db, "b"), None);
    assert_eq!(value(&db, "c").as_deref(), Some(&b"4"[..]));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    assert_eq!(journal.checkpoint_at(), None);

    // A group appended now is of the new epoch, and is applied.
    journal
        .append(group(&[("d", Some("5"))]).writes.iter())
        .unwrap();
    drop(journal);
    let before = durable_epoch(&db).unwrap().expect("stamped");
    let mut journal = Journal::open(&path).unwrap();
    assert_eq!(journal.replay(&db).unwrap(), 1);
    assert_eq!(value(&db, "d").as_deref(), Some(&b"5"[..]));
    let after = durable_epoch(&db).unwrap().expect("stamped");
    assert_ne!(after, before, "applying a group begins a new epoch");

    // An empty journal applies nothing and leaves the database unwritten:
    // the journal takes up its epoch, and its groups are applied later.
    assert_eq!(journal.replay(&db).unwrap(), 0);
    assert_eq!(durable_epoch(&db).unwrap(), Some(after));
    journal
        .append(group(&[("e", Some("6"))]).writes.iter())
        .unwrap();
    drop(journal);
    assert_eq!(Journal::open(&path).unwrap().replay(&db).unwrap(), 1);
    assert_eq!(value(&db, "e").as_deref(), Some(&b"6"[..]));
}

#[test]
fn a_journal_of_an_earlier_epoch_is_not_applied() {
    // A checkpoint's commit landed and the journal's emptying did not (or
    // the database was restored from a backup beside a newer journal):
    // its records are of an epoch the database no longer holds.
    let dir = TempDir::new("journal-epoch");
    let (db, mut journal, path) = stamped(&dir.0);
    append_all(&mut journal, &three_groups());
    let before = std::fs::read(&path).unwrap();
    journal.checkpoint(&db).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    std::fs::write(&path, &before).unwrap();
    drop(journal);
    assert_eq!(Journal::open(&path).unwrap().replay(&db).unwrap(), 0);
    assert_eq!(
        value(&db, "a"),
        None,
        "a group of an earlier epoch was applied"
    );
    assert_eq!(value(&db, "c"), None);

    // Nor is any journal beside a database that was never stamped.
    let fresh = database(&dir.0.join("fresh"));
    std::fs::write(journal_path(&dir.0.join("fresh")), &before).unwrap();
    let mut journal = Journal::open(&journal_path(&dir.0.join("fresh"))).unwrap();
    assert_eq!(journal.replay(&fresh).unwrap(), 0);
    assert_eq!(value(&fresh, "c"), None);
}

#[test]
fn a_record_cut_off_anywhere_is_dropped_and_those_before_it_are_applied() {
    let dir = TempDir::new("journal-torn");
    let (db, whole, ends) = journaled_three(&dir.0);
    let (before, last) = (ends[1] as usize, ends[2] as usize);
    assert_eq!(whole.len(), last);
    for cut in before..last {
        let (copy, applied) = replay_copy(&db, &whole[..cut], &format!("db-{cut}"));
        assert_eq!(applied, 2, "cut at {cut}");
        assert_eq!(value(&copy, "a").as_deref(), Some(&b"3"[..]));
        assert_eq!(
            value(&copy, "c"),
            None,
            "cut at {cut}: the torn group was applied"
        );
    }
    let (copy, applied) = replay_copy(&db, &whole, "db-whole");
    assert_eq!(applied, 3);
    assert_eq!(value(&copy, "c").as_deref(), Some(&b"4"[..]));
}

#[test]
fn a_replay_stops_at_a_record_that_fails_its_crc_or_is_out_of_sequence() {
    let dir = TempDir::new("journal-crc");
    let (db, whole, ends) = journaled_three(&dir.0);

    // A bit flipped in the second record's value.
    let mut flipped = whole.clone();
    flipped[ends[1] as usize - 1] ^= 1;
    let (copy, applied) = replay_copy(&db, &flipped, "db-flipped");
    assert_eq!(applied, 1);
    assert_eq!(value(&copy, "a").as_deref(), Some(&b"1"[..]));
    assert_eq!(value(&copy, "c"), None);

    // The third record where the second should be: whole, its CRC good,
    // but out of sequence.
    let mut skipped = whole[..ends[0] as usize].to_vec();
    skipped.extend_from_slice(&whole[ends[1] as usize..]);
    let (copy, applied) = replay_copy(&db, &skipped, "db-skipped");
    assert_eq!(applied, 1);
    assert_eq!(value(&copy, "c"), None);
}

#[test]
fn a_retracted_group_is_not_replayed_and_the_next_one_takes_its_place() {
    let dir = TempDir::new("journal-retract");
    let (db, mut journal, path) = stamped(&dir.0);
    let groups = three_groups();
    append_all(&mut journal, &groups[..2]);
    journal.retract();
    journal.append(groups[2].writes.iter()).unwrap();
    drop(journal);
    assert_eq!(Journal::open(&path).unwrap().replay(&db).unwrap(), 2);
    assert_eq!(value(&db, "a").as_deref(), Some(&b"1"[..]));
    assert_eq!(value(&db, "b").as_deref(), Some(&b"2"[..]));
    assert_eq!(value(&db, "c").as_deref(), Some(&b"4"[..]));
}

#[test]
fn a_checkpoint_is_due_by_size_or_by_the_age_of_the_oldest_group() {
    let dir = TempDir::new("journal-due");
    let (db, mut journal, path) = stamped(&dir.0);
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
    let dir = TempDir::new("journal-copy");
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
    let copy = dir.0.join("copy").join("ostore.redb");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    // A checkpoint may come between the two copies (the journal's first):
    // the database's copy then holds the groups already; try again.
    let mut tries = 0;
    loop {
        tries += 1;
        assert!(
            tries <= 5,
            "a checkpoint came between the copies five times"
        );
        for g in three_groups() {
            backend.commit(g).await.unwrap();
        }
        std::fs::copy(journal_path(&db), journal_path(&copy)).unwrap();
        std::fs::copy(&db, &copy).unwrap();
        // Without its journal, the copy is at the checkpoint.
        let bare = dir.0.join("bare.redb");
        std::fs::copy(&copy, &bare).unwrap();
        let bare = Database::create(&bare).unwrap();
        assert_eq!(value(&bare, "old").as_deref(), Some(&b"0"[..]));
        if value(&bare, "c").is_none() {
            break;
        }
        // Undo the groups, so that the next try shows them again.
        for key in ["a", "c"] {
            let mut undo = Batch::new(&b"s"[..]);
            undo.delete(key.as_bytes().to_vec(), Expect::Any);
            backend.commit(undo).await.unwrap();
        }
        tokio::time::sleep(CHECKPOINT_INTERVAL * 2).await;
    }
    drop(backend);

    let restarted = FileBackend::open(&copy).unwrap();
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

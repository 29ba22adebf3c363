//! Records at rest in format 1 (fixed-width fields, see `record::wire`),
//! as hosts wrote every record before the compact format: a new host reads,
//! lists, changes and checks them like its own, and writes what it changes
//! compact. And expiry index entries at the millisecond (`x`), as hosts
//! wrote them before the index was kept by the tick.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use super::damage::{put_raw, raw};
use super::*;
use crate::objectstore::keys::{EntryId, PartitionId, RecordKey};
use crate::objectstore::record::{CountsRecord, EntryRecord, IndexPage};
use crate::objectstore::sealed::SealedTable;

/// The format byte of the record under `key`, opened.
fn format_of(table: SealedTable<'_>, key: &[u8], sealed: &[u8]) -> u8 {
    table.sealer().open(key, sealed).unwrap()[0]
}

#[tokio::test]
async fn entries_and_index_pages_of_format_1_read_list_change_and_check_clean() {
    let (backend, master) = fresh();
    let os = open_with(backend.clone(), &master).await;
    let app = os.application("app").await.unwrap();
    let p = partition(&os, "app", "p").await;
    for name in ["q", "r"] {
        let other = partition(&os, "app", name).await;
        other
            .store("k", b"v".to_vec(), StoreOptions::default())
            .await
            .unwrap();
    }
    let mut model: BTreeSet<String> = (0..3000).map(|i| format!("key-{i:05}")).collect();
    for name in &model {
        p.store(name, name.as_bytes().to_vec(), StoreOptions::default())
            .await
            .unwrap();
    }
    os.flush_stats().await.unwrap();

    // Every entry and index page (of key names, and of store and partition
    // names) sealed again in format 1; the counts of bytes at rest follow.
    let table = app.table();
    let (mut entries, mut pages) = (0, 0);
    // What each partition's entries grew by.
    let mut grown: HashMap<PartitionId, i64> = HashMap::new();
    for (key, sealed) in raw(&*backend, &[]).await {
        let old = match RecordKey::parse(&key) {
            Some(RecordKey::Entry(_)) => {
                entries += 1;
                table
                    .open::<EntryRecord>(&key, &sealed)
                    .unwrap()
                    .encode_format_1()
            }
            Some(RecordKey::IndexPage { .. } | RecordKey::NamePage { .. }) => {
                pages += 1;
                table
                    .open::<IndexPage>(&key, &sealed)
                    .unwrap()
                    .encode_format_1()
            }
            _ => continue,
        };
        let resealed = table.sealer().seal(&key, &old);
        if let Some(RecordKey::Entry(entry)) = RecordKey::parse(&key) {
            *grown.entry(entry.partition).or_default() +=
                resealed.len() as i64 - sealed.len() as i64;
        }
        put_raw(&*backend, key, resealed).await;
    }
    assert_eq!(entries, 3002);
    assert!(pages > 3, "{pages} pages");
    for (key, sealed) in raw(&*backend, &[]).await {
        if let Some(RecordKey::Counts { partition, .. }) = RecordKey::parse(&key)
            && let Some(growth) = grown.remove(&partition)
        {
            let mut counts: CountsRecord = table.open(&key, &sealed).unwrap();
            counts.bytes += growth;
            put_raw(&*backend, key.clone(), table.seal(&key, &counts)).await;
        }
    }
    assert!(grown.is_empty(), "partitions without counts: {grown:?}");
    drop((p, app, os));

    // A new host on that data.
    let os = open_with(backend.clone(), &master).await;
    let p = partition(&os, "app", "p").await;
    let listed = every_page(500, |c| {
        let p = &p;
        async move { p.list_keys(c.as_deref(), 500).await }
    })
    .await;
    assert!(listed.iter().eq(model.iter()));
    assert_eq!(p.retrieve("key-01234").await.unwrap().value, b"key-01234");
    let app = os.application("app").await.unwrap();
    let store = app.default_store().await.unwrap();
    let partitions = store.list_partitions(None, 10).await.unwrap().items;
    assert_eq!(partitions, ["p", "q", "r"]);

    // Changes: an overwrite, creations at both ends and in the middle, a
    // deletion; each rewrites its entry or pages compact.
    p.store("key-00042", b"new".to_vec(), StoreOptions::default())
        .await
        .unwrap();
    for name in ["a-first", "key-01500x", "z-last"] {
        p.store(name, b"v".to_vec(), StoreOptions::default())
            .await
            .unwrap();
        model.insert(name.to_string());
    }
    p.remove("key-00007").await.unwrap();
    model.remove("key-00007");
    partition(&os, "app", "o")
        .await
        .store("k", b"v".to_vec(), StoreOptions::default())
        .await
        .unwrap();
    let listed = every_page(500, |c| {
        let p = &p;
        async move { p.list_keys(c.as_deref(), 500).await }
    })
    .await;
    assert!(listed.iter().eq(model.iter()));
    assert_eq!(p.retrieve("key-00042").await.unwrap().value, b"new");
    let partitions = store.list_partitions(None, 10).await.unwrap().items;
    assert_eq!(partitions, ["o", "p", "q", "r"]);

    // Both formats now lie side by side, and the check finds them whole,
    // counts included.
    let formats: BTreeSet<u8> = raw(&*backend, &[])
        .await
        .iter()
        .filter(|(key, _)| {
            matches!(
                RecordKey::parse(key),
                Some(RecordKey::Entry(_) | RecordKey::IndexPage { .. })
            )
        })
        .map(|(key, sealed)| format_of(app.table(), key, sealed))
        .collect();
    assert_eq!(formats, BTreeSet::from([1, 2]));
    os.flush_stats().await.unwrap();
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
}

/// The keys' expiry index entries: `x` at the millisecond, as written
/// before the index was kept by the tick, for the index's keys now.
async fn to_legacy_expiries(backend: &dyn Backend, at: &HashMap<EntryId, u64>) {
    for (key, _) in raw(backend, b"y").await {
        let Some(RecordKey::Expiry { entry, .. }) = RecordKey::parse(&key) else {
            panic!("not an expiry index entry");
        };
        let mut batch = Batch::new(shard_of(&key));
        batch.delete(key, Expect::Any);
        let legacy = RecordKey::LegacyExpiry {
            at: at[&entry],
            entry,
        };
        batch.put(legacy.encode(), Vec::new(), Expect::Any);
        backend.commit(batch).await.unwrap();
    }
}

#[tokio::test]
async fn expiry_entries_of_the_millisecond_layout_are_swept_replaced_and_check_clean() {
    let (backend, master) = fresh();
    let clock = manual_clock();
    let os = open_at(backend.clone(), &master, &clock).await;
    let p = partition(&os, "app", "p").await;
    let one_second = StoreOptions {
        ttl: Some(Ttl::Fixed(1)),
        ..Default::default()
    };
    let mut at = HashMap::new();
    for name in ["swept", "rewritten", "deleted"] {
        let meta = p.store(name, b"v".to_vec(), one_second).await.unwrap();
        at.insert(p.entry_id(name).unwrap(), meta.expires.unwrap());
    }
    to_legacy_expiries(&*backend, &at).await;
    assert_eq!(raw(&*backend, b"x").await.len(), 3);
    assert!(raw(&*backend, b"y").await.is_empty());
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);

    // A change replaces the old entry, a deletion deletes it.
    let rewritten_meta = p
        .store("rewritten", b"w".to_vec(), StoreOptions::default())
        .await
        .unwrap();
    assert!(p.delete("deleted").await.unwrap());
    let legacy = raw(&*backend, b"x").await;
    assert_eq!(legacy.len(), 1, "only swept's is left");
    let rewritten = RecordKey::parse(&raw(&*backend, b"y").await[0].0);
    assert!(
        matches!(rewritten, Some(RecordKey::Expiry { entry, .. }) if entry == p.entry_id("rewritten").unwrap())
    );

    // The sweep reclaims a key by its legacy entry once it is due.
    assert_eq!(os.sweep_expired().await.unwrap(), 0);
    clock.advance(Duration::from_millis(1100));
    assert_eq!(os.sweep_expired().await.unwrap(), 1);
    assert!(raw(&*backend, b"x").await.is_empty());
    let entries = raw(&*backend, b"e").await;
    assert_eq!(entries.len(), 1, "rewritten is left");
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);

    // A legacy entry whose key is gone is stale, and so is one beside the
    // entry this version wrote for the same key and tick: the check says
    // so, and repair deletes them, leaving this version's.
    let gone = RecordKey::LegacyExpiry {
        at: 5,
        entry: p.entry_id("deleted").unwrap(),
    };
    let twice = RecordKey::LegacyExpiry {
        at: rewritten_meta.expires.unwrap(),
        entry: p.entry_id("rewritten").unwrap(),
    };
    for planted in [gone, twice] {
        put_raw(&*backend, planted.encode(), Vec::new()).await;
    }
    let report = integrity::check(&*backend, &master).await.unwrap();
    let found: Vec<_> = report.damage.iter().map(|d| d.kind.clone()).collect();
    let stale = integrity::DamageKind::StaleExpiry;
    assert_eq!(found, [stale.clone(), stale]);
    integrity::repair(&*backend, &master).await.unwrap();
    assert!(raw(&*backend, b"x").await.is_empty());
    assert_eq!(raw(&*backend, b"y").await.len(), 1, "rewritten's stays");
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
}

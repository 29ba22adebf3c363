//! Batch calls: `store_many`, `retrieve_many`, `remove_many` land whole or
//! not at all, keep listings, usage and the index of names right, and
//! refuse batches over their limits; prefix listings resume only their own
//! cursors. On the memory backend and on redb.

use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinSet;

use super::*;
use crate::backend::FileBackend;
use crate::encryption::{hex, random_array};

/// A redb file of its own, removed when dropped.
struct ScratchFile(PathBuf);

impl ScratchFile {
    fn new() -> Self {
        let name = format!("ostore-many-{}.redb", hex(&random_array::<8>()));
        Self(std::env::temp_dir().join(name))
    }

    fn backend(&self) -> Arc<dyn Backend> {
        Arc::new(FileBackend::open(&self.0).unwrap())
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn strings(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

/// Every key name under `prefix`, page by page through the prefix listing.
async fn list_prefixed(p: &Partition, prefix: &str, page_size: u32) -> Vec<String> {
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = p
            .list_keys_with_prefix(prefix, cursor.as_deref(), page_size)
            .await
            .unwrap();
        names.extend(page.items);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return names,
        }
    }
}

async fn values(p: &Partition, keys: &[&str]) -> Vec<Option<String>> {
    p.retrieve_many(&strings(keys))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.map(|e| String::from_utf8(e.value).unwrap()))
        .collect()
}

/// Store-many, prefix listings, retrieve-many and remove-many in turn,
/// with the data checked clean at the end.
async fn batches_round_trip(backend: Arc<dyn Backend>) {
    let master = MasterKey::generate();
    let os = open_with(backend.clone(), &master).await;
    let p = partition(&os, "app", "p").await;
    let metas = p
        .store_many(
            &pairs(&[
                ("user/b", "2"),
                ("user/a", "1"),
                ("item/x", "x"),
                ("user/é", "3"),
                ("user/B", "0"),
            ]),
            StoreOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(metas.len(), 5);
    assert!(metas.iter().all(|m| m.version == 1 && m.size == 1));
    // Byte order of the names, under the prefix only, across pages.
    for page_size in [1, 2, 1000] {
        assert_eq!(
            list_prefixed(&p, "user/", page_size).await,
            ["user/B", "user/a", "user/b", "user/é"],
            "pages of {page_size}"
        );
    }
    assert_eq!(list_prefixed(&p, "", 2).await.len(), 5);
    assert!(list_prefixed(&p, "zzz", 10).await.is_empty());
    let entries = p.list_entries_with_prefix("item/", None, 10).await.unwrap();
    assert_eq!(entries.items.len(), 1);
    assert_eq!(entries.items[0].value, b"x");

    // Answers in the order asked, none for a key that is not there.
    assert_eq!(
        values(&p, &["user/é", "nope", "item/x"]).await,
        [Some("3".into()), None, Some("x".into())]
    );

    // An overwrite by batch bumps each version.
    let metas = p
        .store_many(
            &pairs(&[("user/a", "10"), ("new", "n")]),
            StoreOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(metas.iter().map(|m| m.version).collect::<Vec<_>>(), [2, 1]);

    let removed = p
        .remove_many(&strings(&["user/b", "gone", "item/x"]))
        .await
        .unwrap();
    assert_eq!(removed, [true, false, true]);
    assert_eq!(
        list_prefixed(&p, "", 1000).await,
        ["new", "user/B", "user/a", "user/é"]
    );
    assert_eq!(os.application("app").await.unwrap().footprint().keys, 4);
    os.flush_stats().await.unwrap();
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
}

#[tokio::test]
async fn batches_store_list_read_and_remove_in_memory() {
    batches_round_trip(Arc::new(MemoryBackend::new())).await;
}

#[tokio::test]
async fn batches_store_list_read_and_remove_on_redb() {
    let file = ScratchFile::new();
    batches_round_trip(file.backend()).await;
}

/// A store-many that one key refuses (present, with fail-if-present)
/// leaves nothing of itself: no key, no listing entry, no usage.
async fn refused_store_many_writes_nothing(backend: Arc<dyn Backend>) {
    let master = MasterKey::generate();
    let os = open_with(backend.clone(), &master).await;
    let p = partition(&os, "app", "p").await;
    p.store("b", b"old".to_vec(), StoreOptions::default())
        .await
        .unwrap();
    let app = os.application("app").await.unwrap();
    let before = app.footprint();
    let only_new = StoreOptions {
        fail_if_present: true,
        ..StoreOptions::default()
    };
    let err = p
        .store_many(&pairs(&[("a", "1"), ("b", "2"), ("c", "3")]), only_new)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::KeyAlreadyExists), "{err:?}");
    assert_eq!(
        values(&p, &["a", "b", "c"]).await,
        [None, Some("old".into()), None]
    );
    assert_eq!(list_prefixed(&p, "", 10).await, ["b"]);
    assert_eq!(app.footprint(), before);
    // Without the present key it lands.
    p.store_many(&pairs(&[("a", "1"), ("c", "3")]), only_new)
        .await
        .unwrap();
    assert_eq!(list_prefixed(&p, "", 10).await, ["a", "b", "c"]);
    os.flush_stats().await.unwrap();
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
}

#[tokio::test]
async fn a_store_many_that_one_present_key_refuses_writes_nothing_in_memory() {
    refused_store_many_writes_nothing(Arc::new(MemoryBackend::new())).await;
}

#[tokio::test]
async fn a_store_many_that_one_present_key_refuses_writes_nothing_on_redb() {
    let file = ScratchFile::new();
    refused_store_many_writes_nothing(file.backend()).await;
}

#[tokio::test]
async fn a_store_many_over_the_key_quota_writes_nothing_and_is_judged_whole() {
    let file = ScratchFile::new();
    let master = MasterKey::generate();
    let config = Config {
        limits: Limits {
            max_keys: Some(4),
            ..Limits::default()
        },
        ..Config::default()
    };
    let os = ObjectStore::open(file.backend(), &master, config)
        .await
        .unwrap();
    let p = partition(&os, "app", "p").await;
    p.store_many(&pairs(&[("a", "1"), ("b", "2")]), StoreOptions::default())
        .await
        .unwrap();
    let app = os.application("app").await.unwrap();
    let before = app.footprint();
    // Three more would make five: refused whole, though two would fit.
    let err = p
        .store_many(
            &pairs(&[("c", "3"), ("d", "4"), ("e", "5")]),
            StoreOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::QuotaExceeded(_)), "{err:?}");
    assert_eq!(values(&p, &["c", "d", "e"]).await, [None, None, None]);
    assert_eq!(list_prefixed(&p, "", 10).await, ["a", "b"]);
    assert_eq!(app.footprint(), before);
    // Overwrites add no key: a batch of two overwrites and two new fits.
    p.store_many(
        &pairs(&[("a", "x"), ("b", "y"), ("c", "3"), ("d", "4")]),
        StoreOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(app.footprint().keys, 4);
}

/// The same keys and values written by batches and one by one, at the same
/// moments of a manual clock, take the same keys and bytes.
#[tokio::test]
async fn usage_after_batches_equals_usage_after_the_same_single_writes() {
    let (backend, master) = fresh();
    let clock = manual_clock();
    let os = open_at(backend.clone(), &master, &clock).await;
    let batched = partition(&os, "batched", "p").await;
    let single = partition(&os, "single", "p").await;
    let first = pairs(&[("a", "1"), ("bb", "22"), ("ccc", "333"), ("d", "")]);
    batched
        .store_many(&first, StoreOptions::default())
        .await
        .unwrap();
    for (k, v) in &first {
        single
            .store(k, v.clone(), StoreOptions::default())
            .await
            .unwrap();
    }
    let second = pairs(&[("a", "a longer value"), ("e", "5")]);
    batched
        .store_many(&second, StoreOptions::default())
        .await
        .unwrap();
    for (k, v) in &second {
        single
            .store(k, v.clone(), StoreOptions::default())
            .await
            .unwrap();
    }
    batched
        .remove_many(&strings(&["bb", "missing", "d"]))
        .await
        .unwrap();
    single.remove("bb").await.unwrap();
    single.remove("d").await.unwrap();
    let footprint = |app: &str| {
        let os = os.clone();
        let app = app.to_string();
        async move { os.application(&app).await.unwrap().footprint() }
    };
    let (b, s) = (footprint("batched").await, footprint("single").await);
    assert_eq!(b.keys, 3);
    assert_eq!(b, s);
    // A host started on the data reads the same.
    os.flush_stats().await.unwrap();
    let reopened = open_at(backend.clone(), &master, &clock).await;
    let app = reopened.application("batched").await.unwrap();
    assert_eq!(app.footprint(), b);
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
}

#[tokio::test]
async fn retrieve_many_skips_expired_keys_and_extends_rolling_ttls() {
    let (backend, master) = fresh();
    let clock = manual_clock();
    let os = open_at(backend, &master, &clock).await;
    let p = partition(&os, "app", "p").await;
    let fixed = StoreOptions {
        ttl: Some(Ttl::Fixed(10)),
        ..StoreOptions::default()
    };
    let rolling = StoreOptions {
        ttl: Some(Ttl::Rolling(10)),
        ..StoreOptions::default()
    };
    p.store_many(&pairs(&[("fixed", "f")]), fixed)
        .await
        .unwrap();
    p.store_many(&pairs(&[("rolling", "r")]), rolling)
        .await
        .unwrap();
    // Read at 8 s: the rolling key's window starts again.
    clock.advance(Duration::from_secs(8));
    let read = p
        .retrieve_many(&strings(&["fixed", "rolling"]))
        .await
        .unwrap();
    let rolling_expiry = read[1].as_ref().unwrap().metadata.expires.unwrap();
    assert_eq!(rolling_expiry, clock.now_ms() + 10_000);
    // At 12 s the fixed key is gone; the rolling one lives on.
    clock.advance(Duration::from_secs(4));
    assert_eq!(
        values(&p, &["fixed", "rolling"]).await,
        [None, Some("r".into())]
    );
    // The batch read at 12 s, a quarter window after the one at 8 s,
    // extended it again.
    assert_eq!(
        p.retrieve("rolling").await.unwrap().metadata.expires,
        Some(clock.now_ms() + 10_000)
    );
    // Removing an expired key reports it absent.
    assert_eq!(
        p.remove_many(&strings(&["fixed", "rolling"]))
            .await
            .unwrap(),
        [false, true]
    );
}

#[tokio::test]
async fn batches_over_their_limits_or_with_a_key_twice_are_refused_with_nothing_written() {
    let (backend, master) = fresh();
    let os = open_with(backend, &master).await;
    let p = partition(&os, "app", "p").await;
    let invalid = |r: Result<Vec<Metadata>, Error>| match r {
        Err(Error::InvalidArgument(why)) => why,
        other => panic!("expected invalid-argument, got {other:?}"),
    };

    let too_many: Vec<(String, Vec<u8>)> = (0..=MAX_BATCH_KEYS)
        .map(|i| (format!("k{i}"), b"v".to_vec()))
        .collect();
    let why = invalid(p.store_many(&too_many, StoreOptions::default()).await);
    assert!(why.contains("at most 1000 keys"), "{why}");
    let keys: Vec<String> = too_many.iter().map(|(k, _)| k.clone()).collect();
    assert!(matches!(
        p.retrieve_many(&keys).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        p.remove_many(&keys).await,
        Err(Error::InvalidArgument(_))
    ));
    // The largest batch is fine.
    p.store_many(&too_many[..MAX_BATCH_KEYS], StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(p.clear().await.unwrap(), MAX_BATCH_KEYS as u64);

    let why = invalid(
        p.store_many(
            &pairs(&[("a", "1"), ("b", "2"), ("a", "3")]),
            StoreOptions::default(),
        )
        .await,
    );
    assert!(why.contains("\"a\" appears more than once"), "{why}");
    assert!(matches!(
        p.remove_many(&strings(&["x", "x"])).await,
        Err(Error::InvalidArgument(_))
    ));

    let nine_mib = vec![b'v'; 9 << 20];
    let big = vec![
        ("one".to_string(), nine_mib.clone()),
        ("two".to_string(), nine_mib.clone()),
    ];
    let why = invalid(p.store_many(&big, StoreOptions::default()).await);
    assert!(why.contains(&MAX_BATCH_BYTES.to_string()), "{why}");
    // Each fits on its own; read together they are too much to answer.
    p.store("one", nine_mib.clone(), StoreOptions::default())
        .await
        .unwrap();
    p.store("two", nine_mib, StoreOptions::default())
        .await
        .unwrap();
    assert!(matches!(
        p.retrieve_many(&strings(&["one", "two"])).await,
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(
        p.remove_many(&strings(&["one", "two"])).await.unwrap(),
        [true, true]
    );

    // A bad key or value fails the batch before anything is written.
    assert!(matches!(
        p.store_many(&pairs(&[("fine", "1"), ("", "2")]), StoreOptions::default())
            .await,
        Err(Error::InvalidKey(_))
    ));
    let eleven_mib = vec![b'v'; 11 << 20];
    assert!(matches!(
        p.store_many(
            &[
                ("fine".to_string(), b"1".to_vec()),
                ("huge".to_string(), eleven_mib)
            ],
            StoreOptions::default()
        )
        .await,
        Err(Error::ValueTooLarge { .. })
    ));
    assert!(list_prefixed(&p, "", 10).await.is_empty());
    assert_eq!(os.application("app").await.unwrap().footprint().keys, 0);
}

#[tokio::test]
async fn a_prefix_listing_cursor_resumes_only_that_listing() {
    let (backend, master) = fresh();
    let os = open_with(backend, &master).await;
    let p = partition(&os, "app", "p").await;
    p.store_many(
        &pairs(&[("a1", ""), ("a2", ""), ("a3", ""), ("b1", "")]),
        StoreOptions::default(),
    )
    .await
    .unwrap();
    let page = p.list_keys_with_prefix("a", None, 1).await.unwrap();
    assert_eq!(page.items, ["a1"]);
    let cursor = page.cursor.unwrap();
    let next = p
        .list_keys_with_prefix("a", Some(&cursor), 1)
        .await
        .unwrap();
    assert_eq!(next.items, ["a2"]);
    for other in ["b", "a1", ""] {
        assert!(
            matches!(
                p.list_keys_with_prefix(other, Some(&cursor), 1).await,
                Err(Error::InvalidArgument(_))
            ),
            "a cursor of prefix \"a\" used with {other:?}"
        );
    }
    assert!(matches!(
        p.list_keys(Some(&cursor), 1).await,
        Err(Error::InvalidArgument(_))
    ));
    // An empty prefix is the whole listing: their cursors are one.
    let whole = p.list_keys(None, 2).await.unwrap();
    let rest = p
        .list_keys_with_prefix("", whole.cursor.as_deref(), 10)
        .await
        .unwrap();
    assert_eq!(rest.items, ["a3", "b1"]);
}

#[tokio::test]
async fn a_batch_counts_as_one_request_against_the_rate() {
    let (backend, master) = fresh();
    let clock = manual_clock();
    let config = Config {
        clock: clock.clone(),
        limits: Limits {
            requests_per_second: Some(2),
            ..Limits::default()
        },
        ..Config::default()
    };
    let os = ObjectStore::open(backend, &master, config).await.unwrap();
    let p = partition(&os, "app", "p").await;
    let ten: Vec<(String, Vec<u8>)> = (0..10).map(|i| (format!("k{i}"), vec![])).collect();
    p.store_many(&ten, StoreOptions::default()).await.unwrap();
    let keys: Vec<String> = ten.into_iter().map(|(k, _)| k).collect();
    assert_eq!(p.retrieve_many(&keys).await.unwrap().len(), 10);
    assert!(matches!(
        p.remove_many(&keys).await,
        Err(Error::RateLimited { .. })
    ));
    clock.advance(Duration::from_secs(1));
    assert_eq!(p.remove_many(&keys).await.unwrap(), vec![true; 10]);
}

/// Two hosts on one redb file (so the per-key locks of one do not see the
/// other's), two writers on each, write the same keys in batches in
/// opposite orders: no deadlock, and every batch lands whole, so in the end
/// every key holds the same batch's value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_on_two_hosts_land_whole_and_never_deadlock() {
    let file = ScratchFile::new();
    let (backend, master) = (file.backend(), MasterKey::generate());
    let hosts = [
        open_with(backend.clone(), &master).await,
        open_with(backend.clone(), &master).await,
    ];
    let keys: Vec<String> = (0..12).map(|i| format!("k{i:02}")).collect();
    let mut writers = JoinSet::new();
    for (h, host) in hosts.iter().enumerate() {
        for w in 0..2 {
            let p = partition(host, "app", "p").await;
            let mut keys = keys.clone();
            if (h + w) % 2 == 1 {
                keys.reverse();
            }
            writers.spawn(async move {
                for round in 0..20 {
                    let value = format!("{h}-{w}-{round}").into_bytes();
                    let batch: Vec<(String, Vec<u8>)> =
                        keys.iter().map(|k| (k.clone(), value.clone())).collect();
                    p.store_many(&batch, StoreOptions::default()).await.unwrap();
                }
            });
        }
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    let p = partition(&hosts[0], "app", "p").await;
    let last = p.retrieve_many(&keys).await.unwrap();
    let first = &last[0].as_ref().unwrap().value;
    assert!(last.iter().all(|e| &e.as_ref().unwrap().value == first));
    assert_eq!(list_prefixed(&p, "k", 5).await, keys);
    // Every host's changes counted once: a host started on the data sees
    // the twelve keys.
    for host in &hosts {
        host.flush_stats().await.unwrap();
    }
    let third = open_with(backend.clone(), &master).await;
    assert_eq!(third.application("app").await.unwrap().footprint().keys, 12);
}

/// On one host, a retrieve-many racing with batch writes of the same keys
/// never sees half of a batch. On redb and on two threads, so that reads
/// and commits do interleave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrieve_many_on_one_host_never_sees_half_a_batch() {
    let file = ScratchFile::new();
    let master = MasterKey::generate();
    let os = open_with(file.backend(), &master).await;
    let keys: Vec<String> = (0..12).map(|i| format!("k{i:02}")).collect();
    let p = partition(&os, "app", "p").await;
    let first: Vec<(String, Vec<u8>)> = keys
        .iter()
        .map(|k| (k.clone(), b"start".to_vec()))
        .collect();
    p.store_many(&first, StoreOptions::default()).await.unwrap();
    let mut tasks = JoinSet::new();
    for w in 0..3 {
        let p = partition(&os, "app", "p").await;
        let mut keys = keys.clone();
        if w % 2 == 1 {
            keys.reverse();
        }
        tasks.spawn(async move {
            for round in 0..30 {
                let value = format!("{w}-{round}").into_bytes();
                let batch: Vec<(String, Vec<u8>)> =
                    keys.iter().map(|k| (k.clone(), value.clone())).collect();
                p.store_many(&batch, StoreOptions::default()).await.unwrap();
            }
        });
    }
    let reader = partition(&os, "app", "p").await;
    tasks.spawn(async move {
        for _ in 0..60 {
            let seen = reader.retrieve_many(&keys).await.unwrap();
            let first = &seen[0].as_ref().unwrap().value;
            assert!(
                seen.iter().all(|e| &e.as_ref().unwrap().value == first),
                "a read saw two batches at once"
            );
            tokio::task::yield_now().await;
        }
    });
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

//! The index of names: listings in byte order of the names, prefixes and
//! cursors against a sorted model, on the memory backend and on redb; many
//! writers at once; how full ordered names leave its pages. Data written
//! before the index, and check and repair of an index: `index_repair`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinSet;

use super::*;
use crate::backend::FileBackend;
use crate::encryption::{hex, random_array};

struct ScratchFile(PathBuf);

impl ScratchFile {
    fn new() -> Self {
        let name = format!("ostore-index-{}.redb", hex(&random_array::<8>()));
        Self(std::env::temp_dir().join(name))
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_file(crate::backend::ballast_path(&self.0));
    }
}

/// A small deterministic generator (xorshift64*), so that a failing run
/// can be repeated from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Pieces of names: ASCII of both cases and digits, and multi-byte UTF-8
/// (whose bytes sort after every ASCII byte, unlike some collations).
const PIECES: [&str; 10] = ["a", "b", "B", "Z", "0", "é", "日", "ab", "-", "zz"];

fn random_name(rng: &mut Rng) -> String {
    let mut name = String::new();
    for _ in 0..1 + rng.below(6) {
        name.push_str(PIECES[rng.below(PIECES.len() as u64) as usize]);
    }
    // Some long names, so that pages fill and split after few keys.
    if rng.below(8) == 0 {
        name.push_str(&"x".repeat(200 + rng.below(600) as usize));
    }
    name
}

/// Every live name under `prefix`, page by page, as a client would list.
pub(super) async fn list_all(p: &Partition, prefix: Option<&str>, page_size: u32) -> Vec<String> {
    let items = every_page(page_size, |cursor| async move {
        p.list_key_metadata(prefix, cursor.as_deref(), page_size)
            .await
    })
    .await;
    items.into_iter().map(|(name, _)| name).collect()
}

/// The model's live names under `prefix`, in byte order (a `BTreeMap` of
/// `String` orders by bytes).
fn expected(model: &BTreeMap<String, Option<u64>>, prefix: &str, now: u64) -> Vec<String> {
    model
        .iter()
        .filter(|(name, expires)| name.starts_with(prefix) && expires.is_none_or(|e| e > now))
        .map(|(name, _)| name.clone())
        .collect()
}

/// Random creates, overwrites, deletes, expiries (a manual clock and the
/// sweep) and a clear, each followed now and then by listings with random
/// prefixes and page sizes compared with a sorted model.
async fn differential(backend: Arc<dyn Backend>, seed: u64) {
    let (_, master) = fresh();
    let clock = manual_clock();
    let os = open_at(backend.clone(), &master, &clock).await;
    let p = partition(&os, "app", "p").await;
    let mut rng = Rng(seed);
    let mut model: BTreeMap<String, Option<u64>> = BTreeMap::new();
    let mut known: Vec<String> = Vec::new();
    for step in 0..1_000 {
        let now = clock.now_ms();
        match rng.below(20) {
            0..=9 => {
                let name = random_name(&mut rng);
                let ttl = (rng.below(4) == 0).then(|| Ttl::Fixed(1 + rng.below(5)));
                let meta = p
                    .store(
                        &name,
                        b"v".to_vec(),
                        StoreOptions {
                            ttl,
                            ..StoreOptions::default()
                        },
                    )
                    .await
                    .unwrap();
                model.insert(name.clone(), meta.expires);
                known.push(name);
            }
            10..=14 if !known.is_empty() => {
                let name = known[rng.below(known.len() as u64) as usize].clone();
                let deleted = p.delete(&name).await.unwrap();
                let was_live = model
                    .remove(&name)
                    .is_some_and(|e| e.is_none_or(|e| e > now));
                assert_eq!(deleted, was_live, "delete of {name:?} at step {step}");
            }
            15..=16 => clock.advance(Duration::from_millis(500 + rng.below(2_000))),
            17 => {
                os.sweep_expired().await.unwrap();
                let now = clock.now_ms();
                model.retain(|_, e| e.is_none_or(|e| e > now));
            }
            18 if rng.below(40) == 0 => {
                p.clear().await.unwrap();
                model.clear();
            }
            _ => {
                let now = clock.now_ms();
                let prefix = if rng.below(3) == 0 {
                    String::new()
                } else {
                    random_name(&mut rng)
                        .chars()
                        .take(1 + rng.below(3) as usize)
                        .collect()
                };
                let page_size = 1 + rng.below(40) as u32;
                let prefix_arg = (!prefix.is_empty()).then_some(prefix.as_str());
                assert_eq!(
                    list_all(&p, prefix_arg, page_size).await,
                    expected(&model, &prefix, now),
                    "prefix {prefix:?}, pages of {page_size}, step {step}, seed {seed}"
                );
            }
        }
    }
    let now = clock.now_ms();
    assert_eq!(list_all(&p, None, 1000).await, expected(&model, "", now));
    let keys = p.list_keys(None, 1000).await.unwrap();
    assert_eq!(keys.items, expected(&model, "", now));
    os.flush_stats().await.unwrap();
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
}

#[tokio::test]
async fn listings_follow_a_sorted_model_through_random_changes_in_memory() {
    for seed in [1, 2, 3] {
        differential(Arc::new(MemoryBackend::new()), seed).await;
    }
}

#[tokio::test]
async fn listings_follow_a_sorted_model_through_random_changes_on_redb() {
    let file = ScratchFile::new();
    let backend: Arc<dyn Backend> = Arc::new(FileBackend::open(&file.0).unwrap());
    differential(backend, 7).await;
}

#[tokio::test]
async fn keys_list_in_byte_order_of_their_names_not_in_tag_order() {
    let (backend, master) = fresh();
    let os = open_with(backend, &master).await;
    let p = partition(&os, "app", "p").await;
    let names = ["b", "a", "é", "Z", "ab", "日本", "a b", "0", "aa"];
    for name in names {
        p.store(name, b"v".to_vec(), StoreOptions::default())
            .await
            .unwrap();
    }
    let page = p.list_keys(None, 100).await.unwrap();
    assert_eq!(
        page.items,
        ["0", "Z", "a", "a b", "aa", "ab", "b", "é", "日本"]
    );
    let entries = p.list_entries(None, 100).await.unwrap();
    let listed: Vec<_> = entries.items.into_iter().map(|e| e.key).collect();
    assert_eq!(listed, page.items);
}

#[tokio::test]
async fn a_cursor_hides_the_name_and_only_resumes_its_own_listing() {
    let (backend, master) = fresh();
    let os = open_with(backend, &master).await;
    let p = partition(&os, "app", "p").await;
    for name in ["secret-alpha", "secret-beta", "secret-gamma"] {
        p.store(name, b"v".to_vec(), StoreOptions::default())
            .await
            .unwrap();
    }
    let page = p.list_key_metadata(Some("secret"), None, 1).await.unwrap();
    let cursor = page.cursor.unwrap();
    assert!(!cursor.contains("secret"));
    let decoded =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &cursor).unwrap();
    assert!(!decoded.windows(6).any(|w| w == b"secret"));
    // Another prefix, or another partition, refuses it.
    assert!(matches!(
        p.list_key_metadata(Some("s"), Some(&cursor), 1).await,
        Err(Error::InvalidArgument(_))
    ));
    let other = partition(&os, "app", "q").await;
    assert!(matches!(
        other
            .list_key_metadata(Some("secret"), Some(&cursor), 1)
            .await,
        Err(Error::InvalidArgument(_))
    ));
    let next = p
        .list_key_metadata(Some("secret"), Some(&cursor), 5)
        .await
        .unwrap();
    let names: Vec<_> = next.items.into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["secret-beta", "secret-gamma"]);
    assert!(next.cursor.is_none());
}

#[tokio::test]
async fn many_writers_on_three_hosts_create_keys_in_one_partition_at_once() {
    let (backend, master) = fresh();
    let mut hosts = Vec::new();
    for _ in 0..3 {
        hosts.push(open_with(backend.clone(), &master).await);
    }
    let mut tasks = JoinSet::new();
    for (h, os) in hosts.iter().enumerate() {
        let p = partition(os, "app", "p").await;
        for w in 0..22 {
            let p = p.clone();
            tasks.spawn(async move {
                for i in 0..20 {
                    let name = format!("k{:03}-{h}-{w:02}-{}", (i * 37 + w) % 100, "x".repeat(60));
                    p.store(&name, b"v".to_vec(), StoreOptions::default())
                        .await
                        .unwrap();
                }
            });
        }
    }
    tasks.join_all().await;
    let p = partition(&hosts[0], "app", "p").await;
    let listed = list_all(&p, None, 97).await;
    assert_eq!(listed.len(), 3 * 22 * 20);
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted);
    for os in &hosts {
        os.flush_stats().await.unwrap();
    }
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
}

/// Counters created and removed over and over by writers on two hosts:
/// creations and deletions of one partition are committed in groups, and a
/// group that meets the other host's change is done again change by change.
/// Every acknowledged increment must count exactly once: the increments
/// acknowledged add up to what the removals took away plus what is left.
#[tokio::test]
async fn grouped_creations_and_deletions_racing_another_host_each_land_exactly_once() {
    let (backend, master) = fresh();
    let mut hosts = Vec::new();
    let mut tasks = JoinSet::new();
    for h in 0..2u64 {
        let os = open_with(backend.clone(), &master).await;
        let p = partition(&os, "app", "p").await;
        hosts.push(os);
        for w in 0..12u64 {
            let p = p.clone();
            tasks.spawn(async move {
                let mut rng = Rng(0x9E37_79B9 + h * 100 + w);
                let (mut added, mut taken) = (0i64, 0i64);
                for _ in 0..60 {
                    let name = format!("counter-{}", rng.next() % 8);
                    if rng.next().is_multiple_of(5) {
                        match p.remove(&name).await {
                            Ok(entry) => {
                                taken += std::str::from_utf8(&entry.value)
                                    .unwrap()
                                    .parse::<i64>()
                                    .unwrap();
                            }
                            Err(Error::KeyNotFound) => {}
                            Err(e) => panic!("remove: {e}"),
                        }
                    } else {
                        p.increment(&name, 1).await.unwrap();
                        added += 1;
                    }
                }
                (added, taken)
            });
        }
    }
    let (mut added, mut taken) = (0, 0);
    for (a, t) in tasks.join_all().await {
        added += a;
        taken += t;
    }
    let p = partition(&hosts[0], "app", "p").await;
    let mut left = 0;
    for name in list_all(&p, None, 100).await {
        left += std::str::from_utf8(&p.retrieve(&name).await.unwrap().value)
            .unwrap()
            .parse::<i64>()
            .unwrap();
    }
    assert!(taken > 0, "some removals took a counter");
    assert_eq!(added, taken + left, "{added} increments acknowledged");
    for os in &hosts {
        os.flush_stats().await.unwrap();
    }
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
}

/// Ten rounds of 16 writers storing `name(round, writer)` with
/// `value(round)`, half of them given up on (their tasks aborted, as when a
/// client drops its request) while their writes wait or commit; returns how
/// many were given up on.
async fn store_giving_up_on_half(
    p: &Partition,
    name: impl Fn(u32, u32) -> String,
    value: impl Fn(u32) -> Vec<u8>,
) -> u32 {
    let mut aborted = 0;
    for round in 0..10 {
        let mut tasks = Vec::new();
        for w in 0..16 {
            let (p, name, value) = (p.clone(), name(round, w), value(round));
            tasks.push(tokio::spawn(async move {
                p.store(&name, value, StoreOptions::default()).await
            }));
        }
        tokio::time::sleep(Duration::from_micros(300)).await;
        for task in tasks.iter().step_by(2) {
            task.abort();
        }
        for task in tasks {
            match task.await {
                Ok(stored) => {
                    stored.unwrap();
                }
                Err(e) if e.is_cancelled() => aborted += 1,
                Err(e) => panic!("{e}"),
            }
        }
    }
    aborted
}

/// A write that lands after its writer gave up is counted all the same,
/// so that the kept counts equal a recount of the data: creations and
/// overwrites (all committed through the partition's queue), on redb.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_writer_gave_up_is_counted_if_it_lands() {
    let file = ScratchFile::new();
    let backend: Arc<dyn Backend> = Arc::new(FileBackend::open(&file.0).unwrap());
    let master = MasterKey::generate();
    let os = open_with(backend.clone(), &master).await;
    let p = partition(&os, "app", "p").await;
    let created = store_giving_up_on_half(&p, |r, w| format!("k-{r}-{w}"), |_| b"v".to_vec()).await;
    // Overwrites of the same 16 keys with values of another size each round.
    let overwritten = store_giving_up_on_half(
        &p,
        |_, w| format!("k-0-{w}"),
        |r| vec![b'v'; 10 + 20 * r as usize],
    )
    .await;
    assert!(
        created > 0 && overwritten > 0,
        "some writers were given up on"
    );
    // The commits of the writers given up on may still be running: damage
    // they seem to make lasts until they land, while an uncounted write (or
    // a key created twice in one batch) stays for good.
    let mut damage = Vec::new();
    for _ in 0..100 {
        os.flush_stats().await.unwrap();
        damage = integrity::check(&*backend, &master).await.unwrap().damage;
        if damage.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        damage.is_empty(),
        "{created} creations and {overwritten} overwrites given up on: {damage:?}"
    );
}

#[tokio::test]
async fn deleting_a_partition_or_a_store_leaves_no_index_pages() {
    let (backend, master) = fresh();
    let os = open_with(backend.clone(), &master).await;
    let app = os.application("app").await.unwrap();
    let store = app.default_store().await.unwrap();
    let p = store.partition("p").await.unwrap();
    for i in 0..200 {
        p.store(
            &format!("key-{i:03}-{}", "y".repeat(100)),
            b"v".to_vec(),
            StoreOptions::default(),
        )
        .await
        .unwrap();
    }
    store.delete_partition("p").await.unwrap();
    let pages = backend.scan(Shards::ALL, b"n", None, 1000).await.unwrap();
    assert!(pages.is_empty(), "{} pages left", pages.len());
    // Listing a partition no one wrote writes no page either.
    let never = store.partition("never").await.unwrap();
    assert!(never.list_keys(None, 10).await.unwrap().items.is_empty());
    assert!(
        never
            .list_key_metadata(Some("a"), None, 10)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let pages = backend.scan(Shards::ALL, b"n", None, 1000).await.unwrap();
    assert!(pages.is_empty(), "{} pages after a listing", pages.len());
}

/// Names created in order (a sequence, a bulk load) no longer leave their
/// index pages half empty: the tree's last leaf, where they all arrive,
/// keeps three quarters of its names when it splits. Created in order by
/// one writer, or by 16 at once (some names arriving a little late), the
/// names fill their pages to 70 % or more; with halves they filled about
/// half. (Created in random order they fill about 68 %, either way.)
#[tokio::test]
async fn names_created_in_order_fill_their_index_pages() {
    let (backend, master) = fresh();
    let os = open_with(backend.clone(), &master).await;
    const N: usize = 4_000;
    let name = |i: usize| format!("key-{i:05}-{}", "x".repeat(40));
    // A page holds about 4,096 bytes of names, front-coded: each after the
    // one before it (these share 8 bytes).
    let per_page = 4_096 / crate::objectstore::record::name_len_after(Some(&name(0)), &name(1));
    let at_70_percent = N * 10 / (7 * per_page) + 1;
    let all: Vec<String> = (0..N).map(name).collect();
    let pages = async |p: &Partition| {
        assert_eq!(list_all(p, None, 1000).await, all);
        let prefix = crate::objectstore::index::Scope::Keys(p.id())
            .pages()
            .encode();
        backend
            .scan(Shards::ALL, &prefix, None, 10_000)
            .await
            .unwrap()
            .len()
    };
    let one_writer = partition(&os, "app", "one-writer").await;
    for i in 0..N {
        one_writer
            .store(&name(i), b"v".to_vec(), StoreOptions::default())
            .await
            .unwrap();
    }
    let in_order = pages(&one_writer).await;
    assert!(
        in_order <= at_70_percent,
        "{in_order} pages for names in order, {at_70_percent} at 70 %"
    );
    let many_writers = partition(&os, "app", "many-writers").await;
    let mut tasks = JoinSet::new();
    for w in 0..16 {
        let p = many_writers.clone();
        tasks.spawn(async move {
            for i in (w..N).step_by(16) {
                p.store(&name(i), b"v".to_vec(), StoreOptions::default())
                    .await
                    .unwrap();
            }
        });
    }
    tasks.join_all().await;
    let concurrent = pages(&many_writers).await;
    assert!(
        concurrent <= at_70_percent,
        "{concurrent} pages for names in order from 16 writers, {at_70_percent} at 70 %"
    );
}

/// Stores keys `key-00`, `key-01`, ... up to `n`, each of value `v`.
pub(super) async fn store_keys(p: &Partition, n: usize) {
    for i in 0..n {
        p.store(
            &format!("key-{i:02}"),
            b"v".to_vec(),
            StoreOptions::default(),
        )
        .await
        .unwrap();
    }
}

/// Each name of the partition's entries, as listed.
pub(super) async fn keys_of(p: &Partition) -> Vec<String> {
    list_all(p, None, 1000).await
}

/// A store's deletion deletes its entries, then its index pages. A key
/// created between the two (a write racing the deletion, which may
/// survive it) keeps its partition's index, so that it and the keys that
/// come after it are all listed.
#[tokio::test]
async fn a_key_created_while_its_store_is_deleted_stays_listed() {
    let (backend, master) = fresh();
    let os = open_with(backend.clone(), &master).await;
    let p = partition(&os, "app", "p").await;
    store_keys(&p, 20).await;
    let (table, locks, now) = (p.table(), &p.inner().index_locks, p.inner().now_ms());
    let entries = p.id().entries();
    write::delete_entries(table, locks, p.app(), now, entries, &write::While::Always)
        .await
        .unwrap();
    p.store("late", b"v".to_vec(), StoreOptions::default())
        .await
        .unwrap();
    crate::objectstore::index::delete_pages(table, Prefix::PartitionIndex(p.id()))
        .await
        .unwrap();
    p.store("later", b"v".to_vec(), StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(keys_of(&p).await, ["late", "later"]);
    os.flush_stats().await.unwrap();
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);

    // With no key left, the pages go; a name left of a damaged entry
    // (deleted with its name unknown) keeps none.
    let entries = backend.scan(Shards::ALL, b"e", None, 1000).await.unwrap();
    let (damaged, sealed) = entries[0].clone();
    let mut batch = Batch::new(shard_of(&damaged));
    batch.put(damaged, sealed[..sealed.len() - 1].to_vec(), Expect::Any);
    backend.commit(batch).await.unwrap();
    let entries = p.id().entries();
    write::delete_entries(table, locks, p.app(), now, entries, &write::While::Always)
        .await
        .unwrap();
    crate::objectstore::index::delete_pages(table, Prefix::PartitionIndex(p.id()))
        .await
        .unwrap();
    let pages = backend.scan(Shards::ALL, b"n", None, 1000).await.unwrap();
    assert!(pages.is_empty(), "{} pages left", pages.len());
    assert!(keys_of(&p).await.is_empty());
}

/// Names as long as `--max-key-bytes` allows (64 KiB), far past what an
/// index page holds: each leaf then holds what it must, and every name
/// lists, in order, and is checked.
#[tokio::test]
async fn names_of_64_kib_list_in_order() {
    let (backend, master) = fresh();
    let mut config = Config::default();
    config.limits.max_key_bytes = 65_536;
    let os = ObjectStore::open(backend.clone(), &master, config)
        .await
        .unwrap();
    let p = partition(&os, "app", "p").await;
    let mut model = std::collections::BTreeSet::new();
    for (i, len) in [65_536, 5_000, 60_000, 4_000, 65_000, 300, 9_000]
        .iter()
        .enumerate()
    {
        let name = format!("{}{}", ["a", "b", "c"][i % 3], "n".repeat(len - 1));
        p.store(&name, b"v".to_vec(), StoreOptions::default())
            .await
            .unwrap();
        model.insert(name);
    }
    let listed = every_page(2, |c| {
        let p = &p;
        async move { p.list_keys(c.as_deref(), 2).await }
    })
    .await;
    assert!(listed.iter().eq(model.iter()));
    os.flush_stats().await.unwrap();
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
}

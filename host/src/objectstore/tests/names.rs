//! The indexes of store and partition names: stores and partitions list in
//! byte order of their names, page by page, on every host sharing a
//! backend; data from before the indexes is indexed on first use; cursors
//! resume only their own listing; check and repair.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::collections::BTreeSet;
use std::path::PathBuf;

use super::damage::raw;
use super::*;
use crate::backend::FileBackend;
use crate::encryption::{hex, random_array};
use integrity::DamageKind;

struct ScratchFile(PathBuf);

impl ScratchFile {
    fn new() -> Self {
        let name = format!("ostore-names-{}.redb", hex(&random_array::<8>()));
        Self(std::env::temp_dir().join(name))
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_file(crate::backend::ballast_path(&self.0));
    }
}

/// The start of the backend key of every page of the indexes of store and
/// partition names (`keys`: `o` app ...).
const NAME_PAGES: &[u8] = b"o";

/// Names in a scrambled order: ASCII of both cases, digits, multi-byte
/// UTF-8 (which sorts after ASCII by bytes), and some long enough that the
/// index's pages fill and split after a few dozen names.
fn scrambled_names(n: usize) -> Vec<String> {
    const PIECES: [&str; 8] = ["b", "A", "é", "0", "日本", "a", "z-", "Z"];
    (0..n)
        .map(|i| {
            // A permutation of 0..n, so no name repeats.
            let j = (i * 37 + 11) % n;
            let mut name = format!("{}{}{j:03}", PIECES[j % 8], PIECES[(j / 8) % 8]);
            if j.is_multiple_of(3) {
                name.push_str(&"x".repeat(150));
            }
            name
        })
        .collect()
}

/// Every store name of `app`, listed page by page as a client would.
async fn all_stores(app: &Application, page_size: u32) -> Vec<String> {
    let stores = every_page(page_size, |cursor| async move {
        app.list_stores(cursor.as_deref(), page_size).await
    })
    .await;
    stores.iter().map(|s| s.name().to_string()).collect()
}

/// Every partition name of `store`, page by page.
async fn all_partitions(store: &Store, page_size: u32) -> Vec<String> {
    every_page(page_size, |cursor| async move {
        store.list_partitions(cursor.as_deref(), page_size).await
    })
    .await
}

fn in_byte_order(model: &BTreeSet<String>) -> Vec<String> {
    // `BTreeSet<String>` orders by bytes: what users are promised.
    model.iter().cloned().collect()
}

/// Two hosts on one backend create stores and partitions in a scrambled
/// order, delete some between listings, and both list them in byte order
/// at every page size.
async fn two_hosts_list_in_byte_order(backend: Arc<dyn Backend>) {
    let master = MasterKey::generate();
    let hosts = [
        open_with(backend.clone(), &master).await,
        open_with(backend.clone(), &master).await,
    ];
    let apps = [
        hosts[0].application("app").await.unwrap(),
        hosts[1].application("app").await.unwrap(),
    ];
    let names = scrambled_names(60);
    let mut stores = BTreeSet::new();
    for (i, name) in names.iter().enumerate() {
        apps[i % 2].store(name).await.unwrap();
        stores.insert(name.clone());
        // Some stores deleted between creations, through the other host.
        if i % 7 == 6 {
            let gone = &names[i - 3];
            assert!(apps[(i + 1) % 2].delete_store(gone).await.unwrap());
            stores.remove(gone);
        }
    }
    for page_size in [1, 2, 7, 1000] {
        for app in &apps {
            assert_eq!(
                all_stores(app, page_size).await,
                in_byte_order(&stores),
                "page size {page_size}"
            );
        }
    }

    let store = [
        apps[0].store("S").await.unwrap(),
        apps[1].store("S").await.unwrap(),
    ];
    let mut partitions = BTreeSet::new();
    for (i, name) in names.iter().enumerate() {
        // A partition exists once it holds a key or a TTL setting.
        let mut p = store[i % 2].partition(name).await.unwrap();
        if i % 2 == 0 {
            p.store("k", b"v".to_vec(), StoreOptions::default())
                .await
                .unwrap();
        } else {
            p.set_ttl(Some(Ttl::Fixed(60))).await.unwrap();
        }
        partitions.insert(name.clone());
        if i % 5 == 4 {
            let gone = &names[i - 2];
            store[(i + 1) % 2].delete_partition(gone).await.unwrap();
            partitions.remove(gone);
        }
    }
    stores.insert("S".into());
    for page_size in [1, 3, 1000] {
        for (app, store) in apps.iter().zip(&store) {
            assert_eq!(
                all_partitions(store, page_size).await,
                in_byte_order(&partitions),
                "page size {page_size}"
            );
            assert_eq!(all_stores(app, page_size).await, in_byte_order(&stores));
        }
    }

    // A cut at every page boundary resumes where it stopped, and the
    // pages hold distinct names.
    let page = store[0].list_partitions(None, 4).await.unwrap();
    let next = store[1]
        .list_partitions(page.cursor.as_deref(), 4)
        .await
        .unwrap();
    let both: Vec<_> = page.items.into_iter().chain(next.items).collect();
    assert_eq!(both, in_byte_order(&partitions)[..8]);

    for host in &hosts {
        host.flush_stats().await.unwrap();
    }
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
}

#[tokio::test]
async fn stores_and_partitions_list_in_byte_order_on_two_hosts_in_memory() {
    two_hosts_list_in_byte_order(Arc::new(MemoryBackend::new())).await;
}

#[tokio::test]
async fn stores_and_partitions_list_in_byte_order_on_two_hosts_on_redb() {
    let file = ScratchFile::new();
    two_hosts_list_in_byte_order(Arc::new(FileBackend::open(&file.0).unwrap())).await;
}

/// Deletes every page of the indexes of store and partition names, as data
/// written before them has none.
async fn drop_name_indexes(backend: &dyn Backend) {
    let pages = raw(backend, NAME_PAGES).await;
    assert!(!pages.is_empty(), "no name pages to drop");
    for (key, _) in pages {
        let mut batch = Batch::new(shard_of(&key));
        batch.delete(key, Expect::Any);
        backend.commit(batch).await.unwrap();
    }
}

#[tokio::test]
async fn stores_and_partitions_from_before_their_indexes_list_in_order_after_a_build() {
    let (backend, master) = fresh();
    let os = open_with(backend.clone(), &master).await;
    let app = os.application("app").await.unwrap();
    let names = scrambled_names(40);
    for name in &names {
        app.store(name).await.unwrap();
    }
    let store = app.store("S").await.unwrap();
    for name in &names {
        store
            .partition(name)
            .await
            .unwrap()
            .store("k", b"v".to_vec(), StoreOptions::default())
            .await
            .unwrap();
    }
    drop_name_indexes(&*backend).await;
    os.flush_stats().await.unwrap();
    // Not damage: the indexes are built on first use.
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);

    let mut expected: BTreeSet<String> = names.iter().cloned().collect();
    expected.insert("S".into());
    assert_eq!(all_stores(&app, 3).await, in_byte_order(&expected));
    expected.remove("S");
    assert_eq!(all_partitions(&store, 3).await, in_byte_order(&expected));

    // A change to an index that was never built builds it first, so the
    // names from before stay listed: drop the indexes again and create.
    drop_name_indexes(&*backend).await;
    app.store("new store").await.unwrap();
    let mut p = store.partition("new partition").await.unwrap();
    p.set_ttl(Some(Ttl::Fixed(5))).await.unwrap();
    let mut stores = expected.clone();
    stores.extend(["S".to_string(), "new store".to_string()]);
    assert_eq!(all_stores(&app, 1000).await, in_byte_order(&stores));
    expected.insert("new partition".into());
    assert_eq!(all_partitions(&store, 1000).await, in_byte_order(&expected));

    // An application with no store at all lists none, and its listings
    // build nothing (see `listing_where_there_is_nothing_writes_nothing`).
    let empty = os.application("empty").await.unwrap();
    let before = raw(&*backend, NAME_PAGES).await.len();
    assert!(empty.list_stores(None, 10).await.unwrap().items.is_empty());
    assert!(empty.list_stores(None, 10).await.unwrap().items.is_empty());
    assert_eq!(raw(&*backend, NAME_PAGES).await.len(), before);

    os.flush_stats().await.unwrap();
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
}

#[tokio::test]
async fn a_listing_cursor_only_resumes_its_own_scope() {
    let (backend, master) = fresh();
    let os = open_with(backend, &master).await;
    let app = os.application("app").await.unwrap();
    let other_app = os.application("other").await.unwrap();
    let (a, b) = (app.store("A").await.unwrap(), app.store("B").await.unwrap());
    let other_a = other_app.store("A").await.unwrap();
    other_app.store("B").await.unwrap();
    for store in [&a, &b] {
        for name in ["p1", "p2", "p3"] {
            let mut p = store.partition(name).await.unwrap();
            p.set_ttl(Some(Ttl::Fixed(5))).await.unwrap();
            p.store("p1", b"v".to_vec(), StoreOptions::default())
                .await
                .unwrap();
            p.store("p2", b"v".to_vec(), StoreOptions::default())
                .await
                .unwrap();
        }
    }
    let stores_cursor = app.list_stores(None, 1).await.unwrap().cursor.unwrap();
    let partitions_cursor = a.list_partitions(None, 1).await.unwrap().cursor.unwrap();
    let p1 = a.partition("p1").await.unwrap();
    let keys_cursor = p1.list_keys(None, 1).await.unwrap().cursor.unwrap();
    let refused = |r: Result<(), Error>| matches!(r, Err(Error::InvalidArgument(_)));
    let stores = async |app: &Application, c: &str| app.list_stores(Some(c), 5).await.map(drop);
    let partitions = async |s: &Store, c: &str| s.list_partitions(Some(c), 5).await.map(drop);
    // Another store's partitions, the stores, or a partition's keys.
    assert!(refused(partitions(&b, &partitions_cursor).await));
    assert!(refused(stores(&app, &partitions_cursor).await));
    assert!(refused(
        p1.list_keys(Some(&partitions_cursor), 5).await.map(drop)
    ));
    // Another application's stores, or a store's partitions.
    assert!(refused(stores(&other_app, &stores_cursor).await));
    assert!(refused(partitions(&a, &stores_cursor).await));
    assert!(refused(partitions(&a, &keys_cursor).await));
    assert!(refused(stores(&app, &keys_cursor).await));
    assert!(refused(stores(&app, "not a cursor").await));
    // Its own listing resumes after the name it stopped at.
    let rest = a
        .list_partitions(Some(&partitions_cursor), 5)
        .await
        .unwrap();
    assert_eq!(rest.items, ["p2", "p3"]);
    let rest = app.list_stores(Some(&stores_cursor), 5).await.unwrap();
    let names: Vec<_> = rest.items.iter().map(|s| s.name()).collect();
    assert_eq!(names, ["B"]);
    // A cursor shows no name, neither in its text nor in its bytes. (A name
    // as short as "p1" turns up by chance in a random base64 string, about
    // once in fifty cursors, so the name looked for is a long one.)
    for name in ["hidden-partition-1", "hidden-partition-2"] {
        let p = other_a.partition(name).await.unwrap();
        p.store("k", b"v".to_vec(), StoreOptions::default())
            .await
            .unwrap();
    }
    let cursor = other_a.list_partitions(None, 1).await.unwrap().cursor;
    let cursor = cursor.unwrap();
    assert!(!cursor.contains("hidden-partition"));
    let decoded = URL_SAFE_NO_PAD.decode(&cursor).unwrap();
    assert!(!decoded.windows(16).any(|w| w == b"hidden-partition"));
}

#[tokio::test]
async fn deleting_a_store_takes_its_name_and_its_partitions_index_with_it() {
    let (backend, master) = fresh();
    let os = open_with(backend.clone(), &master).await;
    let app = os.application("app").await.unwrap();
    let keep = app.store("keep").await.unwrap();
    let gone = app.store("gone").await.unwrap();
    for store in [&keep, &gone] {
        for i in 0..30 {
            let name = format!("partition-{i:02}-{}", "y".repeat(200));
            store
                .partition(&name)
                .await
                .unwrap()
                .store("k", b"v".to_vec(), StoreOptions::default())
                .await
                .unwrap();
        }
    }
    let pages_of = |store: &Store| {
        keys::Prefix::NamePages {
            app: app.state.tag,
            store: Some(store.tag),
        }
        .encode()
    };
    // Thirty names of 200 bytes do not fit one 4 KiB page.
    assert!(raw(&*backend, &pages_of(&gone)).await.len() > 1);
    assert!(app.delete_store("gone").await.unwrap());
    assert!(raw(&*backend, &pages_of(&gone)).await.is_empty());
    assert!(raw(&*backend, &pages_of(&keep)).await.len() > 1);
    assert_eq!(all_stores(&app, 10).await, ["keep"]);
    // Made again, it starts with no partition.
    let again = app.store("gone").await.unwrap();
    assert!(all_partitions(&again, 10).await.is_empty());
    assert_eq!(all_stores(&app, 10).await, ["gone", "keep"]);
    assert_eq!(all_partitions(&keep, 7).await.len(), 30);
    os.flush_stats().await.unwrap();
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
}

#[tokio::test]
async fn check_reports_a_damaged_or_wrong_index_of_store_names_and_repair_rebuilds_it() {
    let (backend, master) = fresh();
    let os = open_with(backend.clone(), &master).await;
    let app = os.application("app").await.unwrap();
    let names = scrambled_names(120);
    for name in &names {
        app.store(name).await.unwrap();
    }
    let expected: BTreeSet<String> = names.iter().cloned().collect();
    os.flush_stats().await.unwrap();
    let stores_index = keys::Prefix::NamePages {
        app: app.state.tag,
        store: None,
    }
    .encode();
    let root = crate::objectstore::index::Scope::Stores(app.state.tag)
        .page_key(crate::objectstore::index::ROOT);
    let pages = raw(&*backend, &stores_index).await;
    assert!(pages.len() > 2, "{} pages", pages.len());
    let kinds = async || -> Vec<DamageKind> {
        let report = integrity::check(&*backend, &master).await.unwrap();
        report.damage.iter().map(|d| d.kind.clone()).collect()
    };

    // 1. A leaf lost: the tree misses a page, and a listing that reaches
    // where it was fails rather than skip its names.
    let (leaf, _) = pages.iter().find(|(k, _)| *k != root).cloned().unwrap();
    let mut batch = Batch::new(shard_of(&leaf));
    batch.delete(leaf.clone(), Expect::Any);
    backend.commit(batch).await.unwrap();
    assert!(app.list_stores(None, 1000).await.is_err());
    let found = kinds().await;
    assert!(
        found
            .iter()
            .any(|k| matches!(k, DamageKind::IndexBroken(what) if what.contains("missing"))),
        "{found:?}"
    );
    integrity::repair(&*backend, &master).await.unwrap();
    assert!(kinds().await.is_empty());
    assert_eq!(all_stores(&app, 9).await, in_byte_order(&expected));

    // 2. A page that no longer opens (a flipped byte at rest).
    let (page, mut sealed_now) = raw(&*backend, &stores_index)
        .await
        .into_iter()
        .find(|(k, _)| *k != root)
        .unwrap();
    sealed_now[10] ^= 0x01;
    let mut batch = Batch::new(shard_of(&page));
    batch.put(page, sealed_now, Expect::Any);
    backend.commit(batch).await.unwrap();
    assert!(matches!(
        app.list_stores(None, 1000).await,
        Err(Error::Integrity)
    ));
    let found = kinds().await;
    assert!(
        found.contains(&DamageKind::Unreadable(integrity::RecordKind::IndexPage)),
        "{found:?}"
    );
    integrity::repair(&*backend, &master).await.unwrap();
    assert!(kinds().await.is_empty());
    assert_eq!(all_stores(&app, 1000).await, in_byte_order(&expected));

    // 3. A store record lost behind the index's back: its name stays
    // indexed; the listing fails, check says the index holds a name
    // without a record, and repair drops it.
    let lost = &names[5];
    let key = keys::RecordKey::Store {
        app: app.state.tag,
        store: app.state.store_tag(lost),
    }
    .encode();
    let mut batch = Batch::new(shard_of(&key));
    batch.delete(key, Expect::Any);
    backend.commit(batch).await.unwrap();
    assert!(matches!(
        app.list_stores(None, 1000).await,
        Err(Error::Integrity)
    ));
    let found = kinds().await;
    assert!(
        found.contains(&DamageKind::IndexMismatch {
            missing: 0,
            extra: 1
        }),
        "{found:?}"
    );
    integrity::repair(&*backend, &master).await.unwrap();
    assert!(kinds().await.is_empty());
    let mut left = expected.clone();
    left.remove(lost);
    assert_eq!(all_stores(&app, 4).await, in_byte_order(&left));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitions_and_stores_created_at_once_on_two_hosts_are_all_listed() {
    let (backend, master) = fresh();
    let hosts = [
        open_with(backend.clone(), &master).await,
        open_with(backend.clone(), &master).await,
    ];
    let mut apps = Vec::new();
    for host in &hosts {
        apps.push(host.application("app").await.unwrap());
    }
    let names = scrambled_names(48);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, name) in names.iter().enumerate() {
        let app = apps[i % 2].clone();
        let name = name.clone();
        // Each writer creates a store and a partition of the shared store:
        // every one of them changes a leaf some other is changing.
        tasks.spawn(async move {
            app.store(&name).await.unwrap();
            let shared = app.store("shared").await.unwrap();
            let p = shared.partition(&name).await.unwrap();
            p.store("k", b"v".to_vec(), StoreOptions::default())
                .await
                .unwrap();
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let partitions: BTreeSet<String> = names.iter().cloned().collect();
    let mut stores = partitions.clone();
    stores.insert("shared".into());
    for app in &apps {
        assert_eq!(all_stores(app, 5).await, in_byte_order(&stores));
        let shared = app.store("shared").await.unwrap();
        assert_eq!(all_partitions(&shared, 5).await, in_byte_order(&partitions));
    }
    for host in &hosts {
        host.flush_stats().await.unwrap();
    }
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
}

/// A listing of stores or partitions where there are none writes nothing
/// (a listing must work on a full disk too); the first one made is listed
/// all the same.
#[tokio::test]
async fn listing_where_there_is_nothing_writes_nothing() {
    let (backend, master) = fresh();
    let os = open_with(backend.clone(), &master).await;
    let app = os.application("app").await.unwrap();
    let written = || async { raw(&*backend, b"").await };
    let before = written().await;
    assert!(all_stores(&app, 10).await.is_empty());
    assert_eq!(written().await, before);

    let store = app.store("s").await.unwrap();
    let before = written().await;
    assert!(all_partitions(&store, 10).await.is_empty());
    assert_eq!(written().await, before);
    store
        .partition("p")
        .await
        .unwrap()
        .store("k", b"v".to_vec(), StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(all_partitions(&store, 10).await, ["p"]);
    assert_eq!(all_stores(&app, 10).await, ["s"]);
    os.flush_stats().await.unwrap();
    let report = integrity::check(&*backend, &master).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
}

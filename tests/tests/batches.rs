//! `ostore:objectstore@1.1.0` from guests: the `batches` guest (built with
//! the SDK) uses the batch calls and prefix listings, and the `compat-1-0`
//! guest, built against the frozen 1.0.0 WIT, runs unchanged on the same
//! host and shares the partition with it.

use ostore_tests::{Serves, Setup, guest};

fn setup() -> Setup {
    Setup::new().app(
        "batches",
        &[
            ("/batches/...", "batches", "batches"),
            ("/compat/...", "compat", "compat-1-0"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_stores_reads_lists_by_prefix_and_removes_in_batches() {
    let setup = setup();
    let host = setup.start().await;
    let r = host
        .request(
            "POST",
            "/batches/store",
            "user/b=2\nuser/a=1\nitem/x=x\nuser/é=3\nuser/B=0\n",
        )
        .await;
    assert_eq!((r.status, r.text().as_str()), (200, "1\n1\n1\n1\n1"));

    // By prefix, in byte order, one page of two at a time.
    let r = host.get("/batches/keys?prefix=user%2F&page-size=2").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "user/B\nuser/a\nuser/b\nuser/é");
    assert_eq!(r.header("x-pages"), Some("2"));
    let r = host.get("/batches/entries?prefix=item").await;
    assert_eq!(r.text(), "item/x=x");
    assert_eq!(host.get("/batches/keys?prefix=zzz").await.text(), "");

    let r = host
        .request("POST", "/batches/get", "user/é\nnope\nitem/x")
        .await;
    assert_eq!(r.text(), "user/é=3\nnope absent\nitem/x=x");

    // One present key refuses a fail-if-present batch whole.
    let r = host
        .request(
            "POST",
            "/batches/store?only-new=true",
            "fresh=1\nuser/a=changed",
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    let r = host.request("POST", "/batches/get", "fresh\nuser/a").await;
    assert_eq!(r.text(), "fresh absent\nuser/a=1");

    // A key given twice is refused with a clear error.
    let r = host
        .request("POST", "/batches/store", "twice=1\ntwice=2")
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("appears more than once"), "{}", r.text());

    let r = host
        .request("POST", "/batches/remove", "user/b\ngone\nitem/x")
        .await;
    assert_eq!(r.text(), "true\nfalse\ntrue");
    assert_eq!(
        host.get("/batches/keys").await.text(),
        "user/B\nuser/a\nuser/é"
    );
    host.stop().await;
}

/// The compatibility guest imports the 1.0.0 interfaces, and nothing of
/// 1.1.0: otherwise the next test would show nothing.
#[test]
fn the_compatibility_guest_imports_ostore_objectstore_1_0_0() {
    let engine = wasmtime::Engine::default();
    let component = wasmtime::component::Component::from_file(&engine, guest("compat-1-0"))
        .expect("the compatibility guest compiles");
    let imports: Vec<String> = component
        .component_type()
        .imports(&engine)
        .map(|(name, _)| name.to_string())
        .filter(|name| name.starts_with("ostore:"))
        .collect();
    assert_eq!(
        imports,
        [
            "ostore:objectstore/types@1.0.0",
            "ostore:objectstore/store@1.0.0"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_built_against_1_0_0_runs_unchanged_beside_a_1_1_0_guest() {
    let setup = setup();
    let host = setup.start().await;
    for (key, value) in [("c1", "one"), ("c2", "two"), ("c3", "three")] {
        let r = host.request("PUT", &format!("/compat/{key}"), value).await;
        assert_eq!((r.status, r.text().as_str()), (200, "version 1"));
    }
    assert_eq!(host.get("/compat/c2").await.text(), "two");
    // Its listing pages (of two) follow cursors.
    assert_eq!(host.get("/compat").await.text(), "c1\nc2\nc3");

    // The 1.1.0 guest sees its writes, and it sees the batch's.
    let r = host.request("POST", "/batches/get", "c1\nc3").await;
    assert_eq!(r.text(), "c1=one\nc3=three");
    let r = host
        .request("POST", "/batches/store", "c2=batched\nc4=four")
        .await;
    assert_eq!(r.text(), "2\n1");
    assert_eq!(host.get("/compat/c2").await.text(), "batched");
    assert_eq!(host.get("/compat").await.text(), "c1\nc2\nc3\nc4");

    let r = host.request("DELETE", "/compat/c1", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(host.get("/compat/c1").await.status, 404);
    assert_eq!(
        host.request("POST", "/batches/remove", "c1\nc4")
            .await
            .text(),
        "false\ntrue"
    );
    assert_eq!(host.get("/compat").await.text(), "c2\nc3");
    host.stop().await;
}

/// On a Redis Cluster (a batch is one script in the partition's shard),
/// two hosts: a batch lands whole, a refused one leaves nothing, prefix
/// listings see the batch, and each host sees the other's batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_land_whole_on_a_redis_cluster_shared_by_two_hosts() {
    use std::sync::Arc;

    use ostore::backend::{Backend, RedisBackend};
    use ostore::encryption::MasterKey;
    use ostore::objectstore::{Config, Error, ObjectStore, StoreOptions};
    use ostore_tests::redis::{RedisCluster, RedisOptions};

    let cluster = RedisCluster::start(3, &RedisOptions::default());
    let config = cluster.url().parse().expect("a valid Redis URL");
    let backend: Arc<dyn Backend> = Arc::new(RedisBackend::connect(&config).await.unwrap());
    let master = MasterKey::generate();
    let mut partitions = Vec::new();
    for _ in 0..2 {
        let host = ObjectStore::open(backend.clone(), &master, Config::default())
            .await
            .unwrap();
        let app = host.application("app").await.unwrap();
        let store = app.default_store().await.unwrap();
        partitions.push(store.partition("p").await.unwrap());
    }
    let (one, two) = (&partitions[0], &partitions[1]);
    let pairs = |items: &[(&str, &str)]| -> Vec<(String, Vec<u8>)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    };
    let keys = |items: &[&str]| -> Vec<String> { items.iter().map(|k| k.to_string()).collect() };

    let batch: Vec<(String, Vec<u8>)> = (0..50)
        .map(|i| (format!("k/{i:02}"), format!("v{i}").into_bytes()))
        .collect();
    one.store_many(&batch, StoreOptions::default())
        .await
        .unwrap();
    let page = two.list_keys_with_prefix("k/4", None, 100).await.unwrap();
    assert_eq!(page.items.len(), 10);
    assert_eq!(page.items[0], "k/40");

    let only_new = StoreOptions {
        fail_if_present: true,
        ..StoreOptions::default()
    };
    let err = two
        .store_many(&pairs(&[("new", "n"), ("k/07", "clash")]), only_new)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::KeyAlreadyExists), "{err:?}");
    let found = one.retrieve_many(&keys(&["new", "k/07"])).await.unwrap();
    assert!(found[0].is_none());
    assert_eq!(found[1].as_ref().unwrap().value, b"v7");

    let all: Vec<String> = batch.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(two.remove_many(&all).await.unwrap(), vec![true; 50]);
    assert!(one.list_keys(None, 100).await.unwrap().items.is_empty());
}

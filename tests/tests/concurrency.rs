//! Many instances of one application share its data exactly.

use ostore_tests::{Serves, Setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_requests_store_every_key_and_count_exactly() {
    let setup = Setup::new().app(
        "concurrency",
        &[
            ("/store/...", "store-flow", "store-flow"),
            ("/misbehave/...", "misbehave", "misbehave"),
        ],
    );
    let host = setup.start().await;

    let mut tasks = Vec::new();
    for i in 0..64 {
        let addr = host.addr;
        tasks.push(tokio::spawn(async move {
            let body = format!(r#"{{"key": "key-{i}", "value": "value-{i}"}}"#);
            ostore_tests::request(addr, "POST", "/store", body.into()).await
        }));
        tasks.push(tokio::spawn(async move {
            ostore_tests::request(addr, "POST", "/store/counter/increment", Default::default())
                .await
        }));
    }
    let mut counts = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        if let Ok(n) = r.text().parse::<i64>() {
            counts.push(n);
        }
    }
    // Every increment saw a different count: none was lost or doubled.
    counts.sort();
    assert_eq!(counts, (1..=64).collect::<Vec<_>>());
    assert_eq!(host.get("/store/counter").await.text(), "64");
    let listed = host.get("/store").await.text();
    for i in 0..64 {
        assert!(
            listed.lines().any(|k| k == format!("key-{i}")),
            "key-{i} missing"
        );
        assert_eq!(
            host.get(&format!("/store/key-{i}")).await.text(),
            format!("value-{i}")
        );
    }
    assert_eq!(listed.lines().count(), 65, "64 keys and the counter");

    // Each request got a fresh instance: guest globals never carry over.
    for _ in 0..5 {
        assert_eq!(host.get("/misbehave/instance-requests").await.text(), "1");
    }
}

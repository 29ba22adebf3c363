//! The Object Store tutorial flow, end to end: the root spin.toml's guest
//! behind a real host, driven over HTTP.

use std::time::Duration;

use ostore_tests::{Serves, Setup};

const TUTORIAL_BODY: &str = r#"{ "key": "TestKey01", "value": "This is an object store test" }"#;

fn tutorial() -> Setup {
    Setup::new().app("tutorial", &[("/store/...", "store-flow", "store-flow")])
}

/// Through `ostore up`, which a signal stops and SIGKILL kills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tutorial_call_saves_and_the_value_survives_a_restart() {
    let setup = tutorial();
    let start = || setup.start_process(&[]);
    let host = start();
    let r = host.request("POST", "/store", TUTORIAL_BODY).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        "KEY: TestKey01 AND VALUE: This is an object store test WERE SAVED OK"
    );
    let r = host.get("/store/TestKey01").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "This is an object store test")
    );

    // A clean stop and start keeps the value...
    host.stop();
    let host = start();
    let r = host.get("/store/TestKey01").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "This is an object store test")
    );

    // ...and so does a kill right after an acknowledged write: it was
    // durable before it was acknowledged.
    let r = host
        .request(
            "POST",
            "/store",
            r#"{"key": "after-kill", "value": "durable"}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    host.kill();
    let host = start();
    assert_eq!(host.get("/store/after-kill").await.text(), "durable");
    assert_eq!(host.get("/store/TestKey01").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_keys_deletes_and_malformed_bodies_are_answered_clearly() {
    let setup = tutorial();
    let host = setup.start().await;
    assert_eq!(host.get("/store/nope").await.status, 404);

    host.request("POST", "/store", r#"{"key": "k", "value": "v"}"#)
        .await;
    let r = host.request("DELETE", "/store/k", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(host.get("/store/k").await.status, 404);
    assert_eq!(host.request("DELETE", "/store/k", "").await.status, 404);

    for (body, says) in [
        ("", "empty"),
        ("not json", "not valid JSON"),
        ("[1, 2]", "not an object"),
        (r#"{"value": "v"}"#, "\"key\""),
        (r#"{"key": "k"}"#, "\"value\""),
        (r#"{"key": "k", "value": 5}"#, "must be a string"),
    ] {
        let r = host.request("POST", "/store", body).await;
        assert_eq!(r.status, 400, "{body:?}");
        assert!(r.text().contains(says), "{body:?} answered {:?}", r.text());
    }
    assert_eq!(
        host.get("/store").await.text(),
        "",
        "nothing was stored by bad requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_keys_and_values_are_refused_and_nothing_is_stored() {
    let setup = tutorial();
    let host = setup.start().await;
    let long_key = "k".repeat(1025);
    let r = host
        .request(
            "POST",
            "/store",
            format!(r#"{{"key": "{long_key}", "value": "v"}}"#),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("1024"), "{}", r.text());

    let ok_key = "k".repeat(1024);
    let r = host
        .request(
            "POST",
            "/store",
            format!(r#"{{"key": "{ok_key}", "value": "v"}}"#),
        )
        .await;
    assert_eq!(r.status, 200, "a 1024-byte key is allowed");

    let big = "x".repeat((10 << 20) + 1);
    let r = host
        .request(
            "POST",
            "/store",
            format!(r#"{{"key": "big", "value": "{big}"}}"#),
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(host.get("/store/big").await.status, 404);
    assert_eq!(host.get("/store").await.text(), format!("{ok_key}\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_with_a_one_second_ttl_is_gone_once_it_expires() {
    let setup = tutorial();
    let host = setup.start().await;
    let body = r#"{"key": "brief", "value": "v", "ttlSeconds": 1}"#;
    assert_eq!(host.request("POST", "/store", body).await.status, 200);
    let rolling = r#"{"key": "kept-alive", "value": "v", "ttlSeconds": 2, "rollingTtl": true}"#;
    assert_eq!(host.request("POST", "/store", rolling).await.status, 200);
    assert_eq!(
        host.request("POST", "/store", r#"{"key": "lasting", "value": "v"}"#)
            .await
            .status,
        200
    );
    assert_eq!(host.get("/store/brief").await.status, 200);
    // Reads keep the rolling key alive past its first window of 2 s.
    for _ in 0..3 {
        host.advance(Duration::from_millis(800));
        assert_eq!(host.get("/store/kept-alive").await.status, 200);
    }
    assert_eq!(host.get("/store/brief").await.status, 404);
    let mut listed: Vec<String> = host
        .get("/store")
        .await
        .text()
        .lines()
        .map(String::from)
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        ["kept-alive", "lasting"],
        "the expired key is not listed"
    );
}

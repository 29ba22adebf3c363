//! The OSv2-shaped REST API against a real host: tokens, scopes, values in
//! each type, paging, conditional writes, and the data the guests see.

use std::time::Duration;

use ostore::auth::{Principal, Scope};
use ostore_tests::{Serves, Setup, TestHost, app, host_log, run_ostore};

const BASE: &str = "/api/v1/organizations/default/environments/rest-app/stores";
const TUTORIAL: &str = "/_defaultUserObjectStore/partitions/ObjectStoreTutorial";

/// Two applications, `rest-app` (the tutorial flow at /store) and
/// `other-app`.
fn setup() -> Setup {
    Setup::new()
        .app("rest-app", &[("/store/...", "flow", "store-flow")])
        .app("other-app", &[("/other/...", "flow", "store-flow")])
}

fn json(r: &ostore_tests::Response) -> serde_json::Value {
    r.json()
}

async fn call(
    host: &TestHost,
    token: &str,
    method: &str,
    path: &str,
    body: &str,
) -> ostore_tests::Response {
    host.call(token, method, path, body.to_string()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_and_rest_see_the_same_values() {
    let s = setup();
    let creds = s.credential(app("rest-app"), &[]);
    let host = s.start().await;
    let t = host.token(&creds).await;

    let saved = r#"{"key": "TestKey01", "value": "This is an object store test"}"#;
    assert_eq!(host.request("POST", "/store", saved).await.status, 200);

    let stores = json(&call(&host, &t, "GET", BASE, "").await);
    assert_eq!(stores["values"][0]["storeId"], "_defaultUserObjectStore");
    assert_eq!(stores["values"][0]["defaultTtlSeconds"], 2_592_000);
    assert_eq!(stores["values"][0]["encrypted"], true);
    let partitions = json(
        &call(
            &host,
            &t,
            "GET",
            &format!("{BASE}/_defaultUserObjectStore/partitions"),
            "",
        )
        .await,
    );
    assert_eq!(
        partitions["values"],
        serde_json::json!(["ObjectStoreTutorial"])
    );
    let keys = json(&call(&host, &t, "GET", &format!("{BASE}{TUTORIAL}/keys"), "").await);
    let listed = &keys["values"][0];
    assert_eq!(keys["values"].as_array().unwrap().len(), 1);
    assert_eq!(
        (&listed["keyId"], &listed["valueType"], &listed["size"]),
        (
            &serde_json::json!("TestKey01"),
            &serde_json::json!("STRING"),
            &serde_json::json!(28)
        )
    );
    assert_eq!(listed["ttlSeconds"], 30 * 24 * 3600);
    assert!(listed["expiresAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(keys["nextPageToken"], serde_json::Value::Null);

    let r = call(
        &host,
        &t,
        "GET",
        &format!("{BASE}{TUTORIAL}/keys/TestKey01"),
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    let value = json(&r);
    assert_eq!(
        (
            &value["keyId"],
            &value["valueType"],
            &value["stringValue"],
            &value["size"]
        ),
        (
            &serde_json::json!("TestKey01"),
            &serde_json::json!("STRING"),
            &serde_json::json!("This is an object store test"),
            &serde_json::json!(28)
        )
    );
    assert_eq!(value["createdAt"], value["updatedAt"]);
    assert_eq!(value["expiresAt"], listed["expiresAt"]);
    assert_eq!(r.header("etag"), Some("\"1\""));

    let r = call(
        &host,
        &t,
        "DELETE",
        &format!("{BASE}{TUTORIAL}/keys/TestKey01"),
        "",
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        host.get("/store/TestKey01").await.status,
        404,
        "the guest no longer sees it"
    );
    let r = call(
        &host,
        &t,
        "GET",
        &format!("{BASE}{TUTORIAL}/keys/TestKey01"),
        "",
    )
    .await;
    assert_eq!((r.status, json(&r)["status"].as_u64()), (404, Some(404)));

    // Written through REST, read by the guest; every value type.
    let put = |key: &str, body: String| {
        let path = format!("{BASE}{TUTORIAL}/keys/{key}");
        let t = t.clone();
        let host = &host;
        async move { call(host, &t, "PUT", &path, &body).await }
    };
    let r = put(
        "greeting",
        r#"{"keyId":"greeting","valueType":"STRING","stringValue":"hello from REST"}"#.into(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(host.get("/store/greeting").await.text(), "hello from REST");
    let r = put(
        "bytes",
        r#"{"valueType":"BINARY","binaryValue":"AP8B"}"#.into(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(host.get("/store/bytes").await.body, [0x00, 0xff, 0x01]);
    let r = put("count", r#"{"valueType":"NUMBER","numberValue":41}"#.into()).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        host.request("POST", "/store/count/increment", "")
            .await
            .text(),
        "42"
    );
    let r = call(
        &host,
        &t,
        "GET",
        &format!("{BASE}{TUTORIAL}/keys/count"),
        "",
    )
    .await;
    assert_eq!(json(&r)["valueType"], "NUMBER");
    assert_eq!(json(&r)["numberValue"], 42);
    let r = call(
        &host,
        &t,
        "GET",
        &format!("{BASE}{TUTORIAL}/keys/bytes"),
        "",
    )
    .await;
    assert_eq!(json(&r)["binaryValue"], "AP8B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etags_make_writes_conditional() {
    let s = setup();
    let creds = s.credential(app("rest-app"), &[]);
    let host = s.start().await;
    let t = host.token(&creds).await;
    let path = format!("{BASE}{TUTORIAL}/keys/doc");
    let auth = format!("Bearer {t}");
    let put = |etag: Option<(&'static str, String)>, value: &'static str| {
        let mut headers = vec![("authorization", auth.clone())];
        if let Some((name, v)) = etag {
            headers.push((name, v));
        }
        let body = format!(r#"{{"valueType":"STRING","stringValue":"{value}"}}"#);
        let host = &host;
        let path = path.clone();
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            host.request_with("PUT", &path, &headers, body).await
        }
    };
    let r = put(Some(("if-none-match", "*".into())), "v1").await;
    assert_eq!((r.status, r.header("etag")), (200, Some("\"1\"")));
    assert_eq!(
        put(Some(("if-none-match", "*".into())), "again")
            .await
            .status,
        412
    );
    assert_eq!(
        put(Some(("if-match", "\"1\"".into())), "v2").await.status,
        200
    );
    let stale = put(Some(("if-match", "\"1\"".into())), "lost update").await;
    assert_eq!(stale.status, 412);
    let r = call(&host, &t, "GET", &path, "").await;
    assert_eq!(
        (json(&r)["stringValue"].as_str(), r.header("etag")),
        (Some("v2"), Some("\"2\""))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_credential_lists_only_its_environments_and_a_key_can_be_set_never_to_expire() {
    let s = setup();
    let admin = s.credential(Principal::Admin, &[]);
    let own = s.credential(app("rest-app"), &[Scope::ReadStore]);
    let host = s.start().await;
    let (admin, own) = (host.token(&admin).await, host.token(&own).await);

    let listed = |t: String| {
        let host = &host;
        async move {
            let r = call(host, &t, "GET", "/api/v1/environments", "").await;
            assert_eq!(r.status, 200, "{}", r.text());
            json(&r)["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["applicationName"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(admin.clone()).await, ["other-app", "rest-app"]);
    assert_eq!(listed(own).await, ["rest-app"]);
    let r = host.get("/api/v1/environments").await;
    assert_eq!(r.status, 401);

    let path = format!("{BASE}{TUTORIAL}/keys/forever");
    let r = call(
        &host,
        &admin,
        "PUT",
        &path,
        r#"{"valueType":"STRING","stringValue":"kept","ttlSeconds":null}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let value = json(&call(&host, &admin, "GET", &path, "").await);
    assert_eq!(
        (&value["expiresAt"], &value["ttlSeconds"]),
        (&serde_json::Value::Null, &serde_json::Value::Null)
    );
    let r = call(
        &host,
        &admin,
        "PUT",
        &path,
        r#"{"valueType":"STRING","stringValue":"kept","ttlSeconds":"soon"}"#,
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("or null for no expiry"), "{}", r.text());

    // A path with an empty last segment (what a browser sends for a key
    // named `..` or `.`) names nothing: it must not clear the partition.
    for path in [
        format!("{BASE}{TUTORIAL}/keys/"),
        format!("{BASE}{TUTORIAL}/"),
    ] {
        let r = call(&host, &admin, "DELETE", &path, "").await;
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert!(r.text().contains("empty segment"), "{}", r.text());
    }
    let value = json(&call(&host, &admin, "GET", &path, "").await);
    assert_eq!(value["stringValue"], "kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_through_2600_keys_returns_each_exactly_once() {
    let s = setup();
    let creds = s.credential(app("rest-app"), &[]);
    let host = s.start().await;
    let t = host.token(&creds).await;
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let (addr, auth) = (host.addr, format!("Bearer {t}"));
        tasks.push(tokio::spawn(async move {
            for i in (worker..2600).step_by(16) {
                let path =
                    format!("{BASE}/_defaultUserObjectStore/partitions/many/keys/key-{i:04}");
                let body = format!(r#"{{"valueType":"STRING","stringValue":"{i}"}}"#);
                let r = ostore_tests::request_with(
                    addr,
                    "PUT",
                    &path,
                    &[("authorization", &auth)],
                    body.into(),
                )
                .await;
                assert_eq!(r.status, 200, "{}", r.text());
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for page_size in [25, 1000] {
        let mut seen = Vec::new();
        let mut token_param = String::new();
        loop {
            let path = format!(
                "{BASE}/_defaultUserObjectStore/partitions/many/keys?pageSize={page_size}{token_param}"
            );
            let page = json(&call(&host, &t, "GET", &path, "").await);
            let values = page["values"].as_array().unwrap();
            assert!(values.len() <= page_size);
            seen.extend(
                values
                    .iter()
                    .map(|v| v["keyId"].as_str().unwrap().to_string()),
            );
            match page["nextPageToken"].as_str() {
                Some(next) => token_param = format!("&nextPageToken={next}"),
                None => break,
            }
        }
        assert_eq!(seen.len(), 2600, "page size {page_size}");
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 2600, "page size {page_size}: a key came twice");
    }
    let prefixed = json(
        &call(
            &host,
            &t,
            "GET",
            &format!(
                "{BASE}/_defaultUserObjectStore/partitions/many/keys?prefix=key-25&pageSize=1000"
            ),
            "",
        )
        .await,
    );
    assert_eq!(prefixed["values"].as_array().unwrap().len(), 100);
    let bad = call(
        &host,
        &t,
        "GET",
        &format!("{BASE}/_defaultUserObjectStore/partitions/many/keys?pageSize=5000"),
        "",
    )
    .await;
    assert_eq!(bad.status, 400);
    let bad = call(
        &host,
        &t,
        "GET",
        &format!("{BASE}/_defaultUserObjectStore/partitions/many/keys?nextPageToken=garbage!"),
        "",
    )
    .await;
    assert_eq!(bad.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_scopes_and_applications_are_checked() {
    let s = setup();
    let reader = s.credential(app("rest-app"), &[Scope::ReadStore]);
    let other = s.credential(app("other-app"), &[]);
    let admin = s.credential(Principal::Admin, &[]);
    let host = s
        .start_with(|c| c.token_lifetime = Duration::from_secs(1))
        .await;
    let keys = format!("{BASE}{TUTORIAL}/keys");

    assert_eq!(host.get(&keys).await.status, 401, "no token");
    let r = call(&host, "forged.token", "GET", &keys, "").await;
    assert_eq!(r.status, 401);
    assert_eq!(json(&r)["status"], 401);
    let wrong = format!(
        r#"{{"client_id":"{}","client_secret":"nope","grant_type":"client_credentials"}}"#,
        reader.id
    );
    assert_eq!(
        host.request("POST", "/accounts/api/v2/oauth2/token", wrong)
            .await
            .status,
        401
    );

    let t = host.token(&reader).await;
    assert_eq!(call(&host, &t, "GET", &keys, "").await.status, 200);
    let write = call(
        &host,
        &t,
        "PUT",
        &format!("{keys}/k"),
        r#"{"valueType":"STRING","stringValue":"x"}"#,
    )
    .await;
    assert_eq!(write.status, 403, "read:store cannot write");
    assert_eq!(
        call(
            &host,
            &t,
            "DELETE",
            &format!("{BASE}/_defaultUserObjectStore"),
            ""
        )
        .await
        .status,
        403
    );

    // Another application's credential finds nothing here, exactly as if
    // the environment did not exist; an admin reaches both.
    let t_other = host.token(&other).await;
    let foreign = call(&host, &t_other, "GET", &keys, "").await;
    let missing = call(
        &host,
        &t_other,
        "GET",
        "/api/v1/organizations/default/environments/no-such-env/stores",
        "",
    )
    .await;
    assert_eq!((foreign.status, missing.status), (404, 404));
    assert_eq!(
        json(&foreign)["message"]
            .as_str()
            .unwrap()
            .replace("rest-app", "X"),
        json(&missing)["message"]
            .as_str()
            .unwrap()
            .replace("no-such-env", "X")
    );
    let t_admin = host.token(&admin).await;
    assert_eq!(call(&host, &t_admin, "GET", &keys, "").await.status, 200);
    assert_eq!(
        call(
            &host,
            &t_admin,
            "GET",
            "/api/v1/organizations/default/environments/other-app/stores",
            ""
        )
        .await
        .status,
        200
    );

    // Tokens expire (lifetime 1 s here).
    host.advance(Duration::from_millis(2100));
    let r = call(&host, &t, "GET", &keys, "").await;
    assert_eq!(r.status, 401);
    assert!(json(&r)["message"].as_str().unwrap().contains("expired"));

    // Deleting a credential revokes its tokens at once.
    let fresh = host.token(&admin).await;
    let run = run_ostore(
        &[
            "credentials",
            "delete",
            &admin.id,
            "--data-dir",
            s.data.to_str().unwrap(),
        ],
        &[],
    );
    assert!(run.success, "{}", run.stderr);
    assert_eq!(call(&host, &fresh, "GET", &keys, "").await.status, 401);
    // No secret or token reached the log.
    let log = host_log();
    assert!(!log.contains(&reader.secret) && !log.contains(&fresh));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_are_created_configured_and_deleted() {
    let s = setup();
    let creds = s.credential(app("rest-app"), &[]);
    let host = s.start().await;
    let t = host.token(&creds).await;
    let orders = format!("{BASE}/orders");
    assert_eq!(call(&host, &t, "GET", &orders, "").await.status, 404);
    assert_eq!(
        call(
            &host,
            &t,
            "PUT",
            &format!("{orders}/partitions/p/keys/k"),
            r#"{"valueType":"STRING","stringValue":"v"}"#
        )
        .await
        .status,
        404,
        "a store must be created first"
    );
    let r = call(
        &host,
        &t,
        "PUT",
        &orders,
        r#"{"defaultTtlSeconds": 60, "isFixedTtl": false}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(json(&r)["defaultTtlSeconds"], 60);
    assert_eq!(json(&r)["isFixedTtl"], false);
    assert_eq!(
        call(
            &host,
            &t,
            "PUT",
            &format!("{orders}/partitions/p/keys/k"),
            r#"{"valueType":"STRING","stringValue":"v"}"#
        )
        .await
        .status,
        200
    );
    assert_eq!(
        call(&host, &t, "PUT", &orders, r#"{"defaultTtlSeconds": 0}"#)
            .await
            .status,
        400
    );
    assert_eq!(
        call(&host, &t, "PUT", &orders, "not json").await.status,
        400
    );

    // A store's own key limit, on top of the application's.
    let small = format!("{BASE}/small");
    let r = call(&host, &t, "PUT", &small, r#"{"maxKeys": 2}"#).await;
    assert_eq!((r.status, json(&r)["maxKeys"].as_u64()), (200, Some(2)));
    let value = r#"{"valueType":"STRING","stringValue":"v"}"#;
    for k in ["a", "b"] {
        let r = call(
            &host,
            &t,
            "PUT",
            &format!("{small}/partitions/p/keys/{k}"),
            value,
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let r = call(
        &host,
        &t,
        "PUT",
        &format!("{small}/partitions/p/keys/c"),
        value,
    )
    .await;
    assert_eq!(r.status, 429);
    assert!(
        json(&r)["message"]
            .as_str()
            .unwrap()
            .contains("the store may hold at most 2 keys")
    );
    let r = call(&host, &t, "GET", &small, "").await;
    assert_eq!(json(&r)["keyCount"], 2);
    assert_eq!(
        call(&host, &t, "PUT", &small, r#"{"maxKeys": "many"}"#)
            .await
            .status,
        400
    );

    let r = call(
        &host,
        &t,
        "DELETE",
        &format!("{orders}/partitions/p/keys"),
        "",
    )
    .await;
    assert_eq!(r.status, 204, "clear");
    assert_eq!(
        call(
            &host,
            &t,
            "GET",
            &format!("{orders}/partitions/p/keys/k"),
            ""
        )
        .await
        .status,
        404
    );
    assert_eq!(call(&host, &t, "DELETE", &orders, "").await.status, 204);
    assert_eq!(call(&host, &t, "GET", &orders, "").await.status, 404);
    assert_eq!(call(&host, &t, "DELETE", &orders, "").await.status, 404);
}

/// Every page of a listing, following `nextPageToken`, one item a page.
async fn list_all(host: &TestHost, t: &str, url: &str, item: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut page_url = format!("{url}?pageSize=2");
        if let Some(token) = &token {
            page_url.push_str(&format!("&nextPageToken={token}"));
        }
        let r = call(host, t, "GET", &page_url, "").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let body = json(&r);
        for value in body["values"].as_array().unwrap() {
            let name = if item.is_empty() { value } else { &value[item] };
            names.push(name.as_str().unwrap().to_string());
        }
        match body["nextPageToken"].as_str() {
            Some(next) => token = Some(next.to_string()),
            None => return names,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_and_partitions_list_in_byte_order_of_their_names() {
    let s = setup();
    let creds = s.credential(app("rest-app"), &[]);
    let host = s.start().await;
    let t = host.token(&creds).await;
    // Created in an order that is neither theirs nor their tags'.
    let created = ["b", "A", "z", "0", "a", "B"];
    for name in created {
        let r = call(&host, &t, "PUT", &format!("{BASE}/{name}"), "{}").await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let stores = list_all(&host, &t, BASE, "storeId").await;
    let mut sorted = stores.clone();
    sorted.sort();
    assert_eq!(stores, sorted, "stores in byte order of their names");
    for name in created {
        assert!(stores.iter().any(|s| s == name), "{name} in {stores:?}");
    }

    let value = r#"{"valueType":"STRING","stringValue":"v"}"#;
    for partition in ["p-b", "P", "p-a", "0"] {
        let url = format!("{BASE}/b/partitions/{partition}/keys/k");
        assert_eq!(call(&host, &t, "PUT", &url, value).await.status, 200);
    }
    let partitions_url = format!("{BASE}/b/partitions");
    let partitions = list_all(&host, &t, &partitions_url, "").await;
    assert_eq!(partitions, ["0", "P", "p-a", "p-b"]);

    // A page token resumes only its own listing.
    let r = call(&host, &t, "GET", &format!("{BASE}?pageSize=1"), "").await;
    let token = json(&r)["nextPageToken"].as_str().unwrap().to_string();
    let foreign = format!("{partitions_url}?pageSize=1&nextPageToken={token}");
    assert_eq!(call(&host, &t, "GET", &foreign, "").await.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_every_guest_and_rest_request_exactly_across_a_restart() {
    let s = setup();
    let creds = s.credential(app("rest-app"), &[]);
    let host = s.start().await;
    let t = host.token(&creds).await;
    for i in 0..5 {
        let body = format!(r#"{{"key": "k{i}", "value": "v"}}"#);
        assert_eq!(host.request("POST", "/store", body).await.status, 200);
    }
    for i in 0..3 {
        assert_eq!(host.get(&format!("/store/k{i}")).await.status, 200);
    }
    for i in 0..4 {
        let r = call(&host, &t, "GET", &format!("{BASE}{TUTORIAL}/keys/k{i}"), "").await;
        assert_eq!(r.status, 200);
    }
    for i in 0..2 {
        let body = r#"{"valueType":"STRING","stringValue":"x"}"#;
        let r = call(
            &host,
            &t,
            "PUT",
            &format!("{BASE}{TUTORIAL}/keys/r{i}"),
            body,
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let expected = 5 + 3 + 4 + 2;
    let today = {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        secs / 86_400
    };
    let check = |host: &TestHost, t: String| {
        let host_addr = host.addr;
        async move {
            for level in [
                "/api/v1/stats/organizations/default".to_string(),
                "/api/v1/stats/organizations/default/environments/rest-app".to_string(),
                "/api/v1/stats/organizations/default/environments/rest-app/stores/_defaultUserObjectStore".to_string(),
            ] {
                let path = format!("{level}?period=1day");
                let auth = format!("Bearer {t}");
                let r = ostore_tests::request_with(host_addr, "GET", &path, &[("authorization", &auth)], Default::default()).await;
                assert_eq!(r.status, 200, "{path}: {}", r.text());
                let points = json(&r);
                let points = points.as_array().unwrap();
                assert_eq!(points.len(), 30, "30 days by default");
                let last = points.last().unwrap();
                assert_eq!(last["objectStoreRequestCount"], expected, "{path}: {last}");
                assert_eq!(last["keyCount"], 7, "{path}");
                assert!(last["bytesStored"].as_u64().unwrap() > 0);
                let total: u64 = points.iter().map(|p| p["objectStoreRequestCount"].as_u64().unwrap()).sum();
                assert_eq!(total, expected, "{path}: no other day has counts");
            }
        }
    };
    check(&host, t.clone()).await;
    let month = call(
        &host,
        &t,
        "GET",
        "/api/v1/stats/organizations/default/environments/rest-app?period=1month",
        "",
    )
    .await;
    let month = json(&month);
    assert_eq!(
        month.as_array().unwrap().last().unwrap()["objectStoreRequestCount"],
        expected
    );
    assert!(
        month.as_array().unwrap().last().unwrap()["timeStamp"]
            .as_str()
            .unwrap()
            .ends_with("-01T00:00:00Z")
    );
    let _ = today;

    host.stop().await;
    let host = s.start().await;
    let t = host.token(&creds).await;
    check(&host, t.clone()).await;

    // Wrong scope, other application, bad parameters.
    let reader = s.credential(app("rest-app"), &[Scope::ReadStore]);
    let t_reader = host.token(&reader).await;
    let r = call(
        &host,
        &t_reader,
        "GET",
        "/api/v1/stats/organizations/default/environments/rest-app",
        "",
    )
    .await;
    assert_eq!(r.status, 403);
    let r = call(
        &host,
        &t,
        "GET",
        "/api/v1/stats/organizations/default/environments/other-app",
        "",
    )
    .await;
    assert_eq!(r.status, 404);
    for q in [
        "period=1year",
        "startDate=2026-02-30",
        "startDate=2026-12-01&endDate=2026-11-01",
        "startDate=1990-01-01&endDate=2026-01-01",
    ] {
        let r = call(
            &host,
            &t,
            "GET",
            &format!("/api/v1/stats/organizations/default?{q}"),
            "",
        )
        .await;
        assert_eq!(r.status, 400, "{q}");
    }

    let metrics = call(&host, &t, "GET", "/metrics", "").await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    assert!(
        text.contains(&format!(
            "ostore_requests_total{{organization=\"default\",environment=\"rest-app\"}} {expected}"
        )),
        "{text}"
    );
    assert!(
        text.contains("ostore_keys{organization=\"default\",environment=\"rest-app\"} 7"),
        "{text}"
    );
    assert!(
        !text.contains("other-app"),
        "an application token sees only its own application"
    );
    assert_eq!(host.get("/metrics").await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_over_the_rate_limit_gets_429_and_refused_writes_store_nothing() {
    let s = setup();
    let creds = s.credential(app("rest-app"), &[]);
    let host = s
        .start_with(|c| {
            c.limits.requests_per_second = Some(5);
            c.limits.max_keys = Some(8);
        })
        .await;
    let t = host.token(&creds).await;
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for i in 0..30 {
        let body = r#"{"valueType":"STRING","stringValue":"x"}"#;
        let r = call(
            &host,
            &t,
            "PUT",
            &format!("{BASE}{TUTORIAL}/keys/flood-{i}"),
            body,
        )
        .await;
        match r.status {
            200 => accepted.push(i),
            429 => {
                let after: u64 = r
                    .header("retry-after")
                    .expect("Retry-After")
                    .parse()
                    .unwrap();
                assert!((1..=2).contains(&after));
                refused.push(i);
            }
            other => panic!("status {other}: {}", r.text()),
        }
    }
    assert!(
        refused.len() >= 20,
        "only {} of 30 were limited",
        refused.len()
    );
    assert!(accepted.len() >= 5);
    host.advance(Duration::from_millis(1500));
    let keys = json(
        &call(
            &host,
            &t,
            "GET",
            &format!("{BASE}{TUTORIAL}/keys?pageSize=100"),
            "",
        )
        .await,
    );
    let mut listed: Vec<String> = keys["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["keyId"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    let mut want: Vec<String> = accepted.iter().map(|i| format!("flood-{i}")).collect();
    want.sort();
    assert_eq!(listed, want, "exactly the accepted writes are stored");

    // The guest is limited by the same budget...
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(host.get("/store/flood-0").await.status);
    }
    assert!(
        statuses.contains(&429),
        "the guest shares the application's request rate: {statuses:?}"
    );
    // ...and by the same key quota (8 keys).
    let mut quota_hit = false;
    for i in 0..20 {
        host.advance(Duration::from_millis(250));
        let body = format!(r#"{{"key": "g{i}", "value": "v"}}"#);
        let r = host.request("POST", "/store", body).await;
        match r.status {
            200 => {}
            // The one status table: a quota is 429, as from the REST API.
            429 if r.text().contains("quota exceeded") => {
                quota_hit = true;
                break;
            }
            other => panic!("{other}: {}", r.text()),
        }
    }
    assert!(quota_hit, "the 8-key quota stops the guest");
    host.advance(Duration::from_millis(1500));
    let keys = json(
        &call(
            &host,
            &t,
            "GET",
            &format!("{BASE}{TUTORIAL}/keys?pageSize=100"),
            "",
        )
        .await,
    );
    assert_eq!(keys["values"].as_array().unwrap().len(), 8);
    host.advance(Duration::from_millis(1000));
    let r = call(
        &host,
        &t,
        "PUT",
        &format!("{BASE}{TUTORIAL}/keys/one-more"),
        r#"{"valueType":"STRING","stringValue":"x"}"#,
    )
    .await;
    assert_eq!(r.status, 429);
    assert!(json(&r)["message"].as_str().unwrap().contains("quota"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_spelled_in_json_escapes_is_limited_by_its_decoded_size() {
    let s = setup();
    let creds = s.credential(app("rest-app"), &[]);
    let host = s.start().await;
    let t = host.token(&creds).await;
    let path = format!("{BASE}{TUTORIAL}/keys/escaped");

    // 3 MiB of control characters, each six bytes of JSON (`\u0001`): an
    // 18 MiB body for a value well below the 10 MiB limit.
    let chars = 3 << 20;
    let body = format!(
        r#"{{"valueType":"STRING","stringValue":"{}"}}"#,
        "\\u0001".repeat(chars)
    );
    let r = call(&host, &t, "PUT", &path, &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(json(&r)["size"], chars);
    let read = json(&call(&host, &t, "GET", &path, "").await);
    assert_eq!(read["stringValue"], "\u{1}".repeat(chars));

    // The limit is the decoded value's: one byte past it is refused by
    // name, however it is spelled, and nothing is stored.
    let over = format!(
        r#"{{"valueType":"STRING","stringValue":"{}"}}"#,
        "a".repeat((10 << 20) + 1)
    );
    let r = call(
        &host,
        &t,
        "PUT",
        &format!("{BASE}{TUTORIAL}/keys/over"),
        &over,
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(json(&r)["error"], "value-too-large");
    let r = call(&host, &t, "GET", &format!("{BASE}{TUTORIAL}/keys/over"), "").await;
    assert_eq!(r.status, 404);
}

//! The OpenAPI document describes the real routes: every documented
//! operation, called on a real server, answers a documented status with a
//! body of the documented shape.

use serde_json::{Value, json};

use ostore::auth::Principal;
use ostore_tests::{Serves, Setup};

/// Resolves a `$ref` within the document.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let mut node = doc;
            for part in r.trim_start_matches("#/").split('/') {
                node = &node[part];
            }
            resolve(doc, node)
        }
        None => schema,
    }
}

/// Checks `value` against the subset of JSON Schema the document uses.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str) {
    let schema = resolve(doc, schema);
    if value.is_null() {
        assert!(
            schema["nullable"] == true,
            "{at}: null where the schema does not allow it"
        );
        return;
    }
    match schema["type"].as_str() {
        Some("object") => {
            let object = value
                .as_object()
                .unwrap_or_else(|| panic!("{at}: not an object: {value}"));
            for required in schema["required"].as_array().into_iter().flatten() {
                let name = required.as_str().unwrap();
                assert!(object.contains_key(name), "{at}: missing {name} in {value}");
            }
            if let Some(props) = schema["properties"].as_object() {
                for (name, v) in object {
                    let prop = props
                        .get(name)
                        .unwrap_or_else(|| panic!("{at}: undocumented {name}"));
                    check(doc, prop, v, &format!("{at}.{name}"));
                }
            }
        }
        Some("array") => {
            for (i, item) in value
                .as_array()
                .unwrap_or_else(|| panic!("{at}: not an array"))
                .iter()
                .enumerate()
            {
                check(doc, &schema["items"], item, &format!("{at}[{i}]"));
            }
        }
        Some("string") => assert!(value.is_string(), "{at}: not a string: {value}"),
        Some("integer") => assert!(
            value.is_u64() || value.is_i64(),
            "{at}: not an integer: {value}"
        ),
        Some("number") => assert!(value.is_number(), "{at}: not a number: {value}"),
        Some("boolean") => assert!(value.is_boolean(), "{at}: not a boolean: {value}"),
        _ => {}
    }
    if let Some(allowed) = schema["enum"].as_array() {
        assert!(allowed.contains(value), "{at}: {value} not in {allowed:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_answers_as_documented() {
    let setup = Setup::new().app("api-app", &[("/hello", "hello", "hello")]);
    let credential = setup.credential(Principal::Admin, &[]);
    let (id, secret) = (credential.id.clone(), credential.secret.clone());
    let host = setup.start().await;

    let served = host.get("/api/v1/openapi.json").await;
    assert_eq!(served.status, 200);
    let doc: Value = serde_json::from_slice(&served.body).unwrap();
    assert_eq!(
        doc,
        serde_json::from_str::<Value>(ostore::api::OPENAPI).unwrap()
    );
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));

    let token_body =
        json!({"client_id": id, "client_secret": secret, "grant_type": "client_credentials"});
    let token = host.token(&credential).await;
    let auth = format!("Bearer {token}");

    // The route table and the document list the same operations.
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["post", "put", "get", "delete", "patch", "head"] {
            if item.get(method).is_some() {
                documented.push((path.clone(), method.to_string()));
            }
        }
    }
    documented.sort();
    // Operations in an order where each finds what it needs: writes first,
    // then reads, then deletes from the deepest path up.
    let mut operations: Vec<(String, String)> = ostore::api::routes::ROUTES
        .iter()
        .map(|r| (r.path.to_string(), r.method.as_str().to_lowercase()))
        .collect();
    operations.sort();
    assert_eq!(
        operations, documented,
        "the route table against the document"
    );
    let rank = |(path, method): &(String, String)| match method.as_str() {
        "post" | "put" => (0, path.len() as i64),
        "get" => (1, 0),
        _ => (2, -(path.len() as i64)),
    };
    operations.sort_by_key(rank);
    assert!(
        operations.len() >= 18,
        "{} operations documented",
        operations.len()
    );

    for (path, method) in &operations {
        let operation = &doc["paths"][path][method];
        let url = path
            .replace("{org}", "default")
            .replace("{env}", "api-app")
            .replace("{store}", "scratch")
            .replace("{partition}", "P")
            .replace("{key}", "k");
        let body = match operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
        {
            Some("#/components/schemas/TokenRequest") => token_body.to_string(),
            Some("#/components/schemas/StoreConfig") => r#"{"defaultTtlSeconds": 60}"#.into(),
            Some("#/components/schemas/ValueWrite") => {
                r#"{"valueType":"STRING","stringValue":"v"}"#.into()
            }
            Some(other) => panic!("no example body for {other}"),
            None => String::new(),
        };
        let r = host
            .request_with(
                &method.to_uppercase(),
                &url,
                &[("authorization", &auth)],
                body,
            )
            .await;
        let documented = &operation["responses"][r.status.to_string()];
        assert!(
            documented.is_object(),
            "{method} {url} answered undocumented {}: {}",
            r.status,
            r.text()
        );
        assert!(
            (200..300).contains(&r.status),
            "{method} {url}: {} {}",
            r.status,
            r.text()
        );
        let documented = resolve(&doc, documented);
        if let Some(schema) = documented["content"]["application/json"]["schema"].as_object() {
            let value: Value = serde_json::from_slice(&r.body)
                .unwrap_or_else(|e| panic!("{method} {url}: not JSON ({e}): {}", r.text()));
            check(
                &doc,
                &Value::Object(schema.clone()),
                &value,
                &format!("{method} {url}"),
            );
        }
        if documented["headers"]["ETag"].is_object() {
            assert!(r.header("etag").is_some(), "{method} {url}: no ETag");
        }
    }

    // Error answers have the documented shape too.
    let r = host
        .get("/api/v1/organizations/default/environments/api-app/stores")
        .await;
    assert_eq!(r.status, 401);
    check(
        &doc,
        &json!({"$ref": "#/components/schemas/Error"}),
        &serde_json::from_slice(&r.body).unwrap(),
        "401",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_with_a_control_character_is_a_documented_400_on_every_operation() {
    let setup = Setup::new().app("api-app", &[("/hello", "hello", "hello")]);
    let credential = setup.credential(Principal::Admin, &[]);
    let host = setup.start().await;
    let auth = format!("Bearer {}", host.token(&credential).await);
    let doc: Value = serde_json::from_str(ostore::api::OPENAPI).unwrap();

    let mut checked = 0;
    for route in ostore::api::routes::ROUTES {
        let method = route.method.as_str();
        let operation = &doc["paths"][route.path][method.to_lowercase()];
        for bad in ["{store}", "{partition}", "{key}"] {
            if !route.path.contains(bad) {
                continue;
            }
            // %01 decodes to U+0001, which no name may hold; every other
            // name is one that exists.
            let url = route
                .path
                .replace(bad, "bad%01name")
                .replace("{org}", "default")
                .replace("{env}", "api-app")
                .replace("{store}", "_defaultUserObjectStore")
                .replace("{partition}", "P")
                .replace("{key}", "k");
            let body = match (method, route.path.ends_with("{key}")) {
                ("PUT" | "POST", true) => r#"{"valueType":"STRING","stringValue":"v"}"#,
                _ => "",
            };
            let r = host
                .request_with(method, &url, &[("authorization", &auth)], body.to_string())
                .await;
            assert!(
                operation["responses"][r.status.to_string()].is_object(),
                "{method} {url} answered undocumented {}: {}",
                r.status,
                r.text()
            );
            // The Stats API reports on names it is given (none used, none
            // counted) rather than checking them.
            if !route.path.starts_with("/api/v1/stats/") {
                assert_eq!(r.status, 400, "{method} {url}: {}", r.text());
                let error: Value = r.json();
                assert_eq!(error["error"], "invalid-key", "{method} {url}");
                check(
                    &doc,
                    &json!({"$ref": "#/components/schemas/Error"}),
                    &error,
                    &url,
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} operations and names checked");
}

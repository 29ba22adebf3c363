//! A Spin HTTP app on spin-sdk 7 (`wasi:http/handler@0.3`, `spin:key-value@3.0.0`)
//! that ostore runs unchanged: the key-value contract of `route.rs`, plus
//! `/selftest`, which drives the whole key-value API from inside the guest.

mod route;

use anyhow::{Context, ensure};
use bytes::Bytes;
use route::Op;
use serde::{Deserialize, Serialize};
use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{FullBody, Request, Response};
use spin_sdk::http_service;
use spin_sdk::key_value::{Error, Store};

type Reply = Response<FullBody<Bytes>>;

/// The document `/json/<key>` stores through the SDK's JSON helpers.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Item {
    name: String,
    count: i64,
}

#[http_service]
async fn handle(request: Request) -> Reply {
    let path_info = request
        .headers()
        .get("spin-path-info")
        .and_then(|value| value.to_str().ok());
    let uri = request.uri();
    let routed = match route::route(
        request.method().as_str(),
        path_info,
        uri.path(),
        uri.query().unwrap_or(""),
    ) {
        Ok(routed) => routed,
        Err(status) => return reply(status, ""),
    };
    if let Op::Variable(name) = &routed.op {
        return match spin_sdk::variables::get(name).await {
            Ok(value) => reply(200, value),
            Err(spin_sdk::variables::Error::Undefined(e)) => reply(404, e),
            Err(spin_sdk::variables::Error::InvalidName(e)) => reply(400, e),
            Err(e) => reply(500, e.to_string()),
        };
    }
    if let Op::File(path) = &routed.op {
        return match std::fs::read(path) {
            Ok(bytes) => reply(200, bytes),
            Err(e) => reply(404, e.to_string()),
        };
    }
    let store = match Store::open(&routed.label).await {
        Ok(store) => store,
        Err(e) => return store_error(e),
    };
    let result = match routed.op {
        Op::Get(key) => store.get(key).await.map(|value| match value {
            Some(value) => reply(200, value),
            None => reply(404, ""),
        }),
        Op::Put(key) => match request.into_body().bytes().await {
            Ok(body) => store.set(key, body).await.map(|()| reply(200, "")),
            Err(e) => Ok(reply(400, e.to_string())),
        },
        Op::Delete(key) => store.delete(key).await.map(|()| reply(200, "")),
        Op::Exists(key) => store
            .exists(key)
            .await
            .map(|exists| reply(200, exists.to_string())),
        Op::Keys => store.get_keys().await.collect().await.map(|mut keys| {
            keys.sort();
            reply(
                200,
                keys.iter()
                    .map(|key| format!("{key}\n"))
                    .collect::<String>(),
            )
        }),
        Op::GetJson(key) => match store.get_json::<Item>(key).await {
            Ok(Some(item)) => Ok(json(&item)),
            Ok(None) => Ok(reply(404, "")),
            Err(e) => Ok(anyhow_error(e)),
        },
        Op::PutJson(key) => {
            let body = match request.into_body().bytes().await {
                Ok(body) => body,
                Err(e) => return reply(400, e.to_string()),
            };
            match serde_json::from_slice::<Item>(&body) {
                Ok(item) => Ok(match store.set_json(key, &item).await {
                    Ok(()) => reply(200, ""),
                    Err(e) => anyhow_error(e),
                }),
                Err(e) => Ok(reply(400, e.to_string())),
            }
        }
        Op::File(_) | Op::Variable(_) => unreachable!("answered before the store is opened"),
        Op::SelfTest => Ok(match selftest(&store).await {
            Ok(()) => reply(200, "ok"),
            Err(e) => reply(500, format!("{e:#}")),
        }),
    };
    result.unwrap_or_else(store_error)
}

fn reply(status: u16, body: impl Into<Bytes>) -> Reply {
    Response::builder()
        .status(status)
        .body(FullBody::new(body.into()))
        .expect("a valid status and no headers")
}

fn json(item: &Item) -> Reply {
    let body = serde_json::to_vec(item).expect("Item serializes");
    let mut reply = reply(200, body);
    reply.headers_mut().insert(
        "content-type",
        spin_sdk::http::HeaderValue::from_static("application/json"),
    );
    reply
}

/// Answers a key-value error with its WIT case name: 403 for
/// `access-denied`, 404 for `no-such-store`, 500 for the rest.
fn store_error(error: Error) -> Reply {
    match error {
        Error::AccessDenied => reply(403, "access-denied"),
        Error::NoSuchStore => reply(404, "no-such-store"),
        Error::StoreTableFull => reply(500, "store-table-full"),
        Error::Other(text) => reply(500, format!("other: {text}")),
    }
}

/// The JSON helpers wrap store errors in `anyhow`; unwrap them to map them.
fn anyhow_error(error: anyhow::Error) -> Reply {
    match error.downcast::<Error>() {
        Ok(error) => store_error(error),
        Err(error) => reply(500, format!("{error:#}")),
    }
}

const KEY: &str = "selftest-value";
const JSON_KEY: &str = "selftest-json";
const ABSENT_KEY: &str = "selftest-absent";

/// Checks every key-value call on a store (`default` unless `?store=` says
/// otherwise), then removes its keys whatever happened, so that a failed run
/// leaves nothing behind.
async fn selftest(store: &Store) -> anyhow::Result<()> {
    let result = checks(store).await;
    for key in [KEY, JSON_KEY] {
        store.delete(key).await.context("clean up")?;
    }
    result
}

async fn checks(store: &Store) -> anyhow::Result<()> {
    // Deleting a key that is not there is no error, as in Spin.
    store.delete(ABSENT_KEY).await.context("delete absent")?;
    ensure!(
        store.get(ABSENT_KEY).await.context("get absent")?.is_none(),
        "absent key has a value"
    );
    ensure!(
        !store.exists(ABSENT_KEY).await.context("exists absent")?,
        "absent key exists"
    );

    store.set(KEY, b"first").await.context("set")?;
    store.set(KEY, b"second").await.context("overwrite")?;
    let value = store.get(KEY).await.context("get")?;
    ensure!(
        value.as_deref() == Some(&b"second"[..]),
        "get gave {value:?}, not the last set"
    );
    ensure!(
        store.exists(KEY).await.context("exists")?,
        "a set key does not exist"
    );

    let item = Item {
        name: "selftest".into(),
        count: 42,
    };
    store.set_json(JSON_KEY, &item).await.context("set_json")?;
    let back = store.get_json::<Item>(JSON_KEY).await.context("get_json")?;
    ensure!(back.as_ref() == Some(&item), "get_json gave {back:?}");

    let keys = store.get_keys().await.collect().await.context("get_keys")?;
    for key in [KEY, JSON_KEY] {
        ensure!(keys.iter().any(|k| k == key), "get_keys lacks {key}");
    }
    ensure!(
        !keys.iter().any(|k| k == ABSENT_KEY),
        "get_keys lists {ABSENT_KEY}"
    );

    store.delete(KEY).await.context("delete")?;
    ensure!(
        store.get(KEY).await.context("get deleted")?.is_none(),
        "a deleted key has a value"
    );
    ensure!(
        !store.exists(KEY).await.context("exists deleted")?,
        "a deleted key exists"
    );
    let keys = store
        .get_keys()
        .await
        .collect()
        .await
        .context("get_keys after delete")?;
    ensure!(
        !keys.iter().any(|k| k == KEY),
        "get_keys lists a deleted key"
    );
    Ok(())
}

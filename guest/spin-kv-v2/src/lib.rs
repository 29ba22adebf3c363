//! The `spin-kv-v3` app again on spin-sdk 5.2 (`wasi:http/incoming-handler`
//! of WASI 0.2, `fermyon:spin/key-value@2.0.0`), synchronous, so that one
//! test drives both generations of Spin apps through the same contract.

// The contract itself is shared, not copied, so the two apps cannot differ.
#[path = "../../spin-kv-v3/src/route.rs"]
mod route;

use anyhow::{Context, ensure};
use route::Op;
use serde::{Deserialize, Serialize};
use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;
use spin_sdk::key_value::{Error, Store};

/// The document `/json/<key>` stores through the SDK's JSON helpers.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Item {
    name: String,
    count: i64,
}

#[http_component]
fn handle(request: Request) -> Response {
    let path_info = request
        .header("spin-path-info")
        .and_then(|value| value.as_str());
    let routed = match route::route(
        &request.method().to_string(),
        path_info,
        request.path(),
        request.query(),
    ) {
        Ok(routed) => routed,
        Err(status) => return Response::new(status, ()),
    };
    if let Op::Variable(name) = &routed.op {
        return match spin_sdk::variables::get(name) {
            Ok(value) => Response::new(200, value),
            Err(spin_sdk::variables::Error::Undefined(e)) => Response::new(404, e),
            Err(spin_sdk::variables::Error::InvalidName(e)) => Response::new(400, e),
            Err(e) => Response::new(500, e.to_string()),
        };
    }
    if let Op::File(path) = &routed.op {
        return match std::fs::read(path) {
            Ok(bytes) => Response::new(200, bytes),
            Err(e) => Response::new(404, e.to_string()),
        };
    }
    let store = match Store::open(&routed.label) {
        Ok(store) => store,
        Err(e) => return store_error(e),
    };
    let result = match routed.op {
        Op::Get(key) => store.get(&key).map(|value| match value {
            Some(value) => Response::new(200, value),
            None => Response::new(404, ()),
        }),
        Op::Put(key) => store
            .set(&key, request.body())
            .map(|()| Response::new(200, ())),
        Op::Delete(key) => store.delete(&key).map(|()| Response::new(200, ())),
        Op::Exists(key) => store
            .exists(&key)
            .map(|exists| Response::new(200, exists.to_string())),
        Op::Keys => store.get_keys().map(|mut keys| {
            keys.sort();
            let body: String = keys.iter().map(|key| format!("{key}\n")).collect();
            Response::new(200, body)
        }),
        Op::GetJson(key) => Ok(match store.get_json::<Item>(&key) {
            Ok(Some(item)) => Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&item).expect("Item serializes"))
                .build(),
            Ok(None) => Response::new(404, ()),
            Err(e) => anyhow_error(e),
        }),
        Op::PutJson(key) => Ok(match serde_json::from_slice::<Item>(request.body()) {
            Ok(item) => match store.set_json(&key, &item) {
                Ok(()) => Response::new(200, ()),
                Err(e) => anyhow_error(e),
            },
            Err(e) => Response::new(400, e.to_string()),
        }),
        Op::File(_) | Op::Variable(_) => unreachable!("answered before the store is opened"),
        Op::SelfTest => Ok(match selftest(&store) {
            Ok(()) => Response::new(200, "ok"),
            Err(e) => Response::new(500, format!("{e:#}")),
        }),
    };
    result.unwrap_or_else(store_error)
}

/// Answers a key-value error with its WIT case name: 403 for
/// `access-denied`, 404 for `no-such-store`, 500 for the rest.
fn store_error(error: Error) -> Response {
    match error {
        Error::AccessDenied => Response::new(403, "access-denied"),
        Error::NoSuchStore => Response::new(404, "no-such-store"),
        Error::StoreTableFull => Response::new(500, "store-table-full"),
        Error::Other(text) => Response::new(500, format!("other: {text}")),
    }
}

/// The JSON helpers wrap store errors in `anyhow`; unwrap them to map them.
fn anyhow_error(error: anyhow::Error) -> Response {
    match error.downcast::<Error>() {
        Ok(error) => store_error(error),
        Err(error) => Response::new(500, format!("{error:#}")),
    }
}

const KEY: &str = "selftest-value";
const JSON_KEY: &str = "selftest-json";
const ABSENT_KEY: &str = "selftest-absent";

/// Checks every key-value call on a store (`default` unless `?store=` says
/// otherwise), then removes its keys whatever happened, so that a failed run
/// leaves nothing behind.
fn selftest(store: &Store) -> anyhow::Result<()> {
    let result = checks(store);
    for key in [KEY, JSON_KEY] {
        store.delete(key).context("clean up")?;
    }
    result
}

fn checks(store: &Store) -> anyhow::Result<()> {
    // Deleting a key that is not there is no error, as in Spin.
    store.delete(ABSENT_KEY).context("delete absent")?;
    ensure!(
        store.get(ABSENT_KEY).context("get absent")?.is_none(),
        "absent key has a value"
    );
    ensure!(
        !store.exists(ABSENT_KEY).context("exists absent")?,
        "absent key exists"
    );

    store.set(KEY, b"first").context("set")?;
    store.set(KEY, b"second").context("overwrite")?;
    let value = store.get(KEY).context("get")?;
    ensure!(
        value.as_deref() == Some(&b"second"[..]),
        "get gave {value:?}, not the last set"
    );
    ensure!(
        store.exists(KEY).context("exists")?,
        "a set key does not exist"
    );

    let item = Item {
        name: "selftest".into(),
        count: 42,
    };
    store.set_json(JSON_KEY, &item).context("set_json")?;
    let back = store.get_json::<Item>(JSON_KEY).context("get_json")?;
    ensure!(back.as_ref() == Some(&item), "get_json gave {back:?}");

    let keys = store.get_keys().context("get_keys")?;
    for key in [KEY, JSON_KEY] {
        ensure!(keys.iter().any(|k| k == key), "get_keys lacks {key}");
    }
    ensure!(
        !keys.iter().any(|k| k == ABSENT_KEY),
        "get_keys lists {ABSENT_KEY}"
    );

    store.delete(KEY).context("delete")?;
    ensure!(
        store.get(KEY).context("get deleted")?.is_none(),
        "a deleted key has a value"
    );
    ensure!(
        !store.exists(KEY).context("exists deleted")?,
        "a deleted key exists"
    );
    let keys = store.get_keys().context("get_keys after delete")?;
    ensure!(
        !keys.iter().any(|k| k == KEY),
        "get_keys lists a deleted key"
    );
    Ok(())
}

//! A guest of `wasi:keyvalue@0.2.0-draft2` (store, atomics, batch), for the
//! host's tests of that interface. It opens the store label `default`.
//!
//! * `POST /wasi-kv/increment/<key>` adds 1 atomically and answers the new
//!   value.
//! * `GET /wasi-kv/cas-conflict/<key>` starts a compare-and-swap, changes the
//!   key behind its back, then swaps: answers `conflict <current>` when the
//!   swap reports the change (as it must), `swapped` otherwise.
//! * `GET /wasi-kv/cas/<key>` swaps `<old>+1` in with no interference and
//!   answers `swapped`.
//! * `PUT /wasi-kv/batch` stores `a=1`, `b=2`, reads both back, deletes both
//!   and answers what it read.

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "wasi:keyvalue/imports@0.2.0-draft2",
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store};
use ostore_sdk::http::{Handler, Request, Response};

struct WasiKv;

impl Handler for WasiKv {
    fn handle(request: Request) -> Response {
        let path = request.path().to_owned();
        let result = match path.strip_prefix("/wasi-kv/") {
            Some(rest) if rest.starts_with("increment/") => increment(&rest["increment/".len()..]),
            Some(rest) if rest.starts_with("cas-conflict/") => {
                cas_conflict(&rest["cas-conflict/".len()..])
            }
            Some(rest) if rest.starts_with("cas/") => cas(&rest["cas/".len()..]),
            Some("batch") => batch_round_trip(),
            _ => return Response::text(404, "no such route"),
        };
        result.unwrap_or_else(|e| Response::text(500, format!("{e:?}")))
    }
}

ostore_sdk::http::export!(WasiKv);

fn bucket() -> Result<store::Bucket, store::Error> {
    store::open("default")
}

fn increment(key: &str) -> Result<Response, store::Error> {
    let value = atomics::increment(&bucket()?, key, 1)?;
    Ok(Response::text(200, value.to_string()))
}

fn text(value: Option<Vec<u8>>) -> String {
    value
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default()
}

fn cas_conflict(key: &str) -> Result<Response, store::Error> {
    let bucket = bucket()?;
    let cas = atomics::Cas::new(&bucket, key)?;
    // Another writer changes the key between the read and the swap.
    bucket.set(key, b"changed by someone else")?;
    match atomics::swap(cas, b"mine") {
        Ok(()) => Ok(Response::text(200, "swapped")),
        Err(atomics::CasError::CasFailed(fresh)) => Ok(Response::text(
            200,
            format!("conflict {}", text(fresh.current()?)),
        )),
        Err(atomics::CasError::StoreError(e)) => Err(e),
    }
}

fn cas(key: &str) -> Result<Response, store::Error> {
    let bucket = bucket()?;
    let cas = atomics::Cas::new(&bucket, key)?;
    let next = text(cas.current()?).parse::<i64>().unwrap_or(0) + 1;
    match atomics::swap(cas, next.to_string().as_bytes()) {
        Ok(()) => Ok(Response::text(200, "swapped")),
        Err(atomics::CasError::CasFailed(_)) => Ok(Response::text(409, "conflict")),
        Err(atomics::CasError::StoreError(e)) => Err(e),
    }
}

fn batch_round_trip() -> Result<Response, store::Error> {
    let bucket = bucket()?;
    batch::set_many(
        &bucket,
        &[
            ("a".to_string(), b"1".to_vec()),
            ("b".to_string(), b"2".to_vec()),
        ],
    )?;
    let got = batch::get_many(
        &bucket,
        &["a".to_string(), "b".to_string(), "c".to_string()],
    )?;
    batch::delete_many(&bucket, &["a".to_string(), "b".to_string()])?;
    let gone = !bucket.exists("a")? && !bucket.exists("b")?;
    let listed: Vec<String> = got
        .into_iter()
        .map(|(k, v)| format!("{k}={}", text(v)))
        .collect();
    Ok(Response::text(
        200,
        format!("{} deleted={gone}", listed.join(" ")),
    ))
}

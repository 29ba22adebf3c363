//! A test guest for the calls `ostore:objectstore@1.1.0` added: batch
//! reads and writes, and listings by prefix. It keeps its keys in partition
//! `batches` of the default store. Bodies are lines; routes (below the
//! mount point, `/batches`):
//!
//! | request | answer |
//! |---|---|
//! | `POST /store` lines `key=value` (`?only-new` for fail-if-present) | each key's version, one a line |
//! | `POST /get` lines of keys | `key=value` or `key absent`, one a line, in order |
//! | `POST /remove` lines of keys | `true` or `false` (was it there), one a line |
//! | `GET /keys?prefix=p&page-size=n` | the keys under `p`, one a line, read page by page; header `x-pages` |
//! | `GET /entries?prefix=p` | `key=value` under `p`, one a line (the SDK's iterator) |
//!
//! Store errors answer with the status every ostore front end gives them,
//! and the error's text.

use ostore_sdk::http::{Handler, Method, Request, Response};
use ostore_sdk::{Partition, Store, StoreOptions};

struct Batches;

impl Handler for Batches {
    fn handle(mut request: Request) -> Response {
        route(&mut request).unwrap_or_else(|failure| failure)
    }
}

ostore_sdk::http::export!(Batches);

fn route(request: &mut Request) -> Result<Response, Response> {
    let path = request.path().to_owned();
    let below = path.strip_prefix("/batches").unwrap_or(&path);
    let partition = Store::open_default()
        .and_then(|store| store.partition("batches"))
        .map_err(|e| Response::error(&e))?;
    match (request.method(), below) {
        (Method::Post, "/store") => store(&partition, request),
        (Method::Post, "/get") => get(&partition, request),
        (Method::Post, "/remove") => remove(&partition, request),
        (Method::Get, "/keys") => keys(&partition, request),
        (Method::Get, "/entries") => entries(&partition, request),
        _ => Err(Response::text(404, "no such route")),
    }
}

/// The request body's lines (empty lines skipped).
fn lines(request: &mut Request) -> Result<Vec<String>, Response> {
    let body = request
        .body()
        .map_err(|e| Response::text(400, e.to_string()))?;
    let text = String::from_utf8(body).map_err(|_| Response::text(400, "body is not UTF-8"))?;
    Ok(text
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

fn store(partition: &Partition, request: &mut Request) -> Result<Response, Response> {
    let mut pairs = Vec::new();
    for line in lines(request)? {
        let Some((key, value)) = line.split_once('=') else {
            return Err(Response::text(400, format!("{line:?} is not key=value")));
        };
        pairs.push((key.to_owned(), value.to_owned()));
    }
    let only_new = request.query_param("only-new").is_some();
    let options = StoreOptions::new().with_fail_if_present(only_new);
    let stored = partition
        .store_many(pairs, options)
        .map_err(|e| Response::error(&e))?;
    let versions: Vec<String> = stored.iter().map(|m| m.version.to_string()).collect();
    Ok(Response::text(200, versions.join("\n")))
}

fn get(partition: &Partition, request: &mut Request) -> Result<Response, Response> {
    let keys = lines(request)?;
    let found = partition
        .retrieve_many(&keys)
        .map_err(|e| Response::error(&e))?;
    let answer: Vec<String> = keys
        .iter()
        .zip(found)
        .map(|(key, entry)| match entry {
            Some(entry) => format!("{key}={}", String::from_utf8_lossy(&entry.value)),
            None => format!("{key} absent"),
        })
        .collect();
    Ok(Response::text(200, answer.join("\n")))
}

fn remove(partition: &Partition, request: &mut Request) -> Result<Response, Response> {
    let keys = lines(request)?;
    let removed = partition
        .remove_many(&keys)
        .map_err(|e| Response::error(&e))?;
    let answer: Vec<String> = removed.iter().map(bool::to_string).collect();
    Ok(Response::text(200, answer.join("\n")))
}

fn query(request: &Request, name: &str) -> Result<Option<String>, Response> {
    request
        .query_param(name)
        .transpose()
        .map_err(|e| Response::text(400, format!("query parameter {name:?}: {e}")))
}

fn keys(partition: &Partition, request: &mut Request) -> Result<Response, Response> {
    let prefix = query(request, "prefix")?.unwrap_or_default();
    let page_size = match query(request, "page-size")? {
        Some(n) => n
            .parse()
            .map_err(|_| Response::text(400, "page-size must be a number"))?,
        None => 1000,
    };
    let (mut keys, mut pages, mut cursor) = (Vec::new(), 0, None::<String>);
    loop {
        let page = partition
            .retrieve_all_keys_with_prefix(&prefix, cursor.as_deref(), page_size)
            .map_err(|e| Response::error(&e))?;
        pages += 1;
        keys.extend(page.keys);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(Response::text(200, keys.join("\n")).with_header("x-pages", pages.to_string()))
}

fn entries(partition: &Partition, request: &mut Request) -> Result<Response, Response> {
    let prefix = query(request, "prefix")?.unwrap_or_default();
    let mut lines = Vec::new();
    for entry in partition.entries_with_prefix(&prefix) {
        let entry = entry.map_err(|e| Response::error(&e))?;
        lines.push(format!(
            "{}={}",
            entry.key,
            String::from_utf8_lossy(&entry.value)
        ));
    }
    Ok(Response::text(200, lines.join("\n")))
}

//! A guest built against `ostore:objectstore@1.0.0` as it was released
//! (the frozen copy in `wit/`), with no SDK: what an application compiled
//! before 1.1.0 imports. The host's test runs it unchanged on the current
//! host. Mounted at `/compat/...`, it keeps keys in partition `batches` of
//! the default store (the one the `batches` guest uses, so that the two
//! see each other's writes):
//!
//! - `PUT /compat/<key>` with the value as body: stores it, answers the
//!   version;
//! - `GET /compat/<key>`: the value, or 404;
//! - `DELETE /compat/<key>`: removes it, or 404;
//! - `GET /compat`: every key, one a line, read page by page (pages of two,
//!   so that cursors are used).

mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "ostore:objectstore/objectstore",
    });
}

use bindings::ostore::objectstore::store::{Partition, Store};
use bindings::ostore::objectstore::types::{Error, StoreOptions};
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Compat;

impl wasip2::exports::http::incoming_handler::Guest for Compat {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let (status, body) = answer(&request);
        send(response_out, status, body.as_bytes());
    }
}

wasip2::http::proxy::export!(Compat);

fn answer(request: &IncomingRequest) -> (u16, String) {
    let target = request.path_with_query().unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default();
    let partition = match Store::open_default().and_then(|s| s.partition("batches")) {
        Ok(p) => p,
        Err(e) => return (503, format!("{e:?}")),
    };
    match (request.method(), path.strip_prefix("/compat")) {
        (Method::Get, Some("" | "/")) => list(&partition),
        (method, Some(rest)) if rest.len() > 1 && rest.starts_with('/') => {
            let key = &rest[1..];
            match method {
                Method::Put => {
                    let value = read_body(request);
                    let options = StoreOptions {
                        fail_if_present: false,
                        ttl: None,
                    };
                    match partition.store(key, &value, options) {
                        Ok(meta) => (200, format!("version {}", meta.version)),
                        Err(e) => failure(e),
                    }
                }
                Method::Get => match partition.retrieve(key) {
                    Ok(entry) => (200, String::from_utf8_lossy(&entry.value).into_owned()),
                    Err(e) => failure(e),
                },
                Method::Delete => match partition.remove(key) {
                    Ok(_) => (200, "removed".to_owned()),
                    Err(e) => failure(e),
                },
                _ => (405, "use GET, PUT or DELETE".to_owned()),
            }
        }
        _ => (404, "no such route".to_owned()),
    }
}

fn failure(e: Error) -> (u16, String) {
    match e {
        Error::KeyNotFound => (404, "key not found".to_owned()),
        other => (500, format!("{other:?}")),
    }
}

fn list(partition: &Partition) -> (u16, String) {
    let (mut keys, mut cursor) = (Vec::new(), None::<String>);
    loop {
        match partition.retrieve_all_keys(cursor.as_deref(), 2) {
            Ok(page) => {
                keys.extend(page.keys);
                match page.cursor {
                    Some(next) => cursor = Some(next),
                    None => return (200, keys.join("\n")),
                }
            }
            Err(e) => return failure(e),
        }
    }
}

/// The whole request body (the tests send small ones).
fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let mut bytes = Vec::new();
    let Ok(body) = request.consume() else {
        return bytes;
    };
    if let Ok(stream) = body.stream() {
        // Closed at the end; a failed read ends the body too.
        while let Ok(chunk) = stream.blocking_read(64 * 1024) {
            bytes.extend(chunk);
        }
    }
    bytes
}

fn send(response_out: ResponseOutparam, status: u16, body: &[u8]) {
    let response = OutgoingResponse::new(Fields::new());
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(response_out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        // `blocking-write-and-flush` takes at most 4096 bytes a call.
        for chunk in body.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

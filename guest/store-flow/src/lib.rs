//! The Object Store tutorial application.
//!
//! Keys live in partition `ObjectStoreTutorial` of the default store
//! (`_defaultUserObjectStore`). Routes (the host sends `/store` and
//! `/store/...` here; at another mount point the paths are relative to it):
//!
//! | Request                              | Success                                           |
//! |--------------------------------------|---------------------------------------------------|
//! | `POST /store` `{"key":k,"value":v}`  | 200 `KEY: k AND VALUE: v WERE SAVED OK`           |
//! | `GET /store`                         | 200, every key followed by a newline (all pages)  |
//! | `GET /store/<key>`                   | 200, the value's bytes                            |
//! | `DELETE /store/<key>`                | 200 `KEY: k WAS REMOVED OK`                       |
//! | `POST /store/<key>/increment?by=N`   | 200, the counter's new value (N defaults to 1)    |
//!
//! The `POST /store` body may also carry `"ttlSeconds": N` (the key expires
//! N seconds after this write) and `"rollingTtl": true` (N seconds after its
//! last read or write); without them the partition's TTL applies (the
//! store's default: 30 days).
//!
//! `<key>` is the rest of the path, percent-decoded as UTF-8; it may contain
//! `/`. Failures answer a plain-text message:
//!
//! * 400: malformed JSON body, bad percent-encoding, bad `by`, invalid key,
//!   or an invalid argument (`increment` on a value that is not a decimal
//!   integer, or one that would overflow);
//! * 403: the application may not use the store;
//! * 404: the key does not exist (or the path is not under the route);
//! * 405: the method does not fit the path (with an `allow` header);
//! * 409: the key already exists, or changed version, where that matters;
//! * 413: the body exceeds 16 MiB, or the value the store's limit;
//! * 429: the store's rate limit (with `retry-after`, in whole seconds), or
//!   a key-count or byte quota (the message says which);
//! * 503: the store is not available.
//!
//! Store errors get the statuses every ostore HTTP front end gives them
//! ([`Response::error`]).

use ostore_sdk::http::{BodyError, Handler, Method, Request, Response, percent_decode};
use ostore_sdk::{Error, Partition, Store, StoreOptions, Ttl};
use serde_json::{Map, Value};

/// The partition the tutorial keeps its keys in.
const PARTITION: &str = "ObjectStoreTutorial";

struct StoreFlow;

impl Handler for StoreFlow {
    fn handle(mut request: Request) -> Response {
        route(&mut request).unwrap_or_else(|failure| failure)
    }
}

ostore_sdk::http::export!(StoreFlow);

/// A response either way: `Err` carries the failure to send.
type Outcome = Result<Response, Response>;

fn route(request: &mut Request) -> Outcome {
    let rest = path_below_route(request)?;
    match rest.as_str() {
        "" | "/" => match request.method() {
            Method::Get => list_keys(),
            Method::Post => save(request),
            _ => Err(method_not_allowed("GET, POST")),
        },
        _ => {
            let Some(raw_key) = rest.strip_prefix('/') else {
                return Err(Response::text(404, "no such route"));
            };
            match request.method() {
                Method::Get => get(&decode_key(raw_key)?),
                Method::Delete => remove(&decode_key(raw_key)?),
                Method::Post => match raw_key.strip_suffix("/increment") {
                    Some(raw_key) => increment(&decode_key(raw_key)?, request),
                    None => Err(method_not_allowed("GET, DELETE")),
                },
                _ if raw_key.ends_with("/increment") => {
                    Err(method_not_allowed("GET, DELETE, POST"))
                }
                _ => Err(method_not_allowed("GET, DELETE")),
            }
        }
    }
}

/// The path below the route this component is mounted at: `""` for the
/// route itself, `/<key>` below it. The host says which part matched in the
/// `spin-path-info` header (as Spin does), so the flow works at any mount
/// point; without the header it is assumed to be mounted at `/store`.
fn path_below_route(request: &Request) -> Result<String, Response> {
    if let Some(info) = request.header("spin-path-info") {
        return String::from_utf8(info.to_vec())
            .map_err(|_| Response::text(400, "spin-path-info is not UTF-8"));
    }
    request
        .path()
        .strip_prefix("/store")
        .map(str::to_owned)
        .ok_or_else(|| Response::text(404, "no such route"))
}

/// `POST /store`: saves the JSON body's value under its key.
fn save(request: &mut Request) -> Outcome {
    let body = request.body().map_err(|e| match e {
        BodyError::TooLarge(_) => Response::text(413, e.to_string()),
        BodyError::Read(_) => Response::text(400, e.to_string()),
        BodyError::AlreadyRead => Response::text(500, e.to_string()),
    })?;
    let Save { key, value, ttl } =
        parse_save_body(&body).map_err(|why| Response::text(400, why))?;
    let options = match ttl {
        Some(ttl) => StoreOptions::new().with_ttl(ttl),
        None => StoreOptions::new(),
    };
    partition()?
        .store_with(&key, &value, options)
        .map_err(store_error)?;
    Ok(Response::text(
        200,
        format!("KEY: {key} AND VALUE: {value} WERE SAVED OK"),
    ))
}

/// What `POST /store` asks for.
#[derive(Debug, PartialEq)]
struct Save {
    key: String,
    value: String,
    /// From the optional `"ttlSeconds"` (and `"rollingTtl": true`); none
    /// keeps the partition's TTL.
    ttl: Option<Ttl>,
}

/// Reads `{"key": "...", "value": "..."}` (with an optional
/// `"ttlSeconds": N` and `"rollingTtl": true|false`), or says what is wrong.
fn parse_save_body(body: &[u8]) -> Result<Save, String> {
    const EXPECTED: &str = r#"expected a JSON object like {"key": "...", "value": "..."}"#;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(format!("request body is empty; {EXPECTED}"));
    }
    let json: Value = serde_json::from_slice(body)
        .map_err(|e| format!("request body is not valid JSON ({e}); {EXPECTED}"))?;
    let Value::Object(mut object) = json else {
        return Err(format!(
            "request body is a JSON {}, not an object; {EXPECTED}",
            kind(&json)
        ));
    };
    let key = string_field(&mut object, "key")?;
    let value = string_field(&mut object, "value")?;
    let rolling = match object.remove("rollingTtl") {
        None => false,
        Some(Value::Bool(b)) => b,
        Some(other) => {
            return Err(format!(
                "\"rollingTtl\" must be true or false, not a JSON {}",
                kind(&other)
            ));
        }
    };
    let ttl = match object.remove("ttlSeconds") {
        None if rolling => {
            return Err("\"rollingTtl\" needs \"ttlSeconds\": the window to extend".to_string());
        }
        None => None,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|s| s > 0) => {
            let seconds = n.as_u64().expect("checked");
            Some(if rolling {
                Ttl::Rolling(seconds)
            } else {
                Ttl::Fixed(seconds)
            })
        }
        Some(other) => {
            return Err(format!(
                "\"ttlSeconds\" must be a whole number of seconds above 0, not {other}"
            ));
        }
    };
    Ok(Save { key, value, ttl })
}

fn string_field(object: &mut Map<String, Value>, name: &str) -> Result<String, String> {
    match object.remove(name) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!(
            "\"{name}\" must be a string, not a JSON {}",
            kind(&other)
        )),
        None => Err(format!("request body has no \"{name}\" field")),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `GET /store`: every key, one per line, across all pages.
fn list_keys() -> Outcome {
    let partition = partition()?;
    let mut text = String::new();
    for key in partition.keys() {
        text.push_str(&key.map_err(store_error)?);
        text.push('\n');
    }
    Ok(Response::text(200, text))
}

/// `GET /store/<key>`: the value's bytes.
fn get(key: &str) -> Outcome {
    match partition()?.get(key).map_err(store_error)? {
        Some(value) => Ok(Response::bytes(200, value)),
        None => Err(not_found(key)),
    }
}

/// `DELETE /store/<key>`.
fn remove(key: &str) -> Outcome {
    match partition()?.remove(key) {
        Ok(_) => Ok(Response::text(200, format!("KEY: {key} WAS REMOVED OK"))),
        Err(Error::KeyNotFound) => Err(not_found(key)),
        Err(e) => Err(store_error(e)),
    }
}

/// `POST /store/<key>/increment?by=N`: the counter's new value.
fn increment(key: &str, request: &Request) -> Outcome {
    let by = match request.query_param("by") {
        None => 1,
        Some(Ok(by)) => by.parse::<i64>().map_err(|_| {
            Response::text(
                400,
                format!("query parameter \"by\" must be a decimal integer (an i64), not \"{by}\""),
            )
        })?,
        Some(Err(e)) => {
            return Err(Response::text(400, format!("query parameter \"by\": {e}")));
        }
    };
    let value = partition()?.increment(key, by).map_err(store_error)?;
    Ok(Response::text(200, value.to_string()))
}

fn partition() -> Result<Partition, Response> {
    Store::open_default()
        .and_then(|store| store.partition(PARTITION))
        .map_err(store_error)
}

fn decode_key(raw: &str) -> Result<String, Response> {
    percent_decode(raw).map_err(|e| Response::text(400, format!("key in path: {e}")))
}

fn not_found(key: &str) -> Response {
    Response::text(404, format!("KEY: {key} NOT FOUND"))
}

fn method_not_allowed(allow: &'static str) -> Response {
    Response::text(405, format!("method not allowed; use {allow}")).with_header("allow", allow)
}

/// The HTTP answer to a store error: the SDK's, with the status every
/// ostore front end gives it.
fn store_error(e: Error) -> Response {
    Response::error(&e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_body_parsing() {
        assert_eq!(
            parse_save_body(br#"{"key": "k1", "value": "v1", "extra": 3}"#),
            Ok(Save {
                key: "k1".to_owned(),
                value: "v1".to_owned(),
                ttl: None
            })
        );
        assert_eq!(
            parse_save_body(br#"{"key": "k", "value": "v", "ttlSeconds": 5}"#).map(|s| s.ttl),
            Ok(Some(Ttl::Fixed(5)))
        );
        assert_eq!(
            parse_save_body(br#"{"key": "k", "value": "v", "ttlSeconds": 5, "rollingTtl": true}"#)
                .map(|s| s.ttl),
            Ok(Some(Ttl::Rolling(5)))
        );
        assert!(parse_save_body(br#"{"key": "k", "value": "v", "ttlSeconds": 0}"#).is_err());
        assert!(parse_save_body(br#"{"key": "k", "value": "v", "rollingTtl": true}"#).is_err());
        assert!(parse_save_body(br#"{"key": "k", "value": "v", "ttlSeconds": "5"}"#).is_err());
        let err = |body: &[u8]| parse_save_body(body).unwrap_err();
        assert!(err(b"").starts_with("request body is empty"));
        assert!(err(b"  \n").starts_with("request body is empty"));
        assert!(err(b"{oops").starts_with("request body is not valid JSON"));
        assert!(err(b"[1]").starts_with("request body is a JSON array, not an object"));
        assert_eq!(
            err(br#"{"value": "v"}"#),
            r#"request body has no "key" field"#
        );
        assert_eq!(
            err(br#"{"key": "k"}"#),
            r#"request body has no "value" field"#
        );
        assert_eq!(
            err(br#"{"key": 1, "value": "v"}"#),
            r#""key" must be a string, not a JSON number"#
        );
        assert_eq!(
            err(br#"{"key": "k", "value": null}"#),
            r#""value" must be a string, not a JSON null"#
        );
    }
}

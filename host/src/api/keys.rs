//! Keys and their values: list, read, write (conditionally with `If-Match`
//! / `If-None-Match`), delete, clear.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{HeaderMap, StatusCode, header};
use serde_json::Value as Json;

use crate::clock::iso_millis;
use crate::http::{ResponseBody, json_response};
use crate::objectstore::{self, Entry, Metadata, StoreOptions, Ttl, ValueKind};

use super::wire::{KeyInfo, KeyMetadata, KeyValue, Value, ValueType};
use super::{Api, ApiError, ApiResult, Call, existing_store, no_content, page};

/// `If-Match` / `If-None-Match` on a key write.
enum Condition {
    None,
    /// `If-None-Match: *`: only if the key does not exist.
    Absent,
    /// `If-Match: "<version>"`: only if the key has this version.
    Version(u64),
}

impl Condition {
    fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        if let Some(v) = headers.get(header::IF_MATCH) {
            let text = v.to_str().unwrap_or_default().trim();
            let version = text
                .trim_start_matches("W/")
                .trim_matches('"')
                .parse::<u64>()
                .map_err(|_| {
                    ApiError::bad_request("If-Match must be an ETag this API returned, like \"3\"")
                })?;
            return Ok(Condition::Version(version));
        }
        match headers.get(header::IF_NONE_MATCH) {
            Some(v) if v.to_str().unwrap_or_default().trim() == "*" => Ok(Condition::Absent),
            Some(_) => Err(ApiError::bad_request("only If-None-Match: * is supported")),
            None => Ok(Condition::None),
        }
    }
}

fn value_type(kind: ValueKind) -> ValueType {
    match kind {
        ValueKind::String => ValueType::String,
        ValueKind::Number => ValueType::Number,
        ValueKind::Binary => ValueType::Binary,
    }
}

/// What the API tells of a value besides the value itself.
fn key_metadata(meta: &Metadata) -> KeyMetadata {
    let (seconds, rolling) = match meta.ttl {
        Ttl::Never => (None, false),
        Ttl::Fixed(s) => (Some(s), false),
        Ttl::Rolling(s) => (Some(s), true),
    };
    KeyMetadata {
        size: meta.size,
        created_at: iso_millis(meta.created),
        updated_at: iso_millis(meta.updated),
        expires_at: meta.expires.map(iso_millis),
        ttl_seconds: seconds,
        rolling_ttl: rolling,
    }
}

/// A stored value in OSv2's shape. Text that is not UTF-8 is sent as
/// binary; a number that no longer parses, as the text it is.
fn wire_value(kind: ValueKind, bytes: &[u8]) -> Value {
    let binary = || Value::Binary {
        binary_value: BASE64.encode(bytes),
    };
    match kind {
        ValueKind::String => match std::str::from_utf8(bytes) {
            Ok(s) => Value::String {
                string_value: s.into(),
            },
            Err(_) => binary(),
        },
        ValueKind::Number => {
            let text = String::from_utf8_lossy(bytes);
            Value::Number {
                number_value: serde_json::from_str::<serde_json::Number>(&text)
                    .map(Json::Number)
                    .unwrap_or(Json::String(text.into_owned())),
            }
        }
        ValueKind::Binary => binary(),
    }
}

/// An entry as a [`KeyValue`], with its version as `ETag`.
fn entry_response(entry: &Entry) -> hyper::Response<ResponseBody> {
    let body = KeyValue {
        key_id: entry.key.clone(),
        value: wire_value(entry.metadata.kind, &entry.value),
        metadata: key_metadata(&entry.metadata),
    };
    let mut response = json_response(StatusCode::OK, &body);
    response.headers_mut().insert(
        header::ETAG,
        format!("\"{}\"", entry.metadata.version)
            .parse()
            .expect("valid"),
    );
    response
}

/// The largest key-write body read for values of at most `max_value` bytes.
///
/// JSON may spell each byte of a string as a six-byte escape (`\u0001`), and
/// a value that decodes well below the limit must not be refused for how it
/// was spelled: the body may be six times the value (escapes inside base64
/// are legal JSON too), plus room for the fields around it. That still bounds
/// what one request holds in memory; the decoded value is checked against
/// the limit itself.
fn max_value_body(max_value: usize) -> usize {
    max_value.saturating_mul(6).saturating_add(64 << 10)
}

/// Reads a [`ValueWrite`](super::wire::ValueWrite): `{"keyId"?,
/// "valueType", "stringValue" | "binaryValue" | "numberValue",
/// "ttlSeconds"?, "rollingTtl"?}`, saying exactly what is wrong with it.
fn parse_value(key: &str, body: &[u8]) -> Result<(Vec<u8>, StoreOptions), ApiError> {
    let json: Json = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    if !json.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    if json.get("keyId").is_some_and(|id| id.as_str() != Some(key)) {
        return Err(ApiError::bad_request(
            "keyId in the body differs from the key in the path",
        ));
    }
    let field = |name: &str| {
        json.get(name)
            .ok_or_else(|| ApiError::bad_request(format!("valueType requires {name}")))
    };
    let (value, kind) = match json.get("valueType").and_then(Json::as_str) {
        Some("STRING") => {
            let s = field("stringValue")?
                .as_str()
                .ok_or_else(|| ApiError::bad_request("stringValue must be a string"))?;
            (s.as_bytes().to_vec(), ValueKind::String)
        }
        Some("BINARY") => {
            let b = field("binaryValue")?
                .as_str()
                .ok_or_else(|| ApiError::bad_request("binaryValue must be a base64 string"))?;
            let bytes = BASE64
                .decode(b)
                .map_err(|_| ApiError::bad_request("binaryValue is not valid base64"))?;
            (bytes, ValueKind::Binary)
        }
        Some("NUMBER") => match field("numberValue")? {
            Json::Number(n) if n.is_f64() && integer_text(body) => {
                // Past 64 bits an integer arrives rounded to a float: refuse
                // it rather than keep another number than was sent.
                return Err(ApiError::bad_request(
                    "numberValue is an integer beyond 64 bits, which would be kept rounded; \
                     store it as a STRING",
                ));
            }
            Json::Number(n) => (n.to_string().into_bytes(), ValueKind::Number),
            _ => return Err(ApiError::bad_request("numberValue must be a JSON number")),
        },
        _ => {
            return Err(ApiError::bad_request(
                "valueType must be STRING, BINARY or NUMBER",
            ));
        }
    };
    let rolling = match json.get("rollingTtl") {
        None => false,
        Some(Json::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_request("rollingTtl must be true or false")),
    };
    let ttl = match json.get("ttlSeconds") {
        None => None,
        Some(Json::Null) => Some(Ttl::Never),
        Some(v) => match v.as_u64() {
            Some(s) if s > 0 => Some(if rolling {
                Ttl::Rolling(s)
            } else {
                Ttl::Fixed(s)
            }),
            _ => {
                return Err(ApiError::bad_request(
                    "ttlSeconds must be a whole number above 0, or null for no expiry",
                ));
            }
        },
    };
    Ok((
        value,
        StoreOptions {
            fail_if_present: false,
            ttl,
            kind: Some(kind),
        },
    ))
}

/// Whether the body's `numberValue` is written as an integer (no fraction,
/// no exponent).
fn integer_text(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Raw<'a> {
        #[serde(rename = "numberValue", borrow)]
        number: &'a serde_json::value::RawValue,
    }
    serde_json::from_slice::<Raw>(body).is_ok_and(|raw| !raw.number.get().contains(['.', 'e', 'E']))
}

impl Api {
    /// The call's `{partition}` of its `{store}`.
    async fn partition(&self, call: &Call) -> Result<objectstore::Partition, ApiError> {
        let store = self.existing_store(call).await?;
        Ok(store.partition(call.partition()).await?)
    }

    /// One page of keys with their metadata, optionally by `prefix`.
    pub(super) async fn list_keys(&self, call: &Call) -> ApiResult {
        let app = self.application(call).await?;
        let (cursor, size) = call.paging()?;
        let partition = existing_store(&app, call.store())
            .await?
            .partition(call.partition())
            .await?;
        let prefix = call.query_param("prefix")?;
        let keys = partition
            .list_key_metadata(prefix.as_deref(), cursor.as_deref(), size)
            .await?;
        Ok(json_response(
            StatusCode::OK,
            &page(keys, |(key, meta)| KeyInfo {
                key_id: key,
                value_type: value_type(meta.kind),
                metadata: key_metadata(&meta),
            }),
        ))
    }

    pub(super) async fn clear_keys(&self, call: &Call) -> ApiResult {
        self.partition(call).await?.clear().await?;
        Ok(no_content())
    }

    /// Reads a key; `peek=true` looks without extending a rolling TTL.
    pub(super) async fn get_key(&self, call: &Call) -> ApiResult {
        let partition = self.partition(call).await?;
        let entry = match call.query_param("peek")?.as_deref() {
            None | Some("false") => partition.retrieve(call.key()).await?,
            Some("true") => partition.peek(call.key()).await?,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "peek must be true or false, not {other:?}"
                )));
            }
        };
        Ok(entry_response(&entry))
    }

    /// Writes a key, conditionally on `If-Match` or `If-None-Match: *`. The
    /// body is checked before the store is looked at: a bad write creates
    /// nothing (not even the default store).
    pub(super) async fn put_key(&self, mut call: Call) -> ApiResult {
        let app = self.application(&call).await?;
        let condition = Condition::from_headers(call.headers())?;
        let key = call.key().to_string();
        let limit = self.objectstore.config().limits.max_value_bytes;
        let body = call.body(max_value_body(limit)).await?;
        let (value, options) = parse_value(&key, &body)?;
        // The body's bound allows for escapes; the value's is checked here,
        // decoded, before any store is made for it.
        if value.len() > limit {
            return Err(objectstore::Error::ValueTooLarge {
                limit: limit as u64,
            }
            .into());
        }
        let partition = existing_store(&app, call.store())
            .await?
            .partition(call.partition())
            .await?;
        let metadata = match condition {
            Condition::None => partition.store(&key, value.clone(), options).await?,
            Condition::Absent => {
                let options = StoreOptions {
                    fail_if_present: true,
                    ..options
                };
                partition.store(&key, value.clone(), options).await?
            }
            Condition::Version(v) => {
                partition
                    .compare_and_swap(&key, Some(v), value.clone(), options)
                    .await?
            }
        };
        Ok(entry_response(&Entry {
            key,
            value,
            metadata,
        }))
    }

    pub(super) async fn delete_key(&self, call: &Call) -> ApiResult {
        if self.partition(call).await?.delete(call.key()).await? {
            Ok(no_content())
        } else {
            Err(objectstore::Error::KeyNotFound.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_in_each_type_and_wrong_shapes_say_why() {
        let (v, o) = parse_value(
            "k",
            br#"{"keyId":"k","valueType":"STRING","stringValue":"hi"}"#,
        )
        .unwrap();
        assert_eq!(
            (v.as_slice(), o.kind),
            (&b"hi"[..], Some(ValueKind::String))
        );
        let (v, _) = parse_value("k", br#"{"valueType":"BINARY","binaryValue":"AAEC"}"#).unwrap();
        assert_eq!(v, [0, 1, 2]);
        let (v, o) = parse_value(
            "k",
            br#"{"valueType":"NUMBER","numberValue":42,"ttlSeconds":5}"#,
        )
        .unwrap();
        assert_eq!((v.as_slice(), o.ttl), (&b"42"[..], Some(Ttl::Fixed(5))));
        let (v, _) = parse_value(
            "k",
            br#"{"valueType":"NUMBER","numberValue":18446744073709551615}"#,
        )
        .unwrap();
        assert_eq!(v, b"18446744073709551615");
        let (v, _) = parse_value("k", br#"{"valueType":"NUMBER","numberValue":1.5e3}"#).unwrap();
        assert_eq!(v, b"1500.0");
        for bad in [
            &br#"{"keyId":"other","valueType":"STRING","stringValue":"x"}"#[..],
            br#"{"valueType":"STRING"}"#,
            br#"{"valueType":"BINARY","binaryValue":"***"}"#,
            br#"{"valueType":"NUMBER","numberValue":"4"}"#,
            br#"{"valueType":"DATE"}"#,
            br#"[]"#,
            br#"{"valueType":"STRING","stringValue":"x","ttlSeconds":0}"#,
            br#"{"valueType":"NUMBER","numberValue":18446744073709551617}"#,
        ] {
            assert!(
                parse_value("k", bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn what_a_client_writes_the_server_reads() {
        let write = super::super::wire::ValueWrite {
            key_id: Some("k".into()),
            value: Value::Binary {
                binary_value: BASE64.encode([0u8, 255]),
            },
            ttl_seconds: Some(Some(60)),
            rolling_ttl: Some(true),
        };
        let (value, options) = parse_value("k", &serde_json::to_vec(&write).unwrap()).unwrap();
        assert_eq!(value, [0, 255]);
        assert_eq!(options.ttl, Some(Ttl::Rolling(60)));
        assert_eq!(wire_value(ValueKind::Binary, &value), write.value);
    }
}

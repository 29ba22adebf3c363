//! Stores and partitions: list, read, configure, delete.

use http::StatusCode;
use serde_json::Value;

use crate::http::json_response;
use crate::objectstore::{DEFAULT_TTL_SECS, Store, StoreQuota, Ttl};

use super::wire::StoreInfo;
use super::{Api, ApiError, ApiResult, Call, existing_store, no_content, page};

/// The largest store configuration read: a few numbers.
const MAX_STORE_CONFIG: usize = 64 << 10;

fn store_info(store: &Store) -> StoreInfo {
    let (seconds, fixed) = match store.default_ttl() {
        Ttl::Never => (None, true),
        Ttl::Fixed(s) => (Some(s), true),
        Ttl::Rolling(s) => (Some(s), false),
    };
    let footprint = store.footprint();
    StoreInfo {
        store_id: store.name().into(),
        encrypted: true,
        persistent: true,
        default_ttl_seconds: seconds,
        is_fixed_ttl: fixed,
        max_keys: store.quota().max_keys,
        max_bytes: store.quota().max_bytes,
        key_count: footprint.keys,
        bytes_stored: footprint.bytes,
    }
}

/// Reads a [`StoreConfig`](super::wire::StoreConfig):
/// `{"defaultTtlSeconds": N | null, "isFixedTtl": bool, "maxKeys": N |
/// null, "maxBytes": N | null}`, every field optional; a null TTL never
/// expires, a null limit leaves only the application's.
fn parse_store_config(body: &[u8]) -> Result<(Ttl, StoreQuota), ApiError> {
    let json: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?
    };
    if !json.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    let fixed = match json.get("isFixedTtl") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_request("isFixedTtl must be true or false")),
    };
    let limit = |name: &str| match json.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ApiError::bad_request(format!("{name} must be a whole number, or null"))
        }),
    };
    let quota = StoreQuota {
        max_keys: limit("maxKeys")?,
        max_bytes: limit("maxBytes")?,
    };
    let seconds = match json.get("defaultTtlSeconds") {
        None => DEFAULT_TTL_SECS,
        // Keys that never expire have no TTL to extend: a rolling TTL of
        // none is a contradiction, not a setting to answer as static.
        Some(Value::Null) if !fixed => {
            return Err(ApiError::bad_request(
                "isFixedTtl false needs defaultTtlSeconds: keys that never expire cannot roll",
            ));
        }
        Some(Value::Null) => return Ok((Ttl::Never, quota)),
        Some(v) => v.as_u64().filter(|&s| s > 0).ok_or_else(|| {
            ApiError::bad_request(
                "defaultTtlSeconds must be a whole number of seconds above 0, or null for no expiry",
            )
        })?,
    };
    let ttl = if fixed {
        Ttl::Fixed(seconds)
    } else {
        Ttl::Rolling(seconds)
    };
    Ok((ttl, quota))
}

impl Api {
    pub(super) async fn list_stores(&self, call: &Call) -> ApiResult {
        let app = self.application(call).await?;
        let (cursor, size) = call.paging()?;
        let stores = app.list_stores(cursor.as_deref(), size).await?;
        Ok(json_response(
            StatusCode::OK,
            &page(stores, |s| store_info(&s)),
        ))
    }

    pub(super) async fn get_store(&self, call: &Call) -> ApiResult {
        let store = self.existing_store(call).await?;
        Ok(json_response(StatusCode::OK, &store_info(&store)))
    }

    /// Creates or configures a store.
    pub(super) async fn put_store(&self, mut call: Call) -> ApiResult {
        let app = self.application(&call).await?;
        let name = call.store().to_string();
        let body = call.body(MAX_STORE_CONFIG).await?;
        let (ttl, quota) = parse_store_config(&body)?;
        let store = app.configure_store(&name, ttl, quota).await?;
        Ok(json_response(StatusCode::OK, &store_info(&store)))
    }

    pub(super) async fn delete_store(&self, call: &Call) -> ApiResult {
        let app = self.application(call).await?;
        let name = call.store();
        if app.delete_store(name).await? {
            Ok(no_content())
        } else {
            Err(ApiError::not_found(format!("no store {name:?}")))
        }
    }

    pub(super) async fn list_partitions(&self, call: &Call) -> ApiResult {
        let app = self.application(call).await?;
        let (cursor, size) = call.paging()?;
        let store = existing_store(&app, call.store()).await?;
        let partitions = store.list_partitions(cursor.as_deref(), size).await?;
        Ok(json_response(StatusCode::OK, &page(partitions, |p| p)))
    }

    pub(super) async fn delete_partition(&self, call: &Call) -> ApiResult {
        self.existing_store(call)
            .await?
            .delete_partition(call.partition())
            .await?;
        Ok(no_content())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_settings_parse_and_contradictions_are_refused() {
        let parse = |body: &str| parse_store_config(body.as_bytes());
        assert_eq!(
            parse("").unwrap(),
            (Ttl::Fixed(DEFAULT_TTL_SECS), StoreQuota::default())
        );
        assert_eq!(
            parse(r#"{"isFixedTtl": false}"#).unwrap().0,
            Ttl::Rolling(DEFAULT_TTL_SECS)
        );
        assert_eq!(
            parse(r#"{"defaultTtlSeconds": null}"#).unwrap().0,
            Ttl::Never
        );
        let (_, quota) = parse(r#"{"maxKeys": 3, "maxBytes": null}"#).unwrap();
        assert_eq!((quota.max_keys, quota.max_bytes), (Some(3), None));
        for bad in [
            r#"{"isFixedTtl": false, "defaultTtlSeconds": null}"#,
            r#"{"defaultTtlSeconds": 0}"#,
            r#"{"isFixedTtl": "no"}"#,
            r#"{"maxKeys": -1}"#,
            "[]",
            "not json",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}

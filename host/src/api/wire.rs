//! The JSON of the REST and Stats APIs, as Rust types: what the server
//! sends, and what the client, the CLI and the tests read and send. The
//! OpenAPI document describes the same shapes; its test checks the server's
//! answers against it.
//!
//! Request bodies (`TokenRequest`, `StoreConfig`, `ValueWrite`) serialize
//! for clients; the server reads them with its own checks (in the API's
//! `keys` and `stores` modules), which say exactly which field is wrong.

use serde::{Deserialize, Serialize};

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The HTTP status again.
    pub status: u16,
    /// What went wrong, in words.
    pub message: String,
    /// For object-store errors, the error's name in the WIT interface
    /// (`quota-exceeded`, `version-mismatch`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `POST /accounts/api/v2/oauth2/token`, as JSON (a form is read too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRequest {
    pub client_id: String,
    pub client_secret: String,
    /// Always `client_credentials`.
    pub grant_type: String,
}

impl TokenRequest {
    pub fn client_credentials(client_id: &str, client_secret: &str) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            grant_type: "client_credentials".into(),
        }
    }
}

/// The token endpoint's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
    /// The token's scopes, space-separated (OAuth 2's `scope`).
    pub scope: String,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub values: Vec<T>,
    /// Pass as `nextPageToken` for the next page; `null` on the last.
    pub next_page_token: Option<String>,
}

/// The environments a token may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentList {
    pub values: Vec<Environment>,
}

/// An application, as an environment of an organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Environment {
    pub organization_id: String,
    pub environment_id: String,
    pub application_name: String,
}

/// A store, with its settings and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreInfo {
    pub store_id: String,
    pub encrypted: bool,
    pub persistent: bool,
    /// `null`: keys never expire.
    pub default_ttl_seconds: Option<u64>,
    /// `false`: reads extend the TTL (rolling).
    pub is_fixed_ttl: bool,
    pub max_keys: Option<u64>,
    pub max_bytes: Option<u64>,
    pub key_count: u64,
    pub bytes_stored: u64,
}

/// `PUT` of a store: every field may be left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreConfig {
    /// Absent: 30 days; `Some(None)`: never expire.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_ttl_seconds: Option<Option<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_fixed_ttl: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
}

/// The kind of a value, as OSv2 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ValueType {
    String,
    Binary,
    Number,
}

/// A value, tagged by `valueType`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "valueType")]
pub enum Value {
    #[serde(rename = "STRING", rename_all = "camelCase")]
    String { string_value: String },
    /// Base64 (standard alphabet, padded).
    #[serde(rename = "BINARY", rename_all = "camelCase")]
    Binary { binary_value: String },
    /// The number as written; a stored number that no longer parses is
    /// sent as a string.
    #[serde(rename = "NUMBER", rename_all = "camelCase")]
    Number { number_value: serde_json::Value },
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::String { .. } => ValueType::String,
            Value::Binary { .. } => ValueType::Binary,
            Value::Number { .. } => ValueType::Number,
        }
    }
}

/// What the API tells of a stored value besides the value itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyMetadata {
    /// The value's length in bytes.
    pub size: u64,
    /// ISO 8601, UTC, with milliseconds.
    pub created_at: String,
    pub updated_at: String,
    /// `null`: the key never expires.
    pub expires_at: Option<String>,
    /// The TTL the key was written with; `null`: none.
    pub ttl_seconds: Option<u64>,
    pub rolling_ttl: bool,
}

/// A key in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    pub key_id: String,
    pub value_type: ValueType,
    #[serde(flatten)]
    pub metadata: KeyMetadata,
}

/// A key with its value; its version is the answer's `ETag`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyValue {
    pub key_id: String,
    #[serde(flatten)]
    pub value: Value,
    #[serde(flatten)]
    pub metadata: KeyMetadata,
}

/// `PUT` (or `POST`) of a key.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ValueWrite {
    /// If given, must equal the key in the path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(flatten)]
    pub value: Value,
    /// Absent: the partition's or store's TTL; `Some(None)`: never expire.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<Option<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolling_ttl: Option<bool>,
}

/// Requests on one day (or month), and the size then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsPoint {
    /// The start of the day or month, `2026-11-01T00:00:00Z`.
    pub time_stamp: String,
    pub object_store_request_count: u64,
    pub key_count: u64,
    pub bytes_stored: u64,
}

/// What an application holds and the limits it runs under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub key_count: u64,
    pub bytes_stored: u64,
    pub store_count: u64,
    pub limits: UsageLimits,
}

/// The limits of an application (`null`: unlimited).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageLimits {
    pub requests_per_second: Option<u32>,
    pub max_keys: Option<u64>,
    pub max_bytes: Option<u64>,
    pub max_stores: u64,
    pub max_key_bytes: u64,
    pub max_value_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_tagged_by_its_type_and_carries_its_metadata_flat() {
        let value = KeyValue {
            key_id: "k".into(),
            value: Value::Number {
                number_value: serde_json::json!(18446744073709551615u64),
            },
            metadata: KeyMetadata {
                size: 20,
                created_at: "2026-11-24T00:00:00.000Z".into(),
                updated_at: "2026-11-24T00:00:00.000Z".into(),
                expires_at: None,
                ttl_seconds: None,
                rolling_ttl: false,
            },
        };
        let json = serde_json::to_value(&value).unwrap();
        assert_eq!(json["valueType"], "NUMBER");
        assert_eq!(json["numberValue"].as_u64(), Some(u64::MAX));
        assert_eq!(json["expiresAt"], serde_json::Value::Null);
        let back: KeyValue = serde_json::from_value(json).unwrap();
        assert_eq!(back, value);

        let write = ValueWrite {
            key_id: None,
            value: Value::String {
                string_value: "hi".into(),
            },
            ttl_seconds: Some(None),
            rolling_ttl: None,
        };
        assert_eq!(
            serde_json::to_value(&write).unwrap(),
            serde_json::json!({"valueType": "STRING", "stringValue": "hi", "ttlSeconds": null})
        );
    }
}

//! The REST API, shaped after Object Store v2's v1 API, and the OAuth2
//! token endpoint.
//!
//! Paths: `/api/v1/organizations/{org}/environments/{env}/stores[/{store}
//! [/partitions[/{partition}[/keys[/{key}]]]]]`. Each application is
//! reached as one environment of one organization (see [`Environments`]).
//! Every route checks the bearer token, that the token's principal may use
//! the application, and the route's scope. To an application credential,
//! another application's environment looks exactly like one that does not
//! exist.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::auth::{AuthError, Credentials, Grant, Scope};
use crate::objectstore::{
    self, Application, DEFAULT_STORE, Entry, ObjectStore, Page, Store, StoreOptions, Ttl, ValueKind,
};
use crate::runtime::ResponseBody;

/// The token endpoint, as in Anypoint.
pub const TOKEN_PATH: &str = "/accounts/api/v2/oauth2/token";
const API_PREFIX: &str = "/api/v1/";

/// OSv2 lists 25 keys per call by default.
const DEFAULT_PAGE_SIZE: u32 = 25;

/// Which application each `(organization, environment)` pair names.
#[derive(Debug, Clone, Default)]
pub struct Environments {
    by_path: HashMap<(String, String), String>,
}

impl Environments {
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `org`/`env` to `app`. Fails if the pair already names another
    /// application.
    pub fn add(&mut self, org: &str, env: &str, app: &str) -> Result<(), String> {
        match self.by_path.insert((org.into(), env.into()), app.into()) {
            Some(other) if other != app => Err(format!(
                "organization {org:?} environment {env:?} would name both {other:?} and {app:?}"
            )),
            _ => Ok(()),
        }
    }

    fn app(&self, org: &str, env: &str) -> Option<&str> {
        self.by_path
            .get(&(org.to_string(), env.to_string()))
            .map(String::as_str)
    }

    /// Every mapping, for printing at start.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.by_path
            .iter()
            .map(|((o, e), a)| (o.as_str(), e.as_str(), a.as_str()))
    }
}

/// The REST API of one host.
pub struct Api {
    objectstore: ObjectStore,
    credentials: Arc<Credentials>,
    environments: Environments,
}

/// A failed request: status and message, sent as `{"status","message"}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<Duration>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }

    fn into_response(self) -> hyper::Response<ResponseBody> {
        let mut response = json_response(
            self.status,
            &json!({"status": self.status.as_u16(), "message": self.message}),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("valid"));
        }
        if let Some(after) = self.retry_after {
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            response.headers_mut().insert(
                header::RETRY_AFTER,
                secs.to_string().parse().expect("valid"),
            );
        }
        response
    }
}

impl From<objectstore::Error> for ApiError {
    fn from(e: objectstore::Error) -> Self {
        use objectstore::Error as E;
        let status = match &e {
            E::KeyNotFound => StatusCode::NOT_FOUND,
            E::KeyAlreadyExists | E::VersionMismatch { .. } => StatusCode::PRECONDITION_FAILED,
            E::InvalidKey(_) | E::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            E::ValueTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            E::RateLimited { .. } | E::QuotaExceeded(_) => StatusCode::TOO_MANY_REQUESTS,
            E::AccessDenied => StatusCode::FORBIDDEN,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        let retry_after = match &e {
            E::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        };
        Self {
            status,
            message: e.to_string(),
            retry_after,
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let status = match e {
            AuthError::File(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        };
        Self::new(status, e.to_string())
    }
}

type ApiResult = Result<hyper::Response<ResponseBody>, ApiError>;

fn json_response(status: StatusCode, body: &Value) -> hyper::Response<ResponseBody> {
    hyper::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(
            Full::new(Bytes::from(
                serde_json::to_vec(body).expect("JSON serializes"),
            ))
            .map_err(|never| match never {})
            .boxed_unsync(),
        )
        .expect("a valid response")
}

fn no_content() -> hyper::Response<ResponseBody> {
    hyper::Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(
            Full::new(Bytes::new())
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .expect("a valid response")
}

/// Splits a path into percent-decoded segments; a segment that does not
/// decode to UTF-8 is an error (keys may hold any UTF-8, including `/` as
/// `%2F`).
fn segments(path: &str) -> Result<Vec<String>, ApiError> {
    path.trim_matches('/')
        .split('/')
        .map(|s| {
            percent_decode(s)
                .ok_or_else(|| ApiError::bad_request("the path is not valid percent-encoded UTF-8"))
        })
        .collect()
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The value of query parameter `name`, decoded (`+` is a space).
fn query_param(query: Option<&str>, name: &str) -> Result<Option<String>, ApiError> {
    let Some(query) = query else { return Ok(None) };
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name {
            return percent_decode(&v.replace('+', " "))
                .map(Some)
                .ok_or_else(|| {
                    ApiError::bad_request(format!("query parameter {name} is not valid UTF-8"))
                });
        }
    }
    Ok(None)
}

impl Api {
    pub fn new(
        objectstore: ObjectStore,
        credentials: Arc<Credentials>,
        environments: Environments,
    ) -> Self {
        Self {
            objectstore,
            credentials,
            environments,
        }
    }

    /// Whether `path` belongs to the API rather than to a guest route.
    pub fn serves(path: &str) -> bool {
        path.starts_with(API_PREFIX) || path == TOKEN_PATH
    }

    /// Answers one request; never fails (errors become JSON responses).
    pub async fn handle(&self, req: hyper::Request<Incoming>) -> hyper::Response<ResponseBody> {
        let result = if req.uri().path() == TOKEN_PATH {
            self.token(req).await
        } else {
            self.route(req).await
        };
        result.unwrap_or_else(ApiError::into_response)
    }

    /// Reads a request body of at most `limit` bytes.
    async fn body(req: hyper::Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
        match Limited::new(req.into_body(), limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {limit} bytes"),
            )),
            Err(e) => Err(ApiError::bad_request(format!(
                "cannot read the request body: {e}"
            ))),
        }
    }

    /// `POST /accounts/api/v2/oauth2/token` with `client_id`, `client_secret`
    /// and `grant_type=client_credentials`, as JSON or as a form.
    async fn token(&self, req: hyper::Request<Incoming>) -> ApiResult {
        if req.method() != Method::POST {
            return Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "use POST"));
        }
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let body = Self::body(req, 64 << 10).await?;
        let field = |name: &str| -> Result<String, ApiError> {
            let value = if is_form {
                let text = std::str::from_utf8(&body)
                    .map_err(|_| ApiError::bad_request("the form is not UTF-8"))?;
                query_param(Some(text), name)?
            } else {
                let json: Value = serde_json::from_slice(&body)
                    .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
                json.get(name).and_then(Value::as_str).map(String::from)
            };
            value.ok_or_else(|| ApiError::bad_request(format!("missing {name}")))
        };
        let grant_type = field("grant_type")?;
        if grant_type != "client_credentials" {
            return Err(ApiError::bad_request(format!(
                "unsupported grant_type {grant_type:?}; use client_credentials"
            )));
        }
        let (token, lifetime) = self
            .credentials
            .issue_token(&field("client_id")?, &field("client_secret")?)?;
        Ok(json_response(
            StatusCode::OK,
            &json!({"access_token": token, "token_type": "bearer", "expires_in": lifetime.as_secs()}),
        ))
    }

    fn authenticate(&self, headers: &HeaderMap) -> Result<Grant, ApiError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .ok_or(AuthError::Missing)?;
        Ok(self.credentials.verify_token(token.trim())?)
    }

    /// The application `org`/`env` names, if `grant` may use it. Anything
    /// else is "not found", so that existence is not revealed.
    async fn application(
        &self,
        grant: &Grant,
        org: &str,
        env: &str,
    ) -> Result<Application, ApiError> {
        match self.environments.app(org, env) {
            Some(app) if grant.principal.may_access(app) => {
                Ok(self.objectstore.application(app).await?)
            }
            _ => Err(ApiError::not_found(format!(
                "no environment {env:?} in organization {org:?}"
            ))),
        }
    }

    async fn route(&self, req: hyper::Request<Incoming>) -> ApiResult {
        let segs = segments(req.uri().path())?;
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        // api v1 organizations {org} environments {env} stores ...
        let [
            "api",
            "v1",
            "organizations",
            org,
            "environments",
            env,
            "stores",
            rest @ ..,
        ] = segs.as_slice()
        else {
            return Err(ApiError::not_found("no such API route"));
        };
        let grant = self.authenticate(req.headers())?;
        let method = req.method().clone();
        let need = |scope: Scope| -> Result<(), ApiError> {
            if grant.has(scope) {
                Ok(())
            } else {
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("this token lacks the {scope} scope"),
                ))
            }
        };
        let app = self.application(&grant, org, env).await?;
        let query = req.uri().query().map(String::from);
        let query = query.as_deref();
        match (rest, &method) {
            ([], &Method::GET) => {
                need(Scope::ReadStore)?;
                let (cursor, size) = paging(query)?;
                let page = app.list_stores(cursor.as_deref(), size).await?;
                Ok(page_response(page, |s| store_json(&s)))
            }
            ([store], &Method::GET) => {
                need(Scope::ReadStore)?;
                Ok(json_response(
                    StatusCode::OK,
                    &store_json(&existing_store(&app, store).await?),
                ))
            }
            ([store], &Method::PUT) => {
                need(Scope::ManageStore)?;
                let body = Self::body(req, 64 << 10).await?;
                let ttl = parse_store_config(&body)?;
                let store = app.configure_store(store, ttl).await?;
                Ok(json_response(StatusCode::OK, &store_json(&store)))
            }
            ([store], &Method::DELETE) => {
                need(Scope::ManageStore)?;
                if app.delete_store(store).await? {
                    Ok(no_content())
                } else {
                    Err(ApiError::not_found(format!("no store {store:?}")))
                }
            }
            ([store, "partitions"], &Method::GET) => {
                need(Scope::ReadStore)?;
                let (cursor, size) = paging(query)?;
                let page = existing_store(&app, store)
                    .await?
                    .list_partitions(cursor.as_deref(), size)
                    .await?;
                Ok(page_response(page, Value::String))
            }
            ([store, "partitions", partition], &Method::DELETE) => {
                need(Scope::ManageStore)?;
                existing_store(&app, store)
                    .await?
                    .delete_partition(partition)
                    .await?;
                Ok(no_content())
            }
            ([store, "partitions", partition, "keys"], &Method::GET) => {
                need(Scope::ReadStore)?;
                let (cursor, size) = paging(query)?;
                let partition = existing_store(&app, store)
                    .await?
                    .partition(partition)
                    .await?;
                let page = match query_param(query, "prefix")? {
                    Some(prefix) => {
                        partition
                            .list_keys_with_prefix(&prefix, cursor.as_deref(), size)
                            .await?
                    }
                    None => partition.list_keys(cursor.as_deref(), size).await?,
                };
                Ok(page_response(page, |k| json!({"keyId": k})))
            }
            ([store, "partitions", partition, "keys"], &Method::DELETE) => {
                need(Scope::ManageStoreData)?;
                existing_store(&app, store)
                    .await?
                    .partition(partition)
                    .await?
                    .clear()
                    .await?;
                Ok(no_content())
            }
            ([store, "partitions", partition, "keys", key], &Method::GET) => {
                need(Scope::ReadStore)?;
                let partition = existing_store(&app, store)
                    .await?
                    .partition(partition)
                    .await?;
                let entry = partition.retrieve(key).await?;
                Ok(entry_response(StatusCode::OK, &entry))
            }
            ([store, "partitions", partition, "keys", key], &Method::PUT | &Method::POST) => {
                need(Scope::ManageStoreData)?;
                let condition = Condition::from_headers(req.headers())?;
                let limit = self.objectstore.config().limits.max_value_bytes;
                // Base64 makes binary values a third larger; leave room for
                // the JSON around them.
                let body = Self::body(req, limit / 3 * 4 + (64 << 10)).await?;
                let (value, options) = parse_value(key, &body)?;
                let partition = existing_store(&app, store)
                    .await?
                    .partition(partition)
                    .await?;
                let meta = match condition {
                    Condition::None => partition.store(key, value.clone(), options).await?,
                    Condition::Absent => {
                        let options = StoreOptions {
                            fail_if_present: true,
                            ..options
                        };
                        partition.store(key, value.clone(), options).await?
                    }
                    Condition::Version(v) => {
                        partition
                            .compare_and_swap(key, Some(v), value.clone(), options)
                            .await?
                    }
                };
                let entry = Entry {
                    key: key.to_string(),
                    value,
                    metadata: meta,
                };
                Ok(entry_response(StatusCode::OK, &entry))
            }
            ([store, "partitions", partition, "keys", key], &Method::DELETE) => {
                need(Scope::ManageStoreData)?;
                let partition = existing_store(&app, store)
                    .await?
                    .partition(partition)
                    .await?;
                partition.remove(key).await?;
                Ok(no_content())
            }
            _ => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not served at this path"),
            )),
        }
    }
}

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

/// The store `name` if it exists. The default store always does.
async fn existing_store(app: &Application, name: &str) -> Result<Store, ApiError> {
    if name == DEFAULT_STORE {
        return Ok(app.default_store().await?);
    }
    app.find_store(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no store {name:?}")))
}

/// `pageSize` (1..=1000, default 25) and `nextPageToken` from the query.
fn paging(query: Option<&str>) -> Result<(Option<String>, u32), ApiError> {
    let size = match query_param(query, "pageSize")? {
        None => DEFAULT_PAGE_SIZE,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=objectstore::MAX_PAGE_SIZE).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "pageSize must be a whole number from 1 to {}",
                    objectstore::MAX_PAGE_SIZE
                )));
            }
        },
    };
    Ok((query_param(query, "nextPageToken")?, size))
}

fn page_response<T>(page: Page<T>, item: impl Fn(T) -> Value) -> hyper::Response<ResponseBody> {
    json_response(
        StatusCode::OK,
        &json!({
            "values": page.items.into_iter().map(item).collect::<Vec<_>>(),
            "nextPageToken": page.cursor,
        }),
    )
}

fn store_json(store: &Store) -> Value {
    let (seconds, fixed) = match store.default_ttl() {
        Ttl::Never => (None, true),
        Ttl::Fixed(s) => (Some(s), true),
        Ttl::Rolling(s) => (Some(s), false),
    };
    json!({
        "storeId": store.name(),
        "encrypted": true,
        "persistent": true,
        "defaultTtlSeconds": seconds,
        "isFixedTtl": fixed,
    })
}

/// `{"defaultTtlSeconds": N | null, "isFixedTtl": bool}`; null never expires.
fn parse_store_config(body: &[u8]) -> Result<Ttl, ApiError> {
    let json: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?
    };
    let fixed = match json.get("isFixedTtl") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_request("isFixedTtl must be true or false")),
    };
    let seconds = match json.get("defaultTtlSeconds") {
        None => objectstore::DEFAULT_TTL_SECS,
        Some(Value::Null) => return Ok(Ttl::Never),
        Some(v) => v.as_u64().filter(|&s| s > 0).ok_or_else(|| {
            ApiError::bad_request(
                "defaultTtlSeconds must be a whole number of seconds above 0, or null for no expiry",
            )
        })?,
    };
    Ok(if fixed {
        Ttl::Fixed(seconds)
    } else {
        Ttl::Rolling(seconds)
    })
}

/// The value JSON of an entry, OSv2's shape, with its version as ETag.
fn entry_response(status: StatusCode, entry: &Entry) -> hyper::Response<ResponseBody> {
    let mut body = json!({"keyId": entry.key});
    match entry.metadata.kind {
        ValueKind::String => match std::str::from_utf8(&entry.value) {
            Ok(s) => {
                body["valueType"] = "STRING".into();
                body["stringValue"] = s.into();
            }
            Err(_) => {
                body["valueType"] = "BINARY".into();
                body["binaryValue"] = BASE64.encode(&entry.value).into();
            }
        },
        ValueKind::Number => {
            body["valueType"] = "NUMBER".into();
            let text = String::from_utf8_lossy(&entry.value);
            body["numberValue"] = serde_json::from_str::<serde_json::Number>(&text)
                .map(Value::Number)
                .unwrap_or(Value::String(text.into_owned()));
        }
        ValueKind::Binary => {
            body["valueType"] = "BINARY".into();
            body["binaryValue"] = BASE64.encode(&entry.value).into();
        }
    }
    let mut response = json_response(status, &body);
    response.headers_mut().insert(
        header::ETAG,
        format!("\"{}\"", entry.metadata.version)
            .parse()
            .expect("valid"),
    );
    response
}

/// Reads `{"keyId"?, "valueType", "stringValue" | "binaryValue" |
/// "numberValue", "ttlSeconds"?, "rollingTtl"?}`.
fn parse_value(key: &str, body: &[u8]) -> Result<(Vec<u8>, StoreOptions), ApiError> {
    let json: Value = serde_json::from_slice(body)
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
    let (value, kind) = match json.get("valueType").and_then(Value::as_str) {
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
            Value::Number(n) => (n.to_string().into_bytes(), ValueKind::Number),
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
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_request("rollingTtl must be true or false")),
    };
    let ttl = match json.get("ttlSeconds") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(s) if s > 0 => Some(if rolling {
                Ttl::Rolling(s)
            } else {
                Ttl::Fixed(s)
            }),
            _ => {
                return Err(ApiError::bad_request(
                    "ttlSeconds must be a whole number above 0",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_decode_and_bad_encodings_are_refused() {
        assert_eq!(
            segments("/api/v1/a%2Fb/c%20d").unwrap(),
            ["api", "v1", "a/b", "c d"]
        );
        assert!(segments("/api/%FF").is_err());
        assert!(segments("/api/%4").is_err());
    }

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
        for bad in [
            &br#"{"keyId":"other","valueType":"STRING","stringValue":"x"}"#[..],
            br#"{"valueType":"STRING"}"#,
            br#"{"valueType":"BINARY","binaryValue":"***"}"#,
            br#"{"valueType":"NUMBER","numberValue":"4"}"#,
            br#"{"valueType":"DATE"}"#,
            br#"[]"#,
            br#"{"valueType":"STRING","stringValue":"x","ttlSeconds":0}"#,
        ] {
            assert!(
                parse_value("k", bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn paging_defaults_to_25_and_bounds_page_size() {
        assert_eq!(paging(None).unwrap(), (None, 25));
        assert_eq!(
            paging(Some("pageSize=1000&nextPageToken=abc")).unwrap(),
            (Some("abc".into()), 1000)
        );
        assert!(paging(Some("pageSize=1001")).is_err());
        assert!(paging(Some("pageSize=0")).is_err());
        assert!(paging(Some("pageSize=-3")).is_err());
    }
}

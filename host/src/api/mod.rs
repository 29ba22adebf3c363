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
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::auth::{AuthError, Credentials, Grant, Principal, Scope};
use crate::objectstore::{
    self, Application, DEFAULT_STORE, Entry, Metadata, ObjectStore, Page, Store, StoreOptions,
    StoreQuota, Ttl, ValueKind,
};
use crate::runtime::{ResponseBody, full_body};

/// The token endpoint, as in Anypoint.
pub const TOKEN_PATH: &str = "/accounts/api/v2/oauth2/token";
const API_PREFIX: &str = "/api/v1/";
/// The Prometheus endpoint.
pub const METRICS_PATH: &str = "/metrics";
/// Lists the environments a token may use (an extension of OSv2's API,
/// which the admin UI starts from).
pub const ENVIRONMENTS_PATH: &str = "/api/v1/environments";
/// Where the OpenAPI document of these routes is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";
/// The OpenAPI 3 document of the REST and Stats APIs; a test checks it
/// against the real routes.
pub const OPENAPI: &str = include_str!("openapi.json");
/// The longest date range one stats query may span, so that an answer
/// stays small whatever a client asks.
const MAX_STATS_DAYS: u32 = 5 * 366;

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

    /// The `(organization, environment, application)` triples whose
    /// application `principal` may use, in name order.
    fn visible_to(&self, principal: &Principal) -> Vec<(&str, &str, &str)> {
        let mut visible: Vec<_> = self
            .iter()
            .filter(|(_, _, app)| principal.may_access(app))
            .collect();
        visible.sort();
        visible
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
        .body(full_body(
            serde_json::to_vec(body).expect("JSON serializes"),
        ))
        .expect("a valid response")
}

fn no_content() -> hyper::Response<ResponseBody> {
    hyper::Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(full_body(Bytes::new()))
        .expect("a valid response")
}

/// Splits a path into percent-decoded segments; a segment that does not
/// decode to UTF-8 is an error (keys may hold any UTF-8, including `/` as
/// `%2F`).
///
/// An empty segment is refused rather than skipped: `…/keys/` must not
/// name the partition's keys when a client (a browser, say) dropped a key
/// named `.` or `..` from the path.
fn segments(path: &str) -> Result<Vec<String>, ApiError> {
    path.strip_prefix('/')
        .unwrap_or(path)
        .split('/')
        .map(|s| match s {
            "" => Err(ApiError::bad_request(
                "the path has an empty segment: a name is missing, or the path ends in /",
            )),
            s => percent_decode(s).ok_or_else(|| {
                ApiError::bad_request("the path is not valid percent-encoded UTF-8")
            }),
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
        path.starts_with(API_PREFIX) || path == TOKEN_PATH || path == METRICS_PATH
    }

    /// Answers one request; never fails (errors become JSON responses).
    pub async fn handle(&self, req: hyper::Request<Incoming>) -> hyper::Response<ResponseBody> {
        let path = req.uri().path();
        let result = if path == TOKEN_PATH {
            self.token(req).await
        } else if path == OPENAPI_PATH {
            Ok(hyper::Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(full_body(Bytes::from_static(OPENAPI.as_bytes())))
                .expect("a valid response"))
        } else if path == METRICS_PATH {
            self.metrics(req).await
        } else if path == ENVIRONMENTS_PATH {
            self.list_environments(&req)
        } else if path.starts_with("/api/v1/stats/") {
            self.stats(req).await
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
        let issued = self
            .credentials
            .issue_token(&field("client_id")?, &field("client_secret")?)?;
        // OAuth 2's `scope`: what the token may do, space-separated.
        let scopes: Vec<&str> = issued.scopes.iter().map(|s| s.as_str()).collect();
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "access_token": issued.token,
                "token_type": "bearer",
                "expires_in": issued.lifetime.as_secs(),
                "scope": scopes.join(" "),
            }),
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

    /// `GET /api/v1/environments`: the environments (one per application)
    /// that the token's credential may use, in name order.
    fn list_environments(&self, req: &hyper::Request<Incoming>) -> ApiResult {
        let grant = self.authenticate(req.headers())?;
        if req.method() != Method::GET {
            return Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "use GET"));
        }
        let values: Vec<Value> = self
            .environments
            .visible_to(&grant.principal)
            .into_iter()
            .map(|(org, env, app)| {
                json!({"organizationId": org, "environmentId": env, "applicationName": app})
            })
            .collect();
        Ok(json_response(StatusCode::OK, &json!({"values": values})))
    }

    /// The application `org`/`env` names, if `grant` may use it. Anything
    /// else is "not found", so that existence is not revealed.
    async fn application(
        &self,
        grant: &Grant,
        org: &str,
        env: &str,
    ) -> Result<Application, ApiError> {
        let app = self.environment_app(grant, org, env)?;
        Ok(self.objectstore.application(app).await?)
    }

    /// The Stats API: requests per day or month at organization,
    /// environment or store level, plus key counts and bytes stored.
    async fn stats(&self, req: hyper::Request<Incoming>) -> ApiResult {
        let grant = self.metrics_reader(&req)?;
        let segs = segments(req.uri().path())?;
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let (org, env, store) = match segs.as_slice() {
            ["api", "v1", "stats", "organizations", org] => (*org, None, None),
            [
                "api",
                "v1",
                "stats",
                "organizations",
                org,
                "environments",
                env,
            ] => (*org, Some(*env), None),
            [
                "api",
                "v1",
                "stats",
                "organizations",
                org,
                "environments",
                env,
                "stores",
                store,
            ] => (*org, Some(*env), Some(*store)),
            _ => return Err(ApiError::not_found("no such stats route")),
        };
        let query = req.uri().query();
        let today = dates::today();
        let end = match query_param(query, "endDate")? {
            Some(text) => dates::parse_day(&text)?,
            None => today,
        };
        let start = match query_param(query, "startDate")? {
            Some(text) => dates::parse_day(&text)?,
            None => end.saturating_sub(29),
        };
        if start > end || end - start >= MAX_STATS_DAYS {
            return Err(ApiError::bad_request(format!(
                "startDate must not be after endDate, and the range at most {MAX_STATS_DAYS} days"
            )));
        }
        let monthly = match query_param(query, "period")?.as_deref() {
            None | Some("1day") => false,
            Some("1month") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "period must be 1day or 1month, not {other:?}"
                )));
            }
        };
        let apps: Vec<&str> = match env {
            Some(env) => vec![self.environment_app(&grant, org, env)?],
            None => self
                .environments
                .visible_to(&grant.principal)
                .into_iter()
                .filter(|(o, _, _)| *o == org)
                .map(|(_, _, app)| app)
                .collect(),
        };
        if env.is_none() && apps.is_empty() {
            return Err(ApiError::not_found(format!("no organization {org:?}")));
        }
        let mut days: std::collections::BTreeMap<u32, objectstore::DayStats> = Default::default();
        for app in apps {
            let app = self.objectstore.application(app).await?;
            for (day, d) in app.daily_stats(store, start, end).await? {
                let sum = days.entry(day).or_default();
                sum.requests += d.requests;
                sum.keys += d.keys;
                sum.bytes += d.bytes;
            }
        }
        let mut points: Vec<(u32, objectstore::DayStats)> = Vec::new();
        for day in start..=end {
            let bucket = if monthly {
                dates::first_of_month(day)
            } else {
                day
            };
            let d = days.get(&day).copied().unwrap_or_default();
            match points.last_mut() {
                Some((b, sum)) if *b == bucket => {
                    sum.requests += d.requests;
                    if d != objectstore::DayStats::default() {
                        (sum.keys, sum.bytes) = (d.keys, d.bytes);
                    }
                }
                _ => points.push((bucket, d)),
            }
        }
        let body: Vec<Value> = points
            .into_iter()
            .map(|(day, d)| {
                json!({
                    "timeStamp": dates::timestamp(day),
                    "objectStoreRequestCount": d.requests,
                    "keyCount": d.keys,
                    "bytesStored": d.bytes,
                })
            })
            .collect();
        Ok(json_response(StatusCode::OK, &Value::Array(body)))
    }

    /// The grant of a GET on a statistics route, which needs the
    /// `read:store_metrics` scope.
    fn metrics_reader(&self, req: &hyper::Request<Incoming>) -> Result<Grant, ApiError> {
        let grant = self.authenticate(req.headers())?;
        require(&grant, Scope::ReadStoreMetrics)?;
        if req.method() != Method::GET {
            return Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "use GET"));
        }
        Ok(grant)
    }

    /// What an application holds and the limits it runs under.
    async fn usage(&self, req: hyper::Request<Incoming>, org: &str, env: &str) -> ApiResult {
        let grant = self.metrics_reader(&req)?;
        let app = self.application(&grant, org, env).await?;
        let footprint = app.footprint();
        let stores = app.store_count().await?;
        let limits = &self.objectstore.config().limits;
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "keyCount": footprint.keys,
                "bytesStored": footprint.bytes,
                "storeCount": stores,
                "limits": {
                    "requestsPerSecond": limits.requests_per_second,
                    "maxKeys": limits.max_keys,
                    "maxBytes": limits.max_bytes,
                    "maxStores": limits.max_stores,
                    "maxKeyBytes": limits.max_key_bytes,
                    "maxValueBytes": limits.max_value_bytes,
                },
            }),
        ))
    }

    /// `/metrics` in Prometheus text format, for the applications the token
    /// may see.
    async fn metrics(&self, req: hyper::Request<Incoming>) -> ApiResult {
        let grant = self.metrics_reader(&req)?;
        let today = dates::today();
        let mut text = String::new();
        text.push_str("# HELP ostore_requests_total Object-store requests of an application.\n");
        text.push_str("# TYPE ostore_requests_total counter\n");
        let mut gauges = String::new();
        gauges
            .push_str("# HELP ostore_keys Keys an application holds.\n# TYPE ostore_keys gauge\n");
        let mut bytes = String::new();
        bytes.push_str("# HELP ostore_bytes_stored Bytes an application stores at rest.\n");
        bytes.push_str("# TYPE ostore_bytes_stored gauge\n");
        for (org, env, app) in self.environments.visible_to(&grant.principal) {
            let app = self.objectstore.application(app).await?;
            let total: u64 = app
                .daily_stats(None, 0, today)
                .await?
                .values()
                .map(|d| d.requests)
                .sum();
            let labels = format!(
                "organization=\"{}\",environment=\"{}\"",
                prometheus_escape(org),
                prometheus_escape(env)
            );
            let footprint = app.footprint();
            text.push_str(&format!("ostore_requests_total{{{labels}}} {total}\n"));
            gauges.push_str(&format!("ostore_keys{{{labels}}} {}\n", footprint.keys));
            bytes.push_str(&format!(
                "ostore_bytes_stored{{{labels}}} {}\n",
                footprint.bytes
            ));
        }
        text.push_str(&gauges);
        text.push_str(&bytes);
        Ok(hyper::Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
            .body(full_body(text))
            .expect("a valid response"))
    }

    /// The application behind `org`/`env` if `grant` may use it; "not
    /// found" otherwise, so that existence is not revealed.
    fn environment_app(&self, grant: &Grant, org: &str, env: &str) -> Result<&str, ApiError> {
        match self.environments.app(org, env) {
            Some(app) if grant.principal.may_access(app) => Ok(app),
            _ => Err(ApiError::not_found(format!(
                "no environment {env:?} in organization {org:?}"
            ))),
        }
    }

    async fn route(&self, req: hyper::Request<Incoming>) -> ApiResult {
        let segs = segments(req.uri().path())?;
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        if let [
            "api",
            "v1",
            "organizations",
            org,
            "environments",
            env,
            "usage",
        ] = segs.as_slice()
        {
            return self.usage(req, org, env).await;
        }
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
        let need = |scope: Scope| require(&grant, scope);
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
                let (ttl, quota) = parse_store_config(&body)?;
                let store = app.configure_store(store, ttl, quota).await?;
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
                let prefix = query_param(query, "prefix")?;
                let page = partition
                    .list_key_metadata(prefix.as_deref(), cursor.as_deref(), size)
                    .await?;
                Ok(page_response(page, |(key, meta)| {
                    let mut item = json!({"keyId": key});
                    add_metadata(&mut item, &meta);
                    item
                }))
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
                // `peek=true`: look without extending a rolling TTL.
                let entry = match query_param(query, "peek")?.as_deref() {
                    None | Some("false") => partition.retrieve(key).await?,
                    Some("true") => partition.peek(key).await?,
                    Some(other) => {
                        return Err(ApiError::bad_request(format!(
                            "peek must be true or false, not {other:?}"
                        )));
                    }
                };
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
                if partition.delete(key).await? {
                    Ok(no_content())
                } else {
                    Err(objectstore::Error::KeyNotFound.into())
                }
            }
            _ => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not served at this path"),
            )),
        }
    }
}

/// Fails with 403 unless `grant` carries `scope`.
fn require(grant: &Grant, scope: Scope) -> Result<(), ApiError> {
    if grant.has(scope) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("this token lacks the {scope} scope"),
        ))
    }
}

/// A label value in Prometheus text format.
fn prometheus_escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Calendar days, UTC, as days since the Unix epoch.
mod dates {
    use super::ApiError;

    pub fn today() -> u32 {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        (secs / 86_400) as u32
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date.
    fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let year_of_era = y - era * 400;
        let m = i64::from(month);
        let day_of_year = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        era * 146_097 + day_of_era - 719_468
    }

    /// The date of a day since 1970-01-01.
    fn civil_from_days(days: i64) -> (i64, u32, u32) {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z - era * 146_097;
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let mp = (5 * day_of_year + 2) / 153;
        let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        (year, month, day)
    }

    /// Reads `YYYY-MM-DD`, optionally followed by a time (`T...`), which is
    /// ignored: statistics are kept per UTC day.
    pub fn parse_day(text: &str) -> Result<u32, ApiError> {
        let bad =
            || ApiError::bad_request(format!("{text:?} is not an ISO-8601 date like 2026-11-24"));
        let date = text.split('T').next().unwrap_or_default();
        let mut parts = date.split('-');
        let (Some(y), Some(m), Some(d), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let (year, month, day): (i64, u32, u32) = (
            y.parse().map_err(|_| bad())?,
            m.parse().map_err(|_| bad())?,
            d.parse().map_err(|_| bad())?,
        );
        if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || day == 0 {
            return Err(bad());
        }
        let days = days_from_civil(year, month, day);
        // Reject days past the month's end (2026-02-30).
        if civil_from_days(days) != (year, month, day) {
            return Err(bad());
        }
        u32::try_from(days).map_err(|_| bad())
    }

    pub fn first_of_month(day: u32) -> u32 {
        let (y, m, _) = civil_from_days(i64::from(day));
        days_from_civil(y, m, 1) as u32
    }

    pub fn timestamp(day: u32) -> String {
        let (y, m, d) = civil_from_days(i64::from(day));
        format!("{y:04}-{m:02}-{d:02}T00:00:00Z")
    }

    /// Milliseconds since the epoch as `2026-11-24T09:30:05.123Z`.
    pub fn iso_millis(ms: u64) -> String {
        let (days, ms_of_day) = (ms / 86_400_000, ms % 86_400_000);
        let (y, m, d) = civil_from_days(days as i64);
        let (secs, millis) = (ms_of_day / 1000, ms_of_day % 1000);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn dates_round_trip_and_bad_ones_are_refused() {
            assert_eq!(parse_day("1970-01-01").unwrap(), 0);
            assert_eq!(parse_day("2000-03-01").unwrap(), 11_017);
            let day = parse_day("2026-11-24T13:00:00Z").unwrap();
            assert_eq!(timestamp(day), "2026-11-24T00:00:00Z");
            assert_eq!(timestamp(first_of_month(day)), "2026-11-01T00:00:00Z");
            assert_eq!(iso_millis(0), "1970-01-01T00:00:00.000Z");
            assert_eq!(
                iso_millis(u64::from(day) * 86_400_000 + 13 * 3_600_000 + 61_005),
                "2026-11-24T13:01:01.005Z"
            );
            assert_eq!(
                timestamp(parse_day("2024-02-29").unwrap()),
                "2024-02-29T00:00:00Z"
            );
            for bad in [
                "2026-02-30",
                "2025-02-29",
                "2026-13-01",
                "26-1-1x",
                "",
                "2026-11",
                "1969-12-31",
            ] {
                assert!(parse_day(bad).is_err(), "{bad}");
            }
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
        "maxKeys": store.quota().max_keys,
        "maxBytes": store.quota().max_bytes,
        "keyCount": store.footprint().keys,
        "bytesStored": store.footprint().bytes,
    })
}

/// `{"defaultTtlSeconds": N | null, "isFixedTtl": bool, "maxKeys": N |
/// null, "maxBytes": N | null}`; a null TTL never expires, a null limit
/// leaves only the application's.
fn parse_store_config(body: &[u8]) -> Result<(Ttl, StoreQuota), ApiError> {
    let json: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
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
        None => objectstore::DEFAULT_TTL_SECS,
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

/// Adds what the API tells of a value besides the value itself: its type,
/// size in bytes, creation, update and expiry times (ISO 8601, UTC;
/// `expiresAt` is null for a key that never expires) and the TTL it was
/// written with (`ttlSeconds` null: none).
fn add_metadata(item: &mut Value, meta: &Metadata) {
    item["valueType"] = match meta.kind {
        ValueKind::String => "STRING",
        ValueKind::Number => "NUMBER",
        ValueKind::Binary => "BINARY",
    }
    .into();
    item["size"] = meta.size.into();
    item["createdAt"] = dates::iso_millis(meta.created).into();
    item["updatedAt"] = dates::iso_millis(meta.updated).into();
    item["expiresAt"] = meta.expires.map(dates::iso_millis).into();
    let (seconds, rolling) = match meta.ttl {
        Ttl::Never => (None, false),
        Ttl::Fixed(s) => (Some(s), false),
        Ttl::Rolling(s) => (Some(s), true),
    };
    item["ttlSeconds"] = seconds.into();
    item["rollingTtl"] = rolling.into();
}

/// The value JSON of an entry, OSv2's shape, with its version as ETag.
fn entry_response(status: StatusCode, entry: &Entry) -> hyper::Response<ResponseBody> {
    let mut body = json!({"keyId": entry.key});
    add_metadata(&mut body, &entry.metadata);
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
            Value::Number(n) if n.is_f64() && integer_text(body) => {
                // Past 64 bits an integer arrives rounded to a float: refuse
                // it rather than keep another number than was sent.
                return Err(ApiError::bad_request(
                    "numberValue is an integer beyond 64 bits, which would be kept rounded; \
                     store it as a STRING",
                ));
            }
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
        Some(Value::Null) => Some(Ttl::Never),
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
        assert!(segments("/api/v1/stores/s/partitions/p/keys/").is_err());
        assert!(segments("/api//v1").is_err());
        assert_eq!(segments("/api/..").unwrap(), ["api", ".."]);
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

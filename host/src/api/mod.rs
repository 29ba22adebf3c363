//! The REST API, shaped after Object Store v2's v1 API, its Stats API,
//! `/metrics`, and the OAuth2 token endpoint.
//!
//! Every operation is one row of the [route table](routes::ROUTES): method,
//! path, what it needs of the caller, and the handler. The dispatcher checks
//! the bearer token and the route's scope once, for every route; each
//! application is reached as one environment of one organization (see
//! [`Environments`]), and to an application credential another application's
//! environment looks exactly like one that does not exist.
//!
//! | module | job |
//! |---|---|
//! | [`routes`] | the route table |
//! | [`wire`] | the JSON bodies, as Rust types shared with the client |
//! | `token` | the token endpoint, the environments list, the OpenAPI document |
//! | `stores`, `keys` | stores and partitions; keys and values |
//! | `stats` | the Stats API, usage and `/metrics` |
//! | `health` | `/healthz` (live) and `/readyz` (ready to write) |

mod environments;
mod error;
mod health;
mod keys;
pub mod routes;
mod stats;
mod stores;
mod token;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

pub use environments::{EnvironmentClash, Environments};
pub use error::ApiError;
pub use routes::{TOKEN_PATH, serves};
pub use token::OPENAPI;

use crate::auth::{AuthError, Credentials, Grant};
use crate::http::{ResponseBody, query_param};
use crate::objectstore::{Application, DEFAULT_STORE, MAX_PAGE_SIZE, ObjectStore, Store};
use crate::server::Stopping;
use routes::{Access, Op, Params};

/// OSv2 lists 25 keys per call by default.
const DEFAULT_PAGE_SIZE: u32 = 25;

/// The REST API of one host.
pub struct Api {
    objectstore: ObjectStore,
    credentials: Arc<Credentials>,
    environments: Environments,
    /// How long a client may take to send a request body.
    body_timeout: Duration,
    /// Raised when the host stops: a body still on its way is not waited for.
    stopping: Stopping,
}

type ApiResult = Result<hyper::Response<ResponseBody>, ApiError>;

/// One request, matched to its route.
struct Call {
    parts: http::request::Parts,
    /// Until read with [`Call::body`].
    body: Option<Incoming>,
    params: Params,
    /// The token's grant; `None` only on routes anyone may call.
    grant: Option<Grant>,
    body_timeout: Duration,
    stopping: Stopping,
}

impl Call {
    fn headers(&self) -> &HeaderMap {
        &self.parts.headers
    }

    fn query(&self) -> Option<&str> {
        self.parts.uri.query()
    }

    /// The value of query parameter `name`, decoded.
    fn query_param(&self, name: &str) -> Result<Option<String>, ApiError> {
        query_value(self.query(), name)
    }

    fn grant(&self) -> &Grant {
        self.grant
            .as_ref()
            .expect("routes that need no token do not ask for one")
    }

    /// A named path segment that the route's pattern has.
    fn param<'a>(&self, value: &'a Option<String>) -> &'a str {
        value.as_deref().expect("the route's pattern names it")
    }

    fn store(&self) -> &str {
        self.param(&self.params.store)
    }

    fn partition(&self) -> &str {
        self.param(&self.params.partition)
    }

    fn key(&self) -> &str {
        self.param(&self.params.key)
    }

    /// `pageSize` and `nextPageToken`.
    fn paging(&self) -> Result<(Option<String>, u32), ApiError> {
        paging(self.query())
    }

    /// Reads the request body, of at most `limit` bytes, within the body
    /// timeout: a client that stalls must not hold the request forever.
    async fn body(&mut self, limit: usize) -> Result<Bytes, ApiError> {
        let body = self.body.take().expect("a body is read once");
        let read = Limited::new(body, limit).collect();
        let read = tokio::select! {
            read = tokio::time::timeout(self.body_timeout, read) => read,
            () = self.stopping.wait() => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the server is stopping; send the request again",
                ));
            }
        };
        let Ok(read) = read else {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s",
                    self.body_timeout.as_secs_f64()
                ),
            ));
        };
        match read {
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
}

impl Api {
    pub fn new(
        objectstore: ObjectStore,
        credentials: Arc<Credentials>,
        environments: Environments,
        body_timeout: Duration,
        stopping: Stopping,
    ) -> Self {
        Self {
            objectstore,
            credentials,
            environments,
            body_timeout,
            stopping,
        }
    }

    /// Answers one request; never fails (errors become JSON responses).
    pub async fn handle(&self, req: hyper::Request<Incoming>) -> hyper::Response<ResponseBody> {
        self.dispatch(req)
            .await
            .unwrap_or_else(ApiError::into_response)
    }

    async fn dispatch(&self, req: hyper::Request<Incoming>) -> ApiResult {
        let (route, params) = routes::find(req.method(), req.uri().path())?;
        let grant = match route.access {
            Access::Anyone => None,
            Access::Token => Some(self.authenticate(req.headers()).await?),
            Access::Scope(scope) => {
                let grant = self.authenticate(req.headers()).await?;
                if !grant.has(scope) {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        format!("this token lacks the {scope} scope"),
                    ));
                }
                Some(grant)
            }
        };
        let (parts, body) = req.into_parts();
        let call = Call {
            parts,
            body: Some(body),
            params,
            grant,
            body_timeout: self.body_timeout,
            stopping: self.stopping.clone(),
        };
        match route.op {
            Op::Token => self.token(call).await,
            Op::OpenApi => Ok(token::openapi()),
            Op::Environments => self.list_environments(&call),
            Op::Metrics => self.metrics(&call).await,
            Op::Healthz => Ok(health::live()),
            Op::Readyz => Ok(health::ready(self.objectstore.storage_health())),
            Op::Usage => self.usage(&call).await,
            Op::Stats => self.stats(&call).await,
            Op::ListStores => self.list_stores(&call).await,
            Op::GetStore => self.get_store(&call).await,
            Op::PutStore => self.put_store(call).await,
            Op::DeleteStore => self.delete_store(&call).await,
            Op::ListPartitions => self.list_partitions(&call).await,
            Op::DeletePartition => self.delete_partition(&call).await,
            Op::ListKeys => self.list_keys(&call).await,
            Op::ClearKeys => self.clear_keys(&call).await,
            Op::GetKey => self.get_key(&call).await,
            Op::PutKey => self.put_key(call).await,
            Op::DeleteKey => self.delete_key(&call).await,
        }
    }

    /// The grant of the request's bearer token. The credential behind it is
    /// read from the backend, so one deleted through any host is refused.
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Grant, ApiError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .ok_or(AuthError::Missing)?;
        Ok(self.credentials.verify_token(token.trim()).await?)
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

    /// The application of the call's `{org}`/`{env}`.
    async fn application(&self, call: &Call) -> Result<Application, ApiError> {
        let (org, env) = (call.param(&call.params.org), call.param(&call.params.env));
        let app = self.environment_app(call.grant(), org, env)?;
        Ok(self.objectstore.application(app).await?)
    }

    /// The call's `{store}` if it exists. The default store always does.
    async fn existing_store(&self, call: &Call) -> Result<Store, ApiError> {
        existing_store(&self.application(call).await?, call.store()).await
    }
}

/// The store `name` of `app` if it exists. The default store always does.
async fn existing_store(app: &Application, name: &str) -> Result<Store, ApiError> {
    if name == DEFAULT_STORE {
        return Ok(app.default_store().await?);
    }
    app.find_store(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no store {name:?}")))
}

/// The value of query parameter `name`, decoded.
fn query_value(query: Option<&str>, name: &str) -> Result<Option<String>, ApiError> {
    query_param(query, name)
        .map(|value| {
            value.ok_or_else(|| {
                ApiError::bad_request(format!("query parameter {name} is not valid UTF-8"))
            })
        })
        .transpose()
}

/// `pageSize` (1..=1000, default 25) and `nextPageToken` from the query.
fn paging(query: Option<&str>) -> Result<(Option<String>, u32), ApiError> {
    let size = match query_value(query, "pageSize")? {
        None => DEFAULT_PAGE_SIZE,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "pageSize must be a whole number from 1 to {MAX_PAGE_SIZE}"
                )));
            }
        },
    };
    Ok((query_value(query, "nextPageToken")?, size))
}

/// An empty `204 No Content`.
fn no_content() -> hyper::Response<ResponseBody> {
    hyper::Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(crate::http::full_body(Bytes::new()))
        .expect("a valid response")
}

/// A page of the object store as the API sends it.
fn page<T, U>(page: crate::objectstore::Page<T>, item: impl Fn(T) -> U) -> wire::Page<U> {
    wire::Page {
        values: page.items.into_iter().map(item).collect(),
        next_page_token: page.cursor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_names_every_error_code() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let documented = &doc["components"]["schemas"]["Error"]["properties"]["error"]["enum"];
        let codes: Vec<&str> = ostore_status::ErrorCode::ALL
            .iter()
            .map(|c| c.name())
            .collect();
        assert_eq!(documented, &serde_json::json!(codes));
    }

    #[test]
    fn the_openapi_document_states_the_limits_the_server_checks() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let schemas = &doc["components"]["schemas"];
        for (schema, field) in [
            ("StringWrite", "ttlSeconds"),
            ("BinaryWrite", "ttlSeconds"),
            ("NumberWrite", "ttlSeconds"),
            ("StoreConfig", "defaultTtlSeconds"),
        ] {
            let ttl = &schemas[schema]["properties"][field];
            assert_eq!(ttl["minimum"], 1, "{schema}.{field}");
            assert_eq!(
                ttl["maximum"],
                crate::objectstore::MAX_TTL_SECS,
                "{schema}.{field}"
            );
        }
        // Names are what the object store's name check lets through: not
        // empty, and no control character (Unicode's Cc, as
        // `char::is_control`).
        let control: Vec<char> = (0..=0x10FFFFu32)
            .filter_map(char::from_u32)
            .filter(|c| c.is_control())
            .collect();
        assert_eq!(
            control,
            ('\u{0}'..='\u{1f}')
                .chain('\u{7f}'..='\u{9f}')
                .collect::<Vec<_>>()
        );
        let mut checked = 0;
        for item in doc["paths"].as_object().unwrap().values() {
            for param in item["parameters"].as_array().into_iter().flatten() {
                if ["store", "partition", "key"].contains(&param["name"].as_str().unwrap()) {
                    let schema = &param["schema"];
                    assert_eq!(schema["minLength"], 1);
                    assert_eq!(schema["pattern"], "^[^\u{0}-\u{1f}\u{7f}-\u{9f}]+$");
                    checked += 1;
                }
            }
        }
        assert!(checked >= 10, "only {checked} name parameters");
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

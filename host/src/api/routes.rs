//! The route table: every method and path the API serves, what each needs
//! of the caller, and which operation answers it. The server asks it whether
//! a path is the API's, the dispatcher finds routes in it, and the OpenAPI
//! test checks that it and the document list the same operations.

use http::Method;

use crate::auth::Scope;
use crate::http::percent_decode;

use super::ApiError;

/// What a route needs of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing: the token endpoint, the OpenAPI document and the health
    /// probes.
    Anyone,
    /// A valid bearer token.
    Token,
    /// A valid bearer token with this scope.
    Scope(Scope),
}

/// The operation a route performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Token,
    OpenApi,
    Environments,
    Metrics,
    Healthz,
    Readyz,
    ListStores,
    GetStore,
    PutStore,
    DeleteStore,
    ListPartitions,
    DeletePartition,
    ListKeys,
    ClearKeys,
    GetKey,
    PutKey,
    DeleteKey,
    Usage,
    Stats,
}

/// One method on one path.
#[derive(Debug)]
pub struct Route {
    pub method: Method,
    /// The path as the OpenAPI document writes it: `{name}` stands for one
    /// percent-encoded segment.
    pub path: &'static str,
    pub access: Access,
    pub(super) op: Op,
}

/// Paths under this prefix are the API's even where no route matches (they
/// answer 404 from the API), so that no guest route can take them.
const NAMESPACE: &str = "/api/v1/";

/// The token endpoint, as in Anypoint.
pub const TOKEN_PATH: &str = "/accounts/api/v2/oauth2/token";

/// A path below one environment of one organization.
macro_rules! env_path {
    ($rest:literal) => {
        concat!("/api/v1/organizations/{org}/environments/{env}", $rest)
    };
}

macro_rules! route {
    ($method:ident $path:expr, $access:expr, $op:ident) => {
        Route {
            method: Method::$method,
            path: $path,
            access: $access,
            op: Op::$op,
        }
    };
}

/// Every route of the API.
pub static ROUTES: &[Route] = {
    use Access::{Anyone, Token};
    const READ: Access = Access::Scope(Scope::ReadStore);
    const DATA: Access = Access::Scope(Scope::ManageStoreData);
    const MANAGE: Access = Access::Scope(Scope::ManageStore);
    const METRICS: Access = Access::Scope(Scope::ReadStoreMetrics);
    &[
        route!(POST TOKEN_PATH, Anyone, Token),
        route!(GET "/api/v1/openapi.json", Anyone, OpenApi),
        route!(GET "/api/v1/environments", Token, Environments),
        route!(GET "/metrics", METRICS, Metrics),
        route!(GET "/healthz", Anyone, Healthz),
        route!(GET "/readyz", Anyone, Readyz),
        route!(GET env_path!("/usage"), METRICS, Usage),
        route!(GET env_path!("/stores"), READ, ListStores),
        route!(GET env_path!("/stores/{store}"), READ, GetStore),
        route!(PUT env_path!("/stores/{store}"), MANAGE, PutStore),
        route!(DELETE env_path!("/stores/{store}"), MANAGE, DeleteStore),
        route!(GET env_path!("/stores/{store}/partitions"), READ, ListPartitions),
        route!(DELETE env_path!("/stores/{store}/partitions/{partition}"), MANAGE, DeletePartition),
        route!(GET env_path!("/stores/{store}/partitions/{partition}/keys"), READ, ListKeys),
        route!(DELETE env_path!("/stores/{store}/partitions/{partition}/keys"), DATA, ClearKeys),
        route!(GET env_path!("/stores/{store}/partitions/{partition}/keys/{key}"), READ, GetKey),
        route!(PUT env_path!("/stores/{store}/partitions/{partition}/keys/{key}"), DATA, PutKey),
        route!(POST env_path!("/stores/{store}/partitions/{partition}/keys/{key}"), DATA, PutKey),
        route!(DELETE env_path!("/stores/{store}/partitions/{partition}/keys/{key}"), DATA, DeleteKey),
        route!(GET "/api/v1/stats/organizations/{org}", METRICS, Stats),
        route!(GET "/api/v1/stats/organizations/{org}/environments/{env}", METRICS, Stats),
        route!(GET "/api/v1/stats/organizations/{org}/environments/{env}/stores/{store}", METRICS, Stats),
    ]
};

/// Whether `path` belongs to the API rather than to a guest route.
pub fn serves(path: &str) -> bool {
    path.starts_with(NAMESPACE) || ROUTES.iter().any(|r| r.path == path)
}

/// The named segments of a matched path.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Params {
    pub org: Option<String>,
    pub env: Option<String>,
    pub store: Option<String>,
    pub partition: Option<String>,
    pub key: Option<String>,
}

impl Params {
    fn set(&mut self, name: &str, value: &str) {
        let slot = match name {
            "org" => &mut self.org,
            "env" => &mut self.env,
            "store" => &mut self.store,
            "partition" => &mut self.partition,
            "key" => &mut self.key,
            other => unreachable!("the route table names no segment {other:?}"),
        };
        *slot = Some(value.to_string());
    }
}

/// Matches `path` against one route's pattern.
fn captures(pattern: &str, segments: &[String]) -> Option<Params> {
    let parts: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
    if parts.len() != segments.len() {
        return None;
    }
    let mut params = Params::default();
    for (part, segment) in parts.iter().zip(segments) {
        match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) => params.set(name, segment),
            None if part == segment => {}
            None => return None,
        }
    }
    Some(params)
}

/// The route serving `method` on `path`, with the path's named segments.
/// A path no route serves is 404; a path served for other methods is 405.
pub(super) fn find(method: &Method, path: &str) -> Result<(&'static Route, Params), ApiError> {
    let segments = segments(path)?;
    let mut allowed = Vec::new();
    for route in ROUTES {
        if let Some(params) = captures(route.path, &segments) {
            if route.method == method {
                return Ok((route, params));
            }
            allowed.push(route.method.as_str());
        }
    }
    if allowed.is_empty() {
        return Err(ApiError::not_found("no such API route"));
    }
    let allow = allowed.join(", ");
    Err(ApiError::method_not_allowed(
        format!("{method} is not served at this path; use {allow}"),
        allow,
    ))
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
    fn routes_are_found_by_method_and_path_and_name_their_segments() {
        let (route, params) = find(
            &Method::PUT,
            "/api/v1/organizations/o/environments/e/stores/s/partitions/p/keys/a%2Fb",
        )
        .unwrap();
        assert_eq!(route.op, Op::PutKey);
        assert_eq!(params.key.as_deref(), Some("a/b"));
        assert_eq!(
            (params.org.as_deref(), params.store.as_deref()),
            (Some("o"), Some("s"))
        );
        let (route, params) = find(&Method::GET, "/api/v1/stats/organizations/o").unwrap();
        assert_eq!((route.op, params.env), (Op::Stats, None));

        let wrong = find(
            &Method::PATCH,
            "/api/v1/organizations/o/environments/e/stores/s",
        )
        .unwrap_err();
        assert_eq!(wrong.status(), 405);
        let missing = find(
            &Method::GET,
            "/api/v1/organizations/o/environments/e/stores/s/bogus",
        )
        .unwrap_err();
        assert_eq!(missing.status(), 404);
        assert!(serves("/api/v1/anything") && serves(TOKEN_PATH) && serves("/metrics"));
        assert!(serves("/healthz") && serves("/readyz"));
        assert!(!serves("/store") && !serves("/api/v2/x"));
        // Every route is reachable: no pattern shadows another.
        for route in ROUTES {
            let path = route.path.replace(['{', '}'], "");
            let (found, _) = find(&route.method, &path).unwrap();
            assert_eq!(found.path, route.path);
        }
    }
}

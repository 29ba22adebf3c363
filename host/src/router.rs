//! Which component serves which path, across all applications of a host,
//! with the REST API and the admin UI ahead of them; and, for each
//! application, what its components' requests to the application itself
//! (self requests, service chaining) reach: its own routes and components
//! only.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use http::uri::PathAndQuery;
use http_body_util::BodyExt;
use hyper::Uri;
use hyper::body::Incoming;
use hyper::header::{HOST, HeaderName, HeaderValue};
use wasmtime_wasi_http::WasiBody;

use crate::admin;
use crate::api::{self, Api};
use crate::app::LoadedApp;
use crate::budget::{Charge, MemoryBudget};
use crate::http::{ResponseBody, retry_later, text_response};
use crate::manifest::{Matched, Route};
use crate::runtime::{Chain, HttpComponent, LocalAnswer, LocalService, LocalTarget};

/// Request bodies up to this size are not charged to the memory budget.
const FREE_BODY_BYTES: u64 = 64 << 10;
/// What a body costs the memory budget, in copies of itself: as received,
/// decoded, sealed, and in the storage engine's write.
const BODY_COPIES: u64 = 4;

/// The headers Spin sets on a request to a component, with Spin's values:
/// for `GET /base/x/y/rest?k=v` (`Host: example.com`) to route
/// `/base/:a/:b/...`, `spin-full-url` is `http://example.com/base/x/y/rest?k=v`,
/// `spin-path-info` `/rest`, `spin-matched-route` and
/// `spin-raw-component-route` the route, `spin-component-route`
/// `/base/:a/:b`, `spin-base-path` `/`, `spin-path-match-a` `x`.
fn spin_headers<B>(
    req: &hyper::Request<B>,
    route: &Route,
    matched: &Matched<'_>,
    client: SocketAddr,
    https: bool,
) -> Vec<(HeaderName, HeaderValue)> {
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if https { "https" } else { "http" };
    let path_and_query = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut headers = vec![
        (
            "spin-full-url".to_string(),
            format!("{scheme}://{host}{path_and_query}"),
        ),
        ("spin-path-info".to_string(), matched.path_info.clone()),
        ("spin-matched-route".to_string(), route.to_string()),
        (
            "spin-raw-component-route".to_string(),
            route.raw().to_string(),
        ),
        (
            "spin-component-route".to_string(),
            route.component_route().to_string(),
        ),
        ("spin-base-path".to_string(), "/".to_string()),
        ("spin-client-addr".to_string(), client.to_string()),
    ];
    for (name, value) in &matched.params {
        let name = name.to_ascii_lowercase().replace('_', "-");
        headers.push((format!("spin-path-match-{name}"), value.clone()));
    }
    // A name or value that is no header (a parameter name with a space,
    // say) is left out rather than failing the request.
    headers
        .into_iter()
        .filter_map(|(name, value)| {
            Some((
                HeaderName::try_from(name).ok()?,
                HeaderValue::try_from(value).ok()?,
            ))
        })
        .collect()
}

/// Gives `req` Spin's request headers for `route`. Those are the host's
/// word: any `spin-` header the sender set is dropped first, so that no
/// client (nor calling component) can tell a component what route matched.
fn give_spin_headers<B>(
    req: &mut hyper::Request<B>,
    route: &Route,
    matched: &Matched<'_>,
    client: SocketAddr,
    https: bool,
) {
    let headers = spin_headers(req, route, matched, client, https);
    let sent = req.headers_mut();
    let forged: Vec<_> = sent
        .keys()
        .filter(|name| name.as_str().starts_with("spin-"))
        .cloned()
        .collect();
    for name in forged {
        sent.remove(name);
    }
    for (name, value) in headers {
        sent.insert(name, value);
    }
}

/// The client address Spin gives a local request (none: it came from no
/// socket).
const LOCAL_CLIENT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// The route a chained request (`http://<id>.spin.internal/...`) is served
/// as, as in Spin: a wildcard at the root, so that `spin-path-info` is the
/// whole path.
static CHAINED_ROUTE: LazyLock<Route> =
    LazyLock::new(|| Route::parse("/...").expect("a valid route"));

/// The answer to a path no route serves.
fn no_route(path: &str) -> hyper::Response<ResponseBody> {
    text_response(404, format!("no route serves {path}"))
}

/// The route of `routes` serving `path`, as Spin picks it: the most
/// specific of those that match, the first listed among equals; and what
/// it made of the path.
fn most_specific<'r, T>(
    routes: impl Iterator<Item = (&'r Route, T)>,
    path: &str,
) -> Option<(&'r Route, T, Matched<'r>)> {
    routes
        .filter_map(|(route, to)| route.matches(path).map(|m| (route, to, m)))
        .min_by(|(a, _, _), (b, _, _)| a.precedence(b))
}

/// One application's routes and components: what its components' requests
/// to the application itself reach (see [`LocalService`]), never another
/// application, the REST API or the admin UI.
struct AppService {
    routes: Vec<(Route, HttpComponent)>,
    /// Every component a trigger names, private endpoints included.
    components: BTreeMap<String, HttpComponent>,
}

impl LocalService for AppService {
    fn serve(
        self: Arc<Self>,
        target: LocalTarget,
        mut req: hyper::Request<WasiBody>,
        chain: Chain,
    ) -> LocalAnswer {
        Box::pin(async move {
            match target {
                LocalTarget::Routes => {
                    // As Spin sends it to its own listener: the path and
                    // query under the client's scheme and Host.
                    let path_and_query = req
                        .uri()
                        .path_and_query()
                        .cloned()
                        .unwrap_or_else(|| PathAndQuery::from_static("/"));
                    *req.uri_mut() = Uri::from(path_and_query);
                    match chain.host() {
                        Some(host) => req.headers_mut().insert(HOST, host.clone()),
                        None => req.headers_mut().remove(HOST),
                    };
                    let path = req.uri().path().to_string();
                    let routes = self.routes.iter().map(|(route, c)| (route, c));
                    let Some((route, component, matched)) = most_specific(routes, &path) else {
                        return Ok(no_route(&path));
                    };
                    let https = chain.https();
                    give_spin_headers(&mut req, route, &matched, LOCAL_CLIENT, https);
                    Ok(component.handle(req, https, chain).await)
                }
                LocalTarget::Component(id) => {
                    let Some(component) = self.components.get(&id) else {
                        return Err(wasmtime_wasi_http::Error::DestinationNotFound);
                    };
                    // As Spin: no Host (so `spin-full-url` names
                    // `localhost`), the URI as the caller wrote it, and the
                    // scheme http.
                    req.headers_mut().remove(HOST);
                    let path = req.uri().path().to_string();
                    let matched = CHAINED_ROUTE.matches(&path).expect("/... matches any path");
                    give_spin_headers(&mut req, &CHAINED_ROUTE, &matched, LOCAL_CLIENT, false);
                    Ok(component.handle(req, false, chain).await)
                }
            }
        })
    }
}

/// How long a refused request's body is read (and dropped) at most.
const DISCARD_PATIENCE: Duration = Duration::from_secs(30);

/// Reads `body` to its end, or for [`DISCARD_PATIENCE`], keeping nothing.
async fn discard(mut body: Incoming) {
    let _ = tokio::time::timeout(DISCARD_PATIENCE, async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
}

/// The request header with which browsers fetch a service worker's script.
const SERVICE_WORKER: &str = "service-worker";
/// The response header that lets a service worker control pages above its
/// script's path.
const SERVICE_WORKER_ALLOWED: &str = "service-worker-allowed";

/// A served route.
#[derive(Clone)]
pub struct RouteEntry {
    pub route: Route,
    pub application: String,
    pub component: HttpComponent,
    /// The application's routes and components, for its local requests.
    app: Arc<AppService>,
}

/// Why an application's routes cannot be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    #[error("two manifests name the application {0:?}; each application needs its own name")]
    DuplicateApplication(String),
    #[error(
        "route {route} of application {app:?} overlaps route {other} of application {other_app:?}"
    )]
    Overlap {
        route: String,
        app: String,
        other: String,
        other_app: String,
    },
}

/// The routes of a host's listener.
#[derive(Clone, Default)]
pub struct Router {
    routes: Vec<RouteEntry>,
    api: Option<Arc<Api>>,
    admin_ui: bool,
    /// What large request bodies in flight are charged to.
    memory: MemoryBudget,
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves the REST API (with its token endpoint) ahead of guest routes,
    /// and the admin UI at `/admin/` if `admin_ui`. Applications sharing
    /// an origin with the UI may not register service workers.
    pub fn with_api(mut self, api: Arc<Api>, admin_ui: bool) -> Self {
        self.api = Some(api);
        self.admin_ui = admin_ui;
        self
    }

    /// Charges request bodies in flight to `memory`.
    pub fn with_memory_budget(mut self, memory: MemoryBudget) -> Self {
        self.memory = memory;
        self
    }

    /// A router for a listener of the admin UI's own: the same API and the
    /// UI, and no application routes.
    pub fn admin_only(&self) -> Router {
        Router {
            routes: Vec::new(),
            api: self.api.clone(),
            admin_ui: self.api.is_some(),
            memory: self.memory.clone(),
        }
    }

    /// Adds an application's routes. Fails if another application has its
    /// name or a route overlapping one of its routes (within one
    /// application the most specific route wins, as in Spin).
    pub fn add(&mut self, app: LoadedApp) -> Result<(), RouteError> {
        if self.routes.iter().any(|r| r.application == app.name) {
            return Err(RouteError::DuplicateApplication(app.name));
        }
        for (route, _) in &app.routes {
            if let Some(clash) = self.routes.iter().find(|r| r.route.overlaps(route)) {
                return Err(RouteError::Overlap {
                    route: route.to_string(),
                    app: app.name.clone(),
                    other: clash.route.to_string(),
                    other_app: clash.application.clone(),
                });
            }
        }
        let service = Arc::new(AppService {
            routes: app.routes.clone(),
            components: app.components,
        });
        for (route, component) in app.routes {
            self.routes.push(RouteEntry {
                route,
                application: app.name.clone(),
                component,
                app: service.clone(),
            });
        }
        Ok(())
    }

    pub fn routes(&self) -> &[RouteEntry] {
        &self.routes
    }

    /// Whether the host itself answers `path` (the REST API, or the admin
    /// UI if this router serves it), so that no guest route can.
    pub fn reserves(&self, path: &str) -> bool {
        self.api.is_some() && (api::serves(path) || (self.admin_ui && admin::serves(path)))
    }

    /// The route serving `path`, as Spin picks it: the most specific of
    /// those that match, the first listed among equals; and what it made
    /// of the path.
    pub fn find(&self, path: &str) -> Option<(&RouteEntry, Matched<'_>)> {
        let routes = self.routes.iter().map(|entry| (&entry.route, entry));
        most_specific(routes, path).map(|(_, entry, matched)| (entry, matched))
    }

    /// Takes a large body's cost from the memory budget; `None` if the
    /// budget cannot pay it now. Small bodies are free, so that small
    /// requests are served however busy the host is; a body without a
    /// length is paid as the guest's memory grows, or bounded by the REST
    /// API's body limit.
    fn charge_body(&self, req: &hyper::Request<Incoming>) -> Option<Charge> {
        let length = req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if length <= FREE_BODY_BYTES {
            return Some(Charge::default());
        }
        self.memory.try_charge(length.saturating_mul(BODY_COPIES))
    }

    /// Answers one request: the API, the admin UI, or a guest.
    pub async fn handle(
        &self,
        mut req: hyper::Request<Incoming>,
        client: SocketAddr,
        https: bool,
    ) -> hyper::Response<ResponseBody> {
        // Held until the answer's head is ready: by then the body has been
        // read, and its copies are the guest's or gone.
        let Some(_charge) = self.charge_body(&req) else {
            // The body is read and dropped as it comes, so that the client,
            // which may send it all before reading any answer, gets to read
            // this one.
            tokio::spawn(discard(req.into_body()));
            return retry_later(
                "the server has no memory to spare for a request this large now; retry shortly\n",
            );
        };
        let path = req.uri().path().to_string();
        if let Some(api) = self.api.as_ref() {
            if api::serves(&path) {
                return api.handle(req).await;
            }
            if self.admin_ui && admin::serves(&path) {
                return admin::handle(&req);
            }
        }
        let Some((entry, matched)) = self.find(&path) else {
            return no_route(&path);
        };
        // A service worker of an application's would control every page of
        // its scope, the admin UI's included when they share this origin.
        // Browsers fetch a worker's script with `Service-Worker: script`,
        // and need `Service-Worker-Allowed` to widen its scope.
        if self.admin_ui && req.headers().contains_key(SERVICE_WORKER) {
            return text_response(
                403,
                "applications may not register service workers on this origin: the admin UI \
                 shares it\n",
            );
        }
        // The request headers Spin gives its components, so that Spin apps
        // that read them work unchanged.
        give_spin_headers(&mut req, &entry.route, &matched, client, https);
        let chain = Chain::client(entry.app.clone(), https, req.headers().get(HOST).cloned());
        let req = req.map(|body| body.map_err(Into::into).boxed_unsync());
        let response = entry.component.handle(req, https, chain).await;
        if self.admin_ui && response.headers().contains_key(SERVICE_WORKER_ALLOWED) {
            tracing::warn!(
                application = %entry.application,
                "refused a response to {path} with Service-Worker-Allowed: the admin UI shares \
                 this origin"
            );
            return text_response(
                502,
                "the application's response was refused: it widens a service worker's scope on \
                 an origin the admin UI shares\n",
            );
        }
        response
    }
}

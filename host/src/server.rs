//! The HTTP front: routes requests to guest components.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::time::Duration;

use hyper_util::rt::TokioTimer;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::admin;
use crate::api::Api;
use crate::manifest::{Manifest, Route};
use crate::objectstore::Application;
use crate::runtime::{ComponentSettings, HttpComponent, ResponseBody, Runtime, text_response};
use crate::spin::RuntimeConfig;
use crate::spin::variables::Variables;

/// A served route.
#[derive(Clone)]
pub struct RouteEntry {
    pub route: Route,
    pub application: String,
    pub component: HttpComponent,
}

/// Which component serves which path, across all applications of a host,
/// and the REST API beside them.
#[derive(Clone, Default)]
pub struct Router {
    routes: Vec<RouteEntry>,
    api: Option<Arc<Api>>,
    admin_ui: bool,
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves the REST API (with its token endpoint) and the admin UI ahead
    /// of guest routes.
    pub fn with_api(mut self, api: Api) -> Self {
        self.api = Some(Arc::new(api));
        self.admin_ui = true;
        self
    }

    /// Whether this router serves the admin UI at `/admin/` (it does once
    /// it serves the API).
    pub fn with_admin_ui(mut self, on: bool) -> Self {
        self.admin_ui = on && self.api.is_some();
        self
    }

    /// A router for a listener of the admin UI's own: the same API and the
    /// UI, and no application routes.
    pub fn admin_only(&self) -> Router {
        Router {
            routes: Vec::new(),
            api: self.api.clone(),
            admin_ui: self.api.is_some(),
        }
    }

    /// Loads every component of `manifest` as application `manifest.name`
    /// and adds its routes. Fails if a route overlaps one of another
    /// application (within one application the most specific route wins,
    /// as in Spin).
    pub async fn add_application(
        &mut self,
        runtime: &Runtime,
        manifest: &Manifest,
        app: Application,
        runtime_config: &RuntimeConfig,
    ) -> anyhow::Result<()> {
        if self.routes.iter().any(|r| r.application == manifest.name) {
            anyhow::bail!(
                "two manifests name the application {:?}; each application needs its own name",
                manifest.name
            );
        }
        let mut loaded = std::collections::BTreeMap::new();
        for trigger in &manifest.triggers {
            if let Some(clash) = self
                .routes
                .iter()
                .find(|r| r.route.overlaps(&trigger.route))
            {
                anyhow::bail!(
                    "route {} of application {:?} overlaps route {} of application {:?}",
                    trigger.route,
                    manifest.name,
                    clash.route,
                    clash.application
                );
            }
            if !loaded.contains_key(&trigger.component) {
                let spec = &manifest.components[&trigger.component];
                if !spec.source.is_file() {
                    anyhow::bail!(
                        "component `{}`: file {} does not exist (build it first, or pass --build)",
                        trigger.component,
                        spec.source.display()
                    );
                }
                let grants = runtime_config.grant(&trigger.component, &spec.key_value_stores)?;
                grants.prepare(&app).await?;
                let settings = ComponentSettings {
                    id: trigger.component.clone(),
                    environment: spec.environment.clone().into_iter().collect(),
                    grants,
                    files: spec.files.clone(),
                    allowed_outbound_hosts: Arc::new(spec.allowed_outbound_hosts.clone()),
                    variables: Variables::resolve(
                        &trigger.component,
                        &manifest.variables,
                        &spec.variables,
                        |name| std::env::var(name).ok(),
                    )
                    .map_err(|e| anyhow::anyhow!(e))?,
                };
                let component = runtime
                    .load_http_component(&spec.source, app.clone(), settings)
                    .map_err(|e| anyhow::anyhow!("component `{}`: {e:#}", trigger.component))?;
                loaded.insert(trigger.component.clone(), component);
            }
        }
        for trigger in &manifest.triggers {
            self.routes.push(RouteEntry {
                route: trigger.route.clone(),
                application: manifest.name.clone(),
                component: loaded[&trigger.component].clone(),
            });
        }
        Ok(())
    }

    pub fn routes(&self) -> &[RouteEntry] {
        &self.routes
    }

    /// The most specific route serving `path`.
    pub fn find(&self, path: &str) -> Option<&RouteEntry> {
        self.routes
            .iter()
            .filter_map(|r| r.route.matches(path).map(|score| (score, r)))
            .max_by_key(|(score, _)| *score)
            .map(|(_, r)| r)
    }

    async fn handle(
        &self,
        mut req: hyper::Request<Incoming>,
        client: SocketAddr,
        https: bool,
    ) -> hyper::Response<ResponseBody> {
        let path = req.uri().path().to_string();
        if let Some(api) = self.api.as_ref() {
            if Api::serves(&path) {
                return api.handle(req).await;
            }
            if self.admin_ui && admin::serves(&path) {
                return admin::handle(&req);
            }
        }
        let Some(entry) = self.find(&path) else {
            return text_response(404, format!("no route serves {path}"));
        };
        // The request headers Spin gives its components, so that Spin apps
        // that read them work unchanged.
        let headers = req.headers_mut();
        let route = entry.route.to_string();
        let path_info = match &entry.route {
            Route::Wildcard(prefix) => path.strip_prefix(prefix.as_str()).unwrap_or("").to_string(),
            Route::Exact(_) => String::new(),
        };
        for (name, value) in [
            ("spin-matched-route", route.as_str()),
            ("spin-path-info", path_info.as_str()),
            ("spin-client-addr", &client.to_string()),
        ] {
            if let Ok(value) = value.parse() {
                headers.insert(name, value);
            }
        }
        entry.component.handle(req, https).await
    }
}

/// How long a client may take to send a request's headers; a slow or
/// stalled client must not hold a connection forever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `shutdown` completes, over TLS when
/// given an acceptor. Then it accepts no new connection and waits (at most
/// 30 seconds) for the requests in flight to be answered.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let router = Arc::new(router);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Running out of file descriptors must not end the server.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small request/response exchanges must not wait for Nagle's
        // algorithm to meet the client's delayed ACK (40 ms stalls).
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let https = tls.is_some();
            let service = service_fn(move |req| {
                let router = router.clone();
                async move { Ok::<_, std::convert::Infallible>(router.handle(req, client, https).await) }
            });
            let mut http = http1::Builder::new();
            http.keep_alive(true)
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let served = match tls {
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            watcher
                                .watch(http.serve_connection(TokioIo::new(stream), service))
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!("TLS handshake with {client} failed: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!("TLS handshake with {client} timed out");
                            return;
                        }
                    }
                }
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
            };
            if let Err(e) = served {
                tracing::debug!("connection from {client}: {e}");
            }
        });
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after {SHUTDOWN_GRACE:?} were cut off");
    }
    Ok(())
}

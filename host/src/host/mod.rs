//! The composition root: a [`Host`] is built from a [`HostConfig`] and the
//! applications' manifests, then [run](Host::run) on bound listeners until a
//! shutdown future completes. `ostore up` only turns flags into a
//! `HostConfig`; tests and embedders build one directly.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use ostore::host::{DataDir, Host, HostConfig};
//! use ostore::manifest::Manifest;
//!
//! let data = DataDir::new(".ostore");
//! data.create()?;
//! let (master_key, _created) = data.master_key(None, None)?;
//! let manifest = Manifest::load("spin.toml".as_ref())?;
//! let host = Host::build(HostConfig::new(data, master_key), &[manifest]).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! // The admin UI gets an origin of its own.
//! let admin = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
//! host.run(listener, Some(admin), async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! | module | holds |
//! |---|---|
//! | `data_dir` | [`DataDir`]: the files a host keeps, its master key, and the credentials offline |
//! | `config` | [`HostConfig`]: everything a host is built from besides the manifests |
//! | `error` | [`HostError`]: why a host cannot be built or run |

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::api::{Api, Environments};
use crate::app::{self, AppContext};
use crate::auth::Credentials;
use crate::backend::{BackendConfig, BackendError};
use crate::budget::MemoryBudget;
use crate::manifest::Manifest;
use crate::objectstore::{self, ObjectStore};
use crate::router::{RouteEntry, Router};
use crate::runtime::Runtime;
use crate::server::{ConnectionLimits, Stopping, serve};

mod config;
mod data_dir;
mod error;

pub use config::{AdminUi, DEFAULT_MEMORY_BUDGET, HostConfig, Sandbox};
pub use data_dir::{DataDir, KeyError};
pub use error::HostError;

/// How long [`Host::run`] waits, after the last request, for the data to be
/// let go of.
const CLOSE_PATIENCE: Duration = Duration::from_secs(5);

/// A host: its object store, the REST API and every application's routes,
/// ready to serve.
///
/// An embedding process should set `RUST_LIB_BACKTRACE=0` before its first
/// thread starts, as `ostore up` does: host errors can reach clients as
/// text (through a guest), and must not carry the host's stack.
pub struct Host {
    objectstore: ObjectStore,
    /// Where `ostore credentials` reaches this host: served from the moment
    /// the host holds the database, so that the command never finds the
    /// database held and no socket to ask.
    credentials_socket: Option<CredentialsSocket>,
    router: Router,
    /// Raised when the shutdown future completes: the listeners stop, and
    /// requests waiting for their client's body end.
    stop: tokio::sync::watch::Sender<bool>,
    environments: Environments,
    admin_ui: AdminUi,
    tls: Option<TlsAcceptor>,
    connections: ConnectionLimits,
    sweep_interval: Duration,
    stats_flush_interval: Duration,
}

impl Host {
    /// Opens the data, loads every application of `manifests`, and routes
    /// them. Nothing is served until [`run`](Self::run).
    pub async fn build(config: HostConfig, manifests: &[Manifest]) -> Result<Host, HostError> {
        let data = &config.data_dir;
        data.create()?;
        let database = data.database();
        let place = backend_place(&config.backend, &database);
        let open = |source| HostError::Open {
            place: place.clone(),
            source,
        };
        let backend = match config.backend.open(&database).await {
            Ok(backend) => backend,
            Err(e @ BackendError::Connect { .. }) => return Err(HostError::Backend(e)),
            Err(e) => return Err(open(e.into())),
        };
        let store_config = objectstore::Config {
            limits: config.limits.clone(),
            clock: config.clock.clone(),
            // The process holds a redb file: no other host writes to it.
            sole_host: config.backend.is_redb(),
            ..Default::default()
        };
        let objectstore = ObjectStore::open(backend, &config.master_key, store_config)
            .await
            .map_err(open)?;
        let runtime = match config.sandbox {
            Sandbox::New(sandbox) => Runtime::new(sandbox)?,
            Sandbox::Shared(runtime) => runtime,
        };
        let environments = environments(&config.organization, &config.environments, manifests)?;
        let credentials = Arc::new(
            data.open_credentials(
                &objectstore,
                &config.master_key,
                config.token_lifetime,
                config.clock.clone(),
            )
            .await?,
        );
        // Only redb needs it: one process holds the file. Hosts on Redis
        // may share a data directory, and the command reaches Redis.
        let credentials_socket = config
            .backend
            .is_redb()
            .then(|| start_credentials_socket(&data.credentials_socket(), credentials.clone()))
            .flatten();
        let (stop, stopping) = Stopping::channel();
        let api = Api::new(
            objectstore.clone(),
            credentials.clone(),
            environments.clone(),
            config.connections.body_timeout,
            stopping,
        );
        let memory = config
            .memory_budget
            .map_or_else(MemoryBudget::unlimited, MemoryBudget::new);
        let mut router = Router::new()
            .with_api(Arc::new(api), config.admin_ui == AdminUi::AppListener)
            .with_memory_budget(memory.clone());
        let cx = AppContext {
            runtime: &runtime,
            memory: &memory,
            runtime_config: &config.runtime_config,
            variables: &config.variables,
            environment: &config.environment,
        };
        for manifest in manifests {
            let app = objectstore
                .application(&manifest.name)
                .await
                .map_err(|source| HostError::Application {
                    name: manifest.name.clone(),
                    source,
                })?;
            crate::spin::set_default_keys(&app, &config.runtime_config, &config.default_keys)
                .await
                .map_err(|source| HostError::DefaultKeys {
                    name: manifest.name.clone(),
                    source,
                })?;
            let loaded = app::load(&cx, manifest, app)
                .await
                .map_err(|source| HostError::Load {
                    path: manifest.path.clone(),
                    source,
                })?;
            router.add(loaded).map_err(|source| HostError::Route {
                path: manifest.path.clone(),
                source: Box::new(source),
            })?;
        }
        Ok(Host {
            objectstore,
            credentials_socket,
            router,
            stop,
            environments,
            admin_ui: config.admin_ui,
            tls: config.tls,
            connections: config.connections,
            sweep_interval: config.sweep_interval,
            stats_flush_interval: config.stats_flush_interval,
        })
    }

    pub fn objectstore(&self) -> &ObjectStore {
        &self.objectstore
    }

    /// Every application route, for printing at start.
    pub fn routes(&self) -> &[RouteEntry] {
        self.router.routes()
    }

    /// The REST API environments, for printing at start.
    pub fn environments(&self) -> &Environments {
        &self.environments
    }

    /// Whether the listeners serve HTTPS.
    pub fn serves_https(&self) -> bool {
        self.tls.is_some()
    }

    /// Routes under a path the host answers itself (the REST API, or the
    /// admin UI on the applications' listener): requests there never reach
    /// the component.
    pub fn shadowed_routes(&self) -> Vec<&RouteEntry> {
        self.routes()
            .iter()
            .filter(|r| {
                let path = r.route.literal_prefix();
                let below = format!("{path}/");
                [path.as_str(), &below]
                    .iter()
                    .any(|p| self.router.reserves(p))
            })
            .collect()
    }

    /// Serves the applications and the API on `listener`, and the admin UI
    /// with the API on `admin_listener` if given, until `shutdown`
    /// completes; then waits for requests in flight (at most 30 s), saves
    /// the last request counts, and closes the data: when it returns, the
    /// data directory may be opened again.
    pub async fn run(
        self,
        listener: TcpListener,
        admin_listener: Option<TcpListener>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), HostError> {
        let Host {
            objectstore,
            credentials_socket,
            router,
            stop,
            admin_ui,
            tls,
            connections,
            sweep_interval,
            stats_flush_interval,
            ..
        } = self;
        if admin_ui == AdminUi::OwnListener && admin_listener.is_none() {
            tracing::info!("no admin listener: the admin UI is not served");
        }
        let connections = connections.within_file_limit(1 + usize::from(admin_listener.is_some()));
        let sweeper = objectstore.spawn_sweeper(sweep_interval);
        let socket = credentials_socket;
        let flusher = objectstore.spawn_stats_flusher(stats_flush_interval);
        // One shutdown stops every listener.
        let stopping = Stopping::from(&stop);
        let stopped = |stopping: Stopping| async move { stopping.wait().await };
        let serving = async {
            match admin_listener {
                Some(admin_listener) => {
                    let admin_router = router.admin_only();
                    let (apps, admin) = tokio::join!(
                        serve(
                            listener,
                            router,
                            tls.clone(),
                            &connections,
                            stopped(stopping.clone())
                        ),
                        serve(
                            admin_listener,
                            admin_router,
                            tls,
                            &connections,
                            stopped(stopping)
                        ),
                    );
                    apps.and(admin)
                }
                None => serve(listener, router, tls, &connections, stopped(stopping)).await,
            }
        };
        let signal = async move {
            shutdown.await;
            let _ = stop.send(true);
        };
        let (served, ()) = tokio::join!(serving, signal);
        sweeper.stop().await;
        flusher.stop().await;
        if let Some(socket) = socket {
            socket.stop().await;
        }
        // The last counts are saved even if serving failed.
        let flushed = objectstore.flush_stats().await;
        // Guest instances finishing their last response may still hold the
        // store for a moment; the data is closed once they let go.
        if !objectstore.close(CLOSE_PATIENCE).await {
            tracing::warn!(
                "the object store was still in use {CLOSE_PATIENCE:?} after the last request"
            );
        }
        served.map_err(HostError::Serve)?;
        flushed.map_err(HostError::FlushStats)
    }
}

/// Whether opening the database failed because another process holds it.
#[cfg(unix)]
fn held_by_another_process(e: &BackendError) -> bool {
    matches!(e, BackendError::Open { source, .. }
    if matches!(
        source.downcast_ref::<redb::DatabaseError>(),
        Some(redb::DatabaseError::DatabaseAlreadyOpen)
    ))
}

/// Where `backend` keeps the data, for messages.
fn backend_place(backend: &BackendConfig, database: &Path) -> String {
    match backend {
        BackendConfig::Redb(_) => database.display().to_string(),
        BackendConfig::Redis(redis) => format!("the data in Redis at {}", redis.addresses()),
    }
}

/// Serves the credentials socket at `path` (so that `ostore credentials`
/// works while this host holds the database). Without it the host still
/// serves; the command then says the database is in use.
#[cfg(unix)]
type CredentialsSocket = crate::auth::socket::SocketServer;
#[cfg(not(unix))]
type CredentialsSocket = NoSocket;

#[cfg(unix)]
fn start_credentials_socket(
    path: &Path,
    credentials: Arc<Credentials>,
) -> Option<CredentialsSocket> {
    match crate::auth::socket::SocketServer::start(path, credentials) {
        Ok(server) => Some(server),
        Err(e) => {
            tracing::warn!(
                "cannot serve the credentials socket {}: {e}; `ostore credentials` \
                 will not work while this host runs",
                path.display()
            );
            None
        }
    }
}

#[cfg(not(unix))]
fn start_credentials_socket(_: &Path, _: Arc<Credentials>) -> Option<NoSocket> {
    None
}

/// Where there are no Unix sockets.
#[cfg(not(unix))]
struct NoSocket;

#[cfg(not(unix))]
impl NoSocket {
    async fn stop(self) {}
}

/// The REST API environment of every application: the one given for it,
/// or its name.
fn environments(
    organization: &str,
    given: &BTreeMap<String, String>,
    manifests: &[Manifest],
) -> Result<Environments, HostError> {
    if let Some(app) = given
        .keys()
        .find(|app| !manifests.iter().any(|m| &m.name == *app))
    {
        return Err(HostError::UnknownApplication(app.clone()));
    }
    let mut environments = Environments::new();
    for m in manifests {
        let env = given.get(&m.name).unwrap_or(&m.name);
        environments.add(organization, env, &m.name)?;
    }
    Ok(environments)
}

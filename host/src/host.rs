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

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::api::{Api, EnvironmentClash, Environments};
use crate::app::{self, AppContext, LoadError};
use crate::auth::{AuthError, CredentialAdmin, Credentials};
use crate::backend::{BackendConfig, BackendError};
use crate::budget::MemoryBudget;
use crate::clock::{self, SharedClock};
use crate::encryption::{EncryptionError, MasterKey};
use crate::manifest::Manifest;
use crate::objectstore::{self, Limits, ObjectStore};
use crate::router::{RouteEntry, RouteError, Router};
use crate::runtime::{Runtime, RuntimeError, SandboxConfig};
use crate::server::{ConnectionLimits, Stopping, serve};
use crate::spin::RuntimeConfig;
use crate::spin::variables::VariableSource;

/// The database file inside a data directory.
const DATABASE_FILE: &str = "ostore.redb";
/// Where versions before credentials moved into the backend kept them.
const OLD_CREDENTIALS_FILE: &str = "credentials.sealed";
const CREDENTIALS_SOCKET: &str = "credentials.sock";
const KEY_FILE: &str = "master.key";

/// The default of [`HostConfig::memory_budget`]: 1 GiB.
pub const DEFAULT_MEMORY_BUDGET: u64 = 1 << 30;

/// How long [`Host::run`] waits, after the last request, for the data to be
/// let go of.
const CLOSE_PATIENCE: Duration = Duration::from_secs(5);

/// A host's data directory: the encrypted database (which also holds the
/// sealed client credentials), the running host's credentials socket, and
/// (unless the key is kept elsewhere) the master key.
#[derive(Debug, Clone)]
pub struct DataDir {
    path: PathBuf,
}

/// Why the master key cannot be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key text (from the environment) is not a key.
    #[error(transparent)]
    Malformed(EncryptionError),
    /// Reading or making the key file failed.
    #[error(transparent)]
    File(EncryptionError),
    /// The database exists but its key file does not: a new key would only
    /// be refused, and leave a useless key file behind.
    #[error(
        "{} holds data but the master key file {} is missing; give the key with \
         --key-file or ${}",
        database.display(), key_file.display(), crate::encryption::MASTER_KEY_ENV
    )]
    MissingKeyFile {
        database: PathBuf,
        key_file: PathBuf,
    },
}

impl DataDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the directory if it does not exist.
    pub fn create(&self) -> Result<(), HostError> {
        std::fs::create_dir_all(&self.path).map_err(|source| HostError::DataDir {
            path: self.path.clone(),
            source,
        })
    }

    /// The database file.
    pub fn database(&self) -> PathBuf {
        self.path.join(DATABASE_FILE)
    }

    /// Where the master key is kept unless it is given otherwise.
    pub fn default_key_file(&self) -> PathBuf {
        self.path.join(KEY_FILE)
    }

    /// The sealed credentials file of versions that kept credentials
    /// outside the database. If it exists it is imported into the backend
    /// when the data is opened, then renamed to
    /// [`credentials.sealed.imported`](crate::auth::imported_path).
    pub fn old_credentials_file(&self) -> PathBuf {
        self.path.join(OLD_CREDENTIALS_FILE)
    }

    /// Where a running host answers `ostore credentials` (see
    /// [`auth::socket`](crate::auth::socket)).
    pub fn credentials_socket(&self) -> PathBuf {
        self.path.join(CREDENTIALS_SOCKET)
    }

    /// The credentials kept in `objectstore` (this directory's data), after
    /// importing the [old credentials file](Self::old_credentials_file) if
    /// there is one.
    pub async fn open_credentials(
        &self,
        objectstore: &ObjectStore,
        master_key: &MasterKey,
        token_lifetime: Duration,
        clock: SharedClock,
    ) -> Result<Credentials, AuthError> {
        let credentials = Credentials::new(objectstore, master_key, token_lifetime, clock);
        let file = self.old_credentials_file();
        let imported = credentials.import_file(&file, master_key).await?;
        if imported > 0 {
            tracing::info!(
                "imported {imported} credentials from {} into the database; the file is now {}",
                file.display(),
                crate::auth::imported_path(&file).display()
            );
        }
        Ok(credentials)
    }

    /// The credentials of this directory as `ostore credentials` manages
    /// them. On redb: through the running host that holds the database if
    /// there is one, else in the database, opened here (and closed when the
    /// result is dropped). On Redis, which any number of processes may
    /// share: in Redis.
    pub async fn credential_admin(
        &self,
        master_key: &MasterKey,
        backend: &BackendConfig,
    ) -> Result<CredentialAdmin, HostError> {
        #[cfg(unix)]
        if backend.is_redb()
            && let Some(host) =
                crate::auth::socket::HostCredentials::find(&self.credentials_socket(), master_key)
                    .await
        {
            return Ok(CredentialAdmin::Host(host));
        }
        let database = self.database();
        let place = backend_place(backend, &database);
        let open = |source| HostError::Open {
            place: place.clone(),
            source,
        };
        let opened = match backend.open(&database).await {
            Ok(opened) => opened,
            Err(e @ BackendError::Connect { .. }) => return Err(HostError::Backend(e)),
            #[cfg(unix)]
            Err(e) if held_by_another_process(&e) => {
                // A host that has just opened the database serves its
                // socket a moment later: give it that moment.
                for _ in 0..50 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let socket = self.credentials_socket();
                    if let Some(host) =
                        crate::auth::socket::HostCredentials::find(&socket, master_key).await
                    {
                        return Ok(CredentialAdmin::Host(host));
                    }
                }
                return Err(open(e.into()));
            }
            Err(e) => return Err(open(e.into())),
        };
        let objectstore = ObjectStore::open(opened, master_key, objectstore::Config::default())
            .await
            .map_err(open)?;
        // No token is issued here: no lifetime, and the clock is moot.
        let credentials = self
            .open_credentials(&objectstore, master_key, Duration::ZERO, clock::system())
            .await?;
        Ok(CredentialAdmin::Backend {
            objectstore,
            credentials: Box::new(credentials),
        })
    }

    /// The master key: `text` (64 hex digits, from the environment) if
    /// given, else the key file (by default `master.key` here), made with a
    /// fresh key if missing. Says whether it made one.
    pub fn master_key(
        &self,
        key_file: Option<&Path>,
        text: Option<&str>,
    ) -> Result<(MasterKey, bool), KeyError> {
        if let Some(text) = text {
            return Ok((MasterKey::parse(text).map_err(KeyError::Malformed)?, false));
        }
        let key_file = key_file.map_or_else(|| self.default_key_file(), Path::to_path_buf);
        let database = self.database();
        if !key_file.exists() && database.exists() {
            return Err(KeyError::MissingKeyFile { database, key_file });
        }
        MasterKey::load_or_create(&key_file).map_err(KeyError::File)
    }
}

/// The engine components run in.
#[derive(Clone)]
pub enum Sandbox {
    /// A new engine with these limits.
    New(SandboxConfig),
    /// An engine shared with other hosts, and the components it compiled
    /// (tests start many hosts in one process).
    Shared(Runtime),
}

/// Where the admin UI is served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AdminUi {
    /// Only on the admin listener given to [`Host::run`] (with the REST
    /// API): an origin no application's page shares. Without an admin
    /// listener the UI is not served.
    #[default]
    OwnListener,
    /// At `/admin/` on the applications' listener. A page an application
    /// serves then shares the UI's origin: it can open the UI in a window
    /// of its own and read what is typed there. The host refuses the
    /// applications' service workers, which could otherwise replace the
    /// UI for good; only trusted applications should share its origin.
    AppListener,
}

/// Everything a host is built from, besides the manifests.
pub struct HostConfig {
    pub data_dir: DataDir,
    pub master_key: MasterKey,
    /// Where records are kept: redb in the data directory by default, or a
    /// Redis server or cluster that several hosts share.
    pub backend: BackendConfig,
    pub limits: Limits,
    pub sandbox: Sandbox,
    /// The `[key_value_store.<label>]` tables of a runtime config file.
    pub runtime_config: RuntimeConfig,
    /// Where Spin variables get their values.
    pub variables: VariableSource,
    /// The organization every application belongs to in the REST API.
    pub organization: String,
    /// The REST API environment of applications, by name; by default an
    /// application's environment is its name.
    pub environments: BTreeMap<String, String>,
    /// How long a REST API bearer token stays valid.
    pub token_lifetime: Duration,
    pub admin_ui: AdminUi,
    /// HTTPS on every listener, if given.
    pub tls: Option<TlsAcceptor>,
    /// Timeouts and the connection cap of every listener.
    pub connections: ConnectionLimits,
    /// How often expired keys are reclaimed.
    pub sweep_interval: Duration,
    /// How often request counts are saved.
    pub stats_flush_interval: Duration,
    /// Where "now" comes from, for TTL, tokens, rate limits and statistics.
    pub clock: SharedClock,
    /// Bytes that large request bodies in flight and guests' memories may
    /// take together; `None`: no bound.
    pub memory_budget: Option<u64>,
    /// Environment variables every component of every application gets,
    /// over its manifest's `environment` (`spin up --env`).
    pub environment: Vec<(String, String)>,
    /// Keys set in every application's `default` key-value store before
    /// anything is served, over any value they had (`spin up --key-value`).
    pub default_keys: Vec<(String, String)>,
}

impl HostConfig {
    /// A configuration with the defaults of `ostore up`.
    pub fn new(data_dir: DataDir, master_key: MasterKey) -> Self {
        Self {
            data_dir,
            master_key,
            backend: BackendConfig::redb(),
            limits: Limits::default(),
            sandbox: Sandbox::New(SandboxConfig::default()),
            runtime_config: RuntimeConfig::default(),
            variables: VariableSource::Environment,
            organization: "default".into(),
            environments: BTreeMap::new(),
            token_lifetime: Duration::from_secs(3600),
            admin_ui: AdminUi::OwnListener,
            tls: None,
            connections: ConnectionLimits::default(),
            sweep_interval: Duration::from_secs(60),
            stats_flush_interval: Duration::from_secs(1),
            clock: clock::system(),
            memory_budget: Some(DEFAULT_MEMORY_BUDGET),
            environment: Vec::new(),
            default_keys: Vec::new(),
        }
    }
}

/// Why a host cannot be built or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    #[error("cannot create data directory {}", path.display())]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The data could not be opened; `place` is the database file, or the
    /// Redis addresses.
    #[error("cannot open {place}: {source}")]
    Open {
        place: String,
        #[source]
        source: objectstore::Error,
    },
    /// The backend could not be reached or used (Redis); its message is
    /// one line naming the address.
    #[error("{0}")]
    Backend(#[source] BackendError),
    #[error(transparent)]
    Credentials(#[from] AuthError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Environment(#[from] EnvironmentClash),
    #[error("an environment is given for application {0:?}, which no manifest defines")]
    UnknownApplication(String),
    #[error("{}: {source}", path.display())]
    Load {
        path: PathBuf,
        #[source]
        source: LoadError,
    },
    #[error("{}: {source}", path.display())]
    Route {
        path: PathBuf,
        #[source]
        source: Box<RouteError>,
    },
    #[error("cannot use application {name:?}: {source}")]
    Application {
        name: String,
        #[source]
        source: objectstore::Error,
    },
    #[error("cannot set the keys given for the default store of application {name:?}: {source}")]
    DefaultKeys {
        name: String,
        #[source]
        source: objectstore::Error,
    },
    #[error("serving failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("saving the last request counts: {0}")]
    FlushStats(#[source] objectstore::Error),
}

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

/// Where `backend` keeps the data, for messages.
/// Whether opening the database failed because another process holds it.
#[cfg(unix)]
fn held_by_another_process(e: &BackendError) -> bool {
    matches!(e, BackendError::Open { source, .. }
    if matches!(
        source.downcast_ref::<redb::DatabaseError>(),
        Some(redb::DatabaseError::DatabaseAlreadyOpen)
    ))
}

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

//! The `ostore` command line: flags, then the library's pieces put together.
//!
//! It lives in the library (the binary is one line) so that the integration
//! tests can build the very same command as a binary of their own crate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};

use crate::api::{Api, Environments};
use crate::auth::{Credentials, Principal, Scope};
use crate::backend::FileBackend;
use crate::client::{Client, encode_segment};
use crate::encryption::{MASTER_KEY_ENV, MasterKey};
use crate::manifest::{Manifest, Route};
use crate::objectstore::{self, ObjectStore};
use crate::runtime::{Runtime, SandboxConfig};
use crate::server::{Router, serve};
use crate::spin::RuntimeConfig;

/// An encrypted object store for WebAssembly applications.
#[derive(Parser)]
#[command(name = "ostore", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the applications described by Spin manifests (like `spin up`).
    Up(UpArgs),
    /// Manage the client credentials of the REST and Stats APIs.
    #[command(subcommand)]
    Credentials(CredentialsCommand),
    /// TLS helpers.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// Read, write, delete and list keys of a running server.
    Kv {
        #[command(subcommand)]
        command: KvCommand,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List or delete the stores of a running server's application.
    Stores {
        #[command(subcommand)]
        command: StoresCommand,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List or delete the partitions of a store.
    Partitions {
        #[command(subcommand)]
        command: PartitionsCommand,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Requests per day or month, key counts and bytes stored.
    Stats {
        /// Only this store (default: all stores of the environment).
        #[arg(long, value_name = "STORE")]
        store: Option<String>,
        /// First day, YYYY-MM-DD (default: 29 days before --end).
        #[arg(long, value_name = "DATE")]
        start: Option<String>,
        /// Last day, YYYY-MM-DD (default: today, UTC).
        #[arg(long, value_name = "DATE")]
        end: Option<String>,
        /// 1day or 1month.
        #[arg(long, value_name = "PERIOD", default_value = "1day")]
        period: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Which server, application and credential the client commands use.
#[derive(Args)]
struct ServerArgs {
    /// The server's URL.
    #[arg(
        long,
        value_name = "URL",
        env = "OSTORE_SERVER",
        default_value = "http://127.0.0.1:3000",
        global = true
    )]
    server: String,
    /// The organization.
    #[arg(
        long = "org",
        value_name = "ORG",
        env = "OSTORE_ORGANIZATION",
        default_value = "default",
        global = true
    )]
    organization: String,
    /// The environment, which names the application (by default its name).
    #[arg(
        long = "env",
        value_name = "ENV",
        env = "OSTORE_ENVIRONMENT",
        global = true
    )]
    environment: Option<String>,
    /// A bearer token (else one is fetched with the client credentials).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "OSTORE_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    /// Client id of a credential from `ostore credentials create`.
    #[arg(long, value_name = "ID", env = "OSTORE_CLIENT_ID", global = true)]
    client_id: Option<String>,
    /// Its secret.
    #[arg(
        long,
        value_name = "SECRET",
        env = "OSTORE_CLIENT_SECRET",
        hide_env_values = true,
        global = true
    )]
    client_secret: Option<String>,
    /// A PEM certificate to trust for HTTPS (e.g. from `ostore tls self-signed`).
    #[arg(long, value_name = "FILE", env = "OSTORE_CACERT", global = true)]
    cacert: Option<PathBuf>,
}

#[derive(Subcommand)]
enum KvCommand {
    /// Print a key's value (binary values raw).
    Get(KeyRef),
    /// Store a value.
    Put {
        #[command(flatten)]
        key: KeyRef,
        /// The value (a string), or with --number a number.
        value: Option<String>,
        /// Store the bytes of this file as a BINARY value instead.
        #[arg(long, value_name = "FILE", conflicts_with = "value")]
        file: Option<PathBuf>,
        /// Store the value as a NUMBER.
        #[arg(long)]
        number: bool,
        /// Seconds until the key expires (default: the store's TTL).
        #[arg(long, value_name = "SECONDS")]
        ttl: Option<u64>,
        /// With --ttl: reads extend the TTL.
        #[arg(long, requires = "ttl")]
        rolling: bool,
    },
    /// Delete a key.
    Delete(KeyRef),
    /// Print every key of a partition, one per line.
    List {
        #[command(flatten)]
        partition: PartitionRef,
        /// Only keys that start with this.
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<String>,
    },
}

#[derive(Args)]
struct PartitionRef {
    /// The store.
    #[arg(long, value_name = "STORE", default_value = objectstore::DEFAULT_STORE)]
    store: String,
    /// The partition.
    #[arg(short, long, value_name = "PARTITION")]
    partition: String,
}

#[derive(Args)]
struct KeyRef {
    #[command(flatten)]
    partition: PartitionRef,
    /// The key.
    key: String,
}

#[derive(Subcommand)]
enum StoresCommand {
    /// List the stores with their TTL.
    List,
    /// Delete a store with all its partitions and keys.
    Delete { store: String },
}

#[derive(Subcommand)]
enum PartitionsCommand {
    /// List the partitions of a store.
    List {
        #[arg(long, value_name = "STORE", default_value = objectstore::DEFAULT_STORE)]
        store: String,
    },
    /// Delete a partition with all its keys.
    Delete {
        partition: String,
        #[arg(long, value_name = "STORE", default_value = objectstore::DEFAULT_STORE)]
        store: String,
    },
}

#[derive(Subcommand)]
enum TlsCommand {
    /// Make a self-signed certificate and key (PEM) for local use; pass them
    /// to `ostore up --tls-cert --tls-key`. Clients must trust the
    /// certificate explicitly (e.g. `curl --cacert cert.pem`).
    SelfSigned {
        /// Directory to write cert.pem and key.pem into.
        #[arg(long, value_name = "DIR", default_value = ".ostore/tls")]
        out_dir: PathBuf,
        /// A host name or IP address the certificate is for; repeatable.
        #[arg(long = "name", value_name = "NAME", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
enum CredentialsCommand {
    /// Make a credential; its secret is printed once and stored only hashed.
    Create(CreateCredentialArgs),
    /// List credentials (never their secrets).
    List(KeyArgs),
    /// Delete a credential; tokens issued for it stop working at once.
    Delete {
        /// The credential's client id.
        client_id: String,
        #[command(flatten)]
        keys: KeyArgs,
    },
}

/// Where the data and its master key are.
#[derive(Args)]
struct KeyArgs {
    /// Directory of the encrypted database (as given to `ostore up`).
    #[arg(
        long,
        value_name = "DIR",
        env = "OSTORE_DATA_DIR",
        default_value = ".ostore"
    )]
    data_dir: PathBuf,

    /// File holding the master key; ignored when OSTORE_MASTER_KEY is set.
    /// Default: `master.key` in the data directory.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
}

#[derive(Args)]
struct CreateCredentialArgs {
    /// The application the credential may use.
    #[arg(
        long,
        value_name = "NAME",
        required_unless_present = "admin",
        conflicts_with = "admin"
    )]
    app: Option<String>,

    /// Make an admin credential, for every application.
    #[arg(long)]
    admin: bool,

    /// A scope to grant (read:store, manage:store_data, manage:store,
    /// read:store_metrics); repeatable. Default: all four.
    #[arg(long = "scope", value_name = "SCOPE", value_parser = parse_scope)]
    scopes: Vec<Scope>,

    #[command(flatten)]
    keys: KeyArgs,
}

fn parse_scope(text: &str) -> Result<Scope, String> {
    Scope::parse(text).ok_or_else(|| {
        let all: Vec<_> = Scope::ALL.iter().map(|s| s.as_str()).collect();
        format!("unknown scope; use one of {}", all.join(", "))
    })
}

#[derive(Args)]
struct UpArgs {
    /// A Spin manifest (spin.toml). Give it more than once to serve several
    /// applications, each with its own isolated data, on one listener.
    #[arg(
        short = 'f',
        long = "from",
        value_name = "MANIFEST",
        default_value = "spin.toml"
    )]
    manifests: Vec<PathBuf>,

    /// Address to listen on. Port 0 picks a free port (the address served
    /// is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3000")]
    listen: SocketAddr,

    /// Serve the admin UI (with the REST API) on a listener of its own
    /// instead of at /admin/ on --listen. Its own origin keeps the UI's
    /// session out of reach of pages that the applications serve: use it
    /// when the host runs applications you do not trust.
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,

    /// Run each component's `build.command` before starting.
    #[arg(long)]
    build: bool,

    /// A Spin runtime config file: `[key_value_store.<label>]` tables map
    /// store labels to a store and partition of the object store
    /// (`type = "ostore"` or `"spin"`, `store`, `partition`, `ttl_seconds`,
    /// `rolling`).
    #[arg(long, value_name = "FILE")]
    runtime_config_file: Option<PathBuf>,

    /// Directory of the encrypted database. Default: `.ostore` beside the
    /// first manifest.
    #[arg(long, value_name = "DIR", env = "OSTORE_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// File holding the master key (64 hex digits); created with mode 0600
    /// if missing. Ignored when the OSTORE_MASTER_KEY environment variable
    /// is set. Default: `master.key` in the data directory.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,

    /// Longest key, store or partition name, in bytes (application names
    /// too, so keep it at least as long as they are).
    #[arg(long, value_name = "BYTES", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(16..=65_536).map(|n| n as usize))]
    max_key_bytes: usize,

    /// Largest value, in bytes (at most 1 GiB).
    #[arg(long, value_name = "BYTES", default_value_t = 10 << 20, value_parser = clap::value_parser!(u32).range(1..=1 << 30).map(|n| n as usize))]
    max_value_bytes: usize,

    /// Object-store requests per second one application may make (guest
    /// calls and REST requests alike); over it, requests get rate-limited /
    /// 429. Default: unlimited.
    #[arg(long, value_name = "N")]
    max_requests_per_second: Option<u32>,

    /// Stores one application may have.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000).map(|n| n as usize))]
    max_stores: usize,

    /// Keys one application may hold. Default: unlimited.
    #[arg(long, value_name = "N")]
    max_keys: Option<u64>,

    /// Bytes one application may store (as encrypted at rest). Default:
    /// unlimited.
    #[arg(long, value_name = "BYTES")]
    max_bytes: Option<u64>,

    /// Seconds a request may run before its guest is stopped with a 504.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    request_timeout: f64,

    /// Linear memory one guest instance may use, in MiB (1 to 4096).
    #[arg(long, value_name = "MIB", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=4096).map(|n| n as usize))]
    max_instance_memory: usize,

    /// Guest instances that may run at once (1 to 10000).
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    max_instances: u32,

    /// Seconds between sweeps that reclaim expired keys.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    sweep_interval: f64,

    /// The organization every application belongs to in the REST API.
    #[arg(long, value_name = "ORG", default_value = "default")]
    organization: String,

    /// The REST API environment of an application, as APP=ENV; repeatable.
    /// Default: the application's name.
    #[arg(long = "environment", value_name = "APP=ENV", value_parser = parse_environment)]
    environments: Vec<(String, String)>,

    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Serve plain HTTP on an address other than loopback. Without TLS,
    /// tokens and data cross the network readable by anyone on the path.
    #[arg(long)]
    allow_plain_http: bool,

    /// Seconds a REST API bearer token stays valid.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    token_lifetime: u64,
}

fn parse_environment(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((app, env)) if !app.is_empty() && !env.is_empty() => Ok((app.into(), env.into())),
        _ => Err("expected APP=ENV".into()),
    }
}

/// Runs the `ostore` command with the process's arguments.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "ostore=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Up(args) => up(args).await,
            Command::Credentials(command) => credentials(command),
            Command::Tls(TlsCommand::SelfSigned { out_dir, names }) => {
                self_signed(&out_dir, &names)
            }
            Command::Kv { command, server } => kv(command, server).await,
            Command::Stores { command, server } => stores(command, server).await,
            Command::Partitions { command, server } => partitions(command, server).await,
            Command::Stats {
                store,
                start,
                end,
                period,
                server,
            } => stats(server, store, start, end, period).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("--{flag} must be a positive number of seconds"))
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let manifests = args
        .manifests
        .iter()
        .map(|path| Manifest::load(path))
        .collect::<Result<Vec<_>, _>>()?;
    for m in &manifests {
        for warning in &m.warnings {
            eprintln!("warning: {}: {warning}", m.path.display());
        }
    }
    let runtime_config = match &args.runtime_config_file {
        Some(path) => RuntimeConfig::load(path)?,
        None => RuntimeConfig::default(),
    };
    for warning in &runtime_config.warnings {
        eprintln!("warning: runtime config: {warning}");
    }
    if args.build {
        for m in &manifests {
            build(m)?;
        }
    }

    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key)?),
        _ => None,
    };
    for addr in std::iter::once(args.listen).chain(args.admin_listen) {
        if tls.is_none() && !addr.ip().is_loopback() && !args.allow_plain_http {
            bail!(
                "refusing to serve plain HTTP on {addr}, which is not a loopback address: \
                 give --tls-cert and --tls-key, or --allow-plain-http",
            );
        }
    }
    // Bind before the slow work, so that a port in use fails at once.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let admin_listener = match args.admin_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (--admin-listen)"))?,
        ),
        None => None,
    };

    let first_dir = manifests[0].path.parent().unwrap_or(Path::new("."));
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| first_dir.join(".ostore"));
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let master = load_master_key(&data_dir, args.key_file.as_deref())?;
    let db_path = data_dir.join(DATABASE_FILE);
    let backend = FileBackend::open(&db_path)?;
    let config = objectstore::Config {
        limits: objectstore::Limits {
            max_key_bytes: args.max_key_bytes,
            max_value_bytes: args.max_value_bytes,
            requests_per_second: args.max_requests_per_second,
            max_keys: args.max_keys,
            max_bytes: args.max_bytes,
            max_stores: args.max_stores,
        },
        ..Default::default()
    };
    let store = ObjectStore::open(Arc::new(backend), &master, config)
        .await
        .with_context(|| format!("cannot open {}", db_path.display()))?;

    let runtime = Runtime::new(SandboxConfig {
        request_timeout: seconds(args.request_timeout, "request-timeout")?,
        max_instance_memory: args.max_instance_memory << 20,
        max_instances: args.max_instances,
    })?;
    let mut environments = Environments::new();
    for m in &manifests {
        let env = args
            .environments
            .iter()
            .find(|(app, _)| *app == m.name)
            .map_or(m.name.as_str(), |(_, env)| env.as_str());
        environments
            .add(&args.organization, env, &m.name)
            .map_err(|e| anyhow::anyhow!(e))?;
    }
    for (app, _) in &args.environments {
        if !manifests.iter().any(|m| &m.name == app) {
            bail!("--environment names {app:?}, which no manifest defines");
        }
    }
    let credentials = Credentials::open(
        &credentials_file(&data_dir),
        &master,
        Duration::from_secs(args.token_lifetime),
    )?;
    let api = Api::new(store.clone(), Arc::new(credentials), environments.clone());
    let mut router = Router::new()
        .with_api(api)
        .with_admin_ui(admin_listener.is_none());
    for m in &manifests {
        let app = store.application(&m.name).await?;
        router
            .add_application(&runtime, m, app, &runtime_config)
            .await
            .with_context(|| format!("{}", m.path.display()))?;
    }

    // Warnings first, so that they come before the announcement.
    for r in router.routes() {
        let path = match &r.route {
            Route::Wildcard(p) | Route::Exact(p) => p,
        };
        let below = format!("{}/", path.trim_end_matches('/'));
        if [path.as_str(), &below]
            .iter()
            .any(|p| Api::serves(p) || (args.admin_listen.is_none() && crate::admin::serves(p)))
        {
            eprintln!(
                "warning: route {} of application {:?} is under a path the host serves itself \
                 (the REST API or the admin UI); requests there never reach the component",
                r.route, r.application
            );
        }
    }
    let addr = listener.local_addr()?;
    let shutdown = shutdown_signal()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("Serving {scheme}://{addr}");
    println!("Available Routes:");
    for r in router.routes() {
        let wildcard = matches!(r.route, Route::Wildcard(_));
        let path = match &r.route {
            Route::Wildcard(p) | Route::Exact(p) => p,
        };
        println!(
            "  {}/{}: {scheme}://{addr}{path}{}",
            r.application,
            r.component.id(),
            if wildcard { " (wildcard)" } else { "" }
        );
    }
    for (org, env, app) in environments.iter() {
        println!(
            "  {app}: REST API {scheme}://{addr}/api/v1/organizations/{org}/environments/{env}/stores"
        );
    }
    let admin_addr = match &admin_listener {
        Some(l) => l.local_addr()?,
        None => addr,
    };
    println!("  Admin UI: {scheme}://{admin_addr}{}", crate::admin::PATH);
    let sweeper = store.spawn_sweeper(seconds(args.sweep_interval, "sweep-interval")?);
    let flusher = store.spawn_stats_flusher(Duration::from_secs(1));
    // One signal stops every listener.
    let (stop, stopping) = tokio::sync::watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(());
    });
    let stopped = |mut stopping: tokio::sync::watch::Receiver<()>| async move {
        let _ = stopping.changed().await;
    };
    match admin_listener {
        Some(admin_listener) => {
            let admin_router = router.admin_only();
            let (apps, admin) = tokio::join!(
                serve(listener, router, tls.clone(), stopped(stopping.clone())),
                serve(admin_listener, admin_router, tls, stopped(stopping)),
            );
            apps?;
            admin?;
        }
        None => serve(listener, router, tls, stopped(stopping)).await?,
    }
    sweeper.abort();
    flusher.abort();
    store
        .flush_stats()
        .await
        .context("saving the last request counts")?;
    eprintln!("stopped");
    Ok(())
}

/// The master key: from the environment, else from the key file (made if
/// missing).
fn load_master_key(data_dir: &Path, key_file: Option<&Path>) -> anyhow::Result<MasterKey> {
    match std::env::var(MASTER_KEY_ENV) {
        Ok(text) => return MasterKey::parse(&text).with_context(|| format!("${MASTER_KEY_ENV}")),
        Err(std::env::VarError::NotUnicode(_)) => bail!("${MASTER_KEY_ENV} is not text"),
        Err(std::env::VarError::NotPresent) => {}
    }
    let path = key_file.map_or_else(|| data_dir.join("master.key"), Path::to_path_buf);
    // A new key for existing data would only be refused at open, and would
    // leave a useless key file behind: say what is wrong instead.
    let db = data_dir.join(DATABASE_FILE);
    if !path.exists() && db.exists() {
        bail!(
            "{} holds data but the master key file {} is missing; give the key with \
             --key-file or ${MASTER_KEY_ENV}",
            db.display(),
            path.display()
        );
    }
    let (key, created) = MasterKey::load_or_create(&path)?;
    if created {
        eprintln!("created a new master key in {}", path.display());
    }
    Ok(key)
}

/// The database file inside a data directory.
const DATABASE_FILE: &str = "ostore.redb";

fn credentials_file(data_dir: &Path) -> PathBuf {
    data_dir.join("credentials.sealed")
}

fn credentials(command: CredentialsCommand) -> anyhow::Result<()> {
    let keys = match &command {
        CredentialsCommand::Create(args) => &args.keys,
        CredentialsCommand::List(keys) | CredentialsCommand::Delete { keys, .. } => keys,
    };
    std::fs::create_dir_all(&keys.data_dir)
        .with_context(|| format!("cannot create data directory {}", keys.data_dir.display()))?;
    let master = load_master_key(&keys.data_dir, keys.key_file.as_deref())?;
    let store = Credentials::open(&credentials_file(&keys.data_dir), &master, Duration::ZERO)?;
    match command {
        CredentialsCommand::Create(args) => {
            let principal = match args.app {
                Some(app) => Principal::Application(app),
                None => Principal::Admin,
            };
            let scopes = if args.scopes.is_empty() {
                Scope::ALL.to_vec()
            } else {
                args.scopes
            };
            let new = store.create(principal, scopes)?;
            println!("client_id: {}", new.client_id);
            println!("client_secret: {}", new.client_secret);
            eprintln!("The secret is shown only now; ostore keeps only a hash of it.");
        }
        CredentialsCommand::List(_) => {
            for c in store.list()? {
                let who = match &c.principal {
                    Principal::Admin => "admin (all applications)".to_string(),
                    Principal::Application(app) => format!("application {app}"),
                };
                let scopes: Vec<_> = c.scopes.iter().map(|s| s.as_str()).collect();
                println!("{}  {who}  {}", c.client_id, scopes.join(" "));
            }
        }
        CredentialsCommand::Delete { client_id, .. } => {
            if !store.delete(&client_id)? {
                bail!("no credential {client_id}");
            }
            println!("deleted {client_id}");
        }
    }
    Ok(())
}

/// A logged-in client and the path of its environment's stores.
async fn connect(server: &ServerArgs) -> anyhow::Result<(Client, String)> {
    let client = Client::new(&server.server, server.cacert.as_deref())?;
    let client = match (&server.token, &server.client_id, &server.client_secret) {
        (Some(token), _, _) => client.with_token(token.clone()),
        (None, Some(id), Some(secret)) => client.login(id, secret).await?,
        _ => bail!(
            "give a token (--token / OSTORE_TOKEN) or client credentials \
             (--client-id and --client-secret / OSTORE_CLIENT_ID and OSTORE_CLIENT_SECRET)"
        ),
    };
    let env = server.environment.as_deref().context(
        "give the environment (--env / OSTORE_ENVIRONMENT; by default an application's name)",
    )?;
    let base = format!(
        "/api/v1/organizations/{}/environments/{}/stores",
        encode_segment(&server.organization),
        encode_segment(env)
    );
    Ok((client, base))
}

fn key_path(base: &str, key: &KeyRef) -> String {
    format!(
        "{base}/{}/partitions/{}/keys/{}",
        encode_segment(&key.partition.store),
        encode_segment(&key.partition.partition),
        encode_segment(&key.key)
    )
}

/// Calls every page of a listing and returns all `values`.
async fn all_pages(client: &Client, path: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut values = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &next {
            Some(token) => format!(
                "{path}{sep}pageSize=1000&nextPageToken={}",
                encode_segment(token)
            ),
            None => format!("{path}{sep}pageSize=1000"),
        };
        let page = client.call(http::Method::GET, &url, None, None).await?;
        values.extend(page["values"].as_array().cloned().unwrap_or_default());
        match page["nextPageToken"].as_str() {
            Some(token) => next = Some(token.to_string()),
            None => return Ok(values),
        }
    }
}

async fn kv(command: KvCommand, server: ServerArgs) -> anyhow::Result<()> {
    use base64::Engine as _;
    use std::io::Write as _;
    let (client, base) = connect(&server).await?;
    match command {
        KvCommand::Get(key) => {
            let value = client
                .call(http::Method::GET, &key_path(&base, &key), None, None)
                .await?;
            let mut out = std::io::stdout().lock();
            match value["valueType"].as_str() {
                Some("BINARY") => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(value["binaryValue"].as_str().unwrap_or_default())
                        .context("the server sent malformed base64")?;
                    out.write_all(&bytes)?;
                }
                Some("NUMBER") => writeln!(out, "{}", value["numberValue"])?,
                _ => writeln!(out, "{}", value["stringValue"].as_str().unwrap_or_default())?,
            }
        }
        KvCommand::Put {
            key,
            value,
            file,
            number,
            ttl,
            rolling,
        } => {
            let mut body = match (file, value) {
                (Some(file), _) => {
                    let bytes = std::fs::read(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    serde_json::json!({
                        "valueType": "BINARY",
                        "binaryValue": base64::engine::general_purpose::STANDARD.encode(bytes),
                    })
                }
                (None, Some(text)) if number => {
                    let n: serde_json::Number = text
                        .parse()
                        .with_context(|| format!("{text:?} is not a number"))?;
                    serde_json::json!({"valueType": "NUMBER", "numberValue": n})
                }
                (None, Some(text)) => {
                    serde_json::json!({"valueType": "STRING", "stringValue": text})
                }
                (None, None) => bail!("give a value, or --file"),
            };
            if let Some(ttl) = ttl {
                body["ttlSeconds"] = ttl.into();
                body["rollingTtl"] = rolling.into();
            }
            client
                .call(
                    http::Method::PUT,
                    &key_path(&base, &key),
                    None,
                    Some(body.to_string().into()),
                )
                .await?;
        }
        KvCommand::Delete(key) => {
            client
                .call(http::Method::DELETE, &key_path(&base, &key), None, None)
                .await?;
        }
        KvCommand::List { partition, prefix } => {
            let mut path = format!(
                "{base}/{}/partitions/{}/keys",
                encode_segment(&partition.store),
                encode_segment(&partition.partition)
            );
            if let Some(prefix) = prefix {
                path += &format!("?prefix={}", encode_segment(&prefix));
            }
            for value in all_pages(&client, &path).await? {
                println!("{}", value["keyId"].as_str().unwrap_or_default());
            }
        }
    }
    Ok(())
}

async fn stores(command: StoresCommand, server: ServerArgs) -> anyhow::Result<()> {
    let (client, base) = connect(&server).await?;
    match command {
        StoresCommand::List => {
            for store in all_pages(&client, &base).await? {
                let ttl = match store["defaultTtlSeconds"].as_u64() {
                    Some(secs) if store["isFixedTtl"] == true => format!("ttl {secs}s static"),
                    Some(secs) => format!("ttl {secs}s rolling"),
                    None => "no expiry".to_string(),
                };
                println!("{}  {ttl}", store["storeId"].as_str().unwrap_or_default());
            }
        }
        StoresCommand::Delete { store } => {
            let path = format!("{base}/{}", encode_segment(&store));
            client.call(http::Method::DELETE, &path, None, None).await?;
        }
    }
    Ok(())
}

async fn partitions(command: PartitionsCommand, server: ServerArgs) -> anyhow::Result<()> {
    let (client, base) = connect(&server).await?;
    match command {
        PartitionsCommand::List { store } => {
            let path = format!("{base}/{}/partitions", encode_segment(&store));
            for name in all_pages(&client, &path).await? {
                println!("{}", name.as_str().unwrap_or_default());
            }
        }
        PartitionsCommand::Delete { partition, store } => {
            let path = format!(
                "{base}/{}/partitions/{}",
                encode_segment(&store),
                encode_segment(&partition)
            );
            client.call(http::Method::DELETE, &path, None, None).await?;
        }
    }
    Ok(())
}

async fn stats(
    server: ServerArgs,
    store: Option<String>,
    start: Option<String>,
    end: Option<String>,
    period: String,
) -> anyhow::Result<()> {
    let (client, base) = connect(&server).await?;
    let mut path = base
        .strip_suffix("/stores")
        .expect("the stores path")
        .replacen("/api/v1/", "/api/v1/stats/", 1);
    if let Some(store) = store {
        path += &format!("/stores/{}", encode_segment(&store));
    }
    path += &format!("?period={}", encode_segment(&period));
    if let Some(start) = start {
        path += &format!("&startDate={}", encode_segment(&start));
    }
    if let Some(end) = end {
        path += &format!("&endDate={}", encode_segment(&end));
    }
    let points = client.call(http::Method::GET, &path, None, None).await?;
    println!(
        "{:<12} {:>10} {:>10} {:>14}",
        "date", "requests", "keys", "bytes"
    );
    for p in points.as_array().into_iter().flatten() {
        println!(
            "{:<12} {:>10} {:>10} {:>14}",
            p["timeStamp"]
                .as_str()
                .unwrap_or_default()
                .get(..10)
                .unwrap_or_default(),
            p["objectStoreRequestCount"],
            p["keyCount"],
            p["bytesStored"]
        );
    }
    Ok(())
}

/// Writes a self-signed certificate and its key into `dir`.
fn self_signed(dir: &Path, names: &[String]) -> anyhow::Result<()> {
    let (cert, key) = crate::tls::self_signed(names)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert)
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&key_path)
        .with_context(|| format!("cannot write {}", key_path.display()))?;
    std::io::Write::write_all(&mut file, key.as_bytes())?;
    println!("certificate: {}", cert_path.display());
    println!("private key: {}", key_path.display());
    Ok(())
}

/// Runs each component's build command from the manifest.
fn build(manifest: &Manifest) -> anyhow::Result<()> {
    for (id, spec) in &manifest.components {
        let Some(build) = &spec.build else { continue };
        eprintln!("building component `{id}`: {}", build.command);
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(&build.command)
            .current_dir(&build.workdir)
            .status()
            .with_context(|| format!("cannot run the build of component `{id}`"))?;
        if !status.success() {
            bail!("the build of component `{id}` failed ({status})");
        }
    }
    Ok(())
}

/// A future that completes on Ctrl-C or SIGTERM. The handlers are
/// installed here, before the future is polled: a signal that arrives while
/// the server is still starting must stop it cleanly, not kill it.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
        let mut interrupt =
            signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

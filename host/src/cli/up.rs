//! `ostore up`: flags to a [`HostConfig`], then the library's [`Host`],
//! run until Ctrl-C or SIGTERM.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use clap::builder::TypedValueParser as _;

use crate::backend::{BackendConfig, RedisDurability};
use crate::host::{AdminUi, DataDir, Host, HostConfig, Sandbox};
use crate::manifest::Manifest;
use crate::objectstore::Limits;
use crate::runtime::SandboxConfig;
use crate::size::ByteSize;
use crate::spin::RuntimeConfig;

use super::spin_flags::SpinOnlyFlags;

#[derive(Args)]
pub(super) struct UpArgs {
    /// A Spin manifest (spin.toml), or a directory holding one. Give it
    /// more than once to serve several applications, each with its own
    /// isolated data, on one listener.
    #[arg(
        short = 'f',
        long = "from",
        alias = "from-file",
        value_name = "MANIFEST",
        default_value = "spin.toml"
    )]
    manifests: Vec<PathBuf>,

    /// An environment variable (KEY=VALUE) for every component, over the
    /// manifest's; repeatable.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_pair)]
    env: Vec<(String, String)>,

    /// A key (KEY=VALUE) to set in the application's `default` key-value
    /// store before serving, over any value it had; repeatable.
    #[arg(long = "key-value", value_name = "KEY=VALUE", value_parser = parse_pair)]
    key_values: Vec<(String, String)>,

    /// Address to listen on. Port 0 picks a free port (the address served
    /// is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3000")]
    listen: SocketAddr,

    /// Address of the admin UI (served at /admin/, with the REST API). Its
    /// own origin keeps the UI and what is typed into it out of reach of
    /// the pages that applications serve. Default: the address of --listen
    /// with the next port (port 0 if --listen has port 0).
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,

    /// Serve the admin UI at /admin/ on --listen instead, on the
    /// applications' origin: only for applications you trust, since their
    /// pages could then read what is typed into the UI. Applications may
    /// not register service workers there.
    #[arg(long, conflicts_with = "admin_listen")]
    admin_on_app_listener: bool,

    /// Run each component's `build.command` before starting.
    #[arg(long)]
    build: bool,

    /// A Spin runtime config file: `[key_value_store.<label>]` tables map
    /// store labels to a store and partition of the object store
    /// (`type = "ostore"` or `"spin"`, `store`, `partition`, `ttl_seconds`,
    /// `rolling`).
    #[arg(long, value_name = "FILE")]
    runtime_config_file: Option<PathBuf>,

    /// Directory of the encrypted database (`--state-dir` too, as Spin
    /// calls it). Default: `.ostore` beside the first manifest.
    #[arg(
        long,
        visible_alias = "state-dir",
        value_name = "DIR",
        env = "OSTORE_DATA_DIR"
    )]
    data_dir: Option<PathBuf>,

    /// Where records are kept: `redb`, a file in the data directory (the
    /// default), or a Redis URL, which several hosts may share:
    /// `redis://host:port[/db]`, `redis+cluster://host:port,host:port,...`,
    /// `rediss://` or `rediss+cluster://` for TLS. A password not in the
    /// URL is taken from OSTORE_REDIS_PASSWORD. Overrides the runtime config
    /// file's `[object_store]`.
    #[arg(long, value_name = "redb|URL")]
    backend: Option<BackendConfig>,

    /// Memory the redb engine may use to cache pages of its file, the part
    /// of the host's memory that grows with the data read: `64MiB`, `1GiB`,
    /// or bytes; at least 1MiB. Default: the runtime config file's
    /// `[object_store] cache_size`, else 64MiB. redb only.
    #[arg(long, value_name = "SIZE")]
    cache_size: Option<ByteSize>,

    /// When a write to Redis is acknowledged: `master`, once the master has
    /// applied it (kept through a Redis crash if Redis fsyncs every write);
    /// or `replica`, once a replica has it too (kept through a failover).
    #[arg(long, value_name = "master|replica")]
    redis_durability: Option<RedisDurability>,

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

    /// Seconds a client may take to send a REST API request's body; past
    /// it the request gets a 408.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    body_timeout: f64,

    /// Seconds a request may take from its head to its answer, whatever
    /// serves it; past it the client gets a 503. Must exceed
    /// --request-timeout and --body-timeout, which answer first.
    #[arg(long, value_name = "SECONDS", default_value_t = 90.0)]
    request_deadline: f64,

    /// Seconds a client may take no byte of its response (not reading it)
    /// before its connection is closed.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    write_timeout: f64,

    /// Connections served at once, on each listener; past it a connection
    /// gets a 503 (over TLS: is closed).
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000).map(|n| n as usize))]
    max_connections: usize,

    /// Linear memory one guest instance may use, in MiB (1 to 4096).
    #[arg(long, value_name = "MIB", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=4096).map(|n| n as usize))]
    max_instance_memory: usize,

    /// MiB that large request bodies in flight and guests' memories may
    /// take together (1 to 1048576); past it, large requests and growing
    /// guests get 503 with Retry-After instead of growing the process.
    #[arg(long, value_name = "MIB", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_048_576).map(u64::from))]
    memory_budget: u64,

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

    /// Guest instances one application may run at once (1 to 10000); past
    /// it, its requests get a 503 with Retry-After while other applications
    /// are served. Default: half of --max-instances.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    max_instances_per_app: Option<u32>,

    /// Guest instances one component may run at once (1 to 10000); past
    /// it, its requests get a 503 with Retry-After. Default: as
    /// --max-instances-per-app.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    max_instances_per_component: Option<u32>,

    #[command(flatten)]
    spin_only: SpinOnlyFlags,
}

/// `KEY=VALUE`, as `spin up --env` and `--key-value` take it (the value may
/// hold `=` and be empty).
fn parse_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.into(), value.into())),
        _ => Err("expected KEY=VALUE".into()),
    }
}

fn parse_environment(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((app, env)) if !app.is_empty() && !env.is_empty() => Ok((app.into(), env.into())),
        _ => Err("expected APP=ENV".into()),
    }
}

/// Where the admin UI listens, unless it shares --listen: --admin-listen,
/// or the next port of --listen.
fn admin_address(args: &UpArgs) -> anyhow::Result<Option<SocketAddr>> {
    if args.admin_on_app_listener {
        return Ok(None);
    }
    if let Some(addr) = args.admin_listen {
        return Ok(Some(addr));
    }
    let mut addr = args.listen;
    if addr.port() != 0 {
        let Some(next) = addr.port().checked_add(1) else {
            bail!("--listen has the last port: give the admin UI's address with --admin-listen");
        };
        addr.set_port(next);
    }
    Ok(Some(addr))
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("--{flag} must be a positive number of seconds"))
}

/// The backend of `--backend`, else of the runtime config file, else redb;
/// with `--redis-durability` and `OSTORE_REDIS_PASSWORD` applied.
fn backend(args: &UpArgs, runtime_config: &RuntimeConfig) -> anyhow::Result<BackendConfig> {
    let mut backend = args
        .backend
        .clone()
        .or_else(|| runtime_config.backend.clone())
        .unwrap_or_default();
    match &mut backend {
        BackendConfig::Redb(_) if args.redis_durability.is_some() => {
            bail!("--redis-durability needs a Redis backend (--backend redis://...)")
        }
        BackendConfig::Redb(redb) => {
            if let Some(size) = args.cache_size {
                redb.cache_size = size;
            }
            redb.check().map_err(anyhow::Error::msg)?;
        }
        BackendConfig::Redis(_) if args.cache_size.is_some() => {
            bail!("--cache-size is for the redb backend; Redis manages its own memory (maxmemory)")
        }
        BackendConfig::Redis(redis) => {
            if let Some(durability) = args.redis_durability {
                redis.durability = durability;
            }
        }
    }
    redis_password_from_env(&mut backend);
    Ok(backend)
}

/// Takes a Redis backend's password from `OSTORE_REDIS_PASSWORD` unless its
/// URL gave one.
pub(super) fn redis_password_from_env(backend: &mut BackendConfig) {
    if let BackendConfig::Redis(redis) = backend
        && redis.password.is_none()
    {
        redis.password = std::env::var("OSTORE_REDIS_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty());
    }
}

pub(super) async fn up(args: UpArgs) -> anyhow::Result<()> {
    if let Some((flag, why)) = args.spin_only.given() {
        bail!("{flag} is a `spin up` flag that `ostore up` does not support: {why}");
    }
    let manifests = args
        .manifests
        .iter()
        // As `spin up -f DIR`: the directory's spin.toml.
        .map(|path| {
            if path.is_dir() {
                Manifest::load(&path.join("spin.toml"))
            } else {
                Manifest::load(path)
            }
        })
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
    for addr in std::iter::once(args.listen).chain(admin_address(&args)?) {
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
    let admin_listener = match admin_address(&args)? {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!(
                "cannot listen on {addr} for the admin UI: give another address with \
                         --admin-listen"
            )
        })?),
        None => None,
    };

    let first_dir = manifests[0].path.parent().unwrap_or(Path::new("."));
    let data_dir = DataDir::new(
        args.data_dir
            .clone()
            .unwrap_or_else(|| first_dir.join(".ostore")),
    );
    let master_key = super::local::master_key(&data_dir, args.key_file.as_deref())?;
    let mut config = HostConfig::new(data_dir, master_key);
    config.limits = Limits {
        max_key_bytes: args.max_key_bytes,
        max_value_bytes: args.max_value_bytes,
        requests_per_second: args.max_requests_per_second,
        max_keys: args.max_keys,
        max_bytes: args.max_bytes,
        max_stores: args.max_stores,
    };
    let max_instances_per_app = args
        .max_instances_per_app
        .unwrap_or((args.max_instances / 2).max(1));
    config.sandbox = Sandbox::New(SandboxConfig {
        request_timeout: seconds(args.request_timeout, "request-timeout")?,
        max_instance_memory: args.max_instance_memory << 20,
        max_instances: args.max_instances,
        max_instances_per_app,
        max_instances_per_component: args
            .max_instances_per_component
            .unwrap_or(max_instances_per_app),
    });
    config.backend = backend(&args, &runtime_config)?;
    config.runtime_config = runtime_config;
    config.environment = args.env.clone();
    config.default_keys = args.key_values.clone();
    config.organization = args.organization.clone();
    // A repeated --environment for one application: the first counts.
    for (app, env) in &args.environments {
        config
            .environments
            .entry(app.clone())
            .or_insert_with(|| env.clone());
    }
    config.token_lifetime = Duration::from_secs(args.token_lifetime);
    config.admin_ui = if args.admin_on_app_listener {
        eprintln!(
            "warning: the admin UI shares the applications' origin (--admin-on-app-listener): \
             a page an application serves can open the UI and read what is typed into it, \
             admin credentials included. Applications may not register service workers there; \
             serve the UI on an origin of its own (the default) unless you trust every \
             application"
        );
        AdminUi::AppListener
    } else {
        AdminUi::OwnListener
    };
    config.tls = tls;
    config.connections.body_timeout = seconds(args.body_timeout, "body-timeout")?;
    config.connections.write_timeout = seconds(args.write_timeout, "write-timeout")?;
    config.connections.request_deadline = seconds(args.request_deadline, "request-deadline")?;
    if args.request_deadline <= args.request_timeout.max(args.body_timeout) {
        bail!(
            "--request-deadline ({} s) must exceed --request-timeout ({} s) and --body-timeout \
             ({} s), which answer first",
            args.request_deadline,
            args.request_timeout,
            args.body_timeout
        );
    }
    config.connections.max_connections = args.max_connections;
    config.memory_budget = Some(args.memory_budget << 20);
    config.sweep_interval = seconds(args.sweep_interval, "sweep-interval")?;
    let host = Host::build(config, &manifests).await?;

    // Warnings first, so that they come before the announcement.
    for r in host.shadowed_routes() {
        eprintln!(
            "warning: route {} of application {:?} is under a path the host serves itself \
             (the REST API or the admin UI); requests there never reach the component",
            r.route, r.application
        );
    }
    let shutdown = shutdown_signal()?;
    announce(&host, &listener, admin_listener.as_ref())?;
    host.run(listener, admin_listener, shutdown).await?;
    eprintln!("stopped");
    Ok(())
}

/// Prints where everything is served; the first line is what scripts (and
/// the tests) wait for.
fn announce(
    host: &Host,
    listener: &tokio::net::TcpListener,
    admin_listener: Option<&tokio::net::TcpListener>,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let scheme = if host.serves_https() { "https" } else { "http" };
    println!("Serving {scheme}://{addr}");
    println!("Available Routes:");
    for r in host.routes() {
        let wildcard = r.route.is_wildcard();
        let path = r.route.component_route();
        println!(
            "  {}/{}: {scheme}://{addr}{path}{}",
            r.application,
            r.component.id(),
            if wildcard { " (wildcard)" } else { "" }
        );
    }
    for (org, env, app) in host.environments().iter() {
        println!(
            "  {app}: REST API {scheme}://{addr}/api/v1/organizations/{org}/environments/{env}/stores"
        );
    }
    let admin_addr = match admin_listener {
        Some(l) => l.local_addr()?,
        None => addr,
    };
    println!("  Admin UI: {scheme}://{admin_addr}{}", crate::admin::PATH);
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

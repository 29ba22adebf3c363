//! What a host is built from besides the manifests: its data, key,
//! backend, sandbox, limits and where the admin UI is served.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_rustls::TlsAcceptor;

use crate::backend::BackendConfig;
use crate::clock::{self, SharedClock};
use crate::encryption::MasterKey;
use crate::objectstore::Limits;
use crate::runtime::{Runtime, SandboxConfig};
use crate::server::ConnectionLimits;
use crate::spin::RuntimeConfig;
use crate::spin::variables::VariableSource;

use super::DataDir;

/// The default of [`HostConfig::memory_budget`]: 1 GiB.
pub const DEFAULT_MEMORY_BUDGET: u64 = 1 << 30;

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
    /// Only on the admin listener given to [`Host::run`](super::Host::run)
    /// (with the REST API): an origin no application's page shares. Without
    /// an admin listener the UI is not served.
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

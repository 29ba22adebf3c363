//! The wasmtime side: one engine per host, one pre-instantiated component per
//! manifest component, and a fresh, limited instance for every request.
//!
//! - Instances come from a pooling allocator, so creating one per request
//!   costs microseconds and a request never sees another's memory.
//! - Each instance may grow its memory up to a configured limit.
//! - An epoch ticker interrupts a guest that runs past the request deadline;
//!   the request gets a 504 and the host carries on.
//! - Applications share the host fairly: instance caps per application and
//!   per component, CPU turns for long-running guests that favour the
//!   applications that used the least CPU lately, and failures logged a few
//!   at a time (see `fairness`).
//!
//! | module | job |
//! |---|---|
//! | this one | the engine, compiling and linking components |
//! | `instance` | what one instance holds, and its outgoing-request policy |
//! | `handler` | serving one request with a fresh instance |
//! | `local` | requests guests send to their own application (self requests, service chaining) |
//! | `fairness` | instance caps, CPU turns and failure logs shared between applications |

mod fairness;
mod handler;
mod instance;
mod local;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, WasmBacktraceDetails,
};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;

pub use fairness::AppShare;
pub use handler::HttpComponent;
pub use instance::ComponentSettings;
pub use local::{Chain, LocalAnswer, LocalService, LocalTarget, MAX_LOCAL_HOPS};

use crate::objectstore::Application;
use fairness::{CpuTurns, FailureLog, InstanceCaps};
use handler::{ComponentInner, Handler};
use instance::InstanceState;

/// How often the epoch advances; the granularity of request deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Wasm frames kept in a trap's backtrace. Capturing is a frame-pointer
/// walk, but a guest that overflows its stack has thousands of frames, and
/// a guest can trap on every request: the innermost frames say enough.
const BACKTRACE_FRAMES: NonZeroUsize = NonZeroUsize::new(16).expect("not zero");

/// Bytes of each linear memory slot kept resident between instances (see
/// [`Runtime::new`]). A Rust guest serving a request dirties a few hundred
/// KiB to a few MiB; above this bound the rest is still returned to the
/// kernel, so a guest that grew large does not keep its memory.
const LINEAR_MEMORY_KEEP_RESIDENT: usize = 16 << 20;
/// Bytes of each table slot kept resident between instances.
const TABLE_KEEP_RESIDENT: usize = 1 << 20;

/// Sandbox limits of guest instances.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Wall-clock time a request may take before its guest is interrupted.
    pub request_timeout: Duration,
    /// Bytes of linear memory one instance may use.
    pub max_instance_memory: usize,
    /// Instances that may exist at once; further requests get a 503.
    pub max_instances: u32,
    /// Instances of one application that may exist at once; its further
    /// requests get a 503 (with Retry-After), while other applications are
    /// served.
    pub max_instances_per_app: u32,
    /// Instances of one component that may exist at once; further requests
    /// to it get a 503 (with Retry-After).
    pub max_instances_per_component: u32,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            max_instance_memory: 128 << 20,
            max_instances: 256,
            // Half the pool: one application cannot take all of it.
            max_instances_per_app: 128,
            max_instances_per_component: 128,
        }
    }
}

/// Why the engine could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    #[error("cannot make the WebAssembly engine: {0:#}")]
    Engine(wasmtime::Error),
    #[error("cannot start the epoch thread")]
    EpochThread(#[source] std::io::Error),
}

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ComponentError {
    #[error("file {} does not exist (build it first, or pass --build)", .0.display())]
    Missing(PathBuf),
    #[error("cannot read component {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a WebAssembly component (no \\0asm header)", .0.display())]
    NotWasm(PathBuf),
    #[error("cannot load component {}: {message}", path.display())]
    Compile { path: PathBuf, message: String },
    #[error("cannot link component {}: {message}", path.display())]
    Link { path: PathBuf, message: String },
    #[error(
        "component {} is not an HTTP component: it exports neither \
         wasi:http/incoming-handler@0.2 nor wasi:http/handler@0.3 (exports: {exports})",
        path.display()
    )]
    NotHttp { path: PathBuf, exports: String },
}

/// The wasmtime engine shared by all components of a host. Cheap to clone;
/// clones share the engine and the compiled components.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    config: SandboxConfig,
    /// Compiled components by the SHA-256 of their bytes: a component file
    /// that several manifests (or hosts sharing this runtime) name is
    /// compiled once.
    compiled: Arc<Mutex<HashMap<[u8; 32], Component>>>,
    /// The turns long-running guests of every application take.
    turns: Arc<CpuTurns>,
}

impl Runtime {
    /// Makes an engine with the pooling allocator and epoch interruption,
    /// and starts the thread that advances epochs.
    pub fn new(config: SandboxConfig) -> Result<Self, RuntimeError> {
        let mut pool = PoolingAllocationConfig::default();
        // A Rust wasip2 component instantiates a handful of core modules;
        // leave room for several memories and tables each.
        pool.total_component_instances(config.max_instances)
            .total_core_instances(config.max_instances.saturating_mul(8))
            .total_memories(config.max_instances.saturating_mul(2))
            .total_tables(config.max_instances.saturating_mul(4))
            .max_memory_size(config.max_instance_memory)
            // A slot's memory is reset after every request. By default
            // wasmtime resets it with madvise(MADV_DONTNEED), which unmaps
            // the pages: every other thread's TLB must then be flushed (an
            // IPI to each core, about a fifth of all CPU in a profile of
            // GETs at 64 connections), and the next instance faults its
            // pages in again. Kept resident, the pages a guest dirtied are
            // zeroed (or restored from the module's image) with memset
            // instead; with PAGEMAP_SCAN (Linux 6.7+) only the pages
            // actually dirtied are touched, so a large bound costs a small
            // guest nothing. Measured in docs/BENCHMARKS.md: 1.6-1.8x the
            // requests/s at 64 connections, 10 MiB more RSS.
            .linear_memory_keep_resident(LINEAR_MEMORY_KEEP_RESIDENT)
            .table_keep_resident(TABLE_KEEP_RESIDENT)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut wasm = Config::new();
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .epoch_interruption(true)
            .wasm_component_model_async(true)
            // Traps must cost little: a bounded backtrace, and no DWARF
            // parsing on each one (whatever WASMTIME_BACKTRACE_DETAILS says).
            .wasm_backtrace_max_frames(Some(BACKTRACE_FRAMES))
            .wasm_backtrace_details(WasmBacktraceDetails::Disable);
        let engine = Engine::new(&wasm).map_err(RuntimeError::Engine)?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("ostore-epoch".into())
            .spawn(move || {
                // Stops when the last engine handle is gone.
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(RuntimeError::EpochThread)?;
        Ok(Self {
            engine,
            config,
            compiled: Arc::default(),
            turns: CpuTurns::new(fairness::long_runner_slots()),
        })
    }

    /// A new share of this runtime for application `name`, with the
    /// per-application instance cap; its components are loaded with it.
    pub fn app_share(&self, name: &str) -> AppShare {
        AppShare::new(
            name,
            self.config.max_instances_per_app,
            self.turns.account(),
        )
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// The component in `path`, compiled once per runtime.
    fn compile(&self, path: &Path) -> Result<Component, ComponentError> {
        if !path.is_file() {
            return Err(ComponentError::Missing(path.to_path_buf()));
        }
        let bytes = std::fs::read(path).map_err(|source| ComponentError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if !bytes.starts_with(b"\0asm") {
            return Err(ComponentError::NotWasm(path.to_path_buf()));
        }
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        if let Some(component) = self.compiled.lock().expect("compiled lock").get(&digest) {
            return Ok(component.clone());
        }
        let component =
            Component::new(&self.engine, &bytes).map_err(|e| ComponentError::Compile {
                path: path.to_path_buf(),
                message: format!("{e:#}"),
            })?;
        self.compiled
            .lock()
            .expect("compiled lock")
            .insert(digest, component.clone());
        Ok(component)
    }

    /// Compiles the component at `path` and links it for `app`, whose
    /// instances count against `share`; fails if it is not an HTTP
    /// component or imports what the host does not offer.
    pub fn load_http_component(
        &self,
        path: &Path,
        app: Application,
        share: &AppShare,
        settings: ComponentSettings,
    ) -> Result<HttpComponent, ComponentError> {
        let component = self.compile(path)?;
        let link_error = |e: wasmtime::Error| ComponentError::Link {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        };
        let mut linker = Linker::<InstanceState>::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link_error)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(link_error)?;
        wasmtime_wasi::p3::add_to_linker(&mut linker).map_err(link_error)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker).map_err(link_error)?;
        crate::component::add_to_linker(&mut linker).map_err(link_error)?;
        crate::spin::add_to_linker(&mut linker).map_err(link_error)?;
        crate::spin::add_async_to_linker(&mut linker).map_err(link_error)?;
        crate::spin::variables::add_to_linker(&mut linker).map_err(link_error)?;
        // WASIp2 components export `wasi:http/incoming-handler@0.2.x`,
        // WASIp3 ones (spin-sdk 7) `wasi:http/handler@0.3.x`.
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let instance_pre = linker.instantiate_pre(&component).map_err(link_error)?;
        let pre = if exports
            .iter()
            .any(|e| e.starts_with("wasi:http/handler@0.3"))
        {
            Handler::P3(ServicePre::new(instance_pre).map_err(link_error)?)
        } else if exports
            .iter()
            .any(|e| e.starts_with("wasi:http/incoming-handler@0.2"))
        {
            Handler::P2(ProxyPre::new(instance_pre).map_err(link_error)?)
        } else {
            return Err(ComponentError::NotHttp {
                path: path.to_path_buf(),
                exports: exports.join(", "),
            });
        };
        Ok(HttpComponent {
            inner: Arc::new(ComponentInner {
                pre,
                app,
                settings,
                sandbox: self.config.clone(),
                caps: InstanceCaps::new(share.clone(), self.config.max_instances_per_component),
                turns: self.turns.clone(),
                failures: FailureLog::default(),
            }),
        })
    }
}

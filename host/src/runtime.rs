//! The wasmtime side: one engine per host, one pre-instantiated component per
//! manifest component, and a fresh, limited instance for every request.
//!
//! - Instances come from a pooling allocator, so creating one per request
//!   costs microseconds and a request never sees another's memory.
//! - Each instance may grow its memory up to a configured limit.
//! - An epoch ticker interrupts a guest that runs past the request deadline;
//!   the request gets a 504 and the host carries on.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder, Trap, UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::component::{ObjectStoreCtx, ObjectStoreCtxView, ObjectStoreView};
use crate::objectstore::Application;
use crate::spin::variables::{Variables, VariablesView};
use crate::spin::{Grants, SpinKvCtx, SpinKvCtxView, SpinKvView};

/// The body of every response the host sends.
pub type ResponseBody = HyperOutgoingBody;

/// A response body holding `bytes`, all at once.
pub fn full_body(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// How often the epoch advances; the granularity of request deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Sandbox limits of guest instances.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Wall-clock time a request may take before its guest is interrupted.
    pub request_timeout: Duration,
    /// Bytes of linear memory one instance may use.
    pub max_instance_memory: usize,
    /// Instances that may exist at once; further requests get a 503.
    pub max_instances: u32,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            max_instance_memory: 128 << 20,
            max_instances: 256,
        }
    }
}

/// The wasmtime engine shared by all components of a host.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    config: SandboxConfig,
}

impl Runtime {
    /// Makes an engine with the pooling allocator and epoch interruption,
    /// and starts the thread that advances epochs.
    pub fn new(config: SandboxConfig) -> anyhow::Result<Self> {
        let mut pool = PoolingAllocationConfig::default();
        // A Rust wasip2 component instantiates a handful of core modules;
        // leave room for several memories and tables each.
        pool.total_component_instances(config.max_instances)
            .total_core_instances(config.max_instances.saturating_mul(8))
            .total_memories(config.max_instances.saturating_mul(2))
            .total_tables(config.max_instances.saturating_mul(4))
            .max_memory_size(config.max_instance_memory);
        let mut wasm = Config::new();
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .epoch_interruption(true)
            .wasm_component_model_async(true);
        let engine = Engine::new(&wasm).map_err(|e| anyhow::anyhow!("{e:#}"))?;
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
            })?;
        Ok(Self { engine, config })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles the component at `path` and links it for `app`; fails if
    /// it is not an HTTP component or imports what the host does not offer.
    pub fn load_http_component(
        &self,
        path: &Path,
        app: Application,
        settings: ComponentSettings,
    ) -> anyhow::Result<HttpComponent> {
        let bytes = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read component {}: {e}", path.display()))?;
        if !bytes.starts_with(b"\0asm") {
            anyhow::bail!(
                "{} is not a WebAssembly component (no \\0asm header)",
                path.display()
            );
        }
        let component = Component::new(&self.engine, &bytes)
            .map_err(|e| anyhow::anyhow!("cannot load component {}: {e:#}", path.display()))?;
        let mut linker = Linker::<InstanceState>::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow_from)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(anyhow_from)?;
        wasmtime_wasi::p3::add_to_linker(&mut linker).map_err(anyhow_from)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker).map_err(anyhow_from)?;
        crate::component::add_to_linker(&mut linker).map_err(anyhow_from)?;
        crate::spin::add_to_linker(&mut linker).map_err(anyhow_from)?;
        crate::spin::add_async_to_linker(&mut linker).map_err(anyhow_from)?;
        crate::spin::variables::add_to_linker(&mut linker).map_err(anyhow_from)?;
        // WASIp2 components export `wasi:http/incoming-handler@0.2.x`,
        // WASIp3 ones (spin-sdk 7) `wasi:http/handler@0.3.x`.
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let link_error =
            |e: wasmtime::Error| anyhow::anyhow!("cannot link component {}: {e:#}", path.display());
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
            anyhow::bail!(
                "component {} is not an HTTP component: it exports neither \
                 wasi:http/incoming-handler@0.2 nor wasi:http/handler@0.3 (exports: {})",
                path.display(),
                exports.join(", ")
            );
        };
        Ok(HttpComponent {
            inner: Arc::new(ComponentInner {
                pre,
                app,
                settings,
                sandbox: self.config.clone(),
            }),
        })
    }
}

fn anyhow_from(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:#}")
}

/// Per-component settings from the manifest.
#[derive(Debug, Clone, Default)]
pub struct ComponentSettings {
    /// The component's id, for logs and errors.
    pub id: String,
    /// Environment variables the guest sees.
    pub environment: Vec<(String, String)>,
    /// The Spin key-value store labels the component may open.
    pub grants: Grants,
    /// Host directories the guest sees, read-only.
    pub files: Vec<crate::manifest::Mount>,
    /// Where the guest may send HTTP requests; nowhere if empty.
    pub allowed_outbound_hosts: Arc<Vec<crate::manifest::OutboundRule>>,
    /// The Spin variables the guest may read.
    pub variables: Variables,
}

/// A component ready to serve HTTP requests, one fresh instance each.
#[derive(Clone)]
pub struct HttpComponent {
    inner: Arc<ComponentInner>,
}

/// A pre-instantiated component of either WASI HTTP generation.
enum Handler {
    P2(ProxyPre<InstanceState>),
    P3(ServicePre<InstanceState>),
}

impl Handler {
    fn engine(&self) -> &Engine {
        match self {
            Handler::P2(pre) => pre.engine(),
            Handler::P3(pre) => pre.engine(),
        }
    }
}

struct ComponentInner {
    pre: Handler,
    app: Application,
    settings: ComponentSettings,
    sandbox: SandboxConfig,
}

/// The store data of one instance.
struct InstanceState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    objectstore: ObjectStoreCtx,
    spin_kv: SpinKvCtx,
    variables: Variables,
    limits: StoreLimits,
    hooks: OutboundPolicy,
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl VariablesView for InstanceState {
    fn variables(&mut self) -> &Variables {
        &self.variables
    }
}

impl SpinKvView for InstanceState {
    fn spin_kv(&mut self) -> SpinKvCtxView<'_> {
        SpinKvCtxView {
            ctx: &mut self.spin_kv,
            table: &mut self.table,
        }
    }
}

impl ObjectStoreView for InstanceState {
    fn objectstore(&mut self) -> ObjectStoreCtxView<'_> {
        ObjectStoreCtxView {
            ctx: &mut self.objectstore,
            table: &mut self.table,
        }
    }
}

/// Outgoing HTTP from guests: only to the hosts the manifest allows
/// (`allowed_outbound_hosts`), as in Spin; by default nowhere.
struct OutboundPolicy {
    allowed: Arc<Vec<crate::manifest::OutboundRule>>,
}

type OutboundIo = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: OutboundIo,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (http::Response<wasmtime_wasi_http::WasiBody>, OutboundIo),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("http");
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let allowed = uri.host().is_some_and(|host| {
            self.allowed
                .iter()
                .any(|rule| rule.allows(scheme, host, port))
        });
        if !allowed {
            tracing::debug!("outgoing request to {uri} denied");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as OutboundIo,
            ))
        })
    }
}

/// Handles one instance may hold at once (streams, stores, partitions...).
/// They live in host memory, outside the guest's memory limit, so a guest
/// must not be able to make millions of them.
const MAX_RESOURCES_PER_INSTANCE: usize = 4096;

fn resource_table() -> ResourceTable {
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_RESOURCES_PER_INSTANCE);
    table
}

/// A plain-text response from the host itself.
pub fn text_response(status: u16, text: impl Into<String>) -> hyper::Response<ResponseBody> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(full_body(text.into()))
        .expect("a valid status and header")
}

impl HttpComponent {
    pub fn application(&self) -> &Application {
        &self.inner.app
    }

    pub fn id(&self) -> &str {
        &self.inner.settings.id
    }

    /// Serves `req` with a fresh instance. Never fails: guest traps,
    /// timeouts and exhausted instance pools become 5xx responses.
    pub async fn handle(
        &self,
        req: hyper::Request<Incoming>,
        https: bool,
    ) -> hyper::Response<ResponseBody> {
        let inner = &self.inner;
        let id = &inner.settings.id;
        let mut wasi = WasiCtx::builder();
        wasi.inherit_stdout().inherit_stderr();
        for (k, v) in &inner.settings.environment {
            wasi.env(k, v);
        }
        for mount in &inner.settings.files {
            let preopened = wasi.preopened_dir(
                &mount.host_path,
                &mount.guest_path,
                wasmtime_wasi::FsPerms::ReadOnly,
            );
            if let Err(e) = preopened {
                tracing::error!(component = %inner.settings.id, "cannot mount {}: {e}", mount.host_path.display());
                return text_response(500, "the component's files are not available");
            }
        }
        let state = InstanceState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: resource_table(),
            objectstore: ObjectStoreCtx::new(inner.app.clone()),
            spin_kv: SpinKvCtx::new(inner.app.clone(), inner.settings.grants.clone()),
            variables: inner.settings.variables.clone(),
            limits: StoreLimitsBuilder::new()
                .memory_size(inner.sandbox.max_instance_memory)
                .build(),
            hooks: OutboundPolicy {
                allowed: inner.settings.allowed_outbound_hosts.clone(),
            },
        };
        let mut store = Store::new(inner.pre.engine(), state);
        store.limiter(|s| &mut s.limits);
        let timeout = inner.sandbox.request_timeout;
        // At every epoch tick a running guest yields to the executor, so that
        // a spinning guest holds a worker thread for one tick at a time and
        // never starves other requests; past its deadline it is stopped.
        let deadline = std::time::Instant::now() + timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if std::time::Instant::now() >= deadline {
                Err(Trap::Interrupt.into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });

        let pre = match &inner.pre {
            Handler::P2(pre) => pre.clone(),
            Handler::P3(pre) => return self.handle_p3(pre.clone(), store, req, https).await,
        };
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let prepared = store
            .data_mut()
            .http()
            .new_incoming_request(if https { Scheme::Https } else { Scheme::Http }, req)
            .and_then(|req| Ok((req, store.data_mut().http().new_response_outparam(sender)?)));
        let (req, out) = match prepared {
            Ok(pair) => pair,
            Err(e) => return text_response(400, format!("bad request: {e}")),
        };
        let task = tokio::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        });
        // The epoch deadline stops a spinning guest; this one stops a guest
        // stuck waiting on the host, with a margin for the epoch to act first.
        let response = tokio::time::timeout(timeout + Duration::from_secs(1), receiver).await;
        match response {
            Ok(Ok(Ok(response))) => response,
            Ok(Ok(Err(code))) => {
                tracing::warn!(component = %id, "guest answered with an error: {code:?}");
                text_response(500, format!("the component failed: {code:?}"))
            }
            Ok(Err(_)) => match task.await {
                Ok(Ok(())) => text_response(500, "the component sent no response"),
                Ok(Err(e)) => guest_failure(id, &e),
                Err(e) => {
                    tracing::error!(component = %id, "request task failed: {e}");
                    text_response(500, "the component failed")
                }
            },
            Err(_) => {
                task.abort();
                tracing::warn!(component = %id, "request timed out after {timeout:?}");
                text_response(
                    504,
                    format!("the component did not answer within {timeout:?}"),
                )
            }
        }
    }

    /// Serves `req` with a WASIp3 component. The response body is gathered
    /// while the instance runs (bounded by the instance's memory), then sent.
    async fn handle_p3(
        &self,
        pre: ServicePre<InstanceState>,
        mut store: Store<InstanceState>,
        req: hyper::Request<Incoming>,
        https: bool,
    ) -> hyper::Response<ResponseBody> {
        let id = self.inner.settings.id.clone();
        let timeout = self.inner.sandbox.request_timeout;
        let (mut parts, body) = req.into_parts();
        if parts.uri.scheme().is_none() {
            // p3 requests carry scheme and authority in the URI.
            let host = parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost")
                .to_string();
            let scheme = if https { "https" } else { "http" };
            let path = parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            if let Ok(uri) = format!("{scheme}://{host}{path}").parse() {
                parts.uri = uri;
            }
        }
        let body = body.map_err(|e| {
            wasmtime_wasi_http::p3::bindings::http::types::ErrorCode::InternalError(Some(
                e.to_string(),
            ))
        });
        let req = hyper::Request::from_parts(parts, body);
        let task = tokio::spawn(async move {
            let (request, io) =
                wasmtime_wasi_http::p3::Request::from_http(&mut store.data_mut().hooks, req);
            let service = pre.instantiate_async(&mut store).await?;
            store
                .run_concurrent(async |store| {
                    let response = async {
                        let response = match service.handle(store, request).await? {
                            Ok(response) => response,
                            Err(code) => return wasmtime::Result::Ok(Err(format!("{code:?}"))),
                        };
                        let response =
                            store.with(|store| response.into_http(store, async { Ok(()) }))?;
                        let (parts, body) = response.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map_err(|e| wasmtime::format_err!("reading the response body: {e:?}"))?
                            .to_bytes();
                        Ok(Ok((parts, body)))
                    };
                    let (response, _) = futures_join(response, io).await;
                    response
                })
                .await?
        });
        // timeout( join( wasmtime::Result( answer ) ) )
        match tokio::time::timeout(timeout + Duration::from_secs(1), task).await {
            Ok(Ok(Ok(Ok((parts, body))))) => hyper::Response::from_parts(parts, full_body(body)),
            Ok(Ok(Ok(Err(code)))) => {
                tracing::warn!(component = %id, "guest answered with an error: {code}");
                text_response(500, format!("the component failed: {code}"))
            }
            Ok(Ok(Err(e))) => guest_failure(&id, &e),
            Ok(Err(e)) => {
                tracing::error!(component = %id, "request task failed: {e}");
                text_response(500, "the component failed")
            }
            Err(_) => {
                tracing::warn!(component = %id, "request timed out after {timeout:?}");
                text_response(
                    504,
                    format!("the component did not answer within {timeout:?}"),
                )
            }
        }
    }
}

/// Runs both futures to completion and returns both results.
async fn futures_join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    tokio::join!(a, b)
}

/// The response for a guest that trapped or could not be instantiated.
fn guest_failure(id: &str, e: &wasmtime::Error) -> hyper::Response<ResponseBody> {
    if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        tracing::warn!(component = %id, "instance pool exhausted: {e:#}");
        return text_response(503, "the server is at its instance limit; try again");
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => {
            tracing::warn!(component = %id, "guest interrupted at its deadline");
            text_response(504, "the component did not answer within its deadline")
        }
        _ => {
            tracing::warn!(component = %id, "guest failed: {e:#}");
            text_response(500, "the component failed")
        }
    }
}

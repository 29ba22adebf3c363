//! What one guest instance holds: its WASI, HTTP, object-store, Spin
//! key-value and variables contexts, its limits, and the policy for its
//! outgoing requests.

use std::sync::Arc;

use http_body_util::BodyExt;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::budget::{Charge, MemoryBudget};
use crate::component::{ObjectStoreCtx, ObjectStoreCtxView, ObjectStoreView};
use crate::manifest::{Mount, OutboundRule};

use super::local::{Chain, LocalTarget, MAX_LOCAL_HOPS};
use crate::spin::variables::{Variables, VariablesView};
use crate::spin::{Grants, SpinKvCtx, SpinKvCtxView, SpinKvView};

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
    pub files: Vec<Mount>,
    /// Where the guest may send HTTP requests; nowhere if empty.
    pub allowed_outbound_hosts: Arc<Vec<OutboundRule>>,
    /// The Spin variables the guest may read.
    pub variables: Variables,
    /// The host's memory budget, which the guest's memory is charged to.
    pub memory: MemoryBudget,
}

/// The store data of one instance.
pub(super) struct InstanceState {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub table: ResourceTable,
    pub objectstore: ObjectStoreCtx,
    pub spin_kv: SpinKvCtx,
    pub variables: Variables,
    pub limits: GuestLimits,
    pub hooks: OutboundPolicy,
}

/// Why a guest's memory could not grow: the host's memory budget is spent
/// (by other requests), not the guest's own limit.
#[derive(Debug, thiserror::Error)]
#[error("the host's memory budget cannot spare {wanted} more bytes for this guest")]
pub struct MemoryBudgetSpent {
    pub wanted: u64,
}

/// An instance's limits: its own (memory size, table size) and its share
/// of the host's memory budget, held until the instance is dropped.
pub(super) struct GuestLimits {
    own: StoreLimits,
    budget: MemoryBudget,
    charged: Charge,
}

impl GuestLimits {
    pub fn new(own: StoreLimits, budget: MemoryBudget) -> Self {
        Self {
            own,
            budget,
            charged: Charge::default(),
        }
    }
}

impl ResourceLimiter for GuestLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if !self.own.memory_growing(current, desired, maximum)? {
            return Ok(false);
        }
        let more = desired.saturating_sub(current) as u64;
        match self.budget.try_charge(more) {
            Some(charge) => {
                self.charged.absorb(charge);
                Ok(true)
            }
            // A trap, not a failed `memory.grow`: the request is then
            // answered 503 (busy), not 500 (the guest's fault).
            None => Err(MemoryBudgetSpent { wanted: more }.into()),
        }
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.own.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.own.instances()
    }

    fn tables(&self) -> usize {
        self.own.tables()
    }

    fn memories(&self) -> usize {
        self.own.memories()
    }
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
/// (`allowed_outbound_hosts`), as in Spin; by default nowhere. Requests to
/// the guest's own application are served in process (see `local`).
pub(super) struct OutboundPolicy {
    pub allowed: Arc<Vec<OutboundRule>>,
    /// The component's id, for logs.
    pub component: String,
    /// Where the requests the guest sends to its application stand.
    pub chain: Chain,
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
        if let Some(target) = LocalTarget::of(uri) {
            if !target.allowed_by(&self.allowed) {
                tracing::debug!(
                    component = %self.component,
                    "request to its own application ({uri}) denied: not in allowed_outbound_hosts"
                );
                return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
            }
            if self.chain.hops() >= MAX_LOCAL_HOPS {
                tracing::warn!(
                    component = %self.component,
                    "request to its own application ({uri}) refused: {MAX_LOCAL_HOPS} local \
                     requests deep already"
                );
            }
            let answer = self.chain.send(target, request);
            return Box::new(async move {
                let response = answer.await?;
                Ok((response, Box::new(async { Ok(()) }) as OutboundIo))
            });
        }
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

pub(super) fn resource_table() -> ResourceTable {
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_RESOURCES_PER_INSTANCE);
    table
}

//! Serving one request: a fresh instance of the component, a deadline, and
//! every way a guest can fail turned into a 5xx answer.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use wasmtime::{CallHook, Engine, Store, StoreLimitsBuilder, Trap, UpdateDeadline};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpView};

use crate::component::ObjectStoreCtx;
use crate::http::{ResponseBody, empty_body_known, full_body, retry_later, text_response};
use crate::objectstore::Application;
use crate::spin::SpinKvCtx;

use super::SandboxConfig;
use super::fairness::{CpuTurns, FailureLog, InstanceCaps, InstanceSlot, Turn};
use super::instance::{
    ComponentSettings, GuestLimits, InstanceState, MemoryBudgetSpent, OutboundPolicy,
    resource_table,
};
use super::local::Chain;

/// A component ready to serve HTTP requests, one fresh instance each.
#[derive(Clone)]
pub struct HttpComponent {
    pub(super) inner: Arc<ComponentInner>,
}

/// A pre-instantiated component of either WASI HTTP generation.
pub(super) enum Handler {
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

pub(super) struct ComponentInner {
    pub pre: Handler,
    pub app: Application,
    pub settings: ComponentSettings,
    pub sandbox: SandboxConfig,
    /// Its instance cap and its application's.
    pub caps: InstanceCaps,
    /// The turns long-running guests take, shared by the runtime.
    pub turns: Arc<CpuTurns>,
    /// Its failures lately, so that a burst logs a few lines.
    pub failures: FailureLog,
}

impl HttpComponent {
    pub fn application(&self) -> &Application {
        &self.inner.app
    }

    pub fn id(&self) -> &str {
        &self.inner.settings.id
    }

    /// Serves `req` (of scheme `https`) with a fresh instance; `chain` says
    /// where it stands among local requests, and serves those the guest
    /// sends. Never fails: guest traps, timeouts, instance caps and
    /// exhausted instance pools become 5xx responses.
    pub async fn handle(
        &self,
        req: hyper::Request<WasiBody>,
        https: bool,
        chain: Chain,
    ) -> hyper::Response<ResponseBody> {
        let inner = &self.inner;
        let id = &inner.settings.id;
        // A local request has what is left of the deadline of the client's
        // request that set it off, at most its own.
        let started = std::time::Instant::now();
        let deadline = chain
            .deadline()
            .map_or(started + inner.sandbox.request_timeout, |d| {
                d.min(started + inner.sandbox.request_timeout)
            });
        let timeout = deadline.saturating_duration_since(started);
        // Taken before anything is made for the instance, and held by the
        // task that runs it: a request cut off at its deadline keeps its
        // slot until its instance is gone.
        let slot = match inner.caps.try_take(id) {
            Ok(slot) => slot,
            Err(at_cap) => {
                inner
                    .failures
                    .log(id, format_args!("request refused: {at_cap}"));
                return retry_later(at_cap.to_string());
            }
        };
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
            limits: GuestLimits::new(
                StoreLimitsBuilder::new()
                    .memory_size(inner.sandbox.max_instance_memory)
                    .build(),
                inner.settings.memory.clone(),
            ),
            hooks: OutboundPolicy {
                allowed: inner.settings.allowed_outbound_hosts.clone(),
                component: id.clone(),
                chain: chain.onward(deadline),
            },
        };
        let mut store = Store::new(inner.pre.engine(), state);
        store.limiter(|s| &mut s.limits);
        // Every epoch tick charges the running guest's application. A long
        // runner (past two ticks, or of an application over its CPU share)
        // then gives its turn back and waits for the next one (see
        // `fairness`): spinning guests hold at most the long runners' worker
        // threads, one tick at a time, and the application that used the
        // least CPU lately goes first. Past its deadline a guest is stopped.
        let turns = inner.turns.clone();
        let usage = inner.caps.app().cpu.clone();
        let held: Arc<std::sync::Mutex<Option<Turn>>> = Arc::default();
        // An application over its share waits for a turn before it starts,
        // at most until its deadline.
        if turns.over_share(&usage) {
            match tokio::time::timeout(timeout, turns.take(usage.clone())).await {
                Ok(turn) => *held.lock().expect("turn lock") = Some(turn),
                Err(_) => {
                    inner.failures.log(
                        id,
                        format_args!("request refused: no CPU turn within {timeout:?}"),
                    );
                    return retry_later(format!(
                        "application `{}` has used more than its share of the CPU lately, and \
                         got no turn within {timeout:?}; try again",
                        inner.caps.app().name
                    ));
                }
            }
        }
        let mut ticks = 0u32;
        store.set_epoch_deadline(1);
        let on_tick = held.clone();
        store.epoch_deadline_callback(move |_| {
            if std::time::Instant::now() >= deadline {
                return Err(Trap::Interrupt.into());
            }
            usage.charge();
            ticks = ticks.saturating_add(1);
            let mut holding = on_tick.lock().expect("turn lock");
            // A short request that straddles one tick does not queue.
            if holding.is_none() && ticks < 2 && !turns.over_share(&usage) {
                return Ok(UpdateDeadline::Yield(1));
            }
            // Given back before asking again: a waiter of an application
            // that used less CPU gets it first.
            drop(holding.take());
            let (turns, usage, held) = (turns.clone(), usage.clone(), on_tick.clone());
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(async move {
                    let turn = turns.take(usage).await;
                    *held.lock().expect("turn lock") = Some(turn);
                    // Whether or not it waited, others on this worker get
                    // their go before the guest runs on.
                    tokio::task::yield_now().await;
                }),
            ))
        });
        // A guest calling the host may wait there (for a body, a store, a
        // timer): it gives its turn back, and asks again at its next tick.
        store.call_hook(move |_, hook| {
            if matches!(hook, CallHook::CallingHost) {
                drop(held.lock().expect("turn lock").take());
            }
            Ok(())
        });

        let pre = match &inner.pre {
            Handler::P2(pre) => pre.clone(),
            Handler::P3(pre) => {
                return self
                    .handle_p3(pre.clone(), store, slot, req, https, timeout)
                    .await;
            }
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
            let _slot = slot;
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
            Ok(Ok(Ok(response))) => empty_body_known(response).await,
            Ok(Ok(Err(code))) => {
                inner
                    .failures
                    .log(id, format_args!("guest answered with an error: {code:?}"));
                text_response(500, format!("the component failed: {code:?}"))
            }
            Ok(Err(_)) => match task.await {
                Ok(Ok(())) => text_response(500, "the component sent no response"),
                Ok(Err(e)) => guest_failure(inner, &e),
                Err(e) => {
                    tracing::error!(component = %id, "request task failed: {e}");
                    text_response(500, "the component failed")
                }
            },
            Err(_) => {
                task.abort();
                inner
                    .failures
                    .log(id, format_args!("request timed out after {timeout:?}"));
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
        slot: InstanceSlot,
        req: hyper::Request<WasiBody>,
        https: bool,
        timeout: Duration,
    ) -> hyper::Response<ResponseBody> {
        let inner = &self.inner;
        let id = &inner.settings.id;
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
        let req = hyper::Request::from_parts(parts, body);
        let task = tokio::spawn(async move {
            let _slot = slot;
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
                inner
                    .failures
                    .log(id, format_args!("guest answered with an error: {code}"));
                text_response(500, format!("the component failed: {code}"))
            }
            Ok(Ok(Err(e))) => guest_failure(inner, &e),
            Ok(Err(e)) => {
                tracing::error!(component = %id, "request task failed: {e}");
                text_response(500, "the component failed")
            }
            Err(_) => {
                inner
                    .failures
                    .log(id, format_args!("request timed out after {timeout:?}"));
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
/// The log says why in one line (a trap's kind, not its backtrace), and
/// only a few times per burst; the bounded backtrace goes to the debug log.
fn guest_failure(inner: &ComponentInner, e: &wasmtime::Error) -> hyper::Response<ResponseBody> {
    let id = &inner.settings.id;
    if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        inner
            .failures
            .log(id, format_args!("instance pool exhausted: {e}"));
        return retry_later("the server is at its instance limit; try again");
    }
    if let Some(spent) = e.downcast_ref::<MemoryBudgetSpent>() {
        inner.failures.log(id, format_args!("{spent}"));
        return retry_later("the server has no memory to spare now; retry shortly");
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => {
            inner
                .failures
                .log(id, format_args!("guest interrupted at its deadline"));
            text_response(504, "the component did not answer within its deadline")
        }
        trap => {
            let why = match trap {
                Some(trap) => format!("trap: {trap}"),
                // A host error; its outermost context is the backtrace.
                None => e.root_cause().to_string(),
            };
            if inner.failures.log(id, format_args!("guest failed: {why}")) {
                tracing::debug!(component = %id, "guest failure in full: {e:?}");
            }
            text_response(500, "the component failed")
        }
    }
}

//! The HTTP front: connections, TLS, timeouts and graceful shutdown. What
//! each request gets is the [`Router`]'s business.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::http::text_response;
use crate::router::Router;

/// Limits of every connection, whatever route its requests reach: a slow,
/// stalled or numerous client must not hold the host.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// How long a client may take to send a request's headers, or to finish
    /// a TLS handshake.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body to the REST API
    /// (a guest's request, body included, is bounded by its deadline).
    pub body_timeout: Duration,
    /// Connections served at once; past it, a connection is answered
    /// `503` (plain HTTP) or closed (TLS) at once.
    pub max_connections: usize,
    /// How long a request may take from its head to its answer's head,
    /// whatever serves it; past it the client gets a `503`. Keep it above
    /// the body timeout and the guests' deadline, which answer first.
    pub request_deadline: Duration,
    /// How long a client may accept no byte of what it is sent (a response
    /// it does not read) before its connection is closed.
    pub write_timeout: Duration,
    /// How long a shutdown waits for requests in flight. Requests still
    /// waiting for their client's body are answered at once.
    pub shutdown_grace: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
            request_deadline: Duration::from_secs(90),
            write_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// File descriptors kept free of connections: for the database, the
/// listeners, logs, outgoing requests of guests, and the refusals
/// themselves (a refusal needs the connection it refuses).
const RESERVED_FILES: u64 = 64;

impl ConnectionLimits {
    /// The limits with `max_connections` lowered, if need be, so that
    /// `listeners` listeners at their caps stay within the files the process
    /// may open: past the cap a client gets a 503, where past the file limit
    /// it would get nothing at all. Raises the process's soft file limit to
    /// its hard limit first.
    pub fn within_file_limit(&self, listeners: usize) -> ConnectionLimits {
        let files = raise_file_limit();
        let per_listener = files.saturating_sub(RESERVED_FILES) / listeners.max(1) as u64;
        let cap = usize::try_from(per_listener)
            .unwrap_or(usize::MAX)
            .clamp(1, self.max_connections);
        if cap < self.max_connections {
            tracing::warn!(
                "the process may open {files} files: serving at most {cap} connections per \
                 listener instead of {}",
                self.max_connections
            );
        }
        ConnectionLimits {
            max_connections: cap,
            ..self.clone()
        }
    }
}

/// Raises the soft limit on open files to the hard limit; returns the limit
/// now in force (`u64::MAX`: none, or unknown).
fn raise_file_limit() -> u64 {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit into the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return u64::MAX;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: setrlimit reads one rlimit from the struct it is given.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
        if limit.rlim_cur == libc::RLIM_INFINITY {
            u64::MAX
        } else {
            limit.rlim_cur
        }
    }
    #[cfg(not(unix))]
    u64::MAX
}

/// What a connection past [`ConnectionLimits::max_connections`] is told.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain; charset=utf-8\r\ncontent-length: 43\r\nretry-after: 1\r\n\
connection: close\r\n\r\nthe server has too many connections; retry\n";

/// Serves `router` on `listener` until `shutdown` completes, over TLS when
/// given an acceptor. Then it accepts no new connection and waits (at most
/// 30 seconds) for the requests in flight to be answered; it returns once
/// every connection is closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    limits: &ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let router = Arc::new(router);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut failures = AcceptFailures::default();
    let header_timeout = limits.header_timeout;
    tokio::pin!(shutdown);
    loop {
        // Forget connections that have ended.
        while connections.try_join_next().is_some() {}
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => {
                    failures.succeeded();
                    pair
                }
                Err(e) => {
                    // Running out of file descriptors must not end the
                    // server, nor fill its log.
                    tokio::time::sleep(failures.failed(&e)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small request/response exchanges must not wait for Nagle's
        // algorithm to meet the client's delayed ACK (40 ms stalls).
        let _ = stream.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if tls.is_none() {
                connections.spawn(refuse(stream));
            }
            continue;
        };
        let router = router.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        let stream = WriteDeadline::new(stream, limits.write_timeout);
        let deadline = limits.request_deadline;
        connections.spawn(async move {
            let _slot = slot;
            let https = tls.is_some();
            let service = service_fn(move |req| {
                let router = router.clone();
                async move {
                    let answer = tokio::time::timeout(deadline, router.handle(req, client, https));
                    Ok::<_, std::convert::Infallible>(answer.await.unwrap_or_else(|_| {
                        text_response(
                            503,
                            format!(
                                "the request was not answered within {} s\n",
                                deadline.as_secs_f64()
                            ),
                        )
                    }))
                }
            });
            let mut http = http1::Builder::new();
            http.keep_alive(true)
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let served = match tls {
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(header_timeout, acceptor.accept(stream));
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
    let grace = limits.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after {grace:?} were cut off");
    }
    // Connections still open (idle ones, and those past the grace) end here.
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Whether the host has begun to stop: work that waits on a client (a
/// request body, say) ends at once then, so that a stalled client does not
/// hold the shutdown for its whole grace.
#[derive(Debug, Clone)]
pub struct Stopping(watch::Receiver<bool>);

impl From<&watch::Sender<bool>> for Stopping {
    fn from(stop: &watch::Sender<bool>) -> Self {
        Stopping(stop.subscribe())
    }
}

impl Stopping {
    /// A signal that `stop` raises (or dropping it).
    pub fn channel() -> (watch::Sender<bool>, Stopping) {
        let (stop, stopping) = watch::channel(false);
        (stop, Stopping(stopping))
    }

    /// Completes once the host stops.
    pub async fn wait(&self) {
        let mut stopping = self.0.clone();
        let _ = stopping.wait_for(|stopping| *stopping).await;
    }
}

/// A connection's stream whose writes fail once the client has taken no
/// byte for a while: a client that never reads its response must not hold
/// the connection, and the response in memory, forever.
struct WriteDeadline<S> {
    inner: S,
    patience: Duration,
    /// Armed while a write waits for the client.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S, patience: Duration) -> Self {
        Self {
            inner,
            patience,
            stalled: None,
        }
    }

    /// Passes on a write's outcome; a write that has waited past the
    /// patience becomes an error.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let patience = self.patience;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(patience)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client took nothing for {} s", patience.as_secs_f64()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, polled)
    }
}

/// Failed accepts (out of file descriptors, say): each failure in a row
/// waits a little longer, up to half a second, and the log says so once in
/// a while, not once per try. Near the limit, accepts fail and succeed in
/// turns (a refused client's socket closes, freeing one descriptor), so
/// a success does not restart the log's interval: every line about accepts
/// (that they fail, that they work again) waits for it.
#[derive(Default)]
struct AcceptFailures {
    in_a_row: u32,
    /// Failures since the last line about them.
    unlogged: u64,
    logged_at: Option<std::time::Instant>,
    /// The last line said accepts fail.
    said_failing: bool,
}

/// How often failed accepts are logged while they go on.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl AcceptFailures {
    /// Whether a line about accepts may be logged now.
    fn may_log(&self) -> bool {
        self.logged_at
            .is_none_or(|at| at.elapsed() >= ACCEPT_LOG_INTERVAL)
    }

    fn logged(&mut self, failing: bool) {
        self.unlogged = 0;
        self.logged_at = Some(std::time::Instant::now());
        self.said_failing = failing;
    }

    /// Notes a failure; returns how long to wait before the next try.
    fn failed(&mut self, e: &std::io::Error) -> Duration {
        self.in_a_row = self.in_a_row.saturating_add(1);
        self.unlogged += 1;
        if self.may_log() {
            tracing::warn!(
                failures = self.unlogged,
                "accepting connections fails: {e}; new clients wait until connections close"
            );
            self.logged(true);
        }
        // 10 ms, 20 ms, ... 500 ms.
        Duration::from_millis(10 << self.in_a_row.min(6)).min(Duration::from_millis(500))
    }

    fn succeeded(&mut self) {
        self.in_a_row = 0;
        if self.said_failing && self.may_log() {
            tracing::info!(
                failures = self.unlogged,
                "accepting connections works again"
            );
            self.logged(false);
        }
    }
}

/// Answers a connection past the limit with a 503, and closes it.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(TOO_MANY_CONNECTIONS).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts that fail and succeed in turns, as near the file limit: one
    /// line about them per interval, not one per failure after a success.
    #[test]
    fn accept_failures_between_successes_are_logged_once_per_interval() {
        let mut failures = AcceptFailures::default();
        let emfile = std::io::Error::from_raw_os_error(24);
        let mut lines = 0;
        for _ in 0..100 {
            let before = failures.logged_at;
            failures.failed(&emfile);
            failures.succeeded();
            lines += usize::from(failures.logged_at != before);
        }
        assert_eq!(lines, 1);
        assert!(failures.said_failing);
        assert_eq!(failures.unlogged, 99);
        // Once the interval has passed, a success says they work again.
        failures.logged_at = Some(std::time::Instant::now() - ACCEPT_LOG_INTERVAL);
        failures.succeeded();
        assert!(!failures.said_failing);
        assert_eq!(failures.unlogged, 0);
        // A backoff restarts after a success.
        assert_eq!(failures.failed(&emfile), Duration::from_millis(20));
    }

    #[test]
    fn the_refusal_is_one_well_formed_response() {
        let text = std::str::from_utf8(TOO_MANY_CONNECTIONS).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}

//! The HTTP front: connections, TLS, timeouts and graceful shutdown. What
//! each request gets is the [`Router`]'s business.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::router::Router;

/// How long a client may take to send a request's headers; a slow or
/// stalled client must not hold a connection forever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `shutdown` completes, over TLS when
/// given an acceptor. Then it accepts no new connection and waits (at most
/// 30 seconds) for the requests in flight to be answered; it returns once
/// every connection is closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let router = Arc::new(router);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Forget connections that have ended.
        while connections.try_join_next().is_some() {}
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Running out of file descriptors must not end the server.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small request/response exchanges must not wait for Nagle's
        // algorithm to meet the client's delayed ACK (40 ms stalls).
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        connections.spawn(async move {
            let https = tls.is_some();
            let service = service_fn(move |req| {
                let router = router.clone();
                async move { Ok::<_, std::convert::Infallible>(router.handle(req, client, https).await) }
            });
            let mut http = http1::Builder::new();
            http.keep_alive(true)
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let served = match tls {
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream));
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
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after {SHUTDOWN_GRACE:?} were cut off");
    }
    // Connections still open (idle ones, and those past the grace) end here.
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    Ok(())
}

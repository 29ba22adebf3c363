//! The benches' load generator: keep-alive HTTP/1.1 connections, each
//! sending its next request as soon as the last is answered, for a fixed
//! time; and the figures it prints (requests/s, latency percentiles).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

/// What one run of [`drive`] measured.
pub struct Figures {
    /// Answers that were not 2xx (or connections that failed).
    pub errors: u64,
    pub elapsed: Duration,
    /// The latency of every answer, sorted.
    pub latencies: Vec<Duration>,
}

impl Figures {
    pub fn requests_per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The `p`th quantile (0 to 1) of the latencies.
    pub fn percentile(&self, p: f64) -> Duration {
        let sorted = &self.latencies;
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        sorted[((sorted.len() - 1) as f64 * p).round() as usize]
    }
}

/// Milliseconds with two decimals, for tables.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Drives `connections` keep-alive connections to `addr` for `time`; the
/// `n`th request of connection `conn` is `request(conn, n)`.
pub async fn drive<F>(addr: SocketAddr, connections: usize, time: Duration, request: F) -> Figures
where
    F: Fn(usize, u64) -> hyper::Request<Full<Bytes>> + Send + Sync + 'static,
{
    drive_round_robin(&[addr], connections, time, request).await
}

/// Like [`drive`], with the connections spread over `addrs`: connection
/// `conn` goes to `addrs[conn % addrs.len()]`. The figures are the
/// aggregate over all of them.
pub async fn drive_round_robin<F>(
    addrs: &[SocketAddr],
    connections: usize,
    time: Duration,
    request: F,
) -> Figures
where
    F: Fn(usize, u64) -> hyper::Request<Full<Bytes>> + Send + Sync + 'static,
{
    assert!(!addrs.is_empty(), "no address to drive");
    let request = Arc::new(request);
    let start = Instant::now();
    let deadline = start + time;
    let tasks: Vec<_> = (0..connections)
        .map(|conn| {
            let request = request.clone();
            let addr = addrs[conn % addrs.len()];
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0;
                let Ok(mut sender) = connect(addr).await else {
                    return (latencies, 1);
                };
                let mut n = 0;
                while Instant::now() < deadline {
                    let req = request(conn, n);
                    n += 1;
                    let sent = Instant::now();
                    let Ok(res) = sender.send_request(req).await else {
                        errors += 1;
                        break;
                    };
                    let ok = res.status().is_success();
                    let read = res.into_body().collect().await;
                    latencies.push(sent.elapsed());
                    if !ok || read.is_err() {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("connection task");
        latencies.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed();
    latencies.sort();
    Figures {
        errors,
        elapsed,
        latencies,
    }
}

/// A keep-alive HTTP/1.1 connection to `addr`.
pub async fn connect(
    addr: SocketAddr,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, Box<dyn std::error::Error>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// A `GET path` request to `addr`.
pub fn get(addr: SocketAddr, path: &str) -> hyper::Request<Full<Bytes>> {
    hyper::Request::builder()
        .uri(path)
        .header("host", addr.to_string())
        .body(Full::default())
        .expect("a valid request")
}

/// A bench's own arguments: those after the program's name, without the
/// `--bench` that `cargo bench` adds.
pub fn bench_args() -> Vec<String> {
    std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect()
}

/// A bench's `--flag N` arguments (from [`bench_args`]), each the number
/// given for one of `defaults`' flags (`10_000` may be written with `_`),
/// else its default; in the order of `defaults`. Panics with the flags it
/// takes on any other argument, or a flag without a number.
pub fn numeric_flags<const N: usize>(defaults: [(&str, usize); N]) -> [usize; N] {
    let mut values = defaults.map(|(_, default)| default);
    let takes = || {
        let flags: Vec<String> = defaults.iter().map(|(f, _)| format!("{f} N")).collect();
        flags.join(", ")
    };
    let args = bench_args();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let Some(at) = defaults.iter().position(|(f, _)| f == flag) else {
            panic!("unknown argument {flag} (this bench takes {})", takes());
        };
        values[at] = args
            .next()
            .and_then(|v| v.replace('_', "").parse().ok())
            .unwrap_or_else(|| panic!("{flag} takes a number"));
    }
    values
}

/// One table row's cells for `times`: how many, then p50, p90 and p99 in
/// milliseconds with three decimals (`n | p50 | p90 | p99`).
pub fn latency_cells(mut times: Vec<Duration>) -> String {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    format!(
        "{} | {:.3} | {:.3} | {:.3}",
        times.len(),
        at(0.5),
        at(0.9),
        at(0.99)
    )
}

/// The arguments of the load benches: `[SECONDS [CONNECTIONS...]]`, with
/// `default_seconds` per run and 1 and 64 connections unless given.
pub fn seconds_and_connections(default_seconds: u64) -> (u64, Vec<usize>) {
    let args = bench_args();
    let seconds = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(default_seconds);
    let mut counts: Vec<usize> = args.iter().skip(1).filter_map(|a| a.parse().ok()).collect();
    if counts.is_empty() {
        counts = vec![1, 64];
    }
    (seconds, counts)
}

//! A deliberately badly behaved guest, for the host's robustness tests.
//!
//! * `GET /misbehave/loop` spins forever; the host must interrupt it.
//! * `GET /misbehave/trap` panics, which traps the instance.
//! * `GET /misbehave/grow` allocates (and touches) memory a mebibyte at a
//!   time until the host's memory limit refuses more, which traps.
//! * `GET /misbehave/recurse` recurses until the wasm stack overflows,
//!   which traps with a deep stack.
//! * `GET /misbehave/ok` answers 200 `ok`, to show the host still serves.
//! * `GET /misbehave/slow` waits 1.5 s (without spinning), then answers
//!   200 `slow ok`: a request in flight, for shutdown tests.
//! * `GET /misbehave/fetch?to=<host:port>` sends `GET /` to that address
//!   and answers 200 with the reply's body, or 502 with the error: for the
//!   host's outbound-HTTP policy tests.
//! * `GET /misbehave/instance-requests` answers how many requests this
//!   instance has served, counting this one: always `1` when the host gives
//!   every request a fresh instance.
//!
//! Other paths answer 404, other methods on these paths 405.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use ostore_sdk::http::{Handler, Method, Request, Response};

struct Misbehave;

impl Handler for Misbehave {
    fn handle(request: Request) -> Response {
        if request.path() == "/misbehave/fetch" {
            return match request.query_param("to") {
                Some(Ok(to)) => fetch(&to),
                _ => Response::text(400, "give ?to=host:port"),
            };
        }
        let action = match request.path() {
            "/misbehave/loop" => spin,
            "/misbehave/trap" => trap,
            "/misbehave/grow" => grow,
            "/misbehave/recurse" => recurse,
            "/misbehave/ok" => ok,
            "/misbehave/slow" => slow,
            "/misbehave/instance-requests" => instance_requests,
            _ => return Response::text(404, "no such route\n"),
        };
        if !matches!(request.method(), Method::Get) {
            return Response::text(405, "method not allowed\n").with_header("allow", "GET");
        }
        action()
    }
}

/// Never returns: `black_box` hides the counter from the optimiser, so the
/// loop really executes instructions.
fn spin() -> Response {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

fn trap() -> Response {
    panic!("misbehave: deliberate trap");
}

/// Never returns: allocation fails at the memory limit, and Rust aborts
/// (a trap). Each mebibyte is written, so the host really provides it.
fn grow() -> Response {
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        held.push(black_box(vec![1u8; 1 << 20]));
    }
}

/// Never returns: every call keeps a frame with a buffer the optimiser
/// cannot remove, until the stack overflows (the depth never reaches
/// `u64::MAX`, but the compiler cannot know that).
fn recurse() -> Response {
    fn deeper(depth: u64) -> u64 {
        if black_box(depth) == u64::MAX {
            return 0;
        }
        let frame = black_box([depth; 32]);
        black_box(deeper(depth + 1)) + frame[black_box(0)]
    }
    Response::text(200, deeper(0).to_string())
}

/// Requests served by this instance; a global, so it would carry over if
/// the host reused instances.
static SERVED: AtomicU64 = AtomicU64::new(0);

fn instance_requests() -> Response {
    let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
    Response::text(200, served.to_string())
}

fn fetch(authority: &str) -> Response {
    use ostore_sdk::wasip2::http::{outgoing_handler, types};
    let request = types::OutgoingRequest::new(types::Fields::new());
    let prepared = request
        .set_scheme(Some(&types::Scheme::Http))
        .and_then(|()| request.set_authority(Some(authority)))
        .and_then(|()| request.set_path_with_query(Some("/")));
    if prepared.is_err() {
        return Response::text(400, "bad address");
    }
    let answer = outgoing_handler::handle(request, None).and_then(|future| {
        future.subscribe().block();
        future
            .get()
            .expect("ready after block")
            .expect("taken once")
    });
    let response = match answer {
        Ok(response) => response,
        Err(code) => return Response::text(502, format!("{code:?}")),
    };
    let body = response.consume().expect("consumed once");
    let stream = body.stream().expect("streamed once");
    let mut bytes = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        bytes.extend(chunk);
    }
    Response::bytes(200, bytes)
}

fn slow() -> Response {
    ostore_sdk::wasip2::clocks::monotonic_clock::subscribe_duration(1_500_000_000).block();
    Response::text(200, "slow ok")
}

fn ok() -> Response {
    Response::text(200, "ok")
}

ostore_sdk::http::export!(Misbehave);
